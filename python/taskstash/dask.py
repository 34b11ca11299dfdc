"""Run submitted task calls on a Dask cluster: `DaskTaskRunner` (`pip install taskstash[dask]`).

    from taskstash import flow, task
    from taskstash.dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner(address="tcp://10.0.0.5:8786"))
    def pipeline(paths):
        return fit.map(paths).result()

Each call runs on a worker, which computes its key, looks it up and stores its record in the
storage and index *the worker* is configured with (its `TASKSTASH_*` variables or settings
file): point every worker at one storage (a shared directory, `s3://...`) and the cluster shares
one cache. What travels to the worker is the task (by reference when the worker can import it,
else by value with the source key and identity captured where it was decorated), the call's
arguments and the flow run (its id, name and parameters), so keys are the same on every worker
and on the machine that submitted. Futures among the arguments travel as Dask futures: a worker
takes their values from the workers that hold them.

Without `address` or `cluster`, the runner starts a `distributed.LocalCluster` for the flow run
and stops it at the end; it listens on 127.0.0.1 only (its HTTP server, and the dashboard
where bokeh is installed, on a free port of 127.0.0.1), unless `cluster_kwargs` say otherwise.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from taskstash.context import FlowRun, current_flow_run, inside_flow_run
from taskstash.futures import TaskFuture
from taskstash.states import Failed, State
from taskstash.submission import gather_upstream, run_submitted
from taskstash.task_runners import TaskRunner

if TYPE_CHECKING:
    from taskstash.tasks import Task

__all__ = ["DaskTaskFuture", "DaskTaskRunner"]

_LOOPBACK_DEFAULTS = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
"""What a LocalCluster the runner starts is given unless `cluster_kwargs` say otherwise: Dask's
own defaults serve the dashboard on every interface. A free port, not Dask's 8787: even with no
dashboard the scheduler serves HTTP there, and two clusters on one machine would collide."""


class DaskTaskFuture(TaskFuture[Any]):
    """A future of a call running on a Dask cluster: it wraps a `distributed.Future`.

    A worker that dies while running the call makes Dask run it again elsewhere (up to the
    scheduler's `allowed-failures`); after that the state is `Failed` with Dask's
    `KilledWorker`, which names the call.
    """

    def __init__(self, task_name: str, wrapped_future: Any) -> None:
        super().__init__(task_name)
        self.wrapped_future = wrapped_future
        """The `distributed.Future` of the call's final state."""

    def _final(self, timeout: float | None) -> State[Any] | None:
        wrapped = self.wrapped_future
        if timeout is not None and timeout <= 0:
            if not wrapped.done():
                return None
            # Done: fetch it however long that takes. Dask's `result(timeout=0)` times out even
            # on a finished future, which would leave `state` Pending for good.
            timeout = None
        try:
            state: State[Any] = wrapped.result(timeout=timeout)
        except TimeoutError:
            return None
        except Exception as exc:  # the cluster lost the call (KilledWorker, cancelled)
            return Failed(exc)
        return state

    def _on_done(self, fn: Callable[[], None]) -> None:
        self.wrapped_future.add_done_callback(lambda _: fn())


class DaskTaskRunner(TaskRunner[DaskTaskFuture]):
    """Runs submitted calls on the workers of a Dask cluster.

    Give at most one of `address` and `cluster`; with neither, a cluster is started for each
    flow run (`cluster_class`, a `distributed.LocalCluster` by default, made with
    `cluster_kwargs`) and stopped when it ends.

    Args:
        cluster: A running cluster object to connect to (not stopped by the runner).
        address: The address of a running scheduler (`tcp://host:8786`).
        cluster_class: The class (or its qualified name) of the cluster to start.
        cluster_kwargs: Its keyword arguments. A LocalCluster listens on 127.0.0.1 with no
            dashboard unless these set `host` or `dashboard_address`.
        client_kwargs: Keyword arguments of the `distributed.Client`.
    """

    def __init__(
        self,
        cluster: Any = None,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if address is not None and (cluster is not None or cluster_class or cluster_kwargs):
            raise ValueError("give address, or cluster, or cluster_class/cluster_kwargs; not both")
        if cluster is not None and (cluster_class or cluster_kwargs):
            raise ValueError("give cluster, or cluster_class/cluster_kwargs; not both")
        self.cluster = cluster
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.client: Any = None
        """The `distributed.Client` while the runner is started."""
        self._stack = ExitStack()
        self._futures: list[DaskTaskFuture] = []

    def duplicate(self) -> DaskTaskRunner:
        """A runner with the same configuration (and cluster object, if given), not started."""
        return type(self)(
            cluster=self.cluster,
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            client_kwargs=self.client_kwargs,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DaskTaskRunner):
            return False
        return (self.cluster, self.address, self.cluster_class, self.cluster_kwargs) == (
            other.cluster,
            other.address,
            other.cluster_class,
            other.cluster_kwargs,
        ) and self.client_kwargs == other.client_kwargs

    __hash__ = object.__hash__

    def __reduce__(self) -> tuple[Any, ...]:
        configuration = (self.cluster, self.address, self.cluster_class, self.cluster_kwargs)
        return (type(self), (*configuration, self.client_kwargs))

    def __enter__(self) -> DaskTaskRunner:
        import distributed

        super().__enter__()
        try:
            target: Any = self.address or self.cluster
            if target is None:
                target = self._stack.enter_context(self._start_cluster())
            client_kwargs = {"set_as_default": False, **self.client_kwargs}
            client = distributed.Client(target, **client_kwargs)  # type: ignore[no-untyped-call]
            self.client = self._stack.enter_context(client)
        except BaseException:
            self._stack.close()
            super().__exit__()
            raise
        return self

    def _start_cluster(self) -> Any:
        import distributed

        cluster_class: Any = self.cluster_class or distributed.LocalCluster
        if isinstance(cluster_class, str):
            module, _, name = cluster_class.rpartition(".")
            cluster_class = getattr(importlib.import_module(module), name)
        kwargs = dict(self.cluster_kwargs)
        if isinstance(cluster_class, type) and issubclass(cluster_class, distributed.LocalCluster):
            kwargs = {**_LOOPBACK_DEFAULTS, **kwargs}
        return cluster_class(**kwargs)

    def __exit__(self, *exc_info: object) -> None:
        try:
            # Each future keeps its final state: it is read after the client is gone.
            for future in self._futures:
                future.wait()
        finally:
            self._futures = []
            self.client = None
            self._stack.close()
            super().__exit__(*exc_info)

    def _submit(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None
    ) -> DaskTaskFuture:
        gathered, waits, upstream = gather_upstream(parameters, wait_for)
        dependencies: list[Any] = []
        for item in upstream:
            if isinstance(item, DaskTaskFuture) and item.wrapped_future.client is self.client:
                dependencies.append(item.wrapped_future)  # Dask hands the worker its value
            elif isinstance(item, TaskFuture):
                item.wait()  # a future of another runner: its state travels
                dependencies.append(item.state)
            else:
                dependencies.append(item)
        names = [item.task_name if isinstance(item, TaskFuture) else "?" for item in upstream]
        wrapped = self.client.submit(
            _run_on_worker,
            task,
            gathered,
            waits,
            dependencies,
            names,
            current_flow_run(),
            key=f"{task.name}-{uuid.uuid4().hex}",
            pure=False,
        )
        future = DaskTaskFuture(task.name, wrapped)
        self._futures.append(future)
        return future


def _run_on_worker(
    task: Task[Any, Any],
    parameters: dict[str, Any],
    waits: Any,
    states: list[State[Any]],
    names: list[str],
    flow_run: FlowRun | None,
) -> State[Any]:
    """Carries out a submitted call on a worker, inside the flow run it was submitted in."""
    if flow_run is None:
        return run_submitted(task, parameters, waits, states, names)
    with inside_flow_run(flow_run):
        return run_submitted(task, parameters, waits, states, names)
