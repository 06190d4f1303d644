"""A faithful local Evolink: ``from django_evolink.emulator import Emulator``.

Importable and runnable without Django (standard library HTTP server, requests, Pillow).
Run it with ``python -m django_evolink.emulator --help`` or ``manage.py evolink_emulator``.
See docs/emulator.md.
"""

from .errors import ApiError
from .faults import Faults
from .server import Emulator
from .state import CallbackAttempt, Clock, RequestRecord, Task
from .validation import is_internal_host

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
