"""A local stand-in for OpenCodelists: codelist downloads and owners' listings.

It serves the two endpoints the app calls, in the shapes OpenCodelists uses:

- ``GET /codelist/<owner>/<slug>/<version>/download.csv`` (and the same under
  ``/codelist/user/<username>/``): the CSV with ``Content-Type: text/csv`` and
  CRLF line endings, 404 for an unknown version, and for a draft a redirect to an
  HTML page, as OpenCodelists redirects drafts to its builder.
- ``GET /api/v1/codelist/<owner>/`` (and ``/api/v1/codelist/user/<username>/``
  with ``include-users``): ``{"codelists": [...]}`` with each codelist's coding
  system and versions.

The catalogue contains a few codelists in the forms OpenCodelists publishes: old-style
CTV3 uploads with their own column names, SNOMED CT and dm+d codelists with
``code,term`` columns, a user's codelist, a draft, and an ICD-10 codelist. Their
codes are a small sample for tests, not copies of the published codelists.
Tests can add latency and make the next requests fail with a chosen status.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from werkzeug.wrappers import Request, Response


@dataclasses.dataclass(frozen=True)
class CodelistVersion:
    """One version of a codelist in the stand-in's catalogue."""

    tag: str
    hash: str
    status: str
    rows: tuple[tuple[str, ...], ...]

    @property
    def downloadable(self) -> bool:
        return self.status in ("published", "under review")

    def csv(self) -> bytes:
        """Return the CSV as OpenCodelists sends it, with CRLF line endings."""
        lines = [",".join(_csv_field(value) for value in row) for row in self.rows]
        return "".join(f"{line}\r\n" for line in lines).encode()


@dataclasses.dataclass(frozen=True)
class Codelist:
    """A codelist: its owner, slug, coding system and versions."""

    owner: str
    slug: str
    name: str
    coding_system_id: str
    versions: tuple[CodelistVersion, ...]

    @property
    def full_slug(self) -> str:
        return f"{self.owner}/{self.slug}"


def _csv_field(value: str) -> str:
    if re.search(r'[",\r\n]', value):
        return '"' + value.replace('"', '""') + '"'

    return value


CATALOGUE: tuple[Codelist, ...] = (
    Codelist(
        owner="opensafely",
        slug="asthma-diagnosis",
        name="Asthma Diagnosis",
        coding_system_id="ctv3",
        versions=(
            CodelistVersion(
                tag="2020-04-15",
                hash="66f08cca",
                status="published",
                rows=(
                    ("CTV3ID", "CTV3PreferredTermDesc"),
                    ("H33..", "Asthma"),
                    ("H330.", "Extrinsic (atopic) asthma"),
                    ("H331.", "Intrinsic asthma"),
                    ("H332.", "Mixed asthma"),
                    ("H333.", "Acute exacerbation of asthma"),
                    ("H33z.", "Asthma unspecified"),
                ),
            ),
        ),
    ),
    Codelist(
        owner="opensafely",
        slug="chronic-respiratory-disease",
        name="Chronic Respiratory Disease",
        coding_system_id="ctv3",
        versions=(
            CodelistVersion(
                tag="2020-04-10",
                hash="3e7a9f21",
                status="published",
                rows=(
                    ("CTV3ID", "CTV3PreferredTermDesc"),
                    ("H3...", "Chronic obstructive pulmonary disease"),
                    ("H31..", "Chronic bronchitis"),
                    ("H32..", "Emphysema"),
                    ("H34..", "Bronchiectasis"),
                ),
            ),
        ),
    ),
    Codelist(
        owner="nhsd-primary-care-domain-refsets",
        slug="abpm_cod",
        name="Ambulatory blood pressure monitoring codes",
        coding_system_id="snomedct",
        versions=(
            CodelistVersion(
                tag="20241205",
                hash="5c1d0b7e",
                status="published",
                rows=(
                    ("code", "term"),
                    ("413606001", "Average home systolic blood pressure"),
                    ("164783007", "Ambulatory blood pressure recording"),
                    ("698732006", "Ambulatory systolic blood pressure"),
                ),
            ),
        ),
    ),
    Codelist(
        owner="opensafely",
        slug="salbutamol-inhalers",
        name="Salbutamol inhalers",
        coding_system_id="dmd",
        versions=(
            CodelistVersion(
                tag="2023-02-01",
                hash="0f9e8d7c",
                status="published",
                rows=(
                    ("code", "term"),
                    ("39113611000001102", "Salbutamol 100micrograms/dose inhaler"),
                    (
                        "3314111000001108",
                        "Salbutamol 100micrograms/dose breath actuated inhaler",
                    ),
                ),
            ),
            CodelistVersion(
                tag="2024-09-30",
                hash="1a2b3c4d",
                status="draft",
                rows=(("code", "term"),),
            ),
        ),
    ),
    Codelist(
        owner="user/jdoe",
        slug="hypertension-review",
        name="Hypertension review",
        coding_system_id="snomedct",
        versions=(
            CodelistVersion(
                tag="",
                hash="7b3e1f0a",
                status="under review",
                rows=(
                    ("code", "term"),
                    ("38341003", "Hypertensive disorder, systemic arterial (disorder)"),
                    ("135840009", "Hypertension monitoring, \"annual\" review"),
                ),
            ),
        ),
    ),
    Codelist(
        owner="opensafely",
        slug="covid-identification",
        name="COVID-19 identification",
        coding_system_id="icd10",
        versions=(
            CodelistVersion(
                tag="2020-06-03",
                hash="2d4f6a8b",
                status="published",
                rows=(
                    ("icd10_code", "description"),
                    ("U071", "COVID-19, virus identified"),
                    ("U072", "COVID-19, virus not identified"),
                ),
            ),
        ),
    ),
)

