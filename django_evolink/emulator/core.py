"""What the parts of the emulator share: :class:`EmulatorCore`.

The :class:`~django_evolink.emulator.Emulator` holds the settings and the state; each part
(lifecycle, callback delivery, API handlers, control API, HTTP server) is given the
emulator typed as this protocol, reads the settings live (tests change them on a running
emulator) and holds ``_lock`` around every read or write of the state.
"""

from __future__ import annotations

import threading
from typing import Protocol

from requests import Session

from .faults import Faults
from .state import CallbackLog, Clock, Credits, RequestLog, TaskStore, UploadedFile


class EmulatorCore(Protocol):
    """The settings and state of an emulator (see :class:`Emulator` for the settings)."""

    api_keys: set[str] | None
    allow_insecure_callbacks: bool
    allow_private_urls: bool
    result_ttl: float
    upload_ttl: float
    task_duration: float
    price_per_image: float
    callback_retry_delays: tuple[float, ...]
    callback_timeout: float
    download_timeout: float
    upload_max_bytes: int
    upload_quota: int
    request_max_bytes: int
    models: set[str]
    public_url: str | None
    tick_interval: float
    fail_rate: float

    clock: Clock
    faults: Faults
    requests: RequestLog
    callbacks: CallbackLog
    tasks: TaskStore
    credits: Credits
    uploads: dict[str, UploadedFile]

    #: Guards the state above (re-entrant).
    _lock: threading.RLock
    #: Set by ``stop()``: background waits end early.
    _stop: threading.Event
    #: Outgoing HTTP (input downloads, callbacks), never through a proxy.
    _http: Session  # (imported by name: the ``requests`` attribute above shadows the module)

    @property
    def url(self) -> str:
        """The origin written in the URLs handed out."""
        ...

    @property
    def running(self) -> bool:
        """True while serving."""
        ...
