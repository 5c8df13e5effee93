"""
Bucket policies and Block Public Access enforced, through a running daemon
(the ACL tests' daemon: auth_required on, accounts alice and bob), with
boto3 for the accounts and plain unsigned HTTP for anonymous callers:

 - a policy's Allow opens what it names to whom it names (anonymous reads
   of one prefix, one account's uploads under one prefix), nothing more;
   a missing key is AccessDenied to a caller who may not list the bucket;
 - an explicit Deny wins over everything, the owner's own access and ACL
   grants included, key by key in a DeleteObjects request, on a copy's
   source; never over the owner's right to change the policy;
 - conditions are compared with the request (aws:SourceIp,
   aws:SecureTransport);
 - Block Public Access: RestrictPublicBuckets, IgnorePublicAcls and
   BlockPublicAcls change decisions at once;
 - a change of policy is seen by the next request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.gateways import error_code, http, s3_error
from tests.harness import unique_bucket_name
from tests.test_acl_api import ALICE, BOB, SECRETS, acl_gateway

acl_gateway.share_with(__name__)


def statement(effect: str, principal: object, action: object, resource: object, **extra: object) -> dict:
    found = {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource}
    found.update(extra)
    return found


class PolicyEnforcementTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = acl_gateway()
        self.alice = self.gateway.client("alice", SECRETS["alice"])
        self.bob = self.gateway.client("bob", SECRETS["bob"])
        self.bucket = unique_bucket_name("pol")
        self.alice.create_bucket(Bucket=self.bucket)
        self.arn = f"arn:aws:s3:::{self.bucket}"

    # -- helpers -------------------------------------------------------------------

    def policy(self, *statements: dict) -> None:
        document = {"Version": "2012-10-17", "Statement": list(statements)}
        self.alice.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(document))

    def anonymous(self, method: str, key: str = "", query: str = "", body: bytes | None = None) -> tuple[int, bytes]:
        path = f"/{self.bucket}" + (f"/{urllib.parse.quote(key)}" if key else "")
        url = f"{self.gateway.endpoint}{path}" + (f"?{query}" if query else "")
        status, _, answer = http(method, url, body)
        return status, answer

    def assertAnonymous(self, expected: int, method: str, key: str = "", query: str = "", code: str = "") -> None:
        status, answer = self.anonymous(method, key, query)
        self.assertEqual(status, expected, answer)
        if code:
            self.assertEqual(s3_error(answer)[0], code)

    def assertError(self, code: str, call, *args, **kwargs) -> None:
        with self.assertRaises(ClientError) as raised:
            call(*args, **kwargs)
        self.assertEqual(error_code(raised.exception), code)

    def put(self, *keys: str) -> None:
        for key in keys:
            self.alice.put_object(Bucket=self.bucket, Key=key, Body=key.encode())

    # -- Allow ---------------------------------------------------------------------

    def test_a_public_read_policy_opens_one_prefix_to_anonymous_reads_only(self) -> None:
        self.put("public/a", "private/b")
        self.policy(statement("Allow", "*", "s3:GetObject", f"{self.arn}/public/*"))
        self.assertEqual(self.anonymous("GET", "public/a"), (200, b"public/a"))
        self.assertAnonymous(200, "HEAD", "public/a")
        self.assertAnonymous(403, "GET", "private/b", code="AccessDenied")
        # Without s3:ListBucket a missing key does not show: AccessDenied, not NoSuchKey.
        self.assertAnonymous(403, "GET", "public/missing", code="AccessDenied")
        self.assertAnonymous(403, "GET", "", "list-type=2", code="AccessDenied")
        self.assertAnonymous(403, "PUT", "public/new", code="AccessDenied")
        self.assertAnonymous(403, "DELETE", "public/a", code="AccessDenied")
        self.assertAnonymous(403, "GET", "", "policy", code="AccessDenied")
        # Another account reads what everyone may, and no more.
        self.assertEqual(self.bob.get_object(Bucket=self.bucket, Key="public/a")["Body"].read(), b"public/a")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="private/b")

    def test_listing_allowed_makes_a_missing_key_no_such_key(self) -> None:
        self.policy(
            statement("Allow", "*", "s3:GetObject", f"{self.arn}/*"),
            statement("Allow", "*", "s3:ListBucket", self.arn),
        )
        self.assertAnonymous(404, "GET", "missing", code="NoSuchKey")
        self.assertAnonymous(200, "GET", "", "list-type=2")

    def test_an_upload_only_grant_to_one_account_and_one_prefix(self) -> None:
        self.policy(statement("Allow", {"AWS": f"arn:aws:iam::{BOB}:root"}, "s3:PutObject", f"{self.arn}/inbox/*"))
        self.bob.put_object(Bucket=self.bucket, Key="inbox/report", Body=b"from bob")
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="inbox/report")["Body"].read(), b"from bob")
        self.assertError("AccessDenied", self.bob.put_object, Bucket=self.bucket, Key="elsewhere", Body=b"x")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="inbox/report")
        self.assertError("AccessDenied", self.bob.list_objects_v2, Bucket=self.bucket)
        self.assertError("AccessDenied", self.bob.delete_object, Bucket=self.bucket, Key="inbox/report")
        # A multipart upload is s3:PutObject too.
        upload = self.bob.create_multipart_upload(Bucket=self.bucket, Key="inbox/big")
        part = self.bob.upload_part(Bucket=self.bucket, Key="inbox/big", UploadId=upload["UploadId"],
                                    PartNumber=1, Body=b"part")
        self.bob.complete_multipart_upload(
            Bucket=self.bucket, Key="inbox/big", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="inbox/big")["Body"].read(), b"part")
        # Anonymous callers are not that account.
        self.assertAnonymous(403, "PUT", "inbox/anon", code="AccessDenied")

    # -- Deny --------------------------------------------------------------------------

    def test_an_explicit_deny_binds_the_owner_too_key_by_key(self) -> None:
        self.put("protected/a", "free/b", "free/c")
        self.policy(statement("Deny", "*", "s3:DeleteObject", f"{self.arn}/protected/*"))
        self.assertError("AccessDenied", self.alice.delete_object, Bucket=self.bucket, Key="protected/a")
        answer = self.alice.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": "protected/a"}, {"Key": "free/b"}]}
        )
        self.assertEqual([(e["Key"], e["Code"]) for e in answer.get("Errors", [])], [("protected/a", "AccessDenied")])
        self.assertEqual([d["Key"] for d in answer.get("Deleted", [])], ["free/b"])
        listed = self.alice.list_objects_v2(Bucket=self.bucket)
        self.assertEqual([item["Key"] for item in listed["Contents"]], ["free/c", "protected/a"])
        # Everything else stays the owner's.
        self.alice.delete_object(Bucket=self.bucket, Key="free/c")

    def test_a_deny_wins_over_an_acl_grant(self) -> None:
        self.put("k")
        self.alice.put_object_acl(Bucket=self.bucket, Key="k", ACL="public-read")
        self.assertAnonymous(200, "GET", "k")
        self.policy(statement("Deny", "*", "s3:GetObject", f"{self.arn}/*",
                              Condition={"Bool": {"aws:SecureTransport": "false"}}))
        # Plain HTTP here: denied to everyone, the owner included.
        self.assertAnonymous(403, "GET", "k", code="AccessDenied")
        self.assertError("AccessDenied", self.alice.get_object, Bucket=self.bucket, Key="k")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="k")

    def test_a_denied_source_cannot_be_copied(self) -> None:
        self.put("secret")
        self.policy(statement("Deny", {"AWS": ALICE}, "s3:GetObject", f"{self.arn}/secret"))
        self.assertError(
            "AccessDenied", self.alice.copy_object, Bucket=self.bucket, Key="copy",
            CopySource={"Bucket": self.bucket, "Key": "secret"},
        )
        self.put("other")
        self.alice.copy_object(Bucket=self.bucket, Key="copy", CopySource={"Bucket": self.bucket, "Key": "other"})

    def test_the_owner_may_always_replace_a_policy_that_denies_everything(self) -> None:
        self.policy(statement("Deny", "*", "s3:*", [self.arn, f"{self.arn}/*"]))
        self.assertError("AccessDenied", self.alice.list_objects_v2, Bucket=self.bucket)
        self.assertError("AccessDenied", self.alice.put_object, Bucket=self.bucket, Key="k", Body=b"x")
        self.alice.get_bucket_policy(Bucket=self.bucket)
        self.alice.delete_bucket_policy(Bucket=self.bucket)
        # The next request is decided without it.
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        self.alice.list_objects_v2(Bucket=self.bucket)
        # Bob is no owner: the policy operations stay closed to him.
        self.assertError("AccessDenied", self.bob.get_bucket_policy, Bucket=self.bucket)

    # -- conditions ---------------------------------------------------------------------

    def test_source_ip_conditions_compare_the_client_address(self) -> None:
        self.put("k")
        self.policy(statement("Allow", "*", "s3:GetObject", f"{self.arn}/*",
                              Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
        self.assertAnonymous(403, "GET", "k", code="AccessDenied")
        self.policy(statement("Allow", "*", "s3:GetObject", f"{self.arn}/*",
                              Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}}))
        self.assertAnonymous(200, "GET", "k")

    # -- Block Public Access ----------------------------------------------------------

    def block(self, **flags: bool) -> None:
        names = {"block_public_acls": "BlockPublicAcls", "ignore_public_acls": "IgnorePublicAcls",
                 "block_public_policy": "BlockPublicPolicy", "restrict_public_buckets": "RestrictPublicBuckets"}
        self.alice.put_public_access_block(
            Bucket=self.bucket,
            PublicAccessBlockConfiguration={names[name]: value for name, value in flags.items()},
        )

    def test_restrict_public_buckets_cuts_a_public_policys_grants(self) -> None:
        self.put("k")
        self.policy(statement("Allow", "*", "s3:GetObject", f"{self.arn}/*"))
        self.assertAnonymous(200, "GET", "k")
        self.block(restrict_public_buckets=True)
        self.assertAnonymous(403, "GET", "k", code="AccessDenied")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="k")
        self.alice.get_object(Bucket=self.bucket, Key="k")
        self.alice.delete_public_access_block(Bucket=self.bucket)
        self.assertAnonymous(200, "GET", "k")

    def test_ignore_public_acls_voids_public_grants(self) -> None:
        self.put("k")
        self.alice.put_object_acl(Bucket=self.bucket, Key="k", ACL="public-read")
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read")
        self.assertAnonymous(200, "GET", "k")
        self.block(ignore_public_acls=True)
        self.assertAnonymous(403, "GET", "k", code="AccessDenied")
        self.assertAnonymous(403, "GET", "", "list-type=2", code="AccessDenied")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="k")
        # A grant to one account is no public grant.
        self.alice.put_object_acl(Bucket=self.bucket, Key="k", GrantRead=f'id="{BOB}"')
        self.bob.get_object(Bucket=self.bucket, Key="k")

    def test_block_public_acls_refuses_requests_setting_one(self) -> None:
        self.block(block_public_acls=True)
        for call, kwargs in (
            (self.alice.put_object, {"Key": "k", "Body": b"x", "ACL": "public-read"}),
            (self.alice.put_object, {"Key": "k", "Body": b"x", "GrantRead": f'uri="{"http://acs.amazonaws.com/groups/global/AllUsers"}"'}),
            (self.alice.create_multipart_upload, {"Key": "k", "ACL": "authenticated-read"}),
            (self.alice.put_bucket_acl, {"ACL": "public-read"}),
        ):
            self.assertError("AccessDenied", call, Bucket=self.bucket, **kwargs)
        self.put("k")
        self.assertError("AccessDenied", self.alice.put_object_acl, Bucket=self.bucket, Key="k", ACL="public-read")
        self.assertError(
            "AccessDenied", self.alice.copy_object, Bucket=self.bucket, Key="copy", ACL="public-read",
            CopySource={"Bucket": self.bucket, "Key": "k"},
        )
        # Private ones and grants to accounts go through.
        self.alice.put_object(Bucket=self.bucket, Key="k2", Body=b"x", ACL="private")
        self.alice.put_object_acl(Bucket=self.bucket, Key="k2", GrantRead=f'id="{BOB}"')

    # -- anonymous requests with a body -----------------------------------------------

    def test_an_anonymous_delete_objects_is_decided_before_its_body_is_read(self) -> None:
        """
        Refused without a grant (at its headers: nothing of its body kept);
        with a policy allowing deletes under one prefix, its document is read
        and each key decided.
        """
        self.put("tmp/a", "keep/b")
        document = b"<Delete><Object><Key>tmp/a</Key></Object><Object><Key>keep/b</Key></Object></Delete>"
        md5 = {"Content-MD5": base64.b64encode(hashlib.md5(document).digest()).decode()}
        url = f"{self.gateway.endpoint}/{self.bucket}?delete"
        status, _, answer = http("POST", url, document, md5)
        self.assertEqual((status, s3_error(answer)[0]), (403, "AccessDenied"))
        self.policy(statement("Allow", "*", "s3:DeleteObject", f"{self.arn}/tmp/*"))
        status, _, answer = http("POST", url, document, md5)
        self.assertEqual(status, 200, answer)
        self.assertIn(b"<Deleted><Key>tmp/a</Key></Deleted>", answer)
        self.assertIn(b"<Key>keep/b</Key><Code>AccessDenied</Code>", answer)
        listed = self.alice.list_objects_v2(Bucket=self.bucket)
        self.assertEqual([item["Key"] for item in listed["Contents"]], ["keep/b"])
