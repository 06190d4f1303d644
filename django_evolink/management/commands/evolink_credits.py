"""``manage.py evolink_credits``: the Evolink account balance."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from ...evolink.client import get_client
from ...exceptions import EvolinkError


class Command(BaseCommand):
    help = _("Show the Evolink credit balance.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            answer = get_client().get_credits()
        except EvolinkError as exc:
            raise CommandError(_("Could not read the balance: %(error)s") % {"error": exc})
        data = answer.get("data") if isinstance(answer, dict) else None
        token = (data or {}).get("token") or (data or {}).get("user") or {}
        if not isinstance(token, dict) or "remaining_credits" not in token:
            raise CommandError(_("Evolink's credits answer has no balance."))
        if token.get("unlimited_credits"):
            self.stdout.write(_("Remaining credits: unlimited"))
        else:
            self.stdout.write(_("Remaining credits: %(n)s") % {"n": token["remaining_credits"]})
        if "used_credits" in token:
            self.stdout.write(_("Used credits: %(n)s") % {"n": token["used_credits"]})
