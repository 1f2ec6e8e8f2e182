"""The sign-in limiter: failures counted per name and per address in a sliding window,
parallel attempts counted before they are checked, successes forgiven."""

from __future__ import annotations

from hdh.api.signin import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_is_held_back_after_its_failures_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_name=3, per_client=100, window_s=60, clock=clock)
    for step in range(3):
        clock.now = 1000.0 + step * 10
        assert limiter.attempt("Mallory", "10.0.0.1") == 0  # let through; failed
    clock.now = 1025.0
    assert limiter.attempt("mallory", "10.0.0.2") == 35.0  # names compare without case
    clock.now = 1060.0  # the first failure (at 1000) has left the window
    assert limiter.attempt("mallory", "10.0.0.2") == 0
    assert limiter.attempt("alice", "10.0.0.1") == 0  # other names are not held back


def test_parallel_attempts_are_counted_before_any_of_them_is_checked() -> None:
    limiter = LoginLimiter(per_name=5, per_client=100, window_s=300, clock=Clock())
    let_through = [limiter.attempt("mallory", "10.0.0.1") == 0 for _ in range(40)]
    assert let_through.count(True) == 5


def test_an_address_is_held_back_across_names_and_a_success_is_no_failure() -> None:
    limiter = LoginLimiter(per_name=100, per_client=3, window_s=300, clock=Clock())
    assert limiter.attempt("ada", "10.0.0.9") == 0
    limiter.succeeded("ada", "10.0.0.9")
    for name in ("a", "b", "c"):
        assert limiter.attempt(name, "10.0.0.9") == 0
    assert limiter.attempt("d", "10.0.0.9") > 0
    assert limiter.attempt("d", "10.0.0.8") == 0


def test_forgotten_keys_are_swept() -> None:
    clock = Clock()
    limiter = LoginLimiter(window_s=60, clock=clock)
    for i in range(50):
        limiter.attempt(f"user{i}", f"10.0.1.{i}")
    clock.now += 61
    limiter.attempt("late", "10.0.2.1")
    assert set(limiter._failures) == {"name:late", "client:10.0.2.1"}
