"""
ListObjectVersions' pages (s3balance.store.version_listing) against a
pure-Python model, on SQLite, PostgreSQL and MariaDB, by every way of
walking a delimiter listing that runs on each (the database's default walk,
the Python loop, and on MariaDB the recursive CTE too): many common
prefixes, pages that end inside a key's versions, markers inside a common
prefix, keys of 1- to 4-byte UTF-8 characters, and how many statements a
page takes.

These call the blocking function on a Connection directly (Hypothesis
drives examples synchronously); tests/test_versions_store.py covers the
Deferred API.
"""

from __future__ import annotations

import datetime
import os
import random
from collections.abc import Iterable, Sequence
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, event, insert
from twisted.trial import unittest

from s3balance.store import listing, migrate, tables, version_listing
from s3balance.store.interfaces import VersionPage
from tests import dbfixtures

BUCKET = "vb"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
ALPHABET = ["/", "a", "é", "~", "\U0010ffff"]
# One character per UTF-8 length (1 to 4 bytes), and characters SQL string
# literals escape (MariaDB's walk quotes the keys it finds).
WIDE_ALPHABET = ["/", "a", "b", "-", "é", "ÿ", "€", "\uffff", "😀", "\U0010ffff", "\x7f", "'", "\\", "\x00", "%"]
DELIMITERS = ["/", "a", "é", "\U0010ffff", "/a", "aa", "é/"]

# (key, version id, is latest, is a delete marker), or a common prefix.
Entry = object


def utf8(text: str) -> bytes:
    return text.encode("utf-8")


class Version:
    """A row of the model: a version (or delete marker) of a key, its row id."""

    def __init__(self, key: str, row_id: int, marker: bool) -> None:
        self.key = key
        self.id = row_id
        self.marker = marker
        self.version_id = f"v{row_id:05}"


def model_listing(
    rows: Sequence[Version], prefix: str, delimiter: str, key_marker: str = "", version_marker: Optional[str] = None
) -> list[Entry]:
    """S3's answer, every page's entries in one list."""
    newest: dict[str, int] = {}
    for row in rows:
        newest[row.key] = max(newest.get(row.key, 0), row.id)
    marker_b = utf8(key_marker)
    marker_id = next((r.id for r in rows if r.key == key_marker and r.version_id == version_marker), None)
    entries: list[Entry] = []
    for row in sorted(rows, key=lambda r: (utf8(r.key), -r.id)):
        key = row.key
        if not key.startswith(prefix):
            continue
        at = key.find(delimiter, len(prefix)) if delimiter else -1
        if at >= 0:
            common = key[: at + len(delimiter)]
            if entries and entries[-1] == common:
                continue
            # A common prefix up to the marker, or holding it, was listed.
            if key_marker and (utf8(common) <= marker_b or marker_b.startswith(utf8(common))):
                continue
            entries.append(common)
            continue
        if key_marker:
            after_marker = utf8(key) > marker_b
            older = key == key_marker and marker_id is not None and row.id < marker_id
            if not (after_marker or older):
                continue
        entries.append((key, row.version_id, row.id == newest[key], row.marker))
    return entries


def page_entries(page: VersionPage) -> list[Entry]:
    """A page's versions and common prefixes in key order (each key's versions in the page's order)."""
    keyed: list[tuple[bytes, int, Entry]] = []
    for n, (record, latest) in enumerate(page.versions):
        keyed.append((utf8(record.key), n, (record.key, record.version_id, latest, record.delete_marker)))
    for common in page.common_prefixes:
        keyed.append((utf8(common), -1, common))
    return [entry for _, _, entry in sorted(keyed, key=lambda k: (k[0], k[1]))]


def make_rows(versions_of: Iterable[tuple[str, int]], rng: random.Random, marker_share: float = 0.2) -> list[Version]:
    """Versions of keys (key, how many), their ids interleaved across keys as writes over time make them."""
    pending = [key for key, count in versions_of for _ in range(count)]
    rng.shuffle(pending)
    return [Version(key, n + 1, rng.random() < marker_share) for n, key in enumerate(pending)]


def row_values(rows: Sequence[Version]) -> list[dict]:
    newest: dict[str, Version] = {}
    for row in rows:
        if row.key not in newest or newest[row.key].id < row.id:
            newest[row.key] = row
    return [
        {
            "id": row.id,
            "bucket": BUCKET,
            "key": utf8(row.key),
            "size": 0 if row.marker else len(row.key),
            "etag": "" if row.marker else '"e"',
            "last_modified": T0,
            "content_type": None,
            "headers": "{}",
            "checksums": "{}",
            "version_id": row.version_id,
            "latest": 1 if newest[row.key] is row and not row.marker else None,
            "delete_marker": 1 if row.marker else 0,
        }
        for row in rows
    ]


