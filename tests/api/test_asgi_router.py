"""django_evolink.asgi.EventStreamRouter: event streams under ASGI hold no thread each."""

from __future__ import annotations

import asyncio
import base64
import threading

import pytest
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished
from django.db import close_old_connections, connection

from django_evolink.asgi import EventStreamRouter, is_event_stream
from tests.support.api import make_task

pytest_plugins = ["tests.support.api_fixtures"]


def scope(path: str, **extra) -> dict:
    return {"type": "http", "path": path, "root_path": "", **extra}


def test_only_the_event_stream_route_is_routed_apart():
    assert is_event_stream(scope("/evolink/tasks/0f0e0d0c-0000-0000-0000-000000000000/events/"))
    assert not is_event_stream(scope("/evolink/tasks/abc/"))
    assert not is_event_stream(scope("/elsewhere/events/"))
    assert not is_event_stream({"type": "websocket", "path": "/evolink/tasks/x/events/"})
    assert is_event_stream(scope("/site/evolink/tasks/x/events/", root_path="/site"))


def test_it_wraps_django_asgi_application_only():
    with pytest.raises(TypeError, match="get_asgi_application"):
        EventStreamRouter(lambda scope, receive, send: None)  # type: ignore[arg-type]


@pytest.mark.django_db(transaction=True)
def test_ten_open_streams_add_no_thread_each(user, settings):
    settings.EVOLINK = {**settings.EVOLINK, "EVENTS_CHANNEL": "poll",
                        "EVENTS_POLL_INTERVAL": 0.05, "EVENTS_MAX_SECONDS": 30.0}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user.set_password("pw-asgi")
    user.save()
    tasks = [make_task(user, evolink_id=f"task-unified-asgi-{i}")[0] for i in range(10)]
    app = EventStreamRouter(get_asgi_application())
    auth = b"Basic " + base64.b64encode(b"alice:pw-asgi")
    request_finished.connect(close_old_connections)  # as outside tests (see test_live_events)

    async def stream(task, first: asyncio.Event, done: asyncio.Event, status: list) -> None:
        path = f"/evolink/tasks/{task.pk}/events/"
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif b"event: task" in message.get("body", b""):
                first.set()

        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                   "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                   "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
                   "server": ("testserver", 80),
                   "headers": [(b"host", b"testserver"), (b"authorization", auth)]},
                  receive, send)

    async def main() -> tuple[int, int, list]:
        done = asyncio.Event()
        firsts = [asyncio.Event() for _ in tasks]
        status: list = []
        runners = [asyncio.create_task(stream(tasks[0], firsts[0], done, status))]
        await asyncio.wait_for(firsts[0].wait(), 30)
        before = threading.active_count()
        runners += [asyncio.create_task(stream(t, f, done, status))
                    for t, f in zip(tasks[1:], firsts[1:], strict=True)]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 30)
        await asyncio.sleep(0.3)
        during = threading.active_count()
        done.set()
        await asyncio.wait(runners, timeout=30)
        return before, during, status

    try:
        before, during, status = asyncio.run(main())
    finally:
        request_finished.disconnect(close_old_connections)
        connection.close()
    assert status == [200] * 10
    # nine more open streams: at most asyncio's shared pool grows, never a thread each
    assert during - before < 9, (before, during)
