"""Write what a query would commit into a local folder, for template authors.

``github-app render`` calls ``write_preview``: it validates the inputs, downloads
the codelists they name from OpenCodelists, renders the template and writes the
files, so an author can inspect them or run ``opensafely`` commands on them.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from github_app.codelists import (
    CodelistNotDownloadableError,
    CodelistNotFoundError,
    OpenCodelistsClient,
)
from github_app.templates.catalogue import find_template
from github_app.templates.rendering import (
    InputError,
    InvalidInputsError,
    render,
    validate_inputs,
)


class PreviewError(Exception):
    """The preview cannot be written: unreadable inputs or an unusable folder."""


@dataclass
class Preview:
    """The outcome of a preview: the files written, or why the inputs are invalid."""

    written: list[Path] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)


def read_inputs(path: Path) -> Any:
    """Return the JSON document in ``path``; raise PreviewError if it is unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PreviewError(f"Cannot read inputs from {path}: {exc}") from None


def write_preview(
    name: str,
    inputs: Any,
    *,
    out: Path,
    query_id: str,
    client: OpenCodelistsClient,
    templates_dir: Path | None = None,
) -> Preview:
    """Render template ``name`` for ``inputs`` into the empty folder ``out``.

    Raises:
        TemplateNotFoundError: no template has that name.
        PreviewError: ``out`` already contains files.
        OpenCodelistsUnavailableError, OpenCodelistsResponseError: a codelist
            could not be downloaded.
    """
    if out.exists() and any(out.iterdir()):
        raise PreviewError(
            f"{out} is not empty: give a new or empty folder, so that no file from "
            "an earlier preview is mistaken for part of this one."
        )

    errors = validate_inputs(name, inputs, templates_dir=templates_dir)
    if errors:
        return Preview(errors=errors)

    template = find_template(name, templates_dir)
    named = {inputs[key]: key for key in template.codelist_inputs if key in inputs}
    try:
        codelists = client.download_all(list(named))
        files = render(
            name,
            query_id=query_id,
            inputs=inputs,
            codelists=codelists,
            templates_dir=templates_dir,
        )
    except (CodelistNotFoundError, CodelistNotDownloadableError) as exc:
        field_name = f"analysis.inputs.{named[exc.codelist_id]}"
        return Preview(errors=[InputError(field_name, str(exc))])
    except InvalidInputsError as exc:
        return Preview(errors=exc.errors)

    preview = Preview()
    for path, content in sorted(files.items()):
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        # newline="" keeps CRLF line endings, such as those of codelist CSVs.
        with target.open("w", encoding="utf-8", newline="") as file:
            file.write(content)
        preview.written.append(target)

    return preview
