"""
Redirect mode (C{s3api.proxy_mode: false}) with real clients, and the
C{x-amz-*} query parameters of presigned requests taken as headers.

  - which GETs are redirected (presigned, anonymous, a credential with
    C{follows_redirects}, a User-Agent in C{s3api.redirect_user_agents}) and
    which are proxied (every other header-signed GET);
  - every client library the tests use (boto3, aws cli, s3cmd, rclone, minio)
    reads the right bytes through a redirect-mode daemon, rclone through the
    302 (it follows, and is listed in C{redirect_user_agents});
  - a client that re-sends its signed C{x-amz-*} headers to the redirect URL
    is accepted by the backend (SeaweedFS verifies the presigned signature);
  - a presigned PUT with C{x-amz-checksum-crc32} or C{x-amz-meta-*} in its
    query is verified and stored as if they were headers.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import ConfigError, parse_config
from s3balance.errors import S3Error
from s3balance.s3.gateway import with_presigned_headers
from s3balance.s3.redirects import user_agent_matches
from tests.daemon import ACCESS_KEY, SECRET_KEY
from tests.gateways import error_code, http, lazy_gateway, s3_error
from tests.harness import harness_dir, minio_client, run_aws, run_rclone, run_s3cmd

FOLLOWER_KEY = "s3b-follower-key"
FOLLOWER_SECRET = "s3b-follower-secret"
FOLLOWER_AGENT = "redirect-follower/1.0"

redirect_gateway = lazy_gateway(
    "redirect-mode",
    s3api={
        "proxy_mode": False,
        "redirect_user_agents": ["rclone/", "redirect-follower/"],
        "credentials": [{"access_key": FOLLOWER_KEY, "secret_key": FOLLOWER_SECRET, "follows_redirects": True}],
    },
)

# Bytes that are not all alike, so a wrong range or a wrong object shows.
BODY = hashlib.sha256(b"redirect").digest() * 4096 + b"tail"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, headers: Optional[dict] = None, follow: bool = True) -> tuple[int, dict, bytes]:
    """GET with urllib: (status, headers with lower-case names, body); a 302 is an answer when not following."""
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def header_signed(url: str, headers: Optional[dict] = None, access_key: str = ACCESS_KEY,
                  secret_key: str = SECRET_KEY) -> dict:
    """The headers of a header-signed GET of C{url} (botocore signs every header but User-Agent)."""
    request = AWSRequest(method="GET", url=url, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def presigned(method: str, url: str, headers: Optional[dict] = None, access_key: str = ACCESS_KEY,
              secret_key: str = SECRET_KEY) -> str:
    """A presigned URL for C{url}, its own query parameters signed along (as SDK presigners hoist them)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    S3SigV4QueryAuth(Credentials(access_key, secret_key), "s3", "us-east-1", expires=300).add_auth(request)
    return str(request.url)


def crc32_of(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


class _RedirectModeCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = redirect_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, prefix="redir")
        self.s3.put_object(Bucket=self.bucket, Key="obj", Body=BODY)
        self.url = f"{self.gateway.endpoint}/{self.bucket}/obj"


class WhoIsRedirectedTests(_RedirectModeCase):
    def test_presigned_get_is_redirected(self) -> None:
        url = self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "obj"})
        status, headers, _ = fetch(url, follow=False)
        self.assertEqual(status, 302)
        self.assertIn("X-Amz-Signature=", headers["location"])
        self.assertFalse(headers["location"].startswith(self.gateway.endpoint))
        self.assertEqual(fetch(url)[2], BODY)

    def test_redirect_of_a_presigned_get_expires_no_later_than_it(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": "obj"}, ExpiresIn=60
        )
        status, headers, _ = fetch(url, follow=False)
        self.assertEqual(status, 302)
        expires = int(parse_qs(urlsplit(headers["location"]).query)["X-Amz-Expires"][0])
        self.assertLessEqual(expires, 60)
        self.assertGreater(expires, 30)

    def test_header_signed_get_is_proxied(self) -> None:
        status, _, body = fetch(self.url, header_signed(self.url), follow=False)
        self.assertEqual(status, 200)
        self.assertEqual(body, BODY)

    def test_credential_that_follows_redirects_is_redirected(self) -> None:
        headers = header_signed(self.url, access_key=FOLLOWER_KEY, secret_key=FOLLOWER_SECRET)
        status, answer, _ = fetch(self.url, headers, follow=False)
        self.assertEqual(status, 302)
        self.assertIn("X-Amz-Signature=", answer["location"])

    def test_listed_user_agent_is_redirected(self) -> None:
        headers = header_signed(self.url, {"User-Agent": "something/2 " + FOLLOWER_AGENT})
        self.assertEqual(fetch(self.url, headers, follow=False)[0], 302)
        other = header_signed(self.url, {"User-Agent": "not-" + FOLLOWER_AGENT})
        self.assertEqual(fetch(self.url, other, follow=False)[0], 200)

    def test_client_may_still_ask_for_proxying(self) -> None:
        headers = header_signed(self.url, {"User-Agent": FOLLOWER_AGENT, "x-s3balance-proxy": "true"})
        status, _, body = fetch(self.url, headers, follow=False)
        self.assertEqual((status, body), (200, BODY))


