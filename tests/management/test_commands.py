"""Management commands against the emulator."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from django_evolink.background import watch
from django_evolink.background.downloads import download_task_images
from django_evolink.models import GeneratedImage, ImageTask, Status, TaskEvent
from tests.conftest import make_image_bytes
from tests.support.background import db_task, emulated_task

pytestmark = pytest.mark.django_db


def run(*args, **kw) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **kw)
    return out.getvalue()


@pytest.fixture
def fast(settings, evolink_emulator):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0}
    return evolink_emulator


def test_submit_local_file_wait_prints_stored_paths(fast, tmp_path, settings):
    path = tmp_path / "in.png"
    path.write_bytes(make_image_bytes(600, 600))
    fast.task_duration = 2.0  # 2 emulated seconds at 30x: done in ~0.1 s
    out = run("evolink_submit", "--prompt", "a cat", "--image", str(path), "--n", "2", "--wait",
              "--interval", "0.05", "--timeout", "20")
    task = ImageTask.objects.get()
    assert task.status == Status.COMPLETED and "100% completed" in out and "\r[" in out
    assert fast.requests.count("POST", "/api/v1/files/upload/stream") == 1
    stored = [i.file.path for i in task.images.order_by("index")]
    assert len(stored) == 2 and all(p in out for p in stored)


@pytest.mark.django_db(transaction=True)
@pytest.mark.evolink_emulator(speed=10.0)
def test_submit_wait_with_a_cluster_watches_the_task_and_shows_real_progress(
    evolink_emulator, tmp_path, settings
):
    """With a cluster (not sync) --wait marks the task watched: the watch loop (run here in
    a thread, as a worker would) polls it every WATCH_POLL_INTERVAL, so the bar moves."""
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0, "WATCH_POLL_INTERVAL": 0.5}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    evolink_emulator.task_duration = 30.0  # 3 s of real time at 10x
    path = tmp_path / "in.png"
    path.write_bytes(make_image_bytes(600, 600))
    stop = threading.Event()

    def worker() -> None:  # the cluster: the watch loop, and the download jobs
        try:
            while not stop.is_set():
                watch.run_watch_loop(max_seconds=1.0, continue_after=False)
                for pk in ImageTask.objects.filter(status=Status.COMPLETED,
                                                   images_stored_at__isnull=True) \
                        .values_list("pk", flat=True):
                    download_task_images(pk)
                stop.wait(0.1)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    out = StringIO()
    try:
        call_command("evolink_submit", "--prompt", "a cat", "--image", str(path), "--wait",
                     "--interval", "0.2", "--timeout", "20", stdout=out, stderr=StringIO())
    finally:
        stop.set()
        thread.join()
    task = ImageTask.objects.get()
    assert task.status == Status.COMPLETED and task.watched_until is not None
    shown = [int(v) for v in re.findall(r"(\d+)% processing", out.getvalue())]
    assert any(0 < v < 100 for v in shown), out.getvalue()  # not 0 % then 100 %
    assert "100% completed" in out.getvalue()


def test_submit_refuses_bad_local_file_and_missing_path(fast, tmp_path):
    bad = tmp_path / "tiny.png"
    bad.write_bytes(make_image_bytes(50, 50))
    with pytest.raises(CommandError, match="384"):
        run("evolink_submit", "--prompt", "x", "--image", str(bad))
    with pytest.raises(CommandError, match="no such file"):
        run("evolink_submit", "--prompt", "x", "--image", str(tmp_path / "nope.png"))
    with pytest.raises(CommandError, match="n"):
        run("evolink_submit", "--prompt", "x", "--image", "https://example.com/a.png", "--n", "9")
    assert not ImageTask.objects.exists() and len(fast.requests) == 0


def test_submit_refused_by_a_limit_prints_one_line_and_uploads_nothing(fast, tmp_path,
                                                                       settings):
    settings.EVOLINK = {**settings.EVOLINK, "DEFAULT_IMAGE_CREDITS": 2,
                        "LIMITS": {"CREDITS_PER_DAY": 3}}
    path = tmp_path / "in.png"
    path.write_bytes(make_image_bytes(600, 600))
    with pytest.raises(CommandError) as info:
        run("evolink_submit", "--prompt", "a cat", "--image", str(path), "--n", "2")
    message = str(info.value)
    assert message.startswith("Not submitted: Limit reached: 3 credits for the whole site")
    assert "\n" not in message and "needs about 4 credits" in message
    assert not ImageTask.objects.exists() and len(fast.requests) == 0


def test_submit_wait_reports_a_failed_task(fast, tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(make_image_bytes(600, 600))
    fast.task_duration = 2.0
    fast.faults.fail_next_tasks(1, message="the model failed")
    with pytest.raises(CommandError, match="failed"):
        run("evolink_submit", "--prompt", "a cat", "--image", str(path), "--wait",
            "--interval", "0.05", "--timeout", "20")


def test_credits(fast):
    fast.set_credits(42.5)
    assert "Remaining credits: 42.5" in run("evolink_credits")


def test_credits_keep_four_decimals_and_the_keys_own_balance(fast):
    # Evolink's amounts have up to four decimals; the key's balance is not the account's
    fast.set_credits(1095.3912, token=99416.4401)
    out = run("evolink_credits")
    assert "Remaining credits: 1095.3912" in out
    assert "This key: 99416.4401 left" in out
    fast.set_credits(12.5, token=None)  # a key without a limit of its own
    out = run("evolink_credits")
    assert "Remaining credits: 12.5" in out and "This key: unlimited" in out


def test_credits_error_is_a_command_error(settings):
    settings.EVOLINK = {**settings.EVOLINK, "BASE_URL": "http://127.0.0.1:9", "MAX_RETRIES": 0}
    with pytest.raises(CommandError, match="Could not read the balance"):
        run("evolink_credits")


def test_poll_command(fast):
    remote = emulated_task(fast, duration=0.1)
    fast.clock.advance(1)
    task = db_task(remote.id)
    assert "completed=1" in run("evolink_poll", "--all")
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    assert "nothing to do" in run("evolink_poll")
    with pytest.raises(CommandError):
        run("evolink_poll", "--limit", "0")


def test_purge_dry_run_then_delete_in_batches(settings, tmp_path):
    from django_evolink import conf

    storage = conf.storage()
    old = timezone.now() - dt.timedelta(days=40)
    keep = db_task("task-keep", status=Status.COMPLETED)
    names = []
    for i in range(3):
        task = db_task(f"task-old-{i}", status=Status.COMPLETED)
        name = storage.save(f"evolink/results/{task.pk}/0.png", StringIO("x"))
        names.append(name)
        GeneratedImage.objects.create(task=task, index=0, source_url="https://e.com/r.png",
                                      file=name)
        TaskEvent.objects.create(task=task, source="poll", payload={})
        ImageTask.objects.filter(pk=task.pk).update(created_at=old)
    running = db_task("task-running", status=Status.PROCESSING)
    ImageTask.objects.filter(pk=running.pk).update(created_at=old)
    out = run("evolink_purge", "--older-than", "30", "--dry-run")
    assert "Would delete 3 task(s), 3 event(s), 3 file(s)" in out
    assert ImageTask.objects.count() == 5 and all(storage.exists(n) for n in names)
    out = run("evolink_purge", "--older-than", "30", "--batch-size", "2")
    assert "Deleted 3 task(s), 3 event(s), 3 file(s)" in out
    assert set(ImageTask.objects.values_list("pk", flat=True)) == {keep.pk, running.pk}
    assert not any(storage.exists(n) for n in names)
    with pytest.raises(CommandError, match="older-than"):
        run("evolink_purge")


def test_install_schedule_command_is_idempotent():
    from django_q.models import Schedule

    assert "Installed" in run("evolink_install_schedule")
    assert "already installed" in run("evolink_install_schedule")
    assert Schedule.objects.filter(func="django_evolink.background.jobs.sweep").count() == 1


def test_install_schedule_moves_a_0_1_schedule_to_the_new_job_path():
    """0.1.0 stored the sweep as ``django_evolink.tasks.sweep``: installing again keeps that
    row (and an admin's edits to it) but points it at the job's new home; the old path
    still runs for jobs already queued."""
    from django_q.models import Schedule

    from django_evolink import tasks as legacy_jobs

    Schedule.objects.all().delete()
    old = Schedule.objects.create(func="django_evolink.tasks.sweep", name="edited by staff",
                                  schedule_type=Schedule.MINUTES, minutes=5, repeats=-1)
    assert "already installed" in run("evolink_install_schedule")
    old.refresh_from_db()
    assert (old.func, old.name, old.minutes) == ("django_evolink.background.jobs.sweep",
                                                 "edited by staff", 5)
    assert Schedule.objects.count() == 1
    assert legacy_jobs.sweep() == jobs_sweep_counts()


def jobs_sweep_counts() -> dict[str, int]:
    from django_evolink.background import jobs

    return jobs.sweep()


# ------------------------------------------------------------- models and parameters --
def test_evolink_models_lists_the_allowed_models_and_json_is_get_models(settings):
    settings.EVOLINK = {**settings.EVOLINK,
                        "MODELS": ["wan2.5-image-to-image", "wan2.5-text-to-image"]}
    text = run("evolink_models")
    assert "wan2.5-image-to-image (default)" in text and "wan2.5-text-to-image\n" in text
    assert "  size" in text and "WIDTHxHEIGHT" in text
    data = json.loads(run("evolink_models", "--json"))
    assert [m["name"] for m in data] == ["wan2.5-image-to-image", "wan2.5-text-to-image"]
    assert data[1]["parameters"]["properties"]["model"]["const"] == "wan2.5-text-to-image"
    assert data[0]["default"] is True and data[0]["kind"] == "image"


def test_evolink_submit_a_text_to_image_model_with_params(settings, evolink_emulator):
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": None}
    out = run("evolink_submit", "--model", "wan2.5-text-to-image", "--prompt", "a fox",
              "--param", "size=1024x1024", "--param", "prompt_extend=false", "--n", "2")
    assert "Task" in out
    [sent] = [r.json for r in evolink_emulator.requests
              if r.path == "/v1/images/generations"]
    assert sent == {"model": "wan2.5-text-to-image", "prompt": "a fox", "n": 2,
                    "size": "1024x1024", "prompt_extend": False}


def test_evolink_submit_refuses_a_bad_param(settings):
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": None}
    with pytest.raises(CommandError, match="quality: quality must be one of: 2K, 4K"):
        run("evolink_submit", "--model", "doubao-seedream-4.5", "--prompt", "x",
            "--param", "quality=1K")
    with pytest.raises(CommandError, match="NAME=VALUE"):
        run("evolink_submit", "--model", "doubao-seedream-4.5", "--prompt", "x",
            "--param", "quality")
