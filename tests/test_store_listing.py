"""
The listing algorithm (s3balance.store.listing) against a pure-Python model
of S3 ListObjects, on SQLite, PostgreSQL and MariaDB, by every way of walking
a delimiter listing that runs on each (the one a database uses by default,
and the Python loop every database can fall back on).

These call the blocking listing function on a Connection directly (Hypothesis
drives examples synchronously); tests/test_store.py covers the Deferred API.
"""

from __future__ import annotations

import datetime
import os
import random
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, insert
from twisted.trial import unittest

from s3balance.store import listing, migrate, multipart, tables
from s3balance.store.interfaces import ListPage
from tests import dbfixtures

BUCKET = "vb"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
ALPHABET = ["/", "a", "é", "~", "\uffff"]
# One character per UTF-8 length (1 to 4 bytes), a delimiter or two, and
# characters SQL string literals escape.
WIDE_ALPHABET = ["/", "a", "b", "-", "é", "€", "\uffff", "😀", "\x7f", "'", "\\", "\x00", "\x1a", "%", ":"]
DELIMITERS = ["", "/", "a", "é", "\uffff", "/a", "aa", "é/"]


def utf8(text: str) -> bytes:
    return text.encode("utf-8")


def model_listing(keys, prefix: str, delimiter: str, after: str = "") -> list[str]:
    """S3's answer, everything in one list: keys and common prefixes in byte order."""
    entries: list[str] = []
    for key in sorted(set(keys), key=utf8):
        if not key.startswith(prefix):
            continue
        if delimiter and delimiter in key[len(prefix) :]:
            cut = key.index(delimiter, len(prefix)) + len(delimiter)
            if not entries or entries[-1] != key[:cut]:
                entries.append(key[:cut])
        else:
            entries.append(key)
    # A common prefix <= the marker was returned already (the marker may be
    # a key inside it, or the prefix itself); keys compare plainly.
    return [e for e in entries if utf8(e) > utf8(after)]


def row(key: str) -> dict:
    return {
        "bucket": BUCKET,
        "key": utf8(key),
        "size": len(key),
        "etag": '"e"',
        "last_modified": T0,
        "content_type": None,
        "headers": "{}",
        "checksums": "{}",
    }


def entry_name(entry) -> str:
    return entry if isinstance(entry, str) else entry.key


keys_strategy = st.lists(
    st.text(alphabet=ALPHABET, min_size=1, max_size=6), min_size=0, max_size=25, unique=True
)
prefix_strategy = st.text(alphabet=ALPHABET, max_size=2)
after_strategy = st.one_of(st.just(""), st.text(alphabet=ALPHABET, max_size=4))


