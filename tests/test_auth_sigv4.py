"""
Tests for L{s3balance.auth.sigv4}.

Signatures come from botocore itself (so the verifier is proven to interoperate
with the AWS SDK) and from the worked examples published in the Amazon S3 API
reference ("Signature Calculations for the Authorization Header" and
"Authenticating Requests: Using Query Parameters"; example credentials
AKIAIOSFODNN7EXAMPLE, 2013-05-24).
"""

from __future__ import annotations

import calendar
import datetime
from urllib.parse import urlsplit

import attrs
import botocore.auth
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from twisted.trial.unittest import SynchronousTestCase

from s3balance.auth.sigv4 import (
    EMPTY_SHA256,
    AuthContext,
    PayloadMode,
    SigV4Request,
    authenticate,
)
from s3balance.errors import S3Error

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_NOW = calendar.timegm((2013, 5, 24, 0, 0, 0))
SIGNING_TIME = datetime.datetime(2024, 5, 6, 7, 8, 9)
SIGNING_NOW = float(calendar.timegm(SIGNING_TIME.timetuple()))
ODD_KEY = "a b/c~d!'()*+,;=@ü.txt"


@attrs.frozen
class FakeCredential:
    access_key: str
    secret_key: str = attrs.field(repr=False)


CREDENTIAL = FakeCredential(ACCESS_KEY, SECRET_KEY)
OTHER = FakeCredential("OTHERKEY", "other-secret")


def lookup(access_key: str) -> FakeCredential | None:
    return {c.access_key: c for c in (CREDENTIAL, OTHER)}.get(access_key)


def headers(**values: str) -> dict[str, list[str]]:
    return {name.replace("_", "-"): [value] for name, value in values.items()}


def from_botocore(request: AWSRequest) -> SigV4Request:
    """What the HTTP face would build from a request botocore sends."""
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    received = {name.lower(): [value] for name, value in prepared.headers.items()}
    received.setdefault("host", [url.netloc])
    path = url.path.encode("utf-8")
    return SigV4Request(
        method=prepared.method,
        raw_path=path,
        raw_query=url.query.encode("utf-8"),
        headers=received,
    )


def encode_key(key: str) -> str:
    """How botocore's S3 serializer puts a key into the URL."""
    return percent_encode(key, safe="/~")


def tampered(data: bytes, index: int, hex_only: bool = False) -> bytes:
    replacement = b"0" if hex_only else b"Z"
    if data[index : index + 1] == replacement:
        replacement = b"1" if hex_only else b"Y"
    return data[:index] + replacement + data[index + 1 :]


