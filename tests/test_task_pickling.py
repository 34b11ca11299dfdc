"""Tasks and flows pickle with the standard library: by reference, or by value with their keys."""

from __future__ import annotations

import importlib
import multiprocessing
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cloudpickle
import pytest
import runner_support
from runner_support import Model, square, squares

from taskstash import Cached, Completed, flow, task
from taskstash.cache_policies import INPUTS
from taskstash.task_runners import ThreadPoolTaskRunner


def test_a_module_level_task_pickles_by_reference() -> None:
    data = pickle.dumps(square)
    assert pickle.loads(data) is square
    assert len(data) < 200  # a module and a name, not the function


def test_a_method_task_and_a_module_level_flow_pickle_by_reference() -> None:
    assert pickle.loads(pickle.dumps(Model.fit)) is Model.fit
    assert pickle.loads(pickle.dumps(squares)) is squares


def test_a_bound_method_task_pickles_with_its_instance() -> None:
    loaded = pickle.loads(pickle.dumps(Model().fit))
    assert loaded(1) == 2


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_process_pool_runs_a_task_and_shares_its_record(method: str) -> None:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as pool:
        in_child = pool.submit(square, 7).result()
        child_state = pool.submit(runner_support.run_task_here, 8).result()
    assert in_child == 49
    assert isinstance(child_state, Completed)
    # The children computed with this process's settings (inherited): the same keys.
    assert isinstance(square(7, return_state=True), Cached)
    assert isinstance(square(8, return_state=True), Cached)


def test_a_task_made_in_a_function_pickles_by_value_with_its_keys() -> None:
    def make(k: int) -> object:
        @task(cache_policy=INPUTS)
        def scale(x: int) -> int:
            return k * x

        return scale

    original = make(3)
    loaded = cloudpickle.loads(cloudpickle.dumps(original))
    assert loaded is not original
    assert loaded.source_key == original.source_key  # type: ignore[attr-defined]
    assert loaded.identity == original.identity  # type: ignore[attr-defined]
    assert loaded(2) == 6
    assert isinstance(original(2, return_state=True), Cached)  # type: ignore[operator]


def test_the_key_travels_where_the_source_cannot(tmp_path: Path) -> None:
    # Prefect's TASK_SOURCE says "source code not available" on a worker without the file and
    # keys the call differently there; taskstash's task carries the key captured at decoration.
    package = tmp_path / "shipped"
    package.mkdir()
    (package / "gone.py").write_text(
        textwrap.dedent(
            """
            from taskstash import task
            from taskstash.cache_policies import INPUTS, TASK_SOURCE

            @task(cache_policy=INPUTS + TASK_SOURCE)
            def triple(x):
                return 3 * x
            """
        )
    )
    sys.path.insert(0, str(package))
    try:
        gone = importlib.import_module("gone")
        cloudpickle.register_pickle_by_value(gone)
        try:
            data = cloudpickle.dumps(gone.triple)
        finally:
            cloudpickle.unregister_pickle_by_value(gone)
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("gone", None)
    (package / "gone.py").unlink()
    shipped = tmp_path / "task.pickle"
    shipped.write_bytes(data)
    script = (
        "import pickle, sys; t = pickle.load(open(sys.argv[1], 'rb')); "
        "print(type(t(5, return_state=True)).__name__, t(5))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script, str(shipped)], capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["Completed", "15"]
    loaded = pickle.loads(data)
    assert isinstance(loaded(5, return_state=True), Cached)


def test_a_flow_made_in_a_function_pickles_by_value_with_its_runner() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def local_flow(n: int) -> list[int]:
        return square.map(range(n)).result()

    loaded = cloudpickle.loads(cloudpickle.dumps(local_flow))
    assert loaded.task_runner == ThreadPoolTaskRunner(max_workers=3)
    assert loaded(3) == [0, 1, 4]


def test_a_started_runner_pickles_as_its_configuration() -> None:
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        copied = pickle.loads(pickle.dumps(runner))
    assert copied == runner
    with copied:
        assert copied.submit(square, {"x": 3}).result() == 9
