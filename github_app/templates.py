"""Render a query's analysis code from a bundled template.

A template is a folder under ``github_app/templates/``: ``schema.json`` (a JSON
Schema for its inputs) and the project's files, where ``*.j2`` files are rendered
with Jinja2 and the rest are copied. Rendering uses Jinja2's sandboxed environment
with ``StrictUndefined``; values land in code only through filters that quote them
for the target language.
"""

import json
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from jsonschema import Draft202012Validator, ValidationError

DEFAULT_START_DATE = "2020-01-01"
DEFAULT_END_DATE = "2024-12-31"


class TemplateNotFoundError(LookupError):
    """No template of that name is bundled."""


@dataclass(frozen=True)
class InputError:
    """One invalid input: where it is and what is wrong with it."""

    field: str
    message: str


def python_literal(value: Any) -> str:
    """Quote a value as a Python literal; JSON strings and numbers are valid Python."""
    if isinstance(value, bool) or value is None:
        return repr(value)

    return json.dumps(value, ensure_ascii=True)


def _environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    environment.filters["python_literal"] = python_literal
    return environment


def _template_folder(name: str) -> Traversable:
    root = resources.files("github_app") / "templates"
    folder = root / name
    if not name.isidentifier() or not folder.is_dir():
        available = sorted(item.name for item in root.iterdir() if item.is_dir())
        raise TemplateNotFoundError(
            f"Unknown template {name!r}: use one of {', '.join(available)}."
        )

    return folder


def list_templates() -> list[str]:
    root = resources.files("github_app") / "templates"
    return sorted(item.name for item in root.iterdir() if item.is_dir())


def _error_fields(error: ValidationError) -> list[str]:
    """Name the input(s) an error is about, including keys that are absent or extra."""
    path = [str(part) for part in error.path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        return [".".join([*path, key]) for key in missing]

    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        extra = [key for key in error.instance if key not in allowed]
        return [".".join([*path, str(key)]) for key in extra]

    return [".".join(path)]


def validate_inputs(name: str, inputs: Any) -> list[InputError]:
    """Check ``inputs`` against the template's schema and return the problems."""
    schema = json.loads((_template_folder(name) / "schema.json").read_text())
    validator = Draft202012Validator(
        schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = []
    for error in sorted(validator.iter_errors(inputs), key=lambda e: list(e.path)):
        for field in _error_fields(error):
            full = "analysis.inputs" + (f".{field}" if field else "")
            errors.append(InputError(field=full, message=error.message))

    if not errors and isinstance(inputs, dict):
        start = inputs.get("start_date", DEFAULT_START_DATE)
        end = inputs.get("end_date", DEFAULT_END_DATE)
        if start > end:
            errors.append(
                InputError(
                    field="analysis.inputs.start_date",
                    message=f"start_date {start} is after end_date {end}",
                )
            )

    return errors


def _walk(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found = []
    for item in folder.iterdir():
        path = f"{prefix}{item.name}"
        if item.is_dir():
            found.extend(_walk(item, f"{path}/"))
        elif item.name != "schema.json":
            found.append((path, item))

    return found


def render(name: str, *, query_id: str, inputs: dict[str, Any]) -> dict[str, str]:
    """Render template ``name`` into the query's file set (path to text).

    The inputs must already be valid (``validate_inputs``). ``config.json`` records
    the template name and the inputs as data.
    """
    codelists = {
        key: value for key, value in sorted(inputs.items()) if key.startswith("codelist")
    }
    context = {
        "query_id": query_id,
        "template_name": name,
        "codelists": codelists,
        "start_date": inputs.get("start_date", DEFAULT_START_DATE),
        "end_date": inputs.get("end_date", DEFAULT_END_DATE),
    }
    environment = _environment()
    files = {}
    for path, item in _walk(_template_folder(name)):
        source = item.read_text()
        if path.endswith(".j2"):
            files[path[:-3]] = environment.from_string(source).render(context)
        else:
            files[path] = source

    config = {"query_id": query_id, "template": name, "inputs": inputs}
    files["config.json"] = json.dumps(config, indent=2, sort_keys=True) + "\n"
    return files
