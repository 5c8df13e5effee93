"""
Tests for L{s3balance.auth.sigv2} and its dispatch (L{s3balance.auth.mechanism},
L{s3balance.s3.gateway.Gateway.prepare}, C{s3api.sigv2}).

Signatures come from botocore's own SigV2 signers (C{HmacV1Auth},
C{HmacV1QueryAuth}, and boto3 clients with C{signature_version='s3'}) and from
the worked examples of the Amazon S3 reference ("Signing and authenticating
REST requests"; credentials AKIAIOSFODNN7EXAMPLE).  The published signatures
are those of the examples' original bucket name, C{johnsmith}: the reference
later renamed the bucket in the text without signing again.

The integration tests at the end run boto3 and presigned URLs against a
running daemon.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import hashlib
import hmac
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import attrs
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from s3balance.auth import mechanism
from s3balance.auth.sigv2 import SIGNED_SUBRESOURCES, SigV2Request, authenticate
from s3balance.auth.sigv4 import PayloadMode, SigV4Request
from s3balance.config import ConfigError, parse_config
from s3balance.errors import S3Error
from s3balance.s3 import redirects
from s3balance.s3.call import S3Call
from s3balance.s3.gateway import OPERATION_PARAMETERS, Gateway
from s3balance.s3.routing import Target
from tests.daemon import ACCESS_KEY as DAEMON_ACCESS_KEY
from tests.daemon import SECRET_KEY as DAEMON_SECRET_KEY
from tests.daemon import shared_gateway
from tests.gateways import error_code, http, lazy_gateway, s3_client, s3_error
from tests.harness import harness_dir, run_s3cmd

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SIGNING_DATE = "Mon, 06 May 2024 07:08:09 GMT"
SIGNING_NOW = float(calendar.timegm((2024, 5, 6, 7, 8, 9)))
EXPIRES = int(SIGNING_NOW) + 3600
ODD_KEY = "a b/c~d!'()*+,;=@ü.txt"


@attrs.frozen
class FakeCredential:
    access_key: str
    secret_key: str = attrs.field(repr=False)


CREDENTIAL = FakeCredential(ACCESS_KEY, SECRET_KEY)


def lookup(access_key: str) -> FakeCredential | None:
    return CREDENTIAL if access_key == ACCESS_KEY else None


def sign(string_to_sign: str, secret: str = SECRET_KEY) -> str:
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def received(headers: Any) -> dict[str, list[str]]:
    """Header values as the HTTP face hands them over (lower-case names, str of latin-1)."""
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        out.setdefault(name.lower(), []).append(text)
    return out


def from_botocore(request: AWSRequest, virtual_bucket: str | None = None) -> SigV2Request:
    url = urlsplit(request.url)
    return SigV2Request(
        method=request.method,
        raw_path=url.path.encode("utf-8"),
        raw_query=url.query.encode("utf-8"),
        headers=received(request.headers),
        virtual_bucket=virtual_bucket,
    )


def encode_key(key: str) -> str:
    """How botocore's S3 serializer puts a key into the URL."""
    return quote(key, safe="/~")


class FixedDateAuth(HmacV1Auth):
    """botocore's SigV2 header signer at a fixed time."""

    def _get_date(self) -> str:
        return SIGNING_DATE


class FixedExpiresQueryAuth(HmacV1QueryAuth):
    """botocore's SigV2 query signer with a fixed Expires."""

    def _get_date(self) -> str:
        return str(EXPIRES)


CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)


def header_signed(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    auth_path: str | None = None,
    virtual_bucket: str | None = None,
) -> SigV2Request:
    request = AWSRequest(method=method, url=url, headers=headers or {}, auth_path=auth_path)
    FixedDateAuth(CREDENTIALS).add_auth(request)
    return from_botocore(request, virtual_bucket)


