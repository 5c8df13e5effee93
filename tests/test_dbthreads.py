"""
The store's threads (s3balance.store.dbthreads): calls run off the reactor,
results come back on it, several at a time when the reactor is behind.
"""

from __future__ import annotations

import threading

from twisted.trial.unittest import SynchronousTestCase

from s3balance.store.dbthreads import DatabaseThreads


class QueuedReactor:
    """callFromThread that only queues: the test plays the reactor's part."""

    def __init__(self) -> None:
        self.calls: list = []
        self.arrived = threading.Semaphore(0)

    def callFromThread(self, f, *args, **kwargs) -> None:
        self.calls.append((f, args, kwargs))
        self.arrived.release()

    def run_pending(self) -> int:
        calls, self.calls = self.calls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)
        return len(calls)


class DatabaseThreadsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = QueuedReactor()
        self.threads = DatabaseThreads(self.reactor, 1, "test-db")
        self.threads.start()
        self.addCleanup(self.threads.stop)

    def wait_for_wake(self) -> None:
        self.assertTrue(self.reactor.arrived.acquire(timeout=10), "no result was handed to the reactor")

    def test_results_and_errors_arrive_on_the_reactor(self) -> None:
        seen: list = []
        ran_on: list = []

        def work(value):
            ran_on.append(threading.current_thread().name)
            return value * 2

        self.threads.submit(work, 21).addCallback(seen.append)
        self.wait_for_wake()
        self.assertEqual(seen, [])  # nothing fires off the reactor
        self.reactor.run_pending()
        self.assertEqual(seen, [42])
        self.assertEqual(ran_on, ["test-db-0"])

        failures: list = []
        self.threads.submit(lambda: 1 / 0).addErrback(failures.append)
        self.wait_for_wake()
        self.reactor.run_pending()
        self.assertTrue(failures[0].check(ZeroDivisionError))

    def test_results_finished_while_the_reactor_is_busy_come_in_one_wake(self) -> None:
        gate = threading.Event()
        seen: list = []
        self.threads.submit(gate.wait, 10).addCallback(lambda _: seen.append("first"))
        for index in range(5):
            self.threads.submit(lambda i=index: i).addCallback(seen.append)
        gate.set()
        self.wait_for_wake()
        # The thread finishes all six before the reactor gets to them.
        self.threads.submit(lambda: None)
        self.threads.stop()
        self.assertEqual(self.reactor.run_pending(), 1)
        self.assertEqual(seen, ["first", 0, 1, 2, 3, 4])

    def test_stop_lets_queued_calls_finish(self) -> None:
        done: list = []
        for index in range(3):
            self.threads.submit(done.append, index)
        self.threads.stop()
        self.assertEqual(done, [0, 1, 2])
        self.assertFalse(self.threads.started)
