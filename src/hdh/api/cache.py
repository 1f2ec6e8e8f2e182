"""Answers to catalogue reads, kept until the hub next changes.

Every change the hub makes is recorded in the audit trail in the same transaction, so
the number of the latest audit event says whether anything may have changed since an
answer was made: an answer is served again only while that number is the same. What is
kept is what anyone allowed to read the catalogue would be answered (the callers check
``catalog.read`` first); nothing of a project's data is kept here."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from hdh import audit
from hdh.hub import Hub


class ReadCache:
    """The last ``size`` answers, each with the audit number it was made at."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._kept: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        #: One maker per key at a time: a burst of the same question makes it once.
        self._making: dict[Hashable, threading.Lock] = {}

    def _fresh(self, key: Hashable, now: int) -> bytes | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] >= now:
                self._kept.move_to_end(key)
                return kept[1]
            return None

    def answer(self, hub: Hub, key: Hashable, make: Callable[[], bytes]) -> bytes:
        with hub.read() as session:
            now = audit.last_seq(session)
        if (kept := self._fresh(key, now)) is not None:
            return kept
        with self._lock:
            maker = self._making.setdefault(key, threading.Lock())
        with maker:
            if (kept := self._fresh(key, now)) is not None:
                return kept  # another request made it meanwhile
            made = make()  # made after ``now`` was read: at worst newer than its number
            with self._lock:
                self._kept[key] = (now, made)
                self._kept.move_to_end(key)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
                self._making.pop(key, None)
        return made
