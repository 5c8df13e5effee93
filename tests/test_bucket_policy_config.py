"""
A configured bucket's policy and Block Public Access flags
(C{buckets[].policy}, C{buckets[].public_access_block}), the gateway-wide
C{s3api.block_public_access}, and what the access decision reads of them
(L{s3balance.s3.bucket_policy.facts}, L{request_context}).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.trial import unittest

from s3balance.config import ConfigError, parse_config
from s3balance.s3.bucket_policy import facts, request_context, rules_of
from s3balance.s3.call import S3Call
from s3balance.s3.public_access_block import ALL_BLOCKED, NO_BLOCK, PublicAccessBlock
from s3balance.s3.routing import Target
from tests.fakestore import MemoryStore
from tests.test_config import minimal

ALICE = "111111111111"


def with_bucket(**keys: Any) -> dict[str, Any]:
    mapping = minimal()
    mapping["buckets"][1].update(keys)
    return mapping


def public_read(bucket: str = "demo") -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}


class ConfigTests(unittest.SynchronousTestCase):
    def refused(self, mapping: dict[str, Any], message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(mapping)
        self.assertEqual(str(caught.exception), message)

    def test_policy_and_flags_are_read(self) -> None:
        config = parse_config(with_bucket(policy=public_read(), public_access_block={"ignore_public_acls": True}))
        bucket = config.virtual_bucket("demo")
        assert bucket is not None and bucket.policy is not None
        self.assertEqual(json.loads(bucket.policy), public_read())
        self.assertEqual(bucket.public_access_block, PublicAccessBlock(ignore_public_acls=True))
        self.assertFalse(config.s3api.block_public_access)
        plain = parse_config(minimal()).virtual_bucket("demo")
        assert plain is not None
        self.assertEqual((plain.policy, plain.public_access_block), (None, None))

    def test_errors_name_the_key(self) -> None:
        self.refused(with_bucket(policy=public_read("other")),
                     "buckets[1].policy: MalformedPolicy: Policy has invalid resource")
        self.refused(with_bucket(policy="{}"), "buckets[1].policy: expected a mapping (the policy document), got '{}'")
        self.refused(with_bucket(policy={"Statement": []}),
                     "buckets[1].policy: MalformedPolicy: Could not parse the policy: Statement is empty!")
        self.refused(with_bucket(public_access_block={"block_public_acl": True}),
                     "buckets[1].public_access_block.block_public_acl: unknown key")
        self.refused(with_bucket(public_access_block={"block_public_policy": "yes"}),
                     "buckets[1].public_access_block.block_public_policy: expected true or false, got 'yes'")

    def test_a_blocked_public_policy_is_a_contradiction(self) -> None:
        self.refused(with_bucket(policy=public_read(), public_access_block={"block_public_policy": True}),
                     "buckets[1].policy: the policy is public and public_access_block.block_public_policy blocks it")
        mapping = with_bucket(policy=public_read())
        mapping["s3api"]["block_public_access"] = True
        self.refused(mapping,
                     "buckets[1].policy: the policy is public and s3api.block_public_access blocks public policies")

    def test_yaml_dates_stand_for_their_text(self) -> None:
        import datetime

        document = public_read()
        document["Statement"][0]["Condition"] = {"DateLessThan": {"aws:CurrentTime": datetime.date(2030, 1, 1)}}
        bucket = parse_config(with_bucket(policy=document)).virtual_bucket("demo")
        assert bucket is not None and bucket.policy is not None
        self.assertIn('"aws:CurrentTime":"2030-01-01"', bucket.policy)


def call(operation: str, key: str | None = None, query: dict | None = None, headers: dict | None = None,
         signature_version: int = 4) -> S3Call:
    auth = SimpleNamespace(signature_version=signature_version)
    return S3Call("GET", Target("demo", key), operation, query or {}, headers or {}, None,
                  auth if signature_version else None, b"/")  # type: ignore[arg-type]


class RequestContextTests(unittest.SynchronousTestCase):
    def test_object_request(self) -> None:
        context = request_context(
            call("PutObject", "a/b", headers={"x-amz-acl": ["public-read"], "x-amz-tagging": ["k=v&x=1"],
                                              "referer": ["https://example.com/"], "user-agent": ["boto3"]}),
            ALICE, client_address="192.0.2.1", secure=True, now=1796385600.5, existing_tags={"Class": "a"},
            bucket_owner=ALICE,
        )
        assert context is not None
        self.assertEqual((context.action, context.resource, context.account),
                         ("s3:PutObject", "arn:aws:s3:::demo/a/b", ALICE))
        values = context.values
        self.assertEqual(values["aws:sourceip"], ("192.0.2.1",))
        self.assertEqual(values["aws:securetransport"], ("true",))
        self.assertEqual(values["aws:currenttime"], ("2026-12-04T12:00:00Z",))
        self.assertEqual(values["aws:epochtime"], ("1796385600",))
        self.assertEqual(values["aws:principalaccount"], (ALICE,))
        self.assertEqual(values["aws:principalarn"], (f"arn:aws:iam::{ALICE}:root",))
        self.assertEqual(values["aws:referer"], ("https://example.com/",))
        self.assertEqual(values["aws:useragent"], ("boto3",))
        self.assertEqual(values["s3:x-amz-acl"], ("public-read",))
        self.assertEqual(values["s3:requestobjecttagkeys"], ("k", "x"))
        self.assertEqual(values["s3:requestobjecttag/k"], ("v",))
        self.assertEqual(values["s3:existingobjecttag/Class"], ("a",))
        self.assertEqual(values["s3:signatureversion"], ("AWS4-HMAC-SHA256",))
        self.assertEqual(values["s3:authtype"], ("REST-HEADER",))
        self.assertEqual(values["s3:resourceaccount"], (ALICE,))
        self.assertNotIn("s3:prefix", values)

    def test_listing_and_anonymous(self) -> None:
        context = request_context(call("ListObjectsV2", query={"list-type": "2", "prefix": "home/", "max-keys": "5"},
                                       signature_version=0), None)
        assert context is not None
        self.assertEqual((context.action, context.resource), ("s3:ListBucket", "arn:aws:s3:::demo"))
        self.assertEqual((context.values["s3:prefix"], context.values["s3:max-keys"]), (("home/",), ("5",)))
        self.assertNotIn("s3:delimiter", context.values)
        self.assertNotIn("aws:principalaccount", context.values)
        self.assertEqual(context.values["aws:principaltype"], ("Anonymous",))
        self.assertNotIn("s3:signatureversion", context.values)

    def test_sigv2_presigned_and_operations_without_action(self) -> None:
        context = request_context(call("GetObject", "k", query={"Signature": "x"}, signature_version=2), ALICE)
        assert context is not None
        self.assertEqual(context.values["s3:signatureversion"], ("AWS",))
        self.assertEqual(context.values["s3:authtype"], ("REST-QUERY-STRING",))
        self.assertIsNone(request_context(call("PreflightCORS"), None))
        # DeleteObjects: one context per key, each an s3:DeleteObject of that object.
        each = request_context(call("DeleteObjects"), ALICE, key="gone")
        assert each is not None
        self.assertEqual((each.action, each.resource), ("s3:DeleteObject", "arn:aws:s3:::demo/gone"))


class FactsTests(unittest.TestCase):
    async def test_facts_from_the_store_the_configuration_and_the_switch(self) -> None:
        store = MemoryStore(clock=Clock())
        await store.start()
        self.addCleanup(store.stop)
        mapping = with_bucket(policy=public_read(), public_access_block={"restrict_public_buckets": True})
        config = parse_config(mapping)
        await store.create_bucket("api-bucket")

        configured = facts(config, ALICE, *rules_of(config, "demo", None))
        assert configured.policy is not None
        self.assertTrue(configured.policy.public)
        self.assertEqual(configured.block, PublicAccessBlock(restrict_public_buckets=True))

        empty = facts(config, ALICE, *rules_of(config, "api-bucket", await store.get_bucket("api-bucket")))
        self.assertEqual((empty.policy, empty.block), (None, NO_BLOCK))
        await store.set_bucket_policy("api-bucket", json.dumps(public_read("api-bucket")))
        await store.set_public_access_block("api-bucket", PublicAccessBlock(ignore_public_acls=True).dump())
        # Read with the bucket: the next request is decided on them.
        read = facts(config, ALICE, *rules_of(config, "api-bucket", await store.get_bucket("api-bucket")))
        self.assertIsNotNone(read.policy)
        self.assertTrue(read.ignore_public_acls)

        mapping["s3api"]["block_public_access"] = True
        del mapping["buckets"][1]["policy"]
        config = parse_config(mapping)
        blocked = facts(config, ALICE, *rules_of(config, "api-bucket", await store.get_bucket("api-bucket")))
        self.assertEqual(blocked.block, ALL_BLOCKED)
