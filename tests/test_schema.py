"""Migrations: they build the models' schema, the app checks it, the CLI runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from github_app import cli, schema
from github_app.app import create_app
from github_app.config import Settings
from github_app.store import Store, engine_url
from tests.conftest import with_settings


def test_migrations_match_models(database_url: str) -> None:
    """A model change without a migration fails here: add one with
    ``github-app db revision -m "..."``."""
    store = Store(database_url)

    differences = schema.differences(store.engine)

    assert differences == []


def test_migrations_have_one_head() -> None:
    scripts = ScriptDirectory.from_config(schema.alembic_config())

    assert len(scripts.get_heads()) == 1


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    store = Store(database_url)

    schema.upgrade(store.engine, "head")
    with store.engine.begin() as connection:
        command.downgrade(schema.alembic_config(connection), "base")
    tables_after_downgrade = set(inspect(store.engine).get_table_names())
    schema.upgrade(store.engine)

    assert tables_after_downgrade <= {"alembic_version"}
    assert schema.current_revision(store.engine) == schema.head_revision()
    assert schema.differences(store.engine) == []


def test_app_refuses_unmigrated_database(settings: Settings, tmp_path: Path) -> None:
    empty = with_settings(settings, database_url=f"sqlite:///{tmp_path / 'new.sqlite'}")

    with pytest.raises(schema.SchemaOutOfDateError, match="github-app db upgrade"):
        create_app(empty)


def test_app_refuses_database_at_older_revision(
    database_url: str, settings: Settings
) -> None:
    store = Store(database_url)
    with store.engine.begin() as connection:
        command.downgrade(schema.alembic_config(connection), "base")

    with pytest.raises(schema.SchemaOutOfDateError, match="has no schema"):
        create_app(settings)


def test_db_upgrade_command_migrates_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", url)

    code = cli.main(["db", "upgrade"])

    store = Store(url)
    assert code == 0
    assert schema.current_revision(store.engine) == schema.head_revision()
    assert "from nothing to" in capsys.readouterr().out


def test_db_upgrade_command_rejects_other_databases(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://app:hunter2@127.0.0.1/app")

    code = cli.main(["db", "upgrade"])

    error = capsys.readouterr().err
    assert code == 3
    assert "DATABASE_URL must be a postgresql://" in error
    assert "hunter2" not in error


def test_concurrent_upgrades_apply_each_migration_once(postgres_url: str) -> None:
    """Two instances that run ``db upgrade`` at once: the advisory lock in the
    migration environment makes the second wait, then find nothing to do."""
    store = Store(postgres_url)
    with store.engine.begin() as connection:
        command.downgrade(schema.alembic_config(connection), "base")
    environment = {**os.environ, "DATABASE_URL": postgres_url}
    upgrade = [sys.executable, "-m", "github_app.cli", "db", "upgrade"]

    processes = [
        subprocess.Popen(upgrade, env=environment, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [process.communicate(timeout=60)[1] for process in processes]

    assert [process.returncode for process in processes] == [0, 0], errors
    assert schema.current_revision(store.engine) == schema.head_revision()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://app@127.0.0.1/app", "postgresql+psycopg"),
        ("postgresql://app@127.0.0.1/app", "postgresql+psycopg"),
        ("postgresql+psycopg://app@127.0.0.1/app", "postgresql+psycopg"),
        ("sqlite:///app.sqlite", "sqlite"),
    ],
)
def test_engine_url_chooses_psycopg(url: str, driver: str) -> None:
    assert engine_url(url).drivername == driver
