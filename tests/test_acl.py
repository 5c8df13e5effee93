"""
s3balance.s3.acl (canned ACLs, grant headers, AccessControlPolicy documents,
the stored text) and the access decision with ACLs (s3balance.s3.access);
a configured bucket's acl key.
"""

from __future__ import annotations

from xml.etree import ElementTree

from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import ConfigError, parse_config
from s3balance.errors import S3Error
from s3balance.s3 import acl
from s3balance.s3.access import (
    BucketAccess,
    Caller,
    admit,
    bucket_acl,
    decide,
    missing_object,
    require_object,
)
from s3balance.s3.acl import (
    ALL_USERS,
    AUTHENTICATED,
    AUTHENTICATED_USERS,
    FULL_CONTROL,
    PUBLIC,
    READ,
    READ_ACP,
    WRITE,
    WRITE_ACP,
    Grant,
    Grantee,
)
from tests.test_config import minimal

ALICE, BOB, CAROL = "111111111111", "222222222222", "333333333333"
ACCOUNTS = {ALICE, BOB, CAROL}


def known(account_id: str) -> bool:
    return account_id in ACCOUNTS


def owner_full(owner: str = ALICE) -> Grant:
    return Grant(Grantee.account(owner), FULL_CONTROL)


def headers(**values: str) -> dict[str, list[str]]:
    return {name.replace("_", "-"): [value] for name, value in values.items()}


def policy(grants: str, owner: str = ALICE) -> bytes:
    owner_element = f"<Owner><ID>{owner}</ID></Owner>" if owner else ""
    return (
        '<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{owner_element}<AccessControlList>{grants}</AccessControlList></AccessControlPolicy>"
    ).encode()


def grant(grantee: str, permission: str, kind: str = "CanonicalUser") -> str:
    return (
        '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:type="{kind}">{grantee}</Grantee><Permission>{permission}</Permission></Grant>'
    )


class CannedTests(SynchronousTestCase):
    def test_canned_acls_expand_as_s3s(self) -> None:
        self.assertEqual(acl.canned("private", ALICE), (owner_full(),))
        self.assertEqual(acl.canned("public-read", ALICE), (owner_full(), Grant(PUBLIC, READ)))
        self.assertEqual(
            acl.canned("public-read-write", ALICE), (owner_full(), Grant(PUBLIC, READ), Grant(PUBLIC, WRITE))
        )
        self.assertEqual(acl.canned("authenticated-read", ALICE), (owner_full(), Grant(AUTHENTICATED, READ)))
        # An object's owner is its bucket's: these grant no more than private.
        self.assertEqual(acl.canned("bucket-owner-read", ALICE), (owner_full(),))
        self.assertEqual(acl.canned("bucket-owner-full-control", ALICE), (owner_full(),))

    def test_unknown_and_unkept_canned_acls_are_refused(self) -> None:
        self.assertEqual(self.assertRaises(S3Error, acl.canned, "public", ALICE).code, "InvalidArgument")
        for name in acl.CANNED_NOT_KEPT:
            self.assertEqual(self.assertRaises(S3Error, acl.canned, name, ALICE).code, "NotImplemented")


