"""The OpenCodelists client, the stand-in, and OpenSAFELY's codelists layout."""

import json
from collections.abc import Iterator
from pathlib import Path

import opensafely.codelists as opensafely_codelists
import pytest
import requests

from github_app.codelists import (
    CodelistNotDownloadableError,
    CodelistNotFoundError,
    OpenCodelistsClient,
    OpenCodelistsResponseError,
    OpenCodelistsUnavailableError,
    codelist_files,
    hash_csv,
)
from sandbox.opencodelists import OpenCodelistsSandbox
from sandbox.servers import RunningServer, serve
from tests.template_helpers import (
    CODELIST_1,
    CODELIST_2,
    DMD_CODELIST,
    REFSET_CODELIST,
    USER_CODELIST,
)

DRAFT_CODELIST = "opensafely/salbutamol-inhalers/2024-09-30"
#: A loopback port with nothing listening.
DEAD_URL = "http://127.0.0.1:9"


@pytest.fixture
def sandbox() -> OpenCodelistsSandbox:
    return OpenCodelistsSandbox()


@pytest.fixture
def server(sandbox: OpenCodelistsSandbox) -> Iterator[RunningServer]:
    with serve(sandbox.wsgi_app) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> OpenCodelistsClient:
    return OpenCodelistsClient(base_url=server.url, timeout=2)


