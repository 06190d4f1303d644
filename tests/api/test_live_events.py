"""Live updates, part 2: ``GET tasks/{id}/events/`` (Server-Sent Events) under WSGI and ASGI."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.test import AsyncClient
from django.urls import reverse

from django_evolink.core import live
from django_evolink.core.transitions import apply_payload
from django_evolink.models import EventSource, ImageTask
from tests.support.api import detail_url, make_task
from tests.support.evolink_samples import task_answer

pytest_plugins = ["tests.support.api_fixtures"]

pytestmark = [pytest.mark.usefixtures("fast_hashing", "clear_cache")]


def events_url(task_id) -> str:
    return reverse("evolink:task-events", kwargs={"id": str(task_id)})


def parse(chunk: bytes) -> dict | None:
    """A ``task`` event as {"id", "data"}; None for other chunks (retry, heartbeat)."""
    text = chunk.decode()
    if "event: task" not in text:
        return None
    fields = dict(line.split(": ", 1) for line in text.strip().split("\n"))
    return {"id": fields["id"], "data": json.loads(fields["data"])}


@pytest.fixture
def fast_stream(settings):
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_MAX_SECONDS": 2.0,
                        "EVENTS_POLL_INTERVAL": 0.02, "EVENTS_HEARTBEAT_SECONDS": 0.2,
                        "EVENTS_CHANNEL": "poll"}
    return settings


def progress(task: ImageTask, value: int, status: str = "processing", **kw) -> None:
    apply_payload(task, task_answer(status=status, progress=value, **kw), source=EventSource.POLL)


# ------------------------------------------------------------------------------- WSGI


@pytest.mark.django_db
def test_wsgi_stream_sends_the_task_at_once_then_each_change_and_ends_after_final(
    api, user, fast_stream
):
    task, _ = make_task(user, progress=10)
    detail = api.get(detail_url(task.pk)).json()
    response = api.get(events_url(task.pk), HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response.streaming and not response.is_async
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    chunks = iter(response.streaming_content)
    assert next(chunks).startswith(b"retry: ")
    first = parse(next(chunks))
    assert first["data"] == detail  # the detail serializer, at once
    assert live.parse_version(first["id"]) is not None
    progress(task, 40)
    events = []
    for chunk in chunks:
        event = parse(chunk)
        if event:
            events.append(event)
            if event["data"]["progress"] == 40:
                progress(task, 100, "completed", results=["https://files.example.com/0.png"])
    assert [e["data"]["progress"] for e in events] == [40, 100]
    assert events[-1]["data"]["status"] == "completed"  # ...and then the stream ended
    ids = [first["id"], *(e["id"] for e in events)]
    assert [live.parse_version(i) for i in ids] == sorted(live.parse_version(i) for i in ids)
    response.close()


@pytest.mark.django_db
def test_wsgi_stream_is_bounded_with_heartbeats(api, user, fast_stream):
    fast_stream.EVOLINK = {**fast_stream.EVOLINK, "EVENTS_MAX_SECONDS": 0.5}
    task, _ = make_task(user, progress=10)
    started = time.monotonic()
    chunks = list(api.get(events_url(task.pk)).streaming_content)
    assert 0.4 <= time.monotonic() - started < 3
    assert sum(1 for c in chunks if parse(c)) == 1
    assert chunks.count(b": keep-alive\n\n") >= 1


@pytest.mark.django_db
def test_reconnect_with_last_event_id_sends_only_newer_versions(api, user, fast_stream):
    fast_stream.EVOLINK = {**fast_stream.EVOLINK, "EVENTS_MAX_SECONDS": 0.3}
    task, _ = make_task(user, progress=10)
    first = [parse(c) for c in api.get(events_url(task.pk)).streaming_content]
    seen = next(e for e in first if e)["id"]
    again = [parse(c) for c in api.get(events_url(task.pk), HTTP_LAST_EVENT_ID=seen)
             .streaming_content]
    assert not any(again)  # nothing newer
    progress(task, 70)
    newer = [e for e in (parse(c) for c in api.get(events_url(task.pk), HTTP_LAST_EVENT_ID=seen)
                         .streaming_content) if e]
    assert [e["data"]["progress"] for e in newer] == [70]
    # a garbled Last-Event-ID counts as none: the current version is sent
    garbled = [e for e in (parse(c) for c in api.get(events_url(task.pk),
                                                     HTTP_LAST_EVENT_ID="nonsense")
                           .streaming_content) if e]
    assert [e["data"]["progress"] for e in garbled] == [70]


@pytest.mark.django_db
def test_a_final_task_is_sent_once_then_204_for_a_client_that_saw_it(api, user, fast_stream):
    task, _ = make_task(user, status="completed", progress=100)
    events = [e for e in (parse(c) for c in api.get(events_url(task.pk)).streaming_content) if e]
    assert len(events) == 1 and events[0]["data"]["status"] == "completed"
    done = api.get(events_url(task.pk), HTTP_LAST_EVENT_ID=events[0]["id"])
    assert done.status_code == 204


@pytest.mark.django_db
def test_events_need_the_owner_or_staff(api, anon, other_user, user, fast_stream):
    mine, _ = make_task(user)
    theirs, _ = make_task(other_user, evolink_id="task-unified-other")
    assert api.get(events_url(theirs.pk), HTTP_ACCEPT="text/event-stream").status_code == 404
    assert anon.get(events_url(mine.pk)).status_code in (401, 403)
    assert api.get(events_url("not-a-uuid")).status_code == 404


@pytest.mark.parametrize("ask", [{"HTTP_ACCEPT": "text/event-stream"},
                                 {"data": {"format": "event-stream"}}])
def test_errors_are_json_even_to_a_client_that_asked_for_the_stream(api, anon, user, ask):
    """The schema documents the errors as JSON: EventSource's Accept does not change that."""
    missing = api.get(events_url(uuid.uuid4()), **ask)
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"
    assert missing.json()["code"] == "not_found"
    unknown_format = api.get(events_url(uuid.uuid4()), {"format": "AAA"})
    assert unknown_format.status_code == 404
    assert unknown_format.json()["code"] == "not_found"
    refused = anon.get(events_url(uuid.uuid4()), **ask)
    assert refused.status_code in (401, 403)
    assert refused["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_opening_the_stream_watches_the_task(api, user, fast_stream):
    task, _ = make_task(user)
    response = api.get(events_url(task.pk))
    task.refresh_from_db()
    assert task.watched_until is not None
    response.close()


# ------------------------------------------------------------------------------- ASGI


@pytest.fixture
def asgi_threads_db():
    """The ASGI handler runs the view in a thread of its own: let the end of the request
    close that thread's connection as it does outside tests (the test client keeps
    connections open for the test's transaction, which a transactional test has not), so
    PostgreSQL can drop the test database afterwards."""
    request_finished.connect(close_old_connections)
    yield
    request_finished.disconnect(close_old_connections)


def close_connection() -> None:
    connection.close()


def change_and_close(task: ImageTask, value: int, status: str = "processing") -> None:
    try:
        progress(task, value, status)
    finally:
        connection.close()  # a thread of sync_to_async's


@pytest.mark.django_db(transaction=True)
def test_asgi_stream_is_an_async_iterator_with_changes_and_the_end(user, fast_stream,
                                                                   asgi_threads_db):
    task, _ = make_task(user, progress=10)

    async def run() -> list[dict]:
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get(events_url(task.pk),
                                    headers={"Accept": "text/event-stream"})
        assert response.status_code == 200 and response.is_async
        threads = threading.active_count()
        events: list[dict] = []
        async for chunk in response.streaming_content:
            event = parse(chunk)
            if not event:
                continue
            events.append(event)
            # waiting for a change holds no extra thread per client
            assert threading.active_count() <= threads + 1
            value = event["data"]["progress"]
            if value == 10:
                await sync_to_async(change_and_close)(task, 55)
            elif value == 55:
                await sync_to_async(change_and_close)(task, 100, "completed")
        return events

    events = asyncio.run(run())
    assert [e["data"]["progress"] for e in events] == [10, 55, 100]
    assert events[-1]["data"]["status"] == "completed"


@pytest.mark.django_db(transaction=True)
def test_asgi_reconnect_with_last_event_id(user, fast_stream, asgi_threads_db):
    fast_stream.EVOLINK = {**fast_stream.EVOLINK, "EVENTS_MAX_SECONDS": 0.3}
    task, _ = make_task(user, progress=10)

    async def read(last: str | None = None) -> list[dict]:
        client = AsyncClient()
        await client.aforce_login(user)
        headers = {"Last-Event-ID": last} if last else {}
        response = await client.get(events_url(task.pk), headers=headers)
        events = [e async for e in _events(response.streaming_content)]
        await sync_to_async(close_connection)()  # aforce_login's thread
        return events

    first = asyncio.run(read())
    assert len(first) == 1
    assert asyncio.run(read(first[0]["id"])) == []


async def _events(content):
    async for chunk in content:
        event = parse(chunk)
        if event:
            yield event


# --------------------------------------------------------------- PostgreSQL wake-ups


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_notify_wakes_the_stream_at_once(api, user, settings):
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL-only")
    # a long database-check interval: only NOTIFY can bring the change in time
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_MAX_SECONDS": 10.0,
                        "EVENTS_POLL_INTERVAL": 30.0, "EVENTS_HEARTBEAT_SECONDS": 30.0,
                        "EVENTS_CHANNEL": "auto"}
    assert live.channel_kind() == "postgres"
    task, _ = make_task(user, progress=10)
    response = api.get(events_url(task.pk))
    chunks = iter(response.streaming_content)
    next(chunks)  # retry
    assert parse(next(chunks))["data"]["progress"] == 10
    deadline = time.monotonic() + 5
    while not live.hub.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.hub.connected
    def change() -> None:
        try:
            progress(task, 60)
        finally:
            connection.close()  # this thread's connection

    timer = threading.Timer(0.2, change)
    started = time.monotonic()
    timer.start()
    event = parse(next(chunks))
    assert event["data"]["progress"] == 60 and time.monotonic() - started < 3
    timer.join()
    response.close()
    assert live.hub.wait_idle()  # the listener ends with the last stream


