"""The `taskstash` command: look after the cache from a shell.

    taskstash ls --task add_one --limit 20
    taskstash show 3f9a2c
    taskstash stats
    taskstash explain mypipeline:add_one --arg x=1
    taskstash prune --expired --max-size 2GiB --dry-run
    taskstash clear --task add_one
    taskstash verify --fix
    taskstash reindex

Tables for people by default, `--json` for scripts. Exit codes: 0 done; 1 nothing found
(`show`), problems found (`verify` without `--fix`) or a task that cannot be loaded (`explain`);
2 a usage error.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from taskstash.cache import Cache, Progress, Pruned
from taskstash.settings import parse_size
from taskstash.store import Record

__all__ = ["main"]

_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command with `argv` (default: the process's arguments); the exit code."""
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        cache = Cache(options.index, options.storage)
        code: int = options.run(cache, options)
    except (KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"taskstash: {message}", file=sys.stderr)
        return 1
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskstash", description="Look after the taskstash cache: its index and results."
    )
    parser.add_argument("--index", help="the index file (default: TASKSTASH_INDEX_PATH)")
    parser.add_argument(
        "--storage", help="the result storage (default: TASKSTASH_LOCAL_STORAGE_PATH)"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Cache, argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run)
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        return sub

    ls = command("ls", _ls, "list records, newest first")
    ls.add_argument("--task", help="only this task's records")
    ls.add_argument("--expired", action="store_true", help="only expired records")
    ls.add_argument("--older-than", type=_age, metavar="AGE", help="only older ones (7d, 12h)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    show = command("show", _show, "show one record")
    show.add_argument("key", help="the key, or a prefix of it")

    command("stats", _stats, "records, bytes, hits, hit rate and time saved, per task")

    explain = command("explain", _explain, "why a call of a task misses")
    explain.add_argument("target", help="the task, as module:name or path/to/file.py:name")
    explain.add_argument(
        "--arg", action="append", default=[], metavar="NAME=VALUE", help="an argument (repeat)"
    )

    prune = command("prune", _prune, "remove expired, old or least recently used records")
    prune.add_argument("--expired", action="store_true", help="expired records")
    prune.add_argument("--older-than", type=_age, metavar="AGE", help="records older than AGE")
    prune.add_argument("--max-size", type=parse_size, metavar="SIZE", help="evict down to SIZE")
    prune.add_argument("--task", help="only this task's records")
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")

    clear = command("clear", _clear, "remove a task's records, or all of them")
    scope = clear.add_mutually_exclusive_group(required=True)
    scope.add_argument("--task", help="this task's records")
    scope.add_argument("--yes", action="store_true", help="every record: yes, all of them")

    verify = command("verify", _verify, "check the index against the result files")
    verify.add_argument("--fix", action="store_true", help="remove bad rows and stray files")

    command("reindex", _reindex, "rebuild the index from the result files")
    return parser


def _age(text: str) -> float:
    match = _AGE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age; write it like 90s, 12h or 7d")
    return float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]


# commands -------------------------------------------------------------------------------------


def _ls(cache: Cache, options: argparse.Namespace) -> int:
    records = cache.records(
        task=options.task,
        expired=True if options.expired else None,
        older_than=options.older_than,
        limit=options.limit,
    )
    if options.json:
        _print_json([_record_json(r) for r in records])
        return 0
    rows = [
        (
            r.key[:12],
            r.task_name,
            _when(r.created_at),
            _size(r.size_bytes),
            str(r.hit_count),
            _when(r.expires_at) if r.expires_at is not None else "never",
        )
        for r in records
    ]
    _table(("KEY", "TASK", "CREATED", "SIZE", "HITS", "EXPIRES"), rows)
    return 0


def _show(cache: Cache, options: argparse.Namespace) -> int:
    record = cache.record(options.key)
    if options.json:
        _print_json(_record_json(record))
        return 0
    fields = _record_json(record)
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        print(f"{name:<{width}}  {value}")
    return 0


