"""
The lifecycle expirer on versions, on SQLite, PostgreSQL and MariaDB (when
they answer; always under CI=true), the daemon's clock a controlled one:

  - the store's page of noncurrent versions and lone delete markers (when
    each became noncurrent, how many newer noncurrent versions it has, the
    prefix, the cursor) and its removal of a version only while it is as
    read (store/lifecycle.py);
  - what a pass removes and keeps: NoncurrentDays (from the next newer
    version's Last-Modified, rounded up to midnight UTC),
    NewerNoncurrentVersions, ExpiredObjectDeleteMarker, an expired object
    delete marker under Days, Expiration adding a delete marker in a
    versioned bucket, a suspended bucket's null version, pages, a version
    the store refuses to remove, the metrics.
"""

from __future__ import annotations

import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial import unittest

from s3balance.ops import lifecycle
from s3balance.ops.lifecycle import LifecycleExpirer, LifecycleMetrics
from s3balance.s3 import lifecycle_rules
from s3balance.store import versions
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import Deletion, LifecycleVersion, ObjectRecord, StoreError
from tests import dbfixtures
from tests.test_lifecycle_expirer import Paused, StubGateway, rule_xml
from tests.test_store import BUCKET, make_record

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
# Day 0 of every test, midnight UTC.
D0 = datetime.datetime(2026, 6, 1, tzinfo=UTC)


class ObjectLocked(StoreError):
    """What a store guard refusing to remove a version raises, in these tests."""


