"""Analysis templates: find them, validate their inputs, render a query's files.

A template is a folder (see ``catalogue``) bundled in this package or placed in
the operator's ``TEMPLATES_DIR``. ``validate_inputs`` checks a query's inputs
against the template's strict JSON Schema and rules; ``render`` turns valid inputs
and the downloaded codelists into the file set that is committed for the query.
"""

from github_app.templates.catalogue import (
    Template,
    TemplateError,
    TemplateNotFoundError,
    find_template,
    list_templates,
    load_template,
)
from github_app.templates.filters import command_line, python_literal, yaml_string
from github_app.templates.rendering import (
    CONFIG_FILE,
    QUERY_ID,
    InputError,
    InvalidInputsError,
    render,
    validate_inputs,
    with_defaults,
)

__all__ = [
    "CONFIG_FILE",
    "QUERY_ID",
    "InputError",
    "InvalidInputsError",
    "Template",
    "TemplateError",
    "TemplateNotFoundError",
    "command_line",
    "find_template",
    "list_templates",
    "load_template",
    "python_literal",
    "render",
    "validate_inputs",
    "with_defaults",
    "yaml_string",
]
