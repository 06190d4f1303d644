"""pytest plugin of django-evolink (registered by the ``pytest11`` entry point).

Fixtures:

``evolink_emulator``
    A running :class:`django_evolink.emulator.Emulator` (fast timings: 30 emulated
    seconds per real second, insecure callbacks allowed) whose state is fresh for each test.
    When pytest-django is active and Django is configured, ``settings.EVOLINK`` is pointed
    at it for the duration of the test (``BASE_URL`` and ``FILES_BASE_URL`` = its URL,
    ``API_KEY`` = ``"sk-evo-emulator-test"``, ``ALLOW_PRIVATE_URLS`` = True; other keys are
    kept). Options with ``@pytest.mark.evolink_emulator(manual_clock=True, credits=5)``
    start a dedicated emulator for that test instead of the shared one.

``evolink_emulator_server``
    The session-wide emulator behind ``evolink_emulator`` (not reset, no settings change).

``evolink``
    ``evolink_emulator`` set up for a site's end-to-end tests: the test's database is
    *transactional* (pytest-django's ``transactional_db``), so the work django-evolink
    queues with ``transaction.on_commit`` (result downloads, submissions) runs when the
    code's transaction commits, as in production; django-q2 runs jobs inline
    (``Q_CLUSTER["sync"] = True``); ``MEDIA_ROOT`` is a fresh directory below the test's
    ``tmp_path``; ``CALLBACK_BASE_URL`` is None (the emulator never calls the origin of
    your settings; set it to ``live_server.url`` in a test of callbacks). Returns the
    emulator.

``image_url``
    The URL of a generated 512×512 PNG uploaded to the test's emulator (through its files
    API, as ``get_client().upload_file`` does): an input image Evolink can fetch.

``evolink_media_root``
    ``settings.MEDIA_ROOT`` pointed at a fresh directory below ``tmp_path`` (used by
    ``evolink``; request it alone to isolate stored files without the rest).

Nothing here imports Django at import time, so the plugin is harmless in test suites that
do not use it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from django_evolink.emulator import Emulator

#: The API key the fixture puts in ``settings.EVOLINK``.
EMULATOR_API_KEY = "sk-evo-emulator-test"

#: Constructor arguments of the fixture's emulator ("fast timings").
FIXTURE_DEFAULTS: dict[str, Any] = {
    "speed": 30.0,
    "allow_insecure_callbacks": True,
    "allow_private_urls": True,
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``evolink_emulator`` marker (works under ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        "evolink_emulator(**options): Emulator constructor options for the evolink_emulator "
        "fixture of this test (a dedicated emulator is started)",
    )


def _start(options: dict[str, Any]) -> Emulator:
    return Emulator(**{**FIXTURE_DEFAULTS, **options}).start()


@pytest.fixture(scope="session")
def evolink_emulator_server() -> Iterator[Any]:
    """The emulator shared by the whole session (started on first use)."""
    emulator = _start({})
    try:
        yield emulator
    finally:
        emulator.stop()


def _django_settings(request: pytest.FixtureRequest) -> Any | None:
    """pytest-django's ``settings`` fixture, or None outside a configured Django project."""
    if not request.config.pluginmanager.hasplugin("django"):
        return None
    try:
        from django.conf import settings as django_settings
    except ImportError:
        return None
    if not django_settings.configured:
        return None
    return request.getfixturevalue("settings")


@pytest.fixture
def evolink_emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh Evolink emulator for this test, with ``settings.EVOLINK`` pointing at it."""
    marker = request.node.get_closest_marker("evolink_emulator")
    dedicated = marker is not None
    if dedicated:
        emulator = _start(dict(marker.kwargs))
    else:
        emulator = request.getfixturevalue("evolink_emulator_server")
        emulator.reset()
    settings = _django_settings(request)
    if settings is not None:
        current = dict(getattr(settings, "EVOLINK", None) or {})
        current.update(
            BASE_URL=emulator.url,
            FILES_BASE_URL=emulator.url,
            API_KEY=EMULATOR_API_KEY,
            ALLOW_PRIVATE_URLS=True,
        )
        settings.EVOLINK = current
    try:
        yield emulator
    finally:
        if dedicated:
            emulator.stop()
        else:
            emulator.reset()


@pytest.fixture
def evolink_media_root(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A fresh ``MEDIA_ROOT`` for this test (stored inputs and results land there)."""
    media = tmp_path / "evolink-media"
    media.mkdir()
    settings = _django_settings(request)
    if settings is None:
        pytest.fail("evolink_media_root needs pytest-django and configured Django settings "
                    "(DJANGO_SETTINGS_MODULE)", pytrace=False)
    settings.MEDIA_ROOT = str(media)
    return media


@pytest.fixture
def evolink(request: pytest.FixtureRequest, transactional_db: None, evolink_emulator: Any,
            evolink_media_root: Path) -> Any:
    """The emulator, with work queued on commit really run and django-q2 inline.

    ``transactional_db`` is a parameter (not requested later) so that pytest-django sees
    it before it sets up the database: on_commit callbacks then run when the code commits
    (inside the default ``django_db`` they would wait for a commit the test's rollback
    never makes).
    """
    settings = _django_settings(request)
    assert settings is not None  # evolink_media_root said it otherwise
    settings.Q_CLUSTER = {**(getattr(settings, "Q_CLUSTER", None) or {}), "sync": True}
    # Never let the emulator call the production origin of the settings: a test that
    # wants callbacks sets CALLBACK_BASE_URL to live_server.url itself.
    settings.EVOLINK = {**settings.EVOLINK, "CALLBACK_BASE_URL": None}
    return evolink_emulator


def _png(width: int = 512, height: int = 512) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def image_url(evolink_emulator: Any) -> str:
    """A URL of a generated PNG, served by the test's emulator."""
    with requests.Session() as session:
        session.trust_env = False  # loopback: never through a proxy
        answer = session.post(
            f"{evolink_emulator.url}/api/v1/files/upload/stream",
            headers={"Authorization": f"Bearer {EMULATOR_API_KEY}"},
            files={"file": ("input.png", _png(), "image/png")},
            data={"upload_path": "tests"},
            timeout=10,
        )
    answer.raise_for_status()
    return str(answer.json()["data"]["file_url"])
