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
    """Failed sign-ins in a sliding window, per account name and per client address.

    An attempt is counted as a failure from the moment it is let through (``attempt``)
    until it is known to have succeeded (``succeeded``): parallel guesses cannot all pass
    the check before the first of them is counted."""

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
        self._swept = clock()

    @staticmethod
    def _keys(name: str, client: str) -> tuple[str, str]:
        return f"name:{name.lower()}", f"client:{client}"

    def _recent(self, key: str, now: float) -> deque[float]:
        seen = self._failures.get(key)
        if seen is None:
            return deque()
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if not seen:
            del self._failures[key]
        return seen

    def _sweep(self, now: float) -> None:
        """Forget names and addresses with no failure left in the window."""
        if now - self._swept >= self.window_s:
            for key in list(self._failures):
                self._recent(key, now)
            self._swept = now

    def attempt(self, name: str, client: str) -> float:
        """Let one sign-in through and count it as failed until told otherwise (0), or
        the seconds until one would be let through."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            wait = 0.0
            for key, limit in zip(self._keys(name, client), (self.per_name, self.per_client),
                                  strict=True):  # fmt: skip
                seen = self._recent(key, now)
                if len(seen) >= limit:
                    wait = max(wait, seen[len(seen) - limit] + self.window_s - now)
            if wait > 0:
                return wait
            for key in self._keys(name, client):
                self._failures.setdefault(key, deque()).append(now)
            return 0.0

    def succeeded(self, name: str, client: str) -> None:
        """The attempt was right: the name's failures are forgotten, and the attempt is
        no failure of the address."""
        name_key, client_key = self._keys(name, client)
        with self._lock:
            self._failures.pop(name_key, None)
            seen = self._failures.get(client_key)
            if seen:
                seen.pop()  # this attempt's (the latest) entry
                if not seen:
                    del self._failures[client_key]


def sign_in(
    hub: Hub, limiter: LoginLimiter, name: str, password: str, *, client: str
) -> tuple[str, TokenInfo]:
    """A one-day token for ``name`` if ``password`` is theirs; ``TooManyAttempts`` when
    this name or this client failed too often lately (the password is then not even
    tried, so that guessing goes no faster)."""
    wait = limiter.attempt(name, client)
    if wait > 0:
        raise TooManyAttempts(
            f"too many failed sign-ins for this account or from this address; "
            f"try again in {math.ceil(wait)} s",
            hint="check the name and password; an administrator can reset a password "
            "with hdh user password",
            retry_after=math.ceil(wait),
        )
    principal = LocalIdentity(hub).authenticate_password(name, password)
    limiter.succeeded(name, client)
    return create_token(hub, principal.name, actor=principal.actor, days=SESSION_DAYS, label=LABEL)
