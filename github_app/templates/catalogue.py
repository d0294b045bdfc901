"""Find and load template packages from the bundled folder and ``TEMPLATES_DIR``.

A template package is a folder named after the template that contains:

- ``template.toml``: ``name`` (the folder's name), ``version``, ``description``,
  and optionally ``[codelists]`` with ``inputs`` (the inputs that name an
  OpenCodelists codelist version) and ``coding_systems`` (those the analysis code
  can query), and ``date_ranges`` (pairs of inputs that must be in order);
- ``schema.json``: a strict JSON Schema (draft 2020-12) for the inputs;
- the project's files: ``*.j2`` files are rendered, the rest are copied.

A template in ``TEMPLATES_DIR`` replaces a bundled template of the same name.
"""

import json
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: Versions go into commit trailers, so they are one short line.
TEMPLATE_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+-]{0,31}$")
METADATA_FILE = "template.toml"
SCHEMA_FILE = "schema.json"


class TemplateError(Exception):
    """A template package is malformed; the message names the file and the fix."""


class TemplateNotFoundError(LookupError):
    """No template of that name is bundled or in ``TEMPLATES_DIR``."""


@dataclass(frozen=True)
class Template:
    """A loaded template package."""

    name: str
    version: str
    description: str
    folder: Traversable
    schema: dict[str, Any]
    codelist_inputs: tuple[str, ...] = ()
    coding_systems: tuple[str, ...] = ()
    date_ranges: tuple[tuple[str, str], ...] = ()


def bundled_folder() -> Traversable:
    return resources.files("github_app") / "templates"


def _roots(templates_dir: Path | None) -> list[Traversable]:
    # The operator's folder comes first so that its templates replace bundled ones.
    roots: list[Traversable] = [bundled_folder()]
    if templates_dir is not None:
        roots.insert(0, templates_dir)

    return roots


def list_templates(templates_dir: Path | None = None) -> list[str]:
    """Return the names of the templates that can be rendered."""
    names = set()
    for root in _roots(templates_dir):
        for item in root.iterdir():
            if item.is_dir() and (item / METADATA_FILE).is_file():
                names.add(item.name)

    return sorted(names)


def find_template(name: str, templates_dir: Path | None = None) -> Template:
    """Load the template called ``name``.

    Raises:
        TemplateNotFoundError: no template has that name.
        TemplateError: the template package is malformed.
    """
    if TEMPLATE_NAME.fullmatch(name):
        for root in _roots(templates_dir):
            folder = root / name
            if folder.is_dir() and (folder / METADATA_FILE).is_file():
                return load_template(folder)

    available = ", ".join(list_templates(templates_dir)) or "(none)"
    raise TemplateNotFoundError(f"Unknown template {name!r}: use one of {available}.")


def load_template(folder: Traversable) -> Template:
    """Read and check a template package's ``template.toml`` and ``schema.json``.

    Raises:
        TemplateError: a file is missing or malformed.
    """
    where = f"{folder.name}/{METADATA_FILE}"
    try:
        metadata = tomllib.loads((folder / METADATA_FILE).read_text())
        schema = json.loads((folder / SCHEMA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise TemplateError(f"Template {folder.name!r} cannot be read: {exc}") from exc

    name, version = metadata.get("name"), metadata.get("version")
    if name != folder.name or not TEMPLATE_NAME.fullmatch(str(name)):
        raise TemplateError(
            f"{where} must set name to the folder's name, {folder.name!r}, in "
            "lower case letters, digits and underscores."
        )

    if not isinstance(version, str) or not TEMPLATE_VERSION.fullmatch(version):
        raise TemplateError(f"{where} must set version, such as \"1.0.0\".")

    _check_schema(folder.name, schema)
    codelists = metadata.get("codelists", {})
    template = Template(
        name=name,
        version=version,
        description=str(metadata.get("description", "")),
        folder=folder,
        schema=schema,
        codelist_inputs=tuple(codelists.get("inputs", ())),
        coding_systems=tuple(codelists.get("coding_systems", ())),
        date_ranges=tuple(tuple(pair) for pair in metadata.get("date_ranges", ())),
    )
    _check_named_inputs(template, where)
    return template


def _check_schema(name: str, schema: Any) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise TemplateError(
            f"{name}/{SCHEMA_FILE} is not a valid JSON Schema: {exc.message}"
        ) from None

    if schema.get("type") != "object":
        raise TemplateError(f"{name}/{SCHEMA_FILE} must describe an object.")

    loose = list(_loose_parts(schema, "#"))
    if loose:
        raise TemplateError(
            f"{name}/{SCHEMA_FILE} is not strict at {', '.join(loose)}: every object "
            "needs additionalProperties false, and every string a maxLength and a "
            "pattern, enum or const."
        )


def _loose_parts(schema: Any, where: str) -> list[str]:
    """Return the JSON pointers of subschemas that accept open-ended input."""
    if not isinstance(schema, dict):
        return []

    found = []
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "object" in types and schema.get("additionalProperties") is not False:
        found.append(where)
    if "string" in types and (
        "maxLength" not in schema
        or not {"pattern", "enum", "const"} & set(schema)
    ):
        found.append(where)

    for key in ("properties", "$defs"):
        for child, subschema in schema.get(key, {}).items():
            found.extend(_loose_parts(subschema, f"{where}/{key}/{child}"))
    if "items" in schema:
        found.extend(_loose_parts(schema["items"], f"{where}/items"))

    return found


def _check_named_inputs(template: Template, where: str) -> None:
    properties = template.schema.get("properties", {})
    named = list(template.codelist_inputs)
    named += [name for pair in template.date_ranges for name in pair]
    unknown = [name for name in named if name not in properties]
    if unknown or any(len(pair) != 2 for pair in template.date_ranges):
        raise TemplateError(
            f"{where} names inputs that {SCHEMA_FILE} does not define, or a date "
            f"range that is not a pair: {', '.join(unknown) or template.date_ranges}."
        )