class FixedPayloadAuth(S3SigV4Auth):
    """botocore's S3 signer for a payload hash botocore does not produce itself."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


class BotocoreMixin:
    def setUp(self) -> None:
        self.patch(botocore.auth, "get_current_datetime", lambda **kw: SIGNING_TIME)

    def signed(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        extra: dict[str, str] | None = None,
        region: str = "us-east-1",
        credential: FakeCredential = CREDENTIAL,
        payload: str | None = None,
    ) -> SigV4Request:
        request = AWSRequest(method=method, url=url, data=body, headers=extra or {})
        creds = Credentials(credential.access_key, credential.secret_key)
        if payload is None:
            S3SigV4Auth(creds, "s3", region).add_auth(request)
        else:
            FixedPayloadAuth(creds, region, payload).add_auth(request)
        return from_botocore(request)

    def presigned(
        self,
        method: str,
        url: str,
        expires: int = 3600,
        extra: dict[str, str] | None = None,
        region: str = "us-east-1",
    ) -> SigV4Request:
        request = AWSRequest(method=method, url=url, headers=extra or {})
        creds = Credentials(ACCESS_KEY, SECRET_KEY)
        S3SigV4QueryAuth(creds, "s3", region, expires=expires).add_auth(request)
        return from_botocore(request)


class PublishedExampleTests(SynchronousTestCase):
    """The worked examples of the Amazon S3 API reference verify."""

    def authorization(self, signed_headers: str, signature: str) -> str:
        return (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws4_request,"
            f"SignedHeaders={signed_headers},Signature={signature}"
        )

    def test_get_object(self) -> None:
        request = SigV4Request(
            "GET",
            b"/test.txt",
            b"",
            headers(
                host="examplebucket.s3.amazonaws.com",
                range="bytes=0-9",
                x_amz_content_sha256=EMPTY_SHA256,
                x_amz_date="20130524T000000Z",
                authorization=self.authorization(
                    "host;range;x-amz-content-sha256;x-amz-date",
                    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                ),
            ),
        )
        ctx = authenticate(request, lookup, EXAMPLE_NOW)
        assert ctx is not None
        self.assertIs(ctx.credential, CREDENTIAL)
        self.assertEqual(ctx.payload_mode, PayloadMode.SHA256)
        self.assertEqual(ctx.content_sha256, EMPTY_SHA256)
        self.assertEqual(ctx.scope, "20130524/us-east-1/s3/aws4_request")
        self.assertEqual(ctx.amz_date, "20130524T000000Z")
        self.assertEqual(ctx.region, "us-east-1")
        self.assertEqual(
            ctx.seed_signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        )

    def test_put_object_with_unencoded_dollar(self) -> None:
        """
        The published PUT example sends C{/test$file.text} and signs
        C{/test%24file.text}: the canonical URI is the AWS encoding of the path.
        """
        request = SigV4Request(
            "PUT",
            b"/test$file.text",
            b"",
            headers(
                host="examplebucket.s3.amazonaws.com",
                date="Fri, 24 May 2013 00:00:00 GMT",
                x_amz_date="20130524T000000Z",
                x_amz_storage_class="REDUCED_REDUNDANCY",
                x_amz_content_sha256="44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                authorization=self.authorization(
                    "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                ),
            ),
        )
        ctx = authenticate(request, lookup, EXAMPLE_NOW)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.SHA256)
        self.assertEqual(
            ctx.content_sha256,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        )

    def test_get_bucket_lifecycle_subresource(self) -> None:
        """C{?lifecycle} is canonicalised as C{lifecycle=}."""
        request = SigV4Request(
            "GET",
            b"/",
            b"lifecycle",
            headers(
                host="examplebucket.s3.amazonaws.com",
                x_amz_date="20130524T000000Z",
                x_amz_content_sha256=EMPTY_SHA256,
                authorization=self.authorization(
                    "host;x-amz-content-sha256;x-amz-date",
                    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
                ),
            ),
        )
        self.assertIsNotNone(authenticate(request, lookup, EXAMPLE_NOW))

    def test_list_objects_query_sorted(self) -> None:
        request = SigV4Request(
            "GET",
            b"/",
            b"prefix=J&max-keys=2",
            headers(
                host="examplebucket.s3.amazonaws.com",
                x_amz_date="20130524T000000Z",
                x_amz_content_sha256=EMPTY_SHA256,
                authorization=self.authorization(
                    "host;x-amz-content-sha256;x-amz-date",
                    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
                ),
            ),
        )
        self.assertIsNotNone(authenticate(request, lookup, EXAMPLE_NOW))

    def test_presigned_get_object(self) -> None:
        request = SigV4Request(
            "GET",
            b"/test.txt",
            b"X-Amz-Algorithm=AWS4-HMAC-SHA256"
            b"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            b"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            b"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
            headers(host="examplebucket.s3.amazonaws.com"),
        )
        ctx = authenticate(request, lookup, EXAMPLE_NOW + 86000)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.PRESIGNED)
        self.assertIsNone(ctx.content_sha256)
        error = self.assertRaises(S3Error, authenticate, request, lookup, EXAMPLE_NOW + 86401)
        self.assertEqual((error.code, error.message), ("AccessDenied", "Request has expired"))

    def test_streaming_seed_signature(self) -> None:
        """The seed request of the published aws-chunked PUT example."""
        request = SigV4Request(
            "PUT",
            b"/examplebucket/chunkObject.txt",
            b"",
            headers(
                host="s3.amazonaws.com",
                x_amz_date="20130524T000000Z",
                x_amz_storage_class="REDUCED_REDUNDANCY",
                x_amz_content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                content_encoding="aws-chunked",
                x_amz_decoded_content_length="66560",
                content_length="66824",
                authorization=self.authorization(
                    "content-encoding;content-length;host;x-amz-content-sha256;"
                    "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
                    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
                ),
            ),
        )
        ctx = authenticate(request, lookup, EXAMPLE_NOW)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.STREAMING_SIGNED)
        self.assertIsNone(ctx.content_sha256)

    def test_host_override(self) -> None:
        """C{host_override} replaces the received Host header in the canonical request."""
        request = SigV4Request(
            "GET",
            b"/test.txt",
            b"",
            headers(
                host="127.0.0.1:8080",
                range="bytes=0-9",
                x_amz_content_sha256=EMPTY_SHA256,
                x_amz_date="20130524T000000Z",
                authorization=self.authorization(
                    "host;range;x-amz-content-sha256;x-amz-date",
                    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                ),
            ),
        )
        error = self.assertRaises(S3Error, authenticate, request, lookup, EXAMPLE_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")
        overridden = attrs.evolve(request, host_override="examplebucket.s3.amazonaws.com")
        self.assertIsNotNone(authenticate(overridden, lookup, EXAMPLE_NOW))


class BotocoreHeaderAuthTests(BotocoreMixin, SynchronousTestCase):
    """Requests signed by botocore's S3SigV4Auth verify; tampered ones do not."""

    def test_methods(self) -> None:
        for method in ("GET", "PUT", "DELETE", "HEAD", "POST"):
            request = self.signed(method, "http://localhost:8080/bucket/key.txt")
            ctx = authenticate(request, lookup, SIGNING_NOW)
            assert ctx is not None
            self.assertEqual(ctx.amz_date, "20240506T070809Z")

    def test_put_with_body_hash(self) -> None:
        request = self.signed("PUT", "http://localhost:8080/bucket/key", body=b"hello")
        ctx = authenticate(request, lookup, SIGNING_NOW)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.SHA256)
        self.assertEqual(
            ctx.content_sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        )

    def test_upper_case_body_hash_signed_as_sent(self) -> None:
        digest = "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824"
        request = self.signed("PUT", "http://localhost:8080/bucket/key", body=b"hello", payload=digest)
        ctx = authenticate(request, lookup, SIGNING_NOW)
        assert ctx is not None
        self.assertEqual(ctx.content_sha256, digest.lower())

    def test_unsigned_payload(self) -> None:
        request = self.signed(
            "PUT",
            "https://localhost/bucket/key",
            body=b"x",
            payload="UNSIGNED-PAYLOAD",
        )
        ctx = authenticate(request, lookup, SIGNING_NOW)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.UNSIGNED)
        self.assertIsNone(ctx.content_sha256)

    def test_streaming_modes(self) -> None:
        for value, mode in [
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PayloadMode.STREAMING_SIGNED),
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.STREAMING_SIGNED_TRAILER),
            ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.STREAMING_UNSIGNED_TRAILER),
        ]:
            request = self.signed(
                "PUT",
                "http://localhost:8080/bucket/key",
                extra={"Content-Encoding": "aws-chunked"},
                payload=value,
            )
            ctx = authenticate(request, lookup, SIGNING_NOW)
            assert ctx is not None
            self.assertEqual(ctx.payload_mode, mode)
            self.assertEqual(len(ctx.signing_key), 32)
            self.assertEqual(len(ctx.seed_signature), 64)

    def test_odd_key(self) -> None:
        url = "http://localhost:8080/bucket/" + encode_key(ODD_KEY)
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            self.assertIsNotNone(authenticate(self.signed(method, url), lookup, SIGNING_NOW))

    def test_path_sent_with_reserved_characters_unencoded(self) -> None:
        """
        A client that signed the AWS encoding but sent C{!'()*} (and UTF-8)
        unencoded on the request line is accepted.
        """
        request = self.signed("GET", "http://localhost:8080/bucket/" + encode_key("x!'()*ü y.txt"))
        sent = attrs.evolve(request, raw_path="/bucket/x!'()*ü%20y.txt".encode())
        self.assertIsNotNone(authenticate(sent, lookup, SIGNING_NOW))

    def test_path_signed_as_sent(self) -> None:
        """A client that signed the path exactly as sent (no AWS encoding) is accepted."""
        request = self.signed("GET", "http://localhost:8080/bucket/a(b)!c*")
        self.assertEqual(request.raw_path, b"/bucket/a(b)!c*")
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW))

    def test_encoded_slash_in_key(self) -> None:
        """C{%2F} inside a segment is not a path separator."""
        request = self.signed("GET", "http://localhost:8080/bucket/a%2Fb")
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW))
        moved = attrs.evolve(request, raw_path=b"/bucket/a/b")
        error = self.assertRaises(S3Error, authenticate, moved, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_queries(self) -> None:
        for query in (
            "uploads",
            "list-type=2&prefix=a%2Fb&delimiter=%2F",
            "partNumber=3&uploadId=abc%2B%3D",
            "tagging&versionId=",
            "prefix=%F0%9F%98%80&max-keys=10",
        ):
            request = self.signed("GET", "http://localhost:8080/bucket/key?" + query)
            self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW), query)

    def test_tampered_path(self) -> None:
        request = self.signed("PUT", "http://localhost:8080/bucket/" + encode_key(ODD_KEY), body=b"data")
        for index in range(len(request.raw_path)):
            bad = attrs.evolve(request, raw_path=tampered(request.raw_path, index))
            error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
            self.assertEqual(error.code, "SignatureDoesNotMatch", bad.raw_path)

    def test_tampered_query(self) -> None:
        request = self.signed("GET", "http://localhost:8080/bucket?list-type=2&prefix=a%2Fb&delimiter=%2F")
        for index in range(len(request.raw_query)):
            bad = attrs.evolve(request, raw_query=tampered(request.raw_query, index))
            error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
            self.assertEqual(error.code, "SignatureDoesNotMatch", bad.raw_query)

    def test_added_query_parameter(self) -> None:
        request = self.signed("GET", "http://localhost:8080/bucket/key")
        bad = attrs.evolve(request, raw_query=b"versionId=1")
        error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_tampered_signed_headers(self) -> None:
        request = self.signed(
            "PUT",
            "http://localhost:8080/bucket/key",
            body=b"data",
            extra={"X-Amz-Meta-Color": "blue", "Content-Type": "text/plain"},
        )
        checked = ["host", "x-amz-meta-color", "content-type", "x-amz-content-sha256"]
        for name in checked:
            value = request.headers[name][0].encode("utf-8")
            for index in range(len(value)):
                changed = tampered(value, index, hex_only=name == "x-amz-content-sha256")
                bad = attrs.evolve(request, headers={**request.headers, name: [changed.decode()]})
                error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
                self.assertEqual(error.code, "SignatureDoesNotMatch", (name, changed))

    def test_tampered_date_within_skew(self) -> None:
        request = self.signed("GET", "http://localhost:8080/bucket/key")
        bad = attrs.evolve(request, headers={**request.headers, "x-amz-date": ["20240506T070810Z"]})
        error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_tampered_method(self) -> None:
        request = self.signed("GET", "http://localhost:8080/bucket/key")
        error = self.assertRaises(
            S3Error, authenticate, attrs.evolve(request, method="DELETE"), lookup, SIGNING_NOW
        )
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_missing_signed_header(self) -> None:
        request = self.signed("PUT", "http://localhost:8080/bucket/key", extra={"X-Amz-Meta-A": "1"})
        received = dict(request.headers)
        del received["x-amz-meta-a"]
        error = self.assertRaises(
            S3Error, authenticate, attrs.evolve(request, headers=received), lookup, SIGNING_NOW
        )
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_header_value_whitespace_normalised(self) -> None:
        request = self.signed("PUT", "http://localhost:8080/bucket/key", extra={"X-Amz-Meta-A": "x  y"})
        spaced = attrs.evolve(request, headers={**request.headers, "x-amz-meta-a": ["  x y "]})
        self.assertIsNotNone(authenticate(spaced, lookup, SIGNING_NOW))

    def test_wrong_secret(self) -> None:
        request = self.signed(
            "GET",
            "http://localhost:8080/bucket/key",
            credential=FakeCredential(ACCESS_KEY, "not-the-secret"),
        )
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW)
        self.assertEqual((error.code, error.status), ("SignatureDoesNotMatch", 403))

    def test_other_credential(self) -> None:
        request = self.signed("GET", "http://localhost:8080/bucket/key", credential=OTHER)
        ctx = authenticate(request, lookup, SIGNING_NOW)
        assert ctx is not None
        self.assertIs(ctx.credential, OTHER)

    def test_unknown_access_key(self) -> None:
        request = self.signed(
            "GET",
            "http://localhost:8080/bucket/key",
            credential=FakeCredential("NOSUCHKEY", "x"),
        )
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW)
        self.assertEqual((error.code, error.status), ("InvalidAccessKeyId", 403))

    def test_skew(self) -> None:
        request = self.signed("GET", "http://localhost:8080/bucket/key")
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW + 900))
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW - 900))
        for now in (SIGNING_NOW + 901, SIGNING_NOW - 901):
            error = self.assertRaises(S3Error, authenticate, request, lookup, now)
            self.assertEqual((error.code, error.status), ("RequestTimeTooSkewed", 403))

    def test_region(self) -> None:
        request = self.signed("GET", "http://localhost:8080/bucket/key", region="eu-west-3")
        ctx = authenticate(request, lookup, SIGNING_NOW)
        assert ctx is not None
        self.assertEqual(ctx.region, "eu-west-3")
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW, region="eu-west-3"))
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW, region="us-east-1")
        self.assertEqual(error.code, "AuthorizationHeaderMalformed")
        self.assertIn("'eu-west-3' is wrong; expecting 'us-east-1'", error.message)

    def test_wrong_service(self) -> None:
        request = AWSRequest(method="GET", url="http://localhost:8080/bucket/key")
        botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ec2", "us-east-1").add_auth(request)
        error = self.assertRaises(S3Error, authenticate, from_botocore(request), lookup, SIGNING_NOW)
        self.assertEqual(error.code, "AuthorizationHeaderMalformed")
        self.assertIn("incorrect service 'ec2'", error.message)

    def test_no_auth(self) -> None:
        request = SigV4Request("GET", b"/bucket/key", b"prefix=a", headers(host="h"))
        self.assertIsNone(authenticate(request, lookup, SIGNING_NOW))


