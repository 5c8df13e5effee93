"""
s3balance.s3.access: who a request acts as, who owns a bucket, and the one
access decision without grants (its owner and admins only); configured
owners recorded by s3balance.daemon.buckets.  The decision with ACLs:
tests.test_acl.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import Credential, parse_config
from s3balance.daemon.buckets import sync_config_buckets
from s3balance.s3.access import (
    BucketAccess,
    Caller,
    bucket_owner,
    caller_of,
    decide,
    may_list,
    owner_elements,
)
from tests.fakestore import MemoryStore
from tests.test_config import minimal

ALICE, BOB = "111111111111", "222222222222"


def config(auth_required: bool = True):
    mapping = minimal()
    mapping["buckets"].append({"name": "bobs", "virtual": True, "owner": BOB})
    mapping["s3api"].update(
        accounts=[{"id": ALICE, "display_name": "alice"}, {"id": BOB, "display_name": "bob"}],
        default_owner=ALICE,
        auth_required=auth_required,
    )
    return parse_config(mapping)


class AccessTests(SynchronousTestCase):
    def test_a_credential_acts_as_its_account(self) -> None:
        s3api = config().s3api
        self.assertEqual(caller_of(s3api, Credential("k", "s", account=BOB)), Caller(BOB))
        self.assertEqual(caller_of(s3api, Credential("k", "s", account=BOB, admin=True)), Caller(BOB, True))

    def test_anonymous_is_nobody_unless_the_gateway_is_open(self) -> None:
        self.assertEqual(caller_of(config().s3api, None), Caller(None))
        self.assertEqual(caller_of(config(auth_required=False).s3api, None), Caller("000000000000"))

    def test_owners_of_configured_recorded_and_unrecorded_buckets(self) -> None:
        settings = config()
        self.assertEqual(bucket_owner(settings, "demo", None), ALICE)
        # The configuration decides for its buckets, whatever the row says.
        self.assertEqual(bucket_owner(settings, "bobs", ALICE), BOB)
        self.assertEqual(bucket_owner(settings, "made", BOB), BOB)
        self.assertEqual(bucket_owner(settings, "old", None), ALICE)

    def test_only_the_owner_and_admins_may_access(self) -> None:
        bucket = BucketAccess("b", ALICE)
        for action in ("GetObject", "PutObject", "DeleteBucket", "ListObjectsV2"):
            self.assertTrue(decide(Caller(ALICE), bucket, action))
            self.assertTrue(decide(Caller(BOB, admin=True), bucket, action))
            self.assertFalse(decide(Caller(BOB), bucket, action))
            self.assertFalse(decide(Caller(None), bucket, action))
        self.assertTrue(may_list(Caller(ALICE), ALICE))
        self.assertFalse(may_list(Caller(BOB), ALICE))
        self.assertTrue(may_list(Caller(BOB, admin=True), ALICE))
        self.assertFalse(may_list(Caller(None), ALICE))

    def test_owner_elements_name_the_account(self) -> None:
        s3api = config().s3api
        self.assertEqual(owner_elements(s3api, BOB), [("ID", BOB), ("DisplayName", "bob")])
        # An account no longer configured is named by its id.
        self.assertEqual(owner_elements(s3api, "999999999999"), [("ID", "999999999999"), ("DisplayName", "999999999999")])


class ConfiguredOwnerTests(unittest.TestCase):
    """daemon.buckets.sync_config_buckets records a configured bucket's owner in its row."""

    async def test_a_configured_owner_is_recorded_and_kept_when_the_bucket_leaves_the_config(self) -> None:
        store = MemoryStore(clock=Clock())
        await store.start()
        self.addCleanup(store.stop)
        settings = config()
        await sync_config_buckets(store, settings)
        self.assertEqual((await store.get_bucket("bobs")).owner, BOB)
        self.assertIsNone((await store.get_bucket("demo")).owner)
        mapping = minimal()
        mapping["s3api"].update(accounts=[{"id": ALICE}, {"id": BOB}], default_owner=ALICE)
        dropped = parse_config(mapping)
        await sync_config_buckets(store, dropped)
        record = await store.get_bucket("bobs")
        self.assertEqual((record.origin, record.owner), ("api", BOB))
        self.assertEqual(bucket_owner(dropped, "bobs", record.owner), BOB)
