"""Unit tests of the poll policy: pure functions of a task, a time and the settings.

Tasks are unsaved ``ImageTask`` instances (no database); the jitter's randomness is
replaced by a fake whose draws are chosen by the test, so every bound is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from django_evolink.core import poll_policy
from django_evolink.core.poll_policy import (
    callbacks_enabled,
    cap_at_deadline,
    first_poll_at,
    first_poll_delay,
    is_past_deadline,
    next_poll_at,
    next_poll_delay,
    task_deadline,
    timeout_grace,
)
from django_evolink.models import ImageTask

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
#: Round numbers that make the backoff easy to read: 4 s doubling up to 100 s.
POLICY = {
    "POLL_MIN_INTERVAL": 4.0,
    "POLL_MAX_INTERVAL": 100.0,
    "POLL_CALLBACK_GRACE": 30.0,
    "TASK_TIMEOUT": 1000.0,
    "CALLBACK_BASE_URL": None,
}


class FakeRandom:
    """Stands in for the ``random`` module: ``uniform(a, b)`` returns a chosen point."""

    def __init__(self, pick: Callable[[float, float], float]) -> None:
        self.pick = pick
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return self.pick(a, b)


@pytest.fixture
def policy(settings) -> dict:
    """Known poll settings (the test may change ``settings.EVOLINK`` further)."""
    settings.EVOLINK = dict(POLICY)
    return settings.EVOLINK


def use_random(monkeypatch: pytest.MonkeyPatch,
               pick: Callable[[float, float], float]) -> FakeRandom:
    fake = FakeRandom(pick)
    monkeypatch.setattr(poll_policy, "random", fake)
    return fake


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> FakeRandom:
    """Jitter factor exactly 1.0."""
    return use_random(monkeypatch, lambda a, b: 1.0)


@pytest.fixture
def jitter_low(monkeypatch: pytest.MonkeyPatch) -> FakeRandom:
    """The smallest jitter factor the policy asks for."""
    return use_random(monkeypatch, lambda a, b: a)


@pytest.fixture
def jitter_high(monkeypatch: pytest.MonkeyPatch) -> FakeRandom:
    """The largest jitter factor the policy asks for."""
    return use_random(monkeypatch, lambda a, b: b)


def make_task(*, created_at: datetime = T0, submitted_at: datetime | None = None,
              estimated_time: int | None = None) -> ImageTask:
    return ImageTask(created_at=created_at, submitted_at=submitted_at,
                     estimated_time=estimated_time)


# --- callbacks_enabled ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [(None, False), ("", False), ("https://site.example", True)],
)
def test_callbacks_enabled_iff_callback_base_url_is_set(policy, base, expected) -> None:
    """Callbacks are on exactly when CALLBACK_BASE_URL is a non-empty value."""
    policy["CALLBACK_BASE_URL"] = base
    assert callbacks_enabled() is expected


def test_callbacks_are_off_by_default(settings) -> None:
    """The default (no CALLBACK_BASE_URL) is poll-only."""
    settings.EVOLINK = {}
    assert callbacks_enabled() is False


# --- first_poll_delay / first_poll_at ---------------------------------------------------


@pytest.mark.parametrize(
    ("estimated", "expected"),
    [(None, 4.0), (0, 4.0), (3, 4.0), (4, 4.0), (5, 5.0), (30, 30.0)],
)
def test_first_poll_delay_is_the_estimate_floored_at_min_interval(
    policy, estimated, expected
) -> None:
    """Without callbacks: max(estimated_time, POLL_MIN_INTERVAL); no estimate means the floor."""
    assert first_poll_delay(make_task(estimated_time=estimated)) == expected


@pytest.mark.parametrize(("estimated", "expected"), [(None, 34.0), (3, 34.0), (30, 60.0)])
def test_first_poll_delay_adds_the_callback_grace(policy, estimated, expected) -> None:
    """With callbacks on, POLL_CALLBACK_GRACE is added after the floor is applied."""
    policy["CALLBACK_BASE_URL"] = "https://site.example"
    assert first_poll_delay(make_task(estimated_time=estimated)) == expected


def test_first_poll_delay_never_adds_grace_when_callbacks_are_off(policy) -> None:
    """A large grace changes nothing while callbacks are off."""
    policy["POLL_CALLBACK_GRACE"] = 10_000.0
    assert first_poll_delay(make_task(estimated_time=30)) == 30.0


def test_first_poll_delay_is_a_float(policy) -> None:
    """The estimate (an int) is returned as float seconds."""
    delay = first_poll_delay(make_task(estimated_time=30))
    assert isinstance(delay, float)


def test_first_poll_at_is_now_plus_the_first_delay(policy) -> None:
    """Well before the deadline, the first poll is exactly ``now + first_poll_delay``."""
    task = make_task(submitted_at=T0, estimated_time=30)
    assert first_poll_at(task, T0) == T0 + timedelta(seconds=30)


def test_first_poll_at_is_capped_at_the_deadline(policy) -> None:
    """An estimate longer than the timeout does not push the first poll past the deadline."""
    task = make_task(submitted_at=T0, estimated_time=5000)
    assert first_poll_at(task, T0) == T0 + timedelta(seconds=1000)


def test_first_poll_at_just_under_the_deadline_is_unchanged(policy) -> None:
    """A first poll one second before the deadline is not moved."""
    task = make_task(submitted_at=T0, estimated_time=999)
    assert first_poll_at(task, T0) == T0 + timedelta(seconds=999)


# --- next_poll_delay: backoff -----------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 4.0), (1, 8.0), (2, 16.0), (3, 32.0), (4, 64.0), (5, 100.0), (6, 100.0)],
)
def test_backoff_doubles_from_min_interval_up_to_the_cap(
    policy, no_jitter, attempt, expected
) -> None:
    """Without jitter the delay is min(POLL_MAX_INTERVAL, POLL_MIN_INTERVAL * 2**attempt)."""
    assert next_poll_delay(attempt) == expected


def test_backoff_reaches_the_cap_exactly_at_a_power_of_two(policy, no_jitter) -> None:
    """A cap equal to a step of the doubling is reached, not overshot or undershot."""
    policy["POLL_MAX_INTERVAL"] = 64.0
    assert [next_poll_delay(a) for a in (3, 4, 5)] == [32.0, 64.0, 64.0]


@pytest.mark.parametrize("attempt", [-1, -100])
def test_negative_attempts_count_as_zero(policy, no_jitter, attempt) -> None:
    """A negative attempt count gives the first, shortest interval (never a fraction of it)."""
    assert next_poll_delay(attempt) == 4.0


@pytest.mark.parametrize("attempt", [30, 31, 1000, 10**9])
def test_huge_attempts_stay_at_the_cap(policy, no_jitter, attempt) -> None:
    """The exponent is bounded: huge attempt counts neither overflow nor exceed the cap."""
    assert next_poll_delay(attempt) == 100.0


def test_huge_attempt_with_huge_cap_does_not_overflow(policy, no_jitter) -> None:
    """The exponent is capped at 30 even when the cap itself would allow more."""
    policy["POLL_MIN_INTERVAL"] = 1.0
    policy["POLL_MAX_INTERVAL"] = 1e300
    assert next_poll_delay(10**9) == float(2**30)


def test_defaults_give_five_seconds_then_five_minutes(settings, no_jitter) -> None:
    """With the shipped defaults the backoff runs from 5 s to 300 s."""
    settings.EVOLINK = {}
    assert next_poll_delay(0) == 5.0
    assert next_poll_delay(1) == 10.0
    assert next_poll_delay(100) == 300.0


# --- next_poll_delay: jitter ------------------------------------------------------------


def test_jitter_is_drawn_from_plus_minus_25_percent(policy, no_jitter) -> None:
    """The jitter factor is ``uniform(0.75, 1.25)``: one draw per delay."""
    next_poll_delay(2)
    assert no_jitter.calls == [(0.75, 1.25)]


@pytest.mark.parametrize(("attempt", "expected"), [(2, 12.0), (3, 24.0), (4, 48.0)])
def test_low_jitter_shortens_a_mid_range_delay_by_a_quarter(
    policy, jitter_low, attempt, expected
) -> None:
    """Between floor and cap, the lowest jitter gives 0.75 * base."""
    assert next_poll_delay(attempt) == expected


@pytest.mark.parametrize(("attempt", "expected"), [(1, 10.0), (2, 20.0), (3, 40.0)])
def test_high_jitter_lengthens_a_mid_range_delay_by_a_quarter(
    policy, jitter_high, attempt, expected
) -> None:
    """Between floor and cap, the highest jitter gives 1.25 * base."""
    assert next_poll_delay(attempt) == expected


def test_low_jitter_never_goes_below_min_interval(policy, jitter_low) -> None:
    """At attempt 0, 0.75 * POLL_MIN_INTERVAL is raised back to POLL_MIN_INTERVAL."""
    assert next_poll_delay(0) == 4.0


def test_high_jitter_at_attempt_zero_lengthens_the_first_interval(policy, jitter_high) -> None:
    """The floor does not swallow upward jitter: 1.25 * POLL_MIN_INTERVAL."""
    assert next_poll_delay(0) == 5.0


def test_high_jitter_never_goes_above_max_interval(policy, jitter_high) -> None:
    """At the cap, 1.25 * POLL_MAX_INTERVAL is cut back to POLL_MAX_INTERVAL."""
    assert next_poll_delay(50) == 100.0


def test_low_jitter_at_the_cap_shortens_it(policy, jitter_low) -> None:
    """At the cap, downward jitter still spreads polls: 0.75 * POLL_MAX_INTERVAL."""
    assert next_poll_delay(50) == 75.0


def test_jitter_actually_varies_the_delay(policy) -> None:
    """With the real ``random``, delays differ and stay within the +-25 % band."""
    delays = [next_poll_delay(3) for _ in range(200)]
    assert len(set(delays)) > 1
    assert all(24.0 <= d <= 40.0 for d in delays)


# --- next_poll_delay: Retry-After -------------------------------------------------------


def test_retry_after_none_changes_nothing(policy, no_jitter) -> None:
    """No Retry-After: the plain backoff."""
    assert next_poll_delay(2, retry_after=None) == 16.0


@pytest.mark.parametrize(("retry_after", "expected"), [(50.0, 50.0), (16.5, 16.5), (99.9, 99.9)])
def test_retry_after_longer_than_the_backoff_is_a_floor(
    policy, no_jitter, retry_after, expected
) -> None:
    """A Retry-After longer than the backoff (and under the cap) is honoured exactly."""
    assert next_poll_delay(2, retry_after=retry_after) == expected


@pytest.mark.parametrize("retry_after", [0.0, 1.0, 15.9, -5.0])
def test_retry_after_shorter_than_the_backoff_does_not_shorten_it(
    policy, no_jitter, retry_after
) -> None:
    """Retry-After is a floor, never a ceiling: a short (or negative) one keeps the backoff."""
    assert next_poll_delay(2, retry_after=retry_after) == 16.0


def test_retry_after_below_min_interval_keeps_the_floor(policy, no_jitter) -> None:
    """Retry-After: 0 on the first attempt still waits POLL_MIN_INTERVAL."""
    assert next_poll_delay(0, retry_after=0.0) == 4.0


@pytest.mark.parametrize("retry_after", [100.0, 100.001, 86_400.0 * 365, 1e300, float("inf")])
def test_hostile_retry_after_is_capped_at_max_interval(policy, no_jitter, retry_after) -> None:
    """A huge Retry-After cannot park a task: it is cut to POLL_MAX_INTERVAL."""
    assert next_poll_delay(0, retry_after=retry_after) == 100.0


def test_retry_after_cap_follows_the_setting(policy, no_jitter) -> None:
    """The Retry-After cap is POLL_MAX_INTERVAL as configured, not a constant."""
    policy["POLL_MAX_INTERVAL"] = 20.0
    assert next_poll_delay(0, retry_after=3600.0) == 20.0


def test_retry_after_wins_over_downward_jitter(policy, jitter_low) -> None:
    """The jittered delay is raised to the Retry-After floor."""
    assert next_poll_delay(3, retry_after=30.0) == 30.0


def test_retry_after_is_not_jittered(policy, jitter_high) -> None:
    """A Retry-After above the jittered backoff is used as is, not multiplied."""
    assert next_poll_delay(0, retry_after=50.0) == 50.0


def test_retry_after_may_be_an_int(policy, no_jitter) -> None:
    """An integer header value works and yields float seconds."""
    delay = next_poll_delay(0, retry_after=60)
    assert delay == 60.0 and isinstance(delay, float)


def test_nan_retry_after_does_not_poison_the_delay(policy, no_jitter) -> None:
    """A NaN Retry-After leaves the backoff unchanged (never a NaN delay)."""
    assert next_poll_delay(2, retry_after=float("nan")) == 16.0


def test_retry_after_is_keyword_only() -> None:
    """``retry_after`` cannot be passed positionally (it would be confused with attempt)."""
    with pytest.raises(TypeError):
        next_poll_delay(1, 30.0)  # type: ignore[misc]


# --- task_deadline / is_past_deadline / timeout_grace / cap_at_deadline ----------------


def test_deadline_counts_from_submission(policy) -> None:
    """The deadline is TASK_TIMEOUT after Evolink accepted the task."""
    task = make_task(created_at=T0, submitted_at=T0 + timedelta(seconds=50))
    assert task_deadline(task) == T0 + timedelta(seconds=1050)


def test_deadline_counts_from_creation_before_submission(policy) -> None:
    """A task not yet accepted times out TASK_TIMEOUT after it was created."""
    assert task_deadline(make_task(created_at=T0)) == T0 + timedelta(seconds=1000)


def test_deadline_follows_task_timeout(policy) -> None:
    """TASK_TIMEOUT is read on each call and may be fractional."""
    policy["TASK_TIMEOUT"] = 0.5
    assert task_deadline(make_task(created_at=T0)) == T0 + timedelta(milliseconds=500)


def test_default_task_timeout_is_one_hour(settings) -> None:
    """With the defaults a task has one hour."""
    settings.EVOLINK = {}
    assert task_deadline(make_task(submitted_at=T0)) == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(seconds=0), False),
        (timedelta(seconds=999, microseconds=999_999), False),
        (timedelta(seconds=1000), True),
        (timedelta(seconds=1000, microseconds=1), True),
        (timedelta(days=3), True),
    ],
)
def test_is_past_deadline_from_the_deadline_itself(policy, offset, expected) -> None:
    """A task is past its deadline at the deadline instant (``>=``), not one tick later."""
    task = make_task(submitted_at=T0)
    assert is_past_deadline(task, T0 + offset) is expected


def test_is_past_deadline_uses_submission_not_creation(policy) -> None:
    """An old created_at does not time out a task accepted recently."""
    task = make_task(created_at=T0 - timedelta(days=1), submitted_at=T0)
    assert is_past_deadline(task, T0 + timedelta(seconds=10)) is False


def test_timeout_grace_is_two_max_intervals(policy) -> None:
    """The grace after the deadline is 2 * POLL_MAX_INTERVAL."""
    assert timeout_grace() == timedelta(seconds=200)
    policy["POLL_MAX_INTERVAL"] = 7.5
    assert timeout_grace() == timedelta(seconds=15)


def test_timeout_grace_default_is_ten_minutes(settings) -> None:
    """With the defaults (300 s max interval) the grace is ten minutes."""
    settings.EVOLINK = {}
    assert timeout_grace() == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("when_offset", "expected_offset"),
    [(10, 10), (999, 999), (1000, 1000), (1001, 1000), (10**6, 1000), (-5, -5)],
)
def test_cap_at_deadline_is_min_of_when_and_deadline(
    policy, when_offset, expected_offset
) -> None:
    """Times before the deadline pass through; later ones become the deadline."""
    task = make_task(submitted_at=T0)
    when = T0 + timedelta(seconds=when_offset)
    assert cap_at_deadline(task, when) == T0 + timedelta(seconds=expected_offset)


# --- next_poll_at -----------------------------------------------------------------------


def test_next_poll_at_is_now_plus_the_backoff(policy, no_jitter) -> None:
    """Well before the deadline: ``now + next_poll_delay(attempt)``."""
    task = make_task(submitted_at=T0)
    now = T0 + timedelta(seconds=100)
    assert next_poll_at(task, now, attempt=3) == now + timedelta(seconds=32)


def test_next_poll_at_passes_retry_after_through(policy, no_jitter) -> None:
    """Retry-After raises the next poll time as it raises the delay."""
    task = make_task(submitted_at=T0)
    assert next_poll_at(task, T0, attempt=0, retry_after=70.0) == T0 + timedelta(seconds=70)


def test_next_poll_at_is_capped_at_the_deadline_before_it(policy, no_jitter) -> None:
    """Shortly before the deadline, the next poll is the deadline itself (the last check)."""
    task = make_task(submitted_at=T0)
    now = T0 + timedelta(seconds=990)
    assert next_poll_at(task, now, attempt=10) == T0 + timedelta(seconds=1000)


def test_hostile_retry_after_cannot_park_a_task(policy, no_jitter) -> None:
    """A year-long Retry-After moves the next poll by at most POLL_MAX_INTERVAL."""
    task = make_task(submitted_at=T0)
    year = 365 * 86_400.0
    assert next_poll_at(task, T0, attempt=0, retry_after=year) == T0 + timedelta(seconds=100)


def test_hostile_retry_after_cannot_push_past_the_deadline(policy, no_jitter) -> None:
    """Near the deadline, even a capped Retry-After stops at the deadline."""
    task = make_task(submitted_at=T0)
    now = T0 + timedelta(seconds=950)
    assert next_poll_at(task, now, attempt=0, retry_after=1e12) == T0 + timedelta(seconds=1000)


def test_next_poll_at_one_tick_before_the_deadline_is_capped(policy, no_jitter) -> None:
    """A poll one microsecond before the deadline still schedules the deadline, not later."""
    task = make_task(submitted_at=T0)
    now = T0 + timedelta(seconds=1000) - timedelta(microseconds=1)
    assert next_poll_at(task, now, attempt=0) == T0 + timedelta(seconds=1000)


def test_next_poll_at_the_deadline_uses_the_plain_backoff(policy, no_jitter) -> None:
    """At the deadline (a check that could not reach Evolink) the backoff applies uncapped."""
    task = make_task(submitted_at=T0)
    deadline = T0 + timedelta(seconds=1000)
    assert next_poll_at(task, deadline, attempt=2) == deadline + timedelta(seconds=16)


def test_next_poll_after_the_deadline_is_still_bounded_by_the_cap(policy, no_jitter) -> None:
    """Past the deadline a hostile Retry-After is still cut to POLL_MAX_INTERVAL."""
    task = make_task(submitted_at=T0)
    now = T0 + timedelta(seconds=1500)
    assert next_poll_at(task, now, attempt=0, retry_after=1e12) == now + timedelta(seconds=100)


def test_next_poll_at_is_never_before_now(policy, jitter_low) -> None:
    """Before the deadline the next poll lies in (now, deadline]."""
    task = make_task(submitted_at=T0)
    for seconds in (0, 1, 500, 996, 999):
        now = T0 + timedelta(seconds=seconds)
        when = next_poll_at(task, now, attempt=0)
        assert now < when <= T0 + timedelta(seconds=1000)


def test_a_watched_task_is_polled_again_after_the_watch_interval(policy, no_jitter) -> None:
    policy["WATCH_POLL_INTERVAL"] = 2.0
    task = make_task(submitted_at=T0)
    now = T0 + timedelta(seconds=10)
    assert next_poll_at(task, now, attempt=5) == now + timedelta(seconds=100)  # the backoff
    task.watched_until = now + timedelta(seconds=30)
    assert next_poll_at(task, now, attempt=5) == now + timedelta(seconds=2)
    # a Retry-After still holds (capped as always), and an expired watch is no watch
    assert next_poll_at(task, now, attempt=5, retry_after=7) == now + timedelta(seconds=7)
    task.watched_until = now
    assert next_poll_at(task, now, attempt=5) == now + timedelta(seconds=100)