# ------------------------------------------------- a stream polls when no loop runs


@pytest.mark.django_db
@pytest.mark.evolink_emulator(speed=10.0)
def test_without_a_watch_loop_the_stream_polls_its_task_each_interval(
    api, user, settings, evolink_emulator
):
    from tests.support.background import db_task, emulated_task, task_gets

    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_MAX_SECONDS": 15.0,
                        "EVENTS_POLL_INTERVAL": 0.05, "EVENTS_CHANNEL": "poll",
                        "WATCH_POLL_INTERVAL": 0.5, "MAX_RETRIES": 0}
    remote = emulated_task(evolink_emulator, duration=30.0)  # 3 s of real time
    task = db_task(remote.id, due_in=300, user=user)
    started = time.monotonic()
    events = [e for e in (parse(c) for c in api.get(events_url(task.pk)).streaming_content)
              if e]
    elapsed = time.monotonic() - started
    values = [e["data"]["progress"] for e in events]
    assert events[-1]["data"]["status"] == "completed" and values[-1] == 100
    assert any(0 < v < 100 for v in values), values  # the bar moves on the way
    assert values == sorted(values)
    # one status request per watched interval (0.5 s), not one per database check
    assert task_gets(evolink_emulator, remote.id) <= elapsed / 0.5 + 2
