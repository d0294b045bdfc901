"""Signed webhook delivery and the App's delivery log.

GitHub sends webhooks asynchronously and keeps a log of every attempt, which
an App reads and redelivers through ``/app/hook/deliveries``. This module
does both: each send runs on its own thread, and every finished attempt is
recorded with its request and response as the REST API shows them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from sandbox.payloads import isoformat

#: GitHub fails a delivery whose receiver has not responded within 10 seconds.
DELIVERY_TIMEOUT = 10.0
#: GitHub keeps an App's delivery log for 3 days.
# https://docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks
RETENTION = datetime.timedelta(days=3)


@dataclasses.dataclass
class Delivery:
    """One delivery attempt, in the fields of GitHub's ``hook-delivery``."""

    id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    url: str
    redelivery: bool
    request_headers: dict[str, str]
    body: bytes
    delivered_at: datetime.datetime
    duration: float = 0.0
    status_code: int = 0
    status: str = "pending"
    response_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    response_body: str = ""

    @property
    def payload(self) -> dict[str, Any]:
        """Return the decoded JSON payload that was sent."""
        result: dict[str, Any] = json.loads(self.body)
        return result

    @property
    def succeeded(self) -> bool:
        """Return whether the receiver responded with a 2xx status."""
        return 200 <= self.status_code < 300

    def item(self) -> dict[str, Any]:
        """Return the ``hook-delivery-item`` object of the delivery list."""
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": isoformat(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": round(self.duration, 3),
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": None,
        }

    def detail(self) -> dict[str, Any]:
        """Return the ``hook-delivery`` object with request and response."""
        return self.item() | {
            "url": self.url,
            "request": {"headers": self.request_headers, "payload": self.payload},
            "response": {
                "headers": self.response_headers,
                "payload": self.response_body,
            },
        }


def sign(secret: str, body: bytes, algorithm: str = "sha256") -> str:
    """Return the ``X-Hub-Signature-256`` (or, for sha1, ``X-Hub-Signature``) value."""
    digest = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return f"{algorithm}={digest}"