class HeaderTests(SynchronousTestCase):
    def from_headers(self, bucket: bool = False, **values: str):
        return acl.from_headers(headers(**values), ALICE, known, bucket)

    def refused(self, bucket: bool = False, **values: str) -> S3Error:
        return self.assertRaises(S3Error, self.from_headers, bucket, **values)

    def test_no_acl_header_asks_for_nothing(self) -> None:
        self.assertIsNone(acl.from_headers({"x-amz-meta-a": ["1"]}, ALICE, known, False))

    def test_grant_headers_are_the_whole_acl(self) -> None:
        got = self.from_headers(
            x_amz_grant_read=f'id="{BOB}", uri="{ALL_USERS}"',
            x_amz_grant_full_control=f"id={CAROL}",
            x_amz_grant_read_acp=f'ID="{BOB}"',
            x_amz_grant_write_acp=f'uri="{AUTHENTICATED_USERS}"',
        )
        self.assertEqual(
            set(got),
            {
                Grant(Grantee.account(CAROL), FULL_CONTROL),
                Grant(Grantee.account(BOB), READ),
                Grant(PUBLIC, READ),
                Grant(Grantee.account(BOB), READ_ACP),
                Grant(AUTHENTICATED, WRITE_ACP),
            },
        )

    def test_write_is_a_bucket_permission(self) -> None:
        self.assertEqual(self.from_headers(True, x_amz_grant_write=f"id={BOB}"), (Grant(Grantee.account(BOB), WRITE),))
        self.assertEqual(self.refused(x_amz_grant_write=f"id={BOB}").code, "InvalidArgument")

    def test_put_object_acl_takes_write_as_s3_does(self) -> None:
        got = acl.from_headers(headers(x_amz_grant_write=f"id={BOB}"), ALICE, known, False, replacing=True)
        self.assertEqual(got, (Grant(Grantee.account(BOB), WRITE),))

    def test_canned_and_grants_together_are_an_invalid_request(self) -> None:
        error = self.refused(x_amz_acl="private", x_amz_grant_read=f"id={BOB}")
        self.assertEqual((error.code, error.status), ("InvalidRequest", 400))

    def test_bad_grantees_are_refused_as_s3_refuses_them(self) -> None:
        error = self.refused(x_amz_grant_read="id=999999999999")
        self.assertEqual((error.code, error.extra["ArgumentValue"]), ("InvalidArgument", "999999999999"))
        self.assertEqual(self.refused(x_amz_grant_read='emailAddress="a@example.com"').code,
                         "UnresolvableGrantByEmailAddress")
        self.assertEqual(self.refused(x_amz_grant_read='uri="http://example.com/group"').code, "InvalidArgument")
        self.assertEqual(self.refused(x_amz_grant_read='uri="http://acs.amazonaws.com/groups/s3/LogDelivery"').code,
                         "NotImplemented")
        for value in ("", "id", "id=", "nobody=1", f"id={BOB},", "garbage"):
            self.assertEqual(self.refused(x_amz_grant_read=value).code, "InvalidArgument", value)

    def test_repeats_count_once_and_100_grants_at_most(self) -> None:
        self.assertEqual(self.from_headers(x_amz_grant_read=f"id={BOB},id={BOB}"), (Grant(Grantee.account(BOB), READ),))
        many = {f"{n:012d}" for n in range(101)}
        error = self.assertRaises(
            S3Error, acl.from_headers, headers(x_amz_grant_read=",".join(f"id={n}" for n in many)), ALICE,
            many.__contains__, False,
        )
        self.assertEqual(error.code, "MalformedACLError")


class DocumentTests(SynchronousTestCase):
    def parse(self, body: bytes):
        return acl.parse_document(body, ALICE, known)

    def refused(self, body: bytes) -> str:
        return self.assertRaises(S3Error, self.parse, body).code

    def test_a_policy_is_parsed(self) -> None:
        body = policy(
            grant(f"<ID>{ALICE}</ID><DisplayName>ignored</DisplayName>", "FULL_CONTROL")
            + grant(f"<URI>{ALL_USERS}</URI>", "READ", "Group")
            + grant(f"<ID>{BOB}</ID>", "WRITE")
        )
        self.assertEqual(
            self.parse(body), (owner_full(), Grant(PUBLIC, READ), Grant(Grantee.account(BOB), WRITE))
        )
        # The Owner may be left out; an empty list grants nothing.
        self.assertEqual(self.parse(policy("", owner="")), ())

    def test_malformed_policies_are_malformed_acl_errors(self) -> None:
        for body in (
            b"not xml",
            b"<Other/>",
            b"<AccessControlPolicy/>",
            policy("<Nope/>"),
            policy(grant(f"<ID>{BOB}</ID>", "EVERYTHING")),
            policy(grant(f"<ID>{BOB}</ID>", "READ", "Group")),
            policy(grant(f"<URI>{ALL_USERS}</URI>", "READ")),
            policy(f"<Grant><Grantee><ID>{BOB}</ID></Grantee><Permission>READ</Permission></Grant>"),
            policy("<Grant><Permission>READ</Permission></Grant>"),
            b"<AccessControlPolicy><Owner/><AccessControlList/></AccessControlPolicy>",
            b'<!DOCTYPE x [<!ENTITY a "a">]><AccessControlPolicy/>',
        ):
            self.assertEqual(self.refused(body), "MalformedACLError", body)

    def test_the_owner_cannot_be_changed_and_grantees_must_exist(self) -> None:
        self.assertEqual(self.refused(policy("", owner=BOB)), "AccessDenied")
        self.assertEqual(self.refused(policy(grant("<ID>999999999999</ID>", "READ"))), "InvalidArgument")
        self.assertEqual(
            self.refused(policy(grant("<EmailAddress>a@example.com</EmailAddress>", "READ", "AmazonCustomerByEmail"))),
            "UnresolvableGrantByEmailAddress",
        )

    def test_render_is_s3s_document_and_parses_back(self) -> None:
        grants = (owner_full(), Grant(PUBLIC, READ), Grant(Grantee.account(BOB), READ_ACP))

        def names(account_id: str) -> list:
            return [("ID", account_id), ("DisplayName", {ALICE: "alice", BOB: "bob"}[account_id])]

        body = acl.render(grants, ALICE, names)
        root = ElementTree.fromstring(body)
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        self.assertEqual(root.findtext(f"{ns}Owner/{ns}DisplayName"), "alice")
        types = [g.get("{http://www.w3.org/2001/XMLSchema-instance}type") for g in root.iter(f"{ns}Grantee")]
        self.assertEqual(types, ["CanonicalUser", "Group", "CanonicalUser"])
        self.assertEqual(self.parse(body), grants)