class MalformedHeaderAuthTests(SynchronousTestCase):
    """Malformed Authorization headers give the S3 error codes."""

    def request(self, authorization: str, **extra: str) -> SigV4Request:
        values = {
            "host": "localhost",
            "x_amz_date": "20240506T070809Z",
            "x_amz_content_sha256": "UNSIGNED-PAYLOAD",
            "authorization": authorization,
        }
        values.update(extra)
        return SigV4Request("GET", b"/b/k", b"", headers(**values))

    def code(self, request: SigV4Request) -> str:
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW)
        return error.code

    def auth(self, credential: str, signed: str = "host;x-amz-date", sig: str = "0" * 64) -> str:
        return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={sig}"

    def test_credential_shapes(self) -> None:
        for credential in (
            f"{ACCESS_KEY}/20240506/us-east-1/s3",
            f"{ACCESS_KEY}/20240506/us-east-1/s3/aws4_request/x",
            f"{ACCESS_KEY}//us-east-1/s3/aws4_request",
        ):
            request = self.request(self.auth(credential))
            self.assertEqual(self.code(request), "AuthorizationHeaderMalformed", credential)

    def test_terminator(self) -> None:
        request = self.request(self.auth(f"{ACCESS_KEY}/20240506/us-east-1/s3/aws5_request"))
        self.assertEqual(self.code(request), "AuthorizationHeaderMalformed")

    def test_scope_date_differs(self) -> None:
        request = self.request(self.auth(f"{ACCESS_KEY}/20240505/us-east-1/s3/aws4_request"))
        self.assertEqual(self.code(request), "AuthorizationHeaderMalformed")

    def test_missing_components(self) -> None:
        request = self.request(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240506/us-east-1/s3/aws4_request")
        self.assertEqual(self.code(request), "AuthorizationHeaderMalformed")
        self.assertEqual(self.code(self.request("AWS4-HMAC-SHA256 garbage")), "AuthorizationHeaderMalformed")

    def test_host_not_signed(self) -> None:
        request = self.request(
            self.auth(f"{ACCESS_KEY}/20240506/us-east-1/s3/aws4_request", signed="x-amz-date")
        )
        self.assertEqual(self.code(request), "AuthorizationHeaderMalformed")

    def test_sigv2(self) -> None:
        self.assertEqual(self.code(self.request(f"AWS {ACCESS_KEY}:c2lnbmF0dXJl")), "InvalidRequest")

    def test_missing_date(self) -> None:
        request = self.request(self.auth(f"{ACCESS_KEY}/20240506/us-east-1/s3/aws4_request"))
        received = dict(request.headers)
        del received["x-amz-date"]
        self.assertEqual(self.code(attrs.evolve(request, headers=received)), "AccessDenied")
        received["x-amz-date"] = ["2024-05-06T07:08:09Z"]
        self.assertEqual(self.code(attrs.evolve(request, headers=received)), "AccessDenied")

    def test_malformed_content_sha256(self) -> None:
        request = self.request(
            self.auth(f"{ACCESS_KEY}/20240506/us-east-1/s3/aws4_request"),
            x_amz_content_sha256="abc",
        )
        self.assertEqual(self.code(request), "InvalidArgument")

    def test_header_and_query_auth(self) -> None:
        request = attrs.evolve(
            self.request(self.auth(f"{ACCESS_KEY}/20240506/us-east-1/s3/aws4_request")),
            raw_query=b"X-Amz-Signature=00",
        )
        self.assertEqual(self.code(request), "InvalidArgument")


class DateHeaderTests(BotocoreMixin, SynchronousTestCase):
    def test_rfc1123_date_without_x_amz_date(self) -> None:
        """A client may date the request with C{Date} only."""
        request = AWSRequest(
            method="GET",
            url="http://localhost/bucket/key",
            headers={"Date": "Mon, 06 May 2024 07:08:09 GMT"},
        )
        auth = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1")
        auth.add_auth(request)
        received = from_botocore(request)
        # botocore also adds X-Amz-Date; drop it to exercise the Date path.
        received_headers = {k: v for k, v in received.headers.items() if k != "x-amz-date"}
        self.assertEqual(received_headers["date"], ["Mon, 06 May 2024 07:08:09 -0000"])
        signed = received_headers["authorization"][0]
        self.assertIn("SignedHeaders=date;host;", signed)
        request = attrs.evolve(received, headers=received_headers)
        ctx = authenticate(request, lookup, SIGNING_NOW)
        assert ctx is not None
        self.assertEqual(ctx.amz_date, "20240506T070809Z")

    def test_no_content_sha256_header(self) -> None:
        """
        Without x-amz-content-sha256 a signature over UNSIGNED-PAYLOAD or, for
        an empty body, over the empty hash is accepted.
        """
        request = self.signed("GET", "http://localhost/bucket/key")
        received = {k: v for k, v in request.headers.items() if k != "x-amz-content-sha256"}
        authorization = received["authorization"][0].replace("x-amz-content-sha256;", "")
        # Re-sign without the header: botocore always adds it, so sign by hand.
        ctx = _sign_by_hand(attrs.evolve(request, headers=received), authorization)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.SHA256)
        self.assertEqual(ctx.content_sha256, EMPTY_SHA256)