def _stats(cache: Cache, options: argparse.Namespace) -> int:
    stats = cache.stats()
    records, size = cache.totals()
    if options.json:
        _print_json({"records": records, "bytes": size, "tasks": [asdict(s) for s in stats]})
        return 0
    rows = [
        (
            s.task_name,
            str(s.records),
            _size(s.total_bytes),
            str(s.hits),
            f"{s.hit_rate:.0%}",
            _duration(s.compute_seconds_saved),
        )
        for s in stats
    ]
    _table(("TASK", "RECORDS", "SIZE", "HITS", "HIT RATE", "TIME SAVED"), rows)
    print(f"\n{records} records, {_size(size)} in {cache.path}")
    return 0


def _explain(cache: Cache, options: argparse.Namespace) -> int:
    from taskstash.explanations import explain
    from taskstash.tasks import Task

    task = _load_target(options.target)
    if not isinstance(task, Task):
        print(f"taskstash: {options.target} is not a task", file=sys.stderr)
        return 1
    arguments = dict(_argument(text) for text in options.arg)
    explanation = explain(task, **arguments)
    if options.json:
        nearest = explanation.nearest
        _print_json(
            {
                "task": explanation.task,
                "key": explanation.key,
                "hit": explanation.hit,
                "components": explanation.components,
                "nearest": None if nearest is None else nearest.key,
                "differs": explanation.differs,
                "reason": explanation.reason,
            }
        )
    else:
        print(explanation)
    return 0


def _prune(cache: Cache, options: argparse.Namespace) -> int:
    if not (options.expired or options.older_than is not None or options.max_size is not None):
        print(
            "taskstash: say what to prune: --expired, --older-than or --max-size", file=sys.stderr
        )
        return 2
    pruned = cache.prune(
        expired=options.expired,
        older_than=options.older_than,
        max_size=options.max_size,
        task=options.task,
        dry_run=options.dry_run,
        progress=_progress_bar("pruning"),
    )
    _report_removed(pruned, options, "would remove" if options.dry_run else "removed")
    return 0


def _clear(cache: Cache, options: argparse.Namespace) -> int:
    pruned = cache.clear(task=options.task, progress=_progress_bar("clearing"))
    _report_removed(pruned, options, "removed")
    return 0


def _verify(cache: Cache, options: argparse.Namespace) -> int:
    report = cache.verify(fix=options.fix, progress=_progress_bar("verifying"))
    if options.json:
        _print_json({**asdict(report), "ok": report.ok})
    else:
        print(f"checked {report.records} records and {report.files} files in {cache.path}")
        for label, items in (
            ("rows whose file is missing", report.missing),
            ("rows whose file is damaged", report.damaged),
            ("files without a row", report.orphans),
            ("rows naming a storage not given (not checked; see --storage)", report.unchecked),
            ("temporary files of interrupted writes", report.temporary),
            ("SQLite integrity problems", report.integrity),
        ):
            if items:
                print(f"{len(items)} {label}:")
                for item in items[:20]:
                    print(f"  {item}")
                if len(items) > 20:
                    print(f"  ... and {len(items) - 20} more")
        if report.fixed:
            print("fixed: bad rows and stray files removed")
        elif report.ok:
            print("all is well")
        else:
            print("run `taskstash verify --fix` to remove them")
    return 0 if report.ok else 1


def _reindex(cache: Cache, options: argparse.Namespace) -> int:
    count = cache.reindex()
    if options.json:
        _print_json({"records": count, "index": cache.path})
    else:
        print(f"rebuilt {cache.path}: {count} records")
    return 0


# helpers --------------------------------------------------------------------------------------


def _report_removed(pruned: Pruned, options: argparse.Namespace, verb: str) -> None:
    if options.json:
        _print_json({"records": pruned.records, "bytes": pruned.bytes, "keys": pruned.keys})
    else:
        print(f"{verb} {pruned.records} records, {_size(pruned.bytes)}")


def _load_target(target: str) -> object:
    """`module:name` or `path/to/file.py:name`, imported (running the module, not the task)."""
    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise ValueError(f"{target!r} is not module:name or path/to/file.py:name")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {module_name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        sys.path.insert(0, str(path.parent))
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, "")
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"{module_name} has no {attribute!r}") from None


def _argument(text: str) -> tuple[str, object]:
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise ValueError(f"--arg {text!r} is not NAME=VALUE")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value  # not a Python literal: the plain string


def _record_json(record: Record) -> dict[str, Any]:
    return asdict(record)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _when(moment: float | None) -> str:
    if moment is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _progress_bar(label: str) -> Progress | None:
    """A progress bar on standard error for work over many records, if that is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
