"""
Conformance of bucket lifecycle configurations through a running daemon:
the lifecycle behaviours a standard S3 conformance suite checks (Put, Get
and DeleteBucketLifecycleConfiguration, rule IDs given or made, the errors
of a bad ID, Status, Date or Days, rules with a Filter, an empty Filter,
NoncurrentVersionExpiration, ExpiredObjectDeleteMarker and
AbortIncompleteMultipartUpload, and the x-amz-expiration header of PUT,
HEAD and GET under prefix and tag filters, and of CopyObject and
CompleteMultipartUpload), each as S3 answers it, with boto3 for the
account alice (the buckets' owner).

Not here, with the reason:
  - objects really expiring: the suite shortens a lifecycle day to seconds
    and waits; s3balance's expirer is checked on a controlled clock
    (C{tests.test_lifecycle_expirer}: Days, Date, prefix, tag and size
    filters, disabled rules, aborted uploads) and once through a daemon
    (C{tests.test_lifecycle_api.ExpirerTests});
  - expiring noncurrent versions and delete markers: buckets have no
    versioning (such rules are accepted and kept, and have nothing to act on);
  - transitions between storage classes: s3balance has one storage class; a
    valid Transition answers 501 NotImplemented (checked here), an invalid
    one S3's 400.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import Any, Optional

from tests.conformance import ConformanceCase

_HEADER = re.compile(r'^expiry-date="([^"]+)", rule-id="([^"]*)"$')


def rule(rule_id: Optional[str], prefix: str, status: str = "Enabled", **actions: Any) -> dict:
    """A rule of the older form (its Prefix directly in the rule), as the conformance suite writes most."""
    found = {"Prefix": prefix, "Status": status, **actions}
    if rule_id is not None:
        found["ID"] = rule_id
    return found


def next_midnight(moment: datetime.datetime) -> datetime.datetime:
    """The first midnight UTC after C{moment}, where S3 rounds an object's expiry to."""
    day = datetime.datetime(moment.year, moment.month, moment.day, tzinfo=datetime.UTC)
    return day + datetime.timedelta(days=1)


class LifecycleCase(ConformanceCase):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.new_bucket()

    def put(self, *rules: dict) -> dict:
        return self.alice.put_bucket_lifecycle_configuration(Bucket=self.bucket,
                                                             LifecycleConfiguration={"Rules": list(rules)})

    def refused(self, status: int, code: str, *rules: dict) -> None:
        """Putting C{rules} answers C{status} and C{code} and leaves the bucket without a configuration."""
        self.assertS3Error(status, code, self.put, *rules)
        self.assertS3Error(404, "NoSuchLifecycleConfiguration", self.alice.get_bucket_lifecycle_configuration,
                           Bucket=self.bucket)

    def rules(self) -> list[dict]:
        return self.alice.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]


