"""
Accounts and bucket ownership through a running daemon, with boto3: two
accounts (alice, bob), an admin credential and the Go pair of the implicit
default account on one daemon.

 - each account lists only its own buckets, with its Owner; an admin lists all;
 - CreateBucket of a taken name: BucketAlreadyOwnedByYou for its owner,
   BucketAlreadyExists for anyone else;
 - nothing of one account's buckets (objects, listings, sub-resources,
   multipart uploads, copies, deletion) is open to the other: AccessDenied,
   and nothing is changed;
 - Owner elements (ListObjects v1 and v2 with fetch-owner, ListObjectVersions,
   GetBucketAcl/GetObjectAcl, ListMultipartUploads, ListParts) carry the
   bucket owner's ID and DisplayName;
 - the Go pair keeps working on the configured bucket as before accounts;
 - the admin API reports accounts and owners and hands a bucket to another
   account; a reload adds an account.
"""

from __future__ import annotations

import argparse
import io
import json

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from s3balance.ops import accounts_cli
from tests.daemon import poll
from tests.gateways import error_code, http, lazy_gateway
from tests.harness import unique_bucket_name

ALICE, BOB, ROOT = "111111111111", "222222222222", "333333333333"
DEFAULT = "000000000000"
API_TOKEN = "accounts-admin-token"
SECRETS = {"alice": "alice-secret-0123456789", "bob": "bob-secret-0123456789", "root": "root-secret-0123456789"}

accounts_gateway = lazy_gateway(
    "accounts",
    ["vb-default"],
    s3api={
        "accounts": [
            {"id": ALICE, "display_name": "alice"},
            {"id": BOB, "display_name": "bob"},
            {"id": ROOT, "display_name": "operators"},
        ],
        "credentials": [
            {"access_key": "alice", "secret_key": SECRETS["alice"], "account": ALICE},
            {"access_key": "bob", "secret_key": SECRETS["bob"], "account": BOB},
            {"access_key": "root", "secret_key": SECRETS["root"], "account": ROOT, "admin": True},
        ],
    },
    api={"enabled": True, "token": API_TOKEN},
)


class AccountsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = accounts_gateway()
        self.alice = self.gateway.client("alice", SECRETS["alice"])
        self.bob = self.gateway.client("bob", SECRETS["bob"])
        self.root = self.gateway.client("root", SECRETS["root"])
        self.go_pair = self.gateway.client()

    def new_bucket(self, client, prefix: str) -> str:
        name = unique_bucket_name(prefix)
        client.create_bucket(Bucket=name)
        return name

    def assertError(self, code: str, call, *args, **kwargs) -> None:
        with self.assertRaises(ClientError) as raised:
            call(*args, **kwargs)
        if raised.exception.operation_name in ("HeadObject", "HeadBucket"):
            status = {"AccessDenied": 403, "NoSuchBucket": 404}[code]
            self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], status)
        else:
            self.assertEqual(error_code(raised.exception), code)

    def admin_api(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        status, _, answer = http(
            method, f"{self.gateway.endpoint}/admin/{path}", data, {"Authorization": f"Bearer {API_TOKEN}"}
        )
        return status, json.loads(answer)

    # -- ListBuckets and CreateBucket -----------------------------------------

    def test_each_account_lists_only_its_own_buckets(self) -> None:
        mine = self.new_bucket(self.alice, "alice")
        theirs = self.new_bucket(self.bob, "bob")
        alice_sees = [b["Name"] for b in self.alice.list_buckets()["Buckets"]]
        bob_sees = [b["Name"] for b in self.bob.list_buckets()["Buckets"]]
        self.assertIn(mine, alice_sees)
        self.assertNotIn(theirs, alice_sees)
        self.assertIn(theirs, bob_sees)
        self.assertNotIn(mine, bob_sees)
        # The configured bucket is the default owner's (the implicit account's).
        self.assertNotIn("vb-default", alice_sees + bob_sees)
        go_sees = [b["Name"] for b in self.go_pair.list_buckets()["Buckets"]]
        self.assertIn("vb-default", go_sees)
        self.assertFalse({mine, theirs} & set(go_sees))
        self.assertTrue({mine, theirs, "vb-default"} <= {b["Name"] for b in self.root.list_buckets()["Buckets"]})

    def test_list_buckets_owner_is_the_callers_account(self) -> None:
        self.assertEqual(self.alice.list_buckets()["Owner"], {"ID": ALICE, "DisplayName": "alice"})
        self.assertEqual(self.bob.list_buckets()["Owner"], {"ID": BOB, "DisplayName": "bob"})
        self.assertEqual(self.go_pair.list_buckets()["Owner"], {"ID": DEFAULT, "DisplayName": "s3balance"})

    def test_a_taken_name_already_exists_for_others_and_is_owned_by_its_owner(self) -> None:
        name = self.new_bucket(self.alice, "taken")
        self.assertError("BucketAlreadyExists", self.bob.create_bucket, Bucket=name)
        self.assertError("BucketAlreadyExists", self.root.create_bucket, Bucket=name)
        self.assertError("BucketAlreadyOwnedByYou", self.alice.create_bucket, Bucket=name)
        self.assertError("BucketAlreadyExists", self.alice.create_bucket, Bucket="vb-default")
        self.assertError("BucketAlreadyOwnedByYou", self.go_pair.create_bucket, Bucket="vb-default")
        self.assertNotIn(name, [b["Name"] for b in self.bob.list_buckets()["Buckets"]])

    # -- another account's bucket ------------------------------------------------

    def test_another_accounts_bucket_is_closed(self) -> None:
        bucket = self.new_bucket(self.alice, "closed")
        own = self.new_bucket(self.bob, "own")
        self.alice.put_object(Bucket=bucket, Key="k", Body=b"alice's")
        self.alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
        bob = self.bob
        self.assertError("AccessDenied", bob.get_object, Bucket=bucket, Key="k")
        self.assertError("AccessDenied", bob.head_object, Bucket=bucket, Key="k")
        self.assertError("AccessDenied", bob.get_object, Bucket=bucket, Key="missing")
        self.assertError("AccessDenied", bob.put_object, Bucket=bucket, Key="k", Body=b"bob's")
        self.assertError("AccessDenied", bob.put_object, Bucket=bucket, Key="new", Body=b"bob's")
        self.assertError("AccessDenied", bob.delete_object, Bucket=bucket, Key="k")
        self.assertError("AccessDenied", bob.delete_objects, Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
        self.assertError("AccessDenied", bob.list_objects_v2, Bucket=bucket)
        self.assertError("AccessDenied", bob.list_objects, Bucket=bucket)
        self.assertError("AccessDenied", bob.list_object_versions, Bucket=bucket)
        self.assertError("AccessDenied", bob.head_bucket, Bucket=bucket)
        self.assertError("AccessDenied", bob.get_bucket_location, Bucket=bucket)
        self.assertError("AccessDenied", bob.get_bucket_acl, Bucket=bucket)
        self.assertError("AccessDenied", bob.get_object_acl, Bucket=bucket, Key="k")
        self.assertError("AccessDenied", bob.get_bucket_versioning, Bucket=bucket)
        self.assertError("AccessDenied", bob.get_bucket_encryption, Bucket=bucket)
        self.assertError(
            "AccessDenied", bob.get_object_attributes, Bucket=bucket, Key="k", ObjectAttributes=["ETag"]
        )
        self.assertError("AccessDenied", bob.get_bucket_tagging, Bucket=bucket)
        self.assertError(
            "AccessDenied", bob.put_bucket_tagging, Bucket=bucket, Tagging={"TagSet": [{"Key": "b", "Value": "2"}]}
        )
        self.assertError("AccessDenied", bob.delete_bucket_tagging, Bucket=bucket)
        self.assertError("AccessDenied", bob.get_object_tagging, Bucket=bucket, Key="k")
        self.assertError(
            "AccessDenied", bob.put_object_tagging, Bucket=bucket, Key="k", Tagging={"TagSet": []}
        )
        self.assertError("AccessDenied", bob.create_multipart_upload, Bucket=bucket, Key="mp")
        self.assertError("AccessDenied", bob.list_multipart_uploads, Bucket=bucket)
        self.assertError("AccessDenied", bob.copy_object, Bucket=own, Key="stolen", CopySource=f"{bucket}/k")
        self.assertError("AccessDenied", bob.copy_object, Bucket=bucket, Key="planted", CopySource=f"{own}/x")
        self.assertError("AccessDenied", bob.delete_bucket, Bucket=bucket)
        url = bob.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
        self.assertEqual(http("GET", url)[0], 403)
        # Nothing changed.
        self.assertEqual(self.alice.get_object(Bucket=bucket, Key="k")["Body"].read(), b"alice's")
        self.assertEqual([o["Key"] for o in self.alice.list_objects_v2(Bucket=bucket)["Contents"]], ["k"])
        self.assertEqual(self.alice.get_bucket_tagging(Bucket=bucket)["TagSet"], [{"Key": "a", "Value": "1"}])
        self.assertNotIn("Contents", self.bob.list_objects_v2(Bucket=own))
        # A missing bucket is missing for everyone.
        self.assertError("NoSuchBucket", bob.list_objects_v2, Bucket=unique_bucket_name("missing"))

    def test_another_accounts_multipart_upload_is_closed(self) -> None:
        bucket = self.new_bucket(self.alice, "mp")
        upload = self.alice.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        self.addCleanup(self.alice.abort_multipart_upload, Bucket=bucket, Key="big", UploadId=upload)
        bob = self.bob
        self.assertError(
            "AccessDenied", bob.upload_part, Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"x"
        )
        self.assertError("AccessDenied", bob.list_parts, Bucket=bucket, Key="big", UploadId=upload)
        self.assertError(
            "AccessDenied",
            bob.upload_part_copy,
            Bucket=bucket,
            Key="big",
            UploadId=upload,
            PartNumber=1,
            CopySource=f"{bucket}/big",
        )
        # Alice's object as the source of a part of Bob's own upload.
        self.alice.put_object(Bucket=bucket, Key="src", Body=b"alice's")
        own = self.new_bucket(bob, "own-mp")
        own_upload = bob.create_multipart_upload(Bucket=own, Key="big")["UploadId"]
        self.addCleanup(bob.abort_multipart_upload, Bucket=own, Key="big", UploadId=own_upload)
        self.assertError(
            "AccessDenied",
            bob.upload_part_copy,
            Bucket=own,
            Key="big",
            UploadId=own_upload,
            PartNumber=1,
            CopySource=f"{bucket}/src",
        )
        self.assertError("AccessDenied", bob.abort_multipart_upload, Bucket=bucket, Key="big", UploadId=upload)
        self.assertError(
            "AccessDenied",
            bob.complete_multipart_upload,
            Bucket=bucket,
            Key="big",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]},
        )
        self.assertEqual(
            [u["UploadId"] for u in self.alice.list_multipart_uploads(Bucket=bucket)["Uploads"]], [upload]
        )

    def test_an_admin_does_everything_in_every_account(self) -> None:
        bucket = self.new_bucket(self.alice, "admin")
        self.root.put_object(Bucket=bucket, Key="by-root", Body=b"root")
        self.assertEqual(self.alice.get_object(Bucket=bucket, Key="by-root")["Body"].read(), b"root")
        self.assertEqual([o["Key"] for o in self.root.list_objects_v2(Bucket=bucket)["Contents"]], ["by-root"])
        # The owner stays alice's: Owner elements show it.
        listed = self.root.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]
        self.assertEqual(listed[0]["Owner"], {"ID": ALICE, "DisplayName": "alice"})
        self.root.delete_object(Bucket=bucket, Key="by-root")
        self.root.delete_bucket(Bucket=bucket)
        self.assertNotIn(bucket, [b["Name"] for b in self.alice.list_buckets()["Buckets"]])

    # -- Owner elements -------------------------------------------------------------

    def test_owner_elements_carry_the_buckets_owner(self) -> None:
        bucket = self.new_bucket(self.alice, "owner")
        self.alice.put_object(Bucket=bucket, Key="k", Body=b"x")
        alice = {"ID": ALICE, "DisplayName": "alice"}
        self.assertEqual(self.alice.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]["Owner"], alice)
        self.assertNotIn("Owner", self.alice.list_objects_v2(Bucket=bucket)["Contents"][0])
        self.assertEqual(self.alice.list_objects(Bucket=bucket)["Contents"][0]["Owner"], alice)
        self.assertEqual(self.alice.list_object_versions(Bucket=bucket)["Versions"][0]["Owner"], alice)
        for acl in (
            self.alice.get_bucket_acl(Bucket=bucket),
            self.alice.get_object_acl(Bucket=bucket, Key="k"),
        ):
            self.assertEqual(acl["Owner"], alice)
            self.assertEqual(
                acl["Grants"], [{"Grantee": {**alice, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}]
            )
        upload = self.alice.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        self.addCleanup(self.alice.abort_multipart_upload, Bucket=bucket, Key="big", UploadId=upload)
        listed = self.alice.list_multipart_uploads(Bucket=bucket)["Uploads"][0]
        self.assertEqual((listed["Owner"], listed["Initiator"]), (alice, alice))
        parts = self.alice.list_parts(Bucket=bucket, Key="big", UploadId=upload)
        self.assertEqual((parts["Owner"], parts["Initiator"]), (alice, alice))

    def test_the_go_pair_keeps_its_configured_bucket(self) -> None:
        key = unique_bucket_name("go")
        self.go_pair.put_object(Bucket="vb-default", Key=key, Body=b"as before")
        self.addCleanup(self.go_pair.delete_object, Bucket="vb-default", Key=key)
        self.assertEqual(self.go_pair.get_object(Bucket="vb-default", Key=key)["Body"].read(), b"as before")
        listed = self.go_pair.list_objects_v2(Bucket="vb-default", Prefix=key, FetchOwner=True)["Contents"]
        self.assertEqual(listed[0]["Owner"], {"ID": DEFAULT, "DisplayName": "s3balance"})
        self.assertError("AccessDenied", self.alice.get_object, Bucket="vb-default", Key=key)

    # -- admin API and reload -------------------------------------------------------

    def test_admin_api_reports_accounts_without_secrets(self) -> None:
        self.new_bucket(self.bob, "counted")
        status, document = self.admin_api("GET", "accounts")
        self.assertEqual(status, 200)
        self.assertNotIn(SECRETS["bob"], json.dumps(document))
        by_id = {account["id"]: account for account in document["accounts"]}  # type: ignore[index]
        self.assertTrue({DEFAULT, ALICE, BOB, ROOT} <= set(by_id), by_id)
        for ident, account in by_id.items():
            self.assertEqual(account["configured"], ident in (DEFAULT, ALICE, BOB, ROOT), account)
        bob = by_id[BOB]
        self.assertEqual((bob["display_name"], bob["configured"]), ("bob", True))
        self.assertEqual(
            bob["credentials"], [{"access_key": "bob", "admin": False, "read_only": False, "buckets": None}]
        )
        self.assertGreaterEqual(bob["buckets"], 1)
        self.assertTrue(by_id[ROOT]["credentials"][0]["admin"])
        self.assertTrue(by_id[DEFAULT]["default_account"] and by_id[DEFAULT]["default_owner"])
        self.assertEqual(self.admin_api("GET", f"accounts/{BOB}"), (200, bob))
        self.assertEqual(self.admin_api("GET", "accounts/999999999999")[0], 404)

    def test_admin_api_hands_a_bucket_to_another_account(self) -> None:
        bucket = self.new_bucket(self.alice, "handed")
        status, report = self.admin_api("GET", f"buckets/{bucket}")
        self.assertEqual((status, report["owner"]), (200, ALICE))  # type: ignore[index]
        status, report = self.admin_api("PUT", f"buckets/{bucket}/owner", {"account": BOB})
        self.assertEqual((status, report["owner"]), (200, BOB))  # type: ignore[index]
        self.bob.put_object(Bucket=bucket, Key="k", Body=b"bob's now")
        self.assertError("AccessDenied", self.alice.get_object, Bucket=bucket, Key="k")
        self.assertIn(bucket, [b["Name"] for b in self.bob.list_buckets()["Buckets"]])
        status, refused = self.admin_api("PUT", "buckets/vb-default/owner", {"account": BOB})
        self.assertEqual((status, refused["error"]), (409, "owner_in_config"))  # type: ignore[index]
        status, refused = self.admin_api("PUT", f"buckets/{bucket}/owner", {"account": "999999999999"})
        self.assertEqual((status, refused["error"]), (400, "no_such_account"))  # type: ignore[index]
        status, refused = self.admin_api("PUT", f"buckets/{unique_bucket_name('none')}/owner", {"account": BOB})
        self.assertEqual((status, refused["error"]), (404, "no_such_bucket"))  # type: ignore[index]
        self.assertEqual(self.admin_api("PUT", f"buckets/{bucket}/owner", {"owner": BOB})[0], 400)


    def cli(self, *words: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser()
        accounts_cli.add_arguments(parser)
        args = parser.parse_args([*words, "--admin-url", self.gateway.endpoint, "--token", API_TOKEN])
        out, err = io.StringIO(), io.StringIO()
        return accounts_cli.command(args, out, err), out.getvalue(), err.getvalue()

    def test_admin_cli_lists_accounts_and_gives_a_bucket(self) -> None:
        bucket = self.new_bucket(self.bob, "cli")
        status, out, _ = self.cli("list")
        self.assertEqual(status, 0)
        lines = {line.split(" ", 1)[0]: line for line in out.splitlines()}
        self.assertIn("keys: bob;", lines[BOB] + ";")
        self.assertIn("keys: root (admin)", lines[ROOT])
        self.assertIn("default account, default owner", lines[DEFAULT])
        self.assertNotIn(SECRETS["bob"], out)
        self.assertEqual(self.cli("give", bucket, ALICE)[:2], (0, f"{bucket}: owned by {ALICE}\n"))
        self.assertIn(bucket, [b["Name"] for b in self.alice.list_buckets()["Buckets"]])
        status, _, err = self.cli("give", "vb-default", ALICE)
        self.assertEqual(status, 1)
        self.assertIn("HTTP 409", err)
        self.assertEqual(self.cli("give", bucket)[0], 2)


class AccountReloadTests(SynchronousTestCase):
    def test_a_reload_adds_an_account_and_its_credential(self) -> None:
        gateway = accounts_gateway()
        daemon = gateway.daemon
        carol = "444444444444"
        s3api = daemon.config["s3api"]
        before = [dict(a) for a in s3api["accounts"]], [dict(c) for c in s3api["credentials"]]

        def restore() -> None:
            s3api["accounts"], s3api["credentials"] = before
            daemon.write_config()
            http("POST", f"{gateway.endpoint}/admin/reload", b"", {"Authorization": f"Bearer {API_TOKEN}"})

        self.addCleanup(restore)
        s3api["accounts"] = [*before[0], {"id": carol, "display_name": "carol"}]
        s3api["credentials"] = [
            *before[1],
            {"access_key": "carol", "secret_key": "carol-secret-0123456789", "account": carol},
        ]
        daemon.write_config()
        status, _, body = http(
            "POST", f"{gateway.endpoint}/admin/reload", b"", {"Authorization": f"Bearer {API_TOKEN}"}
        )
        self.assertEqual(status, 200, body)
        client = gateway.client("carol", "carol-secret-0123456789")
        poll(lambda: "Owner" in _try_list(client), timeout=10, message="the reloaded credential is not taken")
        self.assertEqual(client.list_buckets()["Owner"], {"ID": carol, "DisplayName": "carol"})
        name = unique_bucket_name("carol")
        client.create_bucket(Bucket=name)
        self.addCleanup(client.delete_bucket, Bucket=name)
        self.assertEqual([b["Name"] for b in client.list_buckets()["Buckets"]], [name])


def _try_list(client) -> dict:
    try:
        return client.list_buckets()
    except ClientError:
        return {}
