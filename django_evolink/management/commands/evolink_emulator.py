"""``manage.py evolink_emulator``: run the local Evolink emulator (same switches as
``python -m django_evolink.emulator``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from ...emulator import cli


class Command(BaseCommand):
    help = cli.DESCRIPTION

    def add_arguments(self, parser: Any) -> None:
        """The emulator's switches (see ``python -m django_evolink.emulator --help``)."""
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Serve until Ctrl-C; a port that is taken is one line (exit status 1)."""
        try:
            cli.run(options, out=self.stdout)
        except cli.StartError as exc:
            if exc.in_use:
                raise CommandError(_(
                    "port %(port)s on %(host)s is already in use (another emulator or "
                    "server?): stop it, or choose another port with --port, e.g. --port "
                    "%(next)s (--port 0 picks a free one)")
                    % {"port": exc.port, "host": exc.host, "next": exc.port + 1}) from None
            raise CommandError(str(exc)) from None
