"""A faithful local Evolink: ``from django_evolink.emulator import Emulator``.

Importable and runnable without Django (standard library HTTP server, requests, Pillow).
Run it with ``python -m django_evolink.emulator --help`` or ``manage.py evolink_emulator``.
See docs/emulator.md.
"""

from .faults import Faults
from .server import ApiError, Emulator, is_internal_host
from .state import CallbackAttempt, Clock, RequestRecord, Task

__all__ = [
    "ApiError",
    "CallbackAttempt",
    "Clock",
    "Emulator",
    "Faults",
    "RequestRecord",
    "Task",
    "is_internal_host",
]