class ListingModelMixin:
    kind: str
    # The ways of walking a delimiter listing tested here, the default first.
    methods: tuple[str, ...]

    def setUp(self):
        if self.kind == "sqlite":
            self.url = dbfixtures.sqlite_url(self)
            os.makedirs(os.path.dirname(self.url[len("sqlite:///") :]), exist_ok=True)
        else:
            self.url = dbfixtures.store_database(self, self.kind)
        migrate.upgrade(self.url)
        self.engine = create_engine(self.url)
        self.addCleanup(self.engine.dispose)

    def store_keys(self, keys) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(tables.objects))
            if keys:
                conn.execute(insert(tables.objects), [row(k) for k in keys])

    def insert_rows(self, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(tables.objects), rows)

    def connect(self):
        """What list_page lists on (tests/test_store_contract.py's fake store needs nothing)."""
        return self.engine.connect()

    def list_page(
        self, conn, prefix: str, delimiter: str, after: str, max_keys: int, method: Optional[str] = None
    ) -> ListPage:
        return listing.list_objects(conn, BUCKET, prefix, delimiter, after, max_keys, method=method)

    def list_all(
        self, prefix: str, delimiter: str, max_keys: int, after: str = "", method: Optional[str] = None
    ) -> list[str]:
        names: list[str] = []
        with self.connect() as conn:
            for _ in range(1000):
                page = self.list_page(conn, prefix, delimiter, after, max_keys, method)
                self.assertLessEqual(len(page.entries), max_keys)
                names.extend(entry_name(e) for e in page.entries)
                if not page.is_truncated:
                    self.assertIsNone(page.next_marker)
                    return names
                self.assertEqual(len(page.entries), max_keys)
                self.assertEqual(page.next_marker, names[-1])
                after = page.next_marker
        self.fail("the listing never ended")

    def check_against_model(self, keys, prefix, delimiter, max_keys, after, store: bool = True) -> None:
        if store:
            self.store_keys(keys)
        expected = model_listing(keys, prefix, delimiter, after)
        for method in self.methods:
            listed = self.list_all(prefix, delimiter, max_keys, after, method)
            self.assertEqual(len(listed), len(set(listed)), f"an entry came twice ({method})")
            self.assertEqual(listed, expected, f"method {method}")

    def test_default_method(self):
        with self.engine.connect() as conn:
            self.assertEqual(listing.default_method(conn), self.methods[0])

    def test_random_keys(self):
        """Longer listings than Hypothesis makes: keys of 1- to 4-byte characters."""
        rng = random.Random(20260101)
        keys = {"".join(rng.choices(WIDE_ALPHABET, k=rng.randint(1, 8))) for _ in range(600)}
        self.store_keys(sorted(keys))
        for _ in range(12):
            prefix = "".join(rng.choices(WIDE_ALPHABET, k=rng.choice([0, 0, 1, 2])))
            delimiter = rng.choice(DELIMITERS[1:] + ["😀", "-b"])
            after = rng.choice(["", "", "".join(rng.choices(WIDE_ALPHABET, k=rng.randint(1, 4)))])
            max_keys = rng.choice([1, 2, 3, 10, 100, 1000])
            with self.subTest(prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys):
                self.check_against_model(keys, prefix, delimiter, max_keys, after, store=False)

    def test_common_prefixes_are_skipped_not_read(self):
        # 1200 common prefixes of 4 keys each, with plain keys between them:
        # a page of 1000 common prefixes and keys.
        keys = [f"dir{d:04}/{n:02}" for d in range(1200) for n in range(4)]
        keys += [f"dir{d:04}.txt" for d in range(0, 1200, 3)]
        self.store_keys(keys)
        for method in self.methods:
            stats = listing.ListingStats()
            with self.engine.connect() as conn:
                page = listing.list_objects(
                    conn, BUCKET, delimiter="/", max_keys=1000, method=method, stats=stats
                )
                rest = listing.list_objects(
                    conn, BUCKET, delimiter="/", after=page.next_marker, method=method
                )
                # Longer than MariaDB's 1000 steps of recursion by default.
                whole = listing.list_objects(conn, BUCKET, delimiter="/", max_keys=2000, method=method)
            names = [entry_name(e) for e in page.entries + rest.entries]
            self.assertEqual(names, model_listing(keys, "", "/"), method)
            self.assertEqual([entry_name(e) for e in whole.entries], names, method)
            self.assertEqual(names[:3], ["dir0000.txt", "dir0000/", "dir0001/"])
            self.assertEqual((page.is_truncated, rest.is_truncated), (True, False))
            if method == listing.LOOP:
                # The first batch may read one small batch inside a prefix;
                # after that about two rows per common prefix.
                self.assertLess(stats.rows, 64 + 4 * 1000)
                self.assertLess(stats.queries, 2 * 1000 + 5)
            elif method == listing.CTE:
                # The page's keys, the walk's first key of each entry (index
                # only), then the rows of the entries that are keys.
                files = sum(1 for name in model_listing(keys, "", "/")[:1001] if not name.endswith("/"))
                self.assertEqual((stats.queries, stats.rows), (3, 1001 + 1001 + files))
            else:
                # The page's keys, then one statement that reads one row per entry.
                self.assertEqual((stats.queries, stats.rows), (2, 1001 + 1001))

    def test_a_key_deleted_during_the_walk(self):
        """
        A key the walk found but whose row is gone when its row is read (a
        DELETE between the two statements): the page goes on past it, full
        and truncated, not short.
        """
        keys = [f"dir{d:04}/{n:02}" for d in range(1200) for n in range(2)]
        keys += [f"dir{d:04}.txt" for d in range(0, 1200, 2)]
        self.store_keys(keys)
        if listing.CTE not in self.methods:
            return
        original = listing.rows_query
        gone = [b"dir0010.txt", b"dir0600.txt"]

        def without_some() -> object:
            return original().where(tables.objects.c.key.not_in(gone))

        self.patch(listing, "rows_query", without_some)
        with self.engine.connect() as conn:
            page = listing.list_objects(conn, BUCKET, delimiter="/", max_keys=1000, method=listing.CTE)
        expected = [name for name in model_listing(keys, "", "/") if name.encode() not in gone]
        self.assertEqual([entry_name(e) for e in page.entries], expected[:1000])
        self.assertTrue(page.is_truncated)

    def test_page_of_files_is_a_range_query(self):
        # Under a prefix with no common prefixes below it the walk is not needed.
        keys = [f"d/{n:05}" for n in range(1500)] + ["d/sub/x", "e/1"]
        self.store_keys(keys)
        for method in self.methods:
            if method == listing.LOOP:
                continue
            stats = listing.ListingStats()
            with self.engine.connect() as conn:
                page = listing.list_objects(
                    conn, BUCKET, "d/", "/", "d/00100", 1000, method=method, stats=stats
                )
            self.assertEqual((page.entries[0].key, page.next_marker), ("d/00101", "d/01100"))
            self.assertEqual((stats.queries, stats.rows), (2, 1001 + 1001))

    def test_common_prefix_written_after_the_keys_were_read(self):
        # The page's keys (read first) showed no common prefix, but the range
        # query then meets some: the walk does the rest of the page.
        keys = ["a", "b/1", "b/2", "c", "d/1/2", "d/1/3", "d/2", "e"]
        self.store_keys(keys)

        def keys_without_prefixes(scan, start, inclusive, limit):
            return [b""]

        self.patch(listing._Scan, "keys", keys_without_prefixes)
        for prefix, delimiter, after in [("", "/", ""), ("d/", "/", ""), ("", "/", "b/1"), ("", "/", "a")]:
            for max_keys in (1, 2, 3, 1000):
                self.check_against_model(keys, prefix, delimiter, max_keys, after, store=False)

    def test_no_keys_wanted(self):
        self.store_keys(["a", "b/c"])
        for method in self.methods:
            with self.connect() as conn:
                page = self.list_page(conn, "", "/", "", 0, method)
            self.assertEqual((page.entries, page.is_truncated, page.next_marker), ((), False, None))

    def test_other_buckets_are_not_listed(self):
        self.insert_rows([row("a"), dict(row("a"), bucket="va"), dict(row("b"), bucket="vc")])
        with self.connect() as conn:
            page = self.list_page(conn, "", "", "", 1000)
        self.assertEqual([e.key for e in page.entries], ["a"])


