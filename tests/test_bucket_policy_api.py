"""
Bucket policies and Block Public Access through a running daemon in front
of SeaweedFS, with boto3: Put/Get/DeleteBucketPolicy round trips, S3's
MalformedPolicy answers, NoSuchBucketPolicy, GetBucketPolicyStatus,
Put/Get/DeletePublicAccessBlock and its refusal of a public policy, the
gateway-wide switch, and buckets whose policy and flags the configuration
sets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_gateway
from tests.gateways import Lazy, launch
from tests.harness import unique_bucket_name
from tests.test_subresources import request

ALICE = "111111111111"
CONFIGURED = "vb-configured-policy"
CONFIGURED_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "AliceReads",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ALICE}:root"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{CONFIGURED}/*",
    }],
}


configured_gateway = Lazy(
    lambda: launch(
        "bucket-policy-configured",
        (CONFIGURED, "vb-plain"),
        bucket_keys={
            CONFIGURED: {"policy": CONFIGURED_POLICY,
                         "public_access_block": {"block_public_acls": True, "restrict_public_buckets": True}},
        },
        s3api={"block_public_access": True, "accounts": [{"id": ALICE, "display_name": "alice"}]},
    ),
    stop=lambda gateway: gateway.daemon.stop(),
)


def public_read(bucket: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }


def from_office(bucket: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                       "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                       "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}],
    }


class PolicyTestCase(SynchronousTestCase):
    def refused(self, call: Callable[[], Any], code: str, status: int, message: str = "") -> dict:
        with self.assertRaises(ClientError) as raised:
            call()
        response = raised.exception.response
        self.assertEqual(
            (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]), (code, status), response
        )
        if message:
            self.assertEqual(response["Error"]["Message"], message)
        return response["Error"]


class BucketPolicyTests(PolicyTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="policy")

    def put(self, document: Any) -> dict:
        text = document if isinstance(document, str) else json.dumps(document)
        return self.s3.put_bucket_policy(Bucket=self.bucket, Policy=text)

    def test_put_get_delete_round_trip(self) -> None:
        self.refused(lambda: self.s3.get_bucket_policy(Bucket=self.bucket), "NoSuchBucketPolicy", 404,
                     "The bucket policy does not exist")
        text = json.dumps(public_read(self.bucket), indent=2)
        answer = self.put(text)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.s3.get_bucket_policy(Bucket=self.bucket)["Policy"], text)
        # A second put replaces it.
        self.put(from_office(self.bucket))
        self.assertEqual(json.loads(self.s3.get_bucket_policy(Bucket=self.bucket)["Policy"]), from_office(self.bucket))
        answer = self.s3.delete_bucket_policy(Bucket=self.bucket)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.refused(lambda: self.s3.get_bucket_policy(Bucket=self.bucket), "NoSuchBucketPolicy", 404)
        # Deleting none is fine, as S3.
        self.s3.delete_bucket_policy(Bucket=self.bucket)

    def test_malformed_policies(self) -> None:
        cases = [
            ("not json", "Policies must be valid JSON and the first byte must be '{'"),
            ('{"Statement": [}', "This policy contains invalid Json"),
            ("{}", "Missing required field Statement"),
            ('{"Version": "2012-10-17", "Statement": []}', "Could not parse the policy: Statement is empty!"),
            (json.dumps(public_read("another-bucket")), "Policy has invalid resource"),
        ]
        statement = public_read(self.bucket)["Statement"][0]
        for change, message in [
            ({"Principal": {"AWS": "nobody"}}, "Invalid principal in policy"),
            ({"Action": "s3:FlyAway"}, "Policy has invalid action"),
            ({"Effect": "Perhaps"}, "Invalid effect: Perhaps"),
            ({"Action": "s3:ListBucket"}, "Action does not apply to any resource(s) in statement"),
            ({"Condition": {"StringEqualsSometimes": {"aws:Referer": "x"}}},
             "Invalid Condition type : StringEqualsSometimes"),
            ({"Condition": {"StringEquals": {"aws:Weather": "sunny"}}}, "Policy has an invalid condition key"),
        ]:
            cases.append((json.dumps({"Version": "2012-10-17", "Statement": [{**statement, **change}]}), message))
        for text, message in cases:
            self.refused(lambda text=text: self.put(text), "MalformedPolicy", 400, message)
        self.refused(lambda: self.s3.get_bucket_policy(Bucket=self.bucket), "NoSuchBucketPolicy", 404)

    def test_a_policy_over_20_kib_is_refused(self) -> None:
        statement = public_read(self.bucket)["Statement"][0]
        large = {"Version": "2012-10-17", "Statement": [{**statement, "Sid": f"S{i}"} for i in range(200)]}
        self.refused(lambda: self.put(large), "PolicyTooLarge", 400)

    def test_policy_status(self) -> None:
        self.refused(lambda: self.s3.get_bucket_policy_status(Bucket=self.bucket), "NoSuchBucketPolicy", 404)
        self.put(public_read(self.bucket))
        self.assertIs(self.s3.get_bucket_policy_status(Bucket=self.bucket)["PolicyStatus"]["IsPublic"], True)
        self.put(from_office(self.bucket))
        self.assertIs(self.s3.get_bucket_policy_status(Bucket=self.bucket)["PolicyStatus"]["IsPublic"], False)

    def test_no_such_bucket(self) -> None:
        missing = "no-such-bucket-policy"
        self.refused(lambda: self.s3.get_bucket_policy(Bucket=missing), "NoSuchBucket", 404)
        self.refused(lambda: self.s3.put_bucket_policy(Bucket=missing, Policy=json.dumps(public_read(missing))),
                     "NoSuchBucket", 404)
        self.refused(lambda: self.s3.get_public_access_block(Bucket=missing), "NoSuchBucket", 404)

    def test_the_policy_goes_with_its_bucket(self) -> None:
        self.put(public_read(self.bucket))
        self.s3.delete_bucket(Bucket=self.bucket)
        self.s3.create_bucket(Bucket=self.bucket)
        self.refused(lambda: self.s3.get_bucket_policy(Bucket=self.bucket), "NoSuchBucketPolicy", 404)


class PublicAccessBlockTests(PolicyTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="pab")

    def test_round_trip(self) -> None:
        self.refused(lambda: self.s3.get_public_access_block(Bucket=self.bucket),
                     "NoSuchPublicAccessBlockConfiguration", 404, "The public access block configuration was not found")
        answer = self.s3.put_public_access_block(
            Bucket=self.bucket,
            PublicAccessBlockConfiguration={"BlockPublicAcls": True, "RestrictPublicBuckets": True},
        )
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        got = self.s3.get_public_access_block(Bucket=self.bucket)["PublicAccessBlockConfiguration"]
        self.assertEqual(got, {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
                               "RestrictPublicBuckets": True})
        answer = self.s3.delete_public_access_block(Bucket=self.bucket)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.refused(lambda: self.s3.get_public_access_block(Bucket=self.bucket),
                     "NoSuchPublicAccessBlockConfiguration", 404)
        self.s3.delete_public_access_block(Bucket=self.bucket)

    def test_block_public_policy_refuses_a_public_policy(self) -> None:
        self.s3.put_public_access_block(Bucket=self.bucket,
                                        PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
        self.refused(lambda: self.s3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(public_read(self.bucket))),
                     "AccessDenied", 403)
        self.refused(lambda: self.s3.get_bucket_policy(Bucket=self.bucket), "NoSuchBucketPolicy", 404)
        # One that is not public is taken.
        self.s3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(from_office(self.bucket)))
        # Without the flag, a public one is taken too; setting the flag later keeps it (as S3).
        self.s3.delete_public_access_block(Bucket=self.bucket)
        self.s3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(public_read(self.bucket)))
        self.s3.put_public_access_block(Bucket=self.bucket,
                                        PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
        self.assertIn("PublicRead", self.s3.get_bucket_policy(Bucket=self.bucket)["Policy"])

    def test_malformed_configurations(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}?publicAccessBlock"
        for body in [b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls>"
                     b"</PublicAccessBlockConfiguration>",
                     b"<PublicAccessBlockConfiguration><Other>true</Other></PublicAccessBlockConfiguration>",
                     b"<Tagging/>", b"not xml"]:
            status, answer = request("PUT", url, body)
            self.assertEqual(status, 400, answer)
            self.assertIn(b"<Code>MalformedXML</Code>", answer)


class ConfiguredBucketTests(PolicyTestCase):
    def setUp(self) -> None:
        self.gateway = configured_gateway()
        self.s3 = self.gateway.client()

    def test_get_answers_from_the_configuration(self) -> None:
        self.assertEqual(json.loads(self.s3.get_bucket_policy(Bucket=CONFIGURED)["Policy"]), CONFIGURED_POLICY)
        self.assertIs(self.s3.get_bucket_policy_status(Bucket=CONFIGURED)["PolicyStatus"]["IsPublic"], False)
        got = self.s3.get_public_access_block(Bucket=CONFIGURED)["PublicAccessBlockConfiguration"]
        self.assertEqual(got, {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
                               "RestrictPublicBuckets": True})
        self.refused(lambda: self.s3.get_bucket_policy(Bucket="vb-plain"), "NoSuchBucketPolicy", 404)

    def test_put_and_delete_are_refused(self) -> None:
        decided = f"The policy of bucket {CONFIGURED} is set by the s3balance configuration; change it there."
        policy = json.dumps(CONFIGURED_POLICY)
        self.refused(lambda: self.s3.put_bucket_policy(Bucket=CONFIGURED, Policy=policy), "AccessDenied", 403, decided)
        self.refused(lambda: self.s3.delete_bucket_policy(Bucket=CONFIGURED), "AccessDenied", 403, decided)
        flags = ("The public access block configuration of bucket vb-plain is set by the s3balance configuration; "
                 "change it there.")
        self.refused(lambda: self.s3.put_public_access_block(
            Bucket="vb-plain", PublicAccessBlockConfiguration={"BlockPublicAcls": True}), "AccessDenied", 403, flags)
        self.refused(lambda: self.s3.delete_public_access_block(Bucket="vb-plain"), "AccessDenied", 403, flags)
        self.assertEqual(json.loads(self.s3.get_bucket_policy(Bucket=CONFIGURED)["Policy"]), CONFIGURED_POLICY)

    def test_the_gateway_switch_blocks_public_policies_everywhere(self) -> None:
        bucket = unique_bucket_name("api")
        self.s3.create_bucket(Bucket=bucket)
        self.refused(lambda: self.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public_read(bucket))),
                     "AccessDenied", 403)
        self.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(from_office(bucket)))
        # The bucket's own configuration is what GetPublicAccessBlock answers, as for S3's account-level setting.
        self.refused(lambda: self.s3.get_public_access_block(Bucket=bucket), "NoSuchPublicAccessBlockConfiguration",
                     404)
        self.s3.delete_bucket_policy(Bucket=bucket)
        self.s3.delete_bucket(Bucket=bucket)
