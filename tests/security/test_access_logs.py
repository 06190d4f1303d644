"""Callback tokens in access logs: the filter operators install, and token rotation."""

from __future__ import annotations

import logging
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from gunicorn.config import Config
from gunicorn.glogging import Logger as GunicornLogger

from django_evolink.api.logfilters import HideCallbackTokens
from django_evolink.models import EventSource, ImageTask
from tests.support.api import callback_path, make_task

pytest_plugins = ["tests.support.api_fixtures"]
pytestmark = [pytest.mark.django_db]

TOKEN = "Zx9-abcdefghijklmnopqrstuvwxyz0123456789_AB"


def capture(logger: logging.Logger) -> StringIO:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(HideCallbackTokens())
    logger.addHandler(handler)
    return stream


def test_runservers_request_log_line_loses_the_token():
    """``django.server`` logs ``"POST /evolink/callback/<token>/ HTTP/1.1" 200 31``."""
    logger = logging.getLogger("tests.django.server")
    logger.setLevel(logging.INFO)
    stream = capture(logger)
    logger.info('"%s" %s %s', f"POST /evolink/callback/{TOKEN}/ HTTP/1.1", "200", "31")
    assert TOKEN not in stream.getvalue()
    assert "/evolink/callback/[redacted]/ HTTP/1.1" in stream.getvalue()


def test_gunicorns_access_log_loses_the_token_in_every_atom():
    """gunicorn's access logger formats a dict of atoms (``%(r)s``, ``%(U)s``, ...)."""
    cfg = Config()
    cfg.set("accesslog", "-")
    glog = GunicornLogger(cfg)
    stream = capture(glog.access_log)
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": f"/evolink/callback/{TOKEN}/",
               "PATH_INFO": f"/evolink/callback/{TOKEN}/", "QUERY_STRING": "",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.7"}
    response = SimpleNamespace(status="200 OK", status_code=200, sent=31,
                               headers=[("Content-Type", "application/json")])
    request = SimpleNamespace(headers=[], method="POST", path=environ["PATH_INFO"],
                              query="", uri=environ["RAW_URI"], version=(1, 1))
    glog.access(response, request, environ, SimpleNamespace(seconds=0, microseconds=1000))
    line = stream.getvalue()
    assert "203.0.113.7" in line and "POST" in line
    assert TOKEN not in line and "/callback/[redacted]/" in line


def test_other_paths_are_left_alone():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, '"%s" %s',
                               ("GET /evolink/tasks/?page=2 HTTP/1.1", 200), None)
    HideCallbackTokens().filter(record)
    assert record.getMessage() == '"GET /evolink/tasks/?page=2 HTTP/1.1" 200'


def test_rotating_a_token_retires_the_old_callback_url(client, user):
    task, raw = make_task(user)
    assert client.post(callback_path(raw), {}, content_type="application/json").status_code \
        == 400  # the token works (the body is refused)
    call_command("evolink_rotate_token", str(task.pk), stdout=StringIO())
    events_before = task.events.count()
    response = client.post(callback_path(raw), {"id": task.evolink_id, "status": "completed"},
                           content_type="application/json")
    assert response.status_code == 404 and task.events.count() == events_before
    task.refresh_from_db()
    assert task.next_poll_at is not None  # polling tracks it from now on
    rotation = task.events.filter(source=EventSource.SYSTEM).get()
    assert "callback token rotated" in rotation.note and raw not in str(rotation.payload)


def test_rotate_command_for_every_unfinished_task_and_its_errors(user):
    unfinished, _ = make_task(user, evolink_id="task-unified-1-a")
    done, _ = make_task(user, status="completed", evolink_id="task-unified-1-b")
    hashes = dict(ImageTask.objects.values_list("pk", "callback_token_hash"))
    out = StringIO()
    call_command("evolink_rotate_token", "--unfinished", stdout=out)
    assert "1 task(s) rotated" in out.getvalue()
    after = dict(ImageTask.objects.values_list("pk", "callback_token_hash"))
    assert after[unfinished.pk] != hashes[unfinished.pk] and after[done.pk] == hashes[done.pk]
    for args in ((), ("not-a-uuid",), ("0d1f8a9e-1c3b-4a3e-9d0f-5f2a1b7c9e11",),
                 (str(done.pk), "--unfinished")):
        with pytest.raises(CommandError):
            call_command("evolink_rotate_token", *args, stdout=StringIO())
