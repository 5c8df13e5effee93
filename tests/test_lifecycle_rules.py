"""
s3balance.s3.lifecycle_rules: the <LifecycleConfiguration> document (every
error S3 answers), the store's text of it, and what a rule selects and when
(on fixed times, no clock).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import attr
from twisted.trial.unittest import SynchronousTestCase

from s3balance.errors import S3Error
from s3balance.s3 import lifecycle_rules as rules
from s3balance.store.interfaces import LifecycleVersion, ObjectRecord

UTC = datetime.UTC


def document(*rule_bodies: str, namespace: bool = True) -> bytes:
    xmlns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' if namespace else ""
    inner = "".join(f"<Rule>{body}</Rule>" for body in rule_bodies)
    return f'<?xml version="1.0" encoding="UTF-8"?><LifecycleConfiguration{xmlns}>{inner}</LifecycleConfiguration>'.encode()


def rule(
    filter_xml: str = "<Filter><Prefix>logs/</Prefix></Filter>",
    status: str = "Enabled",
    actions: str = "<Expiration><Days>3</Days></Expiration>",
    rule_id: str = "r1",
) -> str:
    id_xml = f"<ID>{rule_id}</ID>" if rule_id is not None else ""
    return f"{id_xml}{filter_xml}<Status>{status}</Status>{actions}"


def record(key: str = "logs/a", size: int = 10, last_modified: datetime.datetime | None = None,
           tags: tuple[tuple[str, str], ...] = ()) -> ObjectRecord:
    return ObjectRecord(
        bucket="b", key=key, size=size, etag='"e"',
        last_modified=last_modified or datetime.datetime(2014, 1, 15, 10, 30, tzinfo=UTC),
        content_type=None, headers={}, checksums={}, locations=(), tags=tags,
    )


def marker(key: str = "logs/a") -> ObjectRecord:
    """A delete marker, as the store reads one."""
    return attr.evolve(record(key, size=0), etag="", delete_marker=True, version_id="v")


class ErrorAssertions(SynchronousTestCase):
    def assertS3Error(self, call: Callable[[], Any], code: str, message: str = "", status: int = 400) -> S3Error:
        with self.assertRaises(S3Error) as raised:
            call()
        error = raised.exception
        self.assertEqual((error.code, error.status), (code, status))
        if message:
            self.assertEqual(error.message, message)
        return error

    def refused(self, body: bytes, code: str, message: str = "", status: int = 400) -> S3Error:
        return self.assertS3Error(lambda: rules.parse_document(body), code, message, status)


class ParseTests(ErrorAssertions):
    def test_prefix_filter_with_days(self) -> None:
        config = rules.parse_document(document(rule()))
        (only,) = config.rules
        self.assertEqual((only.id, only.status, only.days), ("r1", "Enabled", 3))
        self.assertEqual(only.filter, rules.Filter(rules.PREFIX, prefix="logs/"))

    def test_without_namespace(self) -> None:
        self.assertEqual(len(rules.parse_document(document(rule(), namespace=False)).rules), 1)

    def test_legacy_prefix_in_the_rule(self) -> None:
        (only,) = rules.parse_document(document(rule("<Prefix>old/</Prefix>"))).rules
        self.assertEqual(only.filter, rules.Filter(rules.LEGACY, prefix="old/"))

    def test_empty_filter_selects_every_object(self) -> None:
        (only,) = rules.parse_document(document(rule("<Filter/>"))).rules
        self.assertEqual(only.filter, rules.Filter(rules.EMPTY))
        self.assertTrue(only.matches(record("anything")))

    def test_and_filter(self) -> None:
        body = document(rule(
            "<Filter><And><Prefix>p/</Prefix><Tag><Key>b</Key><Value>2</Value></Tag>"
            "<Tag><Key>a</Key><Value>1</Value></Tag><ObjectSizeGreaterThan>5</ObjectSizeGreaterThan>"
            "<ObjectSizeLessThan>100</ObjectSizeLessThan></And></Filter>"
        ))
        (only,) = rules.parse_document(body).rules
        self.assertEqual(only.filter, rules.Filter(rules.AND, "p/", (("a", "1"), ("b", "2")), 5, 100))

    def test_date_at_midnight(self) -> None:
        for text in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z", "2026-01-01", "2026-01-01T00:00:00+00:00"):
            (only,) = rules.parse_document(document(rule(actions=f"<Expiration><Date>{text}</Date></Expiration>"))).rules
            self.assertEqual(only.date, datetime.datetime(2026, 1, 1, tzinfo=UTC), text)

    def test_rule_without_id_is_given_one(self) -> None:
        config = rules.parse_document(document(rule(rule_id=None), rule(rule_id=None)))  # type: ignore[arg-type]
        first, second = config.rules
        self.assertTrue(first.id and second.id and first.id != second.id)
        self.assertLessEqual(len(first.id), rules.MAX_ID)

    def test_noncurrent_and_delete_marker_and_abort_are_kept(self) -> None:
        body = document(
            rule(actions="<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
                         "<NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays>"
                         "<NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
                         "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation>"
                         "</AbortIncompleteMultipartUpload>"),
        )
        (only,) = rules.parse_document(body).rules
        self.assertEqual(
            (only.expired_object_delete_marker, only.noncurrent_days, only.newer_noncurrent_versions, only.abort_days),
            (True, 7, 3, 2),
        )
        self.assertFalse(only.expires_objects)

    def test_disabled_rule(self) -> None:
        (only,) = rules.parse_document(document(rule(status="Disabled"))).rules
        self.assertFalse(only.enabled)
        self.assertEqual(rules.parse_document(document(rule(status="Disabled"))).enabled_rules, ())


class RefusalTests(ErrorAssertions):
    def test_not_xml_or_other_root(self) -> None:
        self.refused(b"<nope", "MalformedXML")
        self.refused(b"<Tagging/>", "MalformedXML")

    def test_no_rule(self) -> None:
        self.refused(document(), "MalformedXML")

    def test_unknown_element(self) -> None:
        self.refused(document(rule() + "<Colour>red</Colour>"), "MalformedXML")
        self.refused(b"<LifecycleConfiguration><Other/></LifecycleConfiguration>", "MalformedXML")

    def test_more_than_1000_rules(self) -> None:
        body = document(*(rule(rule_id=f"r{n}") for n in range(1001)))
        self.refused(body, "InvalidArgument", "The number of rules must not exceed the allowed limit of 1000")

    def test_1000_rules_are_fine(self) -> None:
        body = document(*(rule(rule_id=f"r{n}") for n in range(1000)))
        self.assertEqual(len(rules.parse_document(body).rules), 1000)

    def test_duplicate_ids(self) -> None:
        self.refused(document(rule(), rule()), "InvalidArgument",
                     "Rule ID must be unique. Found same ID for more than one rule")

    def test_id_too_long(self) -> None:
        self.refused(document(rule(rule_id="x" * 256)), "InvalidArgument",
                     "ID length should not exceed allowed limit of 255")
        rules.parse_document(document(rule(rule_id="x" * 255)))

    def test_status(self) -> None:
        self.refused(document(rule(status="enabled")), "MalformedXML")
        self.refused(document("<ID>a</ID><Filter/><Expiration><Days>1</Days></Expiration>"), "MalformedXML")

    def test_filter_and_prefix_both_or_neither(self) -> None:
        self.refused(document(rule("<Prefix>a</Prefix><Filter/>")), "MalformedXML")
        self.refused(document(rule("")), "MalformedXML")

    def test_filter_with_two_conditions_outside_and(self) -> None:
        self.refused(document(rule("<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>")),
                     "MalformedXML")
        self.refused(document(rule(
            "<Filter><ObjectSizeGreaterThan>1</ObjectSizeGreaterThan><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter>"
        )), "MalformedXML")

    def test_and_with_an_element_twice(self) -> None:
        self.refused(document(rule("<Filter><And><Prefix></Prefix><Prefix>b</Prefix></And></Filter>")), "MalformedXML")
        self.refused(document(rule("<Filter><And><ObjectSizeLessThan>1</ObjectSizeLessThan>"
                                   "<ObjectSizeLessThan>2</ObjectSizeLessThan></And></Filter>")), "MalformedXML")

    def test_malformed_tag(self) -> None:
        self.refused(document(rule("<Filter><Tag><Key>k</Key></Tag></Filter>")), "MalformedXML")

    def test_duplicate_tag_keys_in_and(self) -> None:
        self.refused(document(rule(
            "<Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag></And></Filter>"
        )), "InvalidRequest", "Duplicate Tag Keys are not allowed.")

    def test_invalid_tag_key(self) -> None:
        self.refused(document(rule("<Filter><Tag><Key>aws:x</Key><Value>v</Value></Tag></Filter>")), "InvalidTag")

    def test_sizes(self) -> None:
        self.refused(document(rule("<Filter><ObjectSizeGreaterThan>-1</ObjectSizeGreaterThan></Filter>")),
                     "InvalidArgument")
        self.refused(document(rule("<Filter><ObjectSizeLessThan>x</ObjectSizeLessThan></Filter>")), "MalformedXML")
        self.refused(document(rule(
            "<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
            "<ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter>"
        )), "InvalidArgument", "'ObjectSizeGreaterThan' must be less than 'ObjectSizeLessThan'")

    def test_no_action(self) -> None:
        self.refused(document(rule(actions="")), "InvalidRequest", "At least one action needs to be specified in a rule")

    def test_days_must_be_positive(self) -> None:
        for days in ("0", "-3"):
            self.refused(document(rule(actions=f"<Expiration><Days>{days}</Days></Expiration>")), "InvalidArgument",
                         "'Days' for Expiration action must be a positive integer")
        self.refused(document(rule(actions="<Expiration><Days>1.5</Days></Expiration>")), "MalformedXML")

    def test_date_must_be_midnight_utc(self) -> None:
        for text in ("2026-01-01T00:00:01Z", "2026-01-01T12:00:00Z", "2026-01-01T00:00:00+02:00",
                     "2026-01-01T00:00:00.5Z"):
            self.refused(document(rule(actions=f"<Expiration><Date>{text}</Date></Expiration>")), "InvalidArgument",
                         "'Date' must be at midnight GMT")
        for text in ("tomorrow", "2026-13-01T00:00:00Z", ""):
            self.refused(document(rule(actions=f"<Expiration><Date>{text}</Date></Expiration>")), "MalformedXML")

    def test_expiration_takes_exactly_one_choice(self) -> None:
        self.refused(document(rule(actions="<Expiration/>")), "MalformedXML")
        self.refused(document(rule(actions="<Expiration><Days>1</Days><Date>2026-01-01T00:00:00Z</Date></Expiration>")),
                     "MalformedXML")
        self.refused(document(rule(
            actions="<Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
        )), "MalformedXML")
        self.refused(document(rule(actions="<Expiration><ExpiredObjectDeleteMarker>yes</ExpiredObjectDeleteMarker>"
                                           "</Expiration>")), "MalformedXML")

    def test_two_expirations(self) -> None:
        self.refused(document(rule(actions="<Expiration><Days>1</Days></Expiration>" * 2)), "MalformedXML")

    def test_delete_marker_not_with_tags(self) -> None:
        self.refused(document(rule(
            "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>",
            actions="<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>",
        )), "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags.")

    def test_abort_not_with_tags_or_size(self) -> None:
        abort = "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
        self.refused(document(rule("<Filter><And><Prefix>p</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter>",
                                   actions=abort)),
                     "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags.")
        self.refused(document(rule("<Filter><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter>", actions=abort)),
                     "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Object Size.")

    def test_abort_days_positive(self) -> None:
        self.refused(document(rule(actions="<AbortIncompleteMultipartUpload><DaysAfterInitiation>0"
                                           "</DaysAfterInitiation></AbortIncompleteMultipartUpload>")),
                     "InvalidArgument", "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a "
                     "positive integer")
        self.refused(document(rule(actions="<AbortIncompleteMultipartUpload/>")), "MalformedXML")

    def test_noncurrent_version_expiration(self) -> None:
        self.refused(document(rule(actions="<NoncurrentVersionExpiration/>")), "MalformedXML")
        self.refused(document(rule(actions="<NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays>"
                                           "</NoncurrentVersionExpiration>")), "InvalidArgument",
                     "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer")
        self.refused(document(rule(actions="<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                                           "<NewerNoncurrentVersions>101</NewerNoncurrentVersions>"
                                           "</NoncurrentVersionExpiration>")), "InvalidArgument")

    def test_transitions_are_not_implemented(self) -> None:
        for element in ("Transition", "NoncurrentVersionTransition"):
            error = self.refused(
                document(rule(actions=f"<{element}><Days>30</Days><StorageClass>GLACIER</StorageClass></{element}>")),
                "NotImplemented", status=501,
            )
            self.assertIn(element, error.message)

    def test_an_invalid_transition_is_refused_as_s3_refuses_it(self) -> None:
        """A transition S3 would refuse gets S3's 400 rather than the 501 of a valid one."""
        self.refused(document(rule(actions="<Transition><Date>1970-08-23T01:08:47Z</Date>"
                                           "<StorageClass>GLACIER</StorageClass></Transition>")),
                     "InvalidArgument", "'Date' must be at midnight GMT")
        self.refused(document(rule(actions="<Transition><Days>-1</Days><StorageClass>GLACIER</StorageClass>"
                                           "</Transition>")),
                     "InvalidArgument", "'Days' in Transition action must be nonnegative")
        self.refused(document(rule(actions="<NoncurrentVersionTransition><NoncurrentDays>-1</NoncurrentDays>"
                                           "<StorageClass>GLACIER</StorageClass></NoncurrentVersionTransition>")),
                     "InvalidArgument", "'NoncurrentDays' in NoncurrentVersionTransition action must be nonnegative")
        self.refused(document(rule(actions="<Transition><Days>soon</Days><StorageClass>GLACIER</StorageClass>"
                                           "</Transition>")), "MalformedXML")
        # Zero days is a valid transition (unlike an expiration): not implemented.
        self.refused(document(rule(actions="<Transition><Days>0</Days><StorageClass>GLACIER</StorageClass>"
                                           "</Transition>")), "NotImplemented", status=501)


