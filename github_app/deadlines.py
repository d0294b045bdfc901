"""A time budget shared by every outbound call made for one piece of work.

GitHub fails a webhook delivery with no response within 10 seconds, so the
work done for a delivery runs under ``time_budget(seconds)``. Clients read
``time_left()`` to shorten their timeouts and to stop retrying once the budget
is spent. The budget is a context variable: it follows the work into threads
started with ``contextvars.copy_context()`` and is absent everywhere else.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Give the work inside the block ``seconds`` from now to finish."""
    if seconds <= 0:
        raise ValueError(f"A time budget must be positive, got {seconds!r} s.")

    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Return the seconds left in the current budget (0 when spent), or None."""
    deadline = _deadline.get()
    if deadline is None:
        return None

    return max(0.0, deadline - time.monotonic())


def limit_timeout(timeout: float) -> float:
    """Return ``timeout`` shortened to the time left in the current budget.

    Returns 0 when the budget is spent, so callers must check for it before
    making a call.
    """
    left = time_left()
    return timeout if left is None else min(timeout, left)