def _sign_by_hand(request: SigV4Request, authorization: str) -> AuthContext | None:
    """Sign C{request} (no x-amz-content-sha256, empty body) with botocore's primitives."""
    signed_headers = ["host", "x-amz-date"]
    auth = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1")
    canonical = "\n".join(
        [
            request.method,
            request.raw_path.decode(),
            "",
            "".join(f"{h}:{request.headers[h][0]}\n" for h in signed_headers),
            ";".join(signed_headers),
            EMPTY_SHA256,
        ]
    )
    import hashlib

    sts = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            request.headers["x-amz-date"][0],
            "20240506/us-east-1/s3/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = auth._sign(("AWS4" + SECRET_KEY).encode(), "20240506")
    for part in ("us-east-1", "s3", "aws4_request"):
        key = auth._sign(key, part)
    signature = auth._sign(key, sts, hex=True)
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240506/us-east-1/s3/aws4_request, "
        f"SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )
    received = {**request.headers, "authorization": [authorization]}
    return authenticate(attrs.evolve(request, headers=received), lookup, SIGNING_NOW)


class BotocorePresignedTests(BotocoreMixin, SynchronousTestCase):
    """URLs presigned by botocore's S3SigV4QueryAuth verify."""

    def test_methods_and_odd_key(self) -> None:
        url = "http://localhost:8080/bucket/" + encode_key(ODD_KEY)
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            request = self.presigned(method, url)
            ctx = authenticate(request, lookup, SIGNING_NOW + 10)
            assert ctx is not None
            self.assertEqual(ctx.payload_mode, PayloadMode.PRESIGNED)
            self.assertIsNone(ctx.content_sha256)

    def test_queries(self) -> None:
        for query in ("uploads", "list-type=2&prefix=a%2Fb&delimiter=%2F", "partNumber=1&uploadId=x"):
            request = self.presigned("GET", "http://localhost:8080/bucket/key?" + query)
            self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW), query)

    def test_security_token_tolerated(self) -> None:
        request = AWSRequest(method="GET", url="http://localhost/bucket/key")
        creds = Credentials(ACCESS_KEY, SECRET_KEY, token="session-token")
        S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=60).add_auth(request)
        received = from_botocore(request)
        self.assertIn(b"X-Amz-Security-Token=", received.raw_query)
        self.assertIsNotNone(authenticate(received, lookup, SIGNING_NOW))

    def test_signed_extra_header(self) -> None:
        request = self.presigned("PUT", "http://localhost/bucket/key", extra={"Content-Type": "image/png"})
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW))
        changed = attrs.evolve(request, headers={**request.headers, "content-type": ["text/html"]})
        error = self.assertRaises(S3Error, authenticate, changed, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_tampered_query(self) -> None:
        request = self.presigned("GET", "http://localhost:8080/bucket/key?prefix=a%2Fb")
        # Every byte outside X-Amz-Signature/X-Amz-Date values changes what
        # was signed (the date is checked for form first).
        query = request.raw_query
        signature_at = query.index(b"X-Amz-Signature=") + len(b"X-Amz-Signature=")
        for index in range(len(query)):
            if index >= signature_at:
                continue
            bad = attrs.evolve(request, raw_query=tampered(query, index))
            error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
            self.assertIn(
                error.code,
                (
                    "SignatureDoesNotMatch",
                    "AuthorizationQueryParametersError",
                    "InvalidAccessKeyId",
                    "AccessDenied",
                ),
                bad.raw_query,
            )

    def test_tampered_signature(self) -> None:
        request = self.presigned("GET", "http://localhost:8080/bucket/key")
        query = request.raw_query
        bad = attrs.evolve(request, raw_query=tampered(query, len(query) - 1, hex_only=True))
        error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_expired(self) -> None:
        request = self.presigned("GET", "http://localhost/bucket/key", expires=60)
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW + 60))
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW + 61)
        self.assertEqual((error.code, error.message), ("AccessDenied", "Request has expired"))

    def test_not_subject_to_skew(self) -> None:
        """An old (but unexpired) presigned URL is fine."""
        request = self.presigned("GET", "http://localhost/bucket/key", expires=604800)
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW + 6 * 86400))

    def test_future_dated(self) -> None:
        request = self.presigned("GET", "http://localhost/bucket/key")
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW - 900))
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW - 901)
        self.assertEqual(error.code, "AccessDenied")

    def test_expires_bounds(self) -> None:
        request = self.presigned("GET", "http://localhost/bucket/key", expires=60)
        for value, message in (
            (b"604801", "X-Amz-Expires must be less than a week (in seconds) that is 604800"),
            (b"-1", "X-Amz-Expires must be non-negative"),
            (b"abc", "X-Amz-Expires should be a number"),
            ("\u00b2".encode(), "X-Amz-Expires should be a number"),
        ):
            query = request.raw_query.replace(b"X-Amz-Expires=60", b"X-Amz-Expires=" + value)
            error = self.assertRaises(
                S3Error, authenticate, attrs.evolve(request, raw_query=query), lookup, SIGNING_NOW
            )
            self.assertEqual((error.code, error.message), ("AuthorizationQueryParametersError", message), value)

    def test_valid_for_zero_seconds_is_expired_at_once(self) -> None:
        request = self.presigned("GET", "http://localhost/bucket/key", expires=0)
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW)
        self.assertEqual((error.code, error.message), ("AccessDenied", "Request has expired"))

    def test_missing_parameter(self) -> None:
        request = self.presigned("GET", "http://localhost/bucket/key")
        for name in (b"X-Amz-Algorithm", b"X-Amz-Date", b"X-Amz-SignedHeaders", b"X-Amz-Expires"):
            query = b"&".join(p for p in request.raw_query.split(b"&") if not p.startswith(name + b"="))
            error = self.assertRaises(
                S3Error, authenticate, attrs.evolve(request, raw_query=query), lookup, SIGNING_NOW
            )
            self.assertEqual(error.code, "AuthorizationQueryParametersError", name)

    def test_region_and_service(self) -> None:
        request = self.presigned("GET", "http://localhost/bucket/key", region="ap-south-1")
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW, region="ap-south-1"))
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW, region="us-east-1")
        self.assertEqual(error.code, "AuthorizationQueryParametersError")
        wrong_service = attrs.evolve(request, raw_query=request.raw_query.replace(b"%2Fs3%2F", b"%2Fsqs%2F"))
        error = self.assertRaises(S3Error, authenticate, wrong_service, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "AuthorizationQueryParametersError")

    def test_unknown_key(self) -> None:
        request = self.presigned("GET", "http://localhost/bucket/key")
        query = request.raw_query.replace(ACCESS_KEY.encode(), b"NOSUCHKEY")
        error = self.assertRaises(
            S3Error, authenticate, attrs.evolve(request, raw_query=query), lookup, SIGNING_NOW
        )
        self.assertEqual(error.code, "InvalidAccessKeyId")

    def test_content_sha256_header(self) -> None:
        """A presigned request may commit to its body with x-amz-content-sha256."""
        digest = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        request = self.presigned("PUT", "http://localhost/bucket/key", extra={"X-Amz-Content-SHA256": digest})
        ctx = authenticate(request, lookup, SIGNING_NOW)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.PRESIGNED)
        self.assertEqual(ctx.content_sha256, digest)

    def test_sigv2_presigned(self) -> None:
        request = SigV4Request(
            "GET",
            b"/bucket/key",
            b"AWSAccessKeyId=AKID&Expires=1&Signature=abc",
            headers(host="localhost"),
        )
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "InvalidRequest")

    def test_context_repr_hides_keys(self) -> None:
        ctx = authenticate(self.presigned("GET", "http://localhost/b/k"), lookup, SIGNING_NOW)
        self.assertNotIn(SECRET_KEY, repr(ctx))
        assert ctx is not None
        self.assertNotIn(repr(ctx.signing_key), repr(ctx))