def _property(max_examples: int):
    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(
        keys=keys_strategy,
        prefix=prefix_strategy,
        delimiter=st.sampled_from(DELIMITERS),
        max_keys=st.integers(min_value=1, max_value=7),
        after=after_strategy,
    )
    def test_pages_concatenate_to_the_model_listing(self, keys, prefix, delimiter, max_keys, after):
        self.check_against_model(keys, prefix, delimiter, max_keys, after)

    return test_pages_concatenate_to_the_model_listing


class SQLiteListingTests(ListingModelMixin, unittest.SynchronousTestCase):
    kind = "sqlite"
    methods = (listing.CTE, listing.LOOP)
    test_pages_concatenate_to_the_model_listing = _property(200)

    def test_flat_page_is_one_query(self):
        keys = [f"k{n:05}" for n in range(3000)]
        with self.engine.begin() as conn:
            conn.execute(insert(tables.objects), [row(k) for k in keys])
        stats = listing.ListingStats()
        with self.engine.connect() as conn:
            page = listing.list_objects(conn, BUCKET, after="k00100", max_keys=1000, stats=stats)
        self.assertEqual(
            (page.entries[0].key, page.next_marker, page.is_truncated), ("k00101", "k01100", True)
        )
        self.assertEqual((stats.queries, stats.rows), (1, 1001))


class PostgreSQLListingTests(ListingModelMixin, unittest.SynchronousTestCase):
    kind = dbfixtures.POSTGRES
    methods = (listing.CTE, listing.LOOP)
    test_pages_concatenate_to_the_model_listing = _property(40)


class MariaDBListingTests(ListingModelMixin, unittest.SynchronousTestCase):
    kind = dbfixtures.MYSQL
    # The recursive CTE is correct on MariaDB too (if slow: it does not seek).
    methods = (listing.BLOCK, listing.LOOP, listing.CTE)
    test_pages_concatenate_to_the_model_listing = _property(40)


class SuccessorTests(unittest.SynchronousTestCase):
    def test_increments_the_last_byte(self):
        self.assertEqual(listing.successor(b"a/"), b"a0")

    def test_carries_over_0xff(self):
        self.assertEqual(listing.successor(b"a\xff\xff"), b"b")

    def test_none_when_nothing_is_greater(self):
        self.assertIsNone(listing.successor(b"\xff\xff"))
        self.assertIsNone(listing.successor(b""))

    def test_model_folds_like_s3(self):
        keys = ["a/1", "a/2", "b", "c/d/e", "c/x"]
        self.assertEqual(model_listing(keys, "", "/"), ["a/", "b", "c/"])
        self.assertEqual(model_listing(keys, "c/", "/"), ["c/d/", "c/x"])
        self.assertEqual(model_listing(keys, "", "/", after="a/1"), ["b", "c/"])