class SignedHeadersInRedirectTests(_RedirectModeCase):
    """A client following the 302 re-sends its headers (pyarrow, urllib); the backend must accept them."""

    def test_x_amz_headers_resent_to_the_redirect_url_are_accepted(self) -> None:
        sent = {"User-Agent": FOLLOWER_AGENT, "x-amz-checksum-mode": "ENABLED", "x-amz-api-version": "2006-03-01"}
        headers = header_signed(self.url, sent)
        status, answer, _ = fetch(self.url, headers, follow=False)
        self.assertEqual(status, 302)
        self.assertIn("x-amz-checksum-mode", answer["location"])
        # urllib follows with every header of the first request (SeaweedFS refuses an unsigned x-amz-* one).
        status, _, body = fetch(self.url, headers)
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(body, BODY)

    def test_presigned_get_with_signed_header_follows(self) -> None:
        url = presigned("GET", self.url, {"x-amz-checksum-mode": "ENABLED"})
        status, _, body = fetch(url, {"x-amz-checksum-mode": "ENABLED"})
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(body, BODY)


class ClientLibraryTests(_RedirectModeCase):
    """Each client reads the object through a redirect-mode daemon (proxied or redirected) and gets its bytes."""

    def scratch(self) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="redirect-", dir=harness_dir()))
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    def test_boto3_reads_the_object(self) -> None:
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="obj")["Body"].read(), BODY)
        ranged = self.s3.get_object(Bucket=self.bucket, Key="obj", Range="bytes=10-19")["Body"].read()
        self.assertEqual(ranged, BODY[10:20])

    def test_aws_cli_reads_the_object(self) -> None:
        target = self.scratch() / "aws.bin"
        run_aws(["s3", "cp", f"s3://{self.bucket}/obj", str(target)], self.gateway.endpoint, ACCESS_KEY, SECRET_KEY)
        self.assertEqual(target.read_bytes(), BODY)

    def test_s3cmd_reads_the_object(self) -> None:
        target = self.scratch() / "s3cmd.bin"
        run_s3cmd(["get", f"s3://{self.bucket}/obj", str(target)], self.gateway.endpoint, ACCESS_KEY, SECRET_KEY)
        self.assertEqual(target.read_bytes(), BODY)

    def test_rclone_reads_the_object_through_the_redirect(self) -> None:
        target = self.scratch() / "rclone.bin"
        done = run_rclone(
            ["copyto", "--dump", "headers", f"s3:{self.bucket}/obj", str(target)],
            self.gateway.endpoint,
            ACCESS_KEY,
            SECRET_KEY,
        )
        self.assertEqual(target.read_bytes(), BODY)
        # rclone/ is in s3api.redirect_user_agents: it got the 302 and followed it.
        self.assertIn("302 Found", done.stderr)

    def test_minio_reads_the_object(self) -> None:
        client = minio_client(self.gateway.endpoint, ACCESS_KEY, SECRET_KEY)
        response = client.get_object(self.bucket, "obj")
        try:
            self.assertEqual(response.read(), BODY)
        finally:
            response.close()
            response.release_conn()


