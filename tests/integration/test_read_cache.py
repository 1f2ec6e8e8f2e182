"""Kept catalogue answers: made once for a burst of the same question, made again after
any change the hub records."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hdh import audit
from hdh.api.cache import ReadCache
from hdh.hub import init_hub


def test_a_burst_makes_an_answer_once_and_a_change_makes_it_again(tmp_path: Path) -> None:
    with init_hub(tmp_path / "hub", actor="test:init") as hub:
        cache = ReadCache(size=8)
        made: list[int] = []

        def make() -> bytes:
            time.sleep(0.05)  # long enough for the burst to arrive while it is made
            made.append(1)
            return f"answer {len(made)}".encode()

        answers: list[bytes] = []
        burst = [threading.Thread(target=lambda: answers.append(cache.answer(hub, "q", make)))
                 for _ in range(20)]  # fmt: skip
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
        assert len(made) == 1
        assert set(answers) == {b"answer 1"}
        assert cache.answer(hub, "q", make) == b"answer 1"
        with hub.transaction() as session:  # any recorded change
            audit.record(session, actor="test", action="test.change", object_type="test",
                         object_id="1")  # fmt: skip
        assert cache.answer(hub, "q", make) == b"answer 2"
        for i in range(10):  # the oldest questions leave first
            cache.answer(hub, ("other", i), make)
        assert len(cache._kept) == 8
        assert "q" not in cache._kept