class WebhookSender:
    """Send signed deliveries to ``url`` on background threads and log them."""

    def __init__(
        self,
        *,
        url: str | None,
        secret: str,
        hook_id: int,
        target_id: str,
        timeout: float = DELIVERY_TIMEOUT,
    ) -> None:
        self.url = url
        self.secret = secret
        self.hook_id = hook_id
        self.target_id = target_id
        self.timeout = timeout
        #: Seconds to wait before sending, by event name ("" for every event).
        self.delays: dict[str, float] = {}
        #: URL for one event name instead of ``url``, e.g. to reach another worker.
        self.event_urls: dict[str, str] = {}
        self._deliveries: dict[int, Delivery] = {}
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._idle = threading.Condition()
        self._held: list[Delivery] | None = None

    @property
    def deliveries(self) -> list[Delivery]:
        """Return the finished deliveries of the last 3 days, oldest first."""
        cutoff = datetime.datetime.now(datetime.UTC) - RETENTION
        with self._idle:
            kept = [d for d in self._deliveries.values() if d.delivered_at >= cutoff]
            return sorted(kept, key=lambda item: item.id)

    def hold(self) -> None:
        """Keep new background deliveries back until ``release()``.

        Held deliveries count as in flight, so ``wait_idle`` waits for them.
        """
        with self._idle:
            if self._held is None:
                self._held = []

    def release(self, select: Callable[[Delivery], bool] | None = None) -> int:
        """Send the held deliveries, all at the same moment; return how many.

        Each delivery has its own thread, and the threads wait for one another
        at a barrier before posting, so two workers receive them together.
        With ``select``, only the deliveries it accepts are sent and the rest
        stay held.
        """
        with self._idle:
            pending = self._held or []
            to_send = [d for d in pending if select is None or select(d)]
            still_held = [d for d in pending if d not in to_send]
            self._held = still_held if select is not None else None

        if not to_send:
            return 0

        barrier = threading.Barrier(len(to_send))
        for delivery in to_send:
            self._spawn(delivery, barrier)

        return len(to_send)

    def age(self, delta: datetime.timedelta) -> None:
        """Move every finished delivery ``delta`` into the past."""
        with self._idle:
            for delivery in self._deliveries.values():
                delivery.delivered_at -= delta

    def get(self, delivery_id: int) -> Delivery | None:
        """Return a finished delivery of the last 3 days by its numeric id."""
        cutoff = datetime.datetime.now(datetime.UTC) - RETENTION
        with self._idle:
            delivery = self._deliveries.get(delivery_id)

        if delivery is None or delivery.delivered_at < cutoff:
            return None

        return delivery

    def send(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        wait: bool = False,
        secret: str | None = None,
        body: bytes | None = None,
    ) -> Delivery | None:
        """Send ``payload`` as a new delivery with a fresh GUID.

        Without ``wait`` the send happens on a new thread and this returns
        None at once. With ``wait`` it returns the finished delivery.
        ``secret`` overrides the signing secret, to send a wrongly signed
        delivery. ``body`` sends those exact bytes instead of ``payload``
        encoded by ``json.dumps``. Nothing is sent while ``url`` is None.
        """
        if body is None:
            body = json.dumps(payload).encode()
        guid = str(uuid.uuid4())
        return self._start(
            event, body, guid, redelivery=False, wait=wait, secret=secret
        )

    def redeliver(self, delivery_id: int) -> bool:
        """Send an earlier delivery again with the same GUID and body.

        Returns False when there is no such delivery. The new attempt gets its
        own numeric id and ``redelivery: true``, as on GitHub.
        """
        original = self.get(delivery_id)
        if original is None:
            return False

        self._start(
            original.event, original.body, original.guid, redelivery=True, wait=False
        )
        return True

    def wait_idle(self, timeout: float) -> None:
        """Block until no delivery is in flight.

        Raises:
            TimeoutError: deliveries were still in flight after ``timeout`` seconds.
        """
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(
                    f"{self._in_flight} webhook deliveries were still in flight "
                    f"after {timeout} s."
                )

    def _start(
        self,
        event: str,
        body: bytes,
        guid: str,
        *,
        redelivery: bool,
        wait: bool,
        secret: str | None = None,
    ) -> Delivery | None:
        url = self.event_urls.get(event, self.url)
        if url is None:
            return None

        payload = json.loads(body)
        headers = {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/sandbox",
            "X-GitHub-Delivery": guid,
            "X-GitHub-Event": event,
            "X-GitHub-Hook-ID": str(self.hook_id),
            "X-GitHub-Hook-Installation-Target-ID": self.target_id,
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature": sign(secret or self.secret, body, "sha1"),
            "X-Hub-Signature-256": sign(secret or self.secret, body),
        }
        delivery = Delivery(
            id=next(self._ids),
            guid=guid,
            event=event,
            action=payload.get("action"),
            installation_id=(payload.get("installation") or {}).get("id"),
            repository_id=(payload.get("repository") or {}).get("id"),
            url=url,
            redelivery=redelivery,
            request_headers=headers,
            body=body,
            delivered_at=datetime.datetime.now(datetime.UTC),
        )
        with self._idle:
            self._in_flight += 1

        if wait:
            self._deliver(delivery)
            return delivery

        with self._idle:
            if self._held is not None:
                self._held.append(delivery)
                return None

        self._spawn(delivery)
        return None

    def _spawn(
        self, delivery: Delivery, barrier: threading.Barrier | None = None
    ) -> None:
        thread = threading.Thread(
            target=self._deliver,
            args=(delivery, barrier),
            name=f"webhook-{delivery.id}",
        )
        thread.daemon = True
        thread.start()

    def _deliver(
        self, delivery: Delivery, barrier: threading.Barrier | None = None
    ) -> None:
        try:
            time.sleep(self.delays.get(delivery.event, self.delays.get("", 0.0)))
            if barrier is not None:
                barrier.wait()
            delivery.delivered_at = datetime.datetime.now(datetime.UTC)
            started = time.monotonic()
            self._post(delivery)
            delivery.duration = time.monotonic() - started
        finally:
            with self._idle:
                self._deliveries[delivery.id] = delivery
                self._in_flight -= 1
                self._idle.notify_all()

    def _post(self, delivery: Delivery) -> None:
        try:
            response = requests.post(
                delivery.url,
                data=delivery.body,
                headers=delivery.request_headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            delivery.status = "timed out"
            return
        except requests.RequestException as exc:
            delivery.status = f"failed to connect to host: {type(exc).__name__}"
            return

        with response:
            delivery.status_code = response.status_code
            delivery.response_headers = dict(response.headers)
            delivery.response_body = response.text

        if delivery.succeeded:
            delivery.status = "OK"
        else:
            delivery.status = f"Invalid HTTP Response: {response.status_code}"