class RenderTests(SynchronousTestCase):
    def test_round_trip_through_render(self) -> None:
        body = document(
            rule(),
            rule("<Prefix>old/</Prefix>", rule_id="legacy", status="Disabled",
                 actions="<Expiration><Date>2026-02-01T00:00:00Z</Date></Expiration>"),
            rule("<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>", rule_id="tag"),
            rule("<Filter/>", rule_id="all",
                 actions="<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation>"
                         "</AbortIncompleteMultipartUpload>"),
            rule("<Filter><ObjectSizeGreaterThan>0</ObjectSizeGreaterThan></Filter>", rule_id="size"),
        )
        config = rules.parse_document(body)
        rendered = rules.render(config)
        self.assertEqual(rules.parse_document(rendered), config)
        self.assertIn(b"<Date>2026-02-01T00:00:00.000Z</Date>", rendered)
        self.assertIn(b"<Rule><ID>legacy</ID><Prefix>old/</Prefix><Status>Disabled</Status>", rendered)
        self.assertIn(b"<Filter></Filter>", rendered)

    def test_store_text_round_trip(self) -> None:
        body = document(
            rule("<Filter><And><Prefix>p</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
                 "<ObjectSizeLessThan>9</ObjectSizeLessThan></And></Filter>",
                 actions="<Expiration><Date>2026-02-01T00:00:00Z</Date></Expiration>"
                         "<NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays></NoncurrentVersionExpiration>"),
        )
        config = rules.parse_document(body)
        self.assertEqual(rules.load(rules.dump(config)), config)


