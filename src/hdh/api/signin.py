"""Signing in with a name and a password, for the web pages (a session cookie) and the
API (``POST /api/v1/login``): both get a token of one day labelled ``sign-in``, which
signing out revokes. Repeated failures are slowed down: after ``PER_NAME`` failures for
one name, or ``PER_CLIENT`` from one address, within ``WINDOW_S`` seconds, sign-ins for
that name or from that address are refused (HTTP 429) until the oldest failure leaves
the window. The limits live in the serving process."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from hdh.hub import Hub
from hdh.identity.service import (
    AuthenticationFailed,
    LocalIdentity,
    TokenInfo,
    TooManyAttempts,
    create_token,
)

PER_NAME = 5
PER_CLIENT = 20
WINDOW_S = 300.0
SESSION_DAYS = 1
LABEL = "sign-in"


class LoginLimiter:
    """Failed sign-ins in a sliding window, per account name and per client address."""

    def __init__(
        self,
        *,
        per_name: int = PER_NAME,
        per_client: int = PER_CLIENT,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_name, self.per_client, self.window_s = per_name, per_client, window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if not seen:
            del self._failures[key]  # the table holds only keys with recent failures
            return deque()
        return seen

    def wait_s(self, name: str, client: str) -> float:
        """Seconds until a sign-in for ``name`` from ``client`` is accepted again (0: now)."""
        now = self._clock()
        with self._lock:
            wait = 0.0
            for key, limit in ((f"name:{name.lower()}", self.per_name),
                               (f"client:{client}", self.per_client)):  # fmt: skip
                seen = self._recent(key, now)
                if len(seen) >= limit:
                    wait = max(wait, seen[len(seen) - limit] + self.window_s - now)
            return wait

    def failed(self, name: str, client: str) -> None:
        now = self._clock()
        with self._lock:
            for key in (f"name:{name.lower()}", f"client:{client}"):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(f"name:{name.lower()}", None)


def sign_in(
    hub: Hub, limiter: LoginLimiter, name: str, password: str, *, client: str
) -> tuple[str, TokenInfo]:
    """A one-day token for ``name`` if ``password`` is theirs; ``TooManyAttempts`` when
    this name or this client failed too often lately (the password is then not even
    tried, so that guessing goes no faster)."""
    wait = limiter.wait_s(name, client)
    if wait > 0:
        raise TooManyAttempts(
            f"too many failed sign-ins for this account or from this address; "
            f"try again in {math.ceil(wait)} s",
            hint="check the name and password; an administrator can reset a password "
            "with hdh user password",
        )
    try:
        principal = LocalIdentity(hub).authenticate_password(name, password)
    except AuthenticationFailed:
        limiter.failed(name, client)
        raise
    limiter.succeeded(name)
    return create_token(hub, principal.name, actor=principal.actor, days=SESSION_DAYS, label=LABEL)
