"""The poll sweep, driven by the emulator: backoff, leases, timeouts, lost work."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_evolink import services, signals
from django_evolink.background import sweep
from django_evolink.core.transitions import apply_payload
from django_evolink.evolink.client import get_client
from django_evolink.models import EventSource, GeneratedImage, ImageTask, Status, TaskEvent
from tests.conftest import make_image_bytes
from tests.support.background import SharedClock, db_task, emulated_task, poll_settings, task_gets

pytestmark = pytest.mark.django_db


@pytest.fixture
def emu_settings(settings, evolink_emulator):
    return poll_settings(settings, POLL_CONCURRENCY=4)


def _upload_input(emulator) -> str:
    return get_client().upload_file(make_image_bytes(), file_name="in.png")["file_url"]


@pytest.mark.evolink_emulator(manual_clock=True)
def test_every_callback_dropped_all_tasks_complete_by_polling(
    evolink_emulator, emu_settings, monkeypatch, django_capture_on_commit_callbacks
):
    emu = evolink_emulator
    emu_settings.EVOLINK = {**emu_settings.EVOLINK, "CALLBACK_BASE_URL": "https://www.example.com"}
    emu.faults.drop_callbacks(None)
    clock = SharedClock(monkeypatch, emu)
    url = _upload_input(emu)
    tasks = [services.create_task(prompt=f"cat {i}", image_urls=[url]) for i in range(6)]
    assert all(t.status == Status.PENDING for t in tasks)
    # first poll: after Evolink's estimate (30 s) + callback grace (30 s)
    assert all(t.next_poll_at == clock.now + dt.timedelta(seconds=60) for t in tasks)
    for _ in range(30):
        clock.advance(7)
        with django_capture_on_commit_callbacks(execute=True):
            sweep.run_sweep()
        if not ImageTask.objects.unfinished().exists():
            break
    assert set(ImageTask.objects.values_list("status", flat=True)) == {Status.COMPLETED}
    for task in tasks:
        assert task_gets(emu, task.evolink_id) <= 2  # bounded: estimate-seeded backoff
    assert len(emu.callbacks.filter(kind="dropped")) == 6
    # the completion enqueued the downloads on commit (sync cluster): images stored
    assert GeneratedImage.objects.filter(file="").count() == 0
    assert ImageTask.objects.filter(images_stored_at__isnull=True).count() == 0
    # nothing left to poll: another sweep sends nothing
    before = len(emu.requests)
    clock.advance(600)
    assert sweep.run_sweep()["claimed"] == 0
    assert len(emu.requests) == before


@pytest.mark.evolink_emulator(manual_clock=True)
@pytest.mark.parametrize("status", [429, 500, 503])
def test_errors_back_off_then_success(evolink_emulator, emu_settings, monkeypatch, status):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    remote = emulated_task(emu, duration=1)
    task = db_task(remote.id)
    emu.faults.add_error("task", status, count=3, retry_after=120 if status == 429 else None)
    waits = []
    for _ in range(3):
        counts = sweep.run_sweep()
        assert counts["errors"] == 1 and counts["polled"] == 0
        task.refresh_from_db()
        waits.append((task.next_poll_at - clock.now).total_seconds())
        # not due before its time: no request
        clock.advance(waits[-1] - 1)
        n = len(emu.requests)
        sweep.run_sweep()
        assert len(emu.requests) == n
        clock.advance(1)
    if status == 429:
        assert all(w >= 120 for w in waits)  # Retry-After honoured
    else:
        assert waits[0] < waits[1] < waits[2]  # exponential (jitter is +-25 %)
    task.refresh_from_db()
    assert task.poll_error_count == 3 and task.poll_count == 0
    counts = sweep.run_sweep()
    task.refresh_from_db()
    assert counts["completed"] == 1 and task.status == Status.COMPLETED
    assert task.poll_count == 1 and task_gets(emu, remote.id) == 4


@pytest.mark.evolink_emulator(manual_clock=True)
@pytest.mark.parametrize("retry_after", [301, 3600, 86400 * 30])
def test_a_hostile_retry_after_is_capped_at_poll_max_interval(evolink_emulator, emu_settings,
                                                              monkeypatch, retry_after):
    """A 429 whose Retry-After is above POLL_MAX_INTERVAL (300 s) schedules the next poll at
    most 300 s later, however far the header points (up to 30 days here), so a hostile or
    broken header cannot park a task past its deadline; and the task still completes."""
    emu_settings.EVOLINK = {**emu_settings.EVOLINK, "TASK_TIMEOUT": 86400.0 * 365}
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    remote = emulated_task(emu, duration=1)
    task = db_task(remote.id)
    emu.faults.add_error("task", 429, count=1, retry_after=retry_after)
    assert sweep.run_sweep()["errors"] == 1
    task.refresh_from_db()
    wait = (task.next_poll_at - clock.now).total_seconds()
    assert 225 <= wait <= 300, wait  # honoured up to the cap, never beyond
    clock.advance(300)
    assert sweep.run_sweep()["completed"] == 1
    assert task_gets(emu, remote.id) == 2


@pytest.mark.evolink_emulator(manual_clock=True)
def test_transport_errors_are_counted_apart(evolink_emulator, emu_settings, monkeypatch):
    emu_settings.EVOLINK = {**emu_settings.EVOLINK, "BASE_URL": "http://127.0.0.1:9"}
    SharedClock(monkeypatch, evolink_emulator)
    task = db_task("task-unified-1-unreachable")
    counts = sweep.run_sweep()
    task.refresh_from_db()
    assert counts["transport_errors"] == 1 and counts["errors"] == 1
    assert task.poll_error_count == 1 and task.poll_count == 0 and task.status == Status.PENDING
    assert task.next_poll_at > timezone.now() and task.lease_token is None


@pytest.mark.evolink_emulator(manual_clock=True)
def test_stuck_task_gets_one_last_check_then_times_out(evolink_emulator, emu_settings, monkeypatch,
                                                       django_capture_on_commit_callbacks):
    emu = evolink_emulator
    emu_settings.EVOLINK = {**emu_settings.EVOLINK, "TASK_TIMEOUT": 600.0}
    clock = SharedClock(monkeypatch, emu)
    remote = emulated_task(emu, duration=100_000)
    task = db_task(remote.id, submitted_ago=0, due_in=30)
    failed = []
    signals.task_failed.connect(lambda task, **kw: failed.append(task.pk), weak=False,
                                dispatch_uid="t-stuck")
    try:
        for _ in range(40):
            clock.advance(30)
            with django_capture_on_commit_callbacks(execute=True):
                sweep.run_sweep()
            task.refresh_from_db()
            if task.is_final:
                break
    finally:
        signals.task_failed.disconnect(dispatch_uid="t-stuck")
    assert task.status == Status.FAILED and task.error_code == "timeout"
    assert "600" in task.error_message
    # the last check happened at the deadline, not later than one sweep after it
    deadline = task.submitted_at + dt.timedelta(seconds=600)
    assert task.last_polled_at >= deadline
    assert task.completed_at - deadline <= dt.timedelta(seconds=30)
    assert failed == [task.pk]
    assert TaskEvent.objects.filter(task=task, source=EventSource.SYSTEM).count() == 1
    assert task_gets(emu, remote.id) <= 10


@pytest.mark.evolink_emulator(manual_clock=True)
def test_task_evolink_forgot_is_failed_not_found(evolink_emulator, emu_settings, monkeypatch):
    SharedClock(monkeypatch, evolink_emulator)
    task = db_task("task-unified-0-forgotten")
    counts = sweep.run_sweep()
    task.refresh_from_db()
    assert counts["not_found"] == 1 and task.status == Status.FAILED
    assert task.error_code == "not_found_error" and task.next_poll_at is None


@pytest.mark.evolink_emulator(manual_clock=True)
def test_nothing_due_is_one_cheap_query(evolink_emulator, emu_settings, monkeypatch,
                                        django_assert_max_num_queries):
    SharedClock(monkeypatch, evolink_emulator)
    db_task("task-unified-0-later", due_in=60)
    with django_assert_max_num_queries(2):
        counts = sweep.run_sweep()
    assert not any(counts.values()) and len(evolink_emulator.requests) == 0


@pytest.mark.evolink_emulator(manual_clock=True)
def test_leases_batches_and_limits(evolink_emulator, emu_settings, monkeypatch):
    emu = evolink_emulator
    emu_settings.EVOLINK = {**emu_settings.EVOLINK, "POLL_BATCH_SIZE": 2,
                            "POLL_MAX_TASKS_PER_SWEEP": 5}
    clock = SharedClock(monkeypatch, emu)
    remotes = [emulated_task(emu, duration=10_000) for _ in range(8)]
    tasks = [db_task(r.id) for r in remotes]
    # one task is leased by another sweep, one lease has expired
    ImageTask.objects.filter(pk=tasks[0].pk).update(
        lease_token="00000000-0000-0000-0000-000000000001",
        lease_until=clock.now + dt.timedelta(60))
    ImageTask.objects.filter(pk=tasks[1].pk).update(
        lease_token="00000000-0000-0000-0000-000000000002", lease_until=clock.now - dt.timedelta(1))
    counts = sweep.run_sweep()
    assert counts["claimed"] == 5 and counts["polled"] == 5
    assert task_gets(emu, remotes[0].id) == 0
    counts = sweep.run_sweep(limit=10)
    assert counts["claimed"] == 2  # the rest; the leased one is still skipped
    assert task_gets(emu, remotes[0].id) == 0
    assert sum(task_gets(emu, r.id) for r in remotes) == 7
    assert not ImageTask.objects.exclude(pk=tasks[0].pk).filter(lease_token__isnull=False).exists()
    # --all polls every unfinished task once, due or not (leases still apply)
    counts = sweep.run_sweep(all_tasks=True, limit=100)
    assert counts["claimed"] == 7


@pytest.mark.evolink_emulator(manual_clock=True)
def test_write_back_is_fenced_by_the_lease(evolink_emulator, emu_settings, monkeypatch):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    remote = emulated_task(emu, duration=10_000)
    task = db_task(remote.id)
    token, claimed = sweep.claim_batch(clock.now, 10)
    assert [t.pk for t in claimed] == [task.pk]
    assert sweep.claim_batch(clock.now, 10)[1] == []  # a second sweep gets nothing
    # our lease expired and another sweep took the task over
    ImageTask.objects.filter(pk=task.pk).update(lease_token="00000000-0000-0000-0000-00000000000f")
    counts = dict.fromkeys(sweep.COUNT_KEYS, 0)
    sweep._handle_answer(claimed[0], token, "ok", emu.tasks[remote.id].to_json(), counts)
    task.refresh_from_db()
    assert str(task.lease_token) == "00000000-0000-0000-0000-00000000000f"
    assert task.poll_count == 0  # nothing written by the sweep that lost its lease


@pytest.mark.evolink_emulator(manual_clock=True)
def test_callback_during_poll_clears_the_schedule(evolink_emulator, emu_settings, monkeypatch):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    remote = emulated_task(emu, duration=1)
    task = db_task(remote.id)
    token, claimed = sweep.claim_batch(clock.now, 10)
    clock.advance(5)
    body = get_client().get_task(remote.id)
    result = apply_payload(task, body, source=EventSource.CALLBACK)
    assert result.new_status == Status.COMPLETED
    counts = dict.fromkeys(sweep.COUNT_KEYS, 0)
    sweep._handle_answer(claimed[0], token, "ok", body, counts)
    task.refresh_from_db()
    assert task.next_poll_at is None and task.lease_token is None
    assert task.poll_count == 1 and counts["completed"] == 0  # the callback completed it


@pytest.mark.evolink_emulator(manual_clock=True)
def test_queued_tasks_are_settled(evolink_emulator, emu_settings, monkeypatch):
    emu_settings.EVOLINK = {**emu_settings.EVOLINK, "ASYNC_SUBMIT": True, "TASK_TIMEOUT": 3600.0}
    clock = SharedClock(monkeypatch, evolink_emulator)
    enqueued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_submit", enqueued.append)
    now = clock.now
    lost = db_task(None, status=Status.QUEUED)
    ImageTask.objects.filter(pk=lost.pk).update(created_at=now - dt.timedelta(seconds=300))
    fresh = db_task(None, status=Status.QUEUED)
    stuck = db_task(None, status=Status.QUEUED, submit_started_at=now - dt.timedelta(hours=1))
    old = db_task(None, status=Status.QUEUED)
    ImageTask.objects.filter(pk=old.pk).update(created_at=now - dt.timedelta(hours=2))
    counts = sweep.run_sweep()
    assert enqueued == [lost.pk] and counts["submits_enqueued"] == 1
    assert sweep.run_sweep()["submits_enqueued"] == 0  # once per lease
    stuck.refresh_from_db(), old.refresh_from_db(), fresh.refresh_from_db()
    assert stuck.status == Status.FAILED and stuck.error_code == "outcome_unknown"
    assert old.status == Status.FAILED and old.error_code == "timeout"
    assert fresh.status == Status.QUEUED
    assert len(evolink_emulator.requests) == 0  # nothing was (re)sent by the sweep


@pytest.mark.evolink_emulator(manual_clock=True)
def test_lost_downloads_are_enqueued_again(evolink_emulator, emu_settings, monkeypatch):
    clock = SharedClock(monkeypatch, evolink_emulator)
    enqueued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", enqueued.append)
    task = db_task("task-unified-0-done", status=Status.COMPLETED, next_poll_at=None)
    GeneratedImage.objects.create(task=task, index=0, source_url="https://example.com/r.png",
                                  next_download_at=clock.now)
    assert sweep.run_sweep()["downloads_enqueued"] == 0  # its on-commit job may still run
    clock.advance(301)
    assert sweep.run_sweep()["downloads_enqueued"] == 1 and enqueued == [task.pk]


@pytest.mark.evolink_emulator(manual_clock=True)
def test_routine_sweeps_and_progress_log_at_debug_only(evolink_emulator, emu_settings,
                                                       monkeypatch, caplog,
                                                       django_capture_on_commit_callbacks):
    """The demo's log: no INFO line per poll of a running task; INFO when it ends."""
    import logging

    caplog.set_level(logging.DEBUG, logger="django_evolink")
    clock = SharedClock(monkeypatch, evolink_emulator)
    task = services.create_task(prompt="cat", image_urls=[_upload_input(evolink_emulator)])

    def sweep_at(seconds):
        clock.advance(seconds)
        ImageTask.objects.filter(pk=task.pk).update(next_poll_at=clock.now)
        caplog.clear()
        with django_capture_on_commit_callbacks(execute=True):
            sweep.run_sweep()
        return [(r.levelno, r.getMessage()) for r in caplog.records
                if r.name.startswith("django_evolink")]

    first = sweep_at(5)  # pending -> processing: the task moved on, one INFO line
    assert [m for level, m in first if level >= logging.INFO] == [
        f"task {task.pk}: poll event pending -> processing (applied)"]
    routine = sweep_at(5)  # processing, more progress: nothing at INFO
    assert [m for level, m in routine if level >= logging.INFO] == []
    assert any(m.startswith("sweep: claimed=1, polled=1") for _level, m in routine)
    assert any("processing -> processing" in m for _level, m in routine)
    done = sweep_at(30)  # completed by the sweep (no callback): worth INFO
    info = [m for level, m in done if level >= logging.INFO]
    assert f"task {task.pk}: poll event processing -> completed (applied)" in info
    assert any(m.startswith("sweep: ") and "completed=1" in m for m in info)
