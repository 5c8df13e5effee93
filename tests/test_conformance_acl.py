"""
Conformance of ACLs through a running daemon: the ACL behaviours a
standard S3 conformance suite checks (default and canned ACLs read back,
grants to one account and what each permission opens, grant headers, the
nine bucket/object canned-ACL combinations seen by another account and by
anonymous callers, copies and bucket re-creation), each as S3 answers it,
with boto3 for the accounts alice and bob and unsigned requests for
anonymous callers.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tests.conformance import (
    ALICE,
    ALL_USERS,
    AUTHENTICATED_USERS,
    BOB,
    SECRETS,
    ConformanceCase,
    grants,
    group_grant,
    owner_grant,
)
from tests.harness import unique_bucket_name

CANNED_GRANTS = {
    "private": [],
    "public-read": [group_grant(ALL_USERS, "READ")],
    "public-read-write": [group_grant(ALL_USERS, "READ"), group_grant(ALL_USERS, "WRITE")],
    "authenticated-read": [group_grant(AUTHENTICATED_USERS, "READ")],
}


def _policy_with(answer: dict, *extra: dict) -> dict:
    """An AccessControlPolicy document of a Get*Acl answer, with C{extra} grants added."""
    return {"Owner": answer["Owner"], "Grants": list(answer["Grants"]) + list(extra)}


def _grant(account: str, permission: str) -> dict:
    return {"Grantee": {"Type": "CanonicalUser", "ID": account}, "Permission": permission}


class CannedACLTests(ConformanceCase):
    def test_a_new_buckets_acl_is_its_owners_full_control(self) -> None:
        """A new bucket's ACL names its creator as owner, with FULL_CONTROL and nothing else."""
        answer = self.alice.get_bucket_acl(Bucket=self.new_bucket())
        self.assertEqual(answer["Owner"], {"ID": ALICE, "DisplayName": "alice"})
        self.assertEqual(grants(answer), [owner_grant()])

    def test_canned_acls_at_bucket_creation_read_back(self) -> None:
        """Each canned ACL given to CreateBucket reads back as the owner's FULL_CONTROL plus its group grants."""
        for canned, expected in CANNED_GRANTS.items():
            answer = self.alice.get_bucket_acl(Bucket=self.new_bucket(canned))
            self.assertEqual(grants(answer), sorted([owner_grant(), *expected]), canned)

    def test_put_bucket_acl_replaces_a_canned_acl(self) -> None:
        """PutBucketAcl private replaces public-read; private over private is accepted (200)."""
        bucket = self.new_bucket("public-read")
        self.alice.put_bucket_acl(Bucket=bucket, ACL="private")
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=bucket)), [owner_grant()])
        answer = self.alice.put_bucket_acl(Bucket=bucket, ACL="private")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)

    def test_an_unknown_canned_acl_is_refused(self) -> None:
        """PutBucketAcl with x-amz-acl: public-ready (no canned ACL) answers 400 and changes nothing."""
        bucket = self.new_bucket()
        client = self.gateway.client("alice", SECRETS["alice"])

        def misspell(params: dict, **_: Any) -> None:
            params["headers"]["x-amz-acl"] = "public-ready"

        client.meta.events.register("before-call.s3.PutBucketAcl", misspell)
        self.assertS3Error(400, "InvalidArgument", client.put_bucket_acl, Bucket=bucket, ACL="public-read")
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=bucket)), [owner_grant()])

    def test_put_object_acl_without_a_content_length(self) -> None:
        """PutObjectAcl with a canned ACL and no Content-Length header (no body) succeeds."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        client = self.gateway.client("alice", SECRETS["alice"])

        def drop_length(params: dict, **_: Any) -> None:
            params["headers"].pop("Content-Length", None)

        client.meta.events.register("before-call.s3.PutObjectAcl", drop_length)
        client.put_object_acl(Bucket=bucket, Key="foo", ACL="public-read")
        self.assertEqual(self.nobody.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"bar")

    def test_a_new_objects_acl_is_its_owners_full_control(self) -> None:
        """A new object's ACL is its owner's FULL_CONTROL and nothing else."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        answer = self.alice.get_object_acl(Bucket=bucket, Key="foo")
        self.assertEqual(answer["Owner"], {"ID": ALICE, "DisplayName": "alice"})
        self.assertEqual(grants(answer), [owner_grant()])

    def test_canned_acls_on_put_object_read_back(self) -> None:
        """Each canned ACL given to PutObject reads back as the owner's FULL_CONTROL plus its group grants."""
        bucket = self.new_bucket()
        for canned, expected in CANNED_GRANTS.items():
            self.alice.put_object(Bucket=bucket, Key=canned, Body=b"bar", ACL=canned)
            answer = self.alice.get_object_acl(Bucket=bucket, Key=canned)
            self.assertEqual(grants(answer), sorted([owner_grant(), *expected]), canned)

    def test_put_object_acl_back_to_private(self) -> None:
        """PutObjectAcl private takes a public-read object's AllUsers grant away."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar", ACL="public-read")
        self.alice.put_object_acl(Bucket=bucket, Key="foo", ACL="private")
        self.assertEqual(grants(self.alice.get_object_acl(Bucket=bucket, Key="foo")), [owner_grant()])
        self.assertDenied(self.nobody.get_object, Bucket=bucket, Key="foo")

    def test_bucket_owner_canned_acls_on_another_accounts_upload(self) -> None:
        """
        bucket-owner-read and bucket-owner-full-control on an upload by
        another account into a public-read-write bucket: the object is the
        bucket owner's (as S3 with Object Ownership "BucketOwnerPreferred"
        makes it), so its ACL is the bucket owner's FULL_CONTROL.
        """
        bucket = self.new_bucket("public-read-write")
        for canned in ("bucket-owner-read", "bucket-owner-full-control"):
            self.bob.put_object(Bucket=bucket, Key=canned, Body=b"bar", ACL=canned)
            answer = self.alice.get_object_acl(Bucket=bucket, Key=canned)
            self.assertEqual(answer["Owner"]["ID"], ALICE)
            self.assertEqual(grants(answer), [owner_grant()], canned)

    def test_an_upload_by_another_account_stays_its_writers(self) -> None:
        """An object another account writes is owned by that account, which may read its ACL."""
        bucket = self.new_bucket("public-read-write")
        self.bob.put_object(Bucket=bucket, Key="foo", Body=b"bar", ACL="bucket-owner-read")
        answer = self.bob.get_object_acl(Bucket=bucket, Key="foo")
        self.assertEqual(grants(answer), sorted([owner_grant(account=BOB), owner_grant("READ")]))

    test_an_upload_by_another_account_stays_its_writers.skip = (  # type: ignore[attr-defined]
        "S3 with Object Ownership 'ObjectWriter' makes bob the owner of what he writes into alice's bucket "
        "(bucket-owner-read: bob FULL_CONTROL, alice READ); s3balance gives every object to its bucket's owner "
        "(BucketOwnerPreferred, see docs/access.md), so the ACL is alice's FULL_CONTROL and bob may not read it"
    )


class GrantTests(ConformanceCase):
    def test_an_object_acl_of_one_grant_reads_back_as_put(self) -> None:
        """An object ACL whose only grant gives the owner one permission reads back as exactly that grant."""
        bucket = self.new_bucket()
        for permission in ("FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP"):
            self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar")
            answer = self.alice.get_object_acl(Bucket=bucket, Key="foo")
            answer["Grants"][0]["Permission"] = permission
            self.alice.put_object_acl(Bucket=bucket, Key="foo", AccessControlPolicy=_policy_with(answer))
            self.assertEqual(grants(self.alice.get_object_acl(Bucket=bucket, Key="foo")),
                             [owner_grant(permission)], permission)

    def test_put_object_acl_by_a_full_control_grantee_keeps_the_owner(self) -> None:
        """Another account granted FULL_CONTROL may replace an object's ACL; the object's owner stays."""
        bucket = self.new_bucket("public-read-write")
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        owner = {"ID": ALICE, "DisplayName": "alice"}
        self.alice.put_object_acl(Bucket=bucket, Key="foo",
                                  AccessControlPolicy={"Owner": owner, "Grants": [_grant(BOB, "FULL_CONTROL")]})
        self.bob.put_object_acl(Bucket=bucket, Key="foo",
                                AccessControlPolicy={"Owner": owner, "Grants": [_grant(BOB, "READ_ACP")]})
        answer = self.bob.get_object_acl(Bucket=bucket, Key="foo")
        self.assertEqual(answer["Owner"]["ID"], ALICE)
        self.assertEqual(grants(answer), [owner_grant("READ_ACP", BOB)])

    def test_put_object_acl_changes_nothing_else(self) -> None:
        """PutObjectAcl leaves the object's content type, metadata, ETag and Last-Modified as they were."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar", ContentType="text/x-foo", Metadata={"a": "b"})
        before = self.alice.head_object(Bucket=bucket, Key="foo")
        answer = self.alice.get_object_acl(Bucket=bucket, Key="foo")
        self.alice.put_object_acl(Bucket=bucket, Key="foo",
                                  AccessControlPolicy=_policy_with(answer, _grant(BOB, "FULL_CONTROL")))
        after = self.alice.head_object(Bucket=bucket, Key="foo")
        for field in ("ContentType", "ETag", "LastModified", "Metadata", "ContentLength"):
            self.assertEqual(after[field], before[field], field)

    def _bucket_granting_bob(self, permission: str) -> str:
        bucket = self.new_bucket()
        answer = self.alice.get_bucket_acl(Bucket=bucket)
        self.alice.put_bucket_acl(Bucket=bucket, AccessControlPolicy=_policy_with(answer, _grant(BOB, permission)))
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=bucket)),
                         sorted([owner_grant(), owner_grant(permission, BOB)]))
        return bucket

    def _bob_may(self, bucket: str) -> dict[str, bool]:
        """What bob may do on C{bucket}: read (HeadBucket), read its ACL, write an object, replace its ACL."""
        attempts: dict[str, Any] = {
            "read": lambda: self.bob.head_bucket(Bucket=bucket),
            "read_acp": lambda: self.bob.get_bucket_acl(Bucket=bucket),
            "write": lambda: self.bob.put_object(Bucket=bucket, Key="foo-write", Body=b"bar"),
            "write_acp": lambda: self.bob.put_bucket_acl(Bucket=bucket, ACL="public-read"),
        }
        may = {}
        for name, attempt in attempts.items():
            try:
                attempt()
            except ClientError as error:
                self.assertEqual(error.response["ResponseMetadata"]["HTTPStatusCode"], 403, (name, error.response))
                may[name] = False
            else:
                may[name] = True
        return may

    def test_what_each_bucket_grant_to_another_account_opens(self) -> None:
        """
        A bucket grant to another account opens what its permission names and
        nothing else (403 for the rest): READ lists, READ_ACP reads the ACL,
        WRITE writes objects, WRITE_ACP replaces the ACL, FULL_CONTROL all four.
        """
        expected = {
            "FULL_CONTROL": {"read": True, "read_acp": True, "write": True, "write_acp": True},
            "READ": {"read": True, "read_acp": False, "write": False, "write_acp": False},
            "READ_ACP": {"read": False, "read_acp": True, "write": False, "write_acp": False},
            "WRITE": {"read": False, "read_acp": False, "write": True, "write_acp": False},
            "WRITE_ACP": {"read": False, "read_acp": False, "write": False, "write_acp": True},
        }
        for permission, may in expected.items():
            bucket = self._bucket_granting_bob(permission)
            self.assertEqual(self._bob_may(bucket), may, permission)
            # A grantee's PutBucketAcl leaves the bucket its owner's.
            self.assertEqual(self.alice.get_bucket_acl(Bucket=bucket)["Owner"], {"ID": ALICE, "DisplayName": "alice"})

    def test_a_grant_to_an_unknown_account_is_invalid_argument(self) -> None:
        """PutBucketAcl granting to an id that is no account answers 400 InvalidArgument."""
        bucket = self.new_bucket()
        answer = self.alice.get_bucket_acl(Bucket=bucket)
        self.assertS3Error(400, "InvalidArgument", self.alice.put_bucket_acl, Bucket=bucket,
                           AccessControlPolicy=_policy_with(answer, _grant("_foo", "FULL_CONTROL")))
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=bucket)), [owner_grant()])

    def test_an_acl_without_grants_reads_back_empty_and_the_owner_keeps_its_acl(self) -> None:
        """
        A bucket ACL with no grant at all reads back with no grant; its owner
        may still read its objects, read the ACL and replace it.
        """
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        answer = self.alice.get_bucket_acl(Bucket=bucket)
        self.alice.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": answer["Owner"], "Grants": []})
        self.assertEqual(self.alice.get_bucket_acl(Bucket=bucket)["Grants"], [])
        self.assertEqual(self.alice.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"bar")
        self.alice.put_bucket_acl(Bucket=bucket, ACL="private")
        self.alice.put_bucket_acl(Bucket=bucket, AccessControlPolicy=_policy_with(answer))
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=bucket)), [owner_grant()])

    def test_the_owner_may_not_write_without_a_grant(self) -> None:
        """With no grant in its bucket's ACL, the owner's PutObject answers 403 AccessDenied."""
        bucket = self.new_bucket()
        answer = self.alice.get_bucket_acl(Bucket=bucket)
        self.alice.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": answer["Owner"], "Grants": []})
        self.assertDenied(self.alice.put_object, Bucket=bucket, Key="baz", Body=b"a")

    test_the_owner_may_not_write_without_a_grant.skip = (  # type: ignore[attr-defined]
        "the conformance suite expects the owner's write refused once its bucket ACL grants nothing; S3 lets the "
        "bucket owner's account do anything on its bucket whatever the ACL says, and so does s3balance "
        "(docs/access.md: the owner may do anything)"
    )

    def test_grant_headers_on_put_object_read_back(self) -> None:
        """x-amz-grant-read, -read-acp, -write-acp and -full-control on PutObject each read back as a grant."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar", GrantRead=f"id={BOB}", GrantReadACP=f"id={BOB}",
                              GrantWriteACP=f"id={BOB}", GrantFullControl=f"id={BOB}")
        self.assertEqual(grants(self.alice.get_object_acl(Bucket=bucket, Key="foo")),
                         sorted(owner_grant(p, BOB) for p in ("READ", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")))
        # PutObject has no x-amz-grant-write: refused, as S3 refuses it.
        writer = self.gateway.client("alice", SECRETS["alice"])

        def add_grant_write(params: dict, **_: Any) -> None:
            params["headers"]["x-amz-grant-write"] = f"id={BOB}"

        writer.meta.events.register("before-call.s3.PutObject", add_grant_write)
        self.assertS3Error(400, "InvalidArgument", writer.put_object, Bucket=bucket, Key="w", Body=b"x")

    def test_put_object_acl_takes_every_grant_header(self) -> None:
        """PutObjectAcl's x-amz-grant-* headers, x-amz-grant-write included, each read back as a grant."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        self.alice.put_object_acl(Bucket=bucket, Key="foo", GrantRead=f"id={BOB}", GrantWrite=f"id={BOB}",
                                  GrantReadACP=f"id={BOB}", GrantWriteACP=f"id={BOB}", GrantFullControl=f"id={ALICE}")
        self.assertEqual(grants(self.alice.get_object_acl(Bucket=bucket, Key="foo")),
                         sorted([owner_grant(), *(owner_grant(p, BOB) for p in ("READ", "WRITE", "READ_ACP",
                                                                                 "WRITE_ACP"))]))
        # An object's WRITE opens nothing: bob may not overwrite it.
        self.assertDenied(self.bob.put_object, Bucket=bucket, Key="foo", Body=b"bob's")

    def test_grant_headers_on_create_bucket_read_back_and_apply(self) -> None:
        """Every x-amz-grant-* header on CreateBucket reads back as a grant, and bob may then write and set the ACL."""
        bucket = unique_bucket_name("conf")
        self.alice.create_bucket(Bucket=bucket, GrantRead=f"id={BOB}", GrantWrite=f"id={BOB}",
                                 GrantReadACP=f"id={BOB}", GrantWriteACP=f"id={BOB}", GrantFullControl=f"id={BOB}")
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=bucket)),
                         sorted(owner_grant(p, BOB) for p in ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")))
        self.bob.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        self.bob.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
        self.assertEqual(self.alice.get_bucket_acl(Bucket=bucket)["Owner"]["ID"], ALICE)

    def test_grants_are_kept_across_replacements(self) -> None:
        """A bucket ACL replaced again and again with the same grant reads back the same each time."""
        bucket = self.new_bucket()
        original = self.alice.get_bucket_acl(Bucket=bucket)
        for _ in range(3):
            self.alice.put_bucket_acl(Bucket=bucket, AccessControlPolicy=_policy_with(original, _grant(BOB, "READ")))
            self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=bucket)),
                             sorted([owner_grant(), owner_grant("READ", BOB)]))