class TestDownload:
    def test_download_keeps_bytes_and_metadata(
        self, client: OpenCodelistsClient, server: RunningServer
    ) -> None:
        codelist = client.download(CODELIST_1)

        assert codelist.id == CODELIST_1
        assert codelist.coding_system == "ctv3"
        assert codelist.url == f"{server.url}/codelist/{CODELIST_1}/"
        assert codelist.path == "codelists/opensafely-asthma-diagnosis.csv"
        assert codelist.header == ["CTV3ID", "CTV3PreferredTermDesc"]
        assert codelist.content.startswith(b"CTV3ID,CTV3PreferredTermDesc\r\nH33..")
        assert codelist.downloaded_at.utcoffset() is not None

    def test_sha_matches_opensafely_cli(self, client: OpenCodelistsClient) -> None:
        codelist = client.download(REFSET_CODELIST)

        assert codelist.sha == opensafely_codelists.hash_bytes(codelist.content)

    def test_user_codelist_by_hash(self, client: OpenCodelistsClient) -> None:
        codelist = client.download(USER_CODELIST)

        assert codelist.coding_system == "snomedct"
        assert codelist.path == "codelists/user-jdoe-hypertension-review.csv"

    def test_dmd_codelist(self, client: OpenCodelistsClient) -> None:
        codelist = client.download(DMD_CODELIST)

        assert codelist.coding_system == "dmd"
        assert codelist.header == ["code", "term"]

    @pytest.mark.parametrize(
        "codelist_id",
        [
            "opensafely/asthma-diagnosis/1999-01-01",
            "opensafely/no-such-codelist/2020-01-01",
            "no-such-organisation/asthma/v1",
            "user/nobody/asthma/v1",
        ],
    )
    def test_unknown_codelist_not_found(
        self, client: OpenCodelistsClient, codelist_id: str
    ) -> None:
        with pytest.raises(CodelistNotFoundError, match="was not found") as caught:
            client.download(codelist_id)

        assert caught.value.codelist_id == codelist_id

    def test_draft_not_downloadable(self, client: OpenCodelistsClient) -> None:
        with pytest.raises(CodelistNotDownloadableError, match="'draft'"):
            client.download(DRAFT_CODELIST)

    def test_html_answer_not_downloadable(
        self,
        client: OpenCodelistsClient,
        sandbox: OpenCodelistsSandbox,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        answer = (200, {"Content-Type": "text/html"}, b"<p>A draft.</p>")
        monkeypatch.setattr(sandbox, "_download", lambda *args: answer)

        with pytest.raises(CodelistNotDownloadableError, match="has no CSV"):
            client.download(CODELIST_1)

    def test_server_error_unavailable(
        self, client: OpenCodelistsClient, sandbox: OpenCodelistsSandbox
    ) -> None:
        sandbox.fail_next(1, 502)

        with pytest.raises(OpenCodelistsUnavailableError, match="status 502"):
            client.download(CODELIST_1)

    def test_forbidden_is_response_error(
        self, client: OpenCodelistsClient, sandbox: OpenCodelistsSandbox
    ) -> None:
        sandbox.fail_next(1, 403)

        with pytest.raises(OpenCodelistsResponseError, match="status 403") as caught:
            client.download(CODELIST_1)

        assert caught.value.status == 403

    def test_unreachable_unavailable(self) -> None:
        client = OpenCodelistsClient(base_url=DEAD_URL, timeout=2)

        with pytest.raises(OpenCodelistsUnavailableError, match="could not be reached"):
            client.download(CODELIST_1)

    def test_slow_answer_times_out(
        self, server: RunningServer, sandbox: OpenCodelistsSandbox
    ) -> None:
        sandbox.latency = 0.5
        client = OpenCodelistsClient(base_url=server.url, timeout=0.1)

        with pytest.raises(OpenCodelistsUnavailableError, match="Timeout"):
            client.download(CODELIST_1)

    @pytest.mark.parametrize(
        "body", [b"not json", b"[]", b'{"codelists": [{"slug": "x"}]}']
    )
    def test_malformed_listing_is_response_error(
        self,
        client: OpenCodelistsClient,
        sandbox: OpenCodelistsSandbox,
        monkeypatch: pytest.MonkeyPatch,
        body: bytes,
    ) -> None:
        answer = (200, {"Content-Type": "application/json"}, body)
        monkeypatch.setattr(sandbox, "_listing", lambda *args: answer)

        with pytest.raises(OpenCodelistsResponseError, match="unexpected codelist"):
            client.download(CODELIST_1)

    def test_requests_errors_never_escape(self) -> None:
        client = OpenCodelistsClient(base_url="http://127.0.0.1:9", timeout=1)

        with pytest.raises(OpenCodelistsUnavailableError) as caught:
            client.download(CODELIST_1)

        assert isinstance(caught.value.__cause__, requests.RequestException)

    @pytest.mark.parametrize(
        "codelist_id", ["../etc/passwd", "a/b", "a/b/c\n", "A/b/c", "a/b/c/d/e"]
    )
    def test_invalid_id_rejected(
        self, client: OpenCodelistsClient, codelist_id: str
    ) -> None:
        with pytest.raises(ValueError, match="not an OpenCodelists codelist"):
            client.download(codelist_id)


class TestStandIn:
    def test_csv_content_type_exact(self, server: RunningServer) -> None:
        response = requests.get(
            f"{server.url}/codelist/{CODELIST_1}/download.csv", timeout=5
        )

        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/csv"
        assert "opensafely-asthma-diagnosis-2020-04-15.csv" in response.headers[
            "Content-Disposition"
        ]

    def test_draft_redirects_to_page(self, server: RunningServer) -> None:
        response = requests.get(
            f"{server.url}/codelist/{DRAFT_CODELIST}/download.csv", timeout=5
        )

        assert [r.status_code for r in response.history] == [302]
        assert "draft" in response.text.lower()
        assert response.headers["Content-Type"].startswith("text/html")

    def test_user_listing_needs_include_users(self, server: RunningServer) -> None:
        url = f"{server.url}/api/v1/codelist/user/jdoe/"

        without = requests.get(url, timeout=5).json()
        with_users = requests.get(url, params={"include-users": ""}, timeout=5).json()

        assert without == {"codelists": []}
        assert [c["full_slug"] for c in with_users["codelists"]] == [
            "user/jdoe/hypertension-review"
        ]

    def test_listing_shape(self, server: RunningServer) -> None:
        listing = requests.get(
            f"{server.url}/api/v1/codelist/opensafely/", timeout=5
        ).json()

        asthma = next(
            c for c in listing["codelists"] if c["slug"] == "asthma-diagnosis"
        )
        assert asthma["coding_system_id"] == "ctv3"
        assert asthma["versions"][0]["full_slug"] == CODELIST_1
        assert asthma["versions"][0]["downloadable"] is True

    def test_records_calls(
        self, client: OpenCodelistsClient, sandbox: OpenCodelistsSandbox
    ) -> None:
        client.download(CODELIST_1)

        assert [call.status for call in sandbox.calls] == [200, 200]

    def test_codelist_ids_all_download(
        self, client: OpenCodelistsClient, sandbox: OpenCodelistsSandbox
    ) -> None:
        ids = sandbox.codelist_ids()

        downloaded = client.download_all(ids)

        assert [codelist.id for codelist in downloaded] == ids
        assert DRAFT_CODELIST not in ids


def write_folder(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8", newline="") as file:
            file.write(text)


class TestLayout:
    IDS = [CODELIST_1, REFSET_CODELIST, USER_CODELIST]

    def test_matches_opensafely_update(
        self,
        client: OpenCodelistsClient,
        server: RunningServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        ours = codelist_files(client.download_all(self.IDS))
        theirs = tmp_path / "codelists"
        theirs.mkdir()
        (theirs / "codelists.txt").write_text(ours["codelists/codelists.txt"])
        monkeypatch.setattr(opensafely_codelists, "OPENCODELISTS_BASE_URL", server.url)

        opensafely_codelists.update(codelists_dir=theirs)

        written = {
            f"codelists/{path.name}": path.read_bytes()
            for path in sorted(theirs.iterdir())
        }
        assert set(written) == set(ours)
        for path, text in ours.items():
            if path != "codelists/codelists.json":
                assert written[path] == text.encode(), path
        our_manifest = json.loads(ours["codelists/codelists.json"])
        their_manifest = json.loads(written["codelists/codelists.json"])
        entries = [*our_manifest["files"].values(), *their_manifest["files"].values()]
        for entry in entries:
            entry["downloaded_at"] = "(time of download)"
        assert our_manifest == their_manifest
        assert list(our_manifest["files"]) == list(their_manifest["files"])
        assert not ours["codelists/codelists.json"].endswith("\n")

    def test_downloaded_at_format(self, client: OpenCodelistsClient) -> None:
        codelist = client.download(CODELIST_1)

        manifest = json.loads(codelist_files([codelist])["codelists/codelists.json"])

        entry = manifest["files"]["opensafely-asthma-diagnosis.csv"]
        assert entry["downloaded_at"] == f"{codelist.downloaded_at}Z"
        assert entry["downloaded_at"].endswith("+00:00Z")

    def test_opensafely_check_accepts_folder_offline(
        self,
        client: OpenCodelistsClient,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        write_folder(tmp_path, codelist_files(client.download_all(self.IDS)))
        monkeypatch.chdir(tmp_path)
        # The upstream check posts to this URL; nothing listens there.
        monkeypatch.setattr(opensafely_codelists, "OPENCODELISTS_BASE_URL", DEAD_URL)
        monkeypatch.delenv("GITHUB_WORKFLOW", raising=False)

        accepted = opensafely_codelists.check()

        assert accepted is True
        assert "Local codelists OK" in capsys.readouterr().out

    @pytest.mark.parametrize("damage", ["edit-csv", "extra-csv", "edit-txt"])
    def test_opensafely_check_can_fail(
        self,
        client: OpenCodelistsClient,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        damage: str,
    ) -> None:
        files = codelist_files(client.download_all(self.IDS))
        if damage == "edit-csv":
            files["codelists/opensafely-asthma-diagnosis.csv"] += "H34..,Other\r\n"
        elif damage == "extra-csv":
            files["codelists/extra.csv"] = "code\r\n1\r\n"
        else:
            files["codelists/codelists.txt"] += f"{CODELIST_2}\n"
        write_folder(tmp_path, files)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(opensafely_codelists, "OPENCODELISTS_BASE_URL", DEAD_URL)

        with pytest.raises(SystemExit) as caught:
            opensafely_codelists.check()

        assert caught.value.code == 1

    def test_no_codelists_no_folder(self) -> None:
        assert codelist_files([]) == {}

    def test_two_versions_of_one_codelist_rejected(
        self, client: OpenCodelistsClient
    ) -> None:
        codelist = client.download(CODELIST_1)

        with pytest.raises(ValueError, match="only once"):
            codelist_files([codelist, codelist])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a\r\nb\r\n", b"a\nb"),
        (b"a\nb\n", b"a\nb"),
        (b"a\rb", b"a\nb"),
    ],
)
def test_hash_csv_ignores_line_endings(content: bytes, expected: bytes) -> None:
    assert hash_csv(content) == hash_csv(expected)
    assert hash_csv(content) == opensafely_codelists.hash_bytes(content)
