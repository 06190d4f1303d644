"""``python -m django_evolink.emulator``: run the Evolink emulator in the foreground."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
