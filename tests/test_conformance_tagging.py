"""
Conformance of object and bucket tags through a running daemon: the
tagging behaviours a standard S3 conformance suite checks (Put, Get and
DeleteObjectTagging, the tag count on GET and HEAD, S3's limits on the
number and length of tags, the x-amz-tagging header of PutObject,
CreateMultipartUpload and CopyObject with its tagging directive, and
Put, Get and DeleteBucketTagging), each as S3 answers it, with boto3 for
the account alice (the buckets' owner) and bob.

Elsewhere: tags in a POST form (C{tests.test_conformance_post}), bucket
policies on the tagging actions and on C{s3:ExistingObjectTag} and
C{s3:RequestObjectTag} (C{tests.test_conformance_policy}).  Tags of one
object version are not checked: buckets have no versioning.

Where the conformance suite and S3 differ, the test follows S3 and says so:
eleven tags on an object are C{BadRequest} on S3, C{InvalidTag} in the
suite (the answer of Ceph RGW and SeaweedFS).
"""

from __future__ import annotations

import random
import string
from typing import Any

from tests.conformance import SECRETS, ConformanceCase

MIB = 1024 * 1024


def numbered(count: int) -> dict:
    """A tag set of C{count} tags "0"="0", "1"="1"... (in the order S3 answers them for up to ten)."""
    return {"TagSet": [{"Key": str(n), "Value": str(n)} for n in range(count)]}


def random_text(length: int) -> str:
    return "".join(random.choice(string.ascii_letters) for _ in range(length))


class ObjectTaggingTests(ConformanceCase):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.new_bucket()
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"some content")

    def tag_set(self, key: str = "k") -> list[dict]:
        return self.alice.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]

    def test_put_then_get_object_tagging(self) -> None:
        """PutObjectTagging answers 200; GetObjectTagging answers the tag set as it was put."""
        answer = self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=numbered(2))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.tag_set(), numbered(2)["TagSet"])

    def test_head_and_get_answer_the_tag_count(self) -> None:
        """HEAD and GET of a tagged object answer x-amz-tagging-count; an untagged object's answer has none."""
        self.assertNotIn("x-amz-tagging-count", self.alice.head_object(Bucket=self.bucket, Key="k")[
            "ResponseMetadata"]["HTTPHeaders"])
        self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=numbered(2))
        head = self.alice.head_object(Bucket=self.bucket, Key="k")
        self.assertEqual(head["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"], "2")
        got = self.alice.get_object(Bucket=self.bucket, Key="k")
        self.assertEqual((got["TagCount"], got["Body"].read()), (2, b"some content"))

    def test_ten_tags_are_accepted(self) -> None:
        """Ten tags, S3's most on an object, are stored and read back."""
        self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=numbered(10))
        self.assertEqual(self.tag_set(), numbered(10)["TagSet"])

    def test_eleven_tags_are_refused(self) -> None:
        """
        Eleven tags answer 400 BadRequest "Object tags cannot be greater than
        10", as S3 answers, and leave the object untagged.  (The conformance
        suite expects the code InvalidTag, which Ceph RGW and SeaweedFS
        answer; S3 itself answers BadRequest.)
        """
        error = self.assertS3Error(400, "BadRequest", self.alice.put_object_tagging, Bucket=self.bucket, Key="k",
                                   Tagging=numbered(11))
        self.assertEqual(error.response["Error"]["Message"], "Object tags cannot be greater than 10")
        self.assertEqual(self.tag_set(), [])

    def test_the_longest_keys_and_values(self) -> None:
        """Ten tags of 128-character keys and 256-character values are stored whole."""
        tags = [{"Key": random_text(128), "Value": random_text(256)} for _ in range(10)]
        self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging={"TagSet": tags})
        self.assertEqual(sorted(self.tag_set(), key=lambda tag: tag["Key"]), sorted(tags, key=lambda tag: tag["Key"]))

    def test_a_key_or_value_too_long_is_an_invalid_tag(self) -> None:
        """A 129-character key or a 257-character value answers 400 InvalidTag; nothing is stored."""
        for key_length, value_length in ((129, 256), (128, 257)):
            tags = [{"Key": random_text(key_length), "Value": random_text(value_length)} for _ in range(10)]
            self.assertS3Error(400, "InvalidTag", self.alice.put_object_tagging, Bucket=self.bucket, Key="k",
                               Tagging={"TagSet": tags})
            self.assertEqual(self.tag_set(), [])

    def test_put_replaces_the_whole_tag_set(self) -> None:
        """A second PutObjectTagging replaces the tag set: no tag of the first is left."""
        first = {"TagSet": [{"Key": "key", "Value": "val"}, {"Key": "key2", "Value": "val2"}]}
        self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=first)
        self.assertEqual(self.tag_set(), first["TagSet"])
        second = {"TagSet": [{"Key": "key3", "Value": "val3"}]}
        self.assertEqual(self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=second)[
            "ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.tag_set(), second["TagSet"])

    def test_delete_object_tagging(self) -> None:
        """DeleteObjectTagging answers 204 No Content and leaves an empty tag set."""
        self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=numbered(2))
        answer = self.alice.delete_object_tagging(Bucket=self.bucket, Key="k")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.tag_set(), [])
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"some content")

    def test_put_object_with_a_tagging_header(self) -> None:
        """PutObject's x-amz-tagging "foo=bar&bar" tags the object bar="" and foo="bar"; the content is intact."""
        client = self.gateway.client("alice", SECRETS["alice"])

        def tag(params: dict, **_: Any) -> None:
            params["headers"]["x-amz-tagging"] = "foo=bar&bar"

        client.meta.events.register("before-call.s3.PutObject", tag)
        client.put_object(Bucket=self.bucket, Key="testtagobj1", Body=b"A" * 100)
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="testtagobj1")["Body"].read(), b"A" * 100)
        self.assertEqual(self.tag_set("testtagobj1"), [{"Key": "bar", "Value": ""}, {"Key": "foo", "Value": "bar"}])

    def test_tagging_a_missing_object(self) -> None:
        """Get, Put and DeleteObjectTagging of a missing key answer 404 NoSuchKey."""
        self.assertS3Error(404, "NoSuchKey", self.alice.get_object_tagging, Bucket=self.bucket, Key="missing")
        self.assertS3Error(404, "NoSuchKey", self.alice.put_object_tagging, Bucket=self.bucket, Key="missing",
                           Tagging=numbered(1))
        self.assertS3Error(404, "NoSuchKey", self.alice.delete_object_tagging, Bucket=self.bucket, Key="missing")

    def test_another_account_without_a_grant(self) -> None:
        """Without a grant, another account may neither read nor change an object's tags (403 AccessDenied)."""
        self.alice.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=numbered(1))
        self.assertDenied(self.bob.get_object_tagging, Bucket=self.bucket, Key="k")
        self.assertDenied(self.bob.put_object_tagging, Bucket=self.bucket, Key="k", Tagging=numbered(2))
        self.assertDenied(self.bob.delete_object_tagging, Bucket=self.bucket, Key="k")
        self.assertEqual(self.tag_set(), numbered(1)["TagSet"])


