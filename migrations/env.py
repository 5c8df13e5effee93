"""
Alembic environment for s3balance.

There is no alembic.ini: L{s3balance.store.migrate} builds the Config in code.
The daemon passes an open Connection in C{config.attributes["connection"]};
without one, C{sqlalchemy.url} from the Config is used (offline mode renders
SQL for a DBA to run).
"""

from alembic import context
from sqlalchemy import create_engine, pool

from s3balance.store.tables import metadata

config = context.config


def _configure(connection):
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite can't ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
