"""Answers to catalogue reads, and tokens found good, kept until the hub next changes.

Every change the hub makes is recorded in the audit trail in the same transaction, so
the number of the latest audit event says whether anything may have changed since an
answer was made: an answer is served again only while that number is the same. What is
kept is what anyone allowed to read the catalogue would be answered (the callers check
``catalog.read`` first); nothing of a project's data is kept here.

The server reads that number once for all the requests that arrived while the previous
read was under way (:class:`ChangeClock`): each request still sees a number read after
it arrived, so a change committed before a request is never hidden from it, and a burst
of requests costs one small read instead of one each. A token found good is trusted
again under the same number (:class:`KnownTokens`): revoking it, disabling its holder or
changing their roles is a recorded change, and its expiry is checked every time."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from hdh import audit
from hdh.hub import Hub
from hdh.identity.service import LAST_USED_STEP, Principal, TokenCheck


def latest_change(hub: Hub) -> int:
    with hub.read() as session:
        return audit.last_change(session)


class _Reads:
    """One event loop's reads: the one callers join next, and one at a time."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.next: asyncio.Future[int] | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # held, or they may be collected


class ChangeClock:
    """The hub's latest change number, read for many requests at once.

    ``now()`` answers a number read after it was called: a caller joins the read that
    starts next, and one read runs at a time, so whoever arrives during a read waits for
    the following one (at most two reads' time) instead of starting their own."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read
        #: Per event loop: a test client may run several.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reads] = (
            weakref.WeakKeyDictionary()
        )

    async def now(self) -> int:
        loop = asyncio.get_running_loop()
        reads = self._loops.get(loop)
        if reads is None:
            reads = self._loops[loop] = _Reads()
        joined = reads.next
        if joined is None:
            joined = reads.next = loop.create_future()
            # Nobody left to tell (every caller gone) is not an error to report.
            joined.add_done_callback(lambda done: done.cancelled() or done.exception())
            task = loop.create_task(self._read_for(joined, reads))
            reads.tasks.add(task)
            task.add_done_callback(reads.tasks.discard)
        return await asyncio.shield(joined)

    async def _read_for(self, joined: asyncio.Future[int], reads: _Reads) -> None:
        async with reads.lock:
            reads.next = None  # from here on, callers join the next read
            try:
                joined.set_result(await run_in_threadpool(self._read))
            except Exception as exc:  # every caller sees why, e.g. the database is down
                joined.set_exception(exc)


class KnownTokens:
    """Tokens found good, trusted again while the hub's change number is the same, the
    token has not expired and its check is less than a minute old (a new check records
    when the token was last used, at most once a minute)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._known: OrderedDict[bytes, tuple[int, TokenCheck, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()  # the token itself is not kept

    def get(self, token: str, now: int) -> Principal | None:
        key = self._key(token)
        with self._lock:
            known = self._known.get(key)
            if known is None:
                return None
            number, check, checked = known
            fresh = (
                number == now
                and time.monotonic() - checked < LAST_USED_STEP.total_seconds()
                and datetime.now(UTC) < check.expires_at
            )
            if not fresh:
                del self._known[key]
                return None
            self._known.move_to_end(key)
            return check.principal

    def put(self, token: str, now: int, check: TokenCheck) -> None:
        """Remember ``check``, made after the change number ``now`` was read."""
        with self._lock:
            self._known[self._key(token)] = (now, check, time.monotonic())
            while len(self._known) > self.size:
                self._known.popitem(last=False)


class ReadCache:
    """The last ``size`` answers, each with the audit number it was made at."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._kept: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        #: One maker per key at a time: a burst of the same question makes it once.
        self._making: dict[Hashable, threading.Lock] = {}

    def kept(self, key: Hashable, now: int) -> bytes | None:
        """The answer kept for ``key`` if nothing changed since it was made."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] >= now:
                self._kept.move_to_end(key)
                return kept[1]
            return None

    def answer(
        self, hub: Hub, key: Hashable, make: Callable[[], bytes], now: int | None = None
    ) -> bytes:
        """The answer for ``key``: kept, or made now. ``now`` is the hub's change number
        read before this call (read here when not given)."""
        if now is None:
            now = latest_change(hub)
        if (kept := self.kept(key, now)) is not None:
            return kept
        with self._lock:
            maker = self._making.setdefault(key, threading.Lock())
        with maker:
            if (kept := self.kept(key, now)) is not None:
                return kept  # another request made it meanwhile
            made = make()  # made after ``now`` was read: at worst newer than its number
            with self._lock:
                self._kept[key] = (now, made)
                self._kept.move_to_end(key)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
                self._making.pop(key, None)
        return made