def query_signed(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    auth_path: str | None = None,
    virtual_bucket: str | None = None,
) -> SigV2Request:
    """A presigned URL from botocore; C{headers} are moved into it as botocore does (x-amz-*, content-*)."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, auth_path=auth_path)
    FixedExpiresQueryAuth(CREDENTIALS).add_auth(request)
    # The presigned request carries no header; the caller adds those it sends.
    return attrs.evolve(from_botocore(request, virtual_bucket), headers={})


def with_headers(request: SigV2Request, **values: str) -> SigV2Request:
    merged = {name: list(v) for name, v in request.headers.items()}
    for name, value in values.items():
        merged[name.replace("_", "-")] = [value]
    return attrs.evolve(request, headers=merged)


def with_query(request: SigV2Request, extra: str) -> SigV2Request:
    return attrs.evolve(request, raw_query=request.raw_query + b"&" + extra.encode())


def refused(request: SigV2Request, now: float = SIGNING_NOW, **kwargs: Any) -> S3Error:
    try:
        authenticate(request, lookup, now, **kwargs)
    except S3Error as error:
        return error
    raise AssertionError("the request was accepted")


# -- published examples --------------------------------------------------------


class PublishedExampleTests(SynchronousTestCase):
    """The worked examples of the Amazon S3 reference verify."""

    def request(
        self, method: str, path: str, date: str, signature: str, virtual_bucket: str | None, **headers: str
    ) -> SigV2Request:
        values = {"date": [date], "authorization": [f"AWS {ACCESS_KEY}:{signature}"]}
        values.update({name.replace("_", "-"): [value] for name, value in headers.items()})
        raw_path, _, raw_query = path.partition("?")
        return SigV2Request(method, raw_path.encode(), raw_query.encode(), values, virtual_bucket)

    def assertVerifies(self, request: SigV2Request) -> None:
        date = request.headers["date"][0]
        ctx = authenticate(request, lookup, parsedate_to_datetime(date).timestamp())
        self.assertEqual((ctx.credential, ctx.signature_version), (CREDENTIAL, 2))

    def test_object_get(self) -> None:
        self.assertVerifies(
            self.request(
                "GET", "/photos/puppy.jpg", "Tue, 27 Mar 2007 19:36:42 +0000", "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
                "johnsmith",
            )
        )

    def test_object_put(self) -> None:
        self.assertVerifies(
            self.request(
                "PUT", "/photos/puppy.jpg", "Tue, 27 Mar 2007 21:15:45 +0000", "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
                "johnsmith", content_type="image/jpeg", content_length="94328",
            )
        )

    def test_list_ignores_unsigned_query(self) -> None:
        self.assertVerifies(
            self.request(
                "GET", "/?prefix=photos&max-keys=50&marker=puppy", "Tue, 27 Mar 2007 19:42:41 +0000",
                "htDYFYduRNen8P9ZfE/s9SuKy0U=", "johnsmith", user_agent="Mozilla/5.0",
            )
        )

    def test_fetch_acl_subresource(self) -> None:
        self.assertVerifies(
            self.request(
                "GET", "/?acl", "Tue, 27 Mar 2007 19:44:46 +0000", "c2WLPFtWHVgbEmeEG93a4cG37dM=", "johnsmith"
            )
        )

    def test_path_style_delete(self) -> None:
        self.assertVerifies(
            self.request(
                "DELETE", "/johnsmith/photos/puppy.jpg", "Tue, 27 Mar 2007 21:20:26 +0000",
                "lx3byBScXR6KzyMaifNkardMwNk=", None,
            )
        )

    def test_upload_with_amz_headers_joined_and_sorted(self) -> None:
        request = self.request(
            "PUT", "/db-backup.dat.gz", "Tue, 27 Mar 2007 21:06:08 +0000", "ilyl83RwaSoYIEdixDQcA4OnAnc=",
            "static.johnsmith.net", x_amz_acl="public-read", content_type="application/x-download",
            content_md5="4gJE4saaMU4BqNR0kLY+lw==", x_amz_meta_filechecksum="0x02661779",
            x_amz_meta_checksumalgorithm="crc32", content_disposition="attachment; filename=database.dat",
            content_encoding="gzip", content_length="5913339",
        )
        headers = dict(request.headers)
        headers["x-amz-meta-reviewedby"] = ["joe@johnsmith.net", "jane@johnsmith.net"]
        self.assertVerifies(attrs.evolve(request, headers=headers))

    def test_list_all_my_buckets(self) -> None:
        self.assertVerifies(
            self.request("GET", "/", "Wed, 28 Mar 2007 01:29:59 +0000", "qGdzdERIC03wnaRNKh6OqZehG9s=", None)
        )

    def test_unicode_keys_signed_as_encoded(self) -> None:
        self.assertVerifies(
            self.request(
                "GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", "Wed, 28 Mar 2007 01:49:49 +0000",
                "DNEZGsoieTZ92F3bUfSPQcbGmlM=", None,
            )
        )

    def test_query_string_authentication(self) -> None:
        request = SigV2Request(
            "GET",
            b"/photos/puppy.jpg",
            b"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620",
            {},
            "johnsmith",
        )
        ctx = authenticate(request, lookup, 1175139620 - 60)
        self.assertEqual(ctx.payload_mode, PayloadMode.PRESIGNED)


# -- header authentication, signed by botocore ---------------------------------


class HeaderAuthTests(SynchronousTestCase):
    def verify(self, request: SigV2Request, **kwargs: Any) -> None:
        ctx = authenticate(request, lookup, SIGNING_NOW, **kwargs)
        self.assertEqual(ctx.credential, CREDENTIAL)
        self.assertEqual(ctx.signature_version, 2)

    def test_get_object(self) -> None:
        self.verify(header_signed("GET", "http://h/bucket/key"))

    def test_odd_key(self) -> None:
        self.verify(header_signed("PUT", f"http://h/bucket/{encode_key(ODD_KEY)}"))

    def test_key_with_plus_and_space_as_sent(self) -> None:
        """The path is signed exactly as sent: a '+' and a '%20' stay what they are."""
        self.verify(header_signed("GET", "http://h/bucket/a+b%20c"))
        request = header_signed("GET", "http://h/bucket/a+b")
        self.assertEqual(refused(attrs.evolve(request, raw_path=b"/bucket/a%2Bb")).code, "SignatureDoesNotMatch")

    def test_unicode_key(self) -> None:
        self.verify(header_signed("GET", "http://h/bucket/" + encode_key("ünï/ｃｏｄｅ")))

    def test_content_md5_and_type_are_signed(self) -> None:
        request = header_signed(
            "PUT",
            "http://h/bucket/key",
            {"Content-Type": "text/plain", "Content-MD5": "XrY7u+Ae7tCTyyK7j1rNww=="},
        )
        self.verify(request)
        self.assertEqual(refused(with_headers(request, content_type="text/html")).code, "SignatureDoesNotMatch")
        self.assertEqual(
            refused(with_headers(request, content_md5="1B2M2Y8AsgTpgAmY7PhCfg==")).code, "SignatureDoesNotMatch"
        )

    def test_amz_headers_are_signed(self) -> None:
        request = header_signed("PUT", "http://h/bucket/key", {"x-amz-meta-colour": "blue"})
        self.verify(request)
        self.assertEqual(
            refused(with_headers(request, x_amz_meta_colour="red")).code, "SignatureDoesNotMatch"
        )
        added = with_headers(request, x_amz_copy_source="/other/secret")
        self.assertEqual(refused(added).code, "SignatureDoesNotMatch")

    def test_subresources_sorted(self) -> None:
        self.verify(header_signed("PUT", "http://h/bucket/key?uploadId=abc&partNumber=3"))
        self.verify(header_signed("GET", "http://h/bucket/key?versionId=v1&acl"))

    def test_subresource_order_is_by_name(self) -> None:
        """The string to sign lists sub-resources by name, whatever their order in the URL."""
        string = f"GET\n\n\n{SIGNING_DATE}\n/bucket/key?acl&versionId=v1"
        for query in (b"versionId=v1&acl", b"acl&versionId=v1"):
            request = SigV2Request(
                "GET", b"/bucket/key", query,
                {"date": [SIGNING_DATE], "authorization": [f"AWS {ACCESS_KEY}:{sign(string)}"]},
            )
            self.verify(request)

    def test_subresource_values_signed_decoded(self) -> None:
        self.verify(
            header_signed(
                "GET",
                "http://h/bucket/key?response-content-disposition="
                + quote('attachment; filename="a b.txt"', safe="")
                + "&response-content-type=text%2Fplain",
            )
        )

    def test_changed_subresource_value_fails(self) -> None:
        request = header_signed("GET", "http://h/bucket/key?versionId=v1")
        changed = attrs.evolve(request, raw_query=b"versionId=v2")
        self.assertEqual(refused(changed).code, "SignatureDoesNotMatch")

    def test_subresource_smuggled_in_a_value_refused(self) -> None:
        """partNumber=1%26uploadId%3DU signs like partNumber=1&uploadId=U but means something else."""
        request = header_signed("PUT", "http://h/bucket/key?partNumber=1&uploadId=U")
        self.verify(request)
        merged = attrs.evolve(request, raw_query=b"partNumber=1%26uploadId%3DU")
        error = refused(merged)
        self.assertEqual((error.code, error.extra["ArgumentName"]), ("InvalidArgument", "partNumber"))
        # An '&' in a value is fine otherwise.
        self.verify(
            header_signed("GET", "http://h/bucket/key?response-content-disposition=" + quote("a&b=c.txt", safe=""))
        )

    def test_empty_subresource_value_both_forms(self) -> None:
        """C{uploads=} is signed as sent by botocore, as C{uploads} by minio-go: both verify."""
        self.verify(header_signed("POST", "http://h/bucket/key?uploads="))
        string = f"POST\n\n\n{SIGNING_DATE}\n/bucket/key?uploads"
        request = SigV2Request(
            "POST", b"/bucket/key", b"uploads=",
            {"date": [SIGNING_DATE], "authorization": [f"AWS {ACCESS_KEY}:{sign(string)}"]},
        )
        self.verify(request)

    def test_unsigned_parameters_are_accepted_as_in_s3(self) -> None:
        request = header_signed("GET", "http://h/bucket?prefix=a", auth_path="/bucket/")
        self.verify(with_query(request, "max-keys=1&marker=x"), operation_parameters=OPERATION_PARAMETERS)

    def test_unsigned_operation_parameter_refused(self) -> None:
        """attributes (GetObjectAttributes) is not among SigV2's sub-resources: refused unsigned."""
        for extra in ("attributes",):
            request = header_signed("GET", "http://h/bucket/key")
            error = refused(with_query(request, extra), operation_parameters=OPERATION_PARAMETERS)
            self.assertEqual((error.code, error.status), ("AccessDenied", 403), extra)
            self.assertEqual(error.extra["QueryParametersNotSigned"], extra.split("=")[0])

    def test_signed_operation_parameter_accepted(self) -> None:
        self.verify(
            header_signed("GET", "http://h/bucket/key?tagging"), operation_parameters=OPERATION_PARAMETERS
        )

    def test_bucket_path_style_without_slash(self) -> None:
        """botocore signs GET /bucket as /bucket/; a client signing /bucket verifies too."""
        self.verify(header_signed("GET", "http://h/bucket?prefix=p", auth_path="/bucket/"))
        self.verify(header_signed("GET", "http://h/bucket?prefix=p"))

    def test_virtual_host_resource_includes_bucket(self) -> None:
        request = header_signed("GET", "http://bucket.s3.test/dir/key", auth_path="/bucket/dir/key")
        self.verify(attrs.evolve(request, virtual_bucket="bucket"))
        # The same signature does not name another bucket.
        self.assertEqual(
            refused(attrs.evolve(request, virtual_bucket="other")).code, "SignatureDoesNotMatch"
        )
        # Nor a path-style request for the key alone.
        self.assertEqual(refused(request).code, "SignatureDoesNotMatch")

    def test_virtual_host_bucket_root(self) -> None:
        request = header_signed("GET", "http://bucket.s3.test/?acl", auth_path="/bucket/")
        self.verify(attrs.evolve(request, virtual_bucket="bucket"))

    def test_x_amz_date_replaces_date(self) -> None:
        string = f"DELETE\n\n\n\nx-amz-date:{SIGNING_DATE}\n/bucket/key"
        request = SigV2Request(
            "DELETE", b"/bucket/key", b"",
            {
                "date": ["Thu, 01 Jan 1970 00:00:00 GMT"],
                "x-amz-date": [SIGNING_DATE],
                "authorization": [f"AWS {ACCESS_KEY}:{sign(string)}"],
            },
        )
        self.verify(request)

    def test_wrong_secret(self) -> None:
        request = header_signed("GET", "http://h/bucket/key")
        other = AWSRequest(method="GET", url="http://h/bucket/key")
        FixedDateAuth(Credentials(ACCESS_KEY, "not-the-secret")).add_auth(other)
        error = refused(from_botocore(other))
        self.assertEqual((error.code, error.status), ("SignatureDoesNotMatch", 403))
        string = f"GET\n\n\n{SIGNING_DATE}\n/bucket/key"
        provided = from_botocore(other).headers["authorization"][0].split(":", 1)[1]
        self.assertEqual(error.extra["StringToSign"], string)
        self.assertEqual(error.extra["SignatureProvided"], provided)
        self.assertEqual(error.extra["AWSAccessKeyId"], ACCESS_KEY)
        self.assertEqual(error.extra["StringToSignBytes"], " ".join(f"{b:02x}" for b in string.encode()))
        body = error.to_xml().decode()
        self.assertNotIn(SECRET_KEY, body)
        self.assertIn("<StringToSign>GET\n", body)
        self.assertTrue(authenticate(request, lookup, SIGNING_NOW))

    def test_signature_not_base64(self) -> None:
        request = header_signed("GET", "http://h/bucket/key")
        broken = with_headers(request, authorization=f"AWS {ACCESS_KEY}:not*base64")
        self.assertEqual(refused(broken).code, "SignatureDoesNotMatch")

    def test_unknown_key(self) -> None:
        request = AWSRequest(method="GET", url="http://h/bucket/key")
        FixedDateAuth(Credentials("UNKNOWNKEY", SECRET_KEY)).add_auth(request)
        error = refused(from_botocore(request))
        self.assertEqual((error.code, error.status), ("InvalidAccessKeyId", 403))
        self.assertEqual(error.extra["AWSAccessKeyId"], "UNKNOWNKEY")

    def test_skew(self) -> None:
        request = header_signed("GET", "http://h/bucket/key")
        for offset in (-16 * 60, 16 * 60):
            error = refused(request, now=SIGNING_NOW + offset)
            self.assertEqual((error.code, error.status), ("RequestTimeTooSkewed", 403))
            self.assertEqual(error.extra["RequestTime"], SIGNING_DATE)
            self.assertEqual(error.extra["MaxAllowedSkewMilliseconds"], "900000")
        for offset in (-14 * 60, 14 * 60):
            self.assertTrue(authenticate(request, lookup, SIGNING_NOW + offset))

    def test_missing_or_invalid_date(self) -> None:
        request = header_signed("GET", "http://h/bucket/key")
        no_date = attrs.evolve(request, headers={k: v for k, v in request.headers.items() if k != "date"})
        bad_date = with_headers(request, date="yesterday")
        bad_amz_date = with_headers(request, x_amz_date="soon")
        # Before 1970 is no date to S3 (not a skewed one).
        before_1970 = with_headers(request, x_amz_date="Tue, 07 Jul 1950 21:53:04 GMT")
        for broken in (no_date, bad_date, bad_amz_date, before_1970):
            error = refused(broken)
            self.assertEqual((error.code, error.status), ("AccessDenied", 403))
            self.assertEqual(error.message, "AWS authentication requires a valid Date or x-amz-date header")

    def test_malformed_authorization(self) -> None:
        request = header_signed("GET", "http://h/bucket/key")
        for value in ("AWS", f"AWS {ACCESS_KEY}", f"AWS {ACCESS_KEY}:", "AWS :c2ln", "AWS a:b:c"):
            error = refused(with_headers(request, authorization=value))
            self.assertEqual((error.code, error.status), ("InvalidArgument", 400), value)
            self.assertEqual(error.message, "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature")
            self.assertEqual(error.extra["ArgumentName"], "Authorization")

    def test_content_sha256_is_verified_later(self) -> None:
        digest = hashlib.sha256(b"body").hexdigest().upper()
        ctx = authenticate(
            header_signed("PUT", "http://h/bucket/key", {"x-amz-content-sha256": digest}), lookup, SIGNING_NOW
        )
        self.assertEqual((ctx.payload_mode, ctx.content_sha256), (PayloadMode.SHA256, digest.lower()))
        ctx = authenticate(header_signed("PUT", "http://h/bucket/key"), lookup, SIGNING_NOW)
        self.assertEqual((ctx.payload_mode, ctx.content_sha256), (PayloadMode.UNSIGNED, None))

    def test_unsigned_trailer_body_accepted(self) -> None:
        request = header_signed(
            "PUT", "http://h/bucket/key", {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
        )
        ctx = authenticate(request, lookup, SIGNING_NOW)
        self.assertEqual(ctx.payload_mode, PayloadMode.STREAMING_UNSIGNED_TRAILER)

    def test_signed_chunks_need_sigv4(self) -> None:
        request = header_signed(
            "PUT", "http://h/bucket/key", {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
        )
        self.assertEqual(refused(request).code, "InvalidRequest")

    def test_context_repr_hides_secret(self) -> None:
        ctx = authenticate(header_signed("GET", "http://h/bucket/key"), lookup, SIGNING_NOW)
        self.assertNotIn(SECRET_KEY, repr(ctx))
        self.assertIn("signature_version=2", repr(ctx))

    def test_signed_subresources_cover_botocores(self) -> None:
        """Every sub-resource botocore signs is signed here too (else its requests would not verify)."""
        self.assertEqual(set(HmacV1Auth.QSAOfInterest) - SIGNED_SUBRESOURCES, set())


# -- query authentication, presigned by botocore -------------------------------


class QueryAuthTests(SynchronousTestCase):
    def verify(self, request: SigV2Request, now: float = SIGNING_NOW) -> None:
        ctx = authenticate(request, lookup, now)
        self.assertEqual((ctx.credential, ctx.signature_version), (CREDENTIAL, 2))
        self.assertEqual(ctx.payload_mode, PayloadMode.PRESIGNED)

    def test_get(self) -> None:
        self.verify(query_signed("GET", "http://h/bucket/" + encode_key(ODD_KEY)))

    def test_get_with_signed_overrides_and_version(self) -> None:
        url = "http://h/bucket/key?response-content-type=text%2Fplain&versionId=null"
        self.verify(query_signed("GET", url))

    def test_virtual_host(self) -> None:
        self.verify(query_signed("GET", "http://bucket.s3.test/key", auth_path="/bucket/key", virtual_bucket="bucket"))

    def test_until_it_expires(self) -> None:
        request = query_signed("GET", "http://h/bucket/key")
        self.verify(request, now=EXPIRES)
        error = refused(request, now=EXPIRES + 1)
        self.assertEqual((error.code, error.status, error.message), ("AccessDenied", 403, "Request has expired"))
        expires = datetime.datetime.fromtimestamp(EXPIRES, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.assertEqual(error.extra["Expires"], expires)
        self.assertIn("ServerTime", error.extra)

    def test_signature_with_unencoded_plus(self) -> None:
        request = query_signed("GET", "http://h/bucket/key")
        pairs = parse_qsl(request.raw_query.decode())
        signature = dict(pairs)["Signature"]
        if "+" not in signature:
            # Find a key whose signature has a '+', to send it unencoded.
            for index in range(200):
                request = query_signed("GET", f"http://h/bucket/key{index}")
                signature = dict(parse_qsl(request.raw_query.decode()))["Signature"]
                if "+" in signature:
                    break
        raw = request.raw_query.decode().replace(quote(signature, safe=""), signature)
        self.assertIn("+", raw)
        self.verify(attrs.evolve(request, raw_query=raw.encode()))

    def test_edited_query_refused(self) -> None:
        """A shared URL cannot be edited: parameters outside the signature are refused."""
        request = query_signed("GET", "http://h/bucket?prefix=public%2F", auth_path="/bucket/")
        error = refused(request)
        self.assertEqual((error.code, error.status), ("AccessDenied", 403))
        self.assertEqual(error.extra["QueryParametersNotSigned"], "prefix")
        request = query_signed("GET", "http://h/bucket/key")
        for extra in ("list-type=2", "s3balance-proxy=true", "attributes", "max-keys=1"):
            error = refused(with_query(request, extra))
            self.assertEqual(error.code, "AccessDenied", extra)
            self.assertEqual(error.extra["QueryParametersNotSigned"], extra.split("=")[0])

    def test_added_signed_subresource_fails_signature(self) -> None:
        request = query_signed("GET", "http://h/bucket/key")
        self.assertEqual(refused(with_query(request, "acl")).code, "SignatureDoesNotMatch")

    def test_presigned_put_with_metadata_and_type(self) -> None:
        """botocore moves x-amz-* and Content-Type into the URL: x-amz-* is signed from there."""
        request = query_signed(
            "PUT", "http://h/bucket/key", {"Content-Type": "text/plain", "x-amz-meta-colour": "blue"}
        )
        self.assertIn(b"x-amz-meta-colour=blue", request.raw_query)
        self.assertIn(b"content-type=text%2Fplain", request.raw_query)
        # The client sends the signed Content-Type, as S3 wants.
        self.verify(with_headers(request, content_type="text/plain"))
        self.assertEqual(refused(request).code, "SignatureDoesNotMatch")
        error = refused(with_headers(request, content_type="text/html"))
        self.assertEqual(error.code, "SignatureDoesNotMatch")
        # The metadata cannot be changed in the URL.
        edited = attrs.evolve(request, raw_query=request.raw_query.replace(b"colour=blue", b"colour=red"))
        self.assertEqual(refused(with_headers(edited, content_type="text/plain")).code, "SignatureDoesNotMatch")

    def test_content_type_parameter_must_match_the_header(self) -> None:
        request = query_signed("PUT", "http://h/bucket/key", {"Content-Type": "text/plain"})
        # Signed for the header's value, but the URL names another: not covered.
        moved = attrs.evolve(request, raw_query=request.raw_query.replace(b"text%2Fplain", b"text%2Fhtml"))
        error = refused(with_headers(moved, content_type="text/plain"))
        self.assertEqual((error.code, error.extra.get("QueryParametersNotSigned")), ("AccessDenied", "content-type"))

    def test_amz_header_added_to_presigned_put_fails(self) -> None:
        """Every x-amz-* header is in the string to sign: x-amz-copy-source cannot be added."""
        request = query_signed("PUT", "http://h/bucket/key")
        self.assertEqual(
            refused(with_headers(request, x_amz_copy_source="/bucket/secret")).code, "SignatureDoesNotMatch"
        )
        self.assertEqual(refused(with_query(request, "x-amz-copy-source=%2Fbucket%2Fsecret")).code, "SignatureDoesNotMatch")

    def test_amz_parameter_and_header_disagree(self) -> None:
        request = query_signed("PUT", "http://h/bucket/key", {"x-amz-meta-colour": "blue"})
        self.verify(with_headers(request, x_amz_meta_colour="blue"))
        error = refused(with_headers(request, x_amz_meta_colour="red"))
        self.assertEqual((error.code, error.extra["ArgumentName"]), ("InvalidArgument", "x-amz-meta-colour"))
        twice = with_query(request, "x-amz-meta-colour=blue")
        self.assertEqual(refused(twice).code, "InvalidArgument")

    def test_missing_parameters(self) -> None:
        request = query_signed("GET", "http://h/bucket/key")
        pairs = parse_qsl(request.raw_query.decode())
        for left_out in ("AWSAccessKeyId", "Expires", "Signature"):
            query = urlencode([(k, v) for k, v in pairs if k != left_out]).encode()
            error = refused(attrs.evolve(request, raw_query=query))
            self.assertEqual(error.code, "AccessDenied", left_out)
            self.assertEqual(
                error.message,
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
            )

    def test_invalid_expires(self) -> None:
        request = query_signed("GET", "http://h/bucket/key")
        for value in ("soon", "-5", "1.5", "²"):
            query = request.raw_query.replace(f"Expires={EXPIRES}".encode(), f"Expires={quote(value)}".encode())
            error = refused(attrs.evolve(request, raw_query=query))
            self.assertEqual(
                (error.code, error.message), ("AccessDenied", f"Invalid date (should be seconds since epoch): {value}")
            )

    def test_unknown_key(self) -> None:
        request = AWSRequest(method="GET", url="http://h/bucket/key")
        FixedExpiresQueryAuth(Credentials("UNKNOWNKEY", SECRET_KEY)).add_auth(request)
        self.assertEqual(refused(from_botocore(request)).code, "InvalidAccessKeyId")

    def test_wrong_signature_shows_string_to_sign(self) -> None:
        request = query_signed("GET", "http://h/bucket/key")
        query = request.raw_query.replace(b"Signature=", b"Signature=AAAA")
        error = refused(attrs.evolve(request, raw_query=query))
        self.assertEqual(error.code, "SignatureDoesNotMatch")
        self.assertEqual(error.extra["StringToSign"], f"GET\n\n\n{EXPIRES}\n/bucket/key")


_QUERY_PIECES = st.sampled_from(
    ["AWSAccessKeyId=" + ACCESS_KEY, "Signature=c2ln", "Signature=", "Expires=9999999999", "Expires=",
     "acl", "uploads=", "versionId=%FF", "x-amz-meta-a=%FF", "x-amz-meta-a=1", "prefix=a+b", "%", "=",
     "content-type=x", "list-type=2", "X-Amz-Signature=a", "Expires=" + "9" * 5000]
)
_HEADER_NAMES = st.sampled_from(
    ["authorization", "date", "x-amz-date", "content-type", "content-md5", "x-amz-meta-a",
     "x-amz-content-sha256"]
)
_HEADER_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [f"AWS {ACCESS_KEY}:c2ln", "AWS ", "AWS :", SIGNING_DATE, "Mon, 99 Foo 2024 99:99:99 GMT",
         "99991231T235959Z", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "UNSIGNED-PAYLOAD", "garbage"]
    ),
)


class HostileInputTests(SynchronousTestCase):
    """Whatever arrives, the answer is an AuthContext or an S3Error, never another exception."""

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(
        method=st.sampled_from(["GET", "PUT", "ü", ""]),
        path=st.binary(max_size=30),
        query=st.lists(st.one_of(_QUERY_PIECES, st.text(max_size=12)), max_size=6),
        headers=st.dictionaries(_HEADER_NAMES, st.lists(_HEADER_VALUES, min_size=1, max_size=2), max_size=6),
        virtual_bucket=st.one_of(st.none(), st.text(max_size=8)),
        now=st.floats(min_value=0, max_value=4e9),
    )
    def test_no_crash(
        self,
        method: str,
        path: bytes,
        query: list[str],
        headers: dict[str, list[str]],
        virtual_bucket: str | None,
        now: float,
    ) -> None:
        raw_query = "&".join(query).encode("utf-8", "surrogatepass")
        request = SigV4Request(method, path, raw_query, headers)
        try:
            mechanism.authenticate(request, lookup, now, virtual_bucket=virtual_bucket)
        except S3Error as error:
            error.to_xml("/r", "id")


# -- the dispatch: one mechanism, the switch ----------------------------------


def sigv4_request(raw_query: bytes = b"", **headers: str) -> SigV4Request:
    values = {name.replace("_", "-"): [value] for name, value in headers.items()}
    values.setdefault("host", ["h"])
    return SigV4Request("GET", b"/bucket/key", raw_query, values)


class MechanismTests(SynchronousTestCase):
    def dispatch(self, request: SigV4Request, **kwargs: Any) -> Any:
        return mechanism.authenticate(request, lookup, SIGNING_NOW, **kwargs)

    def refused(self, request: SigV4Request, **kwargs: Any) -> S3Error:
        return self.assertRaises(S3Error, self.dispatch, request, **kwargs)

    def v2_header(self) -> SigV4Request:
        signed = header_signed("GET", "http://h/bucket/key")
        return SigV4Request("GET", signed.raw_path, signed.raw_query, dict(signed.headers, host=["h"]))

    def v2_query(self) -> SigV4Request:
        signed = query_signed("GET", "http://h/bucket/key")
        return SigV4Request("GET", signed.raw_path, signed.raw_query, {"host": ["h"]})

    def test_sigv2_header_and_query_dispatched(self) -> None:
        for request in (self.v2_header(), self.v2_query()):
            self.assertEqual(self.dispatch(request).signature_version, 2)

    def test_anonymous(self) -> None:
        self.assertIsNone(self.dispatch(sigv4_request(b"Expires=1")))

    def test_an_empty_authorization_header_is_anonymous(self) -> None:
        for empty in ("", "  "):
            request = SigV4Request("GET", b"/bucket/key", b"", {"host": ["h"], "authorization": [empty]})
            self.assertIsNone(self.dispatch(request))

    def assertOnlyOne(self, request: SigV4Request) -> None:
        error = self.refused(request)
        self.assertEqual((error.code, error.status), ("InvalidArgument", 400))
        self.assertTrue(error.message.startswith("Only one auth mechanism allowed"), error.message)

    def test_header_and_sigv2_query(self) -> None:
        header = self.v2_header()
        query = self.v2_query()
        self.assertOnlyOne(attrs.evolve(query, headers=dict(query.headers, **header.headers)))

    def test_sigv4_header_and_sigv2_query(self) -> None:
        query = self.v2_query()
        self.assertOnlyOne(
            attrs.evolve(query, headers=dict(query.headers, authorization=["AWS4-HMAC-SHA256 Credential=x"]))
        )

    def test_sigv2_header_and_sigv4_query(self) -> None:
        header = self.v2_header()
        self.assertOnlyOne(attrs.evolve(header, raw_query=b"X-Amz-Signature=abc"))

    def test_sigv2_and_sigv4_query(self) -> None:
        query = self.v2_query()
        self.assertOnlyOne(attrs.evolve(query, raw_query=query.raw_query + b"&X-Amz-Algorithm=AWS4-HMAC-SHA256"))

    def test_switched_off(self) -> None:
        for request in (self.v2_header(), self.v2_query()):
            error = self.refused(request, sigv2_enabled=False)
            self.assertEqual((error.code, error.status), ("InvalidRequest", 400))
            self.assertEqual(
                error.message,
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
            )

    def test_unknown_scheme_still_unsupported(self) -> None:
        self.assertEqual(self.refused(sigv4_request(authorization="Bearer token")).code, "InvalidRequest")


# -- real boto3 clients, their requests captured -----------------------------------


# What botocore raises on the empty fake answer; the request was sent by then.
_UNPARSED = (ClientError, KeyError, AttributeError, TypeError, ET.ParseError)


class _NoBody:
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield b""


class Boto3ClientTests(SynchronousTestCase):
    """Requests of a boto3 client with C{signature_version='s3'}, verified as the gateway would."""

    def setUp(self) -> None:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
        )
        self.client = session.client(
            "s3",
            endpoint_url="http://h:9000",
            config=Config(signature_version="s3", retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )
        self.sent: list[AWSRequest] = []
        self.client.meta.events.register("before-send.s3", self.capture)

    def capture(self, request: AWSRequest, **kwargs: Any) -> AWSResponse:
        self.sent.append(request)
        return AWSResponse(request.url, 200, {}, _NoBody())

    def verify_last(self) -> None:
        request = self.sent[-1]
        url = urlsplit(request.url)
        headers = received(request.headers)
        now = parsedate_to_datetime(headers["date"][0]).timestamp()
        ctx = mechanism.authenticate(
            SigV4Request(request.method, url.path.encode(), url.query.encode(), headers),
            lookup,
            now,
            operation_parameters=OPERATION_PARAMETERS,
        )
        assert ctx is not None
        self.assertEqual(ctx.signature_version, 2)

    def call(self, operation: str, **params: Any) -> None:
        try:
            getattr(self.client, operation)(**params)
        except _UNPARSED:
            pass
        self.verify_last()

    def test_operations(self) -> None:
        self.call("list_buckets")
        self.call("create_bucket", Bucket="bucket")
        self.call("put_object", Bucket="bucket", Key=ODD_KEY, Body=b"data", ContentType="text/plain", Metadata={"a": "b"})
        self.call("get_object", Bucket="bucket", Key=ODD_KEY, ResponseContentDisposition="attachment")
        self.call("list_objects", Bucket="bucket", Prefix="a b/")
        self.call("create_multipart_upload", Bucket="bucket", Key="mp")
        self.call("upload_part", Bucket="bucket", Key="mp", UploadId="u+1/=", PartNumber=1, Body=b"part")
        self.call("list_parts", Bucket="bucket", Key="mp", UploadId="u+1/=")
        self.call("delete_objects", Bucket="bucket", Delete={"Objects": [{"Key": "a"}]})
        self.call("get_bucket_location", Bucket="bucket")
        self.call("delete_object", Bucket="bucket", Key=ODD_KEY)

    def test_list_objects_v2_is_accepted(self) -> None:
        """SigV2 does not sign list-type, which only picks the listing's format: accepted, as in S3."""
        try:
            self.client.list_objects_v2(Bucket="bucket")
        except _UNPARSED:
            pass
        self.verify_last()

    def test_presigned_urls(self) -> None:
        for operation, params in (
            ("get_object", {"Key": ODD_KEY}),
            ("get_object", {"Key": "k", "ResponseContentType": "text/plain", "VersionId": "null"}),
            ("head_object", {"Key": "k"}),
            ("delete_object", {"Key": "k"}),
            ("put_object", {"Key": "k", "Metadata": {"a": "b"}}),
        ):
            url = urlsplit(
                self.client.generate_presigned_url(operation, Params={"Bucket": "bucket", **params}, ExpiresIn=60)
            )
            method = {"get_object": "GET", "head_object": "HEAD", "delete_object": "DELETE"}.get(operation, "PUT")
            ctx = mechanism.authenticate(
                SigV4Request(method, url.path.encode(), url.query.encode(), {"host": ["h:9000"]}),
                lookup,
                time.time(),
                operation_parameters=OPERATION_PARAMETERS,
            )
            assert ctx is not None
            self.assertEqual(ctx.payload_mode, PayloadMode.PRESIGNED, operation)


# -- the gateway's dispatch, in process -----------------------------------------


class _FakeRequest:
    def __init__(self, method: bytes, uri: bytes, headers: dict[str, str]) -> None:
        self.method = method
        self.uri = uri
        self.requestHeaders = Headers({name.encode(): [value.encode("latin-1")] for name, value in headers.items()})

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def isSecure(self) -> bool:
        return False


def gateway_config(**s3api: Any) -> Any:
    return parse_config(
        {
            "buckets": [
                {"name": "real-a", "endpoint": "http://127.0.0.1:8333", "path_style": True},
                {"name": "demo", "virtual": True},
            ],
            "s3api": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, **s3api},
        }
    )


