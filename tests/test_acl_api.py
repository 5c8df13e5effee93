"""
ACLs through a running daemon (auth_required on), with boto3 for the
accounts alice and bob and plain unsigned HTTP (urllib) for anonymous
callers:

 - without a grant, nothing of alice's is open to bob or to anyone
   unsigned (reads, listings, writes, deletions, ACLs), and a missing key
   is AccessDenied to whoever may not list the bucket;
 - public-read, public-read-write and authenticated-read buckets and
   objects open what S3 opens to whom S3 opens it, and nothing more;
 - grants to one account (x-amz-grant-*, AccessControlPolicy documents);
 - an object's ACL gates that object only; a copy never takes its source's
   ACL; a multipart upload's ACL is its object's;
 - Get*Acl answers as S3 (boto3 reads its Owner and Grants); Put*Acl's
   errors are S3's;
 - a configured bucket takes its ACL from the configuration.
"""

from __future__ import annotations

import urllib.parse

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.gateways import Lazy, RunningGateway, error_code, http, launch, s3_error
from tests.harness import unique_bucket_name

ALICE, BOB = "111111111111", "222222222222"
SECRETS = {
    "alice": "alice-secret-0123456789",
    "bob": "bob-secret-0123456789",
    # alice's too, allowed to bypass GOVERNANCE retention (s3.object_lock).
    "alice-bypass": "alice-bypass-secret-0123456789",
}
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def _launch() -> RunningGateway:
    """A daemon with alice's configured public-read bucket "vb-public" beside the usual "vb-default"."""
    return launch(
        "acl",
        ("vb-default", "vb-public"),
        bucket_keys={"vb-public": {"owner": ALICE, "acl": "public-read"}},
        s3api={
            "accounts": [{"id": ALICE, "display_name": "alice"}, {"id": BOB, "display_name": "bob"}],
            "credentials": [
                {"access_key": "alice", "secret_key": SECRETS["alice"], "account": ALICE},
                {"access_key": "bob", "secret_key": SECRETS["bob"], "account": BOB},
                {"access_key": "alice-bypass", "secret_key": SECRETS["alice-bypass"], "account": ALICE,
                 "bypass_governance_retention": True},
            ],
        },
    )


acl_gateway = Lazy(_launch, stop=lambda gateway: gateway.daemon.stop())


def grants_of(answer: dict) -> set[tuple[str, str, str]]:
    """A Get*Acl answer's grants as (type, id or URI, permission)."""
    found = set()
    for grant in answer["Grants"]:
        grantee = grant["Grantee"]
        found.add((grantee["Type"], grantee.get("ID") or grantee.get("URI"), grant["Permission"]))
    return found


class ACLTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = acl_gateway()
        self.alice = self.gateway.client("alice", SECRETS["alice"])
        self.bob = self.gateway.client("bob", SECRETS["bob"])
        self.bucket = unique_bucket_name("acl")
        self.alice.create_bucket(Bucket=self.bucket)

    # -- helpers -------------------------------------------------------------------

    def url(self, key: str = "", bucket: str = "", query: str = "") -> str:
        path = f"/{bucket or self.bucket}" + (f"/{urllib.parse.quote(key)}" if key else "")
        return f"{self.gateway.endpoint}{path}" + (f"?{query}" if query else "")

    def anonymous(self, method: str, key: str = "", body: bytes | None = None, bucket: str = "",
                  query: str = "") -> tuple[int, bytes]:
        status, _, answer = http(method, self.url(key, bucket, query), body)
        return status, answer

    def assertAnonymous(self, expected: int, method: str, key: str = "", body: bytes | None = None,
                        bucket: str = "", query: str = "", code: str = "") -> bytes:
        status, answer = self.anonymous(method, key, body, bucket, query)
        self.assertEqual(status, expected, answer)
        if code:
            self.assertEqual(s3_error(answer)[0], code)
        return answer

    def assertError(self, code: str, call, *args, **kwargs) -> None:
        with self.assertRaises(ClientError) as raised:
            call(*args, **kwargs)
        if raised.exception.operation_name in ("HeadObject", "HeadBucket"):
            status = {"AccessDenied": 403, "NoSuchKey": 404}[code]
            self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], status)
        else:
            self.assertEqual(error_code(raised.exception), code)

    def keys(self, bucket: str = "") -> list[str]:
        listed = self.alice.list_objects_v2(Bucket=bucket or self.bucket)
        return [item["Key"] for item in listed.get("Contents", [])]

    # -- nothing without a grant -----------------------------------------------------

    def test_a_private_bucket_is_closed_to_other_accounts_and_to_anonymous_callers(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"alice's")
        bob = self.bob
        self.assertError("AccessDenied", bob.get_object, Bucket=self.bucket, Key="k")
        self.assertError("AccessDenied", bob.head_object, Bucket=self.bucket, Key="k")
        self.assertError("AccessDenied", bob.get_object, Bucket=self.bucket, Key="missing")
        self.assertError("AccessDenied", bob.list_objects_v2, Bucket=self.bucket)
        self.assertError("AccessDenied", bob.put_object, Bucket=self.bucket, Key="k", Body=b"bob's")
        self.assertError("AccessDenied", bob.delete_object, Bucket=self.bucket, Key="k")
        self.assertError("AccessDenied", bob.get_bucket_acl, Bucket=self.bucket)
        self.assertError("AccessDenied", bob.get_object_acl, Bucket=self.bucket, Key="k")
        self.assertError("AccessDenied", bob.put_object_acl, Bucket=self.bucket, Key="k", ACL="public-read")
        self.assertError("AccessDenied", bob.put_bucket_acl, Bucket=self.bucket, ACL="public-read-write")
        for method, key, query in (
            ("GET", "k", ""), ("GET", "missing", ""), ("GET", "", ""), ("GET", "", "list-type=2"),
            ("PUT", "k", ""), ("DELETE", "k", ""), ("GET", "", "acl"), ("GET", "k", "acl"), ("PUT", "k", "acl"),
        ):
            self.assertAnonymous(403, method, key, b"x" if method == "PUT" else None, query=query,
                                 code="AccessDenied")
        self.assertAnonymous(403, "HEAD", "k")
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"alice's")
        self.assertEqual(self.keys(), ["k"])
        self.assertEqual(grants_of(self.alice.get_object_acl(Bucket=self.bucket, Key="k")),
                         {("CanonicalUser", ALICE, "FULL_CONTROL")})

    def test_anonymous_callers_reach_nothing_an_acl_cannot_grant(self) -> None:
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read-write")
        status, _, body = http("GET", f"{self.gateway.endpoint}/")
        self.assertEqual((status, s3_error(body)[0]), (403, "AccessDenied"))
        for query in ("tagging", "lifecycle", "location", "versioning"):
            self.assertAnonymous(403, "GET", query=query, code="AccessDenied")
        self.assertAnonymous(403, "DELETE", code="AccessDenied")
        self.assertAnonymous(403, "PUT", query="acl", code="AccessDenied")
        self.assertIn(self.bucket, [b["Name"] for b in self.alice.list_buckets()["Buckets"]])

    # -- canned ACLs -------------------------------------------------------------------

    def test_public_read_object_is_read_by_anyone_and_written_by_its_owner_only(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="pub", Body=b"for all", ACL="public-read")
        self.alice.put_object(Bucket=self.bucket, Key="priv", Body=b"mine")
        self.assertEqual(self.assertAnonymous(200, "GET", "pub"), b"for all")
        self.assertAnonymous(200, "HEAD", "pub")
        self.assertEqual(self.bob.get_object(Bucket=self.bucket, Key="pub")["Body"].read(), b"for all")
        # Its ACL gates it alone: the bucket and its other objects stay closed.
        self.assertAnonymous(403, "GET", "priv", code="AccessDenied")
        self.assertAnonymous(403, "GET", code="AccessDenied")
        self.assertAnonymous(403, "GET", "missing", code="AccessDenied")
        self.assertAnonymous(403, "PUT", "pub", b"defaced", code="AccessDenied")
        self.assertAnonymous(403, "DELETE", "pub", code="AccessDenied")
        self.assertAnonymous(403, "GET", "pub", query="acl", code="AccessDenied")
        self.assertError("AccessDenied", self.bob.put_object, Bucket=self.bucket, Key="pub", Body=b"bob's")
        self.assertError("AccessDenied", self.bob.get_object_tagging, Bucket=self.bucket, Key="pub")
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="pub")["Body"].read(), b"for all")
        self.assertEqual(
            grants_of(self.alice.get_object_acl(Bucket=self.bucket, Key="pub")),
            {("CanonicalUser", ALICE, "FULL_CONTROL"), ("Group", ALL_USERS, "READ")},
        )

    def test_public_read_bucket_lists_to_anyone_but_its_objects_keep_their_acls(self) -> None:
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read")
        self.alice.put_object(Bucket=self.bucket, Key="priv", Body=b"mine")
        listing = self.assertAnonymous(200, "GET", query="list-type=2")
        self.assertIn(b"<Key>priv</Key>", listing)
        self.assertAnonymous(200, "HEAD")
        self.assertEqual([o["Key"] for o in self.bob.list_objects_v2(Bucket=self.bucket)["Contents"]], ["priv"])
        # Bucket READ lists; reading an object takes the object's grant.
        self.assertAnonymous(403, "GET", "priv", code="AccessDenied")
        # Who may list may learn that a key is missing.
        self.assertAnonymous(404, "GET", "missing", code="NoSuchKey")
        self.assertError("NoSuchKey", self.bob.get_object, Bucket=self.bucket, Key="missing")
        self.assertAnonymous(403, "PUT", "new", b"x", code="AccessDenied")
        self.assertAnonymous(403, "DELETE", "priv", code="AccessDenied")
        self.assertAnonymous(403, "GET", query="acl", code="AccessDenied")
        self.assertEqual(self.keys(), ["priv"])

    def test_public_read_write_bucket_takes_anonymous_writes(self) -> None:
        self.alice.put_bucket_acl(Bucket=self.bucket, ACL="public-read-write")
        self.assertAnonymous(200, "PUT", "dropped", b"from nobody")
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="dropped")["Body"].read(), b"from nobody")
        # Written by nobody, owned by the bucket's owner, private: not even its writer reads it.
        self.assertAnonymous(403, "GET", "dropped", code="AccessDenied")
        self.bob.put_object(Bucket=self.bucket, Key="by-bob", Body=b"bob's")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="by-bob")
        self.assertAnonymous(204, "DELETE", "by-bob")
        self.assertEqual(self.keys(), ["dropped"])
        self.assertError("AccessDenied", self.bob.put_bucket_tagging, Bucket=self.bucket,
                         Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
        self.assertError("AccessDenied", self.bob.delete_bucket, Bucket=self.bucket)

    def test_authenticated_read_opens_to_accounts_not_to_anonymous_callers(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"signed only", ACL="authenticated-read")
        self.assertEqual(self.bob.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"signed only")
        self.assertAnonymous(403, "GET", "k", code="AccessDenied")
        self.assertEqual(
            grants_of(self.alice.get_object_acl(Bucket=self.bucket, Key="k")),
            {("CanonicalUser", ALICE, "FULL_CONTROL"), ("Group", AUTHENTICATED_USERS, "READ")},
        )

    def test_create_bucket_with_a_canned_acl(self) -> None:
        name = unique_bucket_name("made-public")
        self.alice.create_bucket(Bucket=name, ACL="public-read")
        self.alice.put_object(Bucket=name, Key="k", Body=b"x")
        self.assertIn(b"<Key>k</Key>", self.assertAnonymous(200, "GET", bucket=name))
        self.assertEqual(
            grants_of(self.alice.get_bucket_acl(Bucket=name)),
            {("CanonicalUser", ALICE, "FULL_CONTROL"), ("Group", ALL_USERS, "READ")},
        )

    # -- grants to one account -----------------------------------------------------------

    def test_a_grant_to_one_account_opens_to_it_alone(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="for-bob", Body=b"bob may read", GrantRead=f'id="{BOB}"')
        self.alice.put_object(Bucket=self.bucket, Key="other", Body=b"not bob")
        self.assertEqual(self.bob.get_object(Bucket=self.bucket, Key="for-bob")["Body"].read(), b"bob may read")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="other")
        self.assertError("AccessDenied", self.bob.get_object_acl, Bucket=self.bucket, Key="for-bob")
        self.assertError("AccessDenied", self.bob.put_object, Bucket=self.bucket, Key="for-bob", Body=b"x")
        self.assertAnonymous(403, "GET", "for-bob", code="AccessDenied")
        # Grant headers are the whole ACL: the owner keeps its full control
        # only if granted, and may still do anything.
        self.assertEqual(grants_of(self.alice.get_object_acl(Bucket=self.bucket, Key="for-bob")),
                         {("CanonicalUser", BOB, "READ")})
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="for-bob")["Body"].read(), b"bob may read")

    def test_bucket_grants_to_another_account(self) -> None:
        self.alice.put_bucket_acl(
            Bucket=self.bucket, GrantWrite=f"id={BOB}", GrantReadACP=f'id="{BOB}"', GrantFullControl=f"id={ALICE}"
        )
        self.bob.put_object(Bucket=self.bucket, Key="upload", Body=b"bob's", GrantRead=f"id={BOB}")
        self.assertEqual(self.bob.get_object(Bucket=self.bucket, Key="upload")["Body"].read(), b"bob's")
        self.assertEqual(
            grants_of(self.bob.get_bucket_acl(Bucket=self.bucket)),
            {("CanonicalUser", BOB, "WRITE"), ("CanonicalUser", BOB, "READ_ACP"),
             ("CanonicalUser", ALICE, "FULL_CONTROL")},
        )
        self.assertError("AccessDenied", self.bob.list_objects_v2, Bucket=self.bucket)
        self.assertError("AccessDenied", self.bob.put_bucket_acl, Bucket=self.bucket, ACL="public-read")
        upload = self.bob.create_multipart_upload(Bucket=self.bucket, Key="mp")["UploadId"]
        etag = self.bob.upload_part(Bucket=self.bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
        self.bob.complete_multipart_upload(Bucket=self.bucket, Key="mp", UploadId=upload,
                                           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        self.bob.delete_object(Bucket=self.bucket, Key="upload")
        self.assertEqual(self.keys(), ["mp"])
        self.assertEqual(self.alice.get_object(Bucket=self.bucket, Key="mp")["Body"].read(), b"p")

    def test_put_and_get_object_acl_round_trip(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        policy = {
            "Owner": {"ID": ALICE},
            "Grants": [
                {"Grantee": {"Type": "CanonicalUser", "ID": ALICE}, "Permission": "FULL_CONTROL"},
                {"Grantee": {"Type": "CanonicalUser", "ID": BOB}, "Permission": "READ"},
                {"Grantee": {"Type": "CanonicalUser", "ID": BOB}, "Permission": "WRITE_ACP"},
                {"Grantee": {"Type": "Group", "URI": AUTHENTICATED_USERS}, "Permission": "READ_ACP"},
            ],
        }
        before = self.alice.head_object(Bucket=self.bucket, Key="k")
        self.alice.put_object_acl(Bucket=self.bucket, Key="k", AccessControlPolicy=policy)
        got = self.alice.get_object_acl(Bucket=self.bucket, Key="k")
        self.assertEqual(got["Owner"], {"ID": ALICE, "DisplayName": "alice"})
        self.assertEqual(got["Grants"][1], {"Grantee": {"Type": "CanonicalUser", "ID": BOB, "DisplayName": "bob"},
                                            "Permission": "READ"})
        self.assertEqual(grants_of(got), {("CanonicalUser", ALICE, "FULL_CONTROL"), ("CanonicalUser", BOB, "READ"),
                                          ("CanonicalUser", BOB, "WRITE_ACP"),
                                          ("Group", AUTHENTICATED_USERS, "READ_ACP")})
        # Only the ACL changed.
        after = self.alice.head_object(Bucket=self.bucket, Key="k")
        self.assertEqual((after["ETag"], after["LastModified"]), (before["ETag"], before["LastModified"]))
        # Bob reads it, reads its ACL (AuthenticatedUsers READ_ACP) and may replace it (WRITE_ACP).
        self.assertEqual(self.bob.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"x")
        self.assertEqual(len(self.bob.get_object_acl(Bucket=self.bucket, Key="k")["Grants"]), 4)
        self.bob.put_object_acl(Bucket=self.bucket, Key="k", ACL="private")
        self.assertError("AccessDenied", self.bob.get_object, Bucket=self.bucket, Key="k")
        self.assertEqual(grants_of(self.alice.get_object_acl(Bucket=self.bucket, Key="k")),
                         {("CanonicalUser", ALICE, "FULL_CONTROL")})

    def test_object_acl_version_ids(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        self.alice.put_object_acl(Bucket=self.bucket, Key="k", ACL="public-read", VersionId="null")
        self.assertEqual(len(self.alice.get_object_acl(Bucket=self.bucket, Key="k", VersionId="null")["Grants"]), 2)
        self.assertError("NoSuchVersion", self.alice.get_object_acl, Bucket=self.bucket, Key="k", VersionId="v2")
        self.assertError("NoSuchVersion", self.alice.put_object_acl, Bucket=self.bucket, Key="k",
                         ACL="private", VersionId="v2")
        self.assertError("NoSuchKey", self.alice.put_object_acl, Bucket=self.bucket, Key="missing", ACL="private")
        self.assertError("NoSuchKey", self.alice.get_object_acl, Bucket=self.bucket, Key="missing")

    # -- what carries an ACL ---------------------------------------------------------------

    def test_a_copy_never_takes_its_sources_acl(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="src", Body=b"public", ACL="public-read")
        self.alice.copy_object(Bucket=self.bucket, Key="plain-copy", CopySource=f"{self.bucket}/src")
        self.assertAnonymous(403, "GET", "plain-copy", code="AccessDenied")
        self.assertEqual(grants_of(self.alice.get_object_acl(Bucket=self.bucket, Key="plain-copy")),
                         {("CanonicalUser", ALICE, "FULL_CONTROL")})
        self.alice.copy_object(Bucket=self.bucket, Key="public-copy", CopySource=f"{self.bucket}/src",
                               ACL="public-read", MetadataDirective="COPY")
        self.assertEqual(self.assertAnonymous(200, "GET", "public-copy"), b"public")

    def test_a_readable_source_may_be_copied_by_another_account(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="shared", Body=b"shared", GrantRead=f"id={BOB}")
        self.alice.put_object(Bucket=self.bucket, Key="closed", Body=b"closed")
        own = unique_bucket_name("bobs")
        self.bob.create_bucket(Bucket=own)
        self.bob.copy_object(Bucket=own, Key="copy", CopySource=f"{self.bucket}/shared")
        self.assertEqual(self.bob.get_object(Bucket=own, Key="copy")["Body"].read(), b"shared")
        self.assertError("AccessDenied", self.bob.copy_object, Bucket=own, Key="c2", CopySource=f"{self.bucket}/closed")
        self.assertError("AccessDenied", self.bob.copy_object, Bucket=own, Key="c3",
                         CopySource=f"{self.bucket}/missing")

    def test_a_multipart_uploads_acl_is_its_objects(self) -> None:
        upload = self.alice.create_multipart_upload(Bucket=self.bucket, Key="mp", ACL="public-read")["UploadId"]
        etag = self.alice.upload_part(Bucket=self.bucket, Key="mp", UploadId=upload, PartNumber=1,
                                      Body=b"assembled")["ETag"]
        self.alice.complete_multipart_upload(Bucket=self.bucket, Key="mp", UploadId=upload,
                                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        self.assertEqual(self.assertAnonymous(200, "GET", "mp"), b"assembled")

    def test_an_overwrite_replaces_the_acl(self) -> None:
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"v1", ACL="public-read")
        self.assertAnonymous(200, "GET", "k")
        self.alice.put_object(Bucket=self.bucket, Key="k", Body=b"v2")
        self.assertAnonymous(403, "GET", "k", code="AccessDenied")

    # -- S3's errors -------------------------------------------------------------------------

    def test_acl_errors_are_s3s(self) -> None:
        put, b = self.alice.put_object, self.bucket
        self.assertError("InvalidRequest", put, Bucket=b, Key="k", Body=b"x", ACL="public-read",
                         GrantRead=f"id={BOB}")
        self.assertError("InvalidArgument", put, Bucket=b, Key="k", Body=b"x", GrantRead="id=999999999999")
        self.assertError("InvalidArgument", put, Bucket=b, Key="k", Body=b"x", ACL="no-such-acl")
        self.assertError("UnresolvableGrantByEmailAddress", put, Bucket=b, Key="k", Body=b"x",
                         GrantRead='emailAddress="someone@example.com"')
        self.assertEqual(self.keys(), [])
        self.assertError("MissingSecurityHeader", self.alice.put_bucket_acl, Bucket=b)
        self.assertError("InvalidArgument", self.alice.put_bucket_acl, Bucket=b,
                         AccessControlPolicy={"Owner": {"ID": ALICE}, "Grants": [
                             {"Grantee": {"Type": "CanonicalUser", "ID": "999999999999"}, "Permission": "READ"}]})
        self.assertError("AccessDenied", self.alice.put_bucket_acl, Bucket=b,
                         AccessControlPolicy={"Owner": {"ID": BOB}, "Grants": []})
        status, _, body = http("PUT", self.url(query="acl"), b"<AccessControlPolicy><Nope/></AccessControlPolicy>",
                               headers=_alice_signed("PUT", self.url(query="acl")))
        self.assertEqual((status, s3_error(body)[0]), (400, "MalformedACLError"))
        self.assertEqual(grants_of(self.alice.get_bucket_acl(Bucket=b)), {("CanonicalUser", ALICE, "FULL_CONTROL")})

    # -- configured buckets ----------------------------------------------------------------------

    def test_a_configured_bucket_takes_its_acl_from_the_configuration(self) -> None:
        self.alice.put_object(Bucket="vb-public", Key="k", Body=b"x")
        self.addCleanup(self.alice.delete_object, Bucket="vb-public", Key="k")
        self.assertIn(b"<Key>k</Key>", self.assertAnonymous(200, "GET", bucket="vb-public"))
        self.assertAnonymous(403, "GET", "k", bucket="vb-public", code="AccessDenied")
        self.assertAnonymous(403, "PUT", "new", b"x", bucket="vb-public", code="AccessDenied")
        self.assertEqual(
            grants_of(self.alice.get_bucket_acl(Bucket="vb-public")),
            {("CanonicalUser", ALICE, "FULL_CONTROL"), ("Group", ALL_USERS, "READ")},
        )
        with self.assertRaises(ClientError) as raised:
            self.alice.put_bucket_acl(Bucket="vb-public", ACL="private")
        self.assertEqual(error_code(raised.exception), "AccessDenied")
        self.assertIn("buckets[", raised.exception.response["Error"]["Message"])
        # The configuration's other bucket stays private.
        self.assertAnonymous(403, "GET", bucket="vb-default", code="AccessDenied")


def _alice_signed(method: str, url: str) -> dict:
    """SigV4 headers of alice for an unsigned-payload request (a body boto3 would not send)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class Signer(S3SigV4Auth):
        def payload(self, request):
            return "UNSIGNED-PAYLOAD"

    request = AWSRequest(method=method, url=url)
    Signer(Credentials("alice", SECRETS["alice"]), "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())