class TaggedWriteTests(ConformanceCase):
    def setUp(self) -> None:
        super().setUp()
        self.bucket = self.new_bucket()

    def tag_set(self, key: str, bucket: str = "") -> list[dict]:
        return self.alice.get_object_tagging(Bucket=bucket or self.bucket, Key=key)["TagSet"]

    def test_a_copy_keeps_the_sources_tags(self) -> None:
        """CopyObject without a tagging directive, or with COPY, gives the copy the source's tags, in any bucket."""
        self.alice.put_object(Bucket=self.bucket, Key="src", Body=b"data", Tagging="a=1&b=2")
        source = {"Bucket": self.bucket, "Key": "src"}
        other = self.new_bucket()
        self.alice.copy_object(Bucket=self.bucket, Key="default", CopySource=source)
        self.alice.copy_object(Bucket=self.bucket, Key="copy", CopySource=source, TaggingDirective="COPY")
        self.alice.copy_object(Bucket=other, Key="elsewhere", CopySource=source)
        expected = [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
        self.assertEqual(self.tag_set("default"), expected)
        self.assertEqual(self.tag_set("copy"), expected)
        self.assertEqual(self.tag_set("elsewhere", other), expected)

    def test_a_copy_with_replace_takes_the_requests_tags(self) -> None:
        """CopyObject with REPLACE takes x-amz-tagging (none without it); the source keeps its tags."""
        self.alice.put_object(Bucket=self.bucket, Key="src", Body=b"data", Tagging="a=1")
        source = {"Bucket": self.bucket, "Key": "src"}
        self.alice.copy_object(Bucket=self.bucket, Key="new", CopySource=source, TaggingDirective="REPLACE",
                               Tagging="c=3")
        self.assertEqual(self.tag_set("new"), [{"Key": "c", "Value": "3"}])
        self.alice.copy_object(Bucket=self.bucket, Key="none", CopySource=source, TaggingDirective="REPLACE")
        self.assertEqual(self.tag_set("none"), [])
        self.assertNotIn("x-amz-tagging-count", self.alice.head_object(Bucket=self.bucket, Key="none")[
            "ResponseMetadata"]["HTTPHeaders"])
        self.assertEqual(self.tag_set("src"), [{"Key": "a", "Value": "1"}])

    def test_an_unknown_tagging_directive_is_refused(self) -> None:
        """A tagging directive other than COPY or REPLACE answers 400 InvalidArgument and copies nothing."""
        self.alice.put_object(Bucket=self.bucket, Key="src", Body=b"data")
        self.assertS3Error(400, "InvalidArgument", self.alice.copy_object, Bucket=self.bucket, Key="dst",
                           CopySource={"Bucket": self.bucket, "Key": "src"}, TaggingDirective="MERGE")
        self.assertS3Error(404, None, self.alice.head_object, Bucket=self.bucket, Key="dst")

    def test_a_multipart_upload_takes_its_tags_at_completion(self) -> None:
        """CreateMultipartUpload's x-amz-tagging becomes the completed object's tags and tag count."""
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="big", Tagging="part=yes&n=2")["UploadId"]
        parts = []
        for number, body in ((1, b"a" * (5 * MIB)), (2, b"b")):
            answer = self.alice.upload_part(Bucket=self.bucket, Key="big", UploadId=upload, PartNumber=number,
                                            Body=body)
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.alice.complete_multipart_upload(Bucket=self.bucket, Key="big", UploadId=upload,
                                             MultipartUpload={"Parts": parts})
        self.assertEqual(self.tag_set("big"), [{"Key": "n", "Value": "2"}, {"Key": "part", "Value": "yes"}])
        self.assertEqual(self.alice.head_object(Bucket=self.bucket, Key="big")["TagCount"], 2)

    def test_a_write_with_too_many_tags_stores_nothing(self) -> None:
        """PutObject and CreateMultipartUpload with eleven tags in x-amz-tagging answer 400 and store nothing."""
        header = "&".join(f"{n}={n}" for n in range(11))
        self.assertS3Error(400, "BadRequest", self.alice.put_object, Bucket=self.bucket, Key="k", Body=b"x",
                           Tagging=header)
        self.assertS3Error(400, "BadRequest", self.alice.create_multipart_upload, Bucket=self.bucket, Key="k",
                           Tagging=header)
        self.assertS3Error(404, None, self.alice.head_object, Bucket=self.bucket, Key="k")
        self.assertEqual(self.alice.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []), [])


