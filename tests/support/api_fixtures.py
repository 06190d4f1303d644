"""Fixtures of the REST API, upload and callback tests.

Loaded with ``pytest_plugins = ["tests.support.api_fixtures"]`` (never imported directly,
so pytest rewrites its asserts).
"""

from __future__ import annotations

from typing import Any

import pytest
import responses
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.support.api import CREATE_URL, UPLOAD_URL
from tests.support.evolink_samples import task_answer, upload_answer


@pytest.fixture
def api(user: Any) -> APIClient:
    """An API client authenticated as ``user`` (no CSRF: force_authenticate)."""
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=False)
def clear_cache() -> Any:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def evolink_http() -> Any:
    """``responses`` against the test BASE_URL: create and upload answer successfully."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, CREATE_URL, json=task_answer(status="pending"))
        rsps.add(responses.POST, UPLOAD_URL, json=upload_answer())
        yield rsps


@pytest.fixture(autouse=False)
def fast_hashing(settings: Any) -> None:
    """Users are created with a cheap hasher (the default one costs ~0.3 s a user)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
