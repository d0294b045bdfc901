"""Jinja2 filters that quote a value for the language it lands in.

A template writes every input through one of these, never raw, so that no input
can change what the rendered code does beyond the value it carries:

- ``python_literal``: a Python literal (ASCII only, so no character can end it).
- ``yaml_string``: a YAML double-quoted scalar, with every character outside
  printable ASCII escaped, so anchors, tags, comments and line breaks stay text.
- ``command_line``: a list of arguments joined as a POSIX shell would split them
  back, which is how OpenSAFELY's pipeline splits an action's ``run`` line.
"""

import math
import shlex
from collections.abc import Callable
from typing import Any

#: Types a Python literal may be built from.
_LITERAL_TYPES = (str, int, float, bool, type(None), list, tuple, dict)


def _check_literal(value: Any) -> None:
    if not isinstance(value, _LITERAL_TYPES):
        raise TypeError(
            f"Cannot write a {type(value).__name__} as a Python literal: use str, "
            "int, float, bool, None, list, tuple or dict."
        )

    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"Cannot write {value!r} as a Python literal.")

    if isinstance(value, dict):
        for key, item in value.items():
            _check_literal(key)
            _check_literal(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_literal(item)


def python_literal(value: Any) -> str:
    """Quote ``value`` as a Python literal that ``ast.literal_eval`` reads back.

    ``ascii`` escapes every non-ASCII character, line break and quote inside
    strings, so the literal is one line of ASCII however hostile the value.
    """
    _check_literal(value)
    return ascii(value)


def yaml_string(value: Any) -> str:
    """Quote a string as a YAML double-quoted scalar with ASCII escapes.

    https://yaml.org/spec/1.2.2/#57-escaped-characters
    """
    if not isinstance(value, str):
        raise TypeError(f"yaml_string quotes strings only, got {type(value).__name__}.")

    parts = []
    for character in value:
        code = ord(character)
        if character in ('"', "\\"):
            parts.append("\\" + character)
        elif 0x20 <= code < 0x7F:
            parts.append(character)
        elif code <= 0xFF:
            parts.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")

    return '"' + "".join(parts) + '"'


def command_line(arguments: Any) -> str:
    """Join arguments into one command line that ``shlex.split`` splits back."""
    if not isinstance(arguments, list | tuple) or not all(
        isinstance(argument, str) for argument in arguments
    ):
        raise TypeError("command_line joins a list of strings.")

    return shlex.join(arguments)


FILTERS: dict[str, Callable[..., str]] = {
    "python_literal": python_literal,
    "yaml_string": yaml_string,
    "command_line": command_line,
}
