"""
S3 behaviours that clients notice, checked against a running daemon with the
answers SeaweedFS (S3's behaviour in each case) gives to the same requests.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_gateway
from tests.test_bucket_api import signed_request


class ChecksumValueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, "ck")

    def test_malformed_checksum_value_is_bad_digest(self) -> None:
        url = f"{self.gateway.daemon.endpoint}/{self.bucket}/k"
        for name, value in (
            ("x-amz-checksum-crc32", "notbase64!!"),
            ("x-amz-checksum-crc32", "AAAAAAAA"),
            ("x-amz-checksum-sha256", "AAAA"),
        ):
            status, body, _ = signed_request("PUT", url, b"hello", {name: value})
            self.assertEqual(status, 400, (name, value, body))
            self.assertIn(b"<Code>BadDigest</Code>", body)
        listed = self.s3.list_objects_v2(Bucket=self.bucket)
        self.assertEqual(listed["KeyCount"], 0)


class ClientGoneTests(SynchronousTestCase):
    def test_finish_after_the_client_left_is_quiet(self) -> None:
        # Redirects, HEAD, empty GETs and 304s finish without writing a body:
        # a client that left meanwhile must not turn that into an error.
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        from twisted.web.test.requesthelper import DummyChannel

        from s3balance.s3.request import S3Request

        request = S3Request(DummyChannel())
        request.method = b"HEAD"
        request.connectionLost(Failure(ConnectionDone()))
        request.setResponseCode(200)
        request.finish()
        self.assertTrue(request.gone)


class DeleteBucketTests(SynchronousTestCase):
    def test_bucket_with_only_open_uploads_is_deleted_and_uploads_aborted(self) -> None:
        from botocore.exceptions import ClientError

        from tests.daemon import poll

        gateway = shared_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3, "mpdel")
        upload = s3.create_multipart_upload(Bucket=bucket, Key="big")
        s3.upload_part(Bucket=bucket, Key="big", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 1024)
        answer = s3.delete_bucket(Bucket=bucket)
        self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 204)
        with self.assertRaises(ClientError) as raised:
            s3.head_bucket(Bucket=bucket)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

        def backend_uploads() -> list:
            found = []
            for server, real in zip(gateway.backends, gateway.real_buckets, strict=True):
                listed = server.client().list_multipart_uploads(Bucket=real, Prefix=f"{bucket}/")
                found += listed.get("Uploads", [])
            return found

        poll(lambda: not backend_uploads(), message="the backend upload was not aborted")

    def test_bucket_with_objects_is_not_empty(self) -> None:
        from botocore.exceptions import ClientError

        gateway = shared_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3, "full")
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        s3.create_multipart_upload(Bucket=bucket, Key="big")
        with self.assertRaises(ClientError) as raised:
            s3.delete_bucket(Bucket=bucket)
        self.assertEqual(raised.exception.response["Error"]["Code"], "BucketNotEmpty")
        self.assertEqual(len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])), 1)


def _raw_signed_put(endpoint: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """A PUT whose header values go out as UTF-8 bytes, signed over those bytes (as the JS SDK does)."""
    import hashlib
    import http.client

    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    from tests.daemon import ACCESS_KEY, SECRET_KEY

    request = botocore.awsrequest.AWSRequest(
        "PUT", endpoint + path, data=body, headers=dict(headers, **{"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    )
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    botocore.auth.S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection(endpoint.split("//", 1)[1], timeout=30)
    try:
        connection.putrequest("PUT", path, skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value.encode("utf-8") if isinstance(value, str) else value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


class NonASCIIHeaderTests(SynchronousTestCase):
    def test_utf8_metadata_and_content_disposition_round_trip(self) -> None:
        import http.client

        gateway = shared_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3, "utf")
        endpoint = gateway.daemon.endpoint
        disposition = 'attachment; filename="résumé.pdf"'
        status, body = _raw_signed_put(
            endpoint, f"/{bucket}/doc", {"x-amz-meta-name": "résumé.pdf", "Content-Disposition": disposition}, b"cv"
        )
        self.assertEqual(status, 200, body)
        connection = http.client.HTTPConnection(endpoint.split("//", 1)[1], timeout=30)
        try:
            from tests.daemon import sign

            connection.request("GET", f"/{bucket}/doc", headers=sign("GET", f"{endpoint}/{bucket}/doc"))
            answer = connection.getresponse()
            self.assertEqual(answer.read(), b"cv")
            # http.client decodes header bytes as latin-1: back to the bytes sent.
            self.assertEqual(answer.getheader("x-amz-meta-name").encode("latin-1"), "résumé.pdf".encode())
            self.assertEqual(answer.getheader("Content-Disposition").encode("latin-1"), disposition.encode())
        finally:
            connection.close()

    def test_boto3_content_disposition_is_stored(self) -> None:
        # boto3 sends a non-ASCII Content-Disposition as UTF-8 bytes (SeaweedFS
        # stores and returns those bytes; boto3 reads them back as latin-1).
        gateway = shared_gateway()
        s3 = gateway.client()
        bucket = gateway.new_bucket(s3, "utfb")
        disposition = 'attachment; filename="résumé.pdf"'
        s3.put_object(Bucket=bucket, Key="doc", Body=b"cv", ContentDisposition=disposition)
        head = s3.head_object(Bucket=bucket, Key="doc")
        self.assertEqual(head["ContentDisposition"].encode("latin-1"), disposition.encode())


class StorageClassTests(SynchronousTestCase):
    """x-amz-storage-class is kept with the object (a label: backends get STANDARD)."""

    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, "sc")

    def listed_classes(self) -> dict[str, str]:
        v2 = {o["Key"]: o["StorageClass"] for o in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])}
        v1 = {o["Key"]: o["StorageClass"] for o in self.s3.list_objects(Bucket=self.bucket).get("Contents", [])}
        self.assertEqual(v1, v2)
        return v2

    def test_put_keeps_the_class(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
        self.s3.put_object(Bucket=self.bucket, Key="std", Body=b"x", StorageClass="STANDARD")
        self.s3.put_object(Bucket=self.bucket, Key="none", Body=b"x")
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="ia")["StorageClass"], "STANDARD_IA")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="ia")["StorageClass"], "STANDARD_IA")
        self.assertNotIn("StorageClass", self.s3.head_object(Bucket=self.bucket, Key="std"))
        self.assertEqual(self.listed_classes(), {"ia": "STANDARD_IA", "none": "STANDARD", "std": "STANDARD"})

    def test_unknown_class_is_refused(self) -> None:
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as raised:
            self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"x", StorageClass="PAPER")
        self.assertEqual(raised.exception.response["Error"]["Code"], "InvalidStorageClass")
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertEqual(self.listed_classes(), {})

    def test_copy_takes_the_class_it_names(self) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=b"x", StorageClass="GLACIER_IR")
        source = {"Bucket": self.bucket, "Key": "src"}
        self.s3.copy_object(Bucket=self.bucket, Key="plain", CopySource=source)
        self.s3.copy_object(Bucket=self.bucket, Key="onezone", CopySource=source, StorageClass="ONEZONE_IA")
        # Changing the class is a reason to copy an object onto itself.
        self.s3.copy_object(Bucket=self.bucket, Key="src", CopySource=source, StorageClass="DEEP_ARCHIVE")
        self.assertEqual(
            self.listed_classes(), {"onezone": "ONEZONE_IA", "plain": "STANDARD", "src": "DEEP_ARCHIVE"}
        )

    def test_multipart_upload_keeps_the_class(self) -> None:
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key="mp", StorageClass="INTELLIGENT_TIERING")
        listed = self.s3.list_multipart_uploads(Bucket=self.bucket)["Uploads"]
        self.assertEqual([u["StorageClass"] for u in listed], ["INTELLIGENT_TIERING"])
        part = self.s3.upload_part(Bucket=self.bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"p")
        parts = self.s3.list_parts(Bucket=self.bucket, Key="mp", UploadId=upload["UploadId"])
        self.assertEqual(parts["StorageClass"], "INTELLIGENT_TIERING")
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key="mp", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="mp")["StorageClass"], "INTELLIGENT_TIERING")


class UnkeptFeatureTests(SynchronousTestCase):
    """
    ACLs S3 would refuse and website redirects are refused on a write, and
    retention in a bucket without Object Lock: never accepted and dropped
    (tags, ACLs and Object Lock are kept: test_tagging_api, test_acl_api,
    test_object_lock).
    """

    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, "unkept")

    def refused(self, call, code: str, status: int) -> None:
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as raised:
            call()
        self.assertEqual(raised.exception.response["Error"]["Code"], code)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], status)

    def test_writes_asking_for_unkept_features_are_refused_and_store_nothing(self) -> None:
        put = self.s3.put_object
        b = self.bucket
        # An ACL S3 would refuse is refused before anything is stored too.
        self.refused(lambda: put(Bucket=b, Key="k", Body=b"x", GrantRead='uri="x"'), "InvalidArgument", 400)
        self.refused(lambda: put(Bucket=b, Key="k", Body=b"x", ACL="log-delivery-write"), "NotImplemented", 501)
        self.refused(
            lambda: put(Bucket=b, Key="k", Body=b"x", WebsiteRedirectLocation="/other"), "NotImplemented", 501
        )
        self.refused(lambda: put(Bucket=b, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON"), "InvalidRequest", 400)
        self.refused(
            lambda: self.s3.create_multipart_upload(Bucket=b, Key="k", ACL="aws-exec-read"), "NotImplemented", 501
        )
        self.assertEqual(self.s3.list_objects_v2(Bucket=b)["KeyCount"], 0)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=b).get("Uploads", []), [])

    def test_owner_only_acls_are_what_every_object_has(self) -> None:
        for acl in ("private", "bucket-owner-read", "bucket-owner-full-control"):
            self.s3.put_object(Bucket=self.bucket, Key=acl, Body=b"x", ACL=acl)
        self.assertEqual(self.s3.list_objects_v2(Bucket=self.bucket)["KeyCount"], 3)
