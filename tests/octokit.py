"""GitHub's example webhook payloads and webhook schemas, installed from npm.

``@octokit/webhooks-examples`` contains payloads recorded from GitHub, and
``@octokit/openapi-webhooks`` GitHub's OpenAPI description of every webhook.
Both are installed once into ``.cache/octokit`` (pinned versions, so the
examples a test expects do not change underneath it). Without npm, or when the
registry cannot be reached, the tests that need them are skipped.
"""

import copy
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

PACKAGES = {
    "@octokit/webhooks-examples": "7.6.1",
    "@octokit/openapi-webhooks": "12.1.0",
}
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "octokit"
SPEC_URI = "urn:octokit:openapi-webhooks"
#: The repository, owner and tag that GitHub's examples were recorded on.
EXAMPLE_REPO = "Codertocat/Hello-World"
EXAMPLE_TAG = "simple-tag"
EXAMPLE_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


@dataclass(frozen=True)
class Octokit:
    examples: dict[str, list[dict[str, Any]]]
    spec: dict[str, Any]

    def validator(self, schema_name: str) -> Draft202012Validator:
        """Return a validator for ``#/components/schemas/<schema_name>``."""
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        schema = {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}
        return Draft202012Validator(schema, registry=registry)

    def problems(self, schema_name: str, payload: dict[str, Any]) -> list[str]:
        """Return one line per way ``payload`` breaks the schema."""
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '(payload)'}: "
            f"{error.message[:200]}"
            for error in self.validator(schema_name).iter_errors(payload)
        ]


def install() -> Octokit:
    """Install the packages if needed and load them, or skip the calling test."""
    root = CACHE / "node_modules" / "@octokit"
    examples_file = root / "webhooks-examples" / "api.github.com" / "index.json"
    spec_file = root / "openapi-webhooks" / "generated" / "api.github.com.json"
    if not (examples_file.exists() and spec_file.exists() and _pinned(root)):
        _npm_install()

    examples = {
        entry["name"]: entry["examples"]
        for entry in json.loads(examples_file.read_text())
    }
    return Octokit(examples=examples, spec=json.loads(spec_file.read_text()))


def _pinned(root: Path) -> bool:
    for name, version in PACKAGES.items():
        manifest = root / name.split("/")[1] / "package.json"
        if not manifest.exists():
            return False
        if json.loads(manifest.read_text()).get("version") != version:
            return False

    return True


def _npm_install() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: it is needed to fetch @octokit payloads")

    CACHE.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    command = [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund"]
    result = subprocess.run(
        [*command, *specs], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        pytest.skip(f"npm install of {' '.join(specs)} failed: {lines[-1]}")


def adapt(
    example: dict[str, Any], *, repo: str, tag: str, commit: str, branch: str = "main"
) -> dict[str, Any]:
    """Return ``example`` moved onto ``repo``: its tag, branch and commit replaced.

    Every mention of the example repository, its tag and its commit is replaced
    in the JSON text, so URLs and nested objects stay consistent.
    """
    owner, name = repo.split("/")
    text = json.dumps(example)
    replacements = [
        (EXAMPLE_REPO, repo),
        ('"Hello-World"', f'"{name}"'),
        ('"login": "Codertocat"', f'"login": "{owner}"'),
        ('"name": "Codertocat"', f'"name": "{owner}"'),
        (f"refs/tags/{EXAMPLE_TAG}", f"refs/tags/{tag}"),
        (f'"{EXAMPLE_TAG}"', f'"{tag}"'),
        (f"compare/{EXAMPLE_TAG}", f"compare/{tag}"),
        ("refs/heads/master", f"refs/heads/{branch}"),
        ('"master_branch": "master"', f'"master_branch": "{branch}"'),
        ('"default_branch": "master"', f'"default_branch": "{branch}"'),
        (EXAMPLE_SHA, commit),
    ]
    for old, new in replacements:
        text = text.replace(old, new)

    adapted: dict[str, Any] = json.loads(text)
    return copy.deepcopy(adapted)
