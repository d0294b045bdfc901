"""Standard-library log records rendered as JSON keep their tracebacks."""

import json
import logging

import pytest

from github_app.logs import configure_logging


def test_stdlib_exception_has_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")

    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        logging.getLogger("github_app.test").exception("Request failed")

    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "Request failed"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ZeroDivisionError: division by zero" in line["exception"]
