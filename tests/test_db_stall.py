"""
A metadata database that stops answering: calls fail after the request
timeout (a call still queued then never runs), the servers end statements
that run past the statement timeout, /health reports the database, and a
daemon answers 503 instead of hanging while the database stalls.

The stalls are real: a write lock held by another SQLite connection,
LOCK TABLE on PostgreSQL and MariaDB, and a TCP proxy in front of
PostgreSQL that stops moving bytes (tests/faultproxy.py).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from s3balance.config import ConfigError, parse_config
from s3balance.store.connector import MetadataStore
from s3balance.store.dbthreads import DatabaseThreads, Deadlines
from s3balance.store.interfaces import StoreUnavailable
from s3balance.store.probe import DatabaseProbe
from tests import dbfixtures
from tests.daemon import poll, start_gateway
from tests.faultproxy import FaultProxy

BUCKET = "vb"


async def wait_for(condition, timeout: float = 15.0, message: str = "") -> None:
    """Poll an async condition on the reactor until it holds (no sleeps in the test's thread)."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        await deferLater(reactor, 0.05)


def deferLater(reactor, seconds: float) -> Deferred:
    from twisted.internet.task import deferLater as later

    return later(reactor, seconds, lambda: None)


async def failure_of(d: Deferred) -> BaseException:
    try:
        await d
    except BaseException as error:
        return error
    raise AssertionError("the call succeeded")


class ConfigTests(unittest.SynchronousTestCase):
    BASE: dict[str, Any] = {
        "buckets": [{"name": "real", "endpoint": "http://x", "virtual": False}, {"name": "vvv", "virtual": True}],
        "s3api": {"auth_required": False},
    }

    def database(self, **values):
        return parse_config(dict(self.BASE, database=values)).database

    def test_timeouts_default_and_parse_as_durations(self):
        d = self.database()
        self.assertEqual((d.statement_timeout, d.connect_timeout, d.request_timeout), (10.0, 5.0, 10.0))
        d = self.database(statement_timeout="2s", connect_timeout=3, request_timeout="500ms")
        self.assertEqual((d.statement_timeout, d.connect_timeout, d.request_timeout), (2.0, 3.0, 0.5))
        self.assertEqual(self.database(request_timeout=0).request_timeout, 0.0)

    def test_a_bad_timeout_names_its_key(self):
        for key in ("statement_timeout", "connect_timeout", "request_timeout"):
            with self.assertRaises(ConfigError) as raised:
                self.database(**{key: "soon"})
            self.assertEqual(str(raised.exception), f"database.{key}: cannot parse 'soon' as a duration")


class CancelledCallTests(unittest.SynchronousTestCase):
    """DatabaseThreads: a call cancelled while queued is never run."""

    def test_cancelled_queued_call_never_runs(self):
        delivered: list = []

        class Reactor:
            def callFromThread(self, f, *args):
                delivered.append((f, args))

        pool = DatabaseThreads(Reactor(), 1, "test-db")
        pool.start()
        self.addCleanup(pool.stop)
        release, started = threading.Event(), threading.Event()
        ran: list[str] = []

        def blocking():
            started.set()
            release.wait(10)
            ran.append("first")

        first = pool.submit(blocking)
        second = pool.submit(ran.append, "second")
        self.assertTrue(started.wait(10))
        second.cancel()
        self.failureResultOf(second, defer.CancelledError)
        release.set()
        third = pool.submit(ran.append, "third")
        poll(lambda: len(ran) == 2, timeout=10)
        for f, args in list(delivered):
            f(*args)
        self.assertEqual(ran, ["first", "third"])
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(third))


class DeadlineTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock, 2.0, lambda: StoreUnavailable("too slow"))

    def test_a_call_not_answered_in_time_fails(self):
        late, answered = Deferred(), Deferred()
        self.deadlines.add(late)
        self.deadlines.add(answered)
        self.clock.advance(1.0)
        answered.callback("yes")
        self.clock.advance(0.9)
        self.assertNoResult(late)
        self.clock.advance(0.1)
        self.failureResultOf(late, StoreUnavailable)
        self.assertEqual(self.successResultOf(answered), "yes")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_each_call_gets_the_whole_timeout_with_one_timer(self):
        calls = []
        for _ in range(3):
            d: Deferred = Deferred()
            self.deadlines.add(d)
            calls.append(d)
            self.clock.advance(0.5)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.5)  # t = 2.0: the first one's deadline
        self.failureResultOf(calls[0], StoreUnavailable)
        self.assertNoResult(calls[1])
        self.clock.advance(0.5)
        self.failureResultOf(calls[1], StoreUnavailable)
        self.assertNoResult(calls[2])
        self.clock.advance(0.5)
        self.failureResultOf(calls[2], StoreUnavailable)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_call_made_when_one_fails_gets_its_own_timeout(self):
        first: Deferred = Deferred()
        retried: list[Deferred] = []
        first.addErrback(lambda _: retried.append(self.deadlines.add(Deferred())))
        self.deadlines.add(first)
        self.clock.advance(2.0)
        self.assertEqual(len(retried), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(2.0)
        self.failureResultOf(retried[0], StoreUnavailable)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_leaves_no_timer(self):
        self.deadlines.add(Deferred())
        self.deadlines.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ProbeTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.now = 100.0
        self.pings: list[Deferred] = []
        self.probe = DatabaseProbe(self.ping, clock=lambda: self.now, max_age=1.0)

    def ping(self) -> Deferred:
        d: Deferred = Deferred()
        self.pings.append(d)
        return d

    def test_one_probe_at_a_time_and_cached_for_max_age(self):
        self.assertEqual(self.probe.state(), {"up": True, "error": None})
        self.now += 5
        self.probe.state()
        self.assertEqual(len(self.pings), 1)  # still running: no second one
        self.pings[0].callback(None)
        self.now += 0.5
        self.probe.state()
        self.assertEqual(len(self.pings), 1)  # fresh
        self.now += 0.6
        self.probe.state()
        self.assertEqual(len(self.pings), 2)

    def test_a_failed_probe_reports_down_until_one_succeeds(self):
        self.probe.state()
        self.pings[0].errback(StoreUnavailable("the database did not answer within 1 s"))
        self.assertEqual(self.probe.state(), {"up": False, "error": "the database did not answer within 1 s"})
        self.now += 1
        self.probe.state()
        self.pings[1].callback(None)
        self.assertEqual(self.probe.state()["up"], True)


class SQLiteStallTests(unittest.TestCase):
    async def setUp(self):
        self.url = dbfixtures.sqlite_url(self)
        self.store = MetadataStore(self.url, statement_timeout=5, request_timeout=0.5)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.sync_config_buckets([BUCKET])

    def hold_write_lock(self) -> sqlite3.Connection:
        locker = sqlite3.connect(make_url(self.url).database, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")
        return locker

    async def test_calls_fail_fast_and_a_queued_one_never_runs(self):
        locker = self.hold_write_lock()
        try:
            started = time.monotonic()
            stuck = self.store.begin_write("b1", "vb/1", 60)  # waits for the lock on the database thread
            queued = self.store.create_bucket("queued-bucket")  # waits for the thread
            self.assertIsInstance(await failure_of(stuck), StoreUnavailable)
            self.assertIsInstance(await failure_of(queued), StoreUnavailable)
            self.assertLess(time.monotonic() - started, 3.0)
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        async def answers() -> bool:
            try:
                await self.store.ping()
                return True
            except StoreUnavailable:
                return False

        await wait_for(answers, message="the store did not answer again")
        self.assertIsNone(await self.store.get_bucket("queued-bucket"))

    async def test_probe_reports_a_database_that_does_not_answer(self):
        probe = self.store.probe
        probe._max_age = 0.0
        self.assertTrue(probe.state()["up"])
        locker = self.hold_write_lock()
        try:
            self.store.begin_write("b1", "vb/1", 60).addErrback(lambda _: None)

            async def down() -> bool:
                return not probe.state()["up"]

            await wait_for(down, message="the probe did not notice")
            self.assertIn("did not answer", probe.state()["error"])
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        async def up() -> bool:
            return probe.state()["up"]

        await wait_for(up, message="the probe did not see the database again")


class ServerStallMixin:
    """LOCK TABLE held by another session: the store fails fast, the server ends the statement."""

    kind: str

    async def setUp(self):
        self.url = dbfixtures.fresh_database(self, self.kind)
        self.store = MetadataStore(self.url, max_threads=2, statement_timeout=2, request_timeout=0.5)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.sync_config_buckets([BUCKET])

    def session_settings(self, conn) -> dict:
        raise NotImplementedError

    def lock_objects(self, conn) -> None:
        raise NotImplementedError

    def unlock(self, conn) -> None:
        conn.rollback()

    async def test_sessions_have_the_timeouts(self):
        settings = await self.store._read(self.session_settings)
        self.assertEqual(settings, self.expected_settings)

    async def test_a_locked_table_fails_fast_and_the_statement_ends(self):
        engine = create_engine(self.url)
        self.addCleanup(engine.dispose)
        locker = engine.connect()
        try:
            self.lock_objects(locker)
            started = time.monotonic()
            error = await failure_of(self.store.get_object(BUCKET, "k"))
            self.assertIsInstance(error, StoreUnavailable)
            self.assertLess(time.monotonic() - started, 1.9)
            # The server ends the waiting statement after 2 s: the thread is free again
            # (a call of its own answers, or fails with the statement's timeout).
            outcome = await failure_of(
                self.store._pool.submit(self.store._transaction, lambda conn: conn.execute(text("SELECT * FROM objects")).all())
            )
            self.assertIsInstance(outcome, StoreUnavailable)
        finally:
            self.unlock(locker)
            locker.close()
        self.assertIsNone(await self.store.get_object(BUCKET, "k"))


class PostgreSQLStallTests(ServerStallMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES
    expected_settings = {"statement_timeout": "2s"}

    def session_settings(self, conn) -> dict:
        return {"statement_timeout": conn.exec_driver_sql("SHOW statement_timeout").scalar()}

    def lock_objects(self, conn) -> None:
        conn.execute(text("BEGIN"))
        conn.execute(text("LOCK TABLE objects IN ACCESS EXCLUSIVE MODE"))


class MariaDBStallTests(ServerStallMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
    expected_settings = {"max_statement_time": 2.0, "innodb_lock_wait_timeout": 2, "lock_wait_timeout": 2}

    def session_settings(self, conn) -> dict:
        row = conn.exec_driver_sql(
            "SELECT @@SESSION.max_statement_time, @@SESSION.innodb_lock_wait_timeout, @@SESSION.lock_wait_timeout"
        ).one()
        return {"max_statement_time": float(row[0]), "innodb_lock_wait_timeout": int(row[1]), "lock_wait_timeout": int(row[2])}

    def lock_objects(self, conn) -> None:
        conn.exec_driver_sql("LOCK TABLES objects WRITE")

    def unlock(self, conn) -> None:
        conn.exec_driver_sql("UNLOCK TABLES")
        conn.rollback()


def health(gateway) -> tuple[int, dict]:
    import json

    try:
        with urllib.request.urlopen(f"{gateway.daemon.endpoint}/health", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


class DaemonStallTests(unittest.SynchronousTestCase):
    """A daemon whose database stalls answers 503 at once and says so on /health."""

    def assertUnavailable(self, f, **kwargs) -> float:
        started = time.monotonic()
        with self.assertRaises(ClientError) as raised:
            f(**kwargs)
        elapsed = time.monotonic() - started
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)
        if f.__name__ != "head_object":  # a HEAD answer has no body
            self.assertEqual(raised.exception.response["Error"]["Code"], "ServiceUnavailable")
        return elapsed

    def check_stall(self, gateway, stall, resume) -> None:
        s3 = gateway.client(read_timeout=30)
        bucket = gateway.new_bucket(s3)
        s3.put_object(Bucket=bucket, Key="before", Body=b"data")
        self.assertEqual(health(gateway)[0], 200)
        stall()
        try:
            elapsed = self.assertUnavailable(s3.put_object, Bucket=bucket, Key="during", Body=b"data")
            self.assertLess(elapsed, 6.0)  # request_timeout 1 s; far below the stall
            self.assertUnavailable(s3.head_object, Bucket=bucket, Key="before")
            poll(lambda: health(gateway)[0] == 503, timeout=15, message="/health did not report the database")
            code, document = health(gateway)
            self.assertEqual((document["status"], document["database"]["up"]), ("down", False))
        finally:
            resume()
        poll(lambda: health(gateway)[0] == 200, timeout=30, message="/health did not recover")
        self.assertEqual(s3.get_object(Bucket=bucket, Key="before")["Body"].read(), b"data")
        s3.put_object(Bucket=bucket, Key="after", Body=b"data")
        # The PUT answered 503 was not committed later.
        with self.assertRaises(ClientError):
            s3.head_object(Bucket=bucket, Key="during")

    def test_sqlite_write_lock(self):
        gateway = start_gateway(
            "stall-sqlite", database={"statement_timeout": "20s", "request_timeout": "1s"}
        )
        self.addCleanup(gateway.daemon.stop)
        path = gateway.daemon.config["database"]["dsn"]
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.addCleanup(locker.close)

        def stall():
            locker.execute("BEGIN IMMEDIATE")

        def resume():
            locker.execute("ROLLBACK")

        self.check_stall(gateway, stall, resume)

    def test_postgresql_behind_a_stalled_link(self):
        dbfixtures.require_server(dbfixtures.POSTGRES)
        url = make_url(dbfixtures.create_database(dbfixtures.POSTGRES))
        self.addCleanup(dbfixtures.drop_database, url.render_as_string(hide_password=False))
        proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
        self.addCleanup(proxy.close)
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        gateway = start_gateway(
            "stall-pg",
            database={"type": "postgres", "dsn": proxied, "statement_timeout": "5s", "request_timeout": "1s"},
        )
        # Runs before proxy.close (cleanups are last in, first out): the daemon's
        # threads must get their answers to stop.
        self.addCleanup(gateway.daemon.stop)
        self.addCleanup(proxy.resume)
        self.check_stall(gateway, proxy.stall, proxy.resume)
