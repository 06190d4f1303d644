"""The emulator's HTTP server and its Python API (:class:`Emulator`).

Pure standard library (``http.server``) plus requests and Pillow: importable and runnable
without Django.
"""

from __future__ import annotations

import email.parser
import email.policy
import heapq
import itertools
import json
import logging
import re
import secrets
import socket
import string
import struct
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from ..evolink.addresses import host_is_private
from . import images
from .faults import ERROR_TYPES, Faults
from .state import (
    CallbackAttempt,
    CallbackLog,
    Clock,
    Credits,
    RequestLog,
    RequestRecord,
    Task,
    TaskStore,
    UploadedFile,
)

logger = logging.getLogger("django_evolink.emulator")

DEFAULT_MODEL = "wan2.5-image-to-image"
DEFAULT_TASK_SECONDS = 30.0
EVOLINK_RETRY_DELAYS = (1.0, 2.0, 4.0)
MAX_PROMPT = 2000
MAX_CALLBACK_URL = 2048
BILLING_URL = "https://evolink.ai/dashboard/billing"
#: Evolink answers in China Standard Time (the upload example uses +08:00).
EVOLINK_TZ = timezone(timedelta(hours=8))
_ID_ALPHABET = string.ascii_lowercase + string.digits


class ApiError(Exception):
    """An Evolink error answer: ``{"error": {code, message, type, param?, ...}}``."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 fallback_suggestion: str | None = None, retry_after: float | None = None,
                 error_type: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.fallback_suggestion = fallback_suggestion
        self.retry_after = retry_after
        self.error_type = error_type or ERROR_TYPES.get(status, ("internal_server_error", ""))[0]

    def body(self) -> dict[str, Any]:
        """The JSON body, exactly as section 6 of evolink-api.md."""
        error: dict[str, Any] = {"code": self.status, "message": self.message,
                                 "type": self.error_type}
        if self.param is not None:
            error["param"] = self.param
        if self.fallback_suggestion is not None:
            error["fallback_suggestion"] = self.fallback_suggestion
        return {"error": error}


class _Lost:
    """Returned by the create handler when the lose-answer fault fires."""

    def __init__(self, mode: str, hold: float):
        self.mode, self.hold = mode, hold


class _Raw:
    """A non-JSON answer (file contents)."""

    def __init__(self, content: bytes, content_type: str, headers: dict[str, str] | None = None):
        self.content, self.content_type, self.headers = content, content_type, headers or {}


def is_internal_host(host: str) -> bool:
    """True for loopback, private, link-local, CGNAT, reserved or unspecified addresses.

    Hostnames are not resolved (the emulator must work offline); ``localhost`` and
    ``*.localhost`` names count as internal, as do IPv4 addresses written as an integer,
    in hex or octal, or short (``127.1``).
    """
    return host_is_private(host, resolve=False)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, EVOLINK_TZ).replace(microsecond=0).isoformat()


def _safe_segment(value: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._")
    return value[:120]


class Emulator:
    """A faithful local Evolink (tasks, credits and files APIs) with fault switches.

    Usage::

        with Emulator(credits=100).start() as emu:
            client = EvolinkClient(base_url=emu.url, files_base_url=emu.url, ...)
            emu.clock.advance(30)      # manual clock: Emulator(manual_clock=True)
            emu.faults.add_error("task", 429, count=2, retry_after=1)
            assert emu.requests.count("GET", "/v1/tasks/*") == 3

    Args:
        api_keys: accepted bearer keys; None accepts any key starting ``sk-evo-``.
        credits: the initial balance.
        allow_insecure_callbacks: accept ``http://`` and internal callback URLs (local dev).
        allow_private_urls: accept input image URLs on loopback/private hosts (default True,
            so tests and laptops can serve inputs; Evolink itself could not reach them).
        result_ttl: emulated seconds a result image stays downloadable (24 h).
        upload_ttl: emulated seconds an uploaded file stays downloadable (72 h).
        speed: emulated seconds per real second.
        manual_clock: time moves only on ``clock.advance()``.
        task_duration: emulated seconds from create to the end of a task (default 30).
        price_per_image: credits reserved/charged per image (1.2).
        callback_retry_delays: emulated seconds between a failed callback and its retry
            (Evolink: 1, 2, 4). They follow the clock: speed it up to shorten them.
        callback_timeout: real seconds a callback receiver has to answer (Evolink: 10).
        download_timeout: real seconds to download one input image.
        upload_max_bytes: largest file the files API accepts.
        models: the model names known (others answer 404).
        seed: seed of the random generator used by error rates.
        public_url: the origin put in URLs the emulator hands out (default: its address).
        tick_interval: real seconds between two lifecycle ticks of the background thread.
        fail_rate: fraction (0..1) of tasks that end ``failed`` at random.
    """

    def __init__(
        self,
        api_keys: Iterable[str] | None = None,
        credits: float = 1000.0,
        *,
        allow_insecure_callbacks: bool = False,
        allow_private_urls: bool = True,
        result_ttl: float = 86400.0,
        upload_ttl: float = 72 * 3600.0,
        speed: float = 1.0,
        manual_clock: bool = False,
        task_duration: float | None = None,
        price_per_image: float = 1.2,
        callback_retry_delays: Iterable[float] = EVOLINK_RETRY_DELAYS,
        callback_timeout: float = 10.0,
        download_timeout: float = 10.0,
        upload_max_bytes: int = 50 * 1024 * 1024,
        models: Iterable[str] = (DEFAULT_MODEL,),
        seed: int | None = None,
        public_url: str | None = None,
        tick_interval: float = 0.02,
        fail_rate: float = 0.0,
    ) -> None:
        self.api_keys = None if api_keys is None else set(api_keys)
        self.allow_insecure_callbacks = allow_insecure_callbacks
        self.allow_private_urls = allow_private_urls
        self.result_ttl = float(result_ttl)
        self.upload_ttl = float(upload_ttl)
        self.task_duration = float(task_duration or DEFAULT_TASK_SECONDS)
        self.price_per_image = float(price_per_image)
        self.callback_retry_delays = tuple(float(d) for d in callback_retry_delays)
        self.callback_timeout = float(callback_timeout)
        self.download_timeout = float(download_timeout)
        self.upload_max_bytes = int(upload_max_bytes)
        self.models = set(models)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.tick_interval = float(tick_interval)
        self.fail_rate = float(fail_rate)
        self._initial = {"credits": float(credits), "speed": float(speed),
                         "manual": bool(manual_clock)}

        self.clock = Clock(speed=speed, manual=manual_clock)
        self.faults = Faults(seed=seed)
        self.requests = RequestLog()
        self.callbacks = CallbackLog()
        self.tasks = TaskStore()
        self.credits = Credits(credits)
        self.uploads: dict[str, UploadedFile] = {}

        self._lock = threading.RLock()
        self._events: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._generation = 0
        self._inflight = 0
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._http = requests.Session()
        self._http.trust_env = False  # never send loopback traffic through a proxy
        self.clock.on_change(self._on_clock_change)

    # ------------------------------------------------------------------ lifecycle --
    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        """Start serving on ``host:port`` (port 0: a free port) in background threads."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stop.clear()
        handler = type("EmulatorHandler", (_Handler,), {"emulator": self})
        server = _Server((host, port), handler)
        self._server = server
        self._host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                 name="evolink-emulator-http", daemon=True)
        ticker = threading.Thread(target=self._tick_loop, name="evolink-emulator-clock",
                                  daemon=True)
        self._threads = [serve, ticker]
        for thread in self._threads:
            thread.start()
        logger.info("Evolink emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and the background threads (held connections are released)."""
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8765) -> None:
        """Start and block until interrupted (Ctrl-C); used by the command line."""
        self.start(host, port)
        try:
            self.block()
        finally:
            self.stop()

    def block(self) -> None:
        """Block the calling thread until :meth:`stop` or Ctrl-C."""
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port served."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The origin to use as both ``BASE_URL`` and ``FILES_BASE_URL``."""
        if self.public_url:
            return self.public_url
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return f"http://{self._host}:{self.port}"

    def reset(self) -> None:
        """Forget tasks, uploads, logs, faults and scheduled callbacks; refill the credits."""
        with self._lock:
            self._generation += 1
            self._events.clear()
            self.tasks.clear()
            self.uploads.clear()
            self.requests.clear()
            self.callbacks.clear()
            self.faults.clear()
            self.credits.reset(self._initial["credits"])
        self.clock.set_manual(self._initial["manual"])
        self.clock.set_speed(self._initial["speed"])

    def set_credits(self, balance: float) -> None:
        """Set the remaining balance (the used total is kept)."""
        with self._lock:
            self.credits.balance = float(balance)

    # ------------------------------------------------------------- task controls --
    def fail_task(self, task_id: str, message: str | None = None) -> Task:
        """End ``task_id`` now as ``failed`` (its callback fires; nothing is charged)."""
        return self._end_now(task_id, "failed", message)

    def cancel_task(self, task_id: str) -> Task:
        """End ``task_id`` now as ``cancelled``."""
        return self._end_now(task_id, "cancelled", None)

    def complete_task(self, task_id: str) -> Task:
        """End ``task_id`` now as ``completed`` (results available)."""
        return self._end_now(task_id, "completed", None)

    def expire_results(self, task_id: str | None = None) -> int:
        """Make the result images of ``task_id`` (None: every task) expire now."""
        with self._lock:
            now = self.clock.now()
            count = 0
            for task in self.tasks.values():
                if task_id is not None and task.id != task_id:
                    continue
                if task.status == "completed":
                    task.results_expire_at = now
                    count += 1
            if task_id is not None and task_id not in self.tasks:
                raise KeyError(task_id)
            return count

    def _end_now(self, task_id: str, outcome: str, message: str | None) -> Task:
        with self._lock:
            task = self.tasks[task_id]
            self._refresh_locked()
            if task.is_final:
                raise ValueError(f"task {task_id} is already {task.status}")
            task.outcome, task.error_message = outcome, message
            self._finish_locked(task, self.clock.now())
        self._run_due()
        return task

    # ------------------------------------------------------------- waiting helpers --
    def wait_for_task(self, task_id: str, status: str = "completed",
                      timeout: float = 10.0) -> Task:
        """Block (real time) until ``task_id`` has ``status``; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._refresh_locked()
                task = self.tasks[task_id]
                if task.status == status:
                    return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} is {task.status}, not {status}")
            time.sleep(0.01)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no callback is being delivered and none is due now."""
        deadline = time.monotonic() + timeout
        while True:
            self._run_due()
            with self._lock:
                if not self._inflight and not self._due_locked():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("callbacks still in flight")
                self._idle.wait(0.02)

    # ------------------------------------------------------------------ internals --
    def _on_clock_change(self) -> None:
        with self._lock:
            self._refresh_locked()
        self._run_due()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_interval):
            try:
                with self._lock:
                    self._refresh_due_locked()
                self._run_due()
            except Exception:  # pragma: no cover - keep ticking whatever happens
                logger.exception("emulator tick failed")

    def _refresh_locked(self) -> None:
        """Bring every unfinished task up to the current emulated time (walks them all:
        for the control API and test helpers; requests use :meth:`_refresh_due_locked`)."""
        now = self.clock.now()
        for task in self.tasks.values():
            self._refresh_task_locked(task, now)

    def _refresh_due_locked(self, task: Task | None = None) -> None:
        """Finish the tasks whose time is up (from the store's heap of end times, without
        walking the others), then bring ``task`` (the one a request is about) up to date.
        Progress only matters when a task is shown, so the others are left as they are."""
        now = self.clock.now()
        for due in self.tasks.pop_due(now):
            self._refresh_task_locked(due, now)
        if task is not None:
            self._refresh_task_locked(task, now)

    def _refresh_task_locked(self, task: Task, now: float) -> None:
        if task.is_final:
            return
        elapsed = now - task.created
        if elapsed >= task.duration:
            self._finish_locked(task, task.created + task.duration)
        elif elapsed >= task.pending_seconds:
            span = max(task.duration - task.pending_seconds, 1e-9)
            progress = int(100 * (elapsed - task.pending_seconds) / span)
            task.status = "processing"
            task.progress = max(task.progress, min(99, max(1, progress)))

    def _finish_locked(self, task: Task, at: float) -> None:
        task.status = task.outcome
        task.finished_at = at
        if task.outcome == "completed":
            task.progress = 100
            task.credits_charged = round(self.price_per_image * task.n, 6)
            task.results_expire_at = at + self.result_ttl
        self.credits.settle(task.credits_reserved, task.credits_charged)
        if task.callback_url:
            self._plan_callbacks_locked(task, at)

    # -- callbacks ----------------------------------------------------------------------
    def _schedule_locked(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (at, next(self._seq), self._generation, action))
        self._idle.notify_all()

    def _due_locked(self) -> bool:
        return bool(self._events) and self._events[0][0] <= self.clock.now()

    def _run_due(self) -> None:
        while True:
            with self._lock:
                if not self._due_locked():
                    return
                _, _, generation, action = heapq.heappop(self._events)
                if generation != self._generation:
                    continue
            action()

    def _plan_callbacks_locked(self, task: Task, at: float) -> None:
        plan = self.faults.take_callback_plan()
        body = task.to_json()
        url = task.callback_url or ""
        now = self.clock.now()
        if plan["drop"]:
            self.callbacks.append(CallbackAttempt(task.id, url, "dropped", 0, body, now,
                                                  time.monotonic()))
            return
        stale = None
        if plan["reorder"]:
            stale = task.to_json(status="processing", progress=max(1, min(99, task.progress
                                 if task.status != "completed" else 50)))
        when = max(at, now) + plan["delay"]
        for copy in range(plan["times"]):
            kind = "delivery" if copy == 0 else "duplicate"
            then = None
            if copy == 0 and stale is not None:
                then = self._stale_sender(task.id, url, stale)
            self._schedule_locked(when, self._chain(task.id, url, body, kind, 1, then))

    def _stale_sender(self, task_id: str, url: str, body: dict[str, Any]) -> Callable[[], None]:
        def send() -> None:
            self._chain(task_id, url, body, "stale", 1, None)()
        return send

    def _chain(self, task_id: str, url: str, body: dict[str, Any], kind: str, attempt: int,
               then: Callable[[], None] | None) -> Callable[[], None]:
        generation = self._generation

        def start() -> None:
            with self._lock:
                if generation != self._generation or self._stop.is_set():
                    return
                self._inflight += 1
            threading.Thread(
                target=self._deliver, args=(task_id, url, body, kind, attempt, then, generation),
                name="evolink-emulator-callback", daemon=True,
            ).start()
        return start

    def _deliver(self, task_id: str, url: str, body: dict[str, Any], kind: str, attempt: int,
                 then: Callable[[], None] | None, generation: int) -> None:
        status: int | None = None
        error: str | None = None
        try:
            response = self._http.post(
                url, json=body, timeout=self.callback_timeout,
                headers={"User-Agent": "Evolink-Emulator/1.0"},
            )
            status = response.status_code
            response.close()
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = CallbackAttempt(task_id, url, kind, attempt, body, self.clock.now(),
                                 time.monotonic(), status, error)
        with self._lock:
            if generation == self._generation:
                self.callbacks.append(record)
                if not record.ok and attempt <= len(self.callback_retry_delays):
                    at = self.clock.now() + self.callback_retry_delays[attempt - 1]
                    self._schedule_locked(
                        at, self._chain(task_id, url, body, kind, attempt + 1, then)
                    )
                    then = None
            self._inflight -= 1
            self._idle.notify_all()
        if then is not None and generation == self._generation:
            then()

    # -------------------------------------------------------------- API handlers --
    def _check_auth(self, headers: Any) -> None:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if not value:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <API key>'")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Malformed Authorization header: expected 'Bearer <API key>'")
        valid = token.startswith("sk-evo-") if self.api_keys is None else token in self.api_keys
        if not valid:
            raise ApiError(401, "Invalid or expired API key")

    def _check_url(self, value: Any, param: str, *, https_only: bool,
                   allow_internal: bool, what: str) -> str:
        if not isinstance(value, str) or not value:
            raise ApiError(400, f"{param} must be a non-empty URL string", param)
        parts = urlsplit(value)
        allowed = ("https",) if https_only else ("http", "https")
        if parts.scheme.lower() not in allowed or not parts.hostname:
            need = "an https:// URL" if https_only else "an http:// or https:// URL"
            raise ApiError(400, f"{param}: {what} must be {need}", param)
        if not allow_internal and is_internal_host(parts.hostname):
            raise ApiError(
                400, f"{param}: {what} must not point to an internal address "
                f"({parts.hostname})", param,
            )
        return value

    def _validate_create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        model = body.get("model")
        if model is None:
            raise ApiError(400, "model is required", "model")
        if not isinstance(model, str) or model not in self.models:
            raise ApiError(404, f"The model '{model}' does not exist or is not available",
                           "model")
        prompt = body.get("prompt")
        if prompt is None:
            raise ApiError(400, "prompt is required", "prompt")
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string", "prompt")
        if not prompt.strip():
            raise ApiError(400, "prompt must not be empty", "prompt")
        if len(prompt) > MAX_PROMPT:
            raise ApiError(
                400, f"prompt is too long: {len(prompt)} characters, at most {MAX_PROMPT}",
                "prompt",
            )
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int):
            raise ApiError(400, "n must be an integer between 1 and 4", "n")
        if not 1 <= n <= 4:
            raise ApiError(400, f"n must be between 1 and 4 (got {n})", "n")
        urls = body.get("image_urls")
        if urls is None:
            raise ApiError(400, "image_urls is required: 1 or 2 reference image URLs",
                           "image_urls")
        if not isinstance(urls, list):
            raise ApiError(400, "image_urls must be an array of URLs", "image_urls")
        if not 1 <= len(urls) <= 2:
            raise ApiError(
                400, f"image_urls must contain 1 or 2 images (got {len(urls)})", "image_urls"
            )
        for i, url in enumerate(urls):
            self._check_url(url, f"image_urls[{i}]", https_only=False,
                            allow_internal=self.allow_private_urls, what="the image URL")
        callback_url = body.get("callback_url")
        if callback_url is not None:
            if not isinstance(callback_url, str):
                raise ApiError(400, "callback_url must be a URL string", "callback_url")
            if len(callback_url) > MAX_CALLBACK_URL:
                raise ApiError(
                    400, f"callback_url is too long: {len(callback_url)} characters, at most "
                    f"{MAX_CALLBACK_URL}", "callback_url",
                )
            insecure = self.allow_insecure_callbacks
            self._check_url(callback_url, "callback_url", https_only=not insecure,
                            allow_internal=insecure, what="the callback URL")
        return {"model": model, "prompt": prompt, "n": n, "image_urls": urls,
                "callback_url": callback_url}

    def _download_input(self, url: str, label: str) -> bytes:
        limit = images.MAX_INPUT_BYTES
        try:
            with self._http.get(url, timeout=self.download_timeout, stream=True) as response:
                if response.status_code != 200:
                    raise ApiError(
                        400, f"{label}: the image could not be downloaded "
                        f"(HTTP {response.status_code}); the URL must be directly downloadable",
                        label,
                    )
                data = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    data.extend(chunk)
                    if len(data) > limit:
                        raise ApiError(
                            400, f"{label}: the image is larger than the 10 MB limit "
                            f"({limit} bytes)", label,
                        )
                return bytes(data)
        except requests.RequestException as exc:
            raise ApiError(
                400, f"{label}: the image could not be downloaded ({type(exc).__name__})",
                label,
            )

    def handle_create(self, headers: Any, body: Any) -> dict[str, Any] | _Lost:
        """``POST /v1/images/generations``."""
        self._check_auth(headers)
        params = self._validate_create(body)
        inputs = []
        for i, url in enumerate(params["image_urls"]):
            label = f"image_urls[{i}]"
            data = self._download_input(url, label)
            try:
                images.check_input_image(data, label)
            except images.ImageRuleError as exc:
                raise ApiError(400, str(exc), label)
            inputs.append(data)
        reserve = round(self.price_per_image * params["n"], 6)
        with self._lock:
            self._refresh_due_locked()
            if not self.credits.reserve(reserve):
                raise ApiError(
                    402,
                    f"Insufficient credits: this request needs {reserve:.2f} credits, "
                    f"{self.credits.balance:.2f} remaining",
                    fallback_suggestion=BILLING_URL,
                )
            now = self.clock.now()
            task_id = "task-unified-{}-{}".format(
                int(now), "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            )
            outcome, message = self.faults.take_task_outcome()
            if outcome == "completed" and self.fail_rate and self.faults.chance(self.fail_rate):
                outcome, message = "failed", "The model failed to generate the image"
            task = Task(
                id=task_id, model=params["model"], prompt=params["prompt"], n=params["n"],
                image_urls=list(params["image_urls"]), callback_url=params["callback_url"],
                created=now, duration=self.task_duration, credits_reserved=reserve,
                inputs=inputs, outcome=outcome, error_message=message, base_url=self.url,
            )
            self.tasks.add(task)
            answer = task.to_json()
        lost = self.faults.take_lose_create()
        if lost is not None:
            return _Lost(*lost)
        return answer

    def handle_task(self, headers: Any, task_id: str) -> dict[str, Any]:
        """``GET /v1/tasks/{task_id}``."""
        self._check_auth(headers)
        with self._lock:
            task = self.tasks.get(task_id)
            self._refresh_due_locked(task)
            if task is None:
                raise ApiError(404, f"Task '{task_id}' not found or expired", "task_id")
            answer = task.to_json()
        self._run_due()
        return answer

    def handle_credits(self, headers: Any) -> dict[str, Any]:
        """``GET /v1/credits``."""
        self._check_auth(headers)
        with self._lock:
            self._refresh_due_locked()  # credits are settled when tasks finish
            return self.credits.as_json()

    def handle_upload(self, headers: Any, raw: bytes) -> dict[str, Any]:
        """``POST /api/v1/files/upload/stream`` (multipart: file, upload_path, file_name)."""
        self._check_auth(headers)
        content_type = headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError(400, "The request must be multipart/form-data with a 'file' part",
                           "file")
        fields, files = parse_multipart(content_type, raw)
        if "file" not in files:
            raise ApiError(400, "file is required", "file")
        original_name, content = files["file"]
        if not content:
            raise ApiError(400, "file is empty", "file")
        if len(content) > self.upload_max_bytes:
            raise ApiError(400, f"file is too large: {len(content)} bytes, at most "
                           f"{self.upload_max_bytes}", "file")
        sniffed = images.sniff_upload(content)
        if sniffed is None:
            raise ApiError(400, "Unsupported file type: upload a jpeg, png, gif or webp image",
                           "file")
        ext, mime = sniffed
        file_id = "file_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        name = _safe_segment(fields.get("file_name") or original_name or "") or f"{file_id}.{ext}"
        path = "/".join(
            s for s in (_safe_segment(p) for p in (fields.get("upload_path") or "").split("/"))
            if s
        ) or "uploads"
        now = self.clock.now()
        uploaded = UploadedFile(
            file_id=file_id, file_name=name, original_name=original_name or name,
            upload_path=path, mime_type=mime, content=content, uploaded_at=now,
            expires_at=now + self.upload_ttl,
        )
        with self._lock:
            self.uploads[file_id] = uploaded
        return {
            "success": True,
            "code": 200,
            "msg": "File uploaded successfully",
            "data": {
                "file_id": file_id,
                "file_name": name,
                "original_name": uploaded.original_name,
                "file_size": len(content),
                "mime_type": mime,
                "upload_path": path,
                "file_url": f"{self.url}{uploaded.url_path}",
                "download_url": f"{self.url}/api/v1/files/download/{file_id}",
                "upload_time": _iso(now),
                "expires_at": _iso(uploaded.expires_at),
            },
        }

    def handle_file(self, path: str) -> _Raw:
        """GET of a result image (``/files/results/<task>/<n>.png``) or an uploaded file."""
        now = self.clock.now()
        match = re.fullmatch(r"/files/results/([^/]+)/(\d+)\.png", path)
        if match:
            with self._lock:
                task = self.tasks.get(match.group(1))
                self._refresh_due_locked(task)
                index = int(match.group(2))
                if task is None or task.status != "completed" or index >= task.n:
                    raise ApiError(404, "Result image not found", "file")
                if task.results_expire_at is not None and now >= task.results_expire_at:
                    raise ApiError(404, "Result image expired: result URLs are valid for "
                                   f"{self.result_ttl / 3600:g} hours", "file")
                cache = task.__dict__.setdefault("_rendered", {})
                if index not in cache:
                    cache[index] = images.render_result(task.inputs, task.prompt, index, task.n)
                return _Raw(cache[index], "image/png")
        with self._lock:
            found = None
            match = re.fullmatch(r"/api/v1/files/download/([^/]+)", path)
            for uploaded in self.uploads.values():
                if (match and uploaded.file_id == match.group(1)) or uploaded.url_path == path:
                    found = uploaded
            if found is None or now >= found.expires_at:
                raise ApiError(404, "File not found or expired", "file")
            headers = {}
            if match:
                headers["Content-Disposition"] = f'attachment; filename="{found.file_name}"'
            return _Raw(found.content, found.mime_type, headers)

    # -------------------------------------------------------------- control API --
    def task_state(self, task: Task) -> dict[str, Any]:
        """The task's query JSON plus the emulator's internal fields."""
        state = task.to_json()
        state["_emulator"] = {
            "prompt": task.prompt, "n": task.n, "image_urls": task.image_urls,
            "callback_url": task.callback_url, "duration": task.duration,
            "outcome": task.outcome, "error_message": task.error_message,
            "finished_at": task.finished_at, "results_expire_at": task.results_expire_at,
            "credits_charged": task.credits_charged,
        }
        return state

    def state(self) -> dict[str, Any]:
        """A summary: url, clock, credits, counts, faults, configuration."""
        with self._lock:
            self._refresh_locked()
            return {
                "url": self.url if self.running or self.public_url else None,
                "clock": {"now": self.clock.now(), "speed": self.clock.speed,
                          "manual": self.clock.manual},
                "credits": self.credits.as_json()["data"],
                "tasks": len(self.tasks),
                "uploads": len(self.uploads),
                "requests": len(self.requests),
                "callbacks": len(self.callbacks),
                "faults": self.faults.as_dict(),
                "config": {
                    "allow_insecure_callbacks": self.allow_insecure_callbacks,
                    "allow_private_urls": self.allow_private_urls,
                    "result_ttl": self.result_ttl, "upload_ttl": self.upload_ttl,
                    "task_duration": self.task_duration,
                    "price_per_image": self.price_per_image,
                    "callback_retry_delays": list(self.callback_retry_delays),
                    "callback_timeout": self.callback_timeout,
                    "models": sorted(self.models),
                },
            }

    def handle_control(self, method: str, path: str, query: dict[str, list[str]],
                       body: Any) -> tuple[int, dict[str, Any]]:
        """The ``/_emulator/`` control API (no authentication: bind it to loopback)."""
        body = body if isinstance(body, dict) else {}
        route = path[len("/_emulator"):].strip("/")
        q = {k: v[-1] for k, v in query.items()}
        try:
            return self._control(method, route, q, body)
        except KeyError as exc:
            return 404, {"error": f"unknown task {exc.args[0]!r}"}
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}

    def _control(self, method: str, route: str, q: dict[str, str],
                 body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if route in ("", "state") and method == "GET":
            return 200, self.state()
        if route == "reset" and method == "POST":
            self.reset()
            return 200, {"ok": True}
        if route == "clock":
            if method == "POST":
                if "manual" in body:
                    self.clock.set_manual(bool(body["manual"]))
                if "speed" in body:
                    self.clock.set_speed(float(body["speed"]))
                if "advance" in body:
                    self.clock.advance(float(body["advance"]))
            return 200, {"now": self.clock.now(), "speed": self.clock.speed,
                         "manual": self.clock.manual}
        if route == "requests":
            if method == "DELETE":
                self.requests.clear()
                return 200, {"ok": True}
            found = self.requests.filter(q.get("method"), q.get("path"))
            return 200, {"count": len(found), "requests": [r.as_dict() for r in found]}
        if route == "callbacks":
            if method == "DELETE":
                self.callbacks.clear()
                return 200, {"ok": True}
            found = self.callbacks.filter(q.get("task_id"), q.get("kind"))
            return 200, {"count": len(found), "callbacks": [c.as_dict() for c in found]}
        if route == "credits":
            if method == "POST":
                self.set_credits(float(body["credits"]))
            with self._lock:
                return 200, self.credits.as_json()
        if route == "faults":
            if method == "DELETE":
                self.faults.clear()
            elif method == "POST":
                self.faults.configure(body)
            return 200, self.faults.as_dict()
        if route == "expire-results" and method == "POST":
            return 200, {"expired": self.expire_results(body.get("task_id"))}
        if route == "tasks" and method == "GET":
            with self._lock:
                self._refresh_locked()
                return 200, {"tasks": [self.task_state(t) for t in self.tasks.values()]}
        match = re.fullmatch(r"tasks/([^/]+)(?:/(fail|cancel|complete))?", route)
        if match:
            task_id, action = match.groups()
            if action and method == "POST":
                if action == "fail":
                    self.fail_task(task_id, body.get("message"))
                elif action == "cancel":
                    self.cancel_task(task_id)
                else:
                    self.complete_task(task_id)
            elif action or method != "GET":
                return 405, {"error": "method not allowed"}
            with self._lock:
                self._refresh_locked()
                return 200, self.task_state(self.tasks[task_id])
        return 404, {"error": f"unknown control endpoint {method} /_emulator/{route}"}


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
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, payload)
        else:
            fields[name] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    return fields, files


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection error from %s", client_address, exc_info=True)


