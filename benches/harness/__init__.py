"""taskstash beside the caching libraries its users would otherwise pick, measured in one run.

Run from the repository root, with the peers installed (`pip install -e '.[bench]'`) and the
extension built for speed (`maturin develop --release`):

    python -m benches.harness                 # full run: results.json, report.md, chart.png
                                              # into benches/results/ (about five minutes)
    python -m benches.harness --smoke         # every benchmark once on tiny sizes
    python -m benches.harness --report-only   # redo report.md and chart.png from results.json

Modules, one job each:

- `plan`: sizes and repetitions of a full and of a smoke run;
- `workloads`: the functions being cached, counting how often their bodies really run;
- `peers`: the contenders (taskstash, functools.lru_cache, cachebox, diskcache, joblib, cachier,
  Prefect) and how each one caches a function;
- `timing`: batches, calibration and medians;
- `cases`: hit and miss latencies, and hit time against result size (1 KiB to 100 MiB);
- `large` (+ `large_worker`): hits on a 1 GiB array and a 1 GiB DataFrame, each the first call
  of a fresh process: its time and the process's memory growth (peak RSS until the result is
  read, then RSS once all of it is read), beside `pickle.load` of the same object;
- `imports`: import time; `hashing`: cache-key hashing;
- `stampede` (+ `stampede_worker`): many callers of one uncached slow function at once;
- `indexgen`: fills a taskstash index with generated records; `scale`: hits on a large index;
- `workers`: how the harness starts its worker processes and reads their answers;
- `results`, `targets`, `machine`, `units`, `report`, `chart`: what was measured and how it is
  shown.
"""
