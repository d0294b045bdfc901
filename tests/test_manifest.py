"""app.yml, the App's manifest, matches what the app handles and needs."""

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from flask import Flask

import handlers  # noqa: F401 - registers the handlers with the router
from github_app.webhooks import ALWAYS_DELIVERED, router
from sandbox import apps

MANIFEST = Path(__file__).resolve().parent.parent / "app.yml"
#: Writing commits, trees, tags and refs needs contents: write; GitHub grants
#: metadata: read to every App.
MINIMAL_PERMISSIONS = {"contents": "write", "metadata": "read"}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return loaded


def test_manifest_events_are_the_handled_events(manifest: dict[str, Any]) -> None:
    subscribed = set(manifest["default_events"])

    assert subscribed == set(router.events - ALWAYS_DELIVERED)


def test_manifest_permissions_are_minimal(manifest: dict[str, Any]) -> None:
    assert manifest["default_permissions"] == MINIMAL_PERMISSIONS


def test_manifest_webhook_path_is_the_route(
    manifest: dict[str, Any], app: Flask
) -> None:
    path = urlsplit(manifest["hook_attributes"]["url"]).path
    routes = {rule.rule for rule in app.url_map.iter_rules()}

    assert path in routes
    assert manifest["public"] is False


def test_sandbox_installation_matches_manifest(manifest: dict[str, Any]) -> None:
    assert apps.PERMISSIONS == manifest["default_permissions"]
    assert sorted(apps.EVENTS) == sorted(manifest["default_events"])