class ConfigurationTests(LifecycleCase):
    def test_set_enabled_and_disabled_rules(self) -> None:
        """A configuration of an enabled and a disabled rule is accepted (200)."""
        answer = self.put(rule("rule1", "test1/", Expiration={"Days": 1}),
                          rule("rule2", "test2/", "Disabled", Expiration={"Days": 2}))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)

    def test_get_answers_the_rules_as_put(self) -> None:
        """GetBucketLifecycleConfiguration answers the rules as they were put, no element more or less."""
        rules = [rule("test1/", "test1/", Expiration={"Days": 31}), rule("test2/", "test2/", Expiration={"Days": 120})]
        self.put(*rules)
        self.assertEqual(self.rules(), rules)

    def test_rules_without_an_id_are_given_one(self) -> None:
        """Rules put without an ID are answered with one each, unique, at most 255 characters, kept as given."""
        self.put(rule(None, "test1/", Expiration={"Days": 31}), rule(None, "test2/", Expiration={"Days": 120}))
        got = self.rules()
        self.assertEqual([(r["Prefix"], r["Status"], r["Expiration"]) for r in got],
                         [("test1/", "Enabled", {"Days": 31}), ("test2/", "Enabled", {"Days": 120})])
        ids = [r["ID"] for r in got]
        self.assertEqual(len(set(ids)), 2)
        self.assertTrue(all(0 < len(rule_id) <= 255 for rule_id in ids), ids)
        self.assertEqual([r["ID"] for r in self.rules()], ids)

    def test_an_id_of_256_characters_is_refused(self) -> None:
        """A rule ID of 256 characters answers 400 InvalidArgument; 255 are accepted."""
        self.refused(400, "InvalidArgument", rule("a" * 256, "test1/", Expiration={"Days": 2}))
        self.put(rule("a" * 255, "test1/", Expiration={"Days": 2}))
        self.assertEqual(self.rules()[0]["ID"], "a" * 255)

    def test_two_rules_of_the_same_id_are_refused(self) -> None:
        """Two rules of one ID answer 400 InvalidArgument."""
        self.refused(400, "InvalidArgument", rule("rule1", "test1/", Expiration={"Days": 1}),
                     rule("rule1", "test2/", Expiration={"Days": 2}))

    def test_a_status_other_than_enabled_or_disabled_is_malformed(self) -> None:
        """A Status of "enabled", "disabled" or "invalid" (S3's are capitalised) answers 400 MalformedXML."""
        for status in ("enabled", "disabled", "invalid"):
            self.refused(400, "MalformedXML", rule("rule1", "test1/", status, Expiration={"Days": 2}))
        # The older PutBucketLifecycle (without "Configuration") as well.
        self.assertS3Error(400, "MalformedXML", self.alice.put_bucket_lifecycle, Bucket=self.bucket,
                           LifecycleConfiguration={"Rules": [rule("rule1", "test1/", "disabled",
                                                                  Expiration={"Days": 2})]})

    def test_an_expiration_date(self) -> None:
        """An expiration Date at midnight GMT is accepted (200) and answered back at that midnight."""
        answer = self.put(rule("rule1", "test1/", Expiration={"Date": "2017-09-27"}))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.rules()[0]["Expiration"]["Date"],
                         datetime.datetime(2017, 9, 27, tzinfo=datetime.UTC))

    def test_an_expiration_date_not_at_midnight_is_refused(self) -> None:
        """
        The Date "20200101" answers 400 InvalidArgument: boto3 reads it as
        seconds since 1970 and sends a date that is not at midnight GMT.
        """
        self.refused(400, "InvalidArgument", rule("rule1", "test1/", Expiration={"Date": "20200101"}))

    def test_zero_days_of_expiration_are_refused(self) -> None:
        """Expiration after 0 days answers 400 InvalidArgument ("Days" must be positive)."""
        self.refused(400, "InvalidArgument", rule("rule1", "days0/", Expiration={"Days": 0}))

    def test_noncurrent_version_expiration(self) -> None:
        """Rules of NoncurrentVersionExpiration are accepted (200) and answered back."""
        answer = self.put(rule("rule1", "past/", NoncurrentVersionExpiration={"NoncurrentDays": 2}),
                          rule("rule2", "future/", NoncurrentVersionExpiration={"NoncurrentDays": 3}))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual([r["NoncurrentVersionExpiration"] for r in self.rules()],
                         [{"NoncurrentDays": 2}, {"NoncurrentDays": 3}])

    def test_expired_object_delete_marker(self) -> None:
        """A rule of ExpiredObjectDeleteMarker is accepted (200) and answered back."""
        answer = self.put(rule("rule1", "test1/", Expiration={"ExpiredObjectDeleteMarker": True}))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.rules()[0]["Expiration"], {"ExpiredObjectDeleteMarker": True})

    def test_a_filter(self) -> None:
        """A rule with a Filter of a Prefix (not the older Prefix in the rule) is accepted and answered back."""
        answer = self.put({"ID": "rule1", "Expiration": {"ExpiredObjectDeleteMarker": True},
                           "Filter": {"Prefix": "foo"}, "Status": "Enabled"})
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        (got,) = self.rules()
        self.assertEqual(got["Filter"], {"Prefix": "foo"})
        self.assertNotIn("Prefix", got)

    def test_an_empty_filter(self) -> None:
        """A rule with an empty Filter (every object) is accepted and answered back with its empty Filter."""
        answer = self.put({"ID": "rule1", "Expiration": {"ExpiredObjectDeleteMarker": True}, "Filter": {},
                           "Status": "Enabled"})
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.rules()[0]["Filter"], {})

    def test_abort_incomplete_multipart_upload(self) -> None:
        """Rules of AbortIncompleteMultipartUpload, enabled and disabled, are accepted (200) and answered back."""
        answer = self.put(rule("rule1", "test1/", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2}),
                          rule("rule2", "test2/", "Disabled",
                               AbortIncompleteMultipartUpload={"DaysAfterInitiation": 3}))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual([(r["Status"], r["AbortIncompleteMultipartUpload"]) for r in self.rules()],
                         [("Enabled", {"DaysAfterInitiation": 2}), ("Disabled", {"DaysAfterInitiation": 3})])

    def test_a_transition_with_a_date_not_at_midnight_is_refused(self) -> None:
        """A Transition whose Date is not at midnight GMT answers 400 InvalidArgument, as S3 answers it."""
        self.refused(400, "InvalidArgument", rule("rule1", "test1/", Expiration={"Date": "2023-09-27"},
                                                  Transitions=[{"Date": "20220927", "StorageClass": "GLACIER"}]))

    def test_a_valid_transition_is_not_implemented(self) -> None:
        """A valid Transition answers 501 NotImplemented: s3balance has no other storage class to move objects to."""
        self.refused(501, "NotImplemented", rule("rule1", "test1/",
                                                 Transitions=[{"Days": 30, "StorageClass": "GLACIER"}]))

    def test_get_and_delete_without_a_configuration(self) -> None:
        """
        Without a configuration, Get answers 404 NoSuchLifecycleConfiguration
        and Delete 204; after a Delete, Get answers 404 again.
        """
        self.assertS3Error(404, "NoSuchLifecycleConfiguration", self.alice.get_bucket_lifecycle_configuration,
                           Bucket=self.bucket)
        self.assertEqual(self.alice.delete_bucket_lifecycle(Bucket=self.bucket)["ResponseMetadata"][
            "HTTPStatusCode"], 204)
        self.put(rule("rule1", "test1/", Expiration={"Days": 1}))
        self.assertEqual(self.alice.delete_bucket_lifecycle(Bucket=self.bucket)["ResponseMetadata"][
            "HTTPStatusCode"], 204)
        self.assertS3Error(404, "NoSuchLifecycleConfiguration", self.alice.get_bucket_lifecycle_configuration,
                           Bucket=self.bucket)

    def test_another_account_without_a_grant(self) -> None:
        """Without a grant, another account may neither read, put nor delete the configuration (403)."""
        self.put(rule("rule1", "test1/", Expiration={"Days": 1}))
        self.assertDenied(self.bob.get_bucket_lifecycle_configuration, Bucket=self.bucket)
        self.assertDenied(self.bob.put_bucket_lifecycle_configuration, Bucket=self.bucket,
                          LifecycleConfiguration={"Rules": [rule("x", "", Expiration={"Days": 2})]})
        self.assertDenied(self.bob.delete_bucket_lifecycle, Bucket=self.bucket)
        self.assertEqual([r["ID"] for r in self.rules()], ["rule1"])


