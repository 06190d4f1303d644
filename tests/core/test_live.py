"""Versions, ETags and the change channel of live updates (django_evolink.core.live)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_evolink.core import live, transitions
from django_evolink.exceptions import EvolinkConfigurationError
from django_evolink.models import EventSource, ImageTask, Status
from tests.support.evolink_samples import task_answer

REDIS_URL = "redis://127.0.0.1:6379/6"


def test_versions_parse_and_order():
    assert live.parse_version("1764638400123456.2") == (1764638400123456, 2)
    assert live.parse_version("1764638400123456.2") > live.parse_version("1764638400123456.1")
    for bad in (None, "", "abc", "1.x", "-1.0", "1", "1." + "9" * 7, "9" * 21 + ".0"):
        assert live.parse_version(bad) is None


def test_if_none_match_uses_the_weak_comparison():
    assert live.etag_matches('W/"a"', 'W/"a"')
    assert live.etag_matches('"a"', 'W/"a"')
    assert live.etag_matches('"b", W/"a"', 'W/"a"')
    assert live.etag_matches("*", 'W/"a"')
    assert not live.etag_matches('W/"b"', 'W/"a"')
    assert not live.etag_matches(None, 'W/"a"') and not live.etag_matches("", 'W/"a"')


@pytest.mark.django_db
def test_the_channel_follows_the_setting(settings):
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "auto", "EVENTS_REDIS_URL": None}
    assert live.channel_kind() == ("postgres" if connection.vendor == "postgresql" else "poll")
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "poll"}
    assert live.channel_kind() == "poll"
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "carrier-pigeon"}
    with pytest.raises(EvolinkConfigurationError, match="'auto', 'postgres', 'redis', 'poll'"):
        live.channel_kind()
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "redis"}
    with pytest.raises(EvolinkConfigurationError, match="EVENTS_REDIS_URL"):
        live._redis()


def test_redis_pubsub_wakes_a_subscription(settings):
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "redis",
                        "EVENTS_REDIS_URL": REDIS_URL}
    task_id = uuid.uuid4()
    sub = live.subscribe(task_id)
    other = live.subscribe(uuid.uuid4())
    try:
        deadline = time.monotonic() + 5
        while not sub.live and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sub.live  # fails loudly when Redis is down
        assert not sub.wait(0.05)
        started = time.monotonic()
        live.publish(task_id)
        assert sub.wait(3.0) and time.monotonic() - started < 1.5
        assert not other.wait(0.2)  # another task's stream sleeps on
    finally:
        sub.close()
        other.close()
    assert live.hub.wait_idle()  # the listener ends with the last stream


# ------------------------------------------------------------ what is announced


def _announced_tasks(path: str) -> tuple[list, list]:
    """Two tasks of the same state, the first watched by its row only (the instances
    keep ``watched_until`` None: the row's mark as the change is written decides);
    applies one change to each by ``path``; returns (tasks, results)."""
    submit = path == "submit"
    ids = [f"task-unified-1757156493-live{i}" for i in range(2)]
    tasks = [ImageTask.objects.create(
        model="wan2.5-image-to-image", prompt="a cat", image_urls=["https://example.com/a.png"],
        n=1, submit_started_at=timezone.now(),
        **({} if submit else {"evolink_id": evolink_id, "status": Status.PENDING}))
        for evolink_id in ids]
    ImageTask.objects.filter(pk=tasks[0].pk).update(
        watched_until=timezone.now() + timedelta(seconds=30))
    answers = [task_answer(evolink_id, status="pending" if submit else "processing")
               for evolink_id in ids]
    if submit:
        results = [transitions.apply_submit_answer(t, a)
                   for t, a in zip(tasks, answers, strict=True)]
    elif path == "batch":
        results = transitions.apply_answers(
            [transitions.Answer(t.pk, a, transitions.parse_payload(a))
             for t, a in zip(tasks, answers, strict=True)], source=EventSource.POLL)
    else:
        results = [transitions.apply_payload(t.pk, a, source=EventSource.POLL)
                   for t, a in zip(tasks, answers, strict=True)]
    return tasks, results


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["one answer", "batch", "submit"])
def test_every_apply_path_announces_a_change_only_while_its_task_is_watched(
    path, settings, monkeypatch, django_capture_on_commit_callbacks
):
    # a channel that can wake a stream (publishing itself is replaced: no Redis needed)
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "redis",
                        "EVENTS_REDIS_URL": REDIS_URL}
    published: list = []
    monkeypatch.setattr(live, "publish", published.append)
    monkeypatch.setattr(live, "publish_many", published.extend)
    with django_capture_on_commit_callbacks(execute=True):
        tasks, results = _announced_tasks(path)
    assert [r.changed for r in results] == [True, True]
    assert published == [tasks[0].pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["one answer", "batch", "submit"])
def test_postgres_notify_only_for_a_watched_task(path, settings):
    """The real channel: a watched task's change is NOTIFYed at commit, an unwatched
    task's (the submit's one-statement write included) is not."""
    import psycopg

    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL-only")
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "auto"}
    params = connection.settings_dict
    listener = psycopg.connect(host=params["HOST"], port=params["PORT"] or 5432,
                               user=params["USER"], dbname=params["NAME"], autocommit=True)
    try:
        listener.execute(f"LISTEN {live.CHANNEL}")
        tasks, results = _announced_tasks(path)
        heard = [n.payload for n in listener.notifies(timeout=1.0)]
    finally:
        listener.close()
    assert [r.changed for r in results] == [True, True]
    assert heard == [str(tasks[0].pk)]