class BucketTaggingTests(ConformanceCase):
    def test_set_get_and_delete_bucket_tagging(self) -> None:
        """
        A new bucket has no tag set (404 NoSuchTagSet); PutBucketTagging
        answers 204 and GetBucketTagging the tags put; DeleteBucketTagging
        answers 204 and the tag set is gone again.
        """
        bucket = self.new_bucket()
        self.assertS3Error(404, "NoSuchTagSet", self.alice.get_bucket_tagging, Bucket=bucket)
        answer = self.alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "Hello", "Value": "World"}]})
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.alice.get_bucket_tagging(Bucket=bucket)["TagSet"], [{"Key": "Hello", "Value": "World"}])
        self.assertEqual(self.alice.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertS3Error(404, "NoSuchTagSet", self.alice.get_bucket_tagging, Bucket=bucket)

    def test_put_bucket_tagging_replaces_the_tag_set(self) -> None:
        """A second PutBucketTagging replaces the whole tag set."""
        bucket = self.new_bucket()
        self.alice.put_bucket_tagging(Bucket=bucket, Tagging=numbered(3))
        self.alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
        self.assertEqual(self.alice.get_bucket_tagging(Bucket=bucket)["TagSet"], [{"Key": "only", "Value": "one"}])

    def test_another_account_without_a_grant(self) -> None:
        """Without a grant, another account may neither read nor change a bucket's tags (403 AccessDenied)."""
        bucket = self.new_bucket()
        self.alice.put_bucket_tagging(Bucket=bucket, Tagging=numbered(1))
        self.assertDenied(self.bob.get_bucket_tagging, Bucket=bucket)
        self.assertDenied(self.bob.put_bucket_tagging, Bucket=bucket, Tagging=numbered(2))
        self.assertDenied(self.bob.delete_bucket_tagging, Bucket=bucket)
        self.assertEqual(self.alice.get_bucket_tagging(Bucket=bucket)["TagSet"], numbered(1)["TagSet"])
