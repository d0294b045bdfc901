"""Webhook deliveries from GitHub: signature check, routing, bookkeeping.

The raw body's ``X-Hub-Signature-256`` is checked in constant time before anything
else is read. Verified deliveries are routed by ``X-GitHub-Event`` to the handler
registered for that event (``handlers/``), and every routed delivery is stored with
its GUID, event, outcome and duration. Responses are short JSON for an admin reading
GitHub's delivery log.

Each delivery gets a response within GitHub's 10-second window: the handler runs
on its own thread under a time budget, and if it has not finished when the budget
is spent the response is 503, so the delivery shows as failed and can be
redelivered. Two attempts of one delivery (the same GUID) are never handled at
once: the second gets a 409.
"""

import contextvars
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from structlog.contextvars import bound_contextvars

from github_app.deadlines import time_budget
from github_app.queries import QueryError

logger = structlog.get_logger(__name__)

bp = Blueprint("webhooks", __name__)

SIGNATURE_PREFIX = "sha256="
#: GitHub caps webhook payloads at 25 MiB.
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024
#: Maximum seconds the app takes to respond to a delivery. GitHub fails a delivery
#: with no response within 10 s; the rest of that window covers the network.
# https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks#respond-within-10-seconds
DEFAULT_TIME_BUDGET = 9.0
#: A claim on a delivery older than this was left by a worker that stopped.
DELIVERY_CLAIM_TIMEOUT = timedelta(seconds=60)
#: GUIDs are UUIDs; event names are lowercase words such as ``pull_request``.
GUID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")
EVENT_PATTERN = re.compile(r"^[a-z_]{1,50}$")


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
    """The result of handling a delivery, as shown in GitHub's delivery log."""

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


