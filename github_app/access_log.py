"""JSON logging for gunicorn: its access log and its own messages.

``gunicorn.conf.py`` selects ``JsonLogger`` unless ``LOG_FORMAT=console``. Each
request becomes one JSON line with the same ``timestamp``, ``level`` and
``event`` keys as the app's structlog events. The only request headers logged
are the request id, the user agent and ``X-Forwarded-For``, so credentials in
``Authorization`` do not reach the log. The query string is left out as well.
"""

import json
from datetime import UTC, datetime
from typing import Any

import structlog
from gunicorn.glogging import Logger

from github_app.logs import SecretScrubber, scrubbed


def _timestamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class JsonLogger(Logger):  # type: ignore[misc]
    """A gunicorn logger that writes JSON lines."""

    #: The master process has not read the app's settings, so only secret
    #: shapes (keys, JWTs, tokens) are scrubbed here, not configured values.
    _scrub = SecretScrubber()

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                scrubbed(structlog.processors.JSONRenderer(), self._scrub),
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter)

    def access(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> None:
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict):
            return

        headers = {name.lower(): value for name, value in req.headers}
        record = {
            "timestamp": _timestamp(),
            "level": "info",
            "logger": "gunicorn.access",
            "event": "Served request",
            "remote_addr": environ.get("REMOTE_ADDR"),
            "forwarded_for": headers.get("x-forwarded-for"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status_code": resp.status_code,
            "response_bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "request_id": headers.get("x-request-id"),
            "user_agent": headers.get("user-agent"),
        }
        try:
            self.access_log.info(self._scrub(json.dumps(record)))
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.error("Failed to write the access log line", exc_info=True)
