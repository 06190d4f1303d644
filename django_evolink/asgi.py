"""ASGI: serve django-evolink's event streams without a thread per open stream.

Django's ASGI handler runs every request inside its own ``ThreadSensitiveContext``: the
first thread-sensitive call of the request (the ``request_started`` receivers, a
synchronous view such as DRF's) starts an executor thread for that request, and the
thread lives, idle, until the response is finished - for an event stream, as long as
the stream stays open. Wrap the site's application to serve ``tasks/{id}/events/``
outside such a context::

    # asgi.py
    from django.core.asgi import get_asgi_application
    from django_evolink.asgi import EventStreamRouter

    application = EventStreamRouter(get_asgi_application())

The stream's requests then run their brief synchronous parts (authentication, the
permission check, the signals) on asgiref's one shared thread and wait on the event
loop, so a thousand open streams hold no thread each; every other request is passed to
the application unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

#: The URL name of the event stream (``evolink:task-events``).
EVENTS_VIEW = "evolink:task-events"


def is_event_stream(scope: Scope) -> bool:
    """True when ``scope`` is an HTTP request for ``evolink:task-events``."""
    if scope.get("type") != "http":
        return False
    path = str(scope.get("path", ""))
    if not path.endswith("/events/"):
        return False
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root):]
    try:
        return resolve(path).view_name == EVENTS_VIEW
    except Resolver404:
        return False


class EventStreamRouter:
    """Wraps Django's ASGI application; see the module docstring."""

    def __init__(self, application: ASGIHandler) -> None:
        if not isinstance(application, ASGIHandler):
            raise TypeError(
                "EventStreamRouter wraps Django's ASGI application "
                "(django.core.asgi.get_asgi_application()), not "
                f"{type(application).__name__}."
            )
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_event_stream(scope):
            # Django's handler without its per-request ThreadSensitiveContext
            await self.application.handle(scope, receive, send)
            return
        await self.application(scope, receive, send)