class WhenTests(SynchronousTestCase):
    def test_days_round_up_to_the_next_midnight(self) -> None:
        # AWS's example: written 2014-01-15 10:30 UTC, 3 days: expires 2014-01-19 00:00 UTC.
        (only,) = rules.parse_document(document(rule())).rules
        self.assertEqual(rules.expiry_of(only, record()), datetime.datetime(2014, 1, 19, tzinfo=UTC))

    def test_a_midnight_goes_to_the_next_one(self) -> None:
        (only,) = rules.parse_document(document(rule())).rules
        written = datetime.datetime(2014, 1, 15, tzinfo=UTC)
        self.assertEqual(rules.expiry_of(only, record(last_modified=written)), datetime.datetime(2014, 1, 19, tzinfo=UTC))

    def test_date_expires_every_matching_object(self) -> None:
        (only,) = rules.parse_document(document(
            rule(actions="<Expiration><Date>2026-01-01T00:00:00Z</Date></Expiration>"))).rules
        later = datetime.datetime(2027, 1, 1, tzinfo=UTC)
        self.assertEqual(rules.expiry_of(only, record(last_modified=later)), datetime.datetime(2026, 1, 1, tzinfo=UTC))

    def test_unmatched_or_disabled_never_expire(self) -> None:
        (only,) = rules.parse_document(document(rule())).rules
        self.assertIsNone(rules.expiry_of(only, record("other/a")))
        (disabled,) = rules.parse_document(document(rule(status="Disabled"))).rules
        self.assertIsNone(rules.expiry_of(disabled, record()))

    def test_tag_and_size_filters(self) -> None:
        tag_filter = rules.Filter(rules.AND, "p/", (("a", "1"), ("b", "2")), greater=5, less=100)
        self.assertTrue(tag_filter.matches("p/x", 50, (("a", "1"), ("b", "2"), ("c", "3"))))
        self.assertFalse(tag_filter.matches("p/x", 50, (("a", "1"),)))
        self.assertFalse(tag_filter.matches("p/x", 50, (("a", "1"), ("b", "3"))))
        self.assertFalse(tag_filter.matches("p/x", 5, (("a", "1"), ("b", "2"))))
        self.assertFalse(tag_filter.matches("p/x", 100, (("a", "1"), ("b", "2"))))
        self.assertFalse(tag_filter.matches("q/x", 50, (("a", "1"), ("b", "2"))))

    def test_a_noncurrent_version_is_due_noncurrent_days_after_its_successor_was_written(self) -> None:
        (only,) = rules.parse_document(document(rule(
            actions="<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>"
        ))).rules
        since = datetime.datetime(2020, 1, 2, 11, 30, tzinfo=UTC)
        version = LifecycleVersion(record(), successor_id=7, noncurrent_since=since, newer_noncurrent=0)
        self.assertEqual(rules.version_expiry(only, version), datetime.datetime(2020, 1, 4, tzinfo=UTC))
        self.assertIsNone(rules.version_expiry(only, LifecycleVersion(record("other/a"), 7, since)))
        # Not its actions: a lone delete marker, with no Days, Date nor ExpiredObjectDeleteMarker.
        self.assertIsNone(rules.version_expiry(only, LifecycleVersion(marker())))
        self.assertTrue(only.expires_versions)
        self.assertFalse(only.expires_objects)

    def test_newer_noncurrent_versions_are_kept(self) -> None:
        (only,) = rules.parse_document(document(rule(
            actions="<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                    "<NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
        ))).rules
        since = datetime.datetime(2020, 1, 2, tzinfo=UTC)
        self.assertIsNone(rules.version_expiry(only, LifecycleVersion(record(), 7, since, newer_noncurrent=1)))
        self.assertEqual(rules.version_expiry(only, LifecycleVersion(record(), 7, since, newer_noncurrent=2)),
                         datetime.datetime(2020, 1, 4, tzinfo=UTC))

    def test_an_expired_object_delete_marker(self) -> None:
        (flagged,) = rules.parse_document(document(rule(
            actions="<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
        ))).rules
        lone = LifecycleVersion(marker())
        self.assertEqual(rules.version_expiry(flagged, lone), lone.record.last_modified)
        (unflagged,) = rules.parse_document(document(rule(
            actions="<Expiration><ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker></Expiration>"
        ))).rules
        self.assertIsNone(rules.version_expiry(unflagged, lone))
        self.assertFalse(unflagged.expires_versions)
        # Days: once the marker is as old (S3's "old enough to satisfy the age criteria").
        (days,) = rules.parse_document(document(rule())).rules
        self.assertEqual(rules.version_expiry(days, lone), datetime.datetime(2014, 1, 19, tzinfo=UTC))
        # A delete marker has size 0: a size filter above it selects none.
        (sized,) = rules.parse_document(document(rule(
            filter_xml="<Filter><ObjectSizeGreaterThan>0</ObjectSizeGreaterThan></Filter>",
            actions="<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>",
        ))).rules
        self.assertIsNone(rules.version_expiry(sized, lone))

    def test_abort_due(self) -> None:
        (only,) = rules.parse_document(document(rule(
            actions="<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation>"
                    "</AbortIncompleteMultipartUpload>"))).rules
        initiated = datetime.datetime(2014, 1, 15, 23, 59, tzinfo=UTC)
        self.assertEqual(rules.abort_due(only, initiated), datetime.datetime(2014, 1, 18, tzinfo=UTC))

    def test_abort_headers(self) -> None:
        """The earliest abort of the enabled rules whose prefix the key has; none without one."""
        def abort(rule_id: str, prefix: str, days: int, status: str = "Enabled") -> str:
            return rule(f"<Filter><Prefix>{prefix}</Prefix></Filter>", status,
                        f"<AbortIncompleteMultipartUpload><DaysAfterInitiation>{days}</DaysAfterInitiation>"
                        "</AbortIncompleteMultipartUpload>", rule_id)

        config = rules.parse_document(document(
            abort("slow", "tmp/", 7), abort("fast", "tmp/big/", 2), abort("off", "tmp/", 1, "Disabled"),
            rule(rule_id="expiry"),
        ))
        initiated = datetime.datetime(2014, 1, 15, 10, 30, tzinfo=UTC)
        self.assertEqual(
            rules.abort_headers(config, "tmp/big/x", initiated),
            {"x-amz-abort-date": "Sat, 18 Jan 2014 00:00:00 GMT", "x-amz-abort-rule-id": "fast"},
        )
        self.assertEqual(rules.abort_headers(config, "tmp/x", initiated)["x-amz-abort-rule-id"], "slow")
        self.assertEqual(rules.abort_headers(config, "logs/a", initiated), {})

    def test_expiration_header(self) -> None:
        config = rules.parse_document(document(
            rule(rule_id="late", actions="<Expiration><Days>30</Days></Expiration>"),
            rule(rule_id="picture-deletion-rule"),
        ))
        self.assertEqual(
            rules.expiration_header(config, record()),
            'expiry-date="Sun, 19 Jan 2014 00:00:00 GMT", rule-id="picture-deletion-rule"',
        )
        self.assertIsNone(rules.expiration_header(config, record("other")))

    def test_expiration_header_quotes_the_rule_id(self) -> None:
        config = rules.Configuration((rules.Rule(id='a"b\\c\r\nd', status="Enabled", filter=rules.Filter(), days=1),))
        self.assertEqual(
            rules.expiration_header(config, record()),
            'expiry-date="Fri, 17 Jan 2014 00:00:00 GMT", rule-id="a\\"b\\\\cd"',
        )