class AwsCrtTests(SynchronousTestCase):
    """Requests signed by the AWS Common Runtime signer (awscrt) verify."""

    def sign(
        self,
        method: str,
        path: str,
        body_value: str,
        signature_type: object = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> SigV4Request:
        from awscrt import auth, http

        config = auth.AwsSigningConfig(
            algorithm=auth.AwsSigningAlgorithm.V4,
            signature_type=signature_type or auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=auth.AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY),
            region="us-west-2",
            service="s3",
            date=SIGNING_TIME.replace(tzinfo=datetime.UTC),
            use_double_uri_encode=False,
            should_normalize_uri_path=False,
            signed_body_value=body_value,
            signed_body_header_type=(
                auth.AwsSignedBodyHeaderType.NONE
                if signature_type is not None
                else auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256
            ),
            expiration_in_seconds=600 if signature_type is not None else None,
        )
        request = http.HttpRequest(
            method, path, http.HttpHeaders([("host", "localhost:9000"), *(extra or [])])
        )
        signed = auth.aws_sign_request(request, config).result(10)
        raw_path, _, raw_query = signed.path.partition("?")
        received: dict[str, list[str]] = {}
        for name, value in signed.headers:
            received.setdefault(name.lower(), []).append(value)
        return SigV4Request(method, raw_path.encode(), raw_query.encode(), received)

    def test_header_modes(self) -> None:
        from awscrt.auth import AwsSignedBodyValue

        path = "/bucket/" + encode_key(ODD_KEY) + "?partNumber=2&uploadId=a%2Fb"
        for body_value, mode in [
            (AwsSignedBodyValue.STREAMING_AWS4_HMAC_SHA256_PAYLOAD, PayloadMode.STREAMING_SIGNED),
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.STREAMING_SIGNED_TRAILER),
            ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.STREAMING_UNSIGNED_TRAILER),
            (AwsSignedBodyValue.UNSIGNED_PAYLOAD, PayloadMode.UNSIGNED),
            (EMPTY_SHA256, PayloadMode.SHA256),
        ]:
            request = self.sign("PUT", path, body_value, extra=[("x-amz-meta-a", "  two   spaces ")])
            ctx = authenticate(request, lookup, SIGNING_NOW, region="us-west-2")
            assert ctx is not None
            self.assertEqual(ctx.payload_mode, mode)

    def test_presigned(self) -> None:
        from awscrt.auth import AwsSignatureType, AwsSignedBodyValue

        request = self.sign(
            "GET",
            "/bucket/" + encode_key(ODD_KEY) + "?versionId=3",
            AwsSignedBodyValue.UNSIGNED_PAYLOAD,
            signature_type=AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        )
        self.assertIn(b"X-Amz-Signature=", request.raw_query)
        ctx = authenticate(request, lookup, SIGNING_NOW + 600)
        assert ctx is not None
        self.assertEqual(ctx.payload_mode, PayloadMode.PRESIGNED)
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW + 601)
        self.assertEqual(error.message, "Request has expired")


