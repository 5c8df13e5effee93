"""
s3balance.ops.lifecycle: the elected expirer on the fake store and a
controlled clock (no waits): what a pass expires and keeps (days, a date,
prefix, tag and size filters, a disabled rule), the multipart uploads it
aborts, the rate, a pause, a rule changed during a pass, the metrics.
"""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any, Optional

from prometheus_client import CollectorRegistry
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from s3balance.ops import lifecycle
from s3balance.ops.lifecycle import LifecycleExpirer, LifecycleMetrics
from s3balance.s3 import lifecycle_rules
from s3balance.store.interfaces import Location, MultipartRecord, ObjectRecord
from tests.fakestore import MemoryStore

UTC = datetime.UTC
NOW = datetime.datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
BUCKET = "vb"
DAY = datetime.timedelta(days=1)


class StubPool:
    def __init__(self) -> None:
        self.usage: dict[str, tuple[int, int]] = {}

    def add_usage(self, backend: str, size: int, count: int) -> None:
        used, objects = self.usage.get(backend, (0, 0))
        self.usage[backend] = (used + size, objects + count)


class StubGateway:
    """What the expirer asks of the gateway: config, store, pool, reactor, the deleter's kick."""

    def __init__(self, store: MemoryStore, clock: Clock, rate: float = 0.0, period: float = 3600.0) -> None:
        self.store = store
        self.reactor = clock
        self.pool = StubPool()
        self.config = SimpleNamespace(balancer=SimpleNamespace(lifecycle_period=period, lifecycle_rate=rate))
        self.kicks: list[bool] = []

    def kick_deleter(self, replaced: bool = False) -> None:
        self.kicks.append(replaced)


class Paused:
    def __init__(self) -> None:
        self.jobs: set[str] = set()

    def is_paused(self, job: str) -> bool:
        return job in self.jobs


def rule_xml(actions: str = "<Expiration><Days>1</Days></Expiration>",
             filter_xml: str = "<Filter><Prefix>logs/</Prefix></Filter>", status: str = "Enabled",
             rule_id: str = "r1") -> str:
    return f"<Rule><ID>{rule_id}</ID>{filter_xml}<Status>{status}</Status>{actions}</Rule>"


class ExpirerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW.timestamp())
        self.store = MemoryStore(clock=self.clock, deletion_grace=30.0)
        self.successResultOf(self.store.start())
        self.successResultOf(self.store.sync_config_buckets([BUCKET]))
        self.registry = CollectorRegistry()
        self.metrics = LifecycleMetrics(self.registry)
        self.gateway = StubGateway(self.store, self.clock)
        self.job = self.expirer()
        self.pauses = Paused()
        self.job.pauses = self.pauses

    def expirer(self) -> LifecycleExpirer:
        job = LifecycleExpirer(self.gateway, self.clock, holder="a", lifecycle_metrics=self.metrics)
        # Run by hand (no lease repeater): keep_going asks only that it runs and is not paused.
        job.running = True
        return job

    def configure(self, *rules: str) -> None:
        body = ("<LifecycleConfiguration>" + "".join(rules) + "</LifecycleConfiguration>").encode()
        text = lifecycle_rules.dump(lifecycle_rules.parse_document(body))
        self.assertTrue(self.successResultOf(self.store.set_bucket_lifecycle(BUCKET, text)))

    def put(self, key: str, age: datetime.timedelta = 3 * DAY, size: int = 10,
            tags: tuple[tuple[str, str], ...] = ()) -> ObjectRecord:
        intent = self.successResultOf(self.store.begin_write("b1", f"vb/{key}", 60))
        record = ObjectRecord(
            bucket=BUCKET, key=key, size=size, etag='"e"', last_modified=NOW - age, content_type=None,
            headers={}, checksums={}, locations=(Location("b1", f"vb/{key}"),), tags=tags,
        )
        return self.successResultOf(self.store.commit_object(intent.id, record))

    def upload(self, upload_id: str, key: str, age: datetime.timedelta) -> None:
        self.successResultOf(self.store.create_multipart(MultipartRecord(
            upload_id=upload_id, bucket=BUCKET, key=key, backend="b1", real_key=f"vb/{upload_id}",
            backend_upload_id=f"backend-{upload_id}", initiated=NOW - age, content_type=None, headers={},
        )))

    def run_pass(self) -> None:
        self.successResultOf(ensureDeferred(self.job.run()))

    def keys(self) -> list[str]:
        return sorted(key for bucket, key in self.store.tables.objects if bucket == BUCKET)

    def counter(self, name: str) -> Optional[float]:
        return self.registry.get_sample_value(name)

    def test_expires_due_objects_under_the_prefix_and_keeps_the_rest(self) -> None:
        self.configure(rule_xml())
        self.put("logs/old")  # written 3 days ago, 1 day: due since the midnight after 2 days ago
        self.put("logs/young", age=datetime.timedelta(hours=1))
        # Written yesterday at 11:00: due at today's midnight + ... tomorrow 00:00, not yet.
        self.put("logs/yesterday", age=datetime.timedelta(hours=25))
        self.put("other/old")
        self.run_pass()
        self.assertEqual(self.keys(), ["logs/yesterday", "logs/young", "other/old"])
        self.assertEqual((self.job.expired, self.job.passes), (1, 1))
        self.assertEqual(self.counter("s3balance_lifecycle_objects_expired_total"), 1.0)
        self.assertEqual(self.gateway.pool.usage, {"b1": (-10, -1)})
        self.assertEqual(self.gateway.kicks, [True])
        # Its copy waits out the deletion grace, as DeleteObject's.
        self.assertEqual(self.successResultOf(self.store.queued_deletions()), [])
        self.clock.advance(30)
        (queued,) = self.successResultOf(self.store.queued_deletions())
        self.assertEqual((queued.real_key, queued.reason), ("vb/logs/old", "deleted"))

    def test_due_at_the_midnight_after_last_modified_plus_days(self) -> None:
        self.configure(rule_xml())
        self.put("logs/a", age=datetime.timedelta(hours=36))  # 2026-06-09 00:00: due 2026-06-11 00:00
        self.run_pass()
        self.assertEqual(self.keys(), ["logs/a"])
        self.clock.advance(datetime.timedelta(hours=12).total_seconds() - 1)
        self.run_pass()
        self.assertEqual(self.keys(), ["logs/a"])
        self.clock.advance(1)
        self.run_pass()
        self.assertEqual(self.keys(), [])

    def test_a_date_expires_every_matching_object_once_passed(self) -> None:
        self.configure(rule_xml("<Expiration><Date>2026-06-11T00:00:00Z</Date></Expiration>", "<Filter/>"))
        self.put("a", age=datetime.timedelta(0))
        self.put("b", age=100 * DAY)
        self.run_pass()
        self.assertEqual(self.keys(), ["a", "b"])
        self.clock.advance(12 * 3600)
        self.run_pass()
        self.assertEqual(self.keys(), [])

    def test_a_tag_filter(self) -> None:
        self.configure(rule_xml(filter_xml="<Filter><And><Prefix>logs/</Prefix><Tag><Key>tmp</Key><Value>yes</Value>"
                                           "</Tag></And></Filter>"))
        self.put("logs/tagged", tags=(("a", "b"), ("tmp", "yes")))
        self.put("logs/other-value", tags=(("tmp", "no"),))
        self.put("logs/untagged")
        self.run_pass()
        self.assertEqual(self.keys(), ["logs/other-value", "logs/untagged"])

    def test_a_size_filter(self) -> None:
        self.configure(rule_xml(filter_xml="<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
                                           "<ObjectSizeLessThan>100</ObjectSizeLessThan></And></Filter>"))
        self.put("small", size=10)
        self.put("medium", size=11)
        self.put("big", size=100)
        self.run_pass()
        self.assertEqual(self.keys(), ["big", "small"])

    def test_a_disabled_rule_does_nothing(self) -> None:
        self.configure(rule_xml(status="Disabled"))
        self.put("logs/old")
        self.run_pass()
        self.assertEqual(self.keys(), ["logs/old"])
        self.assertEqual(self.gateway.kicks, [])

    def test_no_period_no_run(self) -> None:
        self.gateway.config.balancer.lifecycle_period = 0
        self.assertFalse(self.job.should_run())

    def test_aborts_old_incomplete_uploads_under_the_prefix(self) -> None:
        self.configure(rule_xml("<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
                                "</AbortIncompleteMultipartUpload>"))
        self.upload("u-old", "logs/big", 3 * DAY)
        self.upload("u-young", "logs/big", datetime.timedelta(hours=1))
        self.upload("u-elsewhere", "other/big", 3 * DAY)
        self.put("logs/old")  # an object is no upload: Days-less rules expire nothing
        self.run_pass()
        self.assertEqual(sorted(self.store.tables.uploads), ["u-elsewhere", "u-young"])
        self.assertEqual(self.keys(), ["logs/old"])
        self.assertEqual((self.job.aborted, self.counter("s3balance_lifecycle_uploads_aborted_total")), (1, 1.0))
        self.assertEqual(self.gateway.kicks, [False])
        queued = self.successResultOf(self.store.queued_deletions())
        self.assertEqual([(q.real_key, q.backend_upload_id) for q in queued], [("vb/u-old", "backend-u-old")])

    def test_pages_and_the_rate(self) -> None:
        self.patch(lifecycle, "PAGE", 2)
        self.gateway.config.balancer.lifecycle_rate = 2.0
        self.configure(rule_xml())
        for n in range(5):
            self.put(f"logs/{n}")
        done = ensureDeferred(self.job.run())
        self.assertEqual(len(self.keys()), 4)  # one deleted, then half a second's wait
        self.clock.advance(0.5)
        self.assertEqual(len(self.keys()), 3)
        self.clock.pump([0.5] * 4)
        self.successResultOf(done)
        self.assertEqual(self.keys(), [])

    def test_a_pause_stops_a_pass_between_objects(self) -> None:
        self.gateway.config.balancer.lifecycle_rate = 1.0
        self.configure(rule_xml())
        for n in range(4):
            self.put(f"logs/{n}")
        done = ensureDeferred(self.job.run())
        self.assertEqual(len(self.keys()), 3)
        self.pauses.jobs.add("lifecycle")
        self.assertFalse(self.job.should_run())
        self.clock.pump([1.0] * 10)
        self.successResultOf(done)
        self.assertEqual(len(self.keys()), 3)
        self.assertEqual(self.job.passes, 0)  # the pass stopped short
        self.pauses.jobs.clear()
        self.clock.pump([1.0] * 10)
        self.assertEqual(len(self.keys()), 3)  # the next pass comes with the period, or a kick

    def test_a_rule_removed_during_a_pass_stops_at_the_next_page(self) -> None:
        self.patch(lifecycle, "PAGE", 2)
        self.gateway.config.balancer.lifecycle_rate = 1.0
        self.configure(rule_xml())
        for n in range(6):
            self.put(f"logs/{n}")
        done = ensureDeferred(self.job.run())
        self.successResultOf(self.store.set_bucket_lifecycle(BUCKET, None))
        self.clock.pump([1.0] * 10)
        self.successResultOf(done)
        self.assertEqual(len(self.keys()), 4)  # the first page's two only

    def test_a_rule_changed_during_a_pass_is_applied_next_pass(self) -> None:
        self.patch(lifecycle, "PAGE", 2)
        self.gateway.config.balancer.lifecycle_rate = 1.0
        self.configure(rule_xml())
        for n in range(4):
            self.put(f"logs/{n}", age=2 * DAY)
        done = ensureDeferred(self.job.run())
        self.configure(rule_xml("<Expiration><Days>30</Days></Expiration>"))
        self.clock.pump([1.0] * 10)
        self.successResultOf(done)
        self.assertEqual(len(self.keys()), 2)
        self.run_pass()
        self.assertEqual(len(self.keys()), 2)

    def test_an_object_overwritten_after_it_was_read_is_kept(self) -> None:
        self.configure(rule_xml())
        self.put("logs/a")
        original = self.store.lifecycle_page

        def overwrite_after_reading(*args: Any) -> Any:
            page = original(*args)
            self.put("logs/a", age=datetime.timedelta(0))
            return page

        self.patch(self.store, "lifecycle_page", overwrite_after_reading)
        self.run_pass()
        found = self.successResultOf(self.store.get_object(BUCKET, "logs/a"))
        self.assertEqual(found.last_modified, NOW)
        self.assertEqual(self.job.expired, 0)

    def test_an_unreadable_configuration_is_skipped(self) -> None:
        self.successResultOf(self.store.create_bucket("other"))
        self.successResultOf(self.store.set_bucket_lifecycle("other", "not json"))
        self.configure(rule_xml())
        self.put("logs/old")
        self.run_pass()
        self.assertEqual(self.keys(), [])
        self.flushLoggedErrors()

    def test_a_new_job_takes_the_period_from_the_config(self) -> None:
        self.gateway.config.balancer.lifecycle_period = 60.0
        job = self.expirer()
        self.assertEqual(job.period, 60.0)
