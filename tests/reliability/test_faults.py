"""Faults injected with the emulator's switches, over real HTTP: nothing lost, nothing twice.

Each scenario ends with :func:`assert_invariants`: every task is final, every completed
task has exactly ``n`` images, each stored once (one file per image, no stray files),
the signals fired once per task, and the credits we mirror agree with the emulator's
ledger. The figures quoted in docs/reliability.md come from these tests.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import Counter

import pytest
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from django_evolink import services, signals
from django_evolink.api import callbacks
from django_evolink.background import sweep
from django_evolink.core import services as core_services
from django_evolink.evolink.client import get_client
from django_evolink.exceptions import EvolinkOutcomeUnknownError
from django_evolink.models import (
    EventOutcome,
    EventSource,
    GeneratedImage,
    ImageTask,
    Status,
    TaskEvent,
)
from tests.conftest import make_image_bytes
from tests.support.api import callback_path, make_task
from tests.support.background import SharedClock
from tests.support.evolink_samples import result_urls, task_answer

# --------------------------------------------------------------------------- helpers


class SignalCounter:
    """Counts every django-evolink signal per task."""

    NAMES = ("task_status_changed", "task_completed", "task_failed", "task_images_stored")

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def __enter__(self) -> SignalCounter:
        for name in self.NAMES:
            getattr(signals, name).connect(self._receiver(name), weak=False,
                                           dispatch_uid=f"rel-{name}")
        return self

    def __exit__(self, *exc) -> None:
        for name in self.NAMES:
            getattr(signals, name).disconnect(dispatch_uid=f"rel-{name}")

    def _receiver(self, name):
        def receive(sender, task, **kwargs):
            key = (name, task.pk, kwargs.get("new_status"))
            self.counts[key] += 1
        return receive

    def of(self, name: str) -> Counter:
        return Counter({k[1]: v for k, v in self.counts.items() if k[0] == name})


def assert_invariants(emulator, tasks, signals_seen: SignalCounter | None = None) -> dict:
    """The invariants of every scenario; returns figures for the report."""
    from django_evolink import conf

    ids = [t.pk for t in tasks]
    rows = list(ImageTask.objects.filter(pk__in=ids))
    assert len(rows) == len(ids)
    assert all(t.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED) for t in rows), \
        Counter(t.status for t in rows)
    completed = [t for t in rows if t.status == Status.COMPLETED]
    storage = conf.storage()
    for task in completed:
        images = list(task.images.order_by("index"))
        assert [i.index for i in images] == list(range(task.n))
        assert all(i.file and storage.exists(i.file.name) for i in images), task.pk
        assert len({i.file.name for i in images}) == task.n
        _dirs, files = storage.listdir(f"evolink/results/{task.pk}")
        assert sorted(files) == sorted(os.path.basename(i.file.name) for i in images)
        assert task.images_stored_at is not None
    if signals_seen is not None:
        completed_ids = {t.pk for t in completed}
        assert set(signals_seen.of("task_completed")) == completed_ids
        assert set(signals_seen.of("task_images_stored")) == completed_ids
        for name in ("task_completed", "task_failed", "task_images_stored"):
            assert all(n == 1 for n in signals_seen.of(name).values()), (name, signals_seen.counts)
        finals = Counter(k[1] for k in signals_seen.counts
                         if k[0] == "task_status_changed" and k[2] in
                         (Status.COMPLETED, Status.FAILED, Status.CANCELLED))
        assert all(n == 1 for n in finals.values())
    # credits: what we mirror for completed tasks is what the emulator charged
    remote = {t.id: t for t in emulator.tasks.values()}
    ours = {t.evolink_id for t in rows if t.evolink_id}
    charged_ours = sum(remote[e].credits_charged for e in ours if e in remote)
    mirrored = sum(float(t.credits_reserved or 0) for t in completed)
    assert abs(charged_ours - mirrored) < 1e-6, (charged_ours, mirrored)
    return {
        "tasks": len(rows),
        "completed": len(completed),
        "images": GeneratedImage.objects.filter(task__in=ids).count(),
        "charged": round(charged_ours, 4),
    }


def task_gets(emulator, evolink_id: str) -> int:
    return emulator.requests.count("GET", f"/v1/tasks/{evolink_id}")


@pytest.fixture
def fault_settings(settings, evolink_emulator):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0, "POLL_MIN_INTERVAL": 5.0,
                        "POLL_MAX_INTERVAL": 300.0, "POLL_CONCURRENCY": 4,
                        "RETRY_MAX_WAIT": 0.05}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


def input_url() -> str:
    return get_client().upload_file(make_image_bytes(), file_name="in.png")["file_url"]


def sweep_until_final(clock, step: float, max_sweeps: int, capture) -> int:
    """Sweep every ``step`` seconds until nothing is unfinished; returns sweeps run."""
    for i in range(1, max_sweeps + 1):
        clock.advance(step)
        with capture(execute=True):
            sweep.run_sweep()
        if not ImageTask.objects.unfinished().exists():
            return i
    return max_sweeps


# ------------------------------------------------ database unavailable during a callback


@pytest.mark.django_db
def test_database_down_while_recording_a_callback_answers_503_without_the_token(
        settings, monkeypatch, caplog):
    settings.EVOLINK = {**settings.EVOLINK, "TRUST_CALLBACK_BODY": True}
    task, raw = make_task()
    calls = {"n": 0}
    real = callbacks.record_event

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(callbacks, "record_event", flaky)
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", lambda pk: None)
    body = task_answer(id=task.evolink_id, status="completed",
                       results=result_urls(task.evolink_id, 1))
    with caplog.at_level(logging.DEBUG):
        first = Client().post(callback_path(raw), body, content_type="application/json")
    assert first.status_code == 503
    assert not TaskEvent.objects.filter(task=task).exists()  # nothing half-written
    assert all(raw not in r.getMessage() for r in caplog.records)
    # Evolink's retry: recorded and applied
    again = Client().post(callback_path(raw), body, content_type="application/json")
    assert again.status_code == 200
    task.refresh_from_db()
    assert task.status == Status.COMPLETED and task.images.count() == 1


# ---------------------------------------------------------------- polling-only faults


def create_tasks(count: int, n: int = 1) -> list[ImageTask]:
    url = input_url()
    return [services.create_task(prompt=f"cat {i}", image_urls=[url], n=n) for i in range(count)]


def gets_by_task(emulator, tasks) -> dict[str, list[float]]:
    """Emulated times of the status requests of each task."""
    times: dict[str, list[float]] = {}
    for record in emulator.requests.filter("GET", "/v1/tasks/*"):
        times.setdefault(record.path.rsplit("/", 1)[-1], []).append(record.timestamp)
    return {t.evolink_id: times.get(t.evolink_id, []) for t in tasks}


@pytest.mark.django_db
@pytest.mark.evolink_emulator(manual_clock=True)
def test_evolink_down_for_ten_minutes_then_back(evolink_emulator, fault_settings, monkeypatch,
                                                django_capture_on_commit_callbacks):
    """Evolink unreachable (connection refused) 5 min, then answering 503 5 min, then back."""
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    with SignalCounter() as seen:
        tasks = create_tasks(10, n=2)
        up = dict(fault_settings.EVOLINK)
        fault_settings.EVOLINK = {**up, "BASE_URL": "http://127.0.0.1:9"}  # refused
        for _ in range(10):
            clock.advance(30)
            with django_capture_on_commit_callbacks(execute=True):
                counts = sweep.run_sweep()
            assert counts["completed"] == 0
        fault_settings.EVOLINK = up
        emu.faults.add_error("task", 503, count=None)
        for _ in range(10):
            clock.advance(30)
            with django_capture_on_commit_callbacks(execute=True):
                sweep.run_sweep()
        assert not ImageTask.objects.filter(status=Status.COMPLETED).exists()
        errors_during_outage = sum(
            t.poll_error_count for t in ImageTask.objects.filter(pk__in=[t.pk for t in tasks]))
        emu.faults.clear()
        back_at = clock.now
        sweeps = sweep_until_final(clock, 10, 60, django_capture_on_commit_callbacks)
        recovered_after = (clock.now - back_at).total_seconds()
        figures = assert_invariants(emu, tasks, seen)
    assert figures["completed"] == 10 and figures["images"] == 20
    # the backoff bounds the traffic of the outage: at most one try per task per sweep,
    # far fewer once the interval has grown (POLL_MAX_INTERVAL 300 s)
    assert errors_during_outage <= 10 * 6
    # recovery is bounded by the longest backoff interval (+25 % jitter) and a sweep step
    assert recovered_after <= 300 * 1.25 + 10, recovered_after
    assert sweeps >= 1


@pytest.mark.django_db
@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_429_storm_with_retry_after_is_honoured(evolink_emulator, fault_settings, monkeypatch,
                                                  django_capture_on_commit_callbacks):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    with SignalCounter() as seen:
        tasks = create_tasks(10)
        clock.advance(60)
        emu.faults.add_error("task", 429, count=None, retry_after=120)
        for _ in range(60):  # 10 minutes of storm, a sweep every 10 s
            clock.advance(10)
            with django_capture_on_commit_callbacks(execute=True):
                sweep.run_sweep()
        storm = gets_by_task(emu, tasks)
        emu.faults.clear()
        sweep_until_final(clock, 10, 60, django_capture_on_commit_callbacks)
        figures = assert_invariants(emu, tasks, seen)
    assert figures["completed"] == 10
    for times in storm.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert all(gap >= 120 - 1e-6 for gap in gaps), gaps  # never before Retry-After
        assert len(times) <= 600 // 120 + 1


@pytest.mark.django_db
@pytest.mark.evolink_emulator(manual_clock=True)
def test_every_callback_lost_tasks_complete_by_polling(evolink_emulator, fault_settings,
                                                       monkeypatch,
                                                       django_capture_on_commit_callbacks):
    emu = evolink_emulator
    fault_settings.EVOLINK = {**fault_settings.EVOLINK,
                              "CALLBACK_BASE_URL": "https://www.example.com"}
    emu.faults.drop_callbacks(None)
    clock = SharedClock(monkeypatch, emu)
    with SignalCounter() as seen:
        tasks = create_tasks(10, n=2)
        sweep_until_final(clock, 10, 100, django_capture_on_commit_callbacks)
        figures = assert_invariants(emu, tasks, seen)
    assert figures["completed"] == 10 and figures["images"] == 20
    assert len(emu.callbacks.filter(kind="dropped")) == 10
    assert all(len(times) <= 2 for times in gets_by_task(emu, tasks).values())
    assert not TaskEvent.objects.filter(source=EventSource.CALLBACK).exists()


@pytest.mark.django_db
@pytest.mark.evolink_emulator(manual_clock=True)
@pytest.mark.parametrize("mode", ["reset", "close", "timeout"])
def test_a_lost_create_answer_is_never_resent_and_is_visible_to_the_operator(
        evolink_emulator, fault_settings, monkeypatch, django_capture_on_commit_callbacks,
        client, staff_user, mode):
    emu = evolink_emulator
    fault_settings.EVOLINK = {**fault_settings.EVOLINK, "READ_TIMEOUT": 0.3, "MAX_RETRIES": 3}
    clock = SharedClock(monkeypatch, emu)
    url = input_url()
    emu.faults.lose_create_answer(1, mode=mode, hold=1.0)
    with pytest.raises(EvolinkOutcomeUnknownError) as caught:
        services.create_task(prompt="lost", image_urls=[url])
    task = caught.value.task
    task.refresh_from_db()
    assert task.status == Status.FAILED and task.error_code == "outcome_unknown"
    assert task.evolink_id is None
    assert emu.requests.count("POST", "/v1/images/generations") == 1  # sent once
    assert len(emu.tasks) == 1  # ... and Evolink did make (and will bill) it
    # sweeps and a retried submit do not send it again
    for _ in range(5):
        clock.advance(600)
        with django_capture_on_commit_callbacks(execute=True):
            sweep.run_sweep()
    services.submit_task(task)
    assert emu.requests.count("POST", "/v1/images/generations") == 1
    # the operator sees it: the event and the admin
    event = task.events.get(source=EventSource.SUBMIT)
    assert event.payload["error"]["code"] == "outcome_unknown" and event.changed
    client.force_login(staff_user)
    page = client.get(f"/admin/django_evolink/imagetask/{task.pk}/change/")
    assert page.status_code == 200 and b"outcome_unknown" in page.content
    listing = client.get("/admin/django_evolink/imagetask/?status__exact=failed")
    assert listing.status_code == 200 and str(task.pk)[:8].encode() in listing.content
    # ... and can list exactly the tasks to reconcile
    ok = ImageTask.objects.create(model=task.model, prompt="fine", image_urls=[url],
                                  status=Status.FAILED, error_code="timeout")
    unknown = client.get("/admin/django_evolink/imagetask/?error_code=outcome_unknown")
    assert unknown.status_code == 200 and b"Outcome unknown" in unknown.content
    assert str(task.pk)[:8].encode() in unknown.content
    assert str(ok.pk)[:8].encode() not in unknown.content
    events = client.get("/admin/django_evolink/taskevent/?q=answer+was+lost")
    assert events.status_code == 200 and b"Submit answer" in events.content
    # credits: Evolink made and billed the task; the one charge we cannot attribute is
    # exactly this task's, flagged outcome_unknown for the operator to reconcile
    (remote,) = emu.tasks.values()
    assert remote.status == "completed" and emu.credits.used == pytest.approx(1.2)
    assert task.credits_reserved is None


# ----------------------------------------------------------- workers killed mid-work


@pytest.mark.django_db
@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_worker_killed_mid_poll_is_resumed_after_its_lease(evolink_emulator, fault_settings,
                                                             monkeypatch,
                                                             django_capture_on_commit_callbacks):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    with SignalCounter() as seen:
        tasks = create_tasks(8)
        clock.advance(60)
        # the dying worker: claims every due task, asks Evolink, dies before writing
        _token, claimed = sweep.claim_batch(clock.now, 100)
        assert len(claimed) == 8
        for task in claimed:
            get_client().get_task(task.evolink_id)
        # within the lease nobody else touches them
        clock.advance(100)
        before = len(emu.requests)
        assert sweep.run_sweep()["claimed"] == 0 and len(emu.requests) == before
        # after the lease (120 s) the next sweep resumes them
        clock.advance(21)
        with django_capture_on_commit_callbacks(execute=True):
            counts = sweep.run_sweep()
        assert counts["claimed"] == 8 and counts["completed"] == 8
        figures = assert_invariants(emu, tasks, seen)
    assert figures["completed"] == 8
    assert all(len(times) == 2 for times in gets_by_task(emu, tasks).values())


@pytest.mark.django_db
@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_worker_killed_mid_download_is_resumed_not_repeated(
        evolink_emulator, fault_settings, monkeypatch, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile

    from django_evolink import conf
    from django_evolink.background import downloads
    from django_evolink.models import result_upload_to

    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    with SignalCounter() as seen:
        tasks = create_tasks(1, n=2)
        lost = []
        monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", lost.append)
        clock.advance(60)
        with django_capture_on_commit_callbacks(execute=True):
            assert sweep.run_sweep()["completed"] == 1
        assert len(lost) == 1  # the download job was enqueued... and its worker dies:
        image = GeneratedImage.objects.get(task=tasks[0], index=0)
        assert downloads._claim(image, clock.now)
        partial = result_upload_to(image, "0.png")
        conf.storage().save(partial, ContentFile(b"\x89PNG\r\n\x1a\n-half-written"))
        monkeypatch.undo()  # real enqueue (sync cluster) again; keep the shared clock
        clock = SharedClock(monkeypatch, emu)
        clock.now = timezone.now() + dt.timedelta(seconds=60)
        monkeypatch.setattr(timezone, "now", lambda: clock.now)
        # within the download lease (300 s) nothing is re-enqueued for the claimed image
        with django_capture_on_commit_callbacks(execute=True):
            sweep.run_sweep()
        image.refresh_from_db()
        assert not image.file
        clock.advance(400)
        with django_capture_on_commit_callbacks(execute=True):
            counts = sweep.run_sweep()
        assert counts["downloads_enqueued"] == 1
        figures = assert_invariants(emu, tasks, seen)
    assert figures["images"] == 2
    stored = GeneratedImage.objects.get(pk=image.pk)
    assert stored.file.name == partial and stored.download_attempts == 1
    with stored.file.open("rb") as fh:
        assert len(fh.read()) > 100  # the whole image, not the half-written one
    assert emu.requests.count("GET", f"/files/results/{tasks[0].evolink_id}/*") == 2


# ------------------------------------------------ callbacks over real HTTP (live server)


@pytest.fixture
def live_callbacks(live_server, fault_settings):
    fault_settings.EVOLINK = {**fault_settings.EVOLINK, "CALLBACK_BASE_URL": live_server.url}
    return live_server


def wait_final(tasks, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    ids = [t.pk for t in tasks]
    while ImageTask.objects.filter(pk__in=ids).unfinished().exists():
        assert time.monotonic() < deadline, "tasks did not finish by callback"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_callbacks_duplicated_four_times_and_reordered(evolink_emulator, live_callbacks):
    emu = evolink_emulator
    emu.faults.duplicate_callbacks(4, count=None)
    emu.faults.reorder_callbacks(None)
    with SignalCounter() as seen:
        tasks = create_tasks(8, n=2)
        emu.callbacks.wait_for(8 * 5, timeout=30)  # 4 copies + 1 stale "processing" each
        emu.wait_idle()
        wait_final(tasks)
        figures = assert_invariants(emu, tasks, seen)
    assert figures["completed"] == 8 and figures["images"] == 16
    sent = emu.callbacks.sent()
    # On a loaded machine a callback can beat the recording of its create's answer
    # (the tasks take 1 s here): it is answered 503, never 400, and a retry delivers it.
    early = [a for a in sent if not a.ok]
    assert all(a.http_status == 503 for a in early), early
    delivered = [a for a in sent if a.ok]
    assert len(delivered) == 40
    assert Counter(a.kind for a in delivered) == {"delivery": 8, "duplicate": 24, "stale": 8}
    for task in tasks:
        deliveries = TaskEvent.objects.filter(task=task, source=EventSource.CALLBACK,
                                              note__startswith="callback delivery")
        early_here = sum(a.task_id == task.evolink_id for a in early)
        assert deliveries.count() == 5 + early_here
        assert deliveries.filter(note__endswith=callbacks.EARLY_NOTE).count() == early_here
        # one delivery changed the task (its verified re-fetch); the stale one is stale
        assert TaskEvent.objects.filter(task=task, changed=True,
                                        status_after=Status.COMPLETED).count() == 1
        assert 1 <= task_gets(emu, task.evolink_id) <= 4  # re-fetches of concurrent copies


def one_task_whose_callback_is_retried_once(emu) -> ImageTask:
    """Create one task and wait until it is final, its callback answered 503 and then, on
    Evolink's retry, 200; the invariants checked."""
    with SignalCounter() as seen:
        tasks = create_tasks(1)
        attempts = emu.callbacks.wait_for(2, timeout=30, task_id=tasks[0].evolink_id)
        emu.wait_idle()
        wait_final(tasks)
        assert_invariants(emu, tasks, seen)
    assert [(a.attempt, a.http_status) for a in attempts[:2]] == [(1, 503), (2, 200)]
    return tasks[0]