class StoredTextTests(SynchronousTestCase):
    def test_private_is_null_and_anything_else_round_trips(self) -> None:
        self.assertIsNone(acl.dump(None, ALICE))
        self.assertIsNone(acl.dump(acl.canned("private", ALICE), ALICE))
        self.assertEqual(acl.load(None, BOB), (owner_full(BOB),))
        for grants in (acl.canned("public-read", ALICE), (), (Grant(Grantee.account(BOB), READ),)):
            text = acl.dump(grants, ALICE)
            self.assertIsNotNone(text)
            self.assertEqual(acl.load(text, ALICE), grants)

    def test_a_request_asks_for_the_stored_text(self) -> None:
        s3api = parse_config(
            {**minimal(), "s3api": {**minimal()["s3api"], "accounts": [{"id": BOB, "display_name": "bob"}]}}
        ).s3api
        self.assertIsNone(acl.requested({}, ALICE, s3api))
        self.assertIsNone(acl.requested(headers(x_amz_acl="private"), ALICE, s3api))
        self.assertEqual(acl.load(acl.requested(headers(x_amz_grant_read=f"id={BOB}"), ALICE, s3api), ALICE),
                         (Grant(Grantee.account(BOB), READ),))
        self.assertRaises(S3Error, acl.check_request, "PutObject", headers(x_amz_grant_read=f"id={CAROL}"), s3api)
        # Only writes carry an ACL.
        acl.check_request("GetObject", headers(x_amz_grant_read=f"id={CAROL}"), s3api)