NOT_SIGNED = "There were headers present in the request which were not signed"


def with_headers(request: SigV4Request, **added: str) -> SigV4Request:
    """C{request} with headers added after it was signed (names: C{_} for C{-})."""
    extra = {name.replace("_", "-"): [value] for name, value in added.items()}
    return attrs.evolve(request, headers={**request.headers, **extra})


class UnsignedHeaderTests(BotocoreMixin, SynchronousTestCase):
    """
    Every C{x-amz-*} header must be in SignedHeaders, as S3 requires: one
    added to a signed request would change what the signer authorised (a
    PUT into a copy, the stored metadata and tags, the trailer checked).
    """

    def assert_not_signed(self, request: SigV4Request, names: str) -> None:
        error = self.assertRaises(S3Error, authenticate, request, lookup, SIGNING_NOW)
        self.assertEqual((error.code, error.status, error.message), ("AccessDenied", 403, NOT_SIGNED))
        self.assertEqual(error.extra, {"HeadersNotSigned": names})
        self.assertIn(f"<HeadersNotSigned>{names}</HeadersNotSigned>".encode(), error.to_xml())

    def test_presigned_put_with_copy_source_refused(self) -> None:
        request = self.presigned("PUT", "http://localhost/bucket/key")
        self.assert_not_signed(with_headers(request, x_amz_copy_source="/bucket/secret"), "x-amz-copy-source")

    def test_presigned_put_with_injected_headers_refused(self) -> None:
        request = self.presigned("PUT", "http://localhost/bucket/key")
        for name in (
            "x-amz-meta-owner",
            "x-amz-tagging",
            "x-amz-metadata-directive",
            "x-amz-trailer",
            "x-amz-decoded-content-length",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-server-side-encryption",
        ):
            self.assert_not_signed(with_headers(request, **{name.replace("-", "_"): "1"}), name)

    def test_presigned_names_every_unsigned_header_in_request_order(self) -> None:
        request = self.presigned("PUT", "http://localhost/bucket/key")
        self.assert_not_signed(
            with_headers(request, x_amz_tagging="a=b", x_amz_copy_source="/b/k", x_amz_meta_a="1"),
            "x-amz-tagging, x-amz-copy-source, x-amz-meta-a",
        )

    def test_presigned_with_signed_amz_headers_accepted(self) -> None:
        request = self.presigned(
            "PUT",
            "http://localhost/bucket/key",
            extra={"x-amz-meta-owner": "me", "x-amz-tagging": "a=b", "X-Amz-Copy-Source": "/b/k"},
        )
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW))

    def test_presigned_with_other_unsigned_headers_accepted(self) -> None:
        """S3 requires only x-amz-* to be signed; x-amzn-trace-id is not one."""
        request = self.presigned("PUT", "http://localhost/bucket/key")
        added = with_headers(
            request,
            content_type="text/plain",
            content_md5="XUFAKrxLKna5cZ2REBfFkg==",
            range="bytes=0-1",
            x_amzn_trace_id="Root=1-abc",
            x_amz="bare",
        )
        self.assertIsNotNone(authenticate(added, lookup, SIGNING_NOW))

    def test_presigned_unsigned_content_sha256_is_bound_by_the_signature(self) -> None:
        """
        x-amz-content-sha256 is the payload hash line of the canonical request:
        a value the signer did not sign breaks the signature, so the header
        itself needs no place in SignedHeaders.
        """
        request = self.presigned("PUT", "http://localhost/bucket/key")
        added = with_headers(request, x_amz_content_sha256="UNSIGNED-PAYLOAD")
        self.assertIsNotNone(authenticate(added, lookup, SIGNING_NOW))
        streaming = with_headers(request, x_amz_content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        error = self.assertRaises(S3Error, authenticate, streaming, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_header_auth_with_unsigned_meta_refused(self) -> None:
        request = self.signed("PUT", "http://localhost/bucket/key", body=b"hello")
        self.assertIsNotNone(authenticate(request, lookup, SIGNING_NOW))
        self.assert_not_signed(with_headers(request, x_amz_meta_owner="mallory"), "x-amz-meta-owner")

    def test_header_auth_with_unsigned_copy_source_refused(self) -> None:
        request = self.signed("PUT", "http://localhost/bucket/key", payload="UNSIGNED-PAYLOAD")
        self.assert_not_signed(
            with_headers(request, x_amz_copy_source="/bucket/secret", x_amz_metadata_directive="REPLACE"),
            "x-amz-copy-source, x-amz-metadata-directive",
        )

    def test_header_auth_unsigned_content_sha256_accepted(self) -> None:
        """S3's one exception: x-amz-content-sha256 need not be signed with the Authorization header."""
        request = self.signed("GET", "http://localhost/bucket/key")
        received = {k: v for k, v in request.headers.items() if k != "x-amz-content-sha256"}
        unsigned = attrs.evolve(request, headers={**received, "x-amz-content-sha256": [EMPTY_SHA256]})
        ctx = _sign_by_hand(unsigned, "")
        assert ctx is not None
        self.assertEqual(ctx.content_sha256, EMPTY_SHA256)

    def test_bad_signature_reported_before_unsigned_headers(self) -> None:
        request = self.presigned("PUT", "http://localhost/bucket/key")
        query = tampered(request.raw_query, len(request.raw_query) - 1, hex_only=True)
        bad = with_headers(attrs.evolve(request, raw_query=query), x_amz_meta_a="1")
        error = self.assertRaises(S3Error, authenticate, bad, lookup, SIGNING_NOW)
        self.assertEqual(error.code, "SignatureDoesNotMatch")

    def test_anonymous_request_not_checked(self) -> None:
        """Nothing is signed, so nothing is borrowed: the caller decides whether anonymous is allowed."""
        received = headers(host="localhost", x_amz_copy_source="/b/k")
        request = SigV4Request("PUT", b"/bucket/key", b"", received)
        self.assertIsNone(authenticate(request, lookup, SIGNING_NOW))
