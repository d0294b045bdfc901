"""The app's only route to OpenCodelists, and OpenSAFELY's layout for codelists.

Callers see this module's exceptions, never those of requests:

- ``OpenCodelistsUnavailableError``: OpenCodelists could not be reached, timed out
  or failed with a 5xx. The download may be repeated later.
- ``CodelistNotFoundError``: no codelist version has that id (a 404).
- ``CodelistNotDownloadableError``: the version exists but has no CSV to download,
  for example because it is still a draft.
- ``OpenCodelistsResponseError``: any other response that is not a codelist.

``codelist_files`` writes downloaded codelists in the form that the ``opensafely
codelists update`` command (opensafely-cli 2.1) writes them, so that ``opensafely
codelists check`` accepts the folder: ``codelists/codelists.txt``, one CSV per
codelist named ``<owner>-<slug>.csv``, and ``codelists/codelists.json``.
"""

import csv
import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import structlog

logger = structlog.get_logger(__name__)

DEFAULT_OPENCODELISTS_URL = "https://www.opencodelists.org"
CODELISTS_DIR = "codelists"
CODELISTS_FILE = "codelists.txt"
MANIFEST_FILE = "codelists.json"
#: An organisation's codelist version (``owner/slug/version``) or a user's
#: (``user/username/slug/version``). The version is a tag or a hash.
CODELIST_ID_PATTERN = (
    r"^(user/)?[a-z0-9][a-z0-9_-]{0,79}/[a-z0-9][a-z0-9_-]{0,79}"
    r"/[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
)
_CODELIST_ID = re.compile(CODELIST_ID_PATTERN)


class OpenCodelistsError(Exception):
    """Base class of this module's errors."""

    def __init__(self, message: str, *, codelist_id: str) -> None:
        super().__init__(message)
        self.codelist_id = codelist_id


class OpenCodelistsUnavailableError(OpenCodelistsError):
    """OpenCodelists could not be reached or failed; the call may be repeated."""


class CodelistNotFoundError(OpenCodelistsError):
    """OpenCodelists has no codelist version with that id."""


class CodelistNotDownloadableError(OpenCodelistsError):
    """The codelist version exists but cannot be downloaded, such as a draft."""


class OpenCodelistsResponseError(OpenCodelistsError):
    """OpenCodelists responded with something other than the codelist."""

    def __init__(
        self, message: str, *, codelist_id: str, status: int, body: str
    ) -> None:
        super().__init__(message, codelist_id=codelist_id)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class CodelistReference:
    """The locations of a codelist version on OpenCodelists and in a project."""

    id: str
    owner_path: str
    slug: str
    version: str

    @classmethod
    def parse(cls, codelist_id: str) -> "CodelistReference":
        """Split an OpenCodelists id; raise ValueError if it is malformed."""
        if not _CODELIST_ID.fullmatch(codelist_id):
            raise ValueError(
                f"{codelist_id!r} is not an OpenCodelists codelist version id such "
                "as 'opensafely/asthma-diagnosis/2020-04-15'."
            )

        *owner, slug, version = codelist_id.split("/")
        return cls(codelist_id, "/".join(owner), slug, version)

    @property
    def codelist(self) -> str:
        """Return the id without its version, which names the codelist itself."""
        return f"{self.owner_path}/{self.slug}"

    @property
    def filename(self) -> str:
        """Return the CSV file name that opensafely-cli gives this codelist."""
        return self.codelist.replace("/", "-") + ".csv"

    def url(self, base_url: str) -> str:
        return f"{base_url}/codelist/{self.id}/"


@dataclass(frozen=True)
class DownloadedCodelist:
    """One codelist version's CSV as downloaded, with what the manifest records."""

    reference: CodelistReference
    url: str
    content: bytes
    downloaded_at: datetime
    coding_system: str

    @property
    def id(self) -> str:
        return self.reference.id

    @property
    def path(self) -> str:
        """Return the CSV's path in the committed project."""
        return f"{CODELISTS_DIR}/{self.reference.filename}"

    @property
    def sha(self) -> str:
        """Return the SHA-1 that opensafely-cli records for the CSV."""
        return hash_csv(self.content)

    @property
    def header(self) -> list[str]:
        """Return the CSV's column names; raise ValueError if it has none."""
        text = self.content.decode("utf-8-sig")
        header = next(csv.reader(io.StringIO(text)), [])
        if not header or not header[0].strip():
            raise ValueError("the CSV has no header row")

        return [name.strip() for name in header]


def hash_csv(content: bytes) -> str:
    """Hash a CSV as opensafely-cli does, ignoring the style of line endings."""
    normalised = b"\n".join(content.splitlines())
    return hashlib.sha1(normalised).hexdigest()  # noqa: S324 - the tool's own hash