@pytest.mark.django_db(transaction=True)
def test_a_callback_that_beats_the_recording_of_its_creates_answer_comes_again(
        evolink_emulator, live_callbacks, monkeypatch):
    # The create's answer is held back until Evolink's callback has been answered: the
    # task has no Evolink id yet, so the callback is answered 503 (not 400, "another
    # task") and Evolink's retry, after the answer is recorded, completes the task.
    emu = evolink_emulator
    real = core_services.apply_submit_answer

    def held_back(task, payload):
        deadline = time.monotonic() + 20
        while not any(a.http_status for a in emu.callbacks.sent(payload["id"])):
            assert time.monotonic() < deadline, "no callback came"
            time.sleep(0.01)
        return real(task, payload)

    monkeypatch.setattr(core_services, "apply_submit_answer", held_back)
    task = one_task_whose_callback_is_retried_once(emu)
    early, delivered = TaskEvent.objects.filter(
        task=task, source=EventSource.CALLBACK,
        note__startswith="callback delivery").order_by("received_at", "id")
    assert early.outcome == EventOutcome.RECEIVED and early.changed is False
    assert early.note.endswith(callbacks.EARLY_NOTE)
    assert delivered.outcome != EventOutcome.WRONG_TASK
    task.refresh_from_db()
    assert task.status == Status.COMPLETED and task.images.count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_database_unavailable_while_applying_a_callback_evolinks_retry_succeeds(
        evolink_emulator, live_callbacks, monkeypatch):
    emu = evolink_emulator
    calls = {"n": 0}
    real = core_services.apply_payload  # the re-fetched answer is applied by the refresh path

    def flaky(*args, **kwargs):
        if kwargs.get("source") == EventSource.CALLBACK:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OperationalError("could not connect to server")
        return real(*args, **kwargs)

    monkeypatch.setattr(core_services, "apply_payload", flaky)
    task = one_task_whose_callback_is_retried_once(emu)
    deliveries = list(TaskEvent.objects.filter(task=task, source=EventSource.CALLBACK,
                                               note__startswith="callback delivery")
                      .order_by("received_at", "id"))
    assert [e.outcome for e in deliveries] == [EventOutcome.ERROR, EventOutcome.UNCHANGED]