_ROUTES = (
    ("POST", re.compile(r"/v1/images/generations"), "create"),
    ("GET", re.compile(r"/v1/tasks/(?P<task_id>[^/]+)"), "task"),
    ("GET", re.compile(r"/v1/credits"), "credits"),
    ("POST", re.compile(r"/api/v1/files/upload/stream"), "upload"),
    ("GET", re.compile(r"/files/.+|/api/v1/files/download/[^/]+"), "files"),
)


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request to the emulator."""

    emulator: Emulator
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

    def _send(self, status: int, payload: dict[str, Any] | _Raw,
              headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, _Raw):
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

    def _dispatch(self, method: str) -> None:
        emu = self.emulator
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

        if path == "/_emulator" or path.startswith("/_emulator/"):
            status, answer = emu.handle_control(method, path, parse_qs(parts.query), body)
            self._send(status, answer)
            return

        endpoint, params = None, {}
        for route_method, pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                endpoint, params = name, match.groupdict()
                break
        logged_body = body
        if endpoint == "upload" and raw:
            try:
                fields, files = parse_multipart(self.headers.get("Content-Type") or "", raw)
                logged_body = {**fields, **{k: {"filename": f, "size": len(c)}
                                            for k, (f, c) in files.items()}}
            except Exception:
                logged_body = None
        record = RequestRecord(
            method=method, path=path, query=parts.query,
            headers={k: v for k, v in self.headers.items() if k.lower() != "authorization"},
            json=logged_body, body_size=len(raw), timestamp=emu.clock.now(),
            real_time=time.monotonic(),
        )
        emu.requests.append(record)

        extra: dict[str, str] = {}
        try:
            if endpoint is None:
                raise ApiError(404, f"Unknown endpoint: {method} {path}")
            delay = emu.faults.latency_for(endpoint)
            if delay > 0:
                emu._stop.wait(delay)
            injected = emu.faults.error_for(endpoint)
            if injected is not None:
                default_type, default_message = ERROR_TYPES[injected.status]
                raise ApiError(
                    injected.status, injected.message or default_message,
                    fallback_suggestion=BILLING_URL if injected.status == 402 else None,
                    retry_after=injected.retry_after,
                )
            if bad_json:
                raise ApiError(400, "The request body is not valid JSON")
            if endpoint == "create":
                result: Any = emu.handle_create(self.headers, body)
            elif endpoint == "task":
                result = emu.handle_task(self.headers, params["task_id"])
            elif endpoint == "credits":
                result = emu.handle_credits(self.headers)
            elif endpoint == "upload":
                result = emu.handle_upload(self.headers, raw)
            else:
                result = emu.handle_file(path)
            status = 200
        except ApiError as exc:
            status, result = exc.status, exc.body()
            if exc.retry_after is not None:
                ra = exc.retry_after
                extra["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        except Exception:  # pragma: no cover - a bug in the emulator
            logger.exception("emulator error on %s %s", method, path)
            status, result = 500, ApiError(500, "Internal server error").body()

        if isinstance(result, _Lost):
            record.status = None
            self._lose(result)
            return
        record.status = status
        emu.requests.notify()
        self._send(status, result, extra)

    def _lose(self, lost: _Lost) -> None:
        self.close_connection = True
        if lost.mode == "timeout":
            self.emulator._stop.wait(lost.hold)
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


__all__ = ["ApiError", "Emulator", "is_internal_host", "parse_multipart"]