class VersionsLifecycleMixin:
    kind: str

    async def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(D0.timestamp())
        self.url = dbfixtures.store_database(self, self.kind)
        self.store = MetadataStore(self.url, max_threads=4, now=self.now, deletion_grace=30.0)
        await self.store.start()
        self.addCleanup(self.store.stop)
        await self.store.create_bucket(BUCKET)
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        self.registry = CollectorRegistry()
        self.gateway = StubGateway(self.store, self.clock)  # type: ignore[arg-type]
        self.job = LifecycleExpirer(self.gateway, self.clock, holder="a",
                                    lifecycle_metrics=LifecycleMetrics(self.registry))
        self.job.running = True
        self.job.pauses = Paused()
        self.written = 0

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), UTC)

    def at(self, moment: datetime.datetime) -> None:
        self.clock.advance((moment - self.now()).total_seconds())

    async def put(self, key: str, at: datetime.timedelta, **kw: Any) -> ObjectRecord:
        """A version of C{key} written at D0 + C{at} (the clock goes there)."""
        self.at(D0 + at)
        self.written += 1
        real_key = f"vb/{key}/{self.written}"
        intent = await self.store.begin_write("b1", real_key, 60)
        return await self.store.commit_object(intent.id, make_record(key, real_key, last_modified=self.now(), **kw))

    async def mark(self, key: str, at: datetime.timedelta) -> ObjectRecord:
        """A delete marker on C{key} at D0 + C{at}."""
        self.at(D0 + at)
        marker = (await self.store.delete_object(BUCKET, key)).marker
        assert marker is not None
        return marker

    async def configure(self, *rules: str) -> None:
        body = ("<LifecycleConfiguration>" + "".join(rules) + "</LifecycleConfiguration>").encode()
        await self.store.set_bucket_lifecycle(BUCKET, lifecycle_rules.dump(lifecycle_rules.parse_document(body)))

    async def run_pass(self, at: datetime.datetime) -> None:
        self.at(at)
        await self.job.run()

    async def page(self, prefix: str = "", after: tuple[str, int] = ("", 0), limit: int = 100) -> list[LifecycleVersion]:
        return await self.store.lifecycle_versions_page(BUCKET, prefix, after[0], after[1], limit)

    async def versions_of(self, key: str) -> list[tuple[str, bool]]:
        """(version id, is a delete marker) of the key's versions, newest first."""
        page = await self.store.list_versions(BUCKET, key, "", "", None, 1000)
        return [(r.version_id or "null", r.delete_marker) for r, _ in page.versions if r.key == key]

    async def queued(self) -> list[str]:
        self.clock.advance(30)  # (the deletion grace)
        return sorted(q.real_key for q in await self.store.queued_deletions(limit=1000))

    def counter(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    # -- the store's page and removal -------------------------------------------------

    async def test_the_page_holds_noncurrent_versions_and_lone_markers_with_what_rules_need(self) -> None:
        v1 = await self.put("a", datetime.timedelta(hours=1))
        v2 = await self.put("a", datetime.timedelta(hours=2))
        m3 = await self.mark("a", datetime.timedelta(hours=3))
        v4 = await self.put("a", datetime.timedelta(hours=4))  # current
        lone = await self.mark("b", datetime.timedelta(hours=5))  # "b" has no other version
        await self.put("c", datetime.timedelta(hours=6))
        await self.mark("c", datetime.timedelta(hours=7))  # current marker over a version: neither
        await self.put("d", datetime.timedelta(hours=8))  # one version, current: not listed
        page = await self.page()
        seen = [(v.record.key, v.record.version_id, v.record.delete_marker, v.noncurrent_since, v.newer_noncurrent,
                 v.lone_marker) for v in page]
        self.assertEqual(seen[:3], [
            ("a", v1.version_id, False, v2.last_modified, 2, False),
            ("a", v2.version_id, False, m3.last_modified, 1, False),
            ("a", m3.version_id, True, v4.last_modified, 0, False),
        ])
        self.assertEqual(seen[3], ("b", lone.version_id, True, None, 0, True))
        self.assertEqual([v.record.key for v in page[4:]], ["c"])  # c's version under its marker
        self.assertEqual(page[0].successor_id, v2.id)
        self.assertEqual(page[0].record.tags, ())
        self.assertEqual(page[0].record.locations, ())

    async def test_the_page_resumes_after_a_cursor_under_a_prefix(self) -> None:
        for key in ("logs/a", "logs/b", "other"):
            for hour in range(3):
                await self.put(key, datetime.timedelta(hours=hour))
        first = await self.page("logs/", limit=3)
        self.assertEqual([v.record.key for v in first], ["logs/a", "logs/a", "logs/b"])
        rest = await self.page("logs/", (first[-1].record.key, first[-1].record.id or 0))
        self.assertEqual([v.record.key for v in rest], ["logs/b"])
        self.assertLess(first[-1].record.id or 0, rest[0].record.id or 0)
        self.assertEqual(await self.page("logs/", ("logs/b", 10**12)), [])
        self.assertEqual(len(await self.page("", ("a", 0))), 6)  # a cursor before the prefix: all of it

    async def test_a_version_is_removed_only_while_as_read(self) -> None:
        await self.put("k", datetime.timedelta(hours=1))
        v2 = await self.put("k", datetime.timedelta(hours=2), tags=(("t", "1"),))
        v3 = await self.put("k", datetime.timedelta(hours=3))
        [old, middle] = await self.page()
        # v2 retagged since it was read: kept.
        await self.store.set_version_tags(BUCKET, "k", v2.version_id or "", (("t", "2"),))
        self.assertEqual(await self.store.expire_version(BUCKET, middle), Deletion())
        # v3 gone since: v2 is current again, kept.
        await self.store.set_version_tags(BUCKET, "k", v2.version_id or "", (("t", "1"),))
        await self.store.delete_object(BUCKET, "k", version_id=v3.version_id)
        self.assertEqual(await self.store.expire_version(BUCKET, middle), Deletion())
        self.assertEqual((await self.store.get_object(BUCKET, "k")).version_id, v2.version_id)
        # v1's next newer version is still v2, with fewer newer ones than read: kept.
        self.assertEqual(await self.store.expire_version(BUCKET, old), Deletion())
        # As read again: removed, its bytes queued.
        [old] = await self.page()
        done = await self.store.expire_version(BUCKET, old)
        self.assertEqual(done.removed.id, old.record.id)
        self.assertEqual(await self.queued(), ["vb/k/1", "vb/k/3"])
        self.assertEqual(await self.store.expire_version(BUCKET, old), Deletion())

    async def test_a_lone_marker_is_removed_only_while_alone(self) -> None:
        await self.mark("k", datetime.timedelta(hours=1))
        [lone] = await self.page()
        await self.put("k", datetime.timedelta(hours=2))
        self.assertEqual(await self.store.expire_version(BUCKET, lone), Deletion())
        self.assertEqual(len(await self.versions_of("k")), 2)

    async def test_a_null_version_replaced_since_it_was_read_is_kept(self) -> None:
        await self.store.set_bucket_versioning(BUCKET, versions.SUSPENDED)
        await self.put("k", datetime.timedelta(hours=1))
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        await self.put("k", datetime.timedelta(hours=2))
        [null] = await self.page()
        self.assertIsNone(null.record.version_id)
        await self.store.set_bucket_versioning(BUCKET, versions.SUSPENDED)
        current = await self.put("k", datetime.timedelta(hours=3))  # the new null version, current
        self.assertEqual(await self.store.expire_version(BUCKET, null), Deletion())
        self.assertEqual((await self.store.get_object(BUCKET, "k")).id, current.id)

    # -- the expirer -----------------------------------------------------------------

    async def test_noncurrent_days_count_from_the_next_versions_last_modified(self) -> None:
        await self.configure(rule_xml("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                                      "</NoncurrentVersionExpiration>", "<Filter/>"))
        await self.put("k", datetime.timedelta(hours=10))
        v2 = await self.put("k", DAY + datetime.timedelta(hours=11, minutes=30))
        # Noncurrent since day 1 11:30; one day later is day 2 11:30: due at day 3 00:00.
        await self.run_pass(D0 + 3 * DAY - datetime.timedelta(seconds=1))
        self.assertEqual(len(await self.versions_of("k")), 2)
        await self.run_pass(D0 + 3 * DAY)
        self.assertEqual(await self.versions_of("k"), [(v2.version_id, False)])
        self.assertEqual(await self.queued(), ["vb/k/1"])
        self.assertEqual(self.gateway.pool.usage, {"b1": (-3, -1)})
        self.assertEqual((self.job.versions_expired, self.job.expired), (1, 0))
        self.assertEqual(self.counter("s3balance_lifecycle_versions_expired_total", kind="noncurrent"), 1.0)
        self.assertEqual(self.gateway.kicks, [True])

    async def test_newer_noncurrent_versions_are_kept(self) -> None:
        await self.configure(rule_xml("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                                      "<NewerNoncurrentVersions>2</NewerNoncurrentVersions>"
                                      "</NoncurrentVersionExpiration>", "<Filter/>"))
        made = [await self.put("k", datetime.timedelta(hours=n)) for n in range(5)]
        await self.mark("k", datetime.timedelta(hours=5))
        await self.run_pass(D0 + 10 * DAY)
        kept = await self.versions_of("k")
        # The marker (current) and the two newest noncurrent versions.
        self.assertEqual([v for v, _ in kept[1:]], [made[4].version_id, made[3].version_id])
        self.assertEqual(self.job.versions_expired, 3)

    async def test_both_conditions_must_hold(self) -> None:
        await self.configure(rule_xml("<NoncurrentVersionExpiration><NoncurrentDays>5</NoncurrentDays>"
                                      "<NewerNoncurrentVersions>1</NewerNoncurrentVersions>"
                                      "</NoncurrentVersionExpiration>", "<Filter/>"))
        await self.put("k", datetime.timedelta(0))
        await self.put("k", DAY)
        await self.put("k", 2 * DAY)
        await self.run_pass(D0 + 5 * DAY)  # v1 noncurrent since day 1: not yet 5 days
        self.assertEqual(len(await self.versions_of("k")), 3)
        await self.run_pass(D0 + 7 * DAY)  # v1 due; v2 due too but the one newer noncurrent kept
        self.assertEqual(len(await self.versions_of("k")), 2)
        self.assertEqual(self.job.versions_expired, 1)

    async def test_a_rules_filter_selects_the_noncurrent_versions(self) -> None:
        await self.configure(rule_xml(
            "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>",
            "<Filter><And><Prefix>logs/</Prefix><Tag><Key>tmp</Key><Value>yes</Value></Tag></And></Filter>"))
        await self.put("logs/a", datetime.timedelta(0), tags=(("tmp", "yes"),))
        await self.put("logs/b", datetime.timedelta(0))
        await self.put("other", datetime.timedelta(0), tags=(("tmp", "yes"),))
        for key in ("logs/a", "logs/b", "other"):
            await self.put(key, datetime.timedelta(hours=1))
        await self.run_pass(D0 + 5 * DAY)
        self.assertEqual([len(await self.versions_of(key)) for key in ("logs/a", "logs/b", "other")], [1, 2, 2])

    async def test_expired_object_delete_markers_go_and_others_stay(self) -> None:
        await self.configure(rule_xml("<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>"
                                      "</Expiration>", "<Filter/>"))
        await self.mark("alone", datetime.timedelta(hours=1))
        await self.put("covered", datetime.timedelta(hours=2))
        await self.mark("covered", datetime.timedelta(hours=3))
        await self.run_pass(D0 + datetime.timedelta(hours=4))
        self.assertEqual(await self.versions_of("alone"), [])
        self.assertEqual(len(await self.versions_of("covered")), 2)
        self.assertEqual(self.counter("s3balance_lifecycle_versions_expired_total", kind="expired_delete_marker"), 1.0)

    async def test_a_marker_left_alone_by_noncurrent_expiration_goes_next_pass(self) -> None:
        await self.configure(rule_xml("<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>"
                                      "</Expiration><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                                      "</NoncurrentVersionExpiration>", "<Filter/>"))
        await self.put("k", datetime.timedelta(0))
        await self.mark("k", datetime.timedelta(hours=1))
        await self.run_pass(D0 + 3 * DAY)
        self.assertEqual([marker for _, marker in await self.versions_of("k")], [True])
        await self.run_pass(D0 + 3 * DAY + datetime.timedelta(hours=1))
        self.assertEqual(await self.versions_of("k"), [])

    async def test_expiration_adds_a_delete_marker_and_keeps_the_version(self) -> None:
        await self.configure(rule_xml("<Expiration><Days>1</Days></Expiration>", "<Filter/>"))
        v1 = await self.put("k", datetime.timedelta(hours=1))
        await self.run_pass(D0 + 2 * DAY)
        [marker, kept] = await self.versions_of("k")
        self.assertEqual((marker[1], kept), (True, (v1.version_id, False)))
        self.assertIsNone(await self.store.get_object(BUCKET, "k"))
        self.assertEqual(await self.queued(), [])
        self.assertEqual((self.job.expired, self.job.versions_expired), (1, 0))

    async def test_days_remove_an_expired_object_delete_marker_once_old_enough(self) -> None:
        await self.configure(rule_xml("<Expiration><Days>2</Days></Expiration>", "<Filter/>"))
        await self.mark("k", DAY + datetime.timedelta(hours=1))  # due at day 4 00:00
        await self.run_pass(D0 + 4 * DAY - datetime.timedelta(seconds=1))
        self.assertEqual(len(await self.versions_of("k")), 1)
        await self.run_pass(D0 + 4 * DAY)
        self.assertEqual(await self.versions_of("k"), [])

    async def test_a_suspended_buckets_noncurrent_null_version_goes(self) -> None:
        await self.store.set_bucket_versioning(BUCKET, versions.SUSPENDED)
        await self.configure(rule_xml("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                                      "</NoncurrentVersionExpiration>", "<Filter/>"))
        await self.put("k", datetime.timedelta(0))
        await self.store.set_bucket_versioning(BUCKET, versions.ENABLED)
        current = await self.put("k", datetime.timedelta(hours=1))
        await self.run_pass(D0 + 3 * DAY)
        self.assertEqual(await self.versions_of("k"), [(current.version_id, False)])

    async def test_pages_and_a_version_the_store_refuses_to_remove(self) -> None:
        self.patch(lifecycle, "PAGE", 2)
        await self.configure(rule_xml("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                                      "</NoncurrentVersionExpiration>", "<Filter/>"))
        for key in ("a", "b", "c"):
            await self.put(key, datetime.timedelta(0))
            await self.put(key, datetime.timedelta(0))
            await self.put(key, datetime.timedelta(hours=1))
        locked = (await self.page())[2]  # b's oldest
        original = self.store.expire_version

        def guarded(bucket: str, version: LifecycleVersion) -> Any:
            if version.record.id == locked.record.id:
                raise ObjectLocked("a locked version")
            return original(bucket, version)

        self.patch(self.store, "expire_version", guarded)
        await self.run_pass(D0 + 3 * DAY)
        self.assertEqual([len(await self.versions_of(key)) for key in ("a", "b", "c")], [1, 2, 1])
        self.assertEqual((self.job.versions_expired, self.job.versions_refused), (5, 1))
        self.assertEqual(self.counter("s3balance_lifecycle_versions_refused_total"), 1.0)

    async def test_a_bucket_never_versioned_is_not_read_for_versions(self) -> None:
        await self.store.create_bucket("plain")
        body = b"<LifecycleConfiguration>" + rule_xml("<Expiration><Days>1</Days></Expiration>").encode() + \
            b"</LifecycleConfiguration>"
        await self.store.set_bucket_lifecycle("plain", lifecycle_rules.dump(lifecycle_rules.parse_document(body)))
        asked: list[str] = []
        original = self.store.lifecycle_versions_page

        def watched(bucket: str, *args: Any) -> Any:
            asked.append(bucket)
            return original(bucket, *args)

        self.patch(self.store, "lifecycle_versions_page", watched)
        await self.run_pass(D0 + DAY)
        self.assertEqual(asked, [])


class SQLiteVersionsLifecycleTests(VersionsLifecycleMixin, unittest.TestCase):
    kind = "sqlite"


class PostgreSQLVersionsLifecycleTests(VersionsLifecycleMixin, unittest.TestCase):
    kind = dbfixtures.POSTGRES


class MariaDBVersionsLifecycleTests(VersionsLifecycleMixin, unittest.TestCase):
    kind = dbfixtures.MYSQL
