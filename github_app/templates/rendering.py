"""Validate a template's inputs and render its files for one query.

Rendering uses Jinja2's sandboxed environment with ``StrictUndefined``, so a
template cannot reach Python internals and a misspelt variable fails instead of
rendering empty. Inputs reach the files only through the quoting filters.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment
from jsonschema import Draft202012Validator, ValidationError, validators

from github_app.codelists import CODELISTS_DIR, DownloadedCodelist, codelist_files
from github_app.templates.catalogue import (
    METADATA_FILE,
    SCHEMA_FILE,
    Template,
    TemplateError,
    find_template,
)
from github_app.templates.filters import FILTERS

#: Query ids become tag names and output folders: one path segment, no "..".
QUERY_ID = re.compile(r"^(?!.*\.\.)(?!.*\.lock$)[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: A path in a template package; hidden files and odd characters are refused.
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
CONFIG_FILE = "config.json"
#: Column names OpenCodelists itself looks for when it reads codes from an
#: uploaded CSV, in its order, with the ``code`` column of newer codelists first.
CODE_COLUMNS = ("code", "CTV3ID", "CTV3Code", "ctv3_id", "snomedct_id", "dmd_id", "id")


@dataclass(frozen=True)
class InputError:
    """One invalid input: where it is and what is wrong with it."""

    field: str
    message: str


class InvalidInputsError(ValueError):
    """Inputs that passed the schema do not fit the downloaded codelists."""

    def __init__(self, errors: list[InputError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Any:
    """Apply ``pattern`` with ECMA-262's ``$``, which matches only at the very end.

    JSON Schema patterns are ECMA-262 regular expressions, but Python's ``$`` also
    matches before a final newline, which would let "valid\\n" through.
    """
    if not validator.is_type(instance, "string"):
        return

    anchored = pattern
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        anchored = pattern[:-1] + r"\Z"
    if not re.search(anchored, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


InputsValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def _field(name: str = "") -> str:
    return "analysis.inputs" + (f".{name}" if name else "")


def _error_fields(error: ValidationError) -> list[str]:
    """Name the inputs an error is about, including keys that are absent or extra."""
    path = [str(part) for part in error.path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        return [".".join([*path, key]) for key in missing]

    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        extra = [key for key in error.instance if key not in allowed]
        return [".".join([*path, str(key)]) for key in extra]

    return [".".join(path)]


def _message(error: ValidationError) -> str:
    # jsonschema repeats the whole value, which may be megabytes long.
    if error.validator in ("pattern", "maxLength", "format") and isinstance(
        error.instance, str
    ):
        shown = (
            repr(error.instance)
            if len(error.instance) <= 60
            else f"The value of {len(error.instance)} characters"
        )
        rule = {
            "pattern": f"must match {error.validator_value}",
            "maxLength": f"must be at most {error.validator_value} characters long",
            "format": f"must be a valid {error.validator_value}",
        }[str(error.validator)]
        description = error.schema.get("description")
        hint = f" ({description})" if description else ""
        return f"{shown} is invalid: it {rule}{hint}."

    return str(error.message)


def validate_inputs(
    name: str, inputs: Any, *, templates_dir: Path | None = None
) -> list[InputError]:
    """Check ``inputs`` against the template's schema and rules; return the problems.

    Raises:
        TemplateNotFoundError: no template has that name.
    """
    template = find_template(name, templates_dir)
    validator = InputsValidator(
        template.schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = []
    for error in sorted(validator.iter_errors(inputs), key=lambda e: list(e.path)):
        for field in _error_fields(error):
            errors.append(InputError(field=_field(field), message=_message(error)))

    if not errors and isinstance(inputs, dict):
        errors = _check_rules(template, with_defaults(template, inputs))

    return errors


def _check_rules(template: Template, inputs: dict[str, Any]) -> list[InputError]:
    errors = []
    for start_name, end_name in template.date_ranges:
        start, end = inputs.get(start_name), inputs.get(end_name)
        if start is not None and end is not None and start > end:
            errors.append(
                InputError(
                    _field(start_name),
                    f"{start_name} {start} is after {end_name} {end}: choose a start "
                    "on or before the end.",
                )
            )

    seen: dict[str, str] = {}
    for input_name in template.codelist_inputs:
        value = inputs.get(input_name)
        if not isinstance(value, str):
            continue
        codelist = value.rsplit("/", 1)[0]
        if codelist in seen:
            errors.append(
                InputError(
                    _field(input_name),
                    f"{value!r} is a version of the codelist already chosen in "
                    f"{seen[codelist]}: choose a different codelist.",
                )
            )
        seen.setdefault(codelist, input_name)

    return errors


def with_defaults(template: Template, inputs: dict[str, Any]) -> dict[str, Any]:
    """Return ``inputs`` with the schema's defaults filled in for absent inputs."""
    filled = dict(inputs)
    for key, subschema in template.schema.get("properties", {}).items():
        if key not in filled and "default" in subschema:
            filled[key] = subschema["default"]

    return filled


