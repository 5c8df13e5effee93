"""
L{s3balance.store.schema_head}: the newest revision read from the migration
files agrees with Alembic's, and a database is current only at it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, pool
from twisted.trial.unittest import SynchronousTestCase

from s3balance.store import migrate, schema_head


class SchemaHeadTests(SynchronousTestCase):
    def url(self) -> str:
        return f"sqlite:///{Path(self.mktemp()).resolve()}"

    def test_head_is_alembics(self) -> None:
        self.assertEqual(schema_head.head_revision(), migrate.head_revision())

    def test_an_empty_database_is_not_current(self) -> None:
        url = self.url()
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        self.assertFalse(schema_head.is_current(url))

    def test_current_only_at_the_head(self) -> None:
        url = self.url()
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(url, "0012")
        self.assertFalse(schema_head.is_current(url))
        migrate.upgrade(url)
        self.assertTrue(schema_head.is_current(url))
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                self.assertEqual(schema_head.stored_revision(connection), migrate.head_revision())
        finally:
            engine.dispose()

    def test_an_unreachable_database_is_not_current(self) -> None:
        self.assertFalse(schema_head.is_current("sqlite:////nonexistent-folder/x/y.db"))

    def test_a_branched_history_is_no_head(self) -> None:
        folder = Path(self.mktemp())
        (folder / "versions").mkdir(parents=True)
        for name, revision, down in (("a", "1", None), ("b", "2", "1"), ("c", "3", "1")):
            parent = "None" if down is None else f'"{down}"'
            (folder / "versions" / f"{name}.py").write_text(f'revision = "{revision}"\ndown_revision = {parent}\n')
        self.patch(schema_head, "script_location", lambda: str(folder))
        schema_head.head_revision.cache_clear()
        self.addCleanup(schema_head.head_revision.cache_clear)
        self.assertIsNone(schema_head.head_revision())
        (folder / "versions" / "c.py").write_text('revision = "3"\ndown_revision = "2"\n')
        schema_head.head_revision.cache_clear()
        self.assertEqual(schema_head.head_revision(), "3")
