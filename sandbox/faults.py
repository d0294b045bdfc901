"""Latency, injected error responses and hooks for the GitHub stand-in.

Endpoints are named as ``ApiCall.endpoint`` names them, for example
``"PATCH /repos/{owner}/{repo}/git/refs/{ref}"``. All state is guarded by one
lock because the server handles each request on its own thread.
"""

from __future__ import annotations

import dataclasses
import http
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.api import Reply

#: A hook receives the endpoint and the request's path parameters.
Hook = Callable[[str, dict[str, str]], None]


@dataclasses.dataclass
class Fault:
    """An error response planned for some calls of one endpoint."""

    endpoint: str
    status: int
    skip: int
    remaining: int
    headers: dict[str, str]
    body: Any
    after_handling: bool

    def reply(self) -> Reply:
        """Return the planned response."""
        body = self.body
        if body is None:
            body = {"message": http.HTTPStatus(self.status).phrase}

        return Reply(self.status, body, dict(self.headers))


@dataclasses.dataclass
class _HookEntry:
    callback: Hook
    endpoint: str | None
    after: bool
    once: bool


class Faults:
    """The latency, failures and hooks planned for a set of known endpoints."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self._endpoints = frozenset(endpoints)
        self._latency: dict[str | None, float] = {}
        self._faults: list[Fault] = []
        self._hooks: list[_HookEntry] = []
        self._lock = threading.Lock()

    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        """Add ``seconds`` to every call, or only to ``endpoint`` calls."""
        if endpoint is not None:
            self._check_endpoint(endpoint)

        with self._lock:
            self._latency[endpoint] = seconds

    def latency_for(self, endpoint: str | None) -> float:
        """Return the seconds to add to a call of ``endpoint``."""
        with self._lock:
            extra = self._latency.get(endpoint, 0.0) if endpoint else 0.0
            return self._latency.get(None, 0.0) + extra

    def add_fault(self, fault: Fault) -> None:
        """Plan ``fault``, counting calls of its endpoint from now."""
        self._check_endpoint(fault.endpoint)
        if fault.skip < 0 or fault.remaining < 1:
            raise ValueError(
                f"A fault needs nth >= 1 and count >= 1, got nth={fault.skip + 1} "
                f"and count={fault.remaining}."
            )

        with self._lock:
            self._faults.append(fault)

    def take_fault(self, endpoint: str) -> Fault | None:
        """Count one call of ``endpoint`` and return the fault due for it, if any."""
        with self._lock:
            chosen = None
            for fault in self._faults:
                if fault.endpoint != endpoint:
                    continue

                if fault.skip > 0:
                    fault.skip -= 1
                elif chosen is None:
                    fault.remaining -= 1
                    chosen = fault

            self._faults = [fault for fault in self._faults if fault.remaining > 0]
            return chosen

    def add_hook(
        self, callback: Hook, endpoint: str | None, *, after: bool, once: bool
    ) -> None:
        """Register ``callback`` for every endpoint, or only ``endpoint``."""
        if endpoint is not None:
            self._check_endpoint(endpoint)

        with self._lock:
            self._hooks.append(_HookEntry(callback, endpoint, after, once))

    def run_hooks(self, endpoint: str, params: dict[str, str], *, after: bool) -> None:
        """Call the hooks due before (or ``after``) a call of ``endpoint``."""
        with self._lock:
            due = [
                hook
                for hook in self._hooks
                if hook.after == after and hook.endpoint in (None, endpoint)
            ]
            self._hooks = [
                hook
                for hook in self._hooks
                if not (hook.once and any(hook is ran for ran in due))
            ]

        # Hooks run outside the lock, so that they may call the API themselves.
        for hook in due:
            hook.callback(endpoint, dict(params))

    def clear(self) -> None:
        """Remove every latency, planned fault and hook."""
        with self._lock:
            self._latency.clear()
            self._faults.clear()
            self._hooks.clear()

    def _check_endpoint(self, endpoint: str) -> None:
        if endpoint not in self._endpoints:
            raise ValueError(
                f"Unknown endpoint {endpoint!r}; expected one of "
                f"{sorted(self._endpoints)}."
            )
