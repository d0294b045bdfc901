"""Template packages, rendering and input validation for the bundled templates."""

import ast
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from opensafely._vendor.pipeline import load_pipeline

from github_app.templates import (
    TemplateError,
    TemplateNotFoundError,
    command_line,
    find_template,
    list_templates,
    python_literal,
    render,
    validate_inputs,
    yaml_string,
)
from github_app.templates.catalogue import bundled_folder
from github_app.templates.rendering import InvalidInputsError
from tests.template_helpers import (
    CODELIST_1,
    CODELIST_2,
    DMD_CODELIST,
    INPUTS,
    QUERY_ID,
    REFSET_CODELIST,
    USER_CODELIST,
    catalogue_download,
    fake_download,
    module_constants,
    render_event_counts,
)

DEFAULT_START_DATE = "2020-01-01"
DEFAULT_END_DATE = "2024-12-31"
#: Inputs at the extremes of each field, and a spread of ordinary ones.
VALID_INPUTS = {
    "minimal": {"codelist_1": CODELIST_1},
    "everything": {
        "codelist_1": REFSET_CODELIST,
        "codelist_2": DMD_CODELIST,
        "start_date": "2021-01-01",
        "end_date": "2021-12-31",
        "population": "children",
        "breakdowns": ["age_band", "sex", "region"],
        "title": "Blood pressure and inhalers",
    },
    "user-codelist-adults": {
        "codelist_1": USER_CODELIST,
        "population": "adults",
        "breakdowns": ["region"],
    },
    "one-day": {
        "codelist_1": CODELIST_1,
        "start_date": "2024-02-29",
        "end_date": "2024-02-29",
    },
    "widest-dates": {
        "codelist_1": CODELIST_1,
        "start_date": "1900-01-01",
        "end_date": "2099-12-31",
    },
    "longest-title": {"codelist_1": CODELIST_1, "title": "\u00e9" * 120},
    "shortest-title": {"codelist_1": CODELIST_1, "title": "x"},
    "longest-ids": {
        "codelist_1": "user/" + "a" * 80 + "/" + "b" * 80 + "/" + "C" * 40,
        "codelist_2": "z" * 80 + "/" + "y" * 80 + "/" + "9" * 40,
    },
}
#: Query ids at the extremes of the query id rule.
QUERY_IDS = ["a", "A" * 100, "query.v1_2-3", QUERY_ID]


def render_valid(name: str, query_id: str = QUERY_ID) -> dict[str, str]:
    inputs = VALID_INPUTS[name]
    assert validate_inputs("event_counts", inputs) == []
    return render_event_counts(inputs, query_id=query_id)


def write_template(root: Path, name: str, **changes: Any) -> Path:
    """Copy a minimal valid template package into ``root`` and apply ``changes``."""
    folder = root / name
    folder.mkdir(parents=True)
    metadata = changes.pop("metadata", f'name = "{name}"\nversion = "2.0.0"\n')
    schema = changes.pop(
        "schema",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "label": {"type": "string", "maxLength": 10, "pattern": "^[a-z]+$"}
            },
        },
    )
    (folder / "template.toml").write_text(metadata)
    (folder / "schema.json").write_text(json.dumps(schema))
    files = changes.pop("files", {"out.txt.j2": "label={{ inputs.label }}\n"})
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)

    return folder


