"""
The in-memory store (tests/fakestore.py) held to the real store's contract.

 - The store's behaviour tests (tests/test_store.py, test_store_listing.py,
   test_reservations.py) run on L{MemoryStore} too; the few that are about
   SQL (migrations, statements, threads, the listing's query plans) are
   skipped for it, each saying why.
 - L{StoreClockMixin}: leases by the database's clock and deletions by the
   daemon's, the same assertions on the fake (a L{Clock}, advanced) and on
   every database (short real waits for the database's clock; fractions of
   a second count, on MariaDB too: migration 0008).
 - L{StoreContractMixin}: what those tests leave out (part records, usage
   rows, atomic failures), on the fake and on every database.
 - L{UploadMarkersAndBucketsMixin}: ListMultipartUploads' markers when the
   marker upload ended between pages, max-uploads 0, uploads only into a
   bucket that exists; on the fake and on every database.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import itertools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import attr
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import (
    Deletion,
    IMetadataStore,
    ListPage,
    Location,
    MultipartRecord,
    NoSuchBucketError,
    ObjectRecord,
    PreconditionFailedError,
    WriteIntentExpired,
)
from s3balance.store.leases import LeaseState
from s3balance.store.parts import PartRecord
from tests import dbfixtures
from tests.fakestore import MemoryStore, MemoryTables
from tests.test_reservations import StoreReservationsMixin
from tests.test_store import BUCKET, T0, StoreBehaviourMixin, make_record
from tests.test_store_listing import ListingModelMixin, MultipartListingMixin, _property, row

# The mixins' base for the type checker: their tests use a TestCase's methods.
if TYPE_CHECKING:
    _TestCase = unittest.TestCase
    _SynchronousTestCase = unittest.SynchronousTestCase
else:
    _TestCase = _SynchronousTestCase = object


def not_for_the_fake(reason: str) -> Any:
    """A test method that trial skips, saying C{reason} (in place of a mixin's SQL-only test)."""

    def skipped(self) -> None:
        raise AssertionError("skipped tests do not run")

    skipped.skip = reason  # type: ignore[attr-defined]
    return skipped


def upload(upload_id: str, key: str, initiated: datetime.datetime = T0) -> MultipartRecord:
    return MultipartRecord(
        upload_id=upload_id,
        bucket=BUCKET,
        key=key,
        backend="b1",
        real_key=f"{BUCKET}/{upload_id}",
        backend_upload_id=f"backend-{upload_id}",
        initiated=initiated,
        content_type=None,
        headers={},
    )


# -- the store's behaviour tests on the fake ----------------------------------------


class MemoryStoreTests(StoreBehaviourMixin, unittest.TestCase):
    """
    tests/test_store.py's behaviour on the fake, with the same two clocks:
    the daemon's (C{self.now}, as there) and the database's (a Clock).
    """

    kind = "memory"

    async def setUp(self) -> None:  # type: ignore[override]  # trial waits for it
        self.now = T0
        self.clock = Clock()
        self.tables = MemoryTables()  # one database for every store of the test
        self.store = await self.start_store()
        await self.store.sync_config_buckets([BUCKET])

    async def start_store(self) -> MemoryStore:  # type: ignore[override]
        store = MemoryStore(clock=self.clock, now=lambda: self.now, tables=self.tables)
        await store.start()
        self.addCleanup(store.stop)
        return store

    test_migration_0003_indexes_real_keys_and_downgrades = not_for_the_fake(
        "Alembic migrations of a database"
    )
    test_migrated_schema_matches_tables = not_for_the_fake("the SQL schema against the migrations")
    test_delete_objects_runs_one_transaction = not_for_the_fake(
        "counts the store's SQL transactions (MetadataStore._run); each fake call is one step anyway"
    )
    test_concurrent_commits_to_one_key_leave_one_row_and_queue_the_rest = not_for_the_fake(
        "counts rows with SQL and races two thread pools; the fake runs one call at a time"
    )
    test_work_runs_off_the_reactor_thread = not_for_the_fake(
        "the store's thread pool; the fake answers on the caller's thread"
    )

    def test_methods_have_the_real_stores_signatures(self) -> None:
        """Names, kinds and defaults of every parameter, as callers of the real store use them."""
        verifyObject(IMetadataStore, self.store)
        for name in sorted(IMetadataStore.names()):
            if name == "url":
                continue
            real = inspect.signature(getattr(MetadataStore, name)).parameters.values()
            fake = inspect.signature(getattr(MemoryStore, name)).parameters.values()
            self.assertEqual(
                [(p.name, p.kind, p.default) for p in fake], [(p.name, p.kind, p.default) for p in real], name
            )

    def test_answers_have_fired_already(self) -> None:
        self.assertEqual([b.name for b in self.successResultOf(self.store.list_buckets())], [BUCKET])
        self.failureResultOf(self.store.create_bucket(BUCKET))


# -- the listing tests on the fake ----------------------------------------------------


class _MemoryListing(_SynchronousTestCase):
    """Listings on a fake store: what ListingModelMixin / MultipartListingMixin do with SQL."""

    def setUp(self) -> None:
        self.fresh_store()

    def fresh_store(self) -> None:
        self.store = MemoryStore(clock=Clock())
        self.answer(self.store.start())
        self.real_keys = itertools.count()

    def answer(self, d: Any) -> Any:
        return self.successResultOf(d)

    def connect(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class MemoryListingTests(_MemoryListing, ListingModelMixin, unittest.SynchronousTestCase):
    kind = "memory"
    methods = ("memory",)  # one way to walk a listing
    test_pages_concatenate_to_the_model_listing = _property(200)

    def store_keys(self, keys: Sequence[str]) -> None:
        self.fresh_store()
        self.insert_rows([row(key) for key in keys])

    def insert_rows(self, rows: list[dict]) -> None:
        for values in rows:
            record = ObjectRecord(
                bucket=values["bucket"],
                key=bytes(values["key"]).decode("utf-8"),
                size=values["size"],
                etag=values["etag"],
                last_modified=values["last_modified"],
                content_type=values["content_type"],
                headers=json.loads(values["headers"]),
                checksums=json.loads(values["checksums"]),
                locations=(Location("b1", f"real/{next(self.real_keys)}"),),
            )
            if self.answer(self.store.get_bucket(record.bucket)) is None:
                self.answer(self.store.create_bucket(record.bucket))
            intent = self.answer(self.store.begin_write("b1", record.locations[0].real_key, 60))
            self.answer(self.store.commit_object(intent.id, record))

    def list_page(
        self, conn: None, prefix: str, delimiter: str, after: str, max_keys: int, method: Optional[str] = None
    ) -> ListPage:
        return self.answer(self.store.list_objects(BUCKET, prefix, delimiter, after, max_keys))

    test_default_method = not_for_the_fake("which SQL walk a database takes")
    test_common_prefixes_are_skipped_not_read = not_for_the_fake("counts SQL statements and rows read")
    test_page_of_files_is_a_range_query = not_for_the_fake("counts SQL statements and rows read")
    test_common_prefix_written_after_the_keys_were_read = not_for_the_fake(
        "a race between the two statements of the SQL walk (listing._Scan)"
    )


class MemoryMultipartListingTests(_MemoryListing, MultipartListingMixin, unittest.SynchronousTestCase):
    kind = "memory"

    def start_uploads(self, keys: Sequence[str]) -> None:
        if self.answer(self.store.get_bucket(BUCKET)) is None:  # uploads need their bucket
            self.answer(self.store.create_bucket(BUCKET))
        for n, key in enumerate(keys):
            # The rows MultipartListingMixin.start_uploads inserts.
            record = attr.evolve(upload(f"u{n:04}", key), real_key=f"vb/{n}", backend_upload_id=f"bu{n}")
            self.answer(self.store.create_multipart(record))

    def list_uploads_page(
        self, conn: None, prefix: str, delimiter: str, key_marker: str, id_marker: str, max_uploads: int
    ) -> ListPage:
        return self.answer(
            self.store.list_multipart_page(BUCKET, prefix, delimiter, key_marker, id_marker, max_uploads)
        )

    test_a_loop_that_makes_no_progress_is_an_error_not_a_hang = not_for_the_fake(
        "the SQL scan's guard against a successor() that goes nowhere"
    )


class MemoryStoreReservations(StoreReservationsMixin, unittest.TestCase):
    kind = "memory"

    async def setUp(self) -> None:  # type: ignore[override]  # trial waits for it
        self.clock = Clock()
        self.tables = MemoryTables()
        self.store = await self.start_store()

    async def start_store(self) -> MemoryStore:  # type: ignore[override]
        store = MemoryStore(clock=self.clock, tables=self.tables)
        await store.start()
        self.addCleanup(store.stop)
        return store


# -- the fake and the databases, by the same tests ------------------------------------


class _Helpers(_TestCase):
    """What the mixins below use; L{OnMemoryStore} and L{OnDatabase} provide the store and its clocks."""

    store: Any

    def new_store(self, deletion_grace: float = 0.0) -> Any:
        """Another store (not started) on the test's database."""
        raise NotImplementedError

    async def start_store(self, deletion_grace: float = 0.0) -> Any:
        """Another store, started, on the test's database (stopped when the test ends)."""
        raise NotImplementedError

    async def wait(self, seconds: float) -> None:
        """Let C{seconds} pass on the database's clock and the daemon's (short: databases wait for real)."""
        raise NotImplementedError

    def skip_ahead(self, seconds: float) -> None:
        """Move the daemon's clock on by C{seconds} (time judged by the database's may move too, or not)."""
        raise NotImplementedError

    async def put(self, key: str, real_key: str, store: Any = None, **kw: Any) -> ObjectRecord:
        store = store or self.store
        intent = await store.begin_write(kw.get("backend", "b1"), real_key, 60)
        return await store.commit_object(intent.id, make_record(key, real_key, **kw))

    async def due(self) -> list[tuple[str, str, str, int]]:
        """The deletions due now by the daemon's clock: (backend, real key, reason, attempts)."""
        queued = await self.store.queued_deletions(limit=1000)
        return sorted((q.backend, q.real_key, q.reason, q.attempts) for q in queued)


class OnMemoryStore(_Helpers):
    """
    The fake with one Clock, as a test of code that uses it would have it:
    the database's time and (by default) the daemon's are the Clock's.
    """

    async def setUp(self) -> None:  # type: ignore[override]  # trial waits for it
        self.clock = Clock()
        self.tables = MemoryTables()
        self.store = await self.start_store()
        await self.store.sync_config_buckets([BUCKET])

    def new_store(self, deletion_grace: float = 0.0) -> MemoryStore:
        return MemoryStore(clock=self.clock, tables=self.tables, deletion_grace=deletion_grace)

    async def start_store(self, deletion_grace: float = 0.0) -> MemoryStore:
        store = self.new_store(deletion_grace)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def wait(self, seconds: float) -> None:
        """Time passes: on the database's clock and on the daemon's."""
        self.clock.advance(seconds)

    def skip_ahead(self, seconds: float) -> None:
        """The daemon's clock jumps (the fake's one clock: so does its database's)."""
        self.clock.advance(seconds)


class OnDatabase(_Helpers):
    """
    The real store on a fresh database of C{kind}: the daemon's clock is
    C{self.now}; the database's is real, so L{wait} waits for real.
    """

    kind: str

    async def setUp(self) -> None:  # type: ignore[override]  # trial waits for it
        self.now = T0
        self.url = dbfixtures.store_database(self, self.kind)
        self.store = await self.start_store()
        await self.store.sync_config_buckets([BUCKET])

    def new_store(self, deletion_grace: float = 0.0) -> MetadataStore:
        return MetadataStore(self.url, max_threads=4, now=lambda: self.now, deletion_grace=deletion_grace)

    async def start_store(self, deletion_grace: float = 0.0) -> MetadataStore:
        store = self.new_store(deletion_grace)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def wait(self, seconds: float) -> None:
        await deferLater(reactor, seconds, lambda: None)
        self.now += datetime.timedelta(seconds=seconds)

    def skip_ahead(self, seconds: float) -> None:
        """Only the daemon's clock: the database's can't be moved (tests use it for daemon-clock matters only)."""
        self.now += datetime.timedelta(seconds=seconds)


class StoreClockMixin(_Helpers):
    """
    Leases run on the database's clock (L{wait}: short, the real store waits
    them out), queued deletions and completed uploads on the daemon's
    (L{skip_ahead}).  About 1.3 s of real waiting per lease test on a database.
    """

    LEASE = 0.8  # seconds; the margins for a slow machine are LEASE / 2 - 0.1

    async def test_an_intent_whose_lease_ran_out_is_swept_and_may_not_commit(self) -> None:
        short = await self.store.begin_write("b1", "vb/short", self.LEASE)
        renewed = await self.store.begin_write("b1", "vb/renewed", self.LEASE)
        long = await self.store.begin_write("b1", "vb/long", 60)
        await self.wait(self.LEASE / 2)
        await self.store.renew_write(renewed.id, self.LEASE)  # until 1.5 LEASE
        self.assertEqual(await self.store.expired_writes(), 0)
        await self.wait(self.LEASE / 2 + 0.1)  # past the first lease, not the renewed one
        self.assertEqual(await self.store.expired_writes(), 1)
        self.assertEqual(await self.due(), [("b1", "vb/short", "lease-expired", 0)])
        self.assertFalse(await self.store.is_referenced("b1", "vb/short"))
        await self.assertFailure(self.store.renew_write(short.id, 60), WriteIntentExpired)
        await self.assertFailure(
            self.store.commit_object(short.id, make_record("k", "vb/short")), WriteIntentExpired
        )
        await self.wait(self.LEASE / 2)  # past the renewed lease
        self.assertEqual(await self.store.expired_writes(limit=5), 1)
        await self.store.commit_object(long.id, make_record("k", "vb/long"))
        self.assertEqual(await self.store.expired_writes(), 0)
        self.assertEqual([d[1] for d in await self.due()], ["vb/renewed", "vb/short"])

    async def test_a_job_lease_goes_to_another_holder_once_it_ran_out(self) -> None:
        self.assertTrue(await self.store.acquire_lease("job", "a", self.LEASE))
        self.assertFalse(await self.store.acquire_lease("job", "b", self.LEASE))
        await self.wait(self.LEASE / 2)
        self.assertTrue(await self.store.acquire_lease("job", "a", self.LEASE))  # renewed until 1.5 LEASE
        await self.wait(self.LEASE / 2 + 0.1)  # past the first term, not the renewed one
        self.assertFalse(await self.store.acquire_lease("job", "b", self.LEASE))
        self.assertEqual(await self.store.lease_state("job"), LeaseState("job", "a", True))
        await self.wait(self.LEASE / 2)
        self.assertEqual(await self.store.lease_state("job"), LeaseState("job", "a", False))
        self.assertTrue(await self.store.acquire_lease("job", "b", 60))
        self.assertEqual(await self.store.lease_state("job"), LeaseState("job", "b", True))
        self.assertFalse(await self.store.acquire_lease("job", "a", self.LEASE))
        self.assertFalse(await self.store.release_lease("job", "a"))
        self.assertTrue(await self.store.release_lease("job", "b"))
        self.assertIsNone(await self.store.lease_state("job"))

    async def test_a_deletion_retried_later_is_due_after_its_delay(self) -> None:
        await self.put("k", "vb/1")
        await self.store.delete_object(BUCKET, "k")
        [queued] = await self.store.queued_deletions()
        await self.store.retry_deletion_later(queued.id, 300)
        self.assertEqual(await self.due(), [])
        self.skip_ahead(299)
        self.assertEqual(await self.due(), [])
        self.skip_ahead(2)
        [again] = await self.store.queued_deletions()
        self.assertEqual((again.id, again.attempts, again.reason), (queued.id, 1, "deleted"))
        await self.store.retry_deletion_later(again.id, 60)
        self.skip_ahead(61)
        self.assertEqual(await self.due(), [("b1", "vb/1", "deleted", 2)])
        await self.store.finish_deletion(again.id)
        self.skip_ahead(86400)
        self.assertEqual(await self.due(), [])

    async def test_postponed_deletions_of_a_backend_are_due_after_the_delay(self) -> None:
        for backend, real_key in [("down", "vb/d1"), ("down", "vb/d2"), ("up", "vb/u1")]:
            intent = await self.store.begin_write(backend, real_key, 60)
            await self.store.abandon_write(intent.id, True)
        self.assertEqual(await self.store.postpone_deletions("down", 60), 2)
        self.assertEqual(await self.store.postpone_deletions("down", 60), 0)  # none is due now
        self.assertEqual(await self.due(), [("up", "vb/u1", "abandoned", 0)])
        self.skip_ahead(59)
        self.assertEqual(len(await self.due()), 1)
        self.skip_ahead(2)
        self.assertEqual(
            await self.due(),
            [
                ("down", "vb/d1", "abandoned", 0),
                ("down", "vb/d2", "abandoned", 0),
                ("up", "vb/u1", "abandoned", 0),
            ],
        )

    async def test_replaced_and_deleted_copies_wait_out_the_deletion_grace(self) -> None:
        store = await self.start_store(deletion_grace=30)
        await self.put("k", "vb/1", store=store)
        await self.put("k", "vb/2", store=store)
        await self.put("gone", "vb/3", store=store)
        await store.delete_object(BUCKET, "gone")
        intent = await store.begin_write("b1", "vb/abandoned", 60)
        await store.abandon_write(intent.id, True)
        self.assertEqual(await self.due(), [("b1", "vb/abandoned", "abandoned", 0)])  # no grace
        self.skip_ahead(29)
        self.assertEqual(len(await self.due()), 1)
        self.skip_ahead(2)
        self.assertEqual(
            [d[1:3] for d in await self.due()],
            [("vb/1", "replaced"), ("vb/3", "deleted"), ("vb/abandoned", "abandoned")],
        )

    async def test_a_completed_upload_is_remembered_for_twelve_hours(self) -> None:
        await self.store.create_multipart(upload("u1", "big"))
        await self.store.complete_multipart("u1", make_record("big", "vb/u1", etag='"x-2"'))
        done = await self.store.completed_upload("u1")
        self.assertEqual((done.upload_id, done.bucket, done.key, done.etag), ("u1", BUCKET, "big", '"x-2"'))
        self.skip_ahead(12 * 3600 - 1)
        self.assertIsNotNone(await self.store.completed_upload("u1"))
        self.skip_ahead(2)
        self.assertIsNone(await self.store.completed_upload("u1"))


class StoreContractMixin(_Helpers):
    """What the behaviour tests leave out, on the fake and on every database."""

    async def test_listed_records_are_the_stored_ones_without_locations(self) -> None:
        stored = await self.put("dir/k", "vb/1", headers={"x-amz-meta-a": "ä"}, checksums={})
        page = await self.store.list_objects(BUCKET, prefix="dir/")
        self.assertEqual(page.entries, (attr.evolve(stored, locations=()),))
        self.assertEqual(await self.store.get_object(BUCKET, "dir/k"), stored)

    async def test_a_store_answers_only_while_started(self) -> None:
        store = self.new_store()
        self.addCleanup(store.stop)
        await self.assertFailure(store.list_buckets(), RuntimeError)
        await store.start()
        self.assertEqual([b.name for b in await store.list_buckets()], [BUCKET])
        await store.stop()
        await self.assertFailure(store.get_object(BUCKET, "k"), RuntimeError)

    async def test_delete_objects_answers_for_each_distinct_key_in_byte_order(self) -> None:
        for key in ["z", "é", "a"]:
            await self.put(key, f"vb/{key}", etag=f'"{key}"')
        done = await self.store.delete_objects(BUCKET, [(key, None) for key in ["z", "é", "a", "missing", "a"]])
        self.assertEqual([key for key, _ in done], ["a", "missing", "z", "é"])
        self.assertEqual([d.removed.etag if d.removed else None for d in done.values()], ['"a"', None, '"z"', '"é"'])
        self.assertEqual([d[1] for d in await self.due()], ["vb/a", "vb/z", "vb/é"])

    async def test_part_records_are_replaced_and_go_with_their_upload(self) -> None:
        await self.store.create_multipart(upload("u1", "big"))
        await self.store.record_part_checksums("u1", 2, 5, '"b"', {"crc32": "BBBBBB=="})
        await self.store.record_part_checksums("u1", 1, 5, '"a"', {})
        await self.store.record_part_checksums("u1", 1, 6, '"c"', {"crc32": "CCCCCC=="})  # sent again
        received = await self.store.multipart_parts("u1")
        self.assertEqual(
            received,
            [PartRecord(1, 6, '"c"', {"crc32": "CCCCCC=="}), PartRecord(2, 5, '"b"', {"crc32": "BBBBBB=="})],
        )
        # A Complete refused by its precondition changes nothing.
        await self.put("big", "vb/old")
        record = make_record("big", "vb/u1", etag='"x-2"')
        await self.assertFailure(
            self.store.complete_multipart("u1", record, if_none_match="*", object_parts=received),
            PreconditionFailedError,
        )
        self.assertEqual(await self.store.multipart_parts("u1"), received)
        self.assertIsNotNone(await self.store.get_multipart("u1"))
        self.assertIsNone(await self.store.completed_upload("u1"))

        await self.store.complete_multipart("u1", record, object_parts=received)
        self.assertEqual(await self.store.multipart_parts("u1"), [])
        # The object's parts are kept by its real key, without their ETags.
        first, truncated = await self.store.object_parts_page("vb/u1", 0, 1)
        self.assertEqual((first, truncated), ([PartRecord(1, 6, "", {"crc32": "CCCCCC=="})], True))
        self.assertEqual(
            await self.store.object_parts_page("vb/u1", 1, 10),
            ([PartRecord(2, 5, "", {"crc32": "BBBBBB=="})], False),
        )
        # A deletion of that real key while an object refers to it keeps them.
        twin = await self.store.begin_write("b1", "vb/u1", 60)
        await self.store.abandon_write(twin.id, True)
        for deletion in await self.store.queued_deletions():
            await self.store.finish_deletion(deletion.id)
        self.assertEqual(len((await self.store.object_parts_page("vb/u1", 0, 10))[0]), 2)
        await self.store.delete_object(BUCKET, "big")
        [deletion] = await self.store.queued_deletions()
        await self.store.finish_deletion(deletion.id)
        self.assertEqual(await self.store.object_parts_page("vb/u1", 0, 10), ([], False))

    async def test_usage_rows_are_added_to_and_reconciled_with_the_locations(self) -> None:
        await self.put("a", "vb/a", size=100)
        await self.put("b", "vb/b", size=20)
        await self.put("c", "vb/c", backend="b2", size=7)
        rows = [("b1", 120, 2), ("b2", 7, 1)]
        self.assertEqual(
            [(u.backend, u.used_bytes, u.object_count) for u in await self.store.backend_usage()], rows
        )
        self.assertEqual(await self.store.stored_backend_usage(), [])  # commits leave the stored rows alone
        added = await self.store.add_backend_usage({"b3": (0, 0), "b1": (5, 1)})
        self.assertEqual([(u.backend, u.used_bytes, u.object_count) for u in added], [("b1", 5, 1)])
        reconciled = await self.store.reconcile_backend_usage()
        self.assertEqual([(u.backend, u.used_bytes, u.object_count) for u in reconciled], rows)
        self.assertEqual(await self.store.stored_backend_usage(), reconciled)

    async def test_uploads_are_listed_in_pages_with_common_prefixes(self) -> None:
        for n, key in enumerate(["c/x", "a/1", "b", "a/2", "b"]):
            await self.store.create_multipart(upload(f"u{n}", key, T0 + datetime.timedelta(seconds=n)))
        page = await self.store.list_multipart_page(BUCKET, delimiter="/", max_uploads=2)
        self.assertEqual((page.entries[0], page.entries[1].upload_id), ("a/", "u2"))
        self.assertEqual((page.is_truncated, page.next_marker), (True, "b"))
        page = await self.store.list_multipart_page(
            BUCKET, delimiter="/", key_marker="b", upload_id_marker="u2", max_uploads=2
        )
        self.assertEqual((page.entries[0].upload_id, page.entries[1]), ("u4", "c/"))
        self.assertEqual((page.is_truncated, page.next_marker), (False, None))
        listed = await self.store.list_multipart(BUCKET, key_marker="a/2", max_uploads=2)
        self.assertEqual([r.upload_id for r in listed], ["u2", "u4"])


class TagsMixin(_Helpers):
    """Tags go with an object's version, its multipart upload and its bucket; on the fake and on every database."""

    TAGS = (("a", "1"), ("k&=%+ é", "v/ \U0001f600:@"), ("empty", ""))

    async def test_an_objects_tags_are_stored_sorted_and_go_with_an_overwrite(self) -> None:
        stored = await self.put("k", "vb/1", tags=self.TAGS)
        self.assertEqual(stored.tags, tuple(sorted(self.TAGS)))
        self.assertEqual((await self.store.get_object(BUCKET, "k")).tags, tuple(sorted(self.TAGS)))
        await self.put("k", "vb/2")
        self.assertEqual((await self.store.get_object(BUCKET, "k")).tags, ())

    async def test_setting_tags_changes_nothing_else(self) -> None:
        stored = await self.put("k", "vb/1", tags=(("old", "x"),))
        self.assertTrue(await self.store.set_object_tags(BUCKET, "k", self.TAGS))
        found = await self.store.get_object(BUCKET, "k")
        self.assertEqual(found, attr.evolve(stored, tags=tuple(sorted(self.TAGS))))
        self.assertTrue(await self.store.set_object_tags(BUCKET, "k", ()))
        self.assertEqual(await self.store.get_object(BUCKET, "k"), attr.evolve(stored, tags=()))
        self.assertEqual(await self.due(), [])

    async def test_tags_of_a_missing_object_are_not_set(self) -> None:
        self.assertFalse(await self.store.set_object_tags(BUCKET, "missing", self.TAGS))
        self.assertIsNone(await self.store.get_object(BUCKET, "missing"))

    async def test_listings_leave_tags_out_and_a_delete_takes_them(self) -> None:
        await self.put("k", "vb/1", tags=self.TAGS)
        page = await self.store.list_objects(BUCKET)
        self.assertEqual([entry.tags for entry in page.entries], [()])
        await self.store.delete_object(BUCKET, "k")
        await self.put("k", "vb/2")
        self.assertEqual((await self.store.get_object(BUCKET, "k")).tags, ())

    async def test_a_moved_or_replicated_object_keeps_its_tags(self) -> None:
        await self.put("k", "vb/1", tags=self.TAGS)
        await self.store.start_drain("b1")
        (candidate,) = await self.store.drain_candidates("b1", 0, 10)
        self.assertEqual(candidate.record.tags, tuple(sorted(self.TAGS)))
        intent = await self.store.begin_write("b2", "vb/moved", 60)
        self.assertEqual(await self.store.switch_location(intent.id, candidate, Location("b2", "vb/moved")), "moved")
        moved = await self.store.get_object(BUCKET, "k")
        self.assertEqual((moved.locations, moved.tags), ((Location("b2", "vb/moved"),), tuple(sorted(self.TAGS))))
        intent = await self.store.begin_write("b3", "vb/copy", 60)
        added = await self.store.add_location(intent.id, moved, Location("b2", "vb/moved"), Location("b3", "vb/copy"))
        self.assertEqual(added, "added")
        self.assertEqual((await self.store.get_object(BUCKET, "k")).tags, tuple(sorted(self.TAGS)))

    async def test_a_multipart_upload_keeps_its_tags_until_complete(self) -> None:
        await self.store.create_multipart(attr.evolve(upload("u1", "big"), tags=self.TAGS))
        self.assertEqual((await self.store.get_multipart("u1")).tags, tuple(sorted(self.TAGS)))
        self.assertEqual([u.tags for u in await self.store.list_multipart(BUCKET)], [tuple(sorted(self.TAGS))])
        await self.store.create_multipart(upload("u2", "plain"))
        self.assertEqual((await self.store.get_multipart("u2")).tags, ())

    async def test_a_buckets_tags_are_set_and_removed(self) -> None:
        self.assertEqual((await self.store.get_bucket(BUCKET)).tags, ())
        self.assertTrue(await self.store.set_bucket_tags(BUCKET, self.TAGS))
        self.assertEqual((await self.store.get_bucket(BUCKET)).tags, tuple(sorted(self.TAGS)))
        self.assertEqual([b.tags for b in await self.store.list_buckets()], [tuple(sorted(self.TAGS))])
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual((await self.store.get_bucket(BUCKET)).tags, tuple(sorted(self.TAGS)))
        self.assertTrue(await self.store.set_bucket_tags(BUCKET, ()))
        self.assertEqual((await self.store.get_bucket(BUCKET)).tags, ())
        self.assertFalse(await self.store.set_bucket_tags("missing", self.TAGS))

    async def test_a_deleted_buckets_tags_go_with_it(self) -> None:
        await self.store.create_bucket("api-bucket")
        await self.store.set_bucket_tags("api-bucket", self.TAGS)
        await self.store.delete_bucket("api-bucket")
        self.assertEqual((await self.store.create_bucket("api-bucket")).tags, ())
        self.assertEqual((await self.store.get_bucket("api-bucket")).tags, ())


class ACLsMixin(_Helpers):
    """
    ACLs (s3.acl.dump's text, None: private) go with an object's version,
    its multipart upload and its bucket, as tags do; on the fake and on
    every database.
    """

    # An ACL of 100 grants (S3's most) fits the column on every database.
    ACL = "[" + ",".join(f'["CanonicalUser","{n:012d}","READ"]' for n in range(100)) + "]"

    async def test_an_objects_acl_is_stored_and_goes_with_an_overwrite(self) -> None:
        stored = await self.put("k", "vb/1", acl=self.ACL)
        self.assertEqual(stored.acl, self.ACL)
        self.assertEqual((await self.store.get_object(BUCKET, "k")).acl, self.ACL)
        await self.put("k", "vb/2")
        self.assertIsNone((await self.store.get_object(BUCKET, "k")).acl)

    async def test_setting_an_acl_changes_nothing_else(self) -> None:
        stored = await self.put("k", "vb/1", tags=(("a", "1"),))
        self.assertTrue(await self.store.set_object_acl(BUCKET, "k", self.ACL))
        self.assertEqual(await self.store.get_object(BUCKET, "k"), attr.evolve(stored, acl=self.ACL))
        self.assertTrue(await self.store.set_object_acl(BUCKET, "k", None))
        self.assertEqual(await self.store.get_object(BUCKET, "k"), stored)
        self.assertFalse(await self.store.set_object_acl(BUCKET, "missing", self.ACL))
        self.assertEqual(await self.due(), [])

    async def test_listings_leave_acls_out(self) -> None:
        await self.put("k", "vb/1", acl=self.ACL)
        page = await self.store.list_objects(BUCKET)
        self.assertEqual([entry.acl for entry in page.entries], [None])

    async def test_a_multipart_upload_keeps_its_acl_until_complete(self) -> None:
        await self.store.create_multipart(attr.evolve(upload("u1", "big"), acl=self.ACL))
        self.assertEqual((await self.store.get_multipart("u1")).acl, self.ACL)
        await self.store.create_multipart(upload("u2", "plain"))
        self.assertIsNone((await self.store.get_multipart("u2")).acl)

    async def test_a_buckets_acl_is_created_set_and_removed(self) -> None:
        self.assertIsNone((await self.store.get_bucket(BUCKET)).acl)
        self.assertTrue(await self.store.set_bucket_acl(BUCKET, self.ACL))
        self.assertEqual((await self.store.get_bucket(BUCKET)).acl, self.ACL)
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual([b.acl for b in await self.store.list_buckets()], [self.ACL])
        self.assertTrue(await self.store.set_bucket_acl(BUCKET, None))
        self.assertIsNone((await self.store.get_bucket(BUCKET)).acl)
        self.assertFalse(await self.store.set_bucket_acl("missing", self.ACL))
        created = await self.store.create_bucket("api-bucket", "111111111111", self.ACL)
        self.assertEqual(created.acl, self.ACL)
        self.assertEqual((await self.store.get_bucket("api-bucket")).acl, self.ACL)
        await self.store.delete_bucket("api-bucket")
        self.assertIsNone((await self.store.create_bucket("api-bucket")).acl)


class OwnersMixin(_Helpers):
    """A bucket's owning account: recorded by CreateBucket, changed by the admin API, kept by config syncs."""

    async def test_a_created_bucket_records_its_owner(self) -> None:
        created = await self.store.create_bucket("owned", owner="111111111111")
        self.assertEqual(created.owner, "111111111111")
        self.assertEqual((await self.store.get_bucket("owned")).owner, "111111111111")
        listed = {b.name: b.owner for b in await self.store.list_buckets()}
        self.assertEqual(listed["owned"], "111111111111")

    async def test_a_bucket_without_owner_reads_none(self) -> None:
        self.assertIsNone((await self.store.create_bucket("plain")).owner)
        self.assertIsNone((await self.store.get_bucket("plain")).owner)
        self.assertIsNone((await self.store.get_bucket(BUCKET)).owner)

    async def test_the_owner_is_set_and_cleared(self) -> None:
        await self.store.create_bucket("moved", owner="111111111111")
        self.assertTrue(await self.store.set_bucket_owner("moved", "222222222222"))
        self.assertEqual((await self.store.get_bucket("moved")).owner, "222222222222")
        self.assertTrue(await self.store.set_bucket_owner("moved", None))
        self.assertIsNone((await self.store.get_bucket("moved")).owner)
        self.assertFalse(await self.store.set_bucket_owner("missing", "111111111111"))

    async def test_config_syncs_keep_the_owner_and_a_recreated_bucket_has_the_new_one(self) -> None:
        await self.store.create_bucket("shared", owner="111111111111")
        await self.store.sync_config_buckets([BUCKET, "shared"])
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual((await self.store.get_bucket("shared")).owner, "111111111111")
        await self.store.delete_bucket("shared")
        await self.store.create_bucket("shared", owner="222222222222")
        self.assertEqual((await self.store.get_bucket("shared")).owner, "222222222222")


class LifecycleMixin(_Helpers):
    """
    A bucket's lifecycle configuration (kept as text), the expirer's pages
    of objects and its delete of only the version it read; on the fake and
    on every database.
    """

    CONFIG = '{"rules":[],"version":1}'

    async def test_a_configuration_is_set_read_and_removed(self) -> None:
        self.assertIsNone(await self.store.get_bucket_lifecycle(BUCKET))
        self.assertEqual(await self.store.lifecycle_buckets(), [])
        self.assertTrue(await self.store.set_bucket_lifecycle(BUCKET, self.CONFIG))
        self.assertEqual(await self.store.get_bucket_lifecycle(BUCKET), self.CONFIG)
        self.assertEqual(await self.store.lifecycle_buckets(), [(BUCKET, self.CONFIG)])
        # The configuration bucket sync leaves it alone.
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual(await self.store.get_bucket_lifecycle(BUCKET), self.CONFIG)
        self.assertTrue(await self.store.set_bucket_lifecycle(BUCKET, None))
        self.assertIsNone(await self.store.get_bucket_lifecycle(BUCKET))
        self.assertEqual(await self.store.lifecycle_buckets(), [])
        self.assertFalse(await self.store.set_bucket_lifecycle("missing", self.CONFIG))
        self.assertIsNone(await self.store.get_bucket_lifecycle("missing"))

    async def test_a_configuration_goes_with_its_bucket(self) -> None:
        await self.store.create_bucket("api-bucket")
        self.assertTrue(await self.store.set_bucket_lifecycle("api-bucket", self.CONFIG))
        self.assertTrue(await self.store.set_bucket_lifecycle(BUCKET, "{}"))
        self.assertEqual([name for name, _ in await self.store.lifecycle_buckets()], ["api-bucket", BUCKET])
        await self.store.delete_bucket("api-bucket")
        await self.store.create_bucket("api-bucket")
        self.assertIsNone(await self.store.get_bucket_lifecycle("api-bucket"))
        self.assertEqual(await self.store.lifecycle_buckets(), [(BUCKET, "{}")])

    async def test_pages_of_objects_under_a_prefix_with_their_tags(self) -> None:
        for key in ["logs/b", "logs/a", "log", "logs0", "other/x", "logs/\u00e9", "logs/z"]:
            await self.put(key, f"vb/{key}", tags=(("k", key),) if key == "logs/a" else ())
        page = await self.store.lifecycle_page(BUCKET, "logs/", "", 2)
        self.assertEqual([r.key for r in page], ["logs/a", "logs/b"])
        self.assertEqual((page[0].tags, page[0].locations, page[0].size), ((("k", "logs/a"),), (), 3))
        page = await self.store.lifecycle_page(BUCKET, "logs/", "logs/b", 10)
        self.assertEqual([r.key for r in page], ["logs/z", "logs/\u00e9"])  # UTF-8 byte order
        self.assertEqual(await self.store.lifecycle_page(BUCKET, "logs/", "logs/\u00e9", 10), [])
        everything = await self.store.lifecycle_page(BUCKET, "", "", 100)
        self.assertEqual(len(everything), 7)
        self.assertEqual([r.key for r in await self.store.lifecycle_page(BUCKET, "logs/", "a", 1)], ["logs/a"])

    async def test_an_expected_delete_takes_only_the_version_read(self) -> None:
        await self.put("k", "vb/1", tags=(("a", "1"),))
        (seen,) = await self.store.lifecycle_page(BUCKET, "k", "", 10)
        # Retagged since: kept.
        await self.store.set_object_tags(BUCKET, "k", (("a", "2"),))
        self.assertEqual(await self.store.delete_object(BUCKET, "k", expected=seen), Deletion())
        # Overwritten since: kept.
        await self.store.set_object_tags(BUCKET, "k", (("a", "1"),))
        await self.put("k", "vb/2", etag='"e2"', tags=(("a", "1"),))
        self.assertEqual(await self.store.delete_object(BUCKET, "k", expected=seen), Deletion())
        self.assertEqual((await self.store.get_object(BUCKET, "k")).locations, (Location("b1", "vb/2"),))
        # As read: deleted, its copy queued as DeleteObject's.
        (seen,) = await self.store.lifecycle_page(BUCKET, "k", "", 10)
        removed = (await self.store.delete_object(BUCKET, "k", expected=seen)).removed
        self.assertEqual(removed.locations, (Location("b1", "vb/2"),))
        self.assertIsNone(await self.store.get_object(BUCKET, "k"))
        self.assertIn(("b1", "vb/2", "deleted", 0), await self.due())
        # Gone already: nothing.
        self.assertEqual(await self.store.delete_object(BUCKET, "k", expected=seen), Deletion())


class PoliciesMixin(_Helpers):
    """
    A bucket's policy and its Block Public Access configuration, kept as
    text, gone with their bucket; on the fake and on every database.
    """

    POLICY = '{"Version":"2012-10-17","Statement":[]}'
    BLOCK = '{"BlockPublicAcls":true,"IgnorePublicAcls":false,"BlockPublicPolicy":true,"RestrictPublicBuckets":false}'

    async def policy_of(self, name: str) -> Optional[str]:
        """The policy the bucket is read with (None: no policy, or no bucket)."""
        record = await self.store.get_bucket(name)
        return record.policy if record is not None else None

    async def block_of(self, name: str) -> Optional[str]:
        """The Block Public Access flags the bucket is read with (None: none, or no bucket)."""
        record = await self.store.get_bucket(name)
        return record.public_access_block if record is not None else None

    async def test_a_policy_is_set_read_replaced_and_removed(self) -> None:
        self.assertIsNone(await self.policy_of(BUCKET))
        self.assertTrue(await self.store.set_bucket_policy(BUCKET, self.POLICY))
        self.assertEqual(await self.policy_of(BUCKET), self.POLICY)
        large = '{"Id":"' + "x" * 30000 + '"}'  # beyond 20 KiB of text: the column holds it whole
        self.assertTrue(await self.store.set_bucket_policy(BUCKET, large))
        self.assertEqual(await self.policy_of(BUCKET), large)
        # The configuration bucket sync leaves it alone.
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual(await self.policy_of(BUCKET), large)
        self.assertTrue(await self.store.set_bucket_policy(BUCKET, None))
        self.assertIsNone(await self.policy_of(BUCKET))
        self.assertTrue(await self.store.set_bucket_policy(BUCKET, None))
        self.assertFalse(await self.store.set_bucket_policy("missing", self.POLICY))
        self.assertIsNone(await self.policy_of("missing"))

    async def test_a_public_access_block_is_set_read_and_removed(self) -> None:
        self.assertIsNone(await self.block_of(BUCKET))
        self.assertTrue(await self.store.set_public_access_block(BUCKET, self.BLOCK))
        self.assertEqual(await self.block_of(BUCKET), self.BLOCK)
        # The same value again is a success too (rows matched, not changed).
        self.assertTrue(await self.store.set_public_access_block(BUCKET, self.BLOCK))
        await self.store.sync_config_buckets([BUCKET])
        self.assertEqual(await self.block_of(BUCKET), self.BLOCK)
        self.assertTrue(await self.store.set_public_access_block(BUCKET, None))
        self.assertIsNone(await self.block_of(BUCKET))
        self.assertFalse(await self.store.set_public_access_block("missing", self.BLOCK))
        self.assertIsNone(await self.block_of("missing"))

    async def test_the_bucket_is_read_with_both(self) -> None:
        """What the access decision reads: one get_bucket carries them (none: None)."""
        record = await self.store.get_bucket(BUCKET)
        assert record is not None
        self.assertEqual((record.policy, record.public_access_block), (None, None))
        self.assertTrue(await self.store.set_bucket_policy(BUCKET, self.POLICY))
        self.assertTrue(await self.store.set_public_access_block(BUCKET, self.BLOCK))
        record = await self.store.get_bucket(BUCKET)
        assert record is not None
        self.assertEqual((record.policy, record.public_access_block), (self.POLICY, self.BLOCK))
        self.assertTrue(await self.store.set_bucket_policy(BUCKET, None))
        record = await self.store.get_bucket(BUCKET)
        assert record is not None
        self.assertEqual((record.policy, record.public_access_block), (None, self.BLOCK))

    async def test_both_go_with_their_bucket(self) -> None:
        await self.store.create_bucket("api-bucket")
        self.assertTrue(await self.store.set_bucket_policy("api-bucket", self.POLICY))
        self.assertTrue(await self.store.set_public_access_block("api-bucket", self.BLOCK))
        self.assertTrue(await self.store.set_bucket_policy(BUCKET, "{}"))
        await self.store.delete_bucket("api-bucket")
        await self.store.create_bucket("api-bucket")
        self.assertIsNone(await self.policy_of("api-bucket"))
        self.assertIsNone(await self.block_of("api-bucket"))
        self.assertEqual(await self.policy_of(BUCKET), "{}")


class UploadMarkersAndBucketsMixin(_Helpers):
    """
    ListMultipartUploads' markers when the marker upload ended between pages,
    max-uploads 0, and uploads only in a bucket that exists; on the fake and
    on every database.
    """

    async def start_uploads(self) -> None:
        """Three uploads of "k", their ids not in initiation order (u3, u1, u2), and one of "z"."""
        for n, upload_id in enumerate(["u3", "u1", "u2"]):
            await self.store.create_multipart(upload(upload_id, "k", T0 + datetime.timedelta(seconds=n)))
        await self.store.create_multipart(upload("u0", "z"))

    async def page(self, key_marker: str = "", upload_id_marker: str = "", max_uploads: int = 1) -> list[str]:
        """The upload ids of a page (asserting it is truncated, with the key marker S3 sends, unless last)."""
        page = await self.store.list_multipart_page(
            BUCKET, key_marker=key_marker, upload_id_marker=upload_id_marker, max_uploads=max_uploads
        )
        if page.is_truncated:
            self.assertEqual(page.next_marker, page.entries[-1].key)
        else:
            self.assertEqual((page.next_marker, page.entries[-1].upload_id), (None, "u0"))
        return [entry.upload_id for entry in page.entries]

    async def test_the_marker_keys_other_uploads_are_listed_when_the_marker_upload_ended(self) -> None:
        await self.start_uploads()
        self.assertEqual(await self.page(), ["u3"])
        self.assertEqual(await self.page("k", "u3"), ["u1"])  # initiation order
        # A client that completes or aborts each upload it lists before asking for the next page.
        record = make_record("k", f"{BUCKET}/u3", etag='"x-1"')
        await self.store.complete_multipart("u3", record)
        self.assertEqual(await self.page("k", "u3"), ["u1"])  # not "z"'s u0: u1 and u2 are open
        await self.store.abort_multipart("u1", True)
        self.assertEqual(await self.page("k", "u1"), ["u2"])
        self.assertEqual(await self.page("k", "u2"), ["u0"])
        self.assertEqual(
            [r.upload_id for r in await self.store.list_multipart(BUCKET, key_marker="k", upload_id_marker="u1")],
            ["u2", "u0"],
        )

    async def test_without_the_marker_upload_the_marker_keys_open_uploads_come_again(self) -> None:
        # Its place among the key's uploads (by initiation) went with it:
        # those still open are listed again rather than any skipped.
        await self.start_uploads()
        self.assertEqual(await self.page(max_uploads=2), ["u3", "u1"])
        await self.store.abort_multipart("u1", False)
        self.assertEqual(await self.page("k", "u1", max_uploads=2), ["u3", "u2"])
        self.assertEqual(await self.page("k", "u2", max_uploads=2), ["u0"])
        # An upload id that is no upload of that key (nor of this bucket) has no place either.
        await self.store.create_bucket("other")
        later = attr.evolve(upload("x9", "k", T0 + datetime.timedelta(hours=1)), bucket="other", real_key="other/x9")
        await self.store.create_multipart(later)
        self.assertEqual(await self.page("k", "x9", max_uploads=5), ["u3", "u2", "u0"])
        self.assertEqual(await self.page("k", "u0", max_uploads=5), ["u3", "u2", "u0"])
        listed = await self.store.list_multipart(BUCKET, key_marker="k", upload_id_marker="x9")
        self.assertEqual([r.upload_id for r in listed], ["u3", "u2", "u0"])

    async def test_no_uploads_wanted_is_an_empty_page_not_a_truncated_one(self) -> None:
        await self.start_uploads()
        empty = ListPage(entries=(), is_truncated=False, next_marker=None)
        self.assertEqual(await self.store.list_multipart_page(BUCKET, max_uploads=0), empty)
        self.assertEqual(
            await self.store.list_multipart_page(
                BUCKET, delimiter="/", key_marker="k", upload_id_marker="u3", max_uploads=0
            ),
            empty,
        )
        self.assertEqual(await self.store.list_multipart(BUCKET, max_uploads=0), [])

    async def test_an_upload_into_a_missing_bucket_is_refused_and_its_intent_stays(self) -> None:
        intent = await self.store.begin_write("b1", "gone/u1", 60)
        record = attr.evolve(upload("u1", "k"), bucket="gone", real_key="gone/u1")
        await self.assertFailure(self.store.create_multipart(record, intent.id), NoSuchBucketError)
        self.assertIsNone(await self.store.get_multipart("u1"))
        # The intent covers the backend's upload until it is settled (here: abandoned).
        self.assertTrue(await self.store.is_referenced("b1", "gone/u1"))
        await self.store.abandon_write(intent.id, True)
        self.assertEqual(await self.due(), [("b1", "gone/u1", "abandoned", 0)])
        # A bucket deleted before the upload is recorded.
        await self.store.create_bucket("brief")
        await self.store.delete_bucket("brief")
        late = attr.evolve(upload("u2", "k"), bucket="brief", real_key="brief/u2")
        await self.assertFailure(self.store.create_multipart(late), NoSuchBucketError)
        self.assertIsNone(await self.store.get_multipart("u2"))


class MemoryStoreClockTests(OnMemoryStore, StoreClockMixin, unittest.TestCase):
    async def test_leases_end_where_the_databases_comparisons_put_the_end(self) -> None:
        """
        (Only a controlled clock gets there.)  An intent is swept at its lease's
        end (lease_until <= now); a job lease is live before its end
        (expires_at > now) and goes to another holder only after it
        (expires_at < now).  Leases count whole milliseconds.
        """
        await self.store.begin_write("b1", "vb/k", 1.0004)
        self.assertTrue(await self.store.acquire_lease("job", "a", 1.0004))
        self.clock.advance(0.75)
        self.assertEqual(await self.store.expired_writes(), 0)
        self.clock.advance(0.25)  # 1.0 s: the lease's end
        self.assertEqual(await self.store.lease_state("job"), LeaseState("job", "a", False))
        self.assertFalse(await self.store.acquire_lease("job", "b", 1))
        self.assertEqual(await self.store.expired_writes(), 1)
        self.clock.advance(0.25)
        self.assertTrue(await self.store.acquire_lease("job", "b", 1))


class SQLiteStoreClockTests(OnDatabase, StoreClockMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLStoreClockTests(OnDatabase, StoreClockMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBStoreClockTests(OnDatabase, StoreClockMixin, unittest.TestCase):
    """Leases of fractions of a second: the lease columns keep microseconds (migration 0008)."""

    kind = dbfixtures.MYSQL


class MemoryStoreContractTests(OnMemoryStore, StoreContractMixin, unittest.TestCase):
    pass


class SQLiteStoreContractTests(OnDatabase, StoreContractMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLStoreContractTests(OnDatabase, StoreContractMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBStoreContractTests(OnDatabase, StoreContractMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class MemoryUploadMarkersAndBucketsTests(OnMemoryStore, UploadMarkersAndBucketsMixin, unittest.TestCase):
    pass


class SQLiteUploadMarkersAndBucketsTests(OnDatabase, UploadMarkersAndBucketsMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLUploadMarkersAndBucketsTests(OnDatabase, UploadMarkersAndBucketsMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBUploadMarkersAndBucketsTests(OnDatabase, UploadMarkersAndBucketsMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class MemoryTagsTests(OnMemoryStore, TagsMixin, unittest.TestCase):
    pass


class SQLiteTagsTests(OnDatabase, TagsMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLTagsTests(OnDatabase, TagsMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBTagsTests(OnDatabase, TagsMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class MemoryACLsTests(OnMemoryStore, ACLsMixin, unittest.TestCase):
    pass


class SQLiteACLsTests(OnDatabase, ACLsMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLACLsTests(OnDatabase, ACLsMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBACLsTests(OnDatabase, ACLsMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class MemoryOwnersTests(OnMemoryStore, OwnersMixin, unittest.TestCase):
    pass


class SQLiteOwnersTests(OnDatabase, OwnersMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLOwnersTests(OnDatabase, OwnersMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBOwnersTests(OnDatabase, OwnersMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class MemoryLifecycleTests(OnMemoryStore, LifecycleMixin, unittest.TestCase):
    pass


class SQLiteLifecycleTests(OnDatabase, LifecycleMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLLifecycleTests(OnDatabase, LifecycleMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBLifecycleTests(OnDatabase, LifecycleMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL


class MemoryPoliciesTests(OnMemoryStore, PoliciesMixin, unittest.TestCase):
    pass


class SQLitePoliciesTests(OnDatabase, PoliciesMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLPoliciesTests(OnDatabase, PoliciesMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBPoliciesTests(OnDatabase, PoliciesMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
