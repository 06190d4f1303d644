"""The emulator's HTTP plumbing: server, request dispatch, multipart parsing, answers.

A standard-library ``ThreadingHTTPServer`` whose handler reads a request, logs it
(``RequestRecord``), applies the fault switches of its endpoint (latency, scripted errors),
calls the endpoint's handler through the route table and sends the answer: JSON, a
:class:`RawAnswer` (file contents), an :class:`~.errors.ApiError` body, or nothing at all
for a :class:`LostAnswer` (the connection is held, reset or closed). ``/_emulator/...``
goes to the control API unlogged.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import re
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, unquote, urlsplit

from .core import EmulatorCore
from .errors import ApiError
from .faults import ERROR_TYPES
from .state import RequestRecord

logger = logging.getLogger("django_evolink.emulator")

CONTROL_PREFIX = "/_emulator"


class LostAnswer:
    """Returned by a handler when the answer must never arrive (the lose-answer fault)."""

    def __init__(self, mode: str, hold: float):
        self.mode, self.hold = mode, hold


class RawAnswer:
    """A non-JSON answer (file contents)."""

    def __init__(self, content: bytes, content_type: str, headers: dict[str, str] | None = None):
        self.content, self.content_type, self.headers = content, content_type, headers or {}


@dataclass
class ApiRequest:
    """What an endpoint handler is given: the request, its body read and parsed."""

    path: str
    headers: Message
    body: Any = None  # the JSON body, None if absent or multipart
    raw: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route
    query: dict[str, str] = field(default_factory=dict)  # last value of each parameter


class Route(NamedTuple):
    """``method`` + ``pattern`` (the whole path) -> ``handler``, faulted as ``endpoint``."""

    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Callable[[ApiRequest], Any]
    multipart: bool = False  # log the form fields and file sizes of the body
    files_api: bool = False  # errors in the files API's envelope {success, code, msg}


#: The control API: (method, path, query, JSON body) -> (status, JSON answer).
ControlHandler = Callable[[str, str, dict[str, list[str]], Any], tuple[int, dict[str, Any]]]


def parse_multipart(content_type: str, raw: bytes) -> tuple[dict[str, str],
                                                             dict[str, tuple[str, bytes]]]:
    """Split a multipart/form-data body into text fields and files (name -> (filename, bytes))."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name or not isinstance(name, str):  # (an RFC 2231 name is a tuple: no field)
            continue
        # decode=True gives the bytes of a leaf part (None for a nested multipart); the
        # stubs type it for any part.
        payload = cast("bytes | None", part.get_payload(decode=True)) or b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, payload)
        else:
            fields[name] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    return fields, files


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Serves one emulator: its state (``core``), API ``routes`` and ``control`` API."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], core: EmulatorCore, routes: Sequence[Route],
                 control: ControlHandler) -> None:
        self.core, self.routes, self.control = core, tuple(routes), control
        super().__init__(address, RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection error from %s", client_address, exc_info=True)


class RequestHandler(BaseHTTPRequestHandler):
    """One HTTP request to the emulator."""

    server: EmulatorHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "EvolinkEmulator/1.0"
    # TCP_NODELAY: the status line + headers and the body are two writes; with Nagle on,
    # a kept-alive client's delayed ACK holds the body back ~40 ms on every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _send(self, status: int, payload: dict[str, Any] | RawAnswer,
              headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, RawAnswer):
            data, content_type = payload.content, payload.content_type
            headers = {**payload.headers, **(headers or {})}
        else:
            data = json.dumps(payload).encode()
            content_type = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.server.routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                return route, match.groupdict()
        return None, {}

    def _dispatch(self, method: str) -> None:
        core = self.server.core
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").lower()
        body: Any = None
        bad_json = False
        if raw and "multipart/" not in content_type:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True

        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            status, answer = self.server.control(method, path, parse_qs(parts.query), body)
            self._send(status, answer)
            return

        route, params = self._route(method, path)
        logged_body = body
        if route is not None and route.multipart and raw:
            try:
                fields, files = parse_multipart(self.headers.get("Content-Type") or "", raw)
                logged_body = {**fields, **{k: {"filename": f, "size": len(c)}
                                            for k, (f, c) in files.items()}}
            except Exception:
                logged_body = None
        record = RequestRecord(
            method=method, path=path, query=parts.query,
            headers={k: v for k, v in self.headers.items() if k.lower() != "authorization"},
            json=logged_body, body_size=len(raw), timestamp=core.clock.now(),
            real_time=time.monotonic(),
        )
        core.requests.append(record)

        extra: dict[str, str] = {}
        try:
            if route is None:
                raise ApiError(404, f"Unknown endpoint: {method} {path}")
            delay = core.faults.latency_for(route.endpoint)
            if delay > 0:
                core._stop.wait(delay)
            injected = core.faults.error_for(route.endpoint)
            if injected is not None:
                default_type, default_message = ERROR_TYPES[injected.status]
                raise ApiError(injected.status, injected.message or default_message,
                               retry_after=injected.retry_after)
            limit = core.upload_max_bytes if route.files_api else core.request_max_bytes
            if len(raw) > limit:
                raise ApiError(413, f"The request body is {len(raw)} bytes, larger than the "
                               f"{limit / 1024 / 1024:g} MB allowed ({limit} bytes)",
                               "file" if route.files_api else "body")
            if bad_json:
                raise ApiError(400, "The request body is not valid JSON")
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            result: Any = route.handler(ApiRequest(path, self.headers, body, raw, params, query))
            status = 200
        except ApiError as exc:
            status = exc.status
            result = exc.files_body() if route is not None and route.files_api else exc.body()
            if exc.retry_after is not None:
                ra = exc.retry_after
                extra["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        except Exception:  # pragma: no cover - a bug in the emulator
            logger.exception("emulator error on %s %s", method, path)
            status, result = 500, ApiError(500, "Internal server error").body()

        if isinstance(result, LostAnswer):
            record.status = None
            self._lose(result)
            return
        record.status = status
        core.requests.notify()
        self._send(status, result, extra)

    def _lose(self, lost: LostAnswer) -> None:
        self.close_connection = True
        if lost.mode == "timeout":
            self.server.core._stop.wait(lost.hold)
        elif lost.mode == "reset":
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            except OSError:  # pragma: no cover
                pass
        if lost.mode != "reset":
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connection.close()