class BucketCreationTests(ConformanceCase):
    def test_another_accounts_bucket_name_is_bucket_already_exists(self) -> None:
        """CreateBucket of a name another account owns answers 409 BucketAlreadyExists."""
        bucket = self.new_bucket()
        self.assertS3Error(409, "BucketAlreadyExists", self.bob.create_bucket, Bucket=bucket)

    def test_recreating_an_own_bucket_keeps_its_acl(self) -> None:
        """
        CreateBucket of a name the caller already owns answers 409
        BucketAlreadyOwnedByYou, with or without a canned ACL, and leaves
        the bucket's ACL as it was.
        """
        public = self.new_bucket("public-read")
        self.assertS3Error(409, "BucketAlreadyOwnedByYou", self.alice.create_bucket, Bucket=public)
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=public)),
                         sorted([owner_grant(), group_grant(ALL_USERS, "READ")]))
        private = self.new_bucket()
        self.assertS3Error(409, "BucketAlreadyOwnedByYou", self.alice.create_bucket, Bucket=private, ACL="public-read")
        self.assertEqual(grants(self.alice.get_bucket_acl(Bucket=private)), [owner_grant()])


def _access_case(bucket_acl: str, object_acl: str) -> Any:
    readable = object_acl != "private"
    listable = bucket_acl != "private"
    writable = bucket_acl == "public-read-write"

    def test(self: AccessMatrixTests) -> None:
        bucket = self.new_bucket()
        self.alice.put_bucket_acl(Bucket=bucket, ACL=bucket_acl)
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"foocontent")
        self.alice.put_object_acl(Bucket=bucket, Key="foo", ACL=object_acl)
        self.alice.put_object(Bucket=bucket, Key="bar", Body=b"barcontent")
        callers = (("bob", self.bob), ("anonymous", self.nobody))
        for who, client in callers:
            if readable:
                self.assertEqual(client.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"foocontent", who)
            else:
                self.assertDenied(client.get_object, Bucket=bucket, Key="foo")
            self.assertDenied(client.get_object, Bucket=bucket, Key="bar")
            for lister in (client.list_objects, client.list_objects_v2):
                if listable:
                    self.assertEqual(sorted(o["Key"] for o in lister(Bucket=bucket)["Contents"]),
                                     ["bar", "foo"], who)
                else:
                    self.assertDenied(lister, Bucket=bucket)
        # Writes come last: an overwrite takes the object's ACL away.
        for who, client in callers:
            for key in ("foo", "bar", "new"):
                if writable:
                    client.put_object(Bucket=bucket, Key=key, Body=f"{who}'s".encode())
                else:
                    self.assertDenied(client.put_object, Bucket=bucket, Key=key, Body=b"overwrite")
        if not writable:
            self.assertEqual(self.alice.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"foocontent")

    test.__name__ = f"test_bucket_{bucket_acl}_object_{object_acl}".replace("-", "_")
    test.__doc__ = (
        f"A {bucket_acl} bucket with a {object_acl} object and a private one, seen by another account and by "
        f"an anonymous caller: the {object_acl} object is {'' if readable else 'not '}readable, the private one "
        f"is not, the bucket is {'' if listable else 'not '}listable and {'' if writable else 'not '}writable "
        "(every refusal 403 AccessDenied)."
    )
    return test


