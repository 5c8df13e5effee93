"""
A copy recorded by the replica, drain and rebalance jobs follows a lock
change made while it was copied (L{ObjectCopier.catch_up}).

PutObjectRetention and PutObjectLegalHold send a change to the copies the
store holds when it makes the change (read under the object's row lock,
tests/test_versions_store.py); a copy recorded after that reads the changed
version and catches up here.  The backend and the store are stand-ins: what
the backend copies of an Object Lock bucket really carry is
tests/test_backend_lock.py's.
"""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any, Optional

import attr
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from s3balance.backends.backend import BackendError
from s3balance.ops.move import ObjectCopier
from s3balance.store.interfaces import Location, ObjectRecord

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SOON = T0 + datetime.timedelta(days=1)
LATER = T0 + datetime.timedelta(days=30)
COPY = Location("locked", "vb/new-copy")


class RecordingBackend:
    def __init__(self, name: str, object_lock: bool = True, error: Optional[Exception] = None) -> None:
        self.name = name
        self.config = SimpleNamespace(object_lock=object_lock)
        self.error = error
        self.requests: list[tuple[str, str, bytes, bool]] = []

    def put_control(self, real_key: str, query: str, document: bytes, bypass: bool = False) -> Deferred[Any]:
        self.requests.append((real_key, query, document, bypass))
        return fail(self.error) if self.error is not None else succeed(None)


class Store:
    def __init__(self, current: Optional[ObjectRecord]) -> None:
        self.current = current
        self.asked: list[tuple[str, str, Optional[str]]] = []

    def get_version(self, bucket: str, key: str, version_id: Optional[str]) -> Deferred[Optional[ObjectRecord]]:
        self.asked.append((bucket, key, version_id))
        return succeed(self.current)


def version(**lock: Any) -> ObjectRecord:
    return ObjectRecord(
        bucket="vb", key="k", size=1, etag='"e"', last_modified=T0, content_type=None, headers={}, checksums={},
        locations=(Location("other", "vb/old-copy"),), id=7, version_id="v1", **lock,
    )


class CatchUpTests(SynchronousTestCase):
    def catch_up(self, copied: ObjectRecord, current: Optional[ObjectRecord], backend: RecordingBackend) -> Store:
        store = Store(current)
        gateway = SimpleNamespace(pool=SimpleNamespace(get={backend.name: backend}.get), store=store)
        self.successResultOf(ensureDeferred(ObjectCopier(gateway).catch_up(copied, COPY)))  # type: ignore[arg-type]
        return store

    def test_a_lengthened_retention_is_sent_to_the_copy(self) -> None:
        backend = RecordingBackend("locked")
        copied = version(lock_mode="GOVERNANCE", lock_until=SOON)
        store = self.catch_up(copied, attr.evolve(copied, lock_until=LATER), backend)
        self.assertEqual(store.asked, [("vb", "k", "v1")])
        [(real_key, query, document, bypass)] = backend.requests
        self.assertEqual((real_key, query, bypass), ("vb/new-copy", "retention=", False))
        self.assertIn(b"<Mode>GOVERNANCE</Mode><RetainUntilDate>2026-01-31T00:00:00.000Z</RetainUntilDate>", document)

    def test_a_retention_set_while_copying_an_unlocked_version(self) -> None:
        backend = RecordingBackend("locked")
        copied = version()
        self.catch_up(copied, attr.evolve(copied, lock_mode="COMPLIANCE", lock_until=LATER), backend)
        [(_, query, document, bypass)] = backend.requests
        self.assertEqual((query, bypass), ("retention=", False))
        self.assertIn(b"<Mode>COMPLIANCE</Mode>", document)

    def test_a_shortened_or_removed_governance_retention_is_sent_with_the_bypass(self) -> None:
        for now in ({"lock_until": SOON}, {"lock_mode": None, "lock_until": None}):
            backend = RecordingBackend("locked")
            copied = version(lock_mode="GOVERNANCE", lock_until=LATER)
            self.catch_up(copied, attr.evolve(copied, **now), backend)
            [(_, query, _, bypass)] = backend.requests
            self.assertEqual((query, bypass), ("retention=", True), now)

    def test_a_legal_hold_set_or_lifted_while_copying(self) -> None:
        for before, after, status in ((False, True, b"ON"), (True, False, b"OFF")):
            backend = RecordingBackend("locked")
            copied = version(legal_hold=before)
            self.catch_up(copied, attr.evolve(copied, legal_hold=after), backend)
            [(_, query, document, _)] = backend.requests
            self.assertEqual(query, "legal-hold=")
            self.assertIn(b"<Status>" + status + b"</Status>", document)

    def test_an_unchanged_lock_sends_nothing(self) -> None:
        backend = RecordingBackend("locked")
        copied = version(lock_mode="COMPLIANCE", lock_until=LATER, legal_hold=True)
        self.catch_up(copied, copied, backend)
        self.assertEqual(backend.requests, [])

    def test_a_backend_without_object_lock_is_not_asked(self) -> None:
        backend = RecordingBackend("locked", object_lock=False)
        copied = version()
        store = self.catch_up(copied, attr.evolve(copied, legal_hold=True), backend)
        self.assertEqual((store.asked, backend.requests), ([], []))

    def test_a_version_gone_meanwhile_sends_nothing(self) -> None:
        backend = RecordingBackend("locked")
        copied = version()
        self.catch_up(copied, None, backend)
        self.catch_up(copied, attr.evolve(copied, id=8, legal_hold=True), backend)
        self.assertEqual(backend.requests, [])

    def test_a_refusing_backend_is_logged_not_raised(self) -> None:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        backend = RecordingBackend("locked", error=BackendError("locked", 403, "AccessDenied", "denied"))
        copied = version()
        self.catch_up(copied, attr.evolve(copied, legal_hold=True), backend)
        self.assertEqual(len(backend.requests), 1)
        warned = [formatEvent(event) for event in events if event.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warned), 1, warned)
        self.assertIn("vb/k changed while it was copied to locked", warned[0])
        self.assertIn("403 AccessDenied", warned[0])

    def test_the_null_version_is_read_as_null(self) -> None:
        backend = RecordingBackend("locked")
        copied = attr.evolve(version(), version_id=None)
        store = self.catch_up(copied, copied, backend)
        self.assertEqual(store.asked, [("vb", "k", "null")])
