"""The server's change number: one read for a burst of requests, never older than the
request that asked, and a failed read reported to everyone waiting on it."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from hdh.api.cache import ChangeClock, KnownTokens
from hdh.identity.service import Principal, TokenCheck


class Numbers:
    """A database stand-in: its number, how many reads were made, and a gate a read can
    be held at."""

    def __init__(self) -> None:
        self.value = 7
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def read(self) -> int:
        self.reads += 1
        seen = self.value  # the number as the read starts
        self.gate.wait(5)
        time.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        return seen


def test_a_burst_of_requests_shares_one_read() -> None:
    numbers = Numbers()
    clock = ChangeClock(numbers.read)

    async def burst() -> list[int]:
        return await asyncio.gather(*(clock.now() for _ in range(50)))

    assert asyncio.run(burst()) == [7] * 50
    assert numbers.reads == 1


def test_a_request_never_gets_a_number_read_before_it_arrived() -> None:
    numbers = Numbers()
    clock = ChangeClock(numbers.read)

    async def scenario() -> tuple[int, int, int]:
        numbers.gate.clear()  # the first read is held after it has seen 7
        first = asyncio.create_task(clock.now())
        await asyncio.sleep(0.05)
        numbers.value = 8  # a change commits while that read is under way
        later = asyncio.create_task(clock.now())  # arrives after the change
        await asyncio.sleep(0.01)
        numbers.gate.set()
        return await first, await later, numbers.reads

    first, later, reads = asyncio.run(scenario())
    assert (first, later, reads) == (7, 8, 2)


def test_a_failed_read_reaches_every_caller_and_the_next_read_is_tried_again() -> None:
    numbers = Numbers()
    numbers.fail = ConnectionError("the database is unreachable")
    clock = ChangeClock(numbers.read)

    async def burst() -> list[int | BaseException]:
        return await asyncio.gather(*(clock.now() for _ in range(5)), return_exceptions=True)

    answers = asyncio.run(burst())
    assert all(isinstance(a, ConnectionError) for a in answers)
    numbers.fail = None
    assert asyncio.run(clock.now()) == 7


def check(days: float) -> TokenCheck:
    return TokenCheck(Principal("rita", frozenset({"researcher"})),
                      datetime.now(UTC) + timedelta(days=days))  # fmt: skip


def test_a_known_token_is_trusted_only_under_the_same_number_and_before_it_expires() -> None:
    known = KnownTokens(size=2)
    known.put("hdh_a", 7, check(1))
    assert known.get("hdh_a", 7) == Principal("rita", frozenset({"researcher"}))
    assert known.get("hdh_b", 7) is None
    assert known.get("hdh_a", 8) is None  # the hub changed: checked again
    assert known.get("hdh_a", 7) is None  # and forgotten meanwhile
    known.put("hdh_a", 7, check(-1 / 86400))  # expired a second ago
    assert known.get("hdh_a", 7) is None
    for name in ("hdh_a", "hdh_b", "hdh_c"):
        known.put(name, 7, check(1))
    assert known.get("hdh_a", 7) is None  # the oldest left first
    assert known.get("hdh_c", 7) is not None


@pytest.mark.parametrize("age_s", [59.0, 61.0])
def test_a_known_token_is_checked_again_after_a_minute(
    monkeypatch: pytest.MonkeyPatch, age_s: float
) -> None:
    known = KnownTokens()
    known.put("hdh_a", 7, check(1))
    started = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: started + age_s)
    assert (known.get("hdh_a", 7) is None) == (age_s > 60)