@pytest.mark.django_db
def test_a_download_cut_mid_body_is_retried_and_stored_once(settings, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    """The image server closes the connection half-way through the body once: the attempt
    is a transient failure, retried after the backoff, and the image is stored once."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from django_evolink.background import downloads

    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": True}
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", lambda pk: None)
    png = make_image_bytes(600, 600)
    served = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            if len(served) == 1:
                self.wfile.write(png[: len(png) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(png)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    try:
        task, _ = make_task(status=Status.COMPLETED)
        image = GeneratedImage.objects.create(
            task=task, index=0, source_url=f"http://127.0.0.1:{httpd.server_address[1]}/0.png",
            next_download_at=timezone.now())
        with SignalCounter() as seen:
            assert downloads.download_image(image) == "retry"
            image.refresh_from_db()
            assert not image.file and image.download_attempts == 1 and not image.download_error
            assert downloads.download_image(image) == "busy"  # not before its retry time
            clock = SharedClock(monkeypatch)
            clock.advance((image.next_download_at - clock.now).total_seconds() + 1)
            with django_capture_on_commit_callbacks(execute=True):
                assert downloads.download_task_images(task.pk)["stored"] == 1
                assert downloads.download_task_images(task.pk)["already"] == 1  # not repeated
    finally:
        httpd.shutdown()
        httpd.server_close()
    image.refresh_from_db()
    assert image.download_attempts == 2 and image.width == 600 and len(served) == 2
    with image.file.open("rb") as fh:
        assert fh.read() == png
    assert seen.of("task_images_stored") == Counter({task.pk: 1})