class TestCatalogue:
    def test_list_templates_includes_event_counts(self) -> None:
        assert "event_counts" in list_templates()

    def test_event_counts_metadata(self) -> None:
        template = find_template("event_counts")

        assert template.name == "event_counts"
        assert template.version == "1.0.0"
        assert template.codelist_inputs == ("codelist_1", "codelist_2")
        assert set(template.coding_systems) == {"ctv3", "snomedct", "dmd"}

    def test_templates_dir_adds_template(self, tmp_path: Path) -> None:
        write_template(tmp_path, "extra")

        files = render(
            "extra", query_id=QUERY_ID, inputs={"label": "abc"}, templates_dir=tmp_path
        )

        assert "extra" in list_templates(tmp_path)
        assert files["out.txt"] == "label=abc\n"
        assert json.loads(files["config.json"])["template_version"] == "2.0.0"

    def test_templates_dir_replaces_bundled(self, tmp_path: Path) -> None:
        write_template(tmp_path, "event_counts")

        template = find_template("event_counts", tmp_path)

        assert template.version == "2.0.0"

    @pytest.mark.parametrize(
        ("changes", "match"),
        [
            pytest.param(
                {"metadata": 'name = "other"\nversion = "1.0.0"\n'},
                "must set name",
                id="name-differs",
            ),
            pytest.param(
                {"metadata": 'name = "broken"\n'}, "must set version", id="no-version"
            ),
            pytest.param(
                {"metadata": 'name = "broken"\nversion = "1\\n2"\n'},
                "must set version",
                id="version-with-newline",
            ),
            pytest.param(
                {"schema": {"type": "object", "properties": {}}},
                "not strict at #",
                id="open-object",
            ),
            pytest.param(
                {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"label": {"type": "string", "maxLength": 9}},
                    }
                },
                "not strict at #/properties/label",
                id="string-without-pattern",
            ),
            pytest.param(
                {"schema": {"type": "object", "additionalProperties": 3}},
                "not a valid JSON Schema",
                id="invalid-schema",
            ),
            pytest.param(
                {
                    "metadata": 'name = "broken"\nversion = "1.0.0"\n'
                    '[codelists]\ninputs = ["codelist"]\n'
                },
                "does not define",
                id="unknown-codelist-input",
            ),
        ],
    )
    def test_malformed_template_rejected(
        self, tmp_path: Path, changes: dict[str, Any], match: str
    ) -> None:
        write_template(tmp_path, "broken", **changes)

        with pytest.raises(TemplateError, match=match):
            find_template("broken", tmp_path)

    @pytest.mark.parametrize(
        "files",
        [
            {"config.json": "{}"},
            {"codelists/codelists.txt.j2": ""},
        ],
    )
    def test_template_may_not_ship_generated_files(
        self, tmp_path: Path, files: dict[str, str]
    ) -> None:
        write_template(tmp_path, "clash", files=files)

        with pytest.raises(TemplateError, match="which the app writes itself"):
            render("clash", query_id=QUERY_ID, inputs={}, templates_dir=tmp_path)

    def test_template_file_names_checked(self, tmp_path: Path) -> None:
        write_template(tmp_path, "hidden", files={".env": "SECRET=1"})

        with pytest.raises(TemplateError, match="cannot be committed safely"):
            render("hidden", query_id=QUERY_ID, inputs={}, templates_dir=tmp_path)

    def test_sandbox_blocks_python_internals(self, tmp_path: Path) -> None:
        source = "{{ inputs.__class__.__mro__[1].__subclasses__() }}"
        write_template(tmp_path, "escape", files={"x.txt.j2": source})

        with pytest.raises(TemplateError, match="failed to render x.txt.j2"):
            render("escape", query_id=QUERY_ID, inputs={}, templates_dir=tmp_path)

    def test_undefined_variable_fails(self, tmp_path: Path) -> None:
        write_template(tmp_path, "typo", files={"x.txt.j2": "{{ inputs.lable }}"})

        with pytest.raises(TemplateError, match="lable"):
            render("typo", query_id=QUERY_ID, inputs={}, templates_dir=tmp_path)

    def test_bundled_templates_all_load(self) -> None:
        names = [
            item.name
            for item in bundled_folder().iterdir()
            if item.is_dir() and (item / "template.toml").is_file()
        ]

        assert names
        for name in names:
            assert find_template(name).name == name


