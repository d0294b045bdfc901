"""Settings for codelists and templates: OPENCODELISTS_URL and TEMPLATES_DIR."""

from pathlib import Path

import pytest

from github_app.config import load_settings
from tests.test_config import config_error, env  # noqa: F401 - the env fixture
from tests.test_templates import write_template


def test_opencodelists_url_default(env: dict[str, str]) -> None:
    settings = load_settings(env)

    assert settings.opencodelists_url == "https://www.opencodelists.org"
    assert settings.templates_dir is None


def test_opencodelists_url_set(env: dict[str, str]) -> None:
    settings = load_settings({**env, "OPENCODELISTS_URL": "http://127.0.0.1:8000/"})

    assert settings.opencodelists_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize("value", ["opencodelists.org", "ftp://127.0.0.1", "http://"])
def test_opencodelists_url_invalid(env: dict[str, str], value: str) -> None:
    message = config_error({**env, "OPENCODELISTS_URL": value})

    assert message.startswith("OPENCODELISTS_URL must be an http or https URL")
    assert repr(value) in message


def test_templates_dir_set(env: dict[str, str], tmp_path: Path) -> None:
    write_template(tmp_path, "extra")

    settings = load_settings({**env, "TEMPLATES_DIR": str(tmp_path)})

    assert settings.templates_dir == tmp_path


def test_templates_dir_missing(env: dict[str, str], tmp_path: Path) -> None:
    message = config_error({**env, "TEMPLATES_DIR": str(tmp_path / "absent")})

    assert message.startswith("TEMPLATES_DIR is ")
    assert "not a folder" in message


def test_templates_dir_broken_template(env: dict[str, str], tmp_path: Path) -> None:
    write_template(tmp_path, "broken", metadata='name = "broken"\n')

    message = config_error({**env, "TEMPLATES_DIR": str(tmp_path)})

    assert "TEMPLATES_DIR has a broken template" in message
    assert "must set version" in message
