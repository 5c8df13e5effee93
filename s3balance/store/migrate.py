"""
Schema migrations: Alembic driven from code (no alembic.ini).

The Alembic folder is the top-level C{migrations/} of the source tree,
installed as the package C{s3balance.migrations}.
"""

from __future__ import annotations

from typing import Optional, Union

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection, make_url

from s3balance.store.schema_head import script_location as script_location


def alembic_config(url: Union[str, URL, None] = None, connection: Optional[Connection] = None) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
    if url is not None:
        # ConfigParser interpolation: a literal '%' in a password must be doubled.
        rendered = make_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> Optional[str]:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Migrate the database of an open connection (the caller commits)."""
    command.upgrade(alembic_config(connection=connection), revision)


def upgrade(url: Union[str, URL], revision: str = "head") -> None:
    """Blocking: migrate the database at url (for the admin CLI)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            upgrade_connection(connection, revision)
    finally:
        engine.dispose()


def current_revision_of(connection: Connection) -> Optional[str]:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(url: Union[str, URL]) -> Optional[str]:
    """Blocking: the Alembic revision the database at url is at (None: empty)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return current_revision_of(connection)
    finally:
        engine.dispose()