class OpenCodelistsClient:
    """Download codelist versions, with their coding system, from OpenCodelists."""

    def __init__(
        self, *, base_url: str = DEFAULT_OPENCODELISTS_URL, timeout: float = 5.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()

    def download(self, codelist_id: str) -> DownloadedCodelist:
        """Download one codelist version's CSV and look up its coding system.

        Raises:
            ValueError: ``codelist_id`` is not a codelist version id.
            CodelistNotFoundError, CodelistNotDownloadableError,
            OpenCodelistsUnavailableError, OpenCodelistsResponseError.
        """
        reference = CodelistReference.parse(codelist_id)
        coding_system = self._find_coding_system(reference)
        url = reference.url(self.base_url)
        response = self._get(reference, f"{url}download.csv")
        # opensafely-cli accepts only this exact content type; OpenCodelists sends
        # an HTML page with status 200 for a draft.
        if response.headers.get("Content-Type") != "text/csv":
            raise CodelistNotDownloadableError(
                f"Codelist {codelist_id} cannot be downloaded from {url}: it is a "
                "draft or has no CSV. Choose a published version.",
                codelist_id=codelist_id,
            )

        codelist = DownloadedCodelist(
            reference=reference,
            url=url,
            content=response.content,
            downloaded_at=datetime.now(UTC),
            coding_system=coding_system,
        )
        _check_csv(codelist)
        logger.info(
            "Downloaded codelist", codelist_id=codelist_id, sha=codelist.sha
        )
        return codelist

    def download_all(self, codelist_ids: Sequence[str]) -> list[DownloadedCodelist]:
        """Download several codelist versions in order; see ``download``."""
        return [self.download(codelist_id) for codelist_id in codelist_ids]

    def _find_coding_system(self, reference: CodelistReference) -> str:
        # The owner's listing is the API that names a codelist's coding system:
        # https://github.com/opensafely-core/opencodelists/blob/main/codelists/api.py
        listing_url = f"{self.base_url}/api/v1/codelist/{reference.owner_path}/"
        is_user = reference.owner_path.startswith("user/")
        params = {"include-users": ""} if is_user else {}
        response = self._get(reference, listing_url, params=params)
        try:
            listing = response.json()["codelists"]
            for codelist in listing:
                if codelist["full_slug"] != reference.codelist:
                    continue
                for version in codelist["versions"]:
                    if reference.version in (version["tag"], version["hash"]):
                        return _downloadable_coding_system(reference, codelist, version)
        except (ValueError, KeyError, TypeError) as exc:
            raise OpenCodelistsResponseError(
                f"OpenCodelists sent an unexpected codelist listing from "
                f"{listing_url}: {exc!r}.",
                codelist_id=reference.id,
                status=response.status_code,
                body=response.text[:500],
            ) from exc

        raise CodelistNotFoundError(
            f"Codelist {reference.id} was not found on OpenCodelists: check the "
            "organisation, codelist and version in its id.",
            codelist_id=reference.id,
        )

    def _get(
        self,
        reference: CodelistReference,
        url: str,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        logger.debug("Requesting OpenCodelists", url=url)
        try:
            response = self._session.get(url, params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            logger.warning("OpenCodelists unreachable", url=url, error=str(exc))
            raise OpenCodelistsUnavailableError(
                f"OpenCodelists at {self.base_url} could not be reached: "
                f"{type(exc).__name__}.",
                codelist_id=reference.id,
            ) from exc

        if response.status_code == 404:
            raise CodelistNotFoundError(
                f"Codelist {reference.id} was not found on OpenCodelists: check the "
                "organisation, codelist and version in its id.",
                codelist_id=reference.id,
            )

        if response.status_code >= 500:
            raise OpenCodelistsUnavailableError(
                f"OpenCodelists failed with status {response.status_code}.",
                codelist_id=reference.id,
            )

        if response.status_code != 200:
            raise OpenCodelistsResponseError(
                f"OpenCodelists responded to {url} with status {response.status_code}.",
                codelist_id=reference.id,
                status=response.status_code,
                body=response.text[:500],
            )

        return response


def _downloadable_coding_system(
    reference: CodelistReference, codelist: dict[str, Any], version: dict[str, Any]
) -> str:
    if not version.get("downloadable", False):
        raise CodelistNotDownloadableError(
            f"Codelist {reference.id} has status {version.get('status')!r} and "
            "cannot be downloaded: choose a published version.",
            codelist_id=reference.id,
        )

    return str(codelist["coding_system_id"])


def _check_csv(codelist: DownloadedCodelist) -> None:
    try:
        codelist.header
    except ValueError:
        raise OpenCodelistsResponseError(
            f"The CSV of codelist {codelist.id} from {codelist.url} is empty or not "
            "UTF-8 text.",
            codelist_id=codelist.id,
            status=200,
            body=codelist.content[:500].decode("utf-8", "replace"),
        ) from None


def codelist_files(codelists: Sequence[DownloadedCodelist]) -> dict[str, str]:
    """Return the ``codelists/`` folder for ``codelists`` (path to text).

    Each codelist must be a different codelist, as ``opensafely codelists check``
    rejects two versions of one codelist. The manifest's text is what
    ``opensafely codelists update`` writes: JSON with two-space indents and no
    final newline, and the download time as ``str(datetime)`` followed by ``Z``.
    """
    seen = [codelist.reference.codelist for codelist in codelists]
    if len(set(seen)) != len(seen):
        raise ValueError(f"Each codelist may appear only once, got {seen}.")

    if not codelists:
        return {}

    manifest: dict[str, Any] = {"files": {}}
    for codelist in codelists:
        manifest["files"][codelist.reference.filename] = {
            "id": codelist.id,
            "url": codelist.url,
            "downloaded_at": f"{codelist.downloaded_at}Z",
            "sha": codelist.sha,
        }
    files = {
        f"{CODELISTS_DIR}/{CODELISTS_FILE}": "".join(
            f"{codelist.id}\n" for codelist in codelists
        ),
        f"{CODELISTS_DIR}/{MANIFEST_FILE}": json.dumps(manifest, indent=2),
    }
    for codelist in codelists:
        files[codelist.path] = codelist.content.decode("utf-8")

    return files