class ExpirationHeaderTests(LifecycleCase):
    def expiration(self, answer: dict) -> Optional[tuple[datetime.datetime, str]]:
        """The expiry date and rule ID of an answer's x-amz-expiration header, or None without one."""
        header = answer["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration")
        if header is None:
            return None
        match = _HEADER.match(header)
        self.assertIsNotNone(match, header)
        assert match is not None
        return email.utils.parsedate_to_datetime(match.group(1)), match.group(2)

    def assertExpiresInADay(self, answer: dict, before: datetime.datetime, rule_id: str = "rule1") -> None:
        """The answer's x-amz-expiration names C{rule_id} and the midnight after a day from the object's write."""
        after = datetime.datetime.now(datetime.UTC)
        found = self.expiration(answer)
        self.assertIsNotNone(found)
        assert found is not None
        day = datetime.timedelta(days=1)
        self.assertIn(found[0], {next_midnight(before + day), next_midnight(after + day)})
        self.assertEqual(found[1], rule_id)

    def test_put_answers_the_expiration(self) -> None:
        """PutObject of a key a 1-day rule matches answers x-amz-expiration: the midnight after a day, the rule's ID."""
        self.put(rule("rule1", "days1/", Expiration={"Days": 1}))
        before = datetime.datetime.now(datetime.UTC)
        answer = self.alice.put_object(Bucket=self.bucket, Key="days1/foo", Body=b"bar")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertExpiresInADay(answer, before)

    def test_head_and_get_answer_the_expiration(self) -> None:
        """HEAD and GET of a matched object answer the x-amz-expiration its PUT answered; others none."""
        self.put(rule("rule1", "days1/", Expiration={"Days": 1}),
                 rule("rule2", "off/", "Disabled", Expiration={"Days": 1}))
        before = datetime.datetime.now(datetime.UTC)
        put = self.alice.put_object(Bucket=self.bucket, Key="days1/foo", Body=b"bar")
        head = self.alice.head_object(Bucket=self.bucket, Key="days1/foo")
        self.assertEqual(head["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertExpiresInADay(head, before)
        self.assertEqual(self.expiration(head), self.expiration(put))
        self.assertEqual(self.expiration(self.alice.get_object(Bucket=self.bucket, Key="days1/foo")),
                         self.expiration(put))
        for key in ("days2/foo", "off/foo"):
            self.assertIsNone(self.expiration(self.alice.put_object(Bucket=self.bucket, Key=key, Body=b"bar")), key)
            self.assertIsNone(self.expiration(self.alice.head_object(Bucket=self.bucket, Key=key)), key)

    def test_a_tag_filter_decides_the_header(self) -> None:
        """
        A rule filtering on a tag the object holds (set by PutObjectTagging
        after the write) makes HEAD answer x-amz-expiration; once the rule
        filters on another tag, HEAD answers none.
        """
        tagged = {"Filter": {"Tag": {"Key": "key1", "Value": "tag1"}}, "Status": "Enabled",
                  "Expiration": {"Days": 1}, "ID": "rule1"}
        self.put(tagged)
        before = datetime.datetime.now(datetime.UTC)
        self.alice.put_object(Bucket=self.bucket, Key="obj_key1", Body=b"obj_key1_body")
        self.alice.put_object_tagging(Bucket=self.bucket, Key="obj_key1", Tagging={
            "TagSet": [{"Key": "key1", "Value": "tag1"}, {"Key": "key5", "Value": "tag5"}]})
        self.assertExpiresInADay(self.alice.head_object(Bucket=self.bucket, Key="obj_key1"), before)
        self.put({**tagged, "Filter": {"Tag": {"Key": "key2", "Value": "tag1"}}})
        self.assertIsNone(self.expiration(self.alice.head_object(Bucket=self.bucket, Key="obj_key1")))

    def test_an_and_filter_needs_every_tag(self) -> None:
        """A rule filtering on two tags (And) answers no x-amz-expiration for an object holding one of them."""
        self.put({"Filter": {"And": {"Tags": [{"Key": "key1", "Value": "tag1"}, {"Key": "key5", "Value": "tag6"}]}},
                  "Status": "Enabled", "Expiration": {"Days": 1}, "ID": "rule1"})
        self.alice.put_object(Bucket=self.bucket, Key="obj_key1", Body=b"obj_key1_body")
        self.alice.put_object_tagging(Bucket=self.bucket, Key="obj_key1", Tagging={
            "TagSet": [{"Key": "key1", "Value": "tag1"}, {"Key": "key5", "Value": "tag5"}]})
        head = self.alice.head_object(Bucket=self.bucket, Key="obj_key1")
        self.assertEqual(head["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertIsNone(self.expiration(head))

    def test_copy_and_complete_answer_the_expiration(self) -> None:
        """CopyObject and CompleteMultipartUpload of a matched key answer x-amz-expiration, as a PUT does."""
        self.put(rule("rule1", "days1/", Expiration={"Days": 1}))
        before = datetime.datetime.now(datetime.UTC)
        self.alice.put_object(Bucket=self.bucket, Key="source", Body=b"bar")
        copied = self.alice.copy_object(Bucket=self.bucket, Key="days1/copy",
                                        CopySource={"Bucket": self.bucket, "Key": "source"})
        self.assertExpiresInADay(copied, before)
        self.assertEqual(copied["Expiration"], copied["ResponseMetadata"]["HTTPHeaders"]["x-amz-expiration"])
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="days1/big")["UploadId"]
        part = self.alice.upload_part(Bucket=self.bucket, Key="days1/big", UploadId=upload, PartNumber=1, Body=b"x")
        completed = self.alice.complete_multipart_upload(
            Bucket=self.bucket, Key="days1/big", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        self.assertExpiresInADay(completed, before)
        self.assertIsNone(self.expiration(self.alice.copy_object(
            Bucket=self.bucket, Key="other", CopySource={"Bucket": self.bucket, "Key": "source"})))


class AbortHeaderTests(LifecycleCase):
    def test_multipart_uploads_answer_when_a_rule_aborts_them(self) -> None:
        """
        CreateMultipartUpload and ListParts of a key an AbortIncompleteMultipartUpload
        rule matches answer x-amz-abort-date (the midnight after its days from the
        initiation) and x-amz-abort-rule-id; of another key, neither.
        """
        self.put(rule("abort2", "tmp/", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2}))
        before = datetime.datetime.now(datetime.UTC)
        created = self.alice.create_multipart_upload(Bucket=self.bucket, Key="tmp/big")
        after = datetime.datetime.now(datetime.UTC)
        days = datetime.timedelta(days=2)
        expected = {next_midnight(before + days), next_midnight(after + days)}
        self.assertIn(created["AbortDate"], expected)
        self.assertEqual(created["AbortRuleId"], "abort2")
        parts = self.alice.list_parts(Bucket=self.bucket, Key="tmp/big", UploadId=created["UploadId"])
        self.assertIn(parts["AbortDate"], expected)
        self.assertEqual(parts["AbortRuleId"], "abort2")
        other = self.alice.create_multipart_upload(Bucket=self.bucket, Key="keep/big")
        self.assertNotIn("AbortDate", other)
        self.assertNotIn("AbortRuleId", other)
        for key, upload in (("tmp/big", created), ("keep/big", other)):
            self.alice.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
