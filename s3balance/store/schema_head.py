"""
Is a database's schema current?  Answered without Alembic.

Importing Alembic and running its upgrade costs a daemon about a third of a
second at every start, although after the first start the schema is almost
always at the newest revision already.  So the newest revision is read from
the migration files themselves (each names its C{revision} and
C{down_revision}), the database's from its C{alembic_version} table, and
Alembic is loaded only when the two differ (L{s3balance.store.migrate}).
Anything unexpected (a branched history, a file this reader cannot parse)
answers "not current", and the caller runs Alembic, which decides.
"""

from __future__ import annotations

import importlib.resources
import re
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

from sqlalchemy import create_engine, inspect, pool, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError

_ASSIGNMENT = re.compile(r"""^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:"([^"]*)"|'([^']*)'|None)\s*$""", re.M)


def script_location() -> str:
    """The directory holding env.py and versions/, installed or in a checkout."""
    try:
        folder = importlib.resources.files("s3balance.migrations")
    except ModuleNotFoundError:
        # A source checkout that is not installed: migrations/ next to s3balance/.
        return str(Path(__file__).resolve().parents[2] / "migrations")
    return str(folder)


@lru_cache(maxsize=1)
def head_revision() -> Optional[str]:
    """The one revision no migration builds on; None when that is not clear."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(Path(script_location(), "versions").glob("*.py")):
        found = {
            match.group(1): match.group(2) if match.group(2) is not None else match.group(3)
            for match in _ASSIGNMENT.finditer(path.read_text(encoding="utf-8"))
        }
        if "revision" not in found:
            if path.name != "__init__.py":
                return None
            continue
        if found["revision"] is None or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"] is not None:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stored_revision(connection: Connection) -> Optional[str]:
    """The revision recorded in the database; None when it has none (or more than one)."""
    # Asked first, not tried: a failed SELECT would abort a PostgreSQL
    # transaction that the migration then runs in.
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def is_current(url: Union[str, URL]) -> bool:
    """Blocking: is the database at C{url} at the newest revision?  False when unsure."""
    head = head_revision()
    if head is None:
        return False
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return stored_revision(connection) == head
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()