class TestRender:
    def test_file_set(self) -> None:
        files = render_event_counts()

        assert set(files) == {
            "project.yaml",
            "analysis/measures.py",
            "analysis/report.py",
            "config.json",
            "codelists/codelists.txt",
            "codelists/codelists.json",
            "codelists/opensafely-asthma-diagnosis.csv",
            "codelists/opensafely-chronic-respiratory-disease.csv",
        }

    def test_includes_codelist_csvs(self) -> None:
        files = render_event_counts()

        # opensafely-cli names each CSV after the codelist, without its version.
        for codelist_id in (CODELIST_1, CODELIST_2):
            path = f"codelists/{codelist_id.rsplit('/', 1)[0].replace('/', '-')}.csv"
            assert files[path] == catalogue_download(codelist_id).content.decode()

    def test_project_yaml_shape(self) -> None:
        project = yaml.safe_load(render_event_counts()["project.yaml"])

        generate = project["actions"]["generate_measures"]
        report = project["actions"]["report_event_counts"]
        assert project["version"] == "5"
        assert shlex.split(generate["run"]) == [
            "ehrql:v1",
            "generate-measures",
            "analysis/measures.py",
            "--output",
            f"output/{QUERY_ID}/measures.csv",
        ]
        assert generate["outputs"]["moderately_sensitive"] == {
            "measures": f"output/{QUERY_ID}/measures.csv"
        }
        assert report["needs"] == ["generate_measures"]
        assert report["outputs"]["moderately_sensitive"] == {
            "counts": f"output/{QUERY_ID}/counts.csv",
            "chart": f"output/{QUERY_ID}/chart.png",
        }

    @pytest.mark.parametrize("name", sorted(VALID_INPUTS))
    def test_project_loads_with_opensafely_pipeline(self, name: str) -> None:
        files = render_valid(name)

        pipeline = load_pipeline(files["project.yaml"], filename="project.yaml")

        assert pipeline.all_actions == ["generate_measures", "report_event_counts"]
        assert pipeline.actions["generate_measures"].is_database_action
        assert not pipeline.actions["report_event_counts"].is_database_action

    @pytest.mark.parametrize("query_id", QUERY_IDS)
    def test_query_id_extremes_load(self, query_id: str) -> None:
        files = render_valid("minimal", query_id=query_id)

        pipeline = load_pipeline(files["project.yaml"])

        outputs = pipeline.actions["generate_measures"].outputs.dict()
        assert outputs["moderately_sensitive"]["measures"] == (
            f"output/{query_id}/measures.csv"
        )

    @pytest.mark.parametrize("name", sorted(VALID_INPUTS))
    def test_every_file_parses(self, name: str) -> None:
        files = render_valid(name)

        for path, text in files.items():
            if path.endswith(".py"):
                compile(text, path, "exec")
            elif path.endswith((".yaml", ".yml")):
                assert isinstance(yaml.safe_load(text), dict), path
            elif path.endswith(".json"):
                assert isinstance(json.loads(text), dict), path

    def test_measures_holds_inputs(self) -> None:
        files = render_event_counts()

        constants = module_constants(files["analysis/measures.py"])

        assert constants["START_DATE"] == "2021-03-01"
        assert constants["END_DATE"] == "2023-02-28"
        assert constants["POPULATION"] == "all"
        assert constants["BREAKDOWNS"] == []
        assert constants["CODELISTS"] == {
            "codelist_1": (
                "codelists/opensafely-asthma-diagnosis.csv",
                "CTV3ID",
                "ctv3",
            ),
            "codelist_2": (
                "codelists/opensafely-chronic-respiratory-disease.csv",
                "CTV3ID",
                "ctv3",
            ),
        }

    @pytest.mark.parametrize(
        ("codelist_id", "column", "coding_system"),
        [
            (REFSET_CODELIST, "code", "snomedct"),
            (DMD_CODELIST, "code", "dmd"),
            (USER_CODELIST, "code", "snomedct"),
        ],
    )
    def test_measures_code_column(
        self, codelist_id: str, column: str, coding_system: str
    ) -> None:
        files = render_event_counts({"codelist_1": codelist_id})

        constants = module_constants(files["analysis/measures.py"])

        path, found_column, found_system = constants["CODELISTS"]["codelist_1"]
        assert path in files
        assert found_column == column
        assert found_system == coding_system

    def test_default_inputs(self) -> None:
        files = render_event_counts({"codelist_1": CODELIST_1})

        constants = module_constants(files["analysis/measures.py"])

        assert constants["START_DATE"] == DEFAULT_START_DATE
        assert constants["END_DATE"] == DEFAULT_END_DATE
        assert constants["POPULATION"] == "all"
        assert list(constants["CODELISTS"]) == ["codelist_1"]

    def test_config_json_records_template_and_inputs(self) -> None:
        config = json.loads(render_event_counts()["config.json"])

        assert config == {
            "query_id": QUERY_ID,
            "template": "event_counts",
            "template_version": "1.0.0",
            "inputs": {
                **INPUTS,
                "population": "all",
                "breakdowns": [],
                "title": "Patients with an event each month",
            },
        }

    def test_is_deterministic(self) -> None:
        first = render_event_counts()

        second = render_event_counts()

        assert first == second

    def test_unsupported_coding_system_names_input(self) -> None:
        icd10 = "opensafely/covid-identification/2020-06-03"

        with pytest.raises(InvalidInputsError) as caught:
            render_event_counts({"codelist_1": CODELIST_1, "codelist_2": icd10})

        assert [error.field for error in caught.value.errors] == [
            "analysis.inputs.codelist_2"
        ]
        assert "icd10" in caught.value.errors[0].message

    def test_missing_download_rejected(self) -> None:
        with pytest.raises(ValueError, match="was not downloaded"):
            render(
                "event_counts",
                query_id=QUERY_ID,
                inputs={"codelist_1": CODELIST_1},
                codelists=[fake_download(CODELIST_2)],
            )

    @pytest.mark.parametrize(
        "query_id", ["", "../x", "a/b", "a..b", "x.lock", "a\n", "-a", "a" * 101]
    )
    def test_invalid_query_id_rejected(self, query_id: str) -> None:
        with pytest.raises(ValueError, match="not a valid query id"):
            render_event_counts({"codelist_1": CODELIST_1}, query_id=query_id)


