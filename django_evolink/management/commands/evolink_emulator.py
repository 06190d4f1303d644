"""``manage.py evolink_emulator``: run the local Evolink emulator (same switches as
``python -m django_evolink.emulator``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...emulator import cli


class Command(BaseCommand):
    help = cli.DESCRIPTION

    def add_arguments(self, parser: Any) -> None:
        """The emulator's switches (see ``python -m django_evolink.emulator --help``)."""
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Serve until Ctrl-C."""
        cli.run(options, out=self.stdout)
