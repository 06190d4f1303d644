"""Attention-based polling: watched tasks are polled every few seconds by the watch loop."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache

from django_evolink.background import queue, sweep, watch
from django_evolink.core import attention
from django_evolink.models import EventSource, ImageTask, Status, TaskEvent
from tests.support.background import (
    SharedClock,
    db_task,
    emulated_db_task,
    poll_settings,
    task_gets,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def watch_settings(settings, evolink_emulator):
    poll_settings(settings, WATCH_SECONDS=60.0, WATCH_POLL_INTERVAL=2.0)
    cache.delete(watch.LOOP_KEY)
    yield settings
    cache.delete(watch.LOOP_KEY)


@pytest.mark.evolink_emulator(manual_clock=True)
def test_the_loop_polls_a_watched_task_every_interval_until_it_ends(
    evolink_emulator, watch_settings, monkeypatch
):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    task = emulated_db_task(emu, duration=20.0, due_in=300)  # the backoff would wait five minutes
    unwatched = emulated_db_task(emu, duration=20.0, due_in=300)
    assert attention.watch(task)
    monkeypatch.setattr(queue, "enqueue_watch", lambda: pytest.fail("no successor needed"))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    counts = watch.run_watch_loop(max_seconds=3600, sleep=sleep)
    task.refresh_from_db()
    assert task.status == Status.COMPLETED and counts["completed"] == 1
    # one status request per watched interval: ~20 s / 2 s, not one a minute
    assert 9 <= task_gets(emu, task.evolink_id) <= 12
    assert all(s <= 2.0 for s in slept)
    progress = list(TaskEvent.objects.filter(task=task, source=EventSource.POLL)
                    .values_list("payload__progress", flat=True))
    assert any(p is not None and 0 < p < 100 for p in progress)
    # the task nobody watches kept its own schedule, and the loop ended (lease dropped)
    assert task_gets(emu, unwatched.evolink_id) == 0
    assert cache.get(watch.LOOP_KEY) is None


@pytest.mark.evolink_emulator(manual_clock=True)
def test_many_viewers_and_loops_poll_a_task_once_per_interval(
    evolink_emulator, watch_settings, monkeypatch
):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    task = emulated_db_task(emu, duration=60.0, due_in=300)
    for _ in range(10):  # ten viewers
        attention.watch(task)
    clock.advance(2)
    first = sweep.poll_watched_tasks()
    second = sweep.poll_watched_tasks()  # another worker's loop, same moment
    assert first["polled"] == 1 and second["claimed"] == 0
    assert task_gets(emu, task.evolink_id) == 1
    task.refresh_from_db()
    assert task.next_poll_at == clock.now + dt.timedelta(seconds=2)
    # once nobody watches any more, the backoff applies again
    clock.advance(61)
    assert not attention.is_watched(task, clock.now)
    assert sweep.poll_watched_tasks()["claimed"] == 0


def test_ensure_loop_starts_one_chain(settings, monkeypatch):
    settings.EVOLINK = {**settings.EVOLINK, "WATCH_LOOP": True}
    cache.delete(watch.LOOP_KEY)
    started: list[bool] = []
    monkeypatch.setattr(queue, "enqueue_watch", lambda: started.append(True))
    # sync mode (no cluster): never started
    assert watch.ensure_loop() is False and started == []
    monkeypatch.setattr(watch.Conf, "SYNC", False)
    try:
        assert watch.ensure_loop() is True
        assert watch.ensure_loop() is False  # the lease is held
        assert started == [True]
        settings.EVOLINK = {**settings.EVOLINK, "WATCH_LOOP": False}
        cache.delete(watch.LOOP_KEY)
        assert watch.ensure_loop() is False
    finally:
        cache.delete(watch.LOOP_KEY)


@pytest.mark.evolink_emulator(manual_clock=True)
def test_the_loop_hands_over_when_its_time_is_up(evolink_emulator, watch_settings,
                                                 monkeypatch):
    SharedClock(monkeypatch, evolink_emulator)
    task = emulated_db_task(evolink_emulator, duration=60.0, due_in=300)
    attention.watch(task)
    successors: list[bool] = []
    monkeypatch.setattr(queue, "enqueue_watch", lambda: successors.append(True))
    counts = watch.run_watch_loop(max_seconds=0, sleep=lambda s: None)
    assert successors == [True] and counts["rounds"] == 0
    assert cache.get(watch.LOOP_KEY) == "handing over"


def test_the_loop_ends_at_once_when_nothing_is_watched(watch_settings):
    db_task("task-unified-x", due_in=-1)  # due, but nobody watches it
    counts = watch.run_watch_loop(max_seconds=10, sleep=lambda s: pytest.fail("slept"))
    assert counts["rounds"] == 0 and cache.get(watch.LOOP_KEY) is None
    assert ImageTask.objects.get().poll_count == 0
