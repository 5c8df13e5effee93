"""
Bucket lifecycle through a running daemon in front of SeaweedFS, with boto3:
Put/Get/DeleteBucketLifecycleConfiguration (round trip, S3's errors, the
Content-MD5 S3 requires, who may change it) and the elected expirer of a
daemon with a short lifecycle_period and deletion_grace: a rule whose Date
has passed expires the matching objects (their backend copies deleted after
the grace) and leaves the others.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.request
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import poll, shared_gateway, sign
from tests.gateways import error_code, http, lazy_gateway, s3_client, s3_error

RO_SECRET = "read-only-secret-lifecycle-0123"
expiring_gateway = lazy_gateway(
    "lifecycle",
    ["vb-life"],
    balancer={"lifecycle_period": "1s", "deletion_grace": "1s", "cleanup_period": "1s"},
    s3api={"credentials": [{"access_key": "ro-life", "secret_key": RO_SECRET, "read_only": True}]},
)

RULES = {
    "Rules": [
        {
            "ID": "logs",
            "Filter": {"Prefix": "logs/"},
            "Status": "Enabled",
            "Expiration": {"Days": 30},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
        {
            "ID": "tmp",
            "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "kind", "Value": "scratch"}],
                               "ObjectSizeGreaterThan": 10}},
            "Status": "Disabled",
            "Expiration": {"Date": "2030-01-01T00:00:00Z"},
        },
        {
            "ID": "versions",
            "Filter": {},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 5},
        },
    ]
}


class LifecycleTestCase(SynchronousTestCase):
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


class ConfigurationTests(LifecycleTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="life")

    def test_put_get_delete_round_trip(self) -> None:
        self.refused(lambda: self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket),
                     "NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist")
        self.s3.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration=RULES)
        got = self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        self.assertEqual([rule["ID"] for rule in got], ["logs", "tmp", "versions"])
        logs, tmp, versions = got
        self.assertEqual((logs["Filter"], logs["Expiration"], logs["AbortIncompleteMultipartUpload"]),
                         ({"Prefix": "logs/"}, {"Days": 30}, {"DaysAfterInitiation": 7}))
        self.assertEqual(tmp["Status"], "Disabled")
        self.assertEqual(tmp["Filter"]["And"]["Tags"], [{"Key": "kind", "Value": "scratch"}])
        self.assertEqual(tmp["Filter"]["And"]["ObjectSizeGreaterThan"], 10)
        self.assertEqual(tmp["Expiration"]["Date"].isoformat(), "2030-01-01T00:00:00+00:00")
        self.assertEqual(versions["NoncurrentVersionExpiration"], {"NoncurrentDays": 5})
        # A second put replaces the whole configuration.
        self.s3.put_bucket_lifecycle_configuration(
            Bucket=self.bucket,
            LifecycleConfiguration={"Rules": [{"ID": "only", "Prefix": "", "Status": "Enabled",
                                               "Expiration": {"Days": 1}}]},
        )
        (only,) = self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        self.assertEqual((only["ID"], only["Prefix"]), ("only", ""))
        answer = self.s3.delete_bucket_lifecycle(Bucket=self.bucket)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.refused(lambda: self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket),
                     "NoSuchLifecycleConfiguration", 404)
        # Deleting none is fine, as S3.
        self.s3.delete_bucket_lifecycle(Bucket=self.bucket)

    def test_x_amz_expiration_on_put_get_and_head(self) -> None:
        self.s3.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration=RULES)

        def expiration(answer: dict) -> str | None:
            return answer["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration")

        put = self.s3.put_object(Bucket=self.bucket, Key="logs/a", Body=b"data")
        header = expiration(put)
        self.assertRegex(header or "", r'^expiry-date="\w{3}, \d{2} \w{3} \d{4} 00:00:00 GMT", rule-id="logs"$')
        self.assertEqual(expiration(self.s3.head_object(Bucket=self.bucket, Key="logs/a")), header)
        got = self.s3.get_object(Bucket=self.bucket, Key="logs/a")
        self.assertEqual((expiration(got), got["Body"].read()), (header, b"data"))
        # boto3 reads it too.
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="logs/a")["Expiration"], header)
        self.s3.put_object(Bucket=self.bucket, Key="other", Body=b"data")
        self.assertIsNone(expiration(self.s3.head_object(Bucket=self.bucket, Key="other")))
        self.s3.delete_bucket_lifecycle(Bucket=self.bucket)
        self.assertIsNone(expiration(self.s3.head_object(Bucket=self.bucket, Key="logs/a")))

    def test_a_configuration_goes_with_its_bucket(self) -> None:
        self.s3.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration=RULES)
        self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        self.s3.delete_bucket(Bucket=self.bucket)
        self.s3.create_bucket(Bucket=self.bucket)
        self.refused(lambda: self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket),
                     "NoSuchLifecycleConfiguration", 404)

    def test_s3s_errors(self) -> None:
        def put(*rules: dict) -> Callable[[], Any]:
            return lambda: self.s3.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": list(rules)}
            )

        base = {"ID": "r", "Filter": {"Prefix": ""}, "Status": "Enabled"}
        self.refused(put({**base, "Expiration": {"Days": 0}}), "InvalidArgument",
                     message="'Days' for Expiration action must be a positive integer")
        self.refused(put({**base, "Expiration": {"Date": "2030-01-01T10:00:00Z"}}), "InvalidArgument",
                     message="'Date' must be at midnight GMT")
        self.refused(put({**base, "Expiration": {"Days": 1}}, {**base, "Expiration": {"Days": 2}}),
                     "InvalidArgument", message="Rule ID must be unique. Found same ID for more than one rule")
        self.refused(put({**base, "ID": "x" * 256, "Expiration": {"Days": 1}}), "InvalidArgument")
        self.refused(put(base), "InvalidRequest", message="At least one action needs to be specified in a rule")
        self.refused(put({**base, "Filter": {"Tag": {"Key": "k", "Value": "v"}},
                          "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}),
                     "InvalidRequest", message="AbortIncompleteMultipartUpload cannot be specified with Tags.")
        error = self.refused(put({**base, "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}),
                             "NotImplemented", 501)
        self.assertIn("Transition", error["Message"])
        self.refused(lambda: self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket),
                     "NoSuchLifecycleConfiguration", 404)
        self.refused(lambda: self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket + "-none"),
                     "NoSuchBucket", 404)

    def test_malformed_documents(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}?lifecycle"
        for body in (b"<LifecycleConfiguration/>", b"<nope", b"<LifecycleConfiguration><Rule><ID>a</ID>"
                     b"<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"):
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            headers = sign("PUT", url, {"Content-Length": str(len(body)), "Content-MD5": md5},
                           payload=hashlib.sha256(body).hexdigest())
            status, _, answer = http("PUT", url, body, headers)
            self.assertEqual((status, s3_error(answer)[0]), (400, "MalformedXML"), body)

    def test_content_md5_or_a_checksum_is_required(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}?lifecycle"
        body = (b"<LifecycleConfiguration><Rule><ID>a</ID><Filter/><Status>Enabled</Status>"
                b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>")
        headers = sign("PUT", url, {"Content-Length": str(len(body))}, payload=hashlib.sha256(body).hexdigest())
        status, _, answer = http("PUT", url, body, headers)
        self.assertEqual((status, s3_error(answer)),
                         (400, ("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*")))
        # A wrong Content-MD5 is BadDigest, as any body's.
        headers = sign("PUT", url, {"Content-Length": str(len(body)), "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
                       payload=hashlib.sha256(body).hexdigest())
        status, _, answer = http("PUT", url, body, headers)
        self.assertEqual((status, s3_error(answer)[0]), (400, "BadDigest"))
        self.refused(lambda: self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket),
                     "NoSuchLifecycleConfiguration", 404)


class ExpirerTests(LifecycleTestCase):
    def test_a_passed_date_expires_the_matching_objects_and_their_copies(self) -> None:
        gateway = expiring_gateway()
        s3 = gateway.client()
        bucket = "vb-life"
        s3.put_object(Bucket=bucket, Key="old/a", Body=b"a", Tagging="keep=no")
        s3.put_object(Bucket=bucket, Key="old/b", Body=b"b", Tagging="keep=no&other=1")
        s3.put_object(Bucket=bucket, Key="old/kept", Body=b"k", Tagging="keep=yes")
        s3.put_object(Bucket=bucket, Key="new/c", Body=b"c", Tagging="keep=no")
        rules = {"Rules": [
            {"ID": "old", "Filter": {"And": {"Prefix": "old/", "Tags": [{"Key": "keep", "Value": "no"}]}},
             "Status": "Enabled", "Expiration": {"Date": "2020-01-01T00:00:00Z"}},
            {"ID": "off", "Filter": {}, "Status": "Disabled", "Expiration": {"Date": "2020-01-01T00:00:00Z"}},
        ]}
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules)

        def listed() -> list[str]:
            return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

        poll(lambda: listed() == ["new/c", "old/kept"], timeout=30, message="not expired")
        self.refused(lambda: s3.head_object(Bucket=bucket, Key="old/a"), "404", 404)
        self.assertEqual(s3.get_object(Bucket=bucket, Key="old/kept")["Body"].read(), b"k")
        # The backend copies go after the deletion grace: the two objects' left.
        poll(lambda: sum(len(keys) for keys in gateway.backend_keys().values()) == 2, timeout=30,
             message="the expired objects' backend copies are still there")
        with urllib.request.urlopen(f"{gateway.daemon.endpoint}/metrics", timeout=10) as answer:
            metrics = answer.read().decode().splitlines()
        self.assertIn("s3balance_lifecycle_objects_expired_total 2.0", metrics)
        self.assertIn("s3balance_lifecycle_uploads_aborted_total 0.0", metrics)
        s3.delete_bucket_lifecycle(Bucket=bucket)

    def test_a_read_only_key_reads_but_does_not_change_the_configuration(self) -> None:
        gateway = expiring_gateway()
        ro = s3_client(gateway.endpoint, "ro-life", RO_SECRET)
        self.refused(lambda: ro.put_bucket_lifecycle_configuration(
            Bucket="vb-life", LifecycleConfiguration={"Rules": [
                {"ID": "x", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}}]}),
            "AccessDenied", 403)
        self.refused(lambda: ro.delete_bucket_lifecycle(Bucket="vb-life"), "AccessDenied", 403)
        try:
            ro.get_bucket_lifecycle_configuration(Bucket="vb-life")
        except ClientError as error:
            self.assertEqual(error_code(error), "NoSuchLifecycleConfiguration")
