"""``manage.py demo_account``: create the demo staff account once (idempotent).

The first run creates a staff superuser with a random password, keeps the credentials in
``example_project/.demo-account`` (readable by the owner only, ignored by git) and prints
them. Later runs change nothing: they report the account and, while the kept password
still works, print it again so ``make demo`` can show it. ``--reset`` picks a new password.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.translation import gettext as _

DEFAULT_USERNAME = "demo"


def credentials_path() -> Path:
    """Where the demo password is kept (``EXAMPLE_DEMO_CREDENTIALS`` or BASE_DIR)."""
    configured = getattr(settings, "EXAMPLE_DEMO_CREDENTIALS", None)
    return Path(configured) if configured else Path(settings.BASE_DIR) / ".demo-account"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, username: str, password: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"username": username, "password": password}, fh)


def ensure_demo_account(username: str = DEFAULT_USERNAME, *, reset: bool = False,
                        path: Path | None = None) -> dict[str, Any]:
    """Create or report the demo account.

    Returns ``{"username", "password" (None when unknown), "created", "reset"}``.
    """
    path = path or credentials_path()
    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.get_or_create(
            **{user_model.USERNAME_FIELD: username},
            defaults={"is_staff": True, "is_superuser": True, "email": ""},
        )
        kept = _read(path)
        password = kept.get("password") if kept.get("username") == username else None
        if created or reset:
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.is_staff = user.is_superuser = user.is_active = True
            user.save()
            _write(path, username, password)
        elif password and not user.check_password(password):
            password = None  # changed since (e.g. with changepassword): not ours to show
    return {"username": username, "password": password, "created": created,
            "reset": reset and not created}


class Command(BaseCommand):
    help = _("Create the example site's demo staff account once; later runs change nothing.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=DEFAULT_USERNAME,
                            help=_("user name of the demo account (default: demo)"))
        parser.add_argument("--reset", action="store_true",
                            help=_("give the account a new random password"))
        parser.add_argument("--json", action="store_true",
                            help=_("print the result as one JSON object (used by make demo)"))

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"].strip()
        if not username:
            raise CommandError(_("--username must not be empty."))
        result = ensure_demo_account(username, reset=options["reset"])
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        if result["created"]:
            self.stdout.write(self.style.SUCCESS(
                _("Created the demo staff account: user %(u)s, password %(p)s")
                % {"u": username, "p": result["password"]}))
        elif result["reset"]:
            self.stdout.write(self.style.SUCCESS(
                _("New password of %(u)s: %(p)s") % {"u": username, "p": result["password"]}))
        elif result["password"]:
            self.stdout.write(_("The demo account exists (unchanged): user %(u)s, password %(p)s")
                              % {"u": username, "p": result["password"]})
        else:
            self.stdout.write(_("The demo account %(u)s exists (unchanged); its password was "
                                "changed since. Run this command with --reset to pick a new "
                                "one.") % {"u": username})
