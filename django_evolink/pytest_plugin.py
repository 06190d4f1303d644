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

Nothing here imports Django or the emulator at import time, so the plugin is harmless in
test suites that do not use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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