def write_measures_csv(path: Path, months: list[str]) -> None:
    """Write a measures file in the columns ehrQL's generate-measures writes."""
    columns = [
        "measure", "interval_start", "interval_end", "ratio", "numerator",
        "denominator", "sex",
    ]
    rows = []
    for index, month in enumerate(months):
        rows.append(["codelist_1", month, month, "", str(10 * index), "1000", ""])
        rows.append(["codelist_2", month, month, "", "", "1000", ""])
        rows.append(["codelist_1_by_sex", month, month, "", "5", "500", "female"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(row) for row in [columns, *rows]) + "\n")


def test_report_script_writes_counts_and_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    files = render_event_counts({**INPUTS, "title": "Title with \"quotes\" \u00e9"})
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis/report.py").write_text(files["analysis/report.py"])
    output_dir = f"output/{QUERY_ID}"
    months = ["2021-03-01", "2021-04-01"]
    write_measures_csv(tmp_path / output_dir / "measures.csv", months)
    run = shlex.split(yaml.safe_load(files["project.yaml"])["actions"][
        "report_event_counts"]["run"])

    result = subprocess.run(
        [sys.executable, *run[1:]], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={"MPLBACKEND": "Agg", "PATH": ""},
    )

    assert result.returncode == 0, result.stderr
    counts = (tmp_path / output_dir / "counts.csv").read_text().splitlines()
    assert counts[0] == (
        "month,codelist_1_patients_with_event,codelist_1_registered_patients,"
        "codelist_1_rate_per_1000,codelist_2_patients_with_event,"
        "codelist_2_registered_patients,codelist_2_rate_per_1000"
    )
    assert counts[1:] == [
        "2021-03-01,0,1000,0.0,0,1000,0.0",
        "2021-04-01,10,1000,10.0,0,1000,0.0",
    ]
    chart = (tmp_path / output_dir / "chart.png").read_bytes()
    assert chart.startswith(b"\x89PNG\r\n\x1a\n")