class PresignedQueryHeaderTests(_RedirectModeCase):
    """C{x-amz-*} parameters signed into a presigned PUT URL count as its headers."""

    def test_checksum_in_query_refuses_a_mismatching_body(self) -> None:
        url = presigned("PUT", f"{self.url}-crc?x-amz-checksum-crc32={quote(crc32_of(b'expected'))}")
        status, _, body = http("PUT", url, b"something else")
        self.assertEqual(status, 400, body)
        self.assertEqual(s3_error(body)[0], "BadDigest")
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key="obj-crc")
        self.assertEqual(error_code(raised.exception), "404")

    def test_checksum_in_query_accepts_a_matching_body(self) -> None:
        url = presigned("PUT", f"{self.url}-crc?x-amz-checksum-crc32={quote(crc32_of(b'expected'))}")
        status, _, body = http("PUT", url, b"expected")
        self.assertEqual(status, 200, body)
        got = self.s3.get_object(Bucket=self.bucket, Key="obj-crc", ChecksumMode="ENABLED")
        self.assertEqual(got["Body"].read(), b"expected")
        self.assertEqual(got.get("ChecksumCRC32"), crc32_of(b"expected"))

    def test_metadata_in_query_is_stored(self) -> None:
        url = presigned("PUT", f"{self.url}-meta?x-amz-meta-foo=bar&x-amz-meta-greeting={quote('grüß')}")
        status, _, body = http("PUT", url, b"with metadata")
        self.assertEqual(status, 200, body)
        head = self.s3.head_object(Bucket=self.bucket, Key="obj-meta")
        self.assertEqual(head["Metadata"]["foo"], "bar")
        raw = head["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-greeting"]
        self.assertEqual(raw.encode("latin-1").decode("utf-8"), "grüß")

    def test_header_and_query_with_different_values_are_refused(self) -> None:
        url = presigned("PUT", f"{self.url}-both?x-amz-meta-foo=query", {"x-amz-meta-foo": "header"})
        status, _, body = http("PUT", url, b"x", {"x-amz-meta-foo": "header"})
        self.assertEqual(status, 400, body)
        self.assertEqual(s3_error(body)[0], "InvalidArgument")


class HoistingTests(SynchronousTestCase):
    def test_amz_parameters_become_headers(self) -> None:
        query = {"X-Amz-Meta-Foo": "bar", "x-amz-checksum-crc32": "AAAAAA==", "X-Amz-Signature": "ab", "tagging": ""}
        merged = with_presigned_headers({"host": ["h"]}, query)
        self.assertEqual(
            merged, {"host": ["h"], "x-amz-meta-foo": ["bar"], "x-amz-checksum-crc32": ["AAAAAA=="]}
        )

    def test_authentication_parameters_are_not_headers(self) -> None:
        query = {name: "v" for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                                        "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token",
                                        "X-Amz-Content-Sha256")}
        self.assertEqual(with_presigned_headers({}, query), {})

    def test_same_value_both_ways_is_accepted(self) -> None:
        merged = with_presigned_headers({"x-amz-acl": ["private"]}, {"x-amz-acl": "private"})
        self.assertEqual(merged, {"x-amz-acl": ["private"]})

    def test_different_values_are_refused(self) -> None:
        with self.assertRaises(S3Error) as raised:
            with_presigned_headers({"x-amz-acl": ["private"]}, {"x-amz-acl": "public-read"})
        self.assertEqual(raised.exception.code, "InvalidArgument")

    def test_utf8_values_are_kept_as_header_bytes(self) -> None:
        merged = with_presigned_headers({}, {"x-amz-meta-a": "é"})
        self.assertEqual(merged["x-amz-meta-a"], ["é".encode().decode("latin-1")])


class UserAgentTests(SynchronousTestCase):
    def test_any_product_token_may_match(self) -> None:
        agent = "aws-sdk-go/1.44.0 (go1.21; linux; amd64) S5cmd/v2.2.2"
        self.assertTrue(user_agent_matches(agent, ("s5cmd/",)))
        self.assertTrue(user_agent_matches("rclone/v1.66.0", ("rclone/",)))

    def test_no_match_and_no_list(self) -> None:
        self.assertFalse(user_agent_matches("Boto3/1.35 md/Botocore#1.35", ("rclone/",)))
        self.assertFalse(user_agent_matches("rclone/v1.66.0", ()))


def _config(s3api: dict) -> dict:
    return {
        "buckets": [
            {"name": "real-a", "endpoint": "http://127.0.0.1:1", "virtual": False},
            {"name": "vb-a", "virtual": True},
        ],
        "s3api": s3api,
    }


class RedirectConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = parse_config(_config({"access_key": "a", "secret_key": "b"}))
        self.assertEqual(config.s3api.redirect_user_agents, ())
        self.assertFalse(config.s3api.credentials[0].follows_redirects)

    def test_keys_are_read(self) -> None:
        config = parse_config(
            _config(
                {
                    "redirect_user_agents": ["rclone/", "s5cmd/"],
                    "credentials": [{"access_key": "a", "secret_key": "b", "follows_redirects": True}],
                }
            )
        )
        self.assertEqual(config.s3api.redirect_user_agents, ("rclone/", "s5cmd/"))
        self.assertTrue(config.s3api.credentials[0].follows_redirects)

    def test_bad_user_agent_names_the_key(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            parse_config(_config({"access_key": "a", "secret_key": "b", "redirect_user_agents": ["has space"]}))
        self.assertIn("s3api.redirect_user_agents", str(raised.exception))

    def test_bad_flag_names_the_key(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            parse_config(_config({"credentials": [{"access_key": "a", "secret_key": "b", "follows_redirects": "x"}]}))
        self.assertIn("s3api.credentials[0].follows_redirects", str(raised.exception))

