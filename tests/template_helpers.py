"""Shared inputs and codelist downloads for the template tests."""

import ast
from datetime import UTC, datetime
from typing import Any

from github_app.codelists import CodelistReference, DownloadedCodelist
from github_app.templates import render
from sandbox.opencodelists import CATALOGUE

QUERY_ID = "01HV3Z8Q4J6Y9K2M5N7P0R1S2T"
CODELIST_1 = "opensafely/asthma-diagnosis/2020-04-15"
CODELIST_2 = "opensafely/chronic-respiratory-disease/2020-04-10"
#: An OpenCodelists id in the form the NHS primary care domain reference sets use.
REFSET_CODELIST = "nhsd-primary-care-domain-refsets/abpm_cod/20241205"
USER_CODELIST = "user/jdoe/hypertension-review/7b3e1f0a"
DMD_CODELIST = "opensafely/salbutamol-inhalers/2023-02-01"
INPUTS: dict[str, Any] = {
    "codelist_1": CODELIST_1,
    "codelist_2": CODELIST_2,
    "start_date": "2021-03-01",
    "end_date": "2023-02-28",
}
DOWNLOADED_AT = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=UTC)


def catalogue_download(codelist_id: str) -> DownloadedCodelist:
    """Return the stand-in catalogue's codelist as the client would download it."""
    reference = CodelistReference.parse(codelist_id)
    for codelist in CATALOGUE:
        if codelist.full_slug != reference.codelist:
            continue
        for version in codelist.versions:
            if reference.version in (version.tag, version.hash):
                return DownloadedCodelist(
                    reference=reference,
                    url=f"http://127.0.0.1:9/codelist/{codelist_id}/",
                    content=version.csv(),
                    downloaded_at=DOWNLOADED_AT,
                    coding_system=codelist.coding_system_id,
                )

    return fake_download(codelist_id)


def fake_download(
    codelist_id: str, coding_system: str = "snomedct"
) -> DownloadedCodelist:
    """Return a small SNOMED CT codelist download for any valid id."""
    return DownloadedCodelist(
        reference=CodelistReference.parse(codelist_id),
        url=f"http://127.0.0.1:9/codelist/{codelist_id}/",
        content=b"code,term\r\n22298006,Myocardial infarction\r\n",
        downloaded_at=DOWNLOADED_AT,
        coding_system=coding_system,
    )


def render_event_counts(
    inputs: dict[str, Any] | None = None, query_id: str = QUERY_ID
) -> dict[str, str]:
    """Render event_counts with the codelists its inputs name, offline."""
    inputs = INPUTS if inputs is None else inputs
    codelists = [
        catalogue_download(inputs[key])
        for key in ("codelist_1", "codelist_2")
        if key in inputs
    ]
    return render(
        "event_counts", query_id=query_id, inputs=inputs, codelists=codelists
    )


def module_constants(source: str) -> dict[str, Any]:
    """Return the module-level ``NAME = <literal>`` assignments of ``source``."""
    constants = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue

    return constants