def _read_delivery() -> Delivery | tuple[Response, int]:
    """Check the request and return the delivery, or the error response."""
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

    if not GUID_PATTERN.match(guid) or not EVENT_PATTERN.match(event):
        return _error(
            400,
            "invalid_header",
            "X-GitHub-Delivery must be a GUID of at most 64 letters, digits and "
            "hyphens, and X-GitHub-Event an event name such as push.",
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
    except (ValueError, RecursionError):
        return _error(400, "invalid_json", "The payload is not valid JSON.")

    if not isinstance(payload, dict):
        return _error(400, "invalid_json", "The payload is not a JSON object.")

    return Delivery(guid=guid, event=event, payload=payload)


@bp.post("/api/github/webhooks")
def receive() -> tuple[Response, int]:
    started = time.monotonic()
    delivery = _read_delivery()
    if not isinstance(delivery, Delivery):
        return delivery

    store = current_app.config["STORE"]
    budget = current_app.config.get("WEBHOOK_TIME_BUDGET", DEFAULT_TIME_BUDGET)
    # structlog keeps each line's message under "event", so the GitHub event
    # name needs a key of its own.
    with bound_contextvars(
        delivery_id=delivery.guid, github_event=delivery.event, repo=delivery.repo
    ):
        finished = True
        if store.claim_delivery(delivery.guid, stale_after=DELIVERY_CLAIM_TIMEOUT):
            remaining = max(0.1, budget - (time.monotonic() - started))
            outcome, finished = _handle_in_time(delivery, remaining)
        else:
            outcome = Outcome(
                409,
                "in_progress",
                f"Delivery {delivery.guid} is already being handled by another "
                "attempt; this attempt did nothing.",
            )
            finished = False  # The claim belongs to the other attempt.

        duration_ms = int((time.monotonic() - started) * 1000)
        _record(store, delivery, outcome, duration_ms)
        if finished:
            store.release_delivery(delivery.guid)

    body_out = {"outcome": outcome.outcome, "message": outcome.message}
    body_out.update(outcome.details)
    return _answer(outcome.status, body_out)


def _record(store: Any, delivery: Delivery, outcome: Outcome, duration_ms: int) -> None:
    action = delivery.action
    repo = delivery.repo
    store.record_delivery(
        guid=delivery.guid,
        event=delivery.event,
        # Payload values are cut to their column sizes rather than trusted.
        action=action[:50] if action else None,
        repo=repo[:200] if repo else None,
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
        sha=outcome.details.get("sha"),
        duration_ms=duration_ms,
    )


class _Attempt:
    """One delivery handled on its own thread, with a response in time or a 503."""

    def __init__(self, delivery: Delivery, store: Any) -> None:
        self.delivery = delivery
        self.store = store
        self.outcome: Outcome | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False

    def run(self) -> None:
        outcome = Outcome(500, "error", "The app failed to handle this delivery.")
        try:
            outcome = _handle(self.delivery)
        finally:
            with self._lock:
                self.outcome = outcome
                self._done.set()
                abandoned = self._abandoned

            if abandoned:
                self._finish_late(outcome)

    def _finish_late(self, outcome: Outcome) -> None:
        # The 503 response was recorded already; free the GUID for a redelivery.
        try:
            self.store.release_delivery(self.delivery.guid)
        except Exception:
            # No caller waits for this thread, and the claim expires on its own.
            logger.exception("Could not release delivery claim")

        logger.warning(
            "Finished delivery after responding",
            status_code=outcome.status,
            outcome=outcome.outcome,
            query_id=outcome.query_id,
        )

    def wait(self, seconds: float) -> Outcome | None:
        """Return the outcome if ready within ``seconds``, else give up on it."""
        self._done.wait(seconds)
        with self._lock:
            if self.outcome is None:
                self._abandoned = True
            return self.outcome


def _handle_in_time(delivery: Delivery, seconds: float) -> tuple[Outcome, bool]:
    """Handle ``delivery`` within ``seconds``; return its outcome and whether it did.

    The handler runs on a daemon thread under a time budget that clients use to
    cut their timeouts and retries short. When the budget is spent first, the
    thread is left to finish (its GitHub or Job Server call may still succeed)
    and the response is 503; a redelivery then finds any job request it created.
    """
    attempt = _Attempt(delivery, current_app.config["STORE"])
    with time_budget(seconds):
        context = contextvars.copy_context()

    thread = threading.Thread(
        target=context.run,
        args=(attempt.run,),
        name=f"delivery-{delivery.guid}",
        daemon=True,
    )
    thread.start()
    outcome = attempt.wait(seconds)
    if outcome is not None:
        return outcome, True

    logger.warning("Delivery not finished in time", budget_seconds=seconds)
    message = (
        f"The app did not finish within {seconds:.0f} s because GitHub or Job "
        "Server is slow, so no job request is confirmed. Redeliver this delivery "
        "later; it will not create a second job request."
    )
    return Outcome(503, "timed_out", message), False


def _handle(delivery: Delivery) -> Outcome:
    try:
        return router.dispatch(delivery)
    except QueryError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        query_id = details.get("id")
        body = {"query_id": query_id} if query_id else {}
        if exc.status == 422:
            logger.warning(
                "Security: rejected tag event", reason=exc.message, **details
            )
            return Outcome(422, "rejected", exc.message, body, query_id)

        logger.warning("Delivery failed", status_code=exc.status, reason=exc.message)
        return Outcome(exc.status, "failed", exc.message, body, query_id)
    except (AttributeError, KeyError, TypeError) as exc:
        # A signed payload whose fields have the wrong shape (a string where
        # GitHub sends an object) is the sender's error, not the app's.
        logger.warning("Malformed delivery payload", error=repr(exc))
        return Outcome(
            400, "invalid_payload", "A field of the payload has an unexpected shape."
        )
    except Exception:
        logger.exception("Delivery handler failed")
        return Outcome(500, "error", "The app failed to handle this delivery.")


def current_service() -> Any:
    """Return the app's ``QueryService`` (typed loosely to avoid an import cycle)."""
    return current_app.extensions["query_service"]
