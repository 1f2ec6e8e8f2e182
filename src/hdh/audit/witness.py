"""The chain head witness: the latest event's number and hash, kept outside the database.

The database alone cannot prove that its last events were not removed: whoever can
delete rows can also rewind the chain state. The witness is a small JSON file in the
hub folder (later also copied to storage) that only ever moves forward. ``hdh audit
verify`` checks that the chain in the database still reaches it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hdh.errors import IntegrityError


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


class FileWitness:
    """``audit/head.json`` in the hub folder, advanced after each commit that added events."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Head | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Head(seq=int(data["seq"]), hash=str(data["hash"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"the audit head witness {self.path} is unreadable ({exc})",
                hint="restore it from a backup; without it a removed tail of events cannot "
                "be detected",
            ) from None

    def create(self, head: Head) -> None:
        """Write the first head (``hdh init``). Refuses to replace an existing witness."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            self._dump(fh, head)

    @staticmethod
    def _dump(fh: IO[str], head: Head) -> None:
        json.dump({"seq": head.seq, "hash": head.hash}, fh)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())

    def advance(self, head: Head, still_in_chain: Callable[[Head], bool]) -> bool:
        """Move the witness to ``head``, a later event of the same chain.

        ``still_in_chain(current)`` must say whether the event the witness holds now is
        still in the database unchanged. If it is not, or if the witness is missing, the
        witness is left as it is (it is the evidence) and this returns False. Without
        that check, appending past a rewritten tail would move the witness onto the
        forged chain, and deleting the witness would let the next change recreate it.

        Safe with several processes: a lock file serialises writers and the file is
        replaced atomically, so a reader sees the old or the new head, never half of one.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if current is None or not still_in_chain(current):
                return False
            if current.seq >= head.seq:
                return True
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                self._dump(fh, head)
            tmp.replace(self.path)
        return True