class AccessMatrixTests(ConformanceCase):
    """The nine combinations of canned bucket and object ACLs, as another account and anonymous callers see them."""

    for _bucket_acl in ("private", "public-read", "public-read-write"):
        for _object_acl in ("private", "public-read", "public-read-write"):
            _case = _access_case(_bucket_acl, _object_acl)
            locals()[_case.__name__] = _case
    del _bucket_acl, _object_acl, _case


class AnonymousAccessTests(ConformanceCase):
    def test_anonymous_read_of_a_public_object(self) -> None:
        """A public-read object is read anonymously, in a public-read bucket and in a private one."""
        for bucket_acl in ("public-read", "private"):
            bucket = self.new_bucket(bucket_acl)
            self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar", ACL="public-read")
            self.assertEqual(self.nobody.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"bar")
            self.assertEqual(self.alice.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"bar")

    def test_anonymous_read_of_a_private_object_in_a_public_bucket(self) -> None:
        """A private object in a public-read bucket answers anonymous reads 403 AccessDenied; its owner reads it."""
        bucket = self.new_bucket("public-read")
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar", ACL="private")
        self.assertDenied(self.nobody.get_object, Bucket=bucket, Key="foo")
        self.assertEqual(self.alice.get_object(Bucket=bucket, Key="foo")["Body"].read(), b"bar")

    def test_gone_objects_and_buckets_answer_404(self) -> None:
        """
        Once a public object is deleted, its anonymous and signed reads answer
        404 NoSuchKey (the bucket is public-read); once its bucket is deleted,
        reads and deletes answer 404 NoSuchBucket.
        """
        bucket = self.new_bucket("public-read")
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar", ACL="public-read")
        self.alice.delete_object(Bucket=bucket, Key="foo")
        self.assertS3Error(404, "NoSuchKey", self.nobody.get_object, Bucket=bucket, Key="foo")
        self.assertS3Error(404, "NoSuchKey", self.alice.get_object, Bucket=bucket, Key="foo")
        self.alice.delete_bucket(Bucket=bucket)
        self.assertS3Error(404, "NoSuchBucket", self.nobody.get_object, Bucket=bucket, Key="foo")
        self.assertS3Error(404, "NoSuchBucket", self.nobody.delete_object, Bucket=bucket, Key="foo")
        self.assertS3Error(404, "NoSuchBucket", self.alice.get_object, Bucket=bucket, Key="foo")

    def test_anonymous_writes(self) -> None:
        """An anonymous PutObject is refused (403 AccessDenied) in a private bucket and accepted in a public-read-write one."""
        private = self.new_bucket()
        self.alice.put_object(Bucket=private, Key="foo", Body=b"")
        self.assertS3Error(403, "AccessDenied", self.nobody.put_object, Bucket=private, Key="foo", Body=b"foo")
        writable = self.new_bucket("public-read-write")
        self.alice.put_object(Bucket=writable, Key="foo", Body=b"")
        answer = self.nobody.put_object(Bucket=writable, Key="foo", Body=b"foo")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.alice.get_object(Bucket=writable, Key="foo")["Body"].read(), b"foo")

    def test_anonymous_listings(self) -> None:
        """ListObjects (v1 and v2) of a public-read bucket answer anonymous callers; of a private one, 403."""
        public = self.new_bucket("public-read")
        self.alice.put_object(Bucket=public, Key="foo", Body=b"bar")
        self.assertEqual([o["Key"] for o in self.nobody.list_objects(Bucket=public)["Contents"]], ["foo"])
        self.assertEqual([o["Key"] for o in self.nobody.list_objects_v2(Bucket=public)["Contents"]], ["foo"])
        private = self.new_bucket()
        self.assertS3Error(403, "AccessDenied", self.nobody.list_objects, Bucket=private)
        self.assertS3Error(403, "AccessDenied", self.nobody.list_objects_v2, Bucket=private)

    def test_anonymous_list_buckets_lists_nothing(self) -> None:
        """An anonymous ListBuckets answers an empty list."""
        self.assertEqual(self.nobody.list_buckets()["Buckets"], [])

    test_anonymous_list_buckets_lists_nothing.skip = (  # type: ignore[attr-defined]
        "the conformance suite expects an anonymous ListBuckets to answer 200 with no bucket; S3 never lists "
        "buckets to an anonymous caller, and s3balance answers 403 AccessDenied (docs/access.md)"
    )

    def test_anonymous_list_buckets_is_refused(self) -> None:
        """An anonymous ListBuckets answers 403 AccessDenied."""
        self.assertS3Error(403, "AccessDenied", self.nobody.list_buckets)

    def test_a_missing_bucket_is_404_to_its_would_be_owner(self) -> None:
        """Listing or heading a bucket that does not exist answers 404 (NoSuchBucket for the listing)."""
        name = unique_bucket_name("conf-missing")
        self.assertS3Error(404, "NoSuchBucket", self.alice.list_objects, Bucket=name)
        self.assertS3Error(404, "NoSuchBucket", self.alice.list_objects_v2, Bucket=name)
        self.assertS3Error(404, None, self.alice.head_bucket, Bucket=name)

    def test_bad_credentials_on_list_buckets(self) -> None:
        """ListBuckets with an unknown key answers 403 InvalidAccessKeyId; with a wrong secret, 403 SignatureDoesNotMatch."""
        unknown = self.gateway.client("no-such-key", "whatever-secret")
        self.assertS3Error(403, "InvalidAccessKeyId", unknown.list_buckets)
        wrong = self.gateway.client("alice", "not-alices-secret")
        self.assertS3Error(403, "SignatureDoesNotMatch", wrong.list_buckets)

    def test_listings_show_each_objects_owner(self) -> None:
        """ListObjects, and ListObjectsV2 with FetchOwner, show each object's owner (id and display name)."""
        bucket = self.new_bucket()
        for key in ("foo", "bar", "baz"):
            self.alice.put_object(Bucket=bucket, Key=key, Body=key.encode())
        listings = (self.alice.list_objects(Bucket=bucket), self.alice.list_objects_v2(Bucket=bucket, FetchOwner=True))
        for listing in listings:
            self.assertEqual([(o["Key"], o["Owner"]) for o in listing["Contents"]],
                             [(key, {"ID": ALICE, "DisplayName": "alice"}) for key in ("bar", "baz", "foo")])

    def test_the_owner_overrides_response_headers_of_a_private_object(self) -> None:
        """The owner's GetObject of a private object with response-* parameters answers the headers they ask for."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"")
        answer = self.alice.get_object(
            Bucket=bucket, Key="foo", ResponseCacheControl="no-cache", ResponseContentDisposition="bla",
            ResponseContentEncoding="aaa", ResponseContentLanguage="esperanto", ResponseContentType="foo/bar",
            ResponseExpires="123",
        )
        headers = answer["ResponseMetadata"]["HTTPHeaders"]
        self.assertEqual(
            (headers["content-type"], headers["content-disposition"], headers["content-language"],
             headers["content-encoding"], headers["cache-control"]),
            ("foo/bar", "bla", "esperanto", "aaa", "no-cache"),
        )


class CopyTests(ConformanceCase):
    def test_copy_from_another_accounts_private_bucket_is_denied(self) -> None:
        """CopyObject from another account's private object answers 403 AccessDenied."""
        source = self.new_bucket()
        self.alice.put_object(Bucket=source, Key="foo123bar", Body=b"foo")
        target = self.new_bucket(client=self.bob)
        self.assertDenied(self.bob.copy_object, Bucket=target, Key="bar321foo",
                          CopySource={"Bucket": source, "Key": "foo123bar"})

    def test_copy_within_a_bucket_by_a_full_control_grantee(self) -> None:
        """An account granted FULL_CONTROL on a bucket and on its object may read and copy that object there."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo123bar", Body=b"foo")
        answer = self.alice.get_object_acl(Bucket=bucket, Key="foo123bar")
        self.alice.put_object_acl(Bucket=bucket, Key="foo123bar",
                                  AccessControlPolicy=_policy_with(answer, _grant(BOB, "FULL_CONTROL")))
        answer = self.alice.get_bucket_acl(Bucket=bucket)
        self.alice.put_bucket_acl(Bucket=bucket, AccessControlPolicy=_policy_with(answer, _grant(BOB, "FULL_CONTROL")))
        self.assertEqual(self.bob.get_object(Bucket=bucket, Key="foo123bar")["Body"].read(), b"foo")
        self.bob.copy_object(Bucket=bucket, Key="bar321foo", CopySource={"Bucket": bucket, "Key": "foo123bar"})
        self.assertEqual(self.alice.get_object(Bucket=bucket, Key="bar321foo")["Body"].read(), b"foo")

    def test_copy_with_a_canned_acl(self) -> None:
        """A copy given public-read (with metadata copied or replaced) is read anonymously, with the metadata asked for."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo123bar", Body=b"foo", Metadata={"abc": "def"})
        self.alice.copy_object(Bucket=bucket, Key="bar321foo", CopySource={"Bucket": bucket, "Key": "foo123bar"},
                               ACL="public-read")
        self.assertEqual(self.nobody.get_object(Bucket=bucket, Key="bar321foo")["Body"].read(), b"foo")
        self.alice.copy_object(Bucket=bucket, Key="foo123bar", CopySource={"Bucket": bucket, "Key": "bar321foo"},
                               ACL="public-read", MetadataDirective="REPLACE", Metadata={"x": "y"})
        got = self.nobody.get_object(Bucket=bucket, Key="foo123bar")
        self.assertEqual((got["Body"].read(), got["Metadata"]), (b"foo", {"x": "y"}))
