"""Alembic environment: run the app's migrations on a connection it is handed.

Migrations run through ``github_app.schema`` (``github-app db upgrade``), which
passes an open connection in ``config.attributes["connection"]``; offline SQL
generation is not supported. On PostgreSQL an advisory lock serialises
concurrent upgrades, so two instances that start their upgrade at once apply
each migration once.
"""

from alembic import context
from sqlalchemy import text

from github_app.store import Base

#: Key of the PostgreSQL advisory lock held while migrations run.
MIGRATION_LOCK_KEY = 7_461_726_101

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "Run migrations with `github-app db upgrade`, which connects to "
        "DATABASE_URL; offline SQL generation is not supported."
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters tables by copying them, so generated migrations use batches.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
    context.run_migrations()
