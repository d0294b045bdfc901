"""``github-app render``: a template author's preview of what a query commits."""

import json
import subprocess
import sys
from pathlib import Path

import opensafely.codelists as opensafely_codelists
import pytest
from opensafely._vendor.pipeline import load_pipeline

from github_app.cli import main
from tests.test_codelists import DEAD_URL
from tests.test_templates import write_template
from tests.template_helpers import CODELIST_1, CODELIST_2


def write_inputs(tmp_path: Path, inputs: object) -> Path:
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(inputs))
    return path


def render_command(
    inputs: Path, out: Path, url: str, *extra: str, template: str = "event_counts"
) -> list[str]:
    return [
        "render", template, "--inputs", str(inputs), "--out", str(out),
        "--opencodelists-url", url, *extra,
    ]


def test_render_writes_runnable_project(
    tmp_path: Path,
    opencodelists_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = write_inputs(
        tmp_path, {"codelist_1": CODELIST_1, "codelist_2": CODELIST_2}
    )
    out = tmp_path / "preview"

    code = main(render_command(inputs, out, opencodelists_url, "--query-id", "q1"))

    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert str(out / "project.yaml") in printed
    pipeline = load_pipeline((out / "project.yaml").read_text())
    assert pipeline.actions["generate_measures"].run.raw.endswith(
        "--output output/q1/measures.csv"
    )
    for path in out.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    monkeypatch.chdir(out)
    monkeypatch.setattr(opensafely_codelists, "OPENCODELISTS_BASE_URL", DEAD_URL)
    assert opensafely_codelists.check() is True


def test_render_keeps_csv_bytes(tmp_path: Path, opencodelists_url: str) -> None:
    inputs = write_inputs(tmp_path, {"codelist_1": CODELIST_1})
    out = tmp_path / "preview"

    main(render_command(inputs, out, opencodelists_url))

    csv = (out / "codelists/opensafely-asthma-diagnosis.csv").read_bytes()
    manifest = json.loads((out / "codelists/codelists.json").read_text())
    assert csv.startswith(b"CTV3ID,CTV3PreferredTermDesc\r\n")
    assert manifest["files"]["opensafely-asthma-diagnosis.csv"]["sha"] == (
        opensafely_codelists.hash_bytes(csv)
    )


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"codelist_1": "nope"}, "analysis.inputs.codelist_1"),
        ({"codelist_1": CODELIST_1, "colour": "blue"}, "analysis.inputs.colour"),
        (
            {"codelist_1": "opensafely/asthma-diagnosis/1999-01-01"},
            "analysis.inputs.codelist_1",
        ),
    ],
)
def test_render_invalid_inputs_exit_1(
    tmp_path: Path,
    opencodelists_url: str,
    capsys: pytest.CaptureFixture[str],
    inputs: dict[str, str],
    field: str,
) -> None:
    out = tmp_path / "preview"

    code = main(render_command(write_inputs(tmp_path, inputs), out, opencodelists_url))

    assert code == 1
    assert capsys.readouterr().err.startswith(f"{field}: ")
    assert not out.exists()


def test_render_unknown_template_exit_2(
    tmp_path: Path, opencodelists_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write_inputs(tmp_path, {})

    code = main(render_command(inputs, tmp_path / "o", opencodelists_url, template="x"))

    assert code == 2
    assert "use one of event_counts" in capsys.readouterr().err


def test_render_unreadable_inputs_exit_2(
    tmp_path: Path, opencodelists_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "inputs.json"
    inputs.write_text("{not json")

    code = main(render_command(inputs, tmp_path / "o", opencodelists_url))

    assert code == 2
    assert "Cannot read inputs" in capsys.readouterr().err


def test_render_non_empty_folder_exit_2(
    tmp_path: Path, opencodelists_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preview"
    out.mkdir()
    (out / "old.txt").write_text("from an earlier preview")

    code = main(
        render_command(write_inputs(tmp_path, {"codelist_1": CODELIST_1}), out,
                       opencodelists_url)
    )

    assert code == 2
    assert "is not empty" in capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == ["old.txt"]


def test_render_opencodelists_down_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write_inputs(tmp_path, {"codelist_1": CODELIST_1})

    code = main(render_command(inputs, tmp_path / "o", DEAD_URL))

    assert code == 4
    assert "could not be reached" in capsys.readouterr().err


def test_render_templates_dir(tmp_path: Path, opencodelists_url: str) -> None:
    write_template(tmp_path / "templates", "extra")
    out = tmp_path / "preview"

    code = main(
        render_command(
            write_inputs(tmp_path, {"label": "abc"}), out, opencodelists_url,
            "--templates-dir", str(tmp_path / "templates"), template="extra",
        )
    )

    assert code == 0
    assert (out / "out.txt").read_text() == "label=abc\n"


def test_render_console_script(tmp_path: Path, opencodelists_url: str) -> None:
    inputs = write_inputs(tmp_path, {"codelist_1": CODELIST_1})
    out = tmp_path / "preview"

    result = subprocess.run(
        [sys.executable, "-m", "github_app.cli",
         *render_command(inputs, out, opencodelists_url)],
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert (out / "config.json").is_file()
