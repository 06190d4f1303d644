"""The example site's frontend app: one page that uses django-evolink's REST API."""

from __future__ import annotations

import logging
import os
import socket
import sys
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger("demo")

#: The emulator started in this process by :func:`autostart_emulator`, if any.
_emulator = None


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _serving_process() -> bool:
    """True in the process of ``manage.py runserver`` that answers requests."""
    if "runserver" not in sys.argv:
        return False
    # with the autoreloader, the child that serves has RUN_MAIN=true
    return os.environ.get("RUN_MAIN") == "true" or "--noreload" in sys.argv


def autostart_emulator():
    """Start the emulator in this process at ``EXAMPLE_EMULATOR_URL`` unless one answers there.

    Used by ``manage.py runserver`` run by hand with no ``EVOLINK_API_KEY``; ``make demo``
    runs the emulator as its own process instead. A ``qcluster`` started by hand finds
    the emulator at the same (default) URL.
    """
    global _emulator
    if _emulator is not None:
        return _emulator
    parts = urlsplit(settings.EXAMPLE_EMULATOR_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if _listening(host, port):
        logger.info("Evolink emulator already running at %s", settings.EXAMPLE_EMULATOR_URL)
        return None
    from django_evolink.emulator import Emulator

    _emulator = Emulator(allow_insecure_callbacks=True).start(host, port)
    logger.info("Started the Evolink emulator in this process at %s", _emulator.url)
    return _emulator


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "django-evolink demo"

    def ready(self) -> None:
        if getattr(settings, "EXAMPLE_EMULATOR_AUTOSTART", False) and _serving_process():
            autostart_emulator()
