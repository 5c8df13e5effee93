"""
Conformance of bucket policies and Block Public Access through a running
daemon: the behaviours a standard S3 conformance suite checks (a policy
opening or closing a listing over the ACL, conditions on the Referer, on
existing and requested object tags, on the copy source, the metadata
directive, the canned ACL and grant headers, policy status, and the four
Block Public Access flags), each as S3 answers it, with boto3 for the
accounts alice (the buckets' owner) and bob.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conformance import ALICE, BOB, ConformanceCase, arn, statement


def _with_headers(client: Any, operation: str, headers: dict[str, str]) -> None:
    """Make C{client} send C{headers} (signed) on every later call of C{operation}."""

    def add(params: dict, **_: Any) -> None:
        params["headers"].update(headers)

    client.meta.events.register(f"before-call.s3.{operation}", add)


def _tag_set(**tags: str) -> dict:
    return {"TagSet": [{"Key": key, "Value": value} for key, value in tags.items()]}


class PolicyTests(ConformanceCase):
    def test_a_policy_opens_a_listing_to_another_account(self) -> None:
        """An Allow of s3:ListBucket to everyone lets another account list the bucket (v1 and v2)."""
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="asdf", Body=b"asdf")
        self.assertDenied(self.bob.list_objects, Bucket=bucket)
        self.put_policy(bucket, statement("s3:ListBucket", [arn(bucket), arn(bucket, "*")]))
        self.assertEqual(len(self.bob.list_objects(Bucket=bucket)["Contents"]), 1)
        self.assertEqual(len(self.bob.list_objects_v2(Bucket=bucket)["Contents"]), 1)

    def test_a_deny_wins_over_the_acl(self) -> None:
        """
        A Deny of s3:ListBucket to everyone refuses another account's listing
        (403 AccessDenied, v1 and v2) that the bucket's authenticated-read
        ACL would open; once the policy is deleted the ACL opens it again.
        """
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="asdf", Body=b"asdf")
        self.alice.put_bucket_acl(Bucket=bucket, ACL="authenticated-read")
        self.put_policy(bucket, statement("s3:ListBucket", [arn(bucket), arn(bucket, "*")], effect="Deny"))
        self.assertS3Error(403, "AccessDenied", self.bob.list_objects, Bucket=bucket)
        self.assertS3Error(403, "AccessDenied", self.bob.list_objects_v2, Bucket=bucket)
        self.alice.delete_bucket_policy(Bucket=bucket)
        self.assertEqual(len(self.bob.list_objects_v2(Bucket=bucket)["Contents"]), 1)

    def test_a_policy_read_back_is_accepted_on_another_bucket(self) -> None:
        """A policy whose resources are every bucket (arn:aws:s3:::*) is accepted, read back and put on a second bucket."""
        first, second = self.new_bucket(), self.new_bucket()
        self.alice.put_object(Bucket=first, Key="asdf", Body=b"asdf")
        self.alice.put_object(Bucket=second, Key="abcd", Body=b"abcd")
        self.put_policy(first, statement("s3:ListBucket", ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]))
        document = self.alice.get_bucket_policy(Bucket=first)["Policy"]
        self.alice.put_bucket_policy(Bucket=second, Policy=document)
        self.assertEqual(len(self.bob.list_objects(Bucket=first)["Contents"]), 1)
        self.assertEqual(len(self.bob.list_objects_v2(Bucket=second)["Contents"]), 1)

    test_a_policy_read_back_is_accepted_on_another_bucket.skip = (  # type: ignore[attr-defined]
        "s3balance refuses a Resource whose bucket part is not the policy's own bucket, wildcards included "
        "(MalformedPolicy 'Policy has invalid resource'); the conformance suite expects arn:aws:s3:::* accepted"
    )

    def test_a_string_like_if_exists_condition_on_the_referer(self) -> None:
        """
        An Allow of s3:GetObject under StringLikeIfExists on aws:Referer
        opens the object to requests whose Referer matches and to requests
        without one, and not to others (403).
        """
        bucket = self.new_bucket()
        self.alice.put_object(Bucket=bucket, Key="foo", Body=b"bar")
        self.put_policy(bucket, statement("s3:GetObject", arn(bucket, "*"), principal="*",
                                          condition={"StringLikeIfExists": {"aws:Referer": "http://www.example.com/*"}}))
        url = self.url(bucket, "foo")
        for referer in ("http://www.example.com/", "http://www.example.com/index.html"):
            self.assertEqual(self.assertHTTP(200, None, "GET", url, headers={"Referer": referer}), b"bar")
        self.assertEqual(self.assertHTTP(200, None, "GET", url), b"bar")
        self.assertHTTP(403, "AccessDenied", "GET", url, headers={"Referer": "http://example.com"})
        bob = self.gateway.client("bob", "bob-secret-0123456789")
        _with_headers(bob, "GetObject", {"Referer": "http://example.com"})
        self.assertDenied(bob.get_object, Bucket=bucket, Key="foo")

    def _tagged_objects(self) -> str:
        bucket = self.new_bucket()
        for key, tags in (("publictag", {"security": "public", "foo": "bar"}),
                          ("privatetag", {"security": "private"}),
                          ("invalidtag", {"security1": "public"})):
            self.alice.put_object(Bucket=bucket, Key=key, Body=key.encode())
            self.alice.put_object_tagging(Bucket=bucket, Key=key, Tagging=_tag_set(**tags))
        return bucket

    PUBLIC_TAG = {"StringEquals": {"s3:ExistingObjectTag/security": "public"}}

    def test_existing_object_tag_condition_on_get_object(self) -> None:
        """An Allow of s3:GetObject on objects tagged security=public opens those and no others (403)."""
        bucket = self._tagged_objects()
        self.put_policy(bucket, statement("s3:GetObject", arn(bucket, "*"), condition=self.PUBLIC_TAG))
        self.assertEqual(self.bob.get_object(Bucket=bucket, Key="publictag")["Body"].read(), b"publictag")
        self.assertDenied(self.bob.get_object, Bucket=bucket, Key="privatetag")
        self.assertDenied(self.bob.get_object, Bucket=bucket, Key="invalidtag")

    def test_existing_object_tag_condition_on_get_object_tagging(self) -> None:
        """An Allow of s3:GetObjectTagging on tagged objects opens their tags, not their content, nor other objects' tags."""
        bucket = self._tagged_objects()
        self.put_policy(bucket, statement("s3:GetObjectTagging", arn(bucket, "*"), condition=self.PUBLIC_TAG))
        got = self.bob.get_object_tagging(Bucket=bucket, Key="publictag")["TagSet"]
        self.assertEqual(sorted(got, key=str), sorted(_tag_set(security="public", foo="bar")["TagSet"], key=str))
        self.assertDenied(self.bob.get_object, Bucket=bucket, Key="publictag")
        self.assertDenied(self.bob.get_object_tagging, Bucket=bucket, Key="privatetag")
        self.assertDenied(self.bob.get_object_tagging, Bucket=bucket, Key="invalidtag")

    def test_existing_object_tag_condition_on_put_object_tagging(self) -> None:
        """
        An Allow of s3:PutObjectTagging on objects tagged security=public lets
        another account retag those only, and no longer once it retagged one
        security=private.
        """
        bucket = self._tagged_objects()
        self.put_policy(bucket, statement("s3:PutObjectTagging", arn(bucket, "*"), condition=self.PUBLIC_TAG))
        public = _tag_set(security="public", foo="bar")
        self.bob.put_object_tagging(Bucket=bucket, Key="publictag", Tagging=public)
        self.assertDenied(self.bob.put_object_tagging, Bucket=bucket, Key="privatetag", Tagging=public)
        self.bob.put_object_tagging(Bucket=bucket, Key="publictag", Tagging=_tag_set(security="private"))
        self.assertDenied(self.bob.put_object_tagging, Bucket=bucket, Key="publictag", Tagging=public)
        self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="publictag")["TagSet"],
                         _tag_set(security="private")["TagSet"])

    def test_existing_object_tag_condition_on_get_object_acl(self) -> None:
        """An Allow of s3:GetObjectAcl on tagged objects opens their ACL only."""
        bucket = self._tagged_objects()
        self.put_policy(bucket, statement("s3:GetObjectAcl", arn(bucket, "*"), condition=self.PUBLIC_TAG))
        self.assertEqual(self.bob.get_object_acl(Bucket=bucket, Key="publictag")["Owner"]["ID"], ALICE)
        self.assertDenied(self.bob.get_object, Bucket=bucket, Key="publictag")
        self.assertDenied(self.bob.get_object_acl, Bucket=bucket, Key="privatetag")
        self.assertDenied(self.bob.get_object_tagging, Bucket=bucket, Key="invalidtag")

    def test_object_tagging_operations_opened_by_a_policy(self) -> None:
        """Allows of s3:GetObjectTagging, s3:PutObjectTagging and s3:DeleteObjectTagging open each to another account."""
        for action in ("s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObjectTagging"):
            bucket = self.new_bucket()
            self.alice.put_object(Bucket=bucket, Key="testputtagsacl", Body=b"x")
            self.put_policy(bucket, statement(action, arn(bucket, "testputtagsacl")))
            tags = _tag_set(**{str(i): str(i) for i in range(10)})
            if action == "s3:PutObjectTagging":
                self.bob.put_object_tagging(Bucket=bucket, Key="testputtagsacl", Tagging=tags)
            else:
                self.alice.put_object_tagging(Bucket=bucket, Key="testputtagsacl", Tagging=tags)
            if action == "s3:GetObjectTagging":
                got = self.bob.get_object_tagging(Bucket=bucket, Key="testputtagsacl")["TagSet"]
                self.assertEqual(got, tags["TagSet"])
            elif action == "s3:DeleteObjectTagging":
                answer = self.bob.delete_object_tagging(Bucket=bucket, Key="testputtagsacl")
                self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
                self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="testputtagsacl")["TagSet"], [])
            else:
                got = self.alice.get_object_tagging(Bucket=bucket, Key="testputtagsacl")["TagSet"]
                self.assertEqual(got, tags["TagSet"])

    def test_copy_source_condition(self) -> None:
        """
        An Allow of s3:PutObject under StringLike on s3:x-amz-copy-source lets
        another account copy what matches (and that it may read) and refuses
        other sources (403).
        """
        source = self.new_bucket()
        for key in ("public/foo", "public/bar", "private/foo"):
            self.alice.put_object(Bucket=source, Key=key, Body=key.encode())
        self.put_policy(source, statement("s3:GetObject", arn(source, "*")))
        target = self.new_bucket()
        self.put_policy(target, statement("s3:PutObject", arn(target, "*"),
                                          condition={"StringLike": {"s3:x-amz-copy-source": f"{source}/public/*"}}))
        self.bob.copy_object(Bucket=target, Key="new_foo", CopySource={"Bucket": source, "Key": "public/foo"})
        self.bob.copy_object(Bucket=target, Key="new_foo2", CopySource={"Bucket": source, "Key": "public/bar"})
        self.assertEqual(self.alice.get_object(Bucket=target, Key="new_foo")["Body"].read(), b"public/foo")
        self.assertEqual(self.alice.get_object(Bucket=target, Key="new_foo2")["Body"].read(), b"public/bar")
        self.assertDenied(self.bob.copy_object, Bucket=target, Key="new_foo3",
                          CopySource={"Bucket": source, "Key": "private/foo"})

    def test_metadata_directive_condition(self) -> None:
        """An Allow of s3:PutObject under s3:x-amz-metadata-directive = COPY lets a copy through only with that header."""
        source = self.new_bucket()
        for key in ("public/foo", "public/bar"):
            self.alice.put_object(Bucket=source, Key=key, Body=key.encode())
        self.put_policy(source, statement("s3:GetObject", arn(source, "*")))
        target = self.new_bucket()
        self.put_policy(target, statement("s3:PutObject", arn(target, "*"),
                                          condition={"StringEquals": {"s3:x-amz-metadata-directive": "COPY"}}))
        self.bob.copy_object(Bucket=target, Key="new_foo", CopySource={"Bucket": source, "Key": "public/foo"},
                             MetadataDirective="COPY")
        self.assertEqual(self.alice.get_object(Bucket=target, Key="new_foo")["Body"].read(), b"public/foo")
        self.assertDenied(self.bob.copy_object, Bucket=target, Key="new_foo2",
                          CopySource={"Bucket": source, "Key": "public/bar"}, Metadata={"foo": "bar"})

    def test_a_deny_on_public_canned_acls(self) -> None:
        """
        An Allow of s3:PutObject with a Deny of it under StringLike
        s3:x-amz-acl = public*: another account's plain upload passes, one
        asking for public-read is refused (403).
        """
        bucket = self.new_bucket()
        self.put_policy(bucket, statement("s3:PutObject", arn(bucket, "*")),
                        statement("s3:PutObject", arn(bucket, "*"), effect="Deny",
                                  condition={"StringLike": {"s3:x-amz-acl": "public*"}}))
        answer = self.bob.put_object(Bucket=bucket, Key="private-key", Body=b"private-key")
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertDenied(self.bob.put_object, Bucket=bucket, Key="public-key", Body=b"public-key", ACL="public-read")

    def test_a_grant_header_condition(self) -> None:
        """
        An Allow of s3:PutObject under s3:x-amz-grant-full-control = the owner's
        id lets another account upload when it grants the owner full control;
        the owner then reads the object's ACL.
        """
        bucket = self.new_bucket()
        self.put_policy(bucket, statement("s3:PutObject", arn(bucket, "*"),
                                          condition={"StringEquals": {"s3:x-amz-grant-full-control": f"id={ALICE}"}}))
        self.assertDenied(self.bob.put_object, Bucket=bucket, Key="key1", Body=b"key1")
        self.bob.put_object(Bucket=bucket, Key="key1", Body=b"key1", GrantFullControl=f"id={ALICE}")
        answer = self.alice.get_object_acl(Bucket=bucket, Key="key1")
        self.assertEqual(answer["Grants"][0]["Grantee"]["ID"], ALICE)

    def test_a_request_object_tag_condition(self) -> None:
        """An Allow of s3:PutObject under s3:RequestObjectTag/security = public refuses untagged uploads (403) and takes tagged ones."""
        bucket = self.new_bucket()
        self.put_policy(bucket, statement("s3:PutObject", arn(bucket, "*"),
                                          condition={"StringEquals": {"s3:RequestObjectTag/security": "public"}}))
        self.assertDenied(self.bob.put_object, Bucket=bucket, Key="testobj", Body=b"testobj")
        self.bob.put_object(Bucket=bucket, Key="testobj", Body=b"testobj", Tagging="security=public")
        self.assertEqual(self.alice.get_object_tagging(Bucket=bucket, Key="testobj")["TagSet"],
                         _tag_set(security="public")["TagSet"])

    def test_multipart_upload_on_a_bucket_with_a_policy(self) -> None:
        """A multipart upload completes (200) on a bucket whose policy allows every action to everyone."""
        bucket = self.new_bucket()
        self.put_policy(bucket, statement("*", [arn(bucket), arn(bucket, "*")], principal="*"))
        upload = self.alice.create_multipart_upload(Bucket=bucket, Key="foo")["UploadId"]
        parts = []
        for number, body in ((1, b"a" * (5 * 1024 * 1024)), (2, b"b" * 1024)):
            etag = self.alice.upload_part(Bucket=bucket, Key="foo", UploadId=upload, PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        answer = self.alice.complete_multipart_upload(Bucket=bucket, Key="foo", UploadId=upload,
                                                      MultipartUpload={"Parts": parts})
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.alice.head_object(Bucket=bucket, Key="foo")["ContentLength"], 5 * 1024 * 1024 + 1024)

    def test_the_owner_keeps_its_policy_whatever_the_policy_denies(self) -> None:
        """A policy denying everyone Get/Put/DeleteBucketPolicy still lets the owner read, replace and delete it."""
        bucket = self.new_bucket()
        deny = statement(["s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"], arn(bucket),
                         effect="Deny", principal="*")
        self.put_policy(bucket, deny)
        self.assertEqual(json.loads(self.alice.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"], [deny])
        self.put_policy(bucket, deny)
        self.alice.delete_bucket_policy(Bucket=bucket)
        self.assertS3Error(404, "NoSuchBucketPolicy", self.alice.get_bucket_policy, Bucket=bucket)

    def test_not_principal_with_allow_is_malformed(self) -> None:
        """
        An Allow with NotPrincipal (everyone but one account) answers 400
        MalformedPolicy, as AWS supports NotPrincipal with Deny only; with
        Deny it is accepted and excepts the account it names.
        """
        bucket = self.new_bucket("public-read")
        everyone_but_bob = {"Effect": "Allow", "NotPrincipal": {"AWS": f"arn:aws:iam::{BOB}:root"},
                            "Action": "s3:ListBucket", "Resource": [arn(bucket), arn(bucket, "*")]}
        self.assertS3Error(400, "MalformedPolicy", self.put_policy, bucket, everyone_but_bob)
        self.put_policy(bucket, dict(everyone_but_bob, Effect="Deny"))
        self.bob.list_objects(Bucket=bucket)
        self.assertDenied(self.nobody.list_objects, Bucket=bucket)


class PolicyStatusTests(ConformanceCase):
    def test_a_policy_to_everyone_is_public(self) -> None:
        """GetBucketPolicyStatus answers IsPublic true for an Allow of s3:ListBucket to {"AWS": "*"}."""
        bucket = self.new_bucket()
        self.put_policy(bucket, statement("s3:ListBucket", [arn(bucket), arn(bucket, "*")]))
        self.assertIs(self.alice.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"], True)

    def test_a_policy_fixed_to_one_address_is_not_public(self) -> None:
        """GetBucketPolicyStatus answers IsPublic false for an Allow to everyone under aws:SourceIp 10.0.0.0/32."""
        bucket = self.new_bucket()
        self.put_policy(bucket, statement("s3:ListBucket", [arn(bucket), arn(bucket, "*")],
                                          condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/32"}}))
        self.assertIs(self.alice.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"], False)

    def test_without_a_policy_the_status_is_no_such_bucket_policy(self) -> None:
        """GetBucketPolicyStatus of a bucket without a policy answers 404 NoSuchBucketPolicy, whatever its ACL."""
        bucket = self.new_bucket()
        self.assertS3Error(404, "NoSuchBucketPolicy", self.alice.get_bucket_policy_status, Bucket=bucket)
        self.alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
        self.assertS3Error(404, "NoSuchBucketPolicy", self.alice.get_bucket_policy_status, Bucket=bucket)

    def test_a_public_acl_makes_the_status_public(self) -> None:
        """GetBucketPolicyStatus answers IsPublic false for a new bucket and true once its ACL is public-read or authenticated-read."""
        bucket = self.new_bucket()
        self.assertIs(self.alice.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"], False)
        self.alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
        self.assertIs(self.alice.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"], True)

    test_a_public_acl_makes_the_status_public.skip = (  # type: ignore[attr-defined]
        "the conformance suite expects GetBucketPolicyStatus to answer IsPublic false without a policy and true for "
        "a public ACL; S3 judges the policy only and answers 404 NoSuchBucketPolicy without one, as s3balance does"
    )


class PublicAccessBlockTests(ConformanceCase):
    ALL_OFF = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
               "RestrictPublicBuckets": False}

    def block(self, bucket: str, **flags: bool) -> None:
        self.alice.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={**self.ALL_OFF, **flags})

    def test_a_new_bucket_has_no_configuration(self) -> None:
        """GetPublicAccessBlock of a new bucket answers 404 NoSuchPublicAccessBlockConfiguration."""
        self.assertS3Error(404, "NoSuchPublicAccessBlockConfiguration", self.alice.get_public_access_block,
                           Bucket=self.new_bucket())

    def test_a_new_bucket_answers_all_flags_off(self) -> None:
        """GetPublicAccessBlock of a new bucket answers the four flags false."""
        answer = self.alice.get_public_access_block(Bucket=self.new_bucket())
        self.assertEqual(answer["PublicAccessBlockConfiguration"], self.ALL_OFF)

    test_a_new_bucket_answers_all_flags_off.skip = (  # type: ignore[attr-defined]
        "the conformance suite expects four false flags for a bucket never configured; S3 answers 404 "
        "NoSuchPublicAccessBlockConfiguration, as s3balance does"
    )

    def test_the_configuration_reads_back(self) -> None:
        """PutPublicAccessBlock's flags read back from GetPublicAccessBlock as put."""
        bucket = self.new_bucket()
        flags = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                 "RestrictPublicBuckets": False}
        self.block(bucket, **flags)
        self.assertEqual(self.alice.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"], flags)

    def test_block_public_acls_refuses_public_bucket_acls(self) -> None:
        """With BlockPublicAcls, PutBucketAcl public-read, public-read-write and authenticated-read answer 403."""
        bucket = self.new_bucket()
        self.block(bucket, BlockPublicAcls=True, BlockPublicPolicy=True)
        for canned in ("public-read", "public-read-write", "authenticated-read"):
            self.assertDenied(self.alice.put_bucket_acl, Bucket=bucket, ACL=canned)
        self.assertEqual(len(self.alice.get_bucket_acl(Bucket=bucket)["Grants"]), 1)

    def test_block_public_acls_refuses_public_object_acls(self) -> None:
        """With BlockPublicAcls, PutObject with public-read or authenticated-read answers 403 and writes nothing."""
        bucket = self.new_bucket()
        self.block(bucket, BlockPublicAcls=True)
        for key, canned in (("foo1", "public-read"), ("foo2", "public-read-write"), ("foo3", "authenticated-read")):
            self.assertDenied(self.alice.put_object, Bucket=bucket, Key=key, Body=b"", ACL=canned)
        self.assertNotIn("Contents", self.alice.list_objects_v2(Bucket=bucket))

    def test_block_public_policy_refuses_a_public_policy(self) -> None:
        """With BlockPublicPolicy, PutBucketPolicy of an Allow to everyone answers 403; one to an account is accepted."""
        bucket = self.new_bucket()
        self.block(bucket, BlockPublicPolicy=True)
        self.assertDenied(self.put_policy, bucket, statement("s3:GetObject", arn(bucket, "*")))
        self.put_policy(bucket, statement("s3:GetObject", arn(bucket, "*"), principal={"AWS": f"arn:aws:iam::{BOB}:root"}))

    def test_ignore_public_acls_closes_a_public_bucket(self) -> None:
        """
        A public-read bucket and object are open to another account until
        IgnorePublicAcls is set; then its listing and reads answer 403, even
        with the public ACL put again.
        """
        bucket = self.new_bucket()
        self.alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
        self.bob.list_objects(Bucket=bucket)
        self.alice.put_object(Bucket=bucket, Key="key1", Body=b"abcde", ACL="public-read")
        self.assertEqual(self.bob.get_object(Bucket=bucket, Key="key1")["Body"].read(), b"abcde")
        self.block(bucket, IgnorePublicAcls=True)
        self.alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
        self.assertDenied(self.bob.list_objects, Bucket=bucket)
        self.assertDenied(self.bob.get_object, Bucket=bucket, Key="key1")
        self.assertDenied(self.nobody.get_object, Bucket=bucket, Key="key1")
