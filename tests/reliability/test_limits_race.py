"""Concurrent creates against the spending limits: never more than the limit.

Real threads on real PostgreSQL connections, all released at the same instant by a
barrier, each calling ``services.create_task`` against the emulator (which answers creates
after 0.2 s, so every create is still waiting on Evolink while the others are checked).
The lock row of the scope (``LimitLock``, upserted first in the create's transaction)
makes the checks take turns: 20 creates of one user against ``ACTIVE_TASKS_PER_USER = 5``
leave exactly 5 tasks, and 20 creates of 10 users against a site cap worth 5 tasks leave
exactly 5.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from django_evolink.core import services
from django_evolink.evolink.client import get_client
from django_evolink.exceptions import EvolinkLimitExceededError
from django_evolink.models import ImageTask, Status
from tests.conftest import make_image_bytes

pg_only = pytest.mark.skipif(connection.vendor != "postgresql",
                             reason="needs PostgreSQL: real concurrent connections and row "
                                    "locks (make test-postgres)")

pytestmark = [pytest.mark.postgres, pg_only, pytest.mark.django_db(transaction=True)]


def race(users: list, image_url: str) -> tuple[int, list[BaseException]]:
    """One create per entry of ``users``, all at once; (refusals, other errors)."""
    barrier = threading.Barrier(len(users))
    refused: list[EvolinkLimitExceededError] = []
    errors: list[BaseException] = []

    def create(user) -> None:
        try:
            barrier.wait()
            services.create_task(prompt="p", image_urls=[image_url], user=user)
        except EvolinkLimitExceededError as exc:
            refused.append(exc)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return len(refused), errors


@pytest.fixture
def image_url(settings, evolink_emulator):
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": True, "MAX_RETRIES": 0}
    evolink_emulator.faults.set_latency("create", 0.2)
    return get_client().upload_file(make_image_bytes(), file_name="in.png")["file_url"]


def test_twenty_concurrent_creates_of_one_user_leave_exactly_the_limit(
        settings, django_user_model, evolink_emulator, image_url):
    settings.EVOLINK = {**settings.EVOLINK, "LIMITS": {"ACTIVE_TASKS_PER_USER": 5}}
    user = django_user_model.objects.create_user("racer", password="pw")
    refused, errors = race([user] * 20, image_url)
    assert not errors, errors
    assert ImageTask.objects.filter(user=user).count() == 5
    assert set(ImageTask.objects.values_list("status", flat=True)) == {Status.PENDING}
    assert refused == 15
    assert evolink_emulator.requests.count("POST", "/v1/images/generations") == 5


def test_concurrent_creates_of_many_users_never_pass_the_site_cap(
        settings, django_user_model, evolink_emulator, image_url):
    # the emulator reserves 1.2 credits per image: the cap is worth exactly 5 tasks
    settings.EVOLINK = {**settings.EVOLINK, "DEFAULT_IMAGE_CREDITS": 1.2,
                        "LIMITS": {"CREDITS_PER_DAY": 6}}
    users = [django_user_model.objects.create_user(f"u{i}", password="pw") for i in range(10)]
    refused, errors = race(users * 2, image_url)
    assert not errors, errors
    assert ImageTask.objects.count() == 5 and refused == 15
    assert evolink_emulator.requests.count("POST", "/v1/images/generations") == 5
