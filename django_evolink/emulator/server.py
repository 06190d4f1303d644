"""The emulator's Python API: the :class:`Emulator` facade.

It holds the settings and the state (see :mod:`.core`) and is composed of the parts that
act on them: :mod:`.lifecycle` (tasks on the clock), :mod:`.callbacks` (callback
delivery), :mod:`.handlers` (the Evolink endpoints, checked by :mod:`.validation`),
:mod:`.control` (the ``/_emulator/`` API) and :mod:`.http` (the HTTP server). Pure standard
library plus requests and Pillow: importable and runnable without Django.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, TypedDict

import requests

from ..evolink.modelspec import image_models
from .callbacks import EVOLINK_RETRY_DELAYS, CallbackDelivery
from .control import ControlApi
from .errors import ApiError
from .faults import CANCELLED_CODE, Faults, check_fail_code
from .handlers import ApiHandlers
from .http import EmulatorHTTPServer, parse_multipart
from .lifecycle import DEFAULT_TASK_SECONDS, Lifecycle
from .state import CallbackLog, Clock, Credits, RequestLog, Task, TaskStore, UploadedFile
from .validation import is_internal_host

logger = logging.getLogger("django_evolink.emulator")

DEFAULT_MODEL = "wan2.5-image-to-image"


class _Initial(TypedDict):
    """What :meth:`Emulator.reset` goes back to."""

    credits: float
    speed: float
    manual: bool


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
        upload_max_bytes: largest file (and request body) the files API accepts (50 MB).
        upload_quota: how many live files the account may hold (Evolink: 100, 500 for VIP).
        request_max_bytes: largest body of an API request (create); larger: 413
            ``request_too_large_error``.
        token_credits: the API key's own balance (``data.token``); None: the key has no
            limit of its own (``unlimited_credits: true``).
        models: the model names known (others answer 404); default: every image model of
            the catalogue the app ships, each checked by its own rules.
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
        upload_quota: int = 100,
        request_max_bytes: int = 10 * 1024 * 1024,
        token_credits: float | None = None,
        models: Iterable[str] | None = None,
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
        self.upload_quota = int(upload_quota)
        self.request_max_bytes = int(request_max_bytes)
        self.models = set(image_models() if models is None else models)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.tick_interval = float(tick_interval)
        self.fail_rate = float(fail_rate)
        self._initial = _Initial(credits=float(credits), speed=float(speed),
                                 manual=bool(manual_clock))

        self.clock = Clock(speed=speed, manual=manual_clock)
        self.faults = Faults(seed=seed)
        self.requests = RequestLog()
        self.callbacks = CallbackLog()
        self.tasks = TaskStore()
        self.credits = Credits(credits, token_credits)
        self.uploads: dict[str, UploadedFile] = {}

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: EmulatorHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._http = requests.Session()
        self._http.trust_env = False  # never send loopback traffic through a proxy

        self._delivery = CallbackDelivery(self)
        self._lifecycle = Lifecycle(self, self._delivery)
        self._api = ApiHandlers(self, self._lifecycle, self._delivery)
        self._control = ControlApi(self, self._lifecycle, reset=self.reset,
                                   set_credits=self.set_credits)

    # -------------------------------------------------------------------- serving --
    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        """Start serving on ``host:port`` (port 0: a free port) in background threads."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stop.clear()
        server = EmulatorHTTPServer((host, port), self, self._api.routes(), self._control.handle)
        self._server = server
        self._host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                 name="evolink-emulator-http", daemon=True)
        ticker = threading.Thread(target=self._lifecycle.tick_loop, name="evolink-emulator-clock",
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
            self._delivery.forget_locked()
            self.tasks.clear()
            self.uploads.clear()
            self.requests.clear()
            self.callbacks.clear()
            self.faults.clear()
            self.credits.reset(self._initial["credits"])
        self.clock.set_manual(self._initial["manual"])
        self.clock.set_speed(self._initial["speed"])

    def set_credits(self, balance: float, token: float | None | bool = False) -> None:
        """Set the account's remaining balance (the used total is kept); ``token`` sets the
        API key's own (None: no limit of its own; left out: unchanged)."""
        with self._lock:
            self.credits.balance = round(float(balance), 4)
            if token is not False:
                self.credits.set_token_balance(None if token is None else float(token))

    # ------------------------------------------------------------- task controls --
    def fail_task(self, task_id: str, message: str | None = None,
                  code: str | None = None) -> Task:
        """End ``task_id`` now as ``failed`` with ``error.code`` ``code`` (one of
        Evolink's, ``faults.TASK_ERROR_CODES``; default ``generation_failed_no_content``);
        its callback fires; nothing is charged."""
        return self._lifecycle.end_now(task_id, "failed", message, check_fail_code(code))

    def cancel_task(self, task_id: str) -> Task:
        """End ``task_id`` now as ``cancelled`` (``error.code`` ``request_cancelled``)."""
        return self._lifecycle.end_now(task_id, "cancelled", None, CANCELLED_CODE)

    def complete_task(self, task_id: str) -> Task:
        """End ``task_id`` now as ``completed`` (results available)."""
        return self._lifecycle.end_now(task_id, "completed", None, None)

    def expire_results(self, task_id: str | None = None) -> int:
        """Make the result images of ``task_id`` (None: every task) expire now."""
        return self._lifecycle.expire_results(task_id)

    # ------------------------------------------------------------- waiting helpers --
    def wait_for_task(self, task_id: str, status: str = "completed",
                      timeout: float = 10.0) -> Task:
        """Block (real time) until ``task_id`` has ``status``; TimeoutError otherwise."""
        return self._lifecycle.wait_for_task(task_id, status, timeout)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no callback is being delivered and none is due now."""
        self._delivery.wait_idle(timeout)

    # -------------------------------------------------------------- control API --
    def task_state(self, task: Task) -> dict[str, Any]:
        """The task's query JSON plus the emulator's internal fields."""
        return self._control.task_state(task)

    def state(self) -> dict[str, Any]:
        """A summary: url, clock, credits, counts, faults, configuration."""
        return self._control.state()


__all__ = ["ApiError", "Emulator", "is_internal_host", "parse_multipart"]