def test_validate_inputs_valid() -> None:
    errors = validate_inputs("event_counts", INPUTS)

    assert errors == []


def test_validate_inputs_accepts_refset_codelist() -> None:
    errors = validate_inputs("event_counts", {"codelist_1": REFSET_CODELIST})

    assert errors == []


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        pytest.param(
            {"codelist_1": CODELIST_1, "colour": "blue"},
            "analysis.inputs.colour",
            id="unknown-key",
        ),
        pytest.param(
            {"codelist_1": "asthma"}, "analysis.inputs.codelist_1", id="bad-codelist"
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "codelist_2": "a/b"},
            "analysis.inputs.codelist_2",
            id="bad-second-codelist",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "start_date": "01/02/2021"},
            "analysis.inputs.start_date",
            id="bad-date-format",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "end_date": "2021-13-01"},
            "analysis.inputs.end_date",
            id="bad-month",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "end_date": 20210101},
            "analysis.inputs.end_date",
            id="date-not-string",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "start_date": "2023-02-30"},
            "analysis.inputs.start_date",
            id="day-not-in-month",
        ),
        pytest.param(
            {"codelist_2": CODELIST_2},
            "analysis.inputs.codelist_1",
            id="missing-codelist-1",
        ),
    ],
)
def test_validate_inputs_names_field(inputs: dict[str, Any], field: str) -> None:
    errors = validate_inputs("event_counts", inputs)

    assert field in [error.field for error in errors]


@pytest.mark.parametrize(
    ("inputs", "key"),
    [
        ({"codelist_1": CODELIST_1, "colour": "blue"}, "colour"),
        ({"codelist_2": CODELIST_2}, "codelist_1"),
    ],
)
def test_validate_inputs_message_names_key(inputs: dict[str, Any], key: str) -> None:
    errors = validate_inputs("event_counts", inputs)

    assert len(errors) == 1
    assert errors[0].field.startswith("analysis.inputs")
    assert key in errors[0].message


def test_validate_inputs_start_after_end() -> None:
    inputs = {
        "codelist_1": CODELIST_1,
        "start_date": "2024-01-01",
        "end_date": "2023-01-01",
    }

    errors = validate_inputs("event_counts", inputs)

    assert errors


@pytest.mark.parametrize("inputs", [None, [], "codelist_1", 7])
def test_validate_inputs_not_object(inputs: Any) -> None:
    errors = validate_inputs("event_counts", inputs)

    assert [error.field for error in errors] == ["analysis.inputs"]


@pytest.mark.parametrize(
    "codelist_id",
    [
        'opensafely/asthma/1"; import os; os.system("id") #',
        "opensafely/asthma/1\nimport os",
        "../../etc/passwd",
        "opensafely/../v1",
        "opensafely/asthma/{{ 7 * 7 }}",
        "opensafely/asthma/${HOME}",
        "opensafely/asthma/v1 --output /tmp/x",
        "Opensafely/asthma/v1",
        "opensafely/asthma/v1/extra",
        "opensafely/asthma/v1\x00",
        "opensafely/asthma/v1\u200b",
        "o/" + "a" * 200 + "/v1",
        "",
    ],
)
def test_validate_inputs_hostile_codelist_id(codelist_id: str) -> None:
    errors = validate_inputs("event_counts", {"codelist_1": codelist_id})

    assert errors
    assert {error.field for error in errors} == {"analysis.inputs.codelist_1"}


@pytest.mark.parametrize(
    "name", ["nope", "../event_counts", "event_counts/analysis", ""]
)
def test_validate_inputs_unknown_template(name: str) -> None:
    with pytest.raises(TemplateNotFoundError, match="event_counts"):
        validate_inputs(name, {"codelist_1": CODELIST_1})