keys_strategy = st.lists(
    st.tuples(st.text(alphabet=ALPHABET, min_size=1, max_size=5), st.integers(min_value=1, max_value=3)),
    min_size=0,
    max_size=20,
    unique_by=lambda pair: pair[0],
)


class VersionListingMixin:
    kind: str
    # The ways of walking a delimiter listing tested here, the default first.
    methods: tuple[str, ...]

    def setUp(self) -> None:
        if self.kind == "sqlite":
            self.url = dbfixtures.sqlite_url(self)
            os.makedirs(os.path.dirname(self.url[len("sqlite:///") :]), exist_ok=True)
        else:
            self.url = dbfixtures.store_database(self, self.kind)
        migrate.upgrade(self.url)
        self.engine = create_engine(self.url)
        self.addCleanup(self.engine.dispose)
        self.statements = 0

        def count(*args: object) -> None:
            self.statements += 1

        event.listen(self.engine, "before_cursor_execute", count)

    def store(self, rows: Sequence[Version]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(tables.objects))
            if rows:
                conn.execute(insert(tables.objects), row_values(rows))
            # Another bucket's rows are never listed.
            conn.execute(insert(tables.objects), [dict(row_values([Version("a", 10**6, False)])[0], bucket="va")])

    def page(
        self, prefix: str, delimiter: str, key_marker: str, version_marker: Optional[str], max_keys: int, method: str
    ) -> VersionPage:
        with self.engine.connect() as conn:
            return version_listing.list_versions(
                conn, BUCKET, prefix, delimiter, key_marker, version_marker, max_keys, method=method
            )

    def list_all(
        self,
        prefix: str,
        delimiter: str,
        max_keys: int,
        method: str,
        key_marker: str = "",
        version_marker: Optional[str] = None,
    ) -> list[Entry]:
        """Every page's entries, following the next markers, checking each page's."""
        entries: list[Entry] = []
        for _ in range(1000):
            page = self.page(prefix, delimiter, key_marker, version_marker, max_keys, method)
            got = page_entries(page)
            entries.extend(got)
            if not page.truncated:
                self.assertEqual((page.next_key_marker, page.next_version_id_marker), ("", None))
                return entries
            self.assertEqual(len(got), max_keys)
            last = got[-1]
            if isinstance(last, str):
                self.assertEqual((page.next_key_marker, page.next_version_id_marker), (last, None))
            else:
                self.assertEqual((page.next_key_marker, page.next_version_id_marker), (last[0], last[1]))
            key_marker, version_marker = page.next_key_marker, page.next_version_id_marker
        self.fail("the listing never ended")

    def check(
        self,
        rows: Sequence[Version],
        prefix: str,
        delimiter: str,
        max_keys: int,
        key_marker: str = "",
        version_marker: Optional[str] = None,
    ) -> None:
        expected = model_listing(rows, prefix, delimiter, key_marker, version_marker)
        for method in self.methods:
            listed = self.list_all(prefix, delimiter, max_keys, method, key_marker, version_marker)
            self.assertEqual(listed, expected, (method, prefix, delimiter, max_keys, key_marker, version_marker))

    def test_random_keys(self) -> None:
        """Longer listings than Hypothesis makes: keys of 1- to 4-byte characters, up to 4 versions each."""
        rng = random.Random(20261204)
        keys = {"".join(rng.choices(WIDE_ALPHABET, k=rng.randint(1, 7))) for _ in range(400)}
        rows = make_rows(((key, rng.randint(1, 4)) for key in sorted(keys)), rng)
        self.store(rows)
        for _ in range(10):
            prefix = "".join(rng.choices(WIDE_ALPHABET, k=rng.choice([0, 0, 1])))
            delimiter = rng.choice(DELIMITERS + ["😀", "-b", "ÿ"])
            max_keys = rng.choice([1, 2, 3, 10, 100, 1000])
            marker, version_marker = "", None
            if rng.random() < 0.5:
                picked = rng.choice(rows)
                marker, version_marker = picked.key, rng.choice([None, picked.version_id, "null"])
            with self.subTest(prefix=prefix, delimiter=delimiter, max_keys=max_keys, marker=marker):
                self.check(rows, prefix, delimiter, max_keys, marker, version_marker)

    def test_many_common_prefixes_in_few_statements(self) -> None:
        # 1200 common prefixes of 3 keys with 2 versions each, and a key of
        # 3 versions after every third prefix: pages of 1000 entries.
        rng = random.Random(1)
        keys = [(f"dir{d:04}/{n}", 2) for d in range(1200) for n in range(3)]
        keys += [(f"dir{d:04}.txt", 3) for d in range(0, 1200, 3)]
        rows = make_rows(keys, rng, marker_share=0.1)
        self.store(rows)
        expected = model_listing(rows, "", "/")
        self.assertEqual(len(expected), 1200 + 400 * 3)
        for method in self.methods:
            self.statements = 0
            first = self.page("", "/", "", None, 1000, method)
            statements = self.statements
            self.assertEqual(page_entries(first), expected[:1000])
            if method == listing.LOOP:
                # A statement or two per common prefix (the whole listing by
                # the loop is checked on fewer prefixes by the other tests).
                self.assertGreater(statements, 500)
                continue
            listed = self.list_all("", "/", 1000, method)
            self.assertEqual(listed, expected, method)
            # Longer than MariaDB's 1000 steps of recursion by default.
            self.assertEqual(page_entries(self.page("", "/", "", None, 3000, method)), expected, method)
            # The page's keys, then the walk.
            self.assertLessEqual(statements, 3 if self.kind == dbfixtures.MYSQL else 2, method)

    def test_a_page_of_files_is_a_range_query(self) -> None:
        rows = make_rows([(f"d/{n:04}", 2) for n in range(800)] + [("d/sub/x", 1), ("e", 1)], random.Random(2))
        self.store(rows)
        for method in self.methods:
            self.statements = 0
            page = self.page("d/", "/", "d/0100", None, 1000, method)
            if method != listing.LOOP:  # (which reads 1000 rows, then 1)
                self.assertEqual(self.statements, 2, method)  # the keys, then their rows
            self.assertEqual(page_entries(page), model_listing(rows, "d/", "/", "d/0100")[:1000])
            self.assertTrue(page.truncated)

    def test_a_page_ends_inside_a_keys_versions(self) -> None:
        # Every version of "b" and "d" after the walk began: pages of 1, 2, 3
        # entries end between two of a key's versions, and go on from there.
        rows = make_rows([("a/1", 2), ("a/2", 1), ("b", 5), ("c/1", 3), ("d", 4), ("e/f/g", 1)], random.Random(3))
        self.store(rows)
        b_versions = [r.version_id for r in sorted(rows, key=lambda r: -r.id) if r.key == "b"]
        for method in self.methods:
            page = self.page("", "/", "", None, 3, method)
            self.assertEqual(page.common_prefixes, ("a/",))
            self.assertEqual([(r.version_id, latest) for r, latest in page.versions],
                             [(b_versions[0], True), (b_versions[1], False)])
            self.assertEqual((page.truncated, page.next_key_marker, page.next_version_id_marker),
                             (True, "b", b_versions[1]))
            rest = self.page("", "/", "b", b_versions[1], 3, method)
            self.assertEqual([(r.version_id, latest) for r, latest in rest.versions],
                             [(v, False) for v in b_versions[2:]])
            self.assertEqual(rest.common_prefixes, ())
        for max_keys in (1, 2, 3, 4, 1000):
            self.check(rows, "", "/", max_keys)

    def test_markers_inside_a_common_prefix(self) -> None:
        rows = make_rows([("a/1", 3), ("a/2", 2), ("a/b/c", 1), ("ab", 2), ("b/1", 2), ("c", 1)], random.Random(4))
        self.store(rows)
        a1 = [r.version_id for r in rows if r.key == "a/1"]
        for marker, version_marker in [
            ("a/", None), ("a/1", None), ("a/1", a1[1]), ("a/b/c", "null"), ("a/zzz", None), ("a", None),
            ("ab", None), ("ab", [r.version_id for r in rows if r.key == "ab"][0]), ("b/", None), ("c", None),
        ]:
            for max_keys in (1, 2, 1000):
                self.check(rows, "", "/", max_keys, marker, version_marker)
                self.check(rows, "a/", "/", max_keys, marker, version_marker)
        for method in self.methods:
            page = self.page("", "/", "a/1", a1[0], 1000, method)
            self.assertEqual(page.common_prefixes, ("b/",))
            self.assertEqual([r.key for r, _ in page.versions], ["ab", "ab", "c"])

    def test_multibyte_and_highest_characters(self) -> None:
        # U+10FFFF is F4 8F BF BF, the greatest UTF-8 a key holds (never the
        # byte 0xff, which a key cannot contain): common prefixes ending in
        # it, or just before keys that continue with it, fold once.
        keys = ["a/\U0010ffff", "a/\U0010ffffx", "a/\U0010ffff/y", "a/b/c", "b", "c/\U0010ffff", "ÿ/1", "ÿ\U0010ffff",
                "\U0010ffff", "\U0010ffff/a", "\U0010ffff\U0010ffff/b", "é€😀/x", "é€😀"]
        rows = make_rows([(key, 2) for key in keys], random.Random(5))
        self.store(rows)
        for prefix in ("", "a/", "\U0010ffff", "ÿ", "é€"):
            for delimiter in ("/", "\U0010ffff", "😀", "€😀/"):
                for max_keys in (1, 2, 1000):
                    self.check(rows, prefix, delimiter, max_keys)

    def test_a_common_prefix_written_after_the_keys_were_read(self) -> None:
        # The page's keys (read first) showed no common prefix, but the range
        # query then meets one: a walk does the rest of the page.
        rows = make_rows([("a", 2), ("b/1", 1), ("b/2", 3), ("c", 3), ("d/1/2", 1), ("d/2", 2), ("e", 1)],
                         random.Random(9))
        self.store(rows)
        self.patch(version_listing, "_keys", lambda conn, bucket, cursor, upper, limit: [cursor[0] + b"-"])
        c_versions = [r.version_id for r in rows if r.key == "c"]
        for prefix, marker, version_marker in [("", "", None), ("d/", "", None), ("", "b/1", None),
                                               ("", "a", None), ("", "c", c_versions[-1])]:
            for max_keys in (1, 2, 3, 1000):
                self.check(rows, prefix, "/", max_keys, marker, version_marker)

    def test_a_short_walk_goes_on(self) -> None:
        # A walk that comes back without the end of the range and short of
        # the page (rows changed under a walk not read in one snapshot): the
        # next walk starts after its last key.
        rows = make_rows([(f"p{n:03}/x", 1) for n in range(50)] + [(f"k{n:03}", 2) for n in range(50)], random.Random(6))
        self.store(rows)
        walk_rows = version_listing._walk_rows

        def short(conn, method, bucket, page, upper, start, inclusive, wanted):
            return walk_rows(conn, method, bucket, page, upper, start, inclusive, min(wanted, 3))

        self.patch(version_listing, "_walk_rows", short)
        for max_keys in (7, 1000):
            self.check(rows, "", "/", max_keys)

    def test_a_walk_that_finds_nothing_is_an_error_not_a_hang(self) -> None:
        self.store(make_rows([("a/1", 1), ("b/1", 1)], random.Random(7)))
        self.patch(version_listing, "_walk_rows", lambda *args: [])
        for method in self.methods:
            if method != listing.LOOP:
                self.assertRaises(listing.RunawayListing, self.page, "", "/", "", None, 1000, method)

    def test_no_entries_wanted(self) -> None:
        self.store(make_rows([("a/1", 1), ("b", 2)], random.Random(8)))
        for method in self.methods:
            page = self.page("", "/", "", None, 0, method)
            self.assertEqual((page.versions, page.common_prefixes, page.truncated), ((), (), True))
            self.assertEqual((page.next_key_marker, page.next_version_id_marker), ("", None))


