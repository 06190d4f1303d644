"""A logging filter that keeps callback tokens out of access logs.

The callback URL is the credential of a task (``.../callback/<token>/``), and web servers
log request paths: Django's ``runserver`` (logger ``django.server``) and gunicorn (logger
``gunicorn.access``) would write the token to their access logs. Add
:class:`HideCallbackTokens` to those loggers' handlers and every ``/callback/<token>``
in a record (its message and its arguments, a tuple or gunicorn's dict of atoms) becomes
``/callback/[redacted]``. Standard library only: gunicorn's configuration file can import
it before Django is set up.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: A callback path's token (any prefix: the app can be mounted anywhere).
CALLBACK_TOKEN = re.compile(r"(/callback/)[^/\s?\"']+")


def hide_tokens(value: Any) -> Any:
    """``value`` with every callback token replaced (strings only; others unchanged)."""
    if isinstance(value, str):
        return CALLBACK_TOKEN.sub(r"\1[redacted]", value)
    return value


class HideCallbackTokens(logging.Filter):
    """Rewrites callback tokens in a log record to ``[redacted]``; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = hide_tokens(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: hide_tokens(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(hide_tokens(value) for value in record.args)
        return True