def test_render_unknown_template_lists_available() -> None:
    with pytest.raises(TemplateNotFoundError, match="use one of .*event_counts"):
        render("nope", query_id=QUERY_ID, inputs={"codelist_1": CODELIST_1})


@pytest.mark.parametrize(
    "value",
    [
        'a"b',
        "line\nbreak",
        "back\\slash",
        "{{ x }}",
        "caf\u00e9",
        "'''",
        3,
        2.5,
        True,
        None,
    ],
)
def test_python_literal_round_trips(value: Any) -> None:
    literal = python_literal(value)

    assert ast.literal_eval(literal) == value
    assert "\n" not in literal


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        pytest.param(
            {"codelist_1": CODELIST_1, "population": "everyone"},
            "analysis.inputs.population",
            id="unknown-population",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "breakdowns": ["sex", "sex"]},
            "analysis.inputs.breakdowns",
            id="repeated-breakdown",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "breakdowns": ["ethnicity"]},
            "analysis.inputs.breakdowns.0",
            id="unknown-breakdown",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "title": ""},
            "analysis.inputs.title",
            id="empty-title",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "title": "x" * 121},
            "analysis.inputs.title",
            id="long-title",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "title": "line\nbreak"},
            "analysis.inputs.title",
            id="title-newline",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "title": "ends in newline\n"},
            "analysis.inputs.title",
            id="title-trailing-newline",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1 + "\n"},
            "analysis.inputs.codelist_1",
            id="codelist-trailing-newline",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "title": "nul\x00"},
            "analysis.inputs.title",
            id="title-nul",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "title": "lone \ud800 surrogate"},
            "analysis.inputs.title",
            id="title-surrogate",
        ),
        pytest.param(
            {"codelist_1": CODELIST_1, "codelist_2": CODELIST_1},
            "analysis.inputs.codelist_2",
            id="same-codelist-twice",
        ),
        pytest.param(
            {
                "codelist_1": CODELIST_1,
                "codelist_2": "opensafely/asthma-diagnosis/2021-01-01",
            },
            "analysis.inputs.codelist_2",
            id="two-versions-of-one-codelist",
        ),
    ],
)
def test_validate_inputs_template_rules(inputs: dict[str, Any], field: str) -> None:
    errors = validate_inputs("event_counts", inputs)

    assert errors
    assert {error.field for error in errors} == {field}


def test_validate_inputs_long_value_not_echoed() -> None:
    errors = validate_inputs("event_counts", {"codelist_1": "a" * 100_000})

    assert errors
    for error in errors:
        assert len(error.message) < 400
        assert "100000 characters" in error.message


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'say "hi"',
        "back\\slash",
        "line\nbreak\r\n",
        "&anchor *alias !!python/object:os.system [1]",
        "# comment: {key: value}",
        "caf\u00e9 \u4e2d\u6587 \U0001f600",
        "\x00\x07\x1b\x85\u2028",
        "",
    ],
)
def test_yaml_string_round_trips(value: str) -> None:
    quoted = yaml_string(value)

    assert yaml.safe_load(f"key: {quoted}") == {"key": value}
    assert quoted.isascii()
    assert "\n" not in quoted


@pytest.mark.parametrize(
    "arguments",
    [
        ["ehrql:v1", "generate-measures", "analysis/measures.py"],
        ["run", "a b", "it's", '"quoted"', "$HOME", "; rm -rf /", "`id`", ""],
    ],
)
def test_command_line_round_trips(arguments: list[str]) -> None:
    line = command_line(arguments)

    assert shlex.split(line) == arguments


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), object(), {"key": {1, 2}}]
)
def test_python_literal_rejects_non_literals(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        python_literal(value)


def test_python_literal_nested_round_trips() -> None:
    value = {"a": [1, 2.5, None, True], "b": ("x\n", "\u00e9")}

    literal = python_literal(value)

    assert ast.literal_eval(literal) == value
    assert literal.isascii()
