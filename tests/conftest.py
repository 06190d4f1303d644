"""Shared fixtures of the django-evolink test suite (helpers live in tests/support/)."""

import io
import os

import pytest
from django.db import connection
from django.utils import translation
from PIL import Image


def make_image_bytes(width: int = 512, height: int = 512, fmt: str = "PNG", mode: str = "RGB",
                     color=(200, 80, 40), *, noisy: bool = False) -> bytes:
    """A real image of the given size and format, as bytes; ``noisy``: random RGB pixels,
    like a photo, so that its data fills most of the file."""
    if mode == "RGBA" and len(color) == 3:
        color = (*color, 128)
    if noisy:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new(mode, (width, height), color)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def png_bytes():
    return make_image_bytes()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "pw-alice")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "pw-bob")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        "staff", "staff@example.com", "pw-staff", is_staff=True, is_superuser=True
    )


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts and ends in the default language: LocaleMiddleware activates the
    language of a test client's request in the test's own thread and leaves it active."""
    translation.deactivate()
    yield
    translation.deactivate()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say loudly when the PostgreSQL-only tests (row locks, real concurrency) did not run:
    a mutation of a row lock survives the SQLite run and is caught only by them."""
    if connection.vendor == "postgresql":
        return
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "postgres" in getattr(r, "keywords", {})]
    deselected = [i for i in terminalreporter.stats.get("deselected", [])
                  if i.get_closest_marker("postgres")]
    if skipped or deselected:
        terminalreporter.write_sep(
            "=", f"{len(skipped) + len(deselected)} PostgreSQL concurrency tests did not run "
                 "on SQLite (row locks, real threads): run `make test-postgres`",
            yellow=True, bold=True)
