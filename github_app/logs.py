"""Structured logging: JSON lines in production, readable lines for people.

Every line, from structlog or the standard library, passes through
``SecretScrubber`` after it is rendered. The scrubber replaces the configured
secrets, and anything shaped like a private key, a JWT, a GitHub token or a
bearer credential, by ``[REDACTED]``. A secret that reaches a log call (in a
message, a value or a traceback) therefore does not reach the output.
"""

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog

# Secrets shorter than this are not scrubbed by value, because short strings would
# also match ordinary words; the settings reject secrets that short.
from github_app.config import MIN_SECRET_LENGTH

REDACTED = "[REDACTED]"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_SECRET_SHAPES = re.compile(
    "|".join(
        [
            # A PEM private key; in JSON its newlines are written as \n.
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
            # A JWT: base64url header and payload, both JSON objects ("eyJ").
            r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
            # GitHub tokens: installation (ghs_), OAuth, user and fine-grained.
            r"\bgh[opsur]_[A-Za-z0-9]{20,}",
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"(?<=[Bb]earer )[^\s\"',}]+",
        ]
    ),
    re.DOTALL,
)


class SecretScrubber:
    """Replace secrets in a rendered log line by ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = set()
        for secret in secrets:
            # A PEM key spans lines; each line of its body is secret on its own.
            for part in [secret, *secret.splitlines()]:
                part = part.strip()
                if len(part) >= MIN_SECRET_LENGTH and not part.startswith("-----"):
                    values.add(part)
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        line = _SECRET_SHAPES.sub(REDACTED, line)
        for value in self._values:
            line = line.replace(value, REDACTED)

        return line


def scrubbed(
    renderer: structlog.types.Processor, scrub: SecretScrubber
) -> structlog.types.Processor:
    """Wrap ``renderer`` so that every line it renders passes through ``scrub``."""

    def render(logger: Any, method_name: str, event_dict: Any) -> str:
        return scrub(str(renderer(logger, method_name, event_dict)))

    return render


def configure_logging(
    log_format: str = "json",
    level: str = "info",
    *,
    secrets: Iterable[str] = (),
) -> None:
    """Send structlog and standard-library logs to stdout in ``log_format``.

    ``secrets`` are the configured credentials, scrubbed from every line.
    """
    renderer: structlog.types.Processor
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    renderer = scrubbed(renderer, SecretScrubber(secrets))

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Standard-library records carry exc_info as a tuple; render the
                # traceback as text, or the JSON line shows no stack.
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries log their internals at info, so only their warnings are shown
    # unless LOG_LEVEL is debug.
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