class GatewayDispatchTests(SynchronousTestCase):
    """L{Gateway.prepare} passes the virtual-host bucket, the switch and the operation parameters."""

    def gateway(self, **s3api: Any) -> Gateway:
        gateway = Gateway(gateway_config(**s3api), store=None, pool=None, strategy=None, reactor=None)  # type: ignore[arg-type]
        gateway.clock = lambda: SIGNING_NOW
        return gateway

    def prepare(self, gateway: Gateway, request: AWSRequest, host: str) -> S3Call:
        url = urlsplit(request.url)
        headers = {name: (v.decode("latin-1") if isinstance(v, bytes) else v) for name, v in request.headers.items()}
        headers["Host"] = host
        uri = url.path + (f"?{url.query}" if url.query else "")
        return gateway.prepare(_FakeRequest(request.method.encode(), uri.encode(), headers), None)  # type: ignore[arg-type]

    def test_virtual_host_request(self) -> None:
        gateway = self.gateway(virtual_host="s3.test")
        request = AWSRequest(method="GET", url="http://demo.s3.test/dir/key", auth_path="/demo/dir/key")
        FixedDateAuth(CREDENTIALS).add_auth(request)
        call = self.prepare(gateway, request, "demo.s3.test")
        self.assertEqual((call.operation, call.target.bucket, call.target.key), ("GetObject", "demo", "dir/key"))
        assert call.auth is not None
        self.assertEqual(call.auth.signature_version, 2)

    def test_path_style_request(self) -> None:
        request = AWSRequest(method="GET", url="http://h/demo?prefix=a", auth_path="/demo/")
        FixedDateAuth(CREDENTIALS).add_auth(request)
        self.assertEqual(self.prepare(self.gateway(), request, "h").operation, "ListObjects")

    def test_presigned_put_metadata_is_hoisted(self) -> None:
        request = AWSRequest(method="PUT", url="http://h/demo/key", headers={"x-amz-meta-colour": "blue"})
        FixedExpiresQueryAuth(CREDENTIALS).add_auth(request)
        request.headers = {}  # type: ignore[assignment]
        call = self.prepare(self.gateway(), request, "h")
        self.assertEqual((call.operation, call.header("x-amz-meta-colour")), ("PutObject", "blue"))

    def test_switched_off(self) -> None:
        request = AWSRequest(method="GET", url="http://h/demo/key")
        FixedDateAuth(CREDENTIALS).add_auth(request)
        error = self.assertRaises(S3Error, self.prepare, self.gateway(sigv2=False), request, "h")
        self.assertEqual((error.code, error.status), ("InvalidRequest", 400))

    def test_read_only_key_applies(self) -> None:
        config = gateway_config(
            access_key="", secret_key="",
            credentials=[{"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "read_only": True}],
        )
        gateway = Gateway(config, store=None, pool=None, strategy=None, reactor=None)  # type: ignore[arg-type]
        gateway.clock = lambda: SIGNING_NOW
        request = AWSRequest(method="DELETE", url="http://h/demo/key")
        FixedDateAuth(CREDENTIALS).add_auth(request)
        error = self.assertRaises(S3Error, self.prepare, gateway, request, "h")
        self.assertEqual((error.code, error.message), ("AccessDenied", "This access key is read-only."))


class RedirectTests(SynchronousTestCase):
    """Redirect mode treats a SigV2 presigned URL as presigned, and never outlives it."""

    def call(self, query: dict[str, str]) -> S3Call:
        ctx = authenticate(header_signed("GET", "http://h/bucket/key"), lookup, SIGNING_NOW)
        return S3Call("GET", Target("bucket", "key"), "GetObject", query, {}, None, ctx, b"/bucket/key")

    def test_expiry_capped_by_expires(self) -> None:
        call = self.call({"AWSAccessKeyId": ACCESS_KEY, "Signature": "x", "Expires": str(EXPIRES)})
        self.assertEqual(redirects.expiry(900, call, EXPIRES - 60), 60)
        self.assertEqual(redirects.expiry(900, call, EXPIRES - 3000), 900)

    def test_presigned_follows_redirects(self) -> None:
        call = self.call({"AWSAccessKeyId": ACCESS_KEY, "Signature": "x", "Expires": str(EXPIRES)})
        self.assertTrue(redirects.follows_redirects(gateway_config().s3api, call))
        self.assertFalse(redirects.follows_redirects(gateway_config().s3api, self.call({})))


class ConfigTests(SynchronousTestCase):
    def test_default_on(self) -> None:
        self.assertTrue(gateway_config().s3api.sigv2)

    def test_off(self) -> None:
        self.assertFalse(gateway_config(sigv2=False).s3api.sigv2)

    def test_not_a_bool_names_the_key(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            gateway_config(sigv2="no")
        self.assertEqual(str(caught.exception), "s3api.sigv2: expected true or false, got 'no'")


# -- through a running daemon -------------------------------------------------------

MIB = 1024 * 1024
sigv2_off_gateway = lazy_gateway("sigv2-off", s3api={"sigv2": False})


class PastExpiresQueryAuth(HmacV1QueryAuth):
    """botocore's SigV2 query signer for a URL that expired a minute ago."""

    def _get_date(self) -> str:
        return str(int(time.time()) - 60)


class DaemonTests(SynchronousTestCase):
    """boto3 with C{signature_version='s3'} and SigV2 presigned URLs against the shared daemon."""

    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.v2 = self.gateway.client(signature_version="s3")
        self.bucket = self.gateway.new_bucket(self.s3, prefix="sigv2")
        self.endpoint = self.gateway.daemon.endpoint

    def presign(self, operation: str, key: str, **params: Any) -> str:
        return self.v2.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, "Key": key, **params}, ExpiresIn=300
        )

    def assertAbsent(self, key: str) -> None:
        with self.assertRaises(ClientError) as raised:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    def test_header_auth_put_get_list_delete(self) -> None:
        data = os.urandom(300 * 1024 + 7)
        self.v2.put_object(Bucket=self.bucket, Key=ODD_KEY, Body=data, ContentType="text/plain", Metadata={"a": "b"})
        got = self.v2.get_object(Bucket=self.bucket, Key=ODD_KEY)
        self.assertEqual((got["Body"].read(), got["ContentType"], got["Metadata"]), (data, "text/plain", {"a": "b"}))
        self.assertEqual(self.v2.head_object(Bucket=self.bucket, Key=ODD_KEY)["ContentLength"], len(data))
        listed = self.v2.list_objects(Bucket=self.bucket, Prefix="a b/")
        self.assertEqual([item["Key"] for item in listed["Contents"]], [ODD_KEY])
        self.v2.delete_object(Bucket=self.bucket, Key=ODD_KEY)
        self.assertAbsent(ODD_KEY)

    def test_header_auth_multipart(self) -> None:
        upload = self.v2.create_multipart_upload(Bucket=self.bucket, Key="mp")["UploadId"]
        parts = [os.urandom(5 * MIB), os.urandom(1000)]
        etags = [
            self.v2.upload_part(Bucket=self.bucket, Key="mp", UploadId=upload, PartNumber=n, Body=body)["ETag"]
            for n, body in enumerate(parts, 1)
        ]
        listed = self.v2.list_parts(Bucket=self.bucket, Key="mp", UploadId=upload)
        self.assertEqual([p["PartNumber"] for p in listed["Parts"]], [1, 2])
        self.v2.complete_multipart_upload(
            Bucket=self.bucket,
            Key="mp",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
        )
        got = self.v2.get_object(Bucket=self.bucket, Key="mp")["Body"].read()
        self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(b"".join(parts)).digest())
        self.v2.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "mp"}]})
        self.assertAbsent("mp")

    def test_content_md5_is_signed_and_checked(self) -> None:
        """SigV2 signs no payload hash; a Content-MD5 it signs is checked against the body."""
        wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        with self.assertRaises(ClientError) as raised:
            self.v2.put_object(Bucket=self.bucket, Key="k", Body=b"data", ContentMD5=wrong)
        self.assertEqual(error_code(raised.exception), "BadDigest")
        self.assertAbsent("k")
        right = base64.b64encode(hashlib.md5(b"data").digest()).decode()
        self.v2.put_object(Bucket=self.bucket, Key="k", Body=b"data", ContentMD5=right)

    def test_wrong_secret(self) -> None:
        wrong = s3_client(self.endpoint, DAEMON_ACCESS_KEY, "not-the-secret", signature_version="s3")
        with self.assertRaises(ClientError) as raised:
            wrong.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        self.assertEqual(error_code(raised.exception), "SignatureDoesNotMatch")
        self.assertIn("StringToSign", raised.exception.response["Error"])
        self.assertAbsent("k")

    def test_presigned_put_then_get(self) -> None:
        put = self.presign("put_object", ODD_KEY, ContentType="text/plain", Metadata={"colour": "blue"})
        status, _headers, body = http("PUT", put, b"hello", {"Content-Type": "text/plain"})
        self.assertEqual(status, 200, body)
        head = self.s3.head_object(Bucket=self.bucket, Key=ODD_KEY)
        self.assertEqual((head["ContentType"], head["Metadata"]), ("text/plain", {"colour": "blue"}))
        get = self.presign("get_object", ODD_KEY, ResponseContentDisposition="attachment")
        status, headers, body = http("GET", get)
        self.assertEqual((status, body, headers.get("content-disposition")), (200, b"hello", "attachment"))

    def test_expired_presigned_url(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        request = AWSRequest(method="GET", url=f"{self.endpoint}/{self.bucket}/k")
        PastExpiresQueryAuth(Credentials(DAEMON_ACCESS_KEY, DAEMON_SECRET_KEY)).add_auth(request)
        status, _headers, body = http("GET", request.url)
        self.assertEqual((status, s3_error(body)), (403, ("AccessDenied", "Request has expired")))

    def test_edited_presigned_url(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        url = self.presign("get_object", "k", ResponseContentType="text/plain")
        self.assertEqual(http("GET", url)[0], 200)
        changed = url.replace("response-content-type=text%2Fplain", "response-content-type=text%2Fhtml")
        status, _headers, body = http("GET", changed)
        self.assertEqual((status, s3_error(body)[0]), (403, "SignatureDoesNotMatch"))
        status, _headers, body = http("GET", url + "&response-cache-control=no-store&max-keys=1")
        self.assertEqual((status, s3_error(body)[0]), (403, "SignatureDoesNotMatch"))
        status, _headers, body = http("GET", url + "&s3balance-proxy=true")
        self.assertEqual((status, s3_error(body)[0]), (403, "AccessDenied"))
        listing = self.v2.generate_presigned_url("list_objects", Params={"Bucket": self.bucket, "Prefix": "k"})
        status, _headers, body = http("GET", listing)
        self.assertEqual((status, s3_error(body)[0]), (403, "AccessDenied"))

    def test_presigned_put_cannot_become_a_copy(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="secret", Body=b"secret")
        url = self.presign("put_object", "k")
        status, _headers, body = http("PUT", url, b"", {"x-amz-copy-source": f"/{self.bucket}/secret"})
        self.assertEqual((status, s3_error(body)[0]), (403, "SignatureDoesNotMatch"))
        self.assertAbsent("k")


class SwitchedOffTests(SynchronousTestCase):
    def test_sigv2_refused(self) -> None:
        gateway = sigv2_off_gateway()
        v2 = gateway.client(signature_version="s3")
        with self.assertRaises(ClientError) as raised:
            v2.list_buckets()
        self.assertEqual(error_code(raised.exception), "InvalidRequest")
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        url = v2.generate_presigned_url("get_object", Params={"Bucket": "vb-default", "Key": "k"})
        status, _headers, body = http("GET", url)
        self.assertEqual(
            (status, s3_error(body)),
            (
                400,
                (
                    "InvalidRequest",
                    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
                ),
            ),
        )
        # SigV4 is untouched.
        self.assertIn("Buckets", gateway.client().list_buckets())


class S3cmdTests(SynchronousTestCase):
    def test_s3cmd_signature_v2(self) -> None:
        gateway = shared_gateway()
        bucket = gateway.new_bucket(prefix="s3cmd")
        workdir = Path(tempfile.mkdtemp(prefix="sigv2-", dir=harness_dir()))
        self.addCleanup(shutil.rmtree, workdir, True)
        source = workdir / "up.bin"
        source.write_bytes(os.urandom(100 * 1024))

        def s3cmd(*args: str) -> str:
            return run_s3cmd(
                list(args), gateway.daemon.endpoint, DAEMON_ACCESS_KEY, DAEMON_SECRET_KEY,
                settings={"signature_v2": "True"}, cwd=workdir,
            ).stdout

        s3cmd("put", str(source), f"s3://{bucket}/dir/up.bin")
        self.assertIn("dir/up.bin", s3cmd("ls", "-r", f"s3://{bucket}"))
        s3cmd("get", f"s3://{bucket}/dir/up.bin", str(workdir / "down.bin"))
        self.assertEqual((workdir / "down.bin").read_bytes(), source.read_bytes())
        s3cmd("del", f"s3://{bucket}/dir/up.bin")