def _property(max_examples: int):
    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(
        keys=keys_strategy,
        prefix=st.text(alphabet=ALPHABET, max_size=2),
        delimiter=st.sampled_from(DELIMITERS),
        max_keys=st.integers(min_value=1, max_value=7),
        marker=st.one_of(st.just(""), st.text(alphabet=ALPHABET, min_size=1, max_size=4)),
        seed=st.integers(min_value=0, max_value=2**16),
    )
    def test_pages_concatenate_to_the_model_listing(self, keys, prefix, delimiter, max_keys, marker, seed):
        rng = random.Random(seed)
        rows = make_rows(keys, rng)
        self.store(rows)
        version_marker = None
        if rows and rng.random() < 0.5:
            picked = rng.choice(rows)
            marker, version_marker = picked.key, picked.version_id
        self.check(rows, prefix, delimiter, max_keys, marker, version_marker)

    return test_pages_concatenate_to_the_model_listing


class SQLiteVersionListingTests(VersionListingMixin, unittest.SynchronousTestCase):
    kind = "sqlite"
    methods = (listing.CTE, listing.LOOP)
    test_pages_concatenate_to_the_model_listing = _property(150)


class PostgreSQLVersionListingTests(VersionListingMixin, unittest.SynchronousTestCase):
    kind = dbfixtures.POSTGRES
    methods = (listing.CTE, listing.LOOP)
    test_pages_concatenate_to_the_model_listing = _property(40)


class MariaDBVersionListingTests(VersionListingMixin, unittest.SynchronousTestCase):
    kind = dbfixtures.MYSQL
    # The recursive CTE is correct on MariaDB too (if slow: it does not seek).
    methods = (listing.BLOCK, listing.LOOP, listing.CTE)
    test_pages_concatenate_to_the_model_listing = _property(40)