class MultipartListingMixin:
    """ListMultipartUploads folds keys on their UTF-8 bytes (store.multipart.list_multipart_page)."""

    kind: str
    setUp = ListingModelMixin.setUp
    connect = ListingModelMixin.connect

    def list_uploads_page(
        self, conn, prefix: str, delimiter: str, key_marker: str, id_marker: str, max_uploads: int
    ) -> ListPage:
        return multipart.list_multipart_page(conn, BUCKET, prefix, delimiter, key_marker, id_marker, max_uploads)

    def start_uploads(self, keys) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(tables.multipart_uploads),
                [
                    {
                        "upload_id": f"u{n:04}",
                        "bucket": BUCKET,
                        "key": utf8(key),
                        "backend": "b1",
                        "real_key": f"vb/{n}",
                        "backend_upload_id": f"bu{n}",
                        "initiated": T0,
                        "content_type": None,
                        "headers": "{}",
                    }
                    for n, key in enumerate(keys)
                ],
            )

    def list_all(self, prefix: str = "", delimiter: str = "", max_uploads: int = 1000) -> list[str]:
        names: list[str] = []
        key_marker, id_marker = "", ""
        with self.connect() as conn:
            for _ in range(1000):
                page = self.list_uploads_page(conn, prefix, delimiter, key_marker, id_marker, max_uploads)
                self.assertLessEqual(len(page.entries), max_uploads)
                names.extend(entry_name(e) for e in page.entries)
                if not page.is_truncated:
                    return names
                last = page.entries[-1]
                key_marker, id_marker = (last, "") if isinstance(last, str) else (last.key, last.upload_id)
                self.assertEqual(page.next_marker, key_marker)
        self.fail("the listing never ended")

    def test_key_with_u10ffff_after_a_common_prefix_is_folded_once(self):
        keys = ["a/\U0010ffff", "a/\U0010ffffx", "a/\U0010ffff/y", "a/b/c", "b", "c/\U0010ffff"]
        self.start_uploads(keys)
        for max_uploads in (1, 2, 1000):
            self.assertEqual(self.list_all(delimiter="/", max_uploads=max_uploads), ["a/", "b", "c/"])
            self.assertEqual(
                self.list_all(prefix="a/", delimiter="/", max_uploads=max_uploads),
                ["a/b/", "a/\U0010ffff", "a/\U0010ffff/", "a/\U0010ffffx"],
            )

    def test_pages_of_uploads_match_the_model(self):
        rng = random.Random(20261203)
        keys = sorted({"".join(rng.choices(WIDE_ALPHABET + ["\U0010ffff"], k=rng.randint(1, 6))) for _ in range(300)})
        self.start_uploads(keys + keys[:20])  # some keys with two uploads
        for prefix, delimiter in [("", ""), ("", "/"), ("a", "/"), ("", "\U0010ffff"), ("/", "é")]:
            # The model: a key with two uploads is listed twice, a common prefix once.
            expected: list[str] = []
            for key in sorted(keys + keys[:20], key=utf8):
                if key.startswith(prefix):
                    folded = model_listing([key], prefix, delimiter)[0]
                    is_prefix = bool(delimiter) and delimiter in key[len(prefix) :]
                    if not is_prefix or not expected or expected[-1] != folded:
                        expected.append(folded)
            for max_uploads in (1, 3, 1000):
                listed = self.list_all(prefix, delimiter, max_uploads)
                self.assertEqual(listed, expected, (prefix, delimiter, max_uploads))

    def test_a_loop_that_makes_no_progress_is_an_error_not_a_hang(self):
        self.start_uploads(["a/1", "b/1"])
        # A successor that goes nowhere (as "a/" + U+10FFFF did): the scan
        # would read "a/1" forever.
        self.patch(multipart, "successor", lambda prefix: prefix or None)
        with self.engine.connect() as conn:
            self.assertRaises(
                listing.RunawayListing, multipart.list_multipart_page, conn, BUCKET, "", "/", "", "", 1000
            )


class SQLiteMultipartListingTests(MultipartListingMixin, unittest.SynchronousTestCase):
    kind = "sqlite"


class PostgreSQLMultipartListingTests(MultipartListingMixin, unittest.SynchronousTestCase):
    kind = dbfixtures.POSTGRES


class MariaDBMultipartListingTests(MultipartListingMixin, unittest.SynchronousTestCase):
    kind = dbfixtures.MYSQL


class MultipartListingThroughTheDaemonTests(unittest.SynchronousTestCase):
    def test_list_uploads_answers_with_u10ffff_after_a_common_prefix(self):
        from tests.daemon import shared_gateway

        gateway = shared_gateway()
        s3 = gateway.client(read_timeout=20, connect_timeout=5)
        bucket = gateway.new_bucket(s3)
        for key in ("a/\U0010ffff", "a/\U0010ffffx", "b"):
            s3.create_multipart_upload(Bucket=bucket, Key=key)
        answer = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in answer.get("CommonPrefixes", [])], ["a/"])
        self.assertEqual([u["Key"] for u in answer.get("Uploads", [])], ["b"])
        self.assertFalse(answer["IsTruncated"])
