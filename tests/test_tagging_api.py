"""
Object and bucket tags through a running daemon in front of SeaweedFS, with
boto3: x-amz-tagging on PutObject, CreateMultipartUpload and CopyObject,
Put/Get/DeleteObjectTagging, x-amz-tagging-count on GET and HEAD,
Put/Get/DeleteBucketTagging, S3's limits and errors, and who may change tags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import database_counts, shared_gateway, sign
from tests.gateways import assert_nothing_left, error_code, http, lazy_gateway, s3_error
from tests.harness import unique_bucket_name

RO_SECRET = "read-only-secret-tagging-0123"
read_only_gateway = lazy_gateway(
    "tagging-ro", ["vb-tags"], s3api={"credentials": [{"access_key": "ro", "secret_key": RO_SECRET, "read_only": True}]}
)

MIB = 1024 * 1024


def tag_set(**tags: str) -> dict:
    return {"TagSet": [{"Key": key, "Value": value} for key, value in tags.items()]}


def as_dict(answer: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in answer["TagSet"]}


class TaggingTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="tags")

    def refused(self, call: Callable[[], Any], code: str, status: int = 400, message: str = "") -> dict:
        with self.assertRaises(ClientError) as raised:
            call()
        response = raised.exception.response
        self.assertEqual(
            (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]), (code, status), response
        )
        if message:
            self.assertEqual(response["Error"]["Message"], message)
        return response["Error"]

    def tags_of(self, key: str) -> dict[str, str]:
        return as_dict(self.s3.get_object_tagging(Bucket=self.bucket, Key=key))


class ObjectTagTests(TaggingTestCase):
    def test_put_with_tags_and_the_count_on_get_and_head(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data", Tagging="b=2&a=1&e=&sp+ace=v%2Fw")
        answer = self.s3.get_object_tagging(Bucket=self.bucket, Key="k")
        # In key order, as S3 answers them.
        self.assertEqual(
            answer["TagSet"],
            [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}, {"Key": "e", "Value": ""},
             {"Key": "sp ace", "Value": "v/w"}],
        )
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="k")["TagCount"], 4)
        got = self.s3.get_object(Bucket=self.bucket, Key="k")
        self.assertEqual((got["TagCount"], got["Body"].read()), (4, b"data"))

    def test_an_untagged_object_has_no_count_and_an_empty_tag_set(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data")
        self.assertNotIn("x-amz-tagging-count", self.s3.head_object(Bucket=self.bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"])
        self.assertEqual(self.s3.get_object_tagging(Bucket=self.bucket, Key="k")["TagSet"], [])

    def test_put_get_delete_tagging_leave_the_object_as_it_is(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data", Tagging="old=1")
        before = self.s3.head_object(Bucket=self.bucket, Key="k")
        backend = self.gateway.backend_keys(f"{self.bucket}/")
        answer = self.s3.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=tag_set(x="1", y="é"))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.tags_of("k"), {"x": "1", "y": "é"})
        after = self.s3.head_object(Bucket=self.bucket, Key="k")
        self.assertEqual((after["ETag"], after["LastModified"]), (before["ETag"], before["LastModified"]))
        self.assertEqual(after["TagCount"], 2)
        answer = self.s3.delete_object_tagging(Bucket=self.bucket, Key="k")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.tags_of("k"), {})
        self.assertNotIn("TagCount", self.s3.head_object(Bucket=self.bucket, Key="k"))
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"data")
        self.assertEqual(self.gateway.backend_keys(f"{self.bucket}/"), backend)

    def test_an_empty_tag_set_removes_the_tags(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data", Tagging="a=1")
        self.s3.put_object_tagging(Bucket=self.bucket, Key="k", Tagging={"TagSet": []})
        self.assertEqual(self.tags_of("k"), {})

    def test_an_overwrite_replaces_the_tags(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"one", Tagging="a=1")
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"two")
        self.assertEqual(self.tags_of("k"), {})
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"three", Tagging="b=2")
        self.assertEqual(self.tags_of("k"), {"b": "2"})

    def test_a_deleted_objects_tags_go_with_it(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data", Tagging="a=1")
        self.s3.put_object(Bucket=self.bucket, Key="j", Body=b"data", Tagging="a=1")
        self.s3.delete_object(Bucket=self.bucket, Key="k")
        self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "j"}]})
        for key in ("k", "j"):
            self.refused(lambda key=key: self.s3.get_object_tagging(Bucket=self.bucket, Key=key), "NoSuchKey", 404)
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"again")
            self.assertEqual(self.tags_of(key), {})

    def test_tagging_a_missing_key_or_bucket(self) -> None:
        for call in (
            lambda: self.s3.put_object_tagging(Bucket=self.bucket, Key="missing", Tagging=tag_set(a="1")),
            lambda: self.s3.delete_object_tagging(Bucket=self.bucket, Key="missing"),
            lambda: self.s3.get_object_tagging(Bucket=self.bucket, Key="missing"),
        ):
            self.refused(call, "NoSuchKey", 404)
        missing = unique_bucket_name("nobucket")
        self.refused(
            lambda: self.s3.put_object_tagging(Bucket=missing, Key="k", Tagging=tag_set(a="1")), "NoSuchBucket", 404
        )

    def test_version_null_is_the_object_and_any_other_names_nothing(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data")
        self.s3.put_object_tagging(Bucket=self.bucket, Key="k", VersionId="null", Tagging=tag_set(a="1"))
        self.assertEqual(as_dict(self.s3.get_object_tagging(Bucket=self.bucket, Key="k", VersionId="null")), {"a": "1"})
        other = "3HL4kqtJlcpXroDTDmJ"
        for call in (
            lambda: self.s3.put_object_tagging(Bucket=self.bucket, Key="k", VersionId=other, Tagging=tag_set(b="2")),
            lambda: self.s3.delete_object_tagging(Bucket=self.bucket, Key="k", VersionId=other),
            lambda: self.s3.get_object_tagging(Bucket=self.bucket, Key="k", VersionId=other),
        ):
            self.refused(call, "NoSuchVersion", 404)
        self.s3.delete_object_tagging(Bucket=self.bucket, Key="k", VersionId="null")
        self.assertEqual(self.tags_of("k"), {})


class WriteTagTests(TaggingTestCase):
    def test_multipart_upload_keeps_its_tags_until_complete(self) -> None:
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key="big", Tagging="part=yes&n=2")
        self.s3.put_object(Bucket=self.bucket, Key="big", Body=b"before", Tagging="old=1")
        parts = []
        for number, body in ((1, b"a" * (5 * MIB)), (2, b"b")):
            answer = self.s3.upload_part(
                Bucket=self.bucket, Key="big", UploadId=upload["UploadId"], PartNumber=number, Body=body
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key="big", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        self.assertEqual(self.tags_of("big"), {"n": "2", "part": "yes"})
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="big")["TagCount"], 2)

    def test_upload_part_copy_ignores_the_sources_tags(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"s" * (5 * MIB), Tagging="src=1")
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key="dst")
        answer = self.s3.upload_part_copy(
            Bucket=self.bucket, Key="dst", UploadId=upload["UploadId"], PartNumber=1,
            CopySource={"Bucket": self.bucket, "Key": "src"},
        )
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key="dst", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": answer["CopyPartResult"]["ETag"]}]},
        )
        self.assertEqual(self.tags_of("dst"), {})

    def test_copy_keeps_the_sources_tags_by_default_and_with_copy(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"data", Tagging="a=1&b=2")
        source = {"Bucket": self.bucket, "Key": "src"}
        self.s3.copy_object(Bucket=self.bucket, Key="default", CopySource=source)
        self.s3.copy_object(Bucket=self.bucket, Key="copy", CopySource=source, TaggingDirective="COPY")
        for key in ("default", "copy"):
            self.assertEqual(self.tags_of(key), {"a": "1", "b": "2"}, key)

    def test_copy_with_replace_takes_the_headers_tags(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"data", Tagging="a=1")
        source = {"Bucket": self.bucket, "Key": "src"}
        self.s3.copy_object(
            Bucket=self.bucket, Key="new", CopySource=source, TaggingDirective="REPLACE", Tagging="c=3"
        )
        self.assertEqual(self.tags_of("new"), {"c": "3"})
        self.s3.copy_object(Bucket=self.bucket, Key="none", CopySource=source, TaggingDirective="REPLACE")
        self.assertEqual(self.tags_of("none"), {})
        self.assertEqual(self.tags_of("src"), {"a": "1"})

    def test_an_unknown_tagging_directive_is_an_invalid_argument(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"data")
        self.refused(
            lambda: self.s3.copy_object(
                Bucket=self.bucket, Key="dst", CopySource={"Bucket": self.bucket, "Key": "src"},
                TaggingDirective="MERGE",  # type: ignore[arg-type]
            ),
            "InvalidArgument",
        )
        self.refused(lambda: self.s3.head_object(Bucket=self.bucket, Key="dst"), "404", 404)


class LimitTests(TaggingTestCase):
    """Each limit S3 sets, on PutObjectTagging and on the x-amz-tagging of a write; nothing is stored."""

    def setUp(self) -> None:
        super().setUp()
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"data", Tagging="kept=1")

    def refused_everywhere(self, tags: list[tuple[str, str]], header: str, code: str, message: str) -> None:
        document = {"TagSet": [{"Key": key, "Value": value} for key, value in tags]}
        error = self.refused(
            lambda: self.s3.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=document), code, 400, message
        )
        self.refused(lambda: self.s3.put_object(Bucket=self.bucket, Key="new", Body=b"x", Tagging=header), code, 400, message)
        self.refused(lambda: self.s3.create_multipart_upload(Bucket=self.bucket, Key="new", Tagging=header), code, 400)
        self.assertEqual(self.tags_of("k"), {"kept": "1"})
        self.refused(lambda: self.s3.head_object(Bucket=self.bucket, Key="new"), "404", 404)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []), [])
        return error

    def test_more_than_ten_tags(self) -> None:
        tags = [(f"k{n}", "v") for n in range(11)]
        self.refused_everywhere(tags, "&".join(f"{k}={v}" for k, v in tags), "BadRequest",
                                "Object tags cannot be greater than 10")

    def test_ten_tags_of_the_longest_keys_and_values(self) -> None:
        tags = {f"{n}".ljust(128, "k"): "v" * 256 for n in range(10)}
        self.s3.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=tag_set(**tags))
        self.assertEqual(self.tags_of("k"), tags)

    def test_a_key_too_long_or_empty(self) -> None:
        error = self.refused_everywhere([("k" * 129, "v")], "k" * 129 + "=v", "InvalidTag",
                                        "The TagKey you have provided is invalid")
        self.assertEqual(error["TagKey"], "k" * 129)
        # (botocore refuses an empty Key in a document before sending it: test_tagging has that case.)
        for call in (
            lambda: self.s3.put_object(Bucket=self.bucket, Key="new", Body=b"x", Tagging="=v"),
            lambda: self.s3.create_multipart_upload(Bucket=self.bucket, Key="new", Tagging="=v"),
        ):
            self.refused(call, "InvalidTag", 400, "The TagKey you have provided is invalid")

    def test_a_value_too_long(self) -> None:
        self.refused_everywhere([("k", "v" * 257)], "k=" + "v" * 257, "InvalidTag",
                                "The TagValue you have provided is invalid")

    def test_characters_outside_the_allowed_set(self) -> None:
        self.refused_everywhere([("a#b", "v")], "a%23b=v", "InvalidTag", "The TagKey you have provided is invalid")
        self.refused_everywhere([("k", "a&b")], "k=a%26b", "InvalidTag", "The TagValue you have provided is invalid")

    def test_duplicate_keys(self) -> None:
        document = {"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}
        error = self.refused(
            lambda: self.s3.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=document), "InvalidTag", 400,
            "Cannot provide multiple Tags with the same key",
        )
        self.assertEqual(error["TagKey"], "a")
        # In the header, as any header S3 cannot read.
        self.refused(lambda: self.s3.put_object(Bucket=self.bucket, Key="new", Body=b"x", Tagging="a=1&a=2"),
                     "InvalidArgument")
        self.assertEqual(self.tags_of("k"), {"kept": "1"})

    def test_the_aws_prefix(self) -> None:
        self.refused_everywhere([("aws:x", "v")], "aws:x=v", "InvalidTag", "Your TagKey cannot be prefixed with aws:")

    def test_a_header_that_is_no_url_query(self) -> None:
        self.refused(
            lambda: self.s3.put_object(Bucket=self.bucket, Key="new", Body=b"x", Tagging="TagSet=[{Key=a,Value=b}]"),
            "InvalidArgument", 400,
            "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters "
            "without tag name duplicates.",
        )

    def test_malformed_documents(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}/k?tagging"
        for body in (b"<Tagging><TagSet>", b"<Tagging></Tagging>", b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>"):
            headers = sign("PUT", url, {"Content-Length": str(len(body))}, payload=hashlib.sha256(body).hexdigest())
            status, _, answer = http("PUT", url, body, headers)
            self.assertEqual((status, s3_error(answer)[0]), (400, "MalformedXML"), body)
        self.assertEqual(self.tags_of("k"), {"kept": "1"})


class BucketTagTests(TaggingTestCase):
    def test_a_bucket_without_tags_has_no_tag_set(self) -> None:
        self.refused(lambda: self.s3.get_bucket_tagging(Bucket=self.bucket), "NoSuchTagSet", 404,
                     "The TagSet does not exist")

    def test_put_get_delete_bucket_tagging(self) -> None:
        tags = {f"k{n:02}": f"v{n}" for n in range(50)}
        answer = self.s3.put_bucket_tagging(Bucket=self.bucket, Tagging=tag_set(**tags))
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(as_dict(self.s3.get_bucket_tagging(Bucket=self.bucket)), tags)
        self.s3.put_bucket_tagging(Bucket=self.bucket, Tagging=tag_set(only="one"))
        self.assertEqual(as_dict(self.s3.get_bucket_tagging(Bucket=self.bucket)), {"only": "one"})
        answer = self.s3.delete_bucket_tagging(Bucket=self.bucket)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.refused(lambda: self.s3.get_bucket_tagging(Bucket=self.bucket), "NoSuchTagSet", 404)

    def test_a_configured_bucket_keeps_tags_too(self) -> None:
        self.s3.put_bucket_tagging(Bucket="vb-default", Tagging=tag_set(team="storage"))
        self.addCleanup(self.s3.delete_bucket_tagging, Bucket="vb-default")
        self.assertEqual(as_dict(self.s3.get_bucket_tagging(Bucket="vb-default")), {"team": "storage"})

    def test_bucket_limits(self) -> None:
        fifty_one = tag_set(**{f"k{n}": "v" for n in range(51)})
        for document, code, message in (
            (fifty_one, "BadRequest", "Bucket tag count cannot be greater than 50"),
            (tag_set(**{"aws:x": "v"}), "InvalidTag", "System tags cannot be added/updated by requester"),
            (tag_set(**{"k" * 129: "v"}), "InvalidTag", "The TagKey you have provided is invalid"),
            (tag_set(k="v" * 257), "InvalidTag", "The TagValue you have provided is invalid"),
            ({"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}, "InvalidTag",
             "Cannot provide multiple Tags with the same key"),
        ):
            self.refused(lambda document=document: self.s3.put_bucket_tagging(Bucket=self.bucket, Tagging=document),
                         code, 400, message)
        self.refused(lambda: self.s3.get_bucket_tagging(Bucket=self.bucket), "NoSuchTagSet", 404)

    def test_a_deleted_buckets_tags_go_with_it(self) -> None:
        name = self.gateway.new_bucket(self.s3, prefix="tags-gone")
        self.s3.put_bucket_tagging(Bucket=name, Tagging=tag_set(a="1"))
        self.s3.delete_bucket(Bucket=name)
        self.refused(lambda: self.s3.get_bucket_tagging(Bucket=name), "NoSuchBucket", 404)
        self.s3.create_bucket(Bucket=name)
        self.refused(lambda: self.s3.get_bucket_tagging(Bucket=name), "NoSuchTagSet", 404)

    def test_tagging_a_missing_bucket(self) -> None:
        missing = unique_bucket_name("nobucket")
        self.refused(lambda: self.s3.put_bucket_tagging(Bucket=missing, Tagging=tag_set(a="1")), "NoSuchBucket", 404)
        self.refused(lambda: self.s3.delete_bucket_tagging(Bucket=missing), "NoSuchBucket", 404)


class SignedTagsTests(TaggingTestCase):
    def test_an_unsigned_tagging_header_is_refused(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}/k"
        headers = sign("PUT", url, {"Content-Length": "4"}, payload=hashlib.sha256(b"data").hexdigest())
        headers["x-amz-tagging"] = "added=later"
        status, _, body = http("PUT", url, b"data", headers)
        self.assertEqual((status, s3_error(body)[0]), (403, "AccessDenied"), body)
        self.refused(lambda: self.s3.head_object(Bucket=self.bucket, Key="k"), "404", 404)
        assert_nothing_left(self.gateway, self.bucket)

    def test_a_presigned_put_applies_the_tagging_it_was_signed_with(self) -> None:
        url = self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": "k", "Tagging": "a=1&b=2"}, ExpiresIn=300
        )
        # botocore signs the header (X-Amz-SignedHeaders=host;x-amz-tagging): it must come along.
        self.assertIn("x-amz-tagging", url)
        status, _, body = http("PUT", url, b"data", {"x-amz-tagging": "a=1&b=2"})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.tags_of("k"), {"a": "1", "b": "2"})


class ReadOnlyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = read_only_gateway()
        self.admin = self.gateway.client()
        self.read_only = self.gateway.client("ro", RO_SECRET)
        self.bucket = self.gateway.new_bucket(self.admin, prefix="tags-ro")
        self.admin.put_object(Bucket=self.bucket, Key="k", Body=b"data", Tagging="a=1")
        self.admin.put_bucket_tagging(Bucket=self.bucket, Tagging=tag_set(b="2"))

    def test_a_read_only_key_reads_tags_and_may_not_change_them(self) -> None:
        self.assertEqual(as_dict(self.read_only.get_object_tagging(Bucket=self.bucket, Key="k")), {"a": "1"})
        self.assertEqual(as_dict(self.read_only.get_bucket_tagging(Bucket=self.bucket)), {"b": "2"})
        for call in (
            lambda: self.read_only.put_object_tagging(Bucket=self.bucket, Key="k", Tagging=tag_set(x="1")),
            lambda: self.read_only.delete_object_tagging(Bucket=self.bucket, Key="k"),
            lambda: self.read_only.put_bucket_tagging(Bucket=self.bucket, Tagging=tag_set(x="1")),
            lambda: self.read_only.delete_bucket_tagging(Bucket=self.bucket),
        ):
            with self.assertRaises(ClientError) as raised:
                call()
            self.assertEqual(error_code(raised.exception), "AccessDenied")
        self.assertEqual(as_dict(self.admin.get_object_tagging(Bucket=self.bucket, Key="k")), {"a": "1"})
        self.assertEqual(as_dict(self.admin.get_bucket_tagging(Bucket=self.bucket)), {"b": "2"})
        counts = database_counts(self.gateway.daemon, self.bucket)
        self.assertEqual(counts["objects"], 1)


class DrainTagsTests(SynchronousTestCase):
    def test_a_drained_objects_tags_stay_with_it(self) -> None:
        from tests.test_drain import VB, Drained

        gateway = Drained(self, name="drain-tags")
        client = gateway.client
        tags = {f"obj{n}": f"n={n}&team=storage" for n in range(6)}
        for key, header in tags.items():
            client.put_object(Bucket=VB, Key=key, Body=b"x" * 100, Tagging=header)
        client.put_bucket_tagging(Bucket=VB, Tagging=tag_set(kept="yes"))
        placed = gateway.locations()
        self.assertIn(gateway.b1, placed.values())
        result = gateway.cli(gateway.b1, "--rate", "0", "--wait", "--no-progress")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(set(gateway.locations().values()), {gateway.b2})
        for n in range(6):
            answer = as_dict(client.get_object_tagging(Bucket=VB, Key=f"obj{n}"))
            self.assertEqual(answer, {"n": str(n), "team": "storage"})
            self.assertEqual(client.head_object(Bucket=VB, Key=f"obj{n}")["TagCount"], 2)
        self.assertEqual(as_dict(client.get_bucket_tagging(Bucket=VB)), {"kept": "yes"})
