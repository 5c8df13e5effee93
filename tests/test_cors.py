"""
CORS for browsers (s3api.cors): the policy's decisions, its config errors,
and a running daemon answering preflights and presigned requests the way a
browser sends them (Origin, OPTIONS without credentials).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from s3balance.config import ConfigError, CORSConfig, parse_config
from s3balance.errors import S3Error
from s3balance.s3 import cors
from tests.gateways import assert_nothing_left, http, lazy_gateway, s3_client, s3_error

APP = "https://app.example.com"

policy_gateway = lazy_gateway(
    "cors",
    ["vb-cors"],
    s3api={"cors": {"allowed_origins": [APP, "https://*.example.org"], "allowed_headers": ["content-type", "x-amz-*"]}},
)
plain_gateway = lazy_gateway("no-cors", ["vb-plain"])


class PolicyTests(SynchronousTestCase):
    policy = CORSConfig(allowed_origins=(APP, "https://*.example.org"), allowed_headers=("content-type", "x-amz-*"))

    def test_origins_exact_and_wildcard(self) -> None:
        self.assertEqual(cors.allowed_origin(self.policy, APP), APP)
        self.assertEqual(cors.allowed_origin(self.policy, "https://a.b.example.org"), "https://a.b.example.org")
        self.assertIsNone(cors.allowed_origin(self.policy, "https://example.org"))
        self.assertIsNone(cors.allowed_origin(self.policy, "http://app.example.com"))
        self.assertIsNone(cors.allowed_origin(self.policy, "https://app.example.com.evil.net"))
        self.assertEqual(cors.allowed_origin(CORSConfig(allowed_origins=("*",)), "null"), "*")

    def test_preflight_allowed(self) -> None:
        headers = cors.preflight(self.policy, APP, "put", "Content-Type, x-amz-meta-a")
        self.assertEqual(headers["Access-Control-Allow-Origin"], APP)
        self.assertEqual(headers["Access-Control-Allow-Methods"], "GET, PUT, POST, DELETE, HEAD")
        self.assertEqual(headers["Access-Control-Allow-Headers"], "Content-Type, x-amz-meta-a")
        self.assertIn("ETag", headers["Access-Control-Expose-Headers"])
        self.assertEqual(headers["Access-Control-Max-Age"], "3600")
        self.assertIn("Origin", headers["Vary"])

    def test_preflight_refused(self) -> None:
        cases = [
            (CORSConfig(), APP, "GET", "", 403, cors.NOT_ENABLED),
            (self.policy, None, "GET", "", 400, None),
            (self.policy, APP, None, "", 400, None),
            (self.policy, "https://other.example.com", "GET", "", 403, cors.NOT_ALLOWED),
            (CORSConfig(allowed_origins=(APP,), allowed_methods=("GET",)), APP, "PUT", "", 403, cors.NOT_ALLOWED),
            (self.policy, APP, "PUT", "authorization", 403, cors.NOT_ALLOWED),
        ]
        for policy, origin, method, requested, status, message in cases:
            with self.assertRaises(S3Error) as raised:
                cors.preflight(policy, origin, method, requested)
            self.assertEqual(raised.exception.status, status, (origin, method, requested))
            if message is not None:
                self.assertEqual(raised.exception.message, message)

    def test_answer_headers(self) -> None:
        self.assertEqual(
            dict(cors.answer_headers(self.policy, APP))[b"access-control-allow-origin"], APP.encode()
        )
        # Not allowed: only Vary, so a cache keeps the answers apart.
        self.assertEqual(cors.answer_headers(self.policy, "https://evil.net"), [(b"vary", b"Origin")])


class ConfigTests(SynchronousTestCase):
    def parse(self, cors_section: object):
        return parse_config(
            {
                "buckets": [{"name": "real", "endpoint": "http://127.0.0.1:9000"}, {"name": "vb-x", "virtual": True}],
                "s3api": {"access_key": "a", "secret_key": "b", "cors": cors_section},
            }
        )

    def test_default_is_off(self) -> None:
        config = self.parse(None)
        self.assertFalse(config.s3api.cors.enabled)

    def test_values(self) -> None:
        config = self.parse(
            {"allowed_origins": ["*"], "allowed_methods": ["get", "HEAD"], "expose_headers": ["ETag"], "max_age": 0}
        )
        self.assertEqual(config.s3api.cors, CORSConfig(("*",), ("GET", "HEAD"), ("*",), ("ETag",), 0))

    def test_errors_name_the_key(self) -> None:
        cases = {
            "s3api.cors.allowed_origins": {"allowed_origins": ["app.example.com"]},
            "s3api.cors.allowed_methods": {"allowed_origins": ["*"], "allowed_methods": ["PATCH"]},
            "s3api.cors.allowed_headers": {"allowed_origins": ["*"], "allowed_headers": ["bad header"]},
            "s3api.cors.expose_headers": {"allowed_origins": ["*"], "expose_headers": ["x-*"]},
            "s3api.cors.max_age": {"allowed_origins": ["*"], "max_age": -1},
            "s3api.cors.allow_origin": {"allow_origin": ["*"]},
            "s3api.cors": ["*"],
        }
        for key, section in cases.items():
            with self.assertRaises(ConfigError) as raised:
                self.parse(section)
            self.assertTrue(str(raised.exception).startswith(key), (key, str(raised.exception)))


class DaemonTests(SynchronousTestCase):
    """A browser's requests, as fetch() sends them, against a running daemon."""

    def test_preflight_needs_no_credentials(self) -> None:
        gateway = policy_gateway()
        status, headers, body = http(
            "OPTIONS",
            f"{gateway.endpoint}/vb-cors/photos/a.jpg",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["access-control-allow-origin"], APP)
        self.assertIn("PUT", headers["access-control-allow-methods"])
        self.assertEqual(headers["access-control-allow-headers"], "content-type")
        self.assertEqual(headers["access-control-max-age"], "3600")
        self.assertIn("x-amz-request-id", headers)

    def test_preflight_refused_with_s3_errors(self) -> None:
        gateway = policy_gateway()
        url = f"{gateway.endpoint}/vb-cors/k"
        status, headers, body = http(
            "OPTIONS", url, headers={"Origin": "https://evil.net", "Access-Control-Request-Method": "GET"}
        )
        self.assertEqual((status, s3_error(body)[0]), (403, "AccessForbidden"))
        self.assertNotIn("access-control-allow-origin", headers)
        status, _, body = http("OPTIONS", url, headers={"Access-Control-Request-Method": "GET"})
        self.assertEqual((status, s3_error(body)[0]), (400, "BadRequest"))
        status, _, body = http(
            "OPTIONS", url, headers={"Origin": APP, "Access-Control-Request-Method": "PUT",
                                     "Access-Control-Request-Headers": "authorization"}
        )
        self.assertEqual((status, s3_error(body)[0]), (403, "AccessForbidden"))

    def test_presigned_put_and_get_from_an_allowed_origin(self) -> None:
        gateway = policy_gateway()
        client = s3_client(gateway.endpoint)
        data = b"bytes from a browser" * 100
        put_url = client.generate_presigned_url(
            "put_object", Params={"Bucket": "vb-cors", "Key": "browser/a.bin"}, ExpiresIn=300
        )
        status, headers, _ = http("PUT", put_url, body=data, headers={"Origin": "https://x.example.org"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["access-control-allow-origin"], "https://x.example.org")
        self.assertIn("ETag", headers["access-control-expose-headers"])
        self.assertEqual(headers["vary"], "Origin")
        get_url = client.generate_presigned_url(
            "get_object", Params={"Bucket": "vb-cors", "Key": "browser/a.bin"}, ExpiresIn=300
        )
        status, headers, body = http("GET", get_url, headers={"Origin": APP})
        self.assertEqual((status, body), (200, data))
        self.assertEqual(headers["access-control-allow-origin"], APP)
        # Errors carry the headers too, so the page can read the S3 error.
        status, headers, body = http("GET", get_url.replace("browser/a.bin", "browser/missing"),
                                     headers={"Origin": APP})
        self.assertEqual(status, 403)  # the signature was for another key
        self.assertEqual(headers["access-control-allow-origin"], APP)
        client.delete_object(Bucket="vb-cors", Key="browser/a.bin")
        assert_nothing_left(gateway, "vb-cors")

    def test_a_refused_origin_gets_no_grant_and_changes_nothing(self) -> None:
        gateway = policy_gateway()
        client = s3_client(gateway.endpoint)
        put_url = client.generate_presigned_url(
            "put_object", Params={"Bucket": "vb-cors", "Key": "other/a.bin"}, ExpiresIn=300
        )
        # CORS is the browser's business: the signed request itself is served.
        status, headers, _ = http("PUT", put_url, body=b"x", headers={"Origin": "https://evil.net"})
        self.assertEqual(status, 200)
        self.assertNotIn("access-control-allow-origin", headers)
        client.delete_object(Bucket="vb-cors", Key="other/a.bin")

    def test_off_by_default(self) -> None:
        gateway = plain_gateway()
        status, headers, body = http(
            "OPTIONS", f"{gateway.endpoint}/vb-plain/k", headers={"Origin": APP, "Access-Control-Request-Method": "GET"}
        )
        self.assertEqual((status, s3_error(body)), (403, ("AccessForbidden", cors.NOT_ENABLED)))
        client = s3_client(gateway.endpoint)
        url = client.generate_presigned_url("list_objects_v2", Params={"Bucket": "vb-plain"}, ExpiresIn=300)
        status, headers, _ = http("GET", url, headers={"Origin": APP})
        self.assertEqual(status, 200)
        self.assertNotIn("access-control-allow-origin", headers)
        self.assertNotIn("vary", headers)