class DecisionTests(SynchronousTestCase):
    def bucket(self, *grants: Grant) -> BucketAccess:
        return BucketAccess("b", ALICE, (owner_full(), *grants))

    def test_owner_and_admins_may_do_anything(self) -> None:
        for action in ("GetObject", "PutBucketAcl", "DeleteBucket", "PutBucketLifecycleConfiguration"):
            self.assertTrue(decide(Caller(ALICE), self.bucket(), action))
            self.assertTrue(decide(Caller(BOB, admin=True), self.bucket(), action))

    def test_bucket_permissions_open_their_operations_only(self) -> None:
        reader = self.bucket(Grant(Grantee.account(BOB), READ))
        for action in ("ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads", "HeadBucket"):
            self.assertTrue(decide(Caller(BOB), reader, action), action)
        for action in ("PutObject", "DeleteObject", "GetObject", "GetBucketAcl", "GetBucketTagging", "DeleteBucket"):
            self.assertFalse(decide(Caller(BOB), reader, action), action)
        writer = self.bucket(Grant(Grantee.account(BOB), WRITE))
        for action in ("PutObject", "PostObject", "CopyObject", "DeleteObject", "DeleteObjects",
                       "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"):
            self.assertTrue(decide(Caller(BOB), writer, action), action)
        self.assertFalse(decide(Caller(BOB), writer, "ListObjectsV2"))
        acp = self.bucket(Grant(Grantee.account(BOB), READ_ACP), Grant(Grantee.account(CAROL), WRITE_ACP))
        self.assertTrue(decide(Caller(BOB), acp, "GetBucketAcl"))
        self.assertFalse(decide(Caller(BOB), acp, "PutBucketAcl"))
        self.assertTrue(decide(Caller(CAROL), acp, "PutBucketAcl"))
        full = self.bucket(Grant(Grantee.account(BOB), FULL_CONTROL))
        for action in ("ListObjects", "PutObject", "GetBucketAcl", "PutBucketAcl"):
            self.assertTrue(decide(Caller(BOB), full, action))
        for action in ("GetBucketTagging", "PutBucketLifecycleConfiguration", "DeleteBucket", "GetBucketLocation"):
            self.assertFalse(decide(Caller(BOB), full, action), action)

    def test_groups(self) -> None:
        public = self.bucket(Grant(PUBLIC, READ))
        self.assertTrue(decide(Caller(None), public, "ListObjects"))
        self.assertTrue(decide(Caller(BOB), public, "ListObjects"))
        signed = self.bucket(Grant(AUTHENTICATED, READ))
        self.assertFalse(decide(Caller(None), signed, "ListObjects"))
        self.assertTrue(decide(Caller(BOB), signed, "ListObjects"))
        # A grant to one account is no grant to anyone else.
        self.assertFalse(decide(Caller(CAROL), self.bucket(Grant(Grantee.account(BOB), READ)), "ListObjects"))

    def test_object_actions_are_decided_by_the_objects_acl(self) -> None:
        bucket = self.bucket(Grant(PUBLIC, FULL_CONTROL))
        self.assertFalse(decide(Caller(None), bucket, "GetObject"))
        self.assertTrue(decide(Caller(None), bucket, "GetObject", (Grant(PUBLIC, READ),)))
        self.assertFalse(decide(Caller(None), bucket, "GetObjectAcl", (Grant(PUBLIC, READ),)))
        self.assertTrue(decide(Caller(BOB), bucket, "PutObjectAcl", (Grant(AUTHENTICATED, WRITE_ACP),)))
        self.assertFalse(decide(Caller(BOB), bucket, "GetObjectTagging", (Grant(PUBLIC, FULL_CONTROL),)))

    def test_admit_lets_object_reads_on_to_the_row(self) -> None:
        bucket = self.bucket()
        self.assertIs(admit(Caller(ALICE), bucket, "GetObject"), bucket)
        waiting = admit(Caller(None), bucket, "GetObject")
        self.assertEqual(waiting.awaiting_object, Caller(None))
        self.assertRaises(S3Error, admit, Caller(None), bucket, "ListObjects")
        self.assertRaises(S3Error, admit, Caller(BOB), bucket, "GetObjectTagging")
        # Settled at the bucket: the object's ACL is not read.
        require_object(bucket, "GetObject", None)
        self.assertEqual(missing_object(bucket, "k").code, "NoSuchKey")
        # Waiting: the object's ACL decides; a missing key is AccessDenied
        # unless the caller may list.
        require_object(waiting, "GetObject", acl.dump(acl.canned("public-read", ALICE), ALICE))
        self.assertEqual(self.assertRaises(S3Error, require_object, waiting, "GetObject", None).code, "AccessDenied")
        self.assertEqual(missing_object(waiting, "k").code, "AccessDenied")
        listable = admit(Caller(None), self.bucket(Grant(PUBLIC, READ)), "HeadObject")
        self.assertEqual(missing_object(listable, "k").code, "NoSuchKey")


class ConfiguredACLTests(SynchronousTestCase):
    def config(self, **bucket: object):
        mapping = minimal()
        mapping["buckets"].append({"name": "public", "virtual": True, **bucket})
        return parse_config(mapping)

    def test_a_configured_bucket_has_the_acl_its_configuration_names(self) -> None:
        config = self.config(acl="public-read")
        self.assertEqual(config.virtual_bucket("public").acl, "public-read")
        self.assertEqual(bucket_acl(config, "public", ALICE, None), acl.canned("public-read", ALICE))
        # Whatever a row says: the configuration decides for its buckets.
        self.assertEqual(bucket_acl(self.config(), "public", ALICE, acl.dump(acl.canned("public-read", ALICE), ALICE)),
                         acl.canned("private", ALICE))
        self.assertEqual(bucket_acl(config, "made", ALICE, acl.dump((Grant(PUBLIC, WRITE),), ALICE)),
                         (Grant(PUBLIC, WRITE),))

    def test_an_unknown_acl_is_refused_naming_the_key(self) -> None:
        error = self.assertRaises(ConfigError, self.config, acl="public")
        self.assertIn("buckets[", str(error))
        self.assertIn(".acl", str(error))
