"""Hostile inputs: each is rejected naming its field, or rendered as inert data.

The values are quotes, line breaks, Jinja2 and YAML syntax, backslashes, paths,
NUL, very long and non-ASCII text, for every string input of the bundled
template. Either validation fails with errors that name only that input, or the
rendered files parse, keep the structure of a benign render, and carry the value
only as a literal.
"""

import ast
import json
import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensafely._vendor.pipeline import load_pipeline

from github_app.templates import find_template, render, validate_inputs
from tests.template_helpers import (
    CODELIST_1,
    CODELIST_2,
    QUERY_ID,
    catalogue_download,
    fake_download,
)

#: Valid inputs that leave every other input free to take any valid value.
BASELINE: dict[str, Any] = {
    "codelist_1": CODELIST_1,
    "codelist_2": CODELIST_2,
    "start_date": "1900-01-01",
    "end_date": "2099-12-31",
    "population": "all",
    "breakdowns": ["sex"],
    "title": "Benign title",
}
FRAGMENTS = [
    '"', "'", "'''", '"""', "\\", "\\n", "\n", "\r\n", "\t", "\x00", "\x1b",
    "\u2028", "\u0085", "\ufeff", "\ud800", "{{ 7 * 7 }}", "{{", "}}",
    "{% import os %}", "{%", "%}", "{#", "#}", "${HOME}", "$(id)", "`id`", "; id",
    "&anchor", "*anchor", "!!python/object/apply:os.system ['id']", "!tag",
    "---", "...", "# comment", ": ", "- item", "[a, b]", "{a: b}", "../",
    "../../etc/passwd", "/etc/passwd", "C:\\Windows", "--output /tmp/x",
    "\u00e9", "\u4e2d\u6587", "\U0001f600", "\u202e", "x" * 300,
]
hostile_text = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=10
    ).map("".join),
)
#: The inputs whose schema is a string, or a list of strings for breakdowns.
STRING_FIELDS = [
    "codelist_1",
    "codelist_2",
    "start_date",
    "end_date",
    "population",
    "breakdowns",
    "title",
]
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def inputs_with(field: str, value: str) -> dict[str, Any]:
    inputs = dict(BASELINE)
    inputs[field] = [value] if field == "breakdowns" else value
    return inputs


def valid_value_strategy(field: str) -> st.SearchStrategy[str]:
    """Return values near the valid ones, wrapped in hostile text."""
    valid = {"codelist_1": CODELIST_1, "codelist_2": CODELIST_2,
             "start_date": "2020-01-01", "end_date": "2024-12-31",
             "population": "adults", "breakdowns": "region", "title": "Counts"}[field]
    return st.tuples(hostile_text, hostile_text).map(
        lambda parts: parts[0] + valid + parts[1]
    )


def render_inputs(inputs: dict[str, Any]) -> dict[str, str]:
    codelists = []
    for key in ("codelist_1", "codelist_2"):
        if key not in inputs:
            continue
        known = inputs[key] in (CODELIST_1, CODELIST_2)
        codelists.append(
            catalogue_download(inputs[key]) if known else fake_download(inputs[key])
        )
    return render("event_counts", query_id=QUERY_ID, inputs=inputs, codelists=codelists)


def masked_python(source: str) -> str:
    """Return the AST of ``source`` with every literal replaced, to compare shape."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.value = "<literal>"
    return ast.dump(tree)


def masked_data(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: masked_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked_data(item) for item in value]
    return "<scalar>"


def python_literals(source: str) -> list[Any]:
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
    ]


BASELINE_FILES = render_inputs(BASELINE)


def check_rendered_inert(field: str, value: str) -> None:
    """Assert the files for ``value`` parse and differ from a benign render in data."""
    inputs = inputs_with(field, value)
    files = render_inputs(inputs)

    for path in ("analysis/measures.py", "analysis/report.py"):
        assert masked_python(files[path]) == masked_python(BASELINE_FILES[path]), path
    project = yaml.safe_load(files["project.yaml"])
    baseline_project = yaml.safe_load(BASELINE_FILES["project.yaml"])
    assert masked_data(project) == masked_data(baseline_project)
    load_pipeline(files["project.yaml"])
    config = json.loads(files["config.json"])
    assert config["inputs"] == inputs
    if field == "title":
        assert value in python_literals(files["analysis/report.py"])
    if field in ("codelist_1", "codelist_2"):
        listed = files["codelists/codelists.txt"].splitlines()
        assert listed == [inputs["codelist_1"], inputs["codelist_2"]]
    # Values reach the files only escaped, so no file but the downloaded CSVs
    # contains a non-ASCII or control character that could hide or reorder code.
    for path, text in files.items():
        if not path.endswith(".csv"):
            assert text.isascii(), path
            assert not {c for c in text if ord(c) < 32} - {"\n"}, path


def check_value(field: str, value: str) -> str:
    """Validate one value; return "rejected" or "rendered" after checking either way."""
    errors = validate_inputs("event_counts", inputs_with(field, value))
    if errors:
        named = {error.field for error in errors}
        assert all(name.startswith(f"analysis.inputs.{field}") for name in named), named
        return "rejected"

    check_rendered_inert(field, value)
    return "rendered"


def test_schema_string_fields_covered() -> None:
    schema = find_template("event_counts").schema
    strings = []
    for name, subschema in schema["properties"].items():
        resolved = json.dumps(subschema)
        if '"string"' in resolved or "$defs" in resolved:
            strings.append(name)

    assert sorted(strings) == sorted(STRING_FIELDS)


@pytest.mark.parametrize("field", STRING_FIELDS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_hostile_values_rejected_or_inert(field: str, data: st.DataObject) -> None:
    value = data.draw(st.one_of(hostile_text, valid_value_strategy(field)))

    check_value(field, value)


TITLES = [
    'He said "hi" and \'bye\'',
    "back\\slash \\n \\x00 \\u2028",
    "{{ 7 * 7 }} {% for x in range(3) %}{{ x }}{% endfor %} {# comment #}",
    "&anchor *anchor !!python/object/apply:os.system ['id'] --- ...",
    "'''; import os; os.system('id'); '''",
    '"""; import os #',
    "../../etc/passwd and /etc/shadow and C:\\Windows",
    "caf\u00e9 \u4e2d\u6587 \U0001f600 \u202eevil",
    "x" * 120,
]


@pytest.mark.parametrize("title", TITLES)
def test_hostile_title_rendered_inert(title: str) -> None:
    outcome = check_value("title", title)

    assert outcome == "rendered"


@pytest.mark.parametrize(
    "title", ["line\nbreak", "nul\x00", "tab\there", "x" * 121, "\ud800", "", "\x85"]
)
def test_hostile_title_rejected(title: str) -> None:
    outcome = check_value("title", title)

    assert outcome == "rejected"


@pytest.mark.parametrize("field", [f for f in STRING_FIELDS if f != "title"])
@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_hostile_fragment_after_valid_value(field: str, fragment: str) -> None:
    value = ("sex" if field == "breakdowns" else BASELINE[field]) + fragment

    outcome = check_value(field, value)

    assert outcome in ("rejected", "rendered")
