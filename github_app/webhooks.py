"""Webhook deliveries from GitHub: signature check, routing, bookkeeping.

The raw body's ``X-Hub-Signature-256`` is checked in constant time before anything
else is read. Verified deliveries are routed by ``X-GitHub-Event`` to the handler
registered for that event (``handlers/``), and every routed delivery is stored with
its GUID, event, outcome and duration. Answers are short JSON for an admin reading
GitHub's delivery log.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from structlog.contextvars import bound_contextvars

from github_app.queries import QueryError

logger = structlog.get_logger(__name__)

bp = Blueprint("webhooks", __name__)

SIGNATURE_PREFIX = "sha256="
#: GitHub caps webhook payloads at 25 MiB.
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024


class SignatureError(Exception):
    """The delivery's signature is missing, malformed or does not match."""


def sign(body: bytes, secret: str) -> str:
    """Return the ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(body: bytes, header: str | None, secrets: Sequence[str]) -> None:
    """Check ``header`` against the HMAC-SHA256 of the raw ``body`` bytes.

    Any of ``secrets`` may match, so a secret can be rotated without downtime.
    https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries

    Raises:
        SignatureError: the header is missing, not ``sha256=<hex>``, or matches no
            secret.
    """
    if not header:
        raise SignatureError("The X-Hub-Signature-256 header is missing.")

    if not header.startswith(SIGNATURE_PREFIX):
        raise SignatureError("The X-Hub-Signature-256 header is not sha256=<hex>.")

    matched = False
    for secret in secrets:
        # Compare against every secret, so timing does not reveal which matched.
        matched |= hmac.compare_digest(sign(body, secret), header)

    if not matched:
        raise SignatureError(
            "The signature does not match: check that GITHUB_WEBHOOK_SECRET equals "
            "the webhook secret in the GitHub App's settings."
        )


@dataclass
class Outcome:
    """What a handler did with a delivery, as told to GitHub's delivery log."""

    status: int
    outcome: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    query_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: its headers and parsed payload."""

    guid: str
    event: str
    payload: dict[str, Any]

    @property
    def action(self) -> str | None:
        action = self.payload.get("action")
        return action if isinstance(action, str) else None

    @property
    def repo(self) -> str | None:
        repository = self.payload.get("repository") or {}
        name = repository.get("full_name") if isinstance(repository, dict) else None
        return name if isinstance(name, str) else None


Handler = Callable[[Delivery], Outcome]


class Router:
    """Map event names to handler functions."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, event: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            if event in self._handlers:
                raise ValueError(f"A handler for {event!r} is already registered.")
            self._handlers[event] = handler
            return handler

        return decorator

    @property
    def events(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def dispatch(self, delivery: Delivery) -> Outcome:
        handler = self._handlers.get(delivery.event)
        if handler is None:
            return Outcome(
                202, "ignored", f"The app does not handle {delivery.event} events."
            )

        return handler(delivery)


router = Router()

#: Events GitHub sends to every App whether or not the manifest subscribes to them.
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#installation
ALWAYS_DELIVERED = frozenset({"ping", "installation"})


def _answer(status: int, body: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(body), status


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    return _answer(status, {"error": {"code": code, "message": message}})


@bp.post("/api/github/webhooks")
def receive() -> tuple[Response, int]:
    started = time.monotonic()
    if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
        return _error(413, "too_large", "The payload is larger than 25 MiB.")

    body = request.get_data(cache=False)
    if len(body) > MAX_PAYLOAD_BYTES:
        return _error(413, "too_large", "The payload is larger than 25 MiB.")

    try:
        verify_signature(
            body,
            request.headers.get("X-Hub-Signature-256"),
            current_app.config["SETTINGS"].webhook_secrets,
        )
    except SignatureError as exc:
        logger.warning("Rejected webhook signature", reason=str(exc))
        return _error(401, "bad_signature", str(exc))

    guid = request.headers.get("X-GitHub-Delivery", "").strip()
    event = request.headers.get("X-GitHub-Event", "").strip()
    if not guid or not event:
        return _error(
            400,
            "missing_header",
            "The X-GitHub-Delivery and X-GitHub-Event headers are required.",
        )

    if request.mimetype != "application/json":
        return _error(
            415,
            "unsupported_media_type",
            "Deliveries must be application/json: set the webhook content type to "
            "JSON in the GitHub App's settings.",
        )

    try:
        payload = json.loads(body)
    except ValueError:
        return _error(400, "invalid_json", "The payload is not valid JSON.")

    if not isinstance(payload, dict):
        return _error(400, "invalid_json", "The payload is not a JSON object.")

    delivery = Delivery(guid=guid, event=event, payload=payload)
    with bound_contextvars(delivery_id=guid, event=event, repo=delivery.repo):
        outcome = _handle(delivery)
        duration_ms = int((time.monotonic() - started) * 1000)
        current_app.config["STORE"].record_delivery(
            guid=guid,
            event=event,
            action=delivery.action,
            repo=delivery.repo,
            query_id=outcome.query_id,
            status_code=outcome.status,
            outcome=outcome.outcome,
            message=outcome.message,
            duration_ms=duration_ms,
        )
        logger.info(
            "Handled delivery",
            status_code=outcome.status,
            outcome=outcome.outcome,
            query_id=outcome.query_id,
            duration_ms=duration_ms,
        )

    body_out = {"outcome": outcome.outcome, "message": outcome.message}
    body_out.update(outcome.details)
    return _answer(outcome.status, body_out)


def _handle(delivery: Delivery) -> Outcome:
    try:
        return router.dispatch(delivery)
    except QueryError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        outcome = "refused" if exc.status == 422 else "failed"
        if exc.status == 422:
            logger.warning("Security: refused tag event", reason=exc.message, **details)
        return Outcome(exc.status, outcome, exc.message, details, details.get("id"))
    except Exception:
        logger.exception("Delivery handler failed")
        return Outcome(500, "error", "The app failed to handle this delivery.")


def current_service() -> Any:
    """Return the app's ``QueryService`` (typed loosely to avoid an import cycle)."""
    return current_app.extensions["query_service"]