def _code_column(header: list[str]) -> str:
    for column in CODE_COLUMNS:
        if column in header:
            return column

    return header[0]


def _codelist_context(
    template: Template,
    inputs: dict[str, Any],
    codelists: Sequence[DownloadedCodelist],
) -> list[dict[str, str]]:
    by_id = {codelist.id: codelist for codelist in codelists}
    context, errors = [], []
    for input_name in template.codelist_inputs:
        if input_name not in inputs:
            continue
        codelist = by_id.get(inputs[input_name])
        if codelist is None:
            raise ValueError(f"Codelist {inputs[input_name]!r} was not downloaded.")
        if codelist.coding_system not in template.coding_systems:
            errors.append(
                InputError(
                    _field(input_name),
                    f"Codelist {codelist.id} uses the {codelist.coding_system} coding "
                    f"system, but the {template.name} template supports only "
                    f"{', '.join(template.coding_systems)}: choose another codelist.",
                )
            )
            continue
        context.append(
            {
                "input": input_name,
                "id": codelist.id,
                "path": codelist.path,
                "column": _code_column(codelist.header),
                "coding_system": codelist.coding_system,
            }
        )

    if errors:
        raise InvalidInputsError(errors)

    return context


def _walk(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found = []
    for item in sorted(folder.iterdir(), key=lambda item: item.name):
        if item.name == "__pycache__":
            continue
        if not _PATH_PART.fullmatch(item.name):
            raise TemplateError(
                f"Template file {prefix}{item.name!r} has a name that cannot be "
                "committed safely: use letters, digits, '.', '_' and '-'."
            )
        path = f"{prefix}{item.name}"
        if item.is_dir():
            found.extend(_walk(item, f"{path}/"))
        elif path not in (METADATA_FILE, SCHEMA_FILE):
            found.append((path, item))

    return found


def _environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    environment.filters.update(FILTERS)
    return environment


def render(
    name: str,
    *,
    query_id: str,
    inputs: dict[str, Any],
    codelists: Sequence[DownloadedCodelist] = (),
    templates_dir: Path | None = None,
) -> dict[str, str]:
    """Render template ``name`` into the query's file set (path to text).

    The inputs must already be valid (``validate_inputs``), and ``codelists``
    must hold the download of every codelist they name. The files include the
    ``codelists/`` folder and ``config.json``, which records the template's name
    and version and the inputs with defaults filled in.

    Raises:
        ValueError: ``query_id`` is not a valid query id, or a codelist is missing.
        InvalidInputsError: a codelist's coding system is not one the template
            supports.
        TemplateError: the template package is malformed or fails to render.
    """
    if not QUERY_ID.fullmatch(query_id):
        raise ValueError(f"{query_id!r} is not a valid query id.")

    template = find_template(name, templates_dir)
    inputs = with_defaults(template, inputs)
    context = {
        "query_id": query_id,
        "template": {"name": template.name, "version": template.version},
        "inputs": inputs,
        "codelists": _codelist_context(template, inputs, codelists),
    }
    files = _render_files(template, context)
    generated = codelist_files(codelists)
    generated[CONFIG_FILE] = _config_json(template, query_id, inputs)
    clashes = sorted(set(files) & set(generated))
    clashes += [path for path in files if path.startswith(f"{CODELISTS_DIR}/")]
    if clashes:
        raise TemplateError(
            f"Template {name!r} ships {', '.join(sorted(set(clashes)))}, which the "
            "app writes itself: remove them from the template."
        )

    return {**files, **generated}


def _render_files(template: Template, context: dict[str, Any]) -> dict[str, str]:
    environment = _environment()
    files = {}
    for path, item in _walk(template.folder):
        source = item.read_text()
        if not path.endswith(".j2"):
            files[path] = source
            continue
        try:
            files[path[:-3]] = environment.from_string(source).render(context)
        except JinjaTemplateError as exc:
            raise TemplateError(
                f"Template {template.name!r} failed to render {path}: {exc}"
            ) from exc

    return files


def _config_json(template: Template, query_id: str, inputs: dict[str, Any]) -> str:
    config = {
        "query_id": query_id,
        "template": template.name,
        "template_version": template.version,
        "inputs": inputs,
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"