_DOWNLOAD = re.compile(
    r"^/codelist/(?P<owner>user/[^/]+|[^/]+)/(?P<slug>[^/]+)/(?P<version>[^/]+)"
    r"/download\.csv$"
)
_DRAFT = re.compile(
    r"^/codelist/(?P<owner>user/[^/]+|[^/]+)/(?P<slug>[^/]+)/.+/draft/$"
)
_LISTING = re.compile(r"^/api/v1/codelist/(?P<owner>user/[^/]+|[^/]+)/$")


@dataclasses.dataclass(frozen=True)
class OpenCodelistsCall:
    """One request received and the status of its response."""

    method: str
    path: str
    status: int


@dataclasses.dataclass
class _Failure:
    remaining: int
    status: int


class OpenCodelistsSandbox:
    """OpenCodelists' download and listing endpoints over a fixed catalogue."""

    def __init__(self, catalogue: Iterable[Codelist] = CATALOGUE) -> None:
        self.catalogue = tuple(catalogue)
        #: Seconds added to every request.
        self.latency = 0.0
        self.calls: list[OpenCodelistsCall] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()

    def fail_next(self, count: int, status: int) -> None:
        """Respond to the next ``count`` requests with ``status`` and an HTML page."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}.")

        with self._lock:
            self._failures.append(_Failure(count, status))

    def codelist_ids(self) -> list[str]:
        """Return the id of every downloadable version, as a project names it."""
        return [
            f"{codelist.full_slug}/{version.tag or version.hash}"
            for codelist in self.catalogue
            for version in codelist.versions
            if version.downloadable
        ]

    def find(self, owner: str, slug: str, tag_or_hash: str) -> CodelistVersion | None:
        """Return the version that OpenCodelists would serve for an id, if any."""
        for codelist in self.catalogue:
            if (codelist.owner, codelist.slug) != (owner, slug):
                continue
            for version in codelist.versions:
                if tag_or_hash in (version.tag, version.hash):
                    return version

        return None

    def respond(
        self, method: str, path: str, query: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Return the status, headers and body OpenCodelists would send."""
        time.sleep(self.latency)
        failure = self._take_failure()
        if failure is not None:
            status, headers, body = failure.status, _HTML, b"<h1>Server Error</h1>"
        else:
            status, headers, body = self._route(method, path, query or {})

        with self._lock:
            self.calls.append(OpenCodelistsCall(method, path, status))

        return status, headers, body

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Serve the catalogue as a WSGI application."""
        request = Request(environ)
        status, headers, body = self.respond(
            request.method, request.path, dict(request.args)
        )
        response = Response(body, status, headers)
        return response(environ, start_response)

    def _route(
        self, method: str, path: str, query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if method != "GET":
            return 405, _HTML, b"<h1>Method Not Allowed</h1>"

        if match := _DOWNLOAD.match(path):
            return self._download(match["owner"], match["slug"], match["version"])

        if match := _DRAFT.match(path):
            return 200, _HTML, b"<p>This version is a draft.</p>"

        if match := _LISTING.match(path):
            return self._listing(match["owner"], "include-users" in query)

        return 404, _HTML, b"<h1>Not Found</h1>"

    def _download(
        self, owner: str, slug: str, tag_or_hash: str
    ) -> tuple[int, dict[str, str], bytes]:
        version = self.find(owner, slug, tag_or_hash)
        if version is None:
            return 404, _HTML, b"<h1>Not Found</h1>"

        if version.status == "draft":
            location = f"/codelist/{owner}/{slug}/{version.hash}/draft/"
            return 302, {**_HTML, "Location": location}, b""

        filename = f"{owner.replace('user/', '')}-{slug}-{tag_or_hash}.csv"
        headers = {
            # Exactly this value: opensafely-cli rejects any other content type.
            "Content-Type": "text/csv",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        return 200, headers, version.csv()

    def _listing(
        self, owner: str, include_users: bool
    ) -> tuple[int, dict[str, str], bytes]:
        owned = [codelist for codelist in self.catalogue if codelist.owner == owner]
        if not owned:
            return 404, _HTML, b"<h1>Not Found</h1>"

        if owner.startswith("user/") and not include_users:
            owned = []
        records = [_listing_record(codelist) for codelist in owned]
        body = json.dumps({"codelists": records}).encode()
        return 200, {"Content-Type": "application/json"}, body

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            if not self._failures:
                return None

            failure = self._failures[0]
            failure.remaining -= 1
            if failure.remaining == 0:
                self._failures.pop(0)

            return failure


_HTML = {"Content-Type": "text/html; charset=utf-8"}


def _listing_record(codelist: Codelist) -> dict[str, Any]:
    return {
        "full_slug": codelist.full_slug,
        "slug": codelist.slug,
        "name": codelist.name,
        "coding_system_id": codelist.coding_system_id,
        "organisation": "" if codelist.owner.startswith("user/") else codelist.owner,
        "user": codelist.owner.removeprefix("user/")
        if codelist.owner.startswith("user/")
        else "",
        "versions": [
            {
                "hash": version.hash,
                "tag": version.tag or None,
                "full_slug": f"{codelist.full_slug}/{version.tag or version.hash}",
                "status": version.status,
                "downloadable": version.downloadable,
                "updated_date": "2024-01-01",
            }
            for version in codelist.versions
        ],
    }
