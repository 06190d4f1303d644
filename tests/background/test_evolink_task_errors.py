"""Evolink's failed-task codes, ``cancelled`` and malformed task ids, end to end: the
emulator ends a task, the poller applies it, the task JSON, the signal and the admin
show Evolink's code (issue 15)."""

from __future__ import annotations

import pytest
import responses
from django.utils import translation

from django_evolink import services, signals
from django_evolink.api.serializers import ImageTaskSerializer
from django_evolink.background import sweep
from django_evolink.models import ImageTask, Status
from tests.support.background import SharedClock, db_task, emulated_task, poll_settings, task_gets
from tests.support.evolink_samples import error_answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def emu_settings(settings, evolink_emulator):
    return poll_settings(settings)


@pytest.fixture
def failed_signals():
    received: list[int] = []
    signals.task_failed.connect(lambda task, **kw: received.append(task.pk), weak=False,
                                dispatch_uid="t-evolink-codes")
    yield received
    signals.task_failed.disconnect(dispatch_uid="t-evolink-codes")


@pytest.fixture
def run_sweep(django_capture_on_commit_callbacks):
    """One sweep, its on-commit work (signals) run."""
    def run() -> dict[str, int]:
        with django_capture_on_commit_callbacks(execute=True):
            return sweep.run_sweep()
    return run


def _sweep_until_final(run_sweep, clock: SharedClock, task: ImageTask,
                       rounds: int = 10) -> ImageTask:
    for _ in range(rounds):
        run_sweep()
        task.refresh_from_db()
        if task.is_final:
            return task
        clock.advance(30)
    return task


@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_failed_task_carries_evolinks_code_and_the_fix(evolink_emulator, emu_settings,
                                                        monkeypatch, failed_signals, run_sweep):
    clock = SharedClock(monkeypatch, evolink_emulator)
    remote = emulated_task(evolink_emulator, outcome="failed")
    remote.error_code = "content_policy_violation"
    task = db_task(remote.id, status=Status.PROCESSING)
    clock.advance(31)
    task = _sweep_until_final(run_sweep, clock, task)
    assert task.status == Status.FAILED
    assert task.error_code == "content_policy_violation"
    assert "content policy" in task.error_message
    data = ImageTaskSerializer(task).data
    assert data["error"]["code"] == "content_policy_violation"
    assert "change the prompt" in data["error"]["hint"]
    with translation.override("ja"):
        hint_ja = ImageTaskSerializer(task).data["error"]["hint"]
    assert hint_ja and hint_ja != data["error"]["hint"]
    assert failed_signals == [task.pk]


@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_retry_later_code_has_no_hint(evolink_emulator, emu_settings, monkeypatch,
                                       run_sweep):
    clock = SharedClock(monkeypatch, evolink_emulator)
    remote = emulated_task(evolink_emulator, outcome="failed")
    remote.error_code = "generation_timeout"
    task = db_task(remote.id, status=Status.PROCESSING)
    clock.advance(31)
    task = _sweep_until_final(run_sweep, clock, task)
    assert task.error_code == "generation_timeout"
    assert "hint" not in ImageTaskSerializer(task).data["error"]


@pytest.mark.evolink_emulator(manual_clock=True)
def test_cancelled_is_final_signalled_once_and_never_polled_again(
        evolink_emulator, emu_settings, monkeypatch, failed_signals, run_sweep):
    clock = SharedClock(monkeypatch, evolink_emulator)
    remote = emulated_task(evolink_emulator, duration=300)
    task = db_task(remote.id, status=Status.PROCESSING)
    evolink_emulator.cancel_task(remote.id)
    task = _sweep_until_final(run_sweep, clock, task)
    assert task.status == Status.CANCELLED
    assert task.error_code == "request_cancelled"
    assert failed_signals == [task.pk]
    gets = task_gets(evolink_emulator, remote.id)
    for _ in range(5):  # a poller that stopped only on completed/failed would loop here
        clock.advance(600)
        run_sweep()
    assert task_gets(evolink_emulator, remote.id) == gets
    assert failed_signals == [task.pk]


@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_malformed_task_id_fails_the_task_at_once(evolink_emulator, emu_settings,
                                                    monkeypatch, failed_signals, run_sweep):
    SharedClock(monkeypatch, evolink_emulator)
    task = db_task("not a task id")
    counts = run_sweep()
    task.refresh_from_db()
    assert task.status == Status.FAILED and task.error_code == "invalid_request_error"
    assert counts["failed"] == 1 and task.next_poll_at is None
    assert failed_signals == [task.pk]


@responses.activate
def test_refresh_of_a_malformed_id_fails_the_task(settings):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0}
    task = db_task("bad-id", status=Status.PROCESSING)
    responses.get(f"{settings.EVOLINK['BASE_URL']}/v1/tasks/bad-id", status=400,
                  json=error_answer(400, message="Invalid task_id", param="task_id"))
    services.refresh_task(task)
    task.refresh_from_db()
    assert task.status == Status.FAILED and task.error_code == "invalid_request_error"


@responses.activate
def test_refresh_keeps_other_400s_as_errors(settings):
    from django_evolink.exceptions import EvolinkInvalidRequestError

    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0}
    task = db_task("task-unified-1-abc", status=Status.PROCESSING)
    responses.get(f"{settings.EVOLINK['BASE_URL']}/v1/tasks/task-unified-1-abc", status=400,
                  json=error_answer(400, message="Something else", param="other"))
    with pytest.raises(EvolinkInvalidRequestError):
        services.refresh_task(task)
    task.refresh_from_db()
    assert task.status == Status.PROCESSING
