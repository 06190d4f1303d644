"""``manage.py evolink_credits``: the Evolink account balance.

The figures are read by :func:`django_evolink.core.credits.parse_credits`, as in the admin.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from ...core.credits import format_credits, parse_credits
from ...evolink.client import get_client
from ...exceptions import EvolinkError


class Command(BaseCommand):
    """Print the remaining and used credits of the account (and of the API key)."""

    help = _("Show the Evolink credit balance.")

    def handle(self, *args: Any, **options: Any) -> None:
        """Ask Evolink once (with the client's retries) and print the figures."""
        try:
            answer = get_client().get_credits()
        except EvolinkError as exc:
            raise CommandError(_("Could not read the balance: %(error)s") % {"error": exc})
        balance = parse_credits(answer)
        if balance is None or (balance.remaining is None and not balance.key_unlimited):
            raise CommandError(_("Evolink's credits answer has no balance."))
        # the account's balance (data.user) and the key's (data.token) are distinct:
        # an unlimited key still spends the account's credits
        if balance.remaining is not None:
            self.stdout.write(
                _("Remaining credits: %(n)s") % {"n": format_credits(balance.remaining)}
            )
        if balance.used is not None:
            self.stdout.write(_("Used credits: %(n)s") % {"n": format_credits(balance.used)})
        if balance.key_unlimited:
            self.stdout.write(_("This key: unlimited"))
        elif balance.key_remaining is not None:
            self.stdout.write(
                _("This key: %(n)s left") % {"n": format_credits(balance.key_remaining)}
            )
