"""``trial --jobs`` that keeps a module's tests on one worker when they share state.

``python -m tests.harness.trialrun [trial options] tests`` is ``trial`` with
one change to its parallel runner (``--jobs``): trial hands the tests out one
at a time from one queue, so every worker ends up running some tests of every
module, and a module whose tests share a lazily started daemon (see
``keep_module_together``) starts that daemon once in each worker.  Here the
tests of such a module form one group that a single worker runs from start to
end; the groups go out biggest first, then the other tests one by one in
trial's order, so the workers still finish together.

Without ``--jobs`` this is plain ``trial``.

It subclasses and wraps private parts of Twisted (``twisted.trial._dist``'s
``DistTrialRunner`` and ``WorkerReporter``); requirements/runtime.txt bounds
Twisted's version for it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.scripts import trial
from twisted.trial._dist.disttrial import DistTrialRunner
from twisted.trial.itrial import ITestCase

__all__ = ["GroupingDistTrialRunner", "keep_module_together", "main", "on_test_start", "schedule"]

_groups: dict[str, str] = {}


def keep_module_together(module: str, group: str | None = None) -> None:
    """Run the tests of ``module`` on one worker, one after the other.

    For a module whose tests share something costly that each worker would
    otherwise make for itself (a daemon started on first use).  Modules given
    the same ``group`` (default: the module's own name) form one group, for
    tests of several modules that share one daemon.  Call it while the module
    is imported: trial imports every test module before it schedules the
    first test.
    """
    _groups[module] = group or module


_test_start_hooks: list[Callable[[str], object]] = []


def on_test_start(hook: Callable[[str], object]) -> None:
    """Call ``hook`` with the module name of every test a worker starts from now on.

    Only in a worker of the parallel runner (``--jobs``), where one process
    runs one group after another: a module's shared daemon can be stopped as
    soon as the next group's first test starts, instead of idling to the end.
    """
    if not _test_start_hooks:
        _call_hooks_at_test_start()
    _test_start_hooks.append(hook)


def _call_hooks_at_test_start() -> None:
    from twisted.trial._dist.workerreporter import WorkerReporter

    start_test = WorkerReporter.startTest

    def startTest(self: WorkerReporter, test: Any) -> None:
        module = type(test).__module__
        for hook in list(_test_start_hooks):
            hook(module)
        start_test(self, test)

    WorkerReporter.startTest = startTest  # type: ignore[method-assign,assignment]


def _module_of(case: ITestCase) -> str:
    return type(case).__module__


def schedule(cases: Iterable[ITestCase], groups: Mapping[str, str] | None = None) -> list[list[ITestCase]]:
    """The order in which workers take tests: groups of tests, each run by one worker.

    ``groups`` names the group of some modules (default: as given to
    ``keep_module_together``); the tests of the modules of one group form
    one group, in trial's order.  The groups come first, the most tests
    first, and every other test is a group of its own after them, in trial's
    order.
    """
    if groups is None:
        groups = _groups
    grouped: dict[str, list[ITestCase]] = {}
    single: list[list[ITestCase]] = []
    for case in cases:
        group = groups.get(_module_of(case))
        if group is not None:
            grouped.setdefault(group, []).append(case)
        else:
            single.append([case])
    return sorted(grouped.values(), key=len, reverse=True) + single


class GroupingDistTrialRunner(DistTrialRunner):
    """A ``DistTrialRunner`` whose workers take a whole group of tests at a time (see ``schedule``).

    With ``$S3BALANCE_TEST_TIMES`` set to a path, it also writes there one
    line per test: the seconds it took, the worker's number and the test's id.
    """

    async def runAsync(self, suite: Any, untilFailure: bool = False) -> Any:
        # With no test, DistTrialRunner's run ends before the reactor starts;
        # stopping the reactor then fails and trial waits forever.  Starting
        # once the reactor runs makes an empty run end like any other.
        running: Deferred[None] = Deferred()
        self._reactor.callWhenRunning(running.callback, None)
        await running
        return await super().runAsync(suite, untilFailure)

    async def _driveWorker(self, result: Any, testCases: Iterable[ITestCase], worker: Any) -> None:
        # Every worker of one pass gets the same iterator of tests; the first
        # to come turns it into the shared queue of groups.
        queue = self._queue_for(testCases)
        number = self._worker_number(worker)
        while queue:
            group = queue.popleft()
            for case in group:
                if self._exitFirst and not result.original.wasSuccessful():
                    return
                started = time.monotonic()
                try:
                    await worker.run(case, result)
                except Exception:
                    result.original.addError(case, Failure())
                self._record_time(time.monotonic() - started, number, case)

    def _queue_for(self, testCases: Iterable[ITestCase]) -> deque[list[ITestCase]]:
        state = self.__dict__.setdefault("_grouping_queues", {})
        key = id(testCases)
        if key not in state:
            # The iterator is kept with its queue so that its id is not reused.
            state[key] = (testCases, deque(schedule(testCases)))
        queue: deque[list[ITestCase]] = state[key][1]
        return queue

    def _worker_number(self, worker: Any) -> int:
        numbers: dict[int, int] = self.__dict__.setdefault("_grouping_workers", {})
        return numbers.setdefault(id(worker), len(numbers))

    def _record_time(self, seconds: float, worker: int, case: ITestCase) -> None:
        path = os.environ.get("S3BALANCE_TEST_TIMES")
        if path:
            with open(path, "a") as times:
                times.write(f"{seconds:.3f} {worker} {case.id()}\n")


def main() -> None:
    """Run trial with ``GroupingDistTrialRunner`` as its ``--jobs`` runner."""
    # trial._makeRunner picks the runner class by this module-level name.
    trial.DistTrialRunner = GroupingDistTrialRunner  # type: ignore[misc]
    trial.run()


if __name__ == "__main__":
    # Run the copy that test modules import (tests.harness.trialrun), not
    # this __main__ one: keep_module_together must fill the set it reads.
    from tests.harness.trialrun import main as _main

    _main()
