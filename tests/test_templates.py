"""Template rendering and input validation for the bundled analysis templates."""

import ast
import json
from typing import Any

import pytest

from github_app.templates import (
    DEFAULT_END_DATE,
    DEFAULT_START_DATE,
    TemplateNotFoundError,
    list_templates,
    python_literal,
    render,
    validate_inputs,
)

QUERY_ID = "01HV3Z8Q4J6Y9K2M5N7P0R1S2T"
CODELIST_1 = "opensafely/asthma-diagnosis/2020-04-15"
CODELIST_2 = "opensafely/chronic-respiratory-disease/2020-04-10"
#: An OpenCodelists id in the form the NHS primary care domain reference sets use.
REFSET_CODELIST = "nhsd-primary-care-domain-refsets/abpm_cod/20241205"
INPUTS: dict[str, Any] = {
    "codelist_1": CODELIST_1,
    "codelist_2": CODELIST_2,
    "start_date": "2021-03-01",
    "end_date": "2023-02-28",
}


def render_event_counts(inputs: dict[str, Any] | None = None) -> dict[str, str]:
    return render("event_counts", query_id=QUERY_ID, inputs=inputs or INPUTS)


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


def test_list_templates_includes_event_counts() -> None:
    assert "event_counts" in list_templates()


def test_render_event_counts_file_set() -> None:
    files = render_event_counts()

    assert {"analysis/measures.py", "config.json", "project.yaml"} <= set(files)
    assert not [path for path in files if path.endswith(".j2")]
    assert "schema.json" not in files


def test_render_project_yaml_parses() -> None:
    # PyYAML is installed with responses, a test dependency.
    yaml = pytest.importorskip("yaml")
    files = render_event_counts()

    project = yaml.safe_load(files["project.yaml"])

    action = project["actions"]["generate_measures"]
    assert project["version"] == "4.0"
    assert "analysis/measures.py" in action["run"]
    assert f"--output output/{QUERY_ID}/measures.csv" in action["run"]
    assert action["outputs"]["moderately_sensitive"] == {
        "measures": f"output/{QUERY_ID}/measures.csv"
    }


def test_render_python_files_compile() -> None:
    files = render_event_counts()

    python_files = [path for path in files if path.endswith(".py")]

    assert python_files
    for path in python_files:
        compile(files[path], path, "exec")


def test_render_measures_holds_inputs() -> None:
    files = render_event_counts()

    constants = module_constants(files["analysis/measures.py"])

    assert constants["START_DATE"] == "2021-03-01"
    assert constants["END_DATE"] == "2023-02-28"
    assert constants["CODELISTS"] == {
        "codelist_1": CODELIST_1,
        "codelist_2": CODELIST_2,
    }


@pytest.mark.xfail(
    strict=True,
    reason="render leaves out the codelists/*.csv files that analysis/measures.py "
    "reads, so the committed project cannot run",
)
def test_render_includes_codelist_csvs() -> None:
    files = render_event_counts()

    for codelist_id in (CODELIST_1, CODELIST_2):
        assert f"codelists/{codelist_id.replace('/', '-')}.csv" in files


def test_render_default_dates() -> None:
    files = render_event_counts({"codelist_1": CODELIST_1})

    constants = module_constants(files["analysis/measures.py"])

    assert constants["START_DATE"] == DEFAULT_START_DATE
    assert constants["END_DATE"] == DEFAULT_END_DATE
    assert constants["CODELISTS"] == {"codelist_1": CODELIST_1}


def test_render_config_json_holds_inputs() -> None:
    files = render_event_counts()

    config = json.loads(files["config.json"])

    assert config == {
        "query_id": QUERY_ID,
        "template": "event_counts",
        "inputs": INPUTS,
    }


def test_render_is_deterministic() -> None:
    first = render_event_counts()

    second = render_event_counts()

    assert first == second


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
