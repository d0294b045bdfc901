"""Fresh, migrated databases for tests: a SQLite file or a PostgreSQL schema.

SQLite is migrated once per test run into a template file that every test
copies. PostgreSQL tests get a schema of their own, migrated from scratch, in the
database named by ``TEST_POSTGRES_URL`` (such as
``postgresql://postgres@127.0.0.1:5432/test``; the user must be allowed to
create schemas there), and are left out without it.
"""

import os
import re
import shutil
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.pool import Pool

from github_app import schema
from github_app.store import Store, engine_url

POSTGRES_URL_VARIABLE = "TEST_POSTGRES_URL"
SKIP_REASON = (
    f"set {POSTGRES_URL_VARIABLE} to a PostgreSQL URL such as "
    "postgresql://postgres@127.0.0.1:5432/test to run them"
)
#: Prefix of the schemas a test run creates, so they are easy to find and drop.
SCHEMA_PREFIX = "github_app_test_"


#: Open PostgreSQL connections of this process and the DSN of each.
_connections: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_connections_lock = threading.Lock()


@event.listens_for(Pool, "connect")
def _track_connection(dbapi_connection: Any, _record: Any) -> None:
    # Apps made by tests are not disposed, so their pooled connections are
    # closed here before their schema is dropped.
    if hasattr(dbapi_connection, "info") and hasattr(dbapi_connection.info, "dbname"):
        with _connections_lock:
            _connections[dbapi_connection] = dbapi_connection.info.dsn


def close_connections(schema_name: str) -> None:
    """Close every pooled PostgreSQL connection of this process to a schema."""
    option = re.compile(rf"search_path={re.escape(schema_name)}(?!\w)")
    with _connections_lock:
        found = [c for c, dsn in _connections.items() if option.search(dsn)]
    for connection in found:
        connection.close()


def migrate(url: str) -> None:
    """Apply every migration to the database at ``url``."""
    store = Store(url)
    schema.upgrade(store.engine)
    store.engine.dispose()


def make_sqlite_template(folder: Path) -> Path:
    """Create a migrated SQLite file in ``folder`` and return its path."""
    path = folder / "template.sqlite"
    migrate(f"sqlite:///{path}")
    return path


def copy_sqlite(template: Path, folder: Path) -> str:
    """Copy the template into ``folder`` and return the copy's URL."""
    path = folder / "app.sqlite"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


class PostgresServer:
    """Create and drop per-test schemas in one PostgreSQL database.

    Each test gets its own schema, migrated from scratch, and a URL whose
    ``search_path`` points at it, so the app's tables land there.
    """

    def __init__(self, url: str) -> None:
        self._url: URL = engine_url(url)
        self._run = uuid.uuid4().hex[:8]
        self._count = 0
        # A plain psycopg connection, so close_connections() leaves it alone.
        self._admin = psycopg.connect(
            self._url.set(drivername="postgresql").render_as_string(
                hide_password=False
            ),
            autocommit=True,
        )

    def stop(self) -> None:
        """Close the connection used to create and drop schemas."""
        self._admin.close()

    @contextmanager
    def database(self) -> Iterator[str]:
        """Create a fresh migrated schema, yield its URL, then drop it."""
        self._count += 1
        name = f"{SCHEMA_PREFIX}{self._run}_{self._count}"
        self._admin.execute(f'CREATE SCHEMA "{name}"')
        url = self._url.update_query_dict({"options": f"-csearch_path={name}"})
        rendered = url.render_as_string(hide_password=False)
        try:
            migrate(rendered)
            yield rendered
        finally:
            close_connections(name)
            self._admin.execute(f'DROP SCHEMA "{name}" CASCADE')


def postgres_url() -> str | None:
    """Return the server URL from ``TEST_POSTGRES_URL``, or None when unset."""
    return os.environ.get(POSTGRES_URL_VARIABLE, "").strip() or None
