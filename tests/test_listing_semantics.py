"""
Listing parameters as S3 (and SeaweedFS, sent the same requests) treat them:
an empty continuation token, C{start-after} beside a token, and what
C{encoding-type=url} encodes in ListObjects v1.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_gateway


class ListingParameterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3, "lp")
        self.keys = ["a/1", "a\n/2", "b/3", "c", "d"]
        for key in self.keys:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"x")

    def test_empty_continuation_token_lists_from_the_start(self) -> None:
        page = self.s3.list_objects_v2(Bucket=self.bucket, ContinuationToken="")
        self.assertEqual([o["Key"] for o in page["Contents"]], sorted(self.keys, key=str.encode))
        self.assertEqual(page["ContinuationToken"], "")

    def test_start_after_is_ignored_beside_a_continuation_token(self) -> None:
        # minio-py sends start-after on every continued page: a start-after
        # that sorts after the token must not skip keys.
        first = self.s3.list_objects_v2(Bucket=self.bucket, MaxKeys=2)
        second = self.s3.list_objects_v2(
            Bucket=self.bucket, MaxKeys=2, ContinuationToken=first["NextContinuationToken"], StartAfter="c"
        )
        self.assertEqual([o["Key"] for o in second["Contents"]], ["b/3", "c"])
        self.assertEqual(second["StartAfter"], "c")
        self.assertTrue(second["IsTruncated"])
        third = self.s3.list_objects_v2(
            Bucket=self.bucket, MaxKeys=2, ContinuationToken=second["NextContinuationToken"], StartAfter="c"
        )
        self.assertEqual([o["Key"] for o in third["Contents"]], ["d"])

    def test_every_key_listed_by_a_minio_style_paginator(self) -> None:
        seen: list[str] = []
        token = None
        for _ in range(10):
            kwargs = {"Bucket": self.bucket, "MaxKeys": 1, "StartAfter": "a/1"}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.s3.list_objects_v2(**kwargs)
            seen += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not page["IsTruncated"]:
                break
        self.assertEqual(seen, ["b/3", "c", "d"])

    def test_v1_prefix_is_answered_as_given(self) -> None:
        # boto3 asks for encoding-type=url and decodes Marker, NextMarker,
        # Delimiter and keys in v1, never Prefix (S3 does not encode it there).
        page = self.s3.list_objects(Bucket=self.bucket, Prefix="a\n", Delimiter="/")
        self.assertEqual(page["Prefix"], "a\n")
        self.assertEqual(page["CommonPrefixes"], [{"Prefix": "a\n/"}])
        v2 = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="a\n", Delimiter="/")
        self.assertEqual(v2["Prefix"], "a\n")
        self.assertEqual(v2["CommonPrefixes"], [{"Prefix": "a\n/"}])
