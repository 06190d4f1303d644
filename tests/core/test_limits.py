"""Spending limits (core/limits.py) through services.create_task, against canned answers.

Each limit at its boundary (the last allowed create passes, the next is refused with
nothing saved and nothing sent), release after a failure, the rolling 24 h window across
midnight, the price table (estimate, fallback, correction), the policy hook, the signal,
and the statements the check adds to a create.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from unittest import mock

import pytest
import responses
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from django_evolink import services, signals
from django_evolink.core import limits
from django_evolink.core.models import LimitLock, ModelPrice
from django_evolink.core.pricing import price_key
from django_evolink.core.transitions import fail_task
from django_evolink.exceptions import (
    EvolinkConfigurationError,
    EvolinkInvalidRequestError,
    EvolinkLimitExceededError,
)
from django_evolink.models import ImageTask, Status
from tests.support.evolink_samples import error_answer, task_answer

pytestmark = pytest.mark.django_db

BASE = "https://api.evolink.test"
CREATE = f"{BASE}/v1/images/generations"
URLS = ["https://example.com/a.png"]
MODEL = "wan2.5-image-to-image"
SIZED = "doubao-seedream-4.0"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


_ids = itertools.count(1)


def answers(rsps, count: int, credits: float = 1.2) -> None:
    """``count`` create answers, each a new Evolink task reserving ``credits``."""
    for _ in range(count):
        rsps.post(CREATE, json=task_answer(id=f"task-unified-{next(_ids)}",
                                           credits_reserved=credits))


def set_limits(settings, **values) -> None:
    extra = {k: values.pop(k) for k in ("LIMITS_POLICY", "DEFAULT_IMAGE_CREDITS",
                                        "ASYNC_SUBMIT", "MODELS") if k in values}
    settings.EVOLINK = {**settings.EVOLINK, "LIMITS": values, **extra}


def create(user=None, **kwargs) -> ImageTask:
    kwargs.setdefault("image_urls", URLS)
    return services.create_task(prompt="a cat", user=user, **kwargs)


def sized(user, size: str, n: int = 1, **params) -> ImageTask:
    """A create of a text-to-image model that takes ``size``."""
    return create(user, model=SIZED, image_urls=None, n=n, params={"size": size, **params})


def creates_sent(rsps) -> int:
    return sum(1 for call in rsps.calls if call.request.url == CREATE)


# ------------------------------------------------------------------ unfinished tasks


def test_the_last_unfinished_task_allowed_passes_and_the_next_is_refused(rsps, settings, user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=3)
    answers(rsps, 4)
    for _ in range(3):
        assert create(user).status == Status.PENDING
    with pytest.raises(EvolinkLimitExceededError) as info:
        create(user)
    exc = info.value
    assert exc.code == "limit_exceeded" and exc.limit == "ACTIVE_TASKS_PER_USER"
    assert (exc.allowed, exc.used, exc.remaining) == (3, 3, 0)
    assert exc.retry_after is None  # frees up when a task finishes, not by time
    assert "at most 3 unfinished tasks" in str(exc)
    assert ImageTask.objects.count() == 3  # no row kept
    assert creates_sent(rsps) == 3  # nothing sent for the refused one


def test_the_unfinished_limit_is_per_user(rsps, settings, user, other_user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=1)
    answers(rsps, 3)
    create(user)
    create(other_user)
    with pytest.raises(EvolinkLimitExceededError):
        create(user)


def test_a_finished_or_failed_task_frees_its_slot(rsps, settings, user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=1)
    answers(rsps, 2)
    first = create(user)
    with pytest.raises(EvolinkLimitExceededError):
        create(user)
    fail_task(first, code="task_failed", message="gone")
    assert create(user).status == Status.PENDING


def test_zero_refuses_every_create(rsps, settings, user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=0)
    with pytest.raises(EvolinkLimitExceededError):
        create(user)
    assert not ImageTask.objects.exists() and creates_sent(rsps) == 0


def test_queued_tasks_of_async_submit_count_as_unfinished(settings, user,
                                                         django_capture_on_commit_callbacks):
    set_limits(settings, ACTIVE_TASKS_PER_USER=2, ASYNC_SUBMIT=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        create(user)
        create(user)
        with pytest.raises(EvolinkLimitExceededError):
            create(user)
    assert len(callbacks) == 2  # the refused create asks no worker to submit it
    assert list(ImageTask.objects.values_list("status", flat=True)) == ["queued", "queued"]


# ------------------------------------------------------------------ credits per user


def test_the_last_credits_allowed_pass_and_the_next_create_is_refused(rsps, settings, user):
    set_limits(settings, CREDITS_PER_USER_PER_DAY=Decimal("3.6"), DEFAULT_IMAGE_CREDITS=1.2)
    answers(rsps, 4)
    for _ in range(3):
        task = create(user)
    assert task.credits_estimated == Decimal("1.2") and task.credits_reserved == Decimal("1.2")
    with pytest.raises(EvolinkLimitExceededError) as info:
        create(user)
    exc = info.value
    assert exc.limit == "CREDITS_PER_USER_PER_DAY"
    assert (exc.allowed, exc.used, exc.requested, exc.remaining) == (
        Decimal("3.6"), Decimal("3.6"), Decimal("1.2"), Decimal("0"))
    # the oldest task leaves the rolling window in (almost) 24 hours
    assert 86_000 < exc.retry_after <= 86_400
    assert "3.6 credits per user in 24 hours" in str(exc) and "0 are left" in str(exc)
    assert ImageTask.objects.count() == 3 and creates_sent(rsps) == 3


def test_n_multiplies_the_estimate(rsps, settings, user):
    set_limits(settings, CREDITS_PER_USER_PER_DAY=5, DEFAULT_IMAGE_CREDITS=2)
    answers(rsps, 1, credits=4)
    assert create(user, n=2).credits_estimated == Decimal(4)
    with pytest.raises(EvolinkLimitExceededError) as info:
        create(user, n=1)  # 4 used + 2 > 5
    assert info.value.requested == Decimal(2) and info.value.remaining == Decimal(1)


def test_a_create_dearer_than_the_whole_limit_never_frees_up(rsps, settings, user):
    set_limits(settings, CREDITS_PER_USER_PER_DAY=1, DEFAULT_IMAGE_CREDITS=2)
    with pytest.raises(EvolinkLimitExceededError) as info:
        create(user)
    assert info.value.retry_after is None
    assert "alone costs more than the limit" in str(info.value)


def test_a_failed_task_releases_its_credits(rsps, settings, user):
    set_limits(settings, CREDITS_PER_USER_PER_DAY=Decimal("2.4"), DEFAULT_IMAGE_CREDITS=1.2)
    answers(rsps, 2)
    first = create(user)
    create(user)
    with pytest.raises(EvolinkLimitExceededError):
        create(user)
    fail_task(first, code="task_failed", message="Evolink reported the task as failed.")
    rsps.post(CREATE, json=task_answer(id="task-unified-again"))
    assert create(user).status == Status.PENDING


def test_a_task_evolink_refused_reserves_nothing(rsps, settings, user):
    set_limits(settings, CREDITS_PER_USER_PER_DAY=Decimal("1.2"), DEFAULT_IMAGE_CREDITS=1.2)
    rsps.post(CREATE, status=400, json=error_answer("invalid_request_error", "bad"))
    with pytest.raises(EvolinkInvalidRequestError):
        create(user)
    answers(rsps, 1)
    assert create(user).status == Status.PENDING


def test_a_task_whose_answer_was_lost_still_counts(rsps, settings, user):
    """Evolink may have billed it: its reservation is kept until it leaves the window."""
    set_limits(settings, CREDITS_PER_USER_PER_DAY=Decimal("1.2"), DEFAULT_IMAGE_CREDITS=1.2)
    answers(rsps, 1)
    task = create(user)
    fail_task(task, code="outcome_unknown", message="lost")
    with pytest.raises(EvolinkLimitExceededError):
        create(user)


def at(moment: dt.datetime):
    """The clock stopped at ``moment`` (what ``timezone.now()`` answers)."""
    return mock.patch("django.utils.timezone.now", return_value=moment)


def test_rolling_24_hours_across_midnight(rsps, settings, user):
    """Credits reserved at 23:30 still count at 00:30 the next day (a calendar day would
    have started afresh) and are released at 23:30 + 24 h."""
    set_limits(settings, CREDITS_PER_USER_PER_DAY=Decimal("1.2"), DEFAULT_IMAGE_CREDITS=1.2)
    late = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone.utc)
    answers(rsps, 2)
    ImageTask.objects.filter(pk=create(user).pk).update(created_at=late)
    after_midnight = late + dt.timedelta(hours=1)
    with at(after_midnight), pytest.raises(EvolinkLimitExceededError) as info:
        create(user)
    assert info.value.retry_after == 23 * 3600
    just_before = late + limits.WINDOW - dt.timedelta(seconds=1)
    with at(just_before), pytest.raises(EvolinkLimitExceededError) as info:
        create(user)
    assert info.value.retry_after == 1
    with at(late + limits.WINDOW):
        assert create(user).status == Status.PENDING


# ------------------------------------------------------------------ credits of the site


def test_the_site_cap_counts_every_user(rsps, settings, user, other_user):
    set_limits(settings, CREDITS_PER_DAY=Decimal("2.4"), DEFAULT_IMAGE_CREDITS=1.2)
    answers(rsps, 3)
    create(user)
    create(None)  # a task without a user counts for the site
    with pytest.raises(EvolinkLimitExceededError) as info:
        create(other_user)
    assert info.value.limit == "CREDITS_PER_DAY"
    assert "for the whole site" in str(info.value)
    assert ImageTask.objects.count() == 2


def test_per_user_limits_do_not_bind_a_create_without_a_user(rsps, settings):
    set_limits(settings, ACTIVE_TASKS_PER_USER=1, CREDITS_PER_USER_PER_DAY=0)
    answers(rsps, 2)
    create(None)
    create(None)
    assert ImageTask.objects.count() == 2
    assert not LimitLock.objects.exists()  # nothing to lock: no statement added


# ------------------------------------------------------------------ prices


def test_the_price_table_sets_the_estimate_and_evolinks_answer_corrects_it(rsps, settings,
                                                                           user):
    set_limits(settings, CREDITS_PER_USER_PER_DAY=100, DEFAULT_IMAGE_CREDITS=5, MODELS=None)
    answers(rsps, 1, credits=2.5)
    task = sized(user, "1:1")
    assert task.credits_estimated == Decimal(5)  # nothing seen yet: the default
    price = ModelPrice.objects.get()
    assert (price.model, price.params, price.credits_per_image) == (
        SIZED, {"size": "1:1"}, Decimal("2.5"))
    assert price.seen_at is not None
    answers(rsps, 1, credits=5)
    task = sized(user, "1:1", n=2)
    assert task.credits_estimated == Decimal(5)  # 2.5 per image, 2 images: no write
    assert ModelPrice.objects.get().credits_per_image == Decimal("2.5")


def test_an_unseen_parameter_set_takes_the_dearest_price_of_the_model(rsps, settings, user):
    set_limits(settings, CREDITS_PER_USER_PER_DAY=100, DEFAULT_IMAGE_CREDITS=9, MODELS=None)
    ModelPrice.objects.create(model=SIZED, params={"size": "1:1"}, credits_per_image=1)
    ModelPrice.objects.create(model=SIZED, params={"size": "16:9"}, credits_per_image=3)
    ModelPrice.objects.create(model=MODEL, params={}, credits_per_image=7)  # another model
    answers(rsps, 2, credits=1)
    assert sized(user, "1:1").credits_estimated == Decimal(1)
    assert sized(user, "4:3").credits_estimated == Decimal(3)


def test_price_key_ignores_order_and_neutral_parameters():
    assert price_key({"size": "1:1", "quality": "high"}) == price_key(
        {"quality": "high", "seed": 1, "size": "1:1"})
    assert price_key({"size": "1:1"}) != price_key({"size": "16:9"})


def test_no_price_is_learnt_without_credit_limits(rsps, settings, user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=5)
    answers(rsps, 1)
    assert create(user).credits_estimated is None
    assert not ModelPrice.objects.exists()


# ------------------------------------------------------------------ policy, signal


def per_group_policy(user, request):
    """Members of "pro" get more; everyone else keeps EVOLINK['LIMITS']."""
    if user is not None and user.groups.filter(name="pro").exists():
        return {"ACTIVE_TASKS_PER_USER": 3}
    return None


def test_the_policy_hook_sets_limits_per_group(rsps, settings, user, other_user):
    Group.objects.create(name="pro").user_set.add(other_user)
    set_limits(settings, ACTIVE_TASKS_PER_USER=1,
               LIMITS_POLICY="tests.core.test_limits.per_group_policy")
    answers(rsps, 5)
    create(user)
    with pytest.raises(EvolinkLimitExceededError):
        create(user)
    for _ in range(3):
        create(other_user)
    with pytest.raises(EvolinkLimitExceededError) as info:
        create(other_user)
    assert info.value.allowed == 3


def test_the_policy_receives_the_user_and_the_request(settings, user):
    seen = []

    def policy(u, request):
        seen.append((u, request))
        return {"ACTIVE_TASKS_PER_USER": 0}

    set_limits(settings, LIMITS_POLICY=policy)
    marker = object()
    with pytest.raises(EvolinkLimitExceededError):
        create(user, request=marker)
    assert seen == [(user, marker)]


@pytest.mark.parametrize("answer, words", [
    (["nope"], "returned list"),
    ({"ACTIVE_TASKS": 1}, "Unknown limit 'ACTIVE_TASKS'"),
    ({"CREDITS_PER_DAY": -1}, "CREDITS_PER_DAY must be None or a number of credits"),
])
def test_a_bad_policy_answer_is_a_configuration_error(settings, user, answer, words):
    set_limits(settings, LIMITS_POLICY=lambda u, r: answer)
    with pytest.raises(EvolinkConfigurationError, match=words):
        create(user)
    assert not ImageTask.objects.exists()


def test_an_unimportable_policy_names_the_setting(settings, user):
    set_limits(settings, LIMITS_POLICY="no.such.policy")
    with pytest.raises(EvolinkConfigurationError, match="LIMITS_POLICY"):
        create(user)


def test_limit_exceeded_is_signalled(rsps, settings, user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=0)
    received = []

    def receiver(sender, **kwargs):
        received.append((sender, kwargs))

    signals.limit_exceeded.connect(receiver)
    try:
        with pytest.raises(EvolinkLimitExceededError):
            create(user, request="req")
    finally:
        signals.limit_exceeded.disconnect(receiver)
    [(sender, kwargs)] = received
    assert sender is ImageTask
    assert kwargs["user"] == user and kwargs["limit"] == "ACTIVE_TASKS_PER_USER"
    assert kwargs["allowed"] == 0 and kwargs["remaining"] == 0 and kwargs["request"] == "req"
    assert kwargs["retry_after"] is None


def test_the_refusal_is_translated(rsps, settings, user):
    set_limits(settings, CREDITS_PER_DAY=1, DEFAULT_IMAGE_CREDITS=2)
    for language in ("ja", "zh-hans"):
        with translation.override(language), pytest.raises(EvolinkLimitExceededError) as info:
            create(user)
        assert "Limit reached" not in str(info.value)
        assert "2" in str(info.value)


# ------------------------------------------------------------------ statements


def _statements(user) -> int:
    with CaptureQueriesContext(connection) as queries:
        create(user)
    return len(queries.captured_queries)


@pytest.mark.parametrize("bounds", [
    {"ACTIVE_TASKS_PER_USER": 100},
    {"ACTIVE_TASKS_PER_USER": 100, "CREDITS_PER_USER_PER_DAY": 1000, "CREDITS_PER_DAY": 1000},
])
def test_the_check_adds_two_statements_to_a_create(rsps, settings, user, bounds):
    answers(rsps, 4)
    settings.EVOLINK = {**settings.EVOLINK, "DEFAULT_IMAGE_CREDITS": 1.2}
    create(user)  # warm-up: the first create of a scope inserts its lock row
    without = _statements(user)
    set_limits(settings, DEFAULT_IMAGE_CREDITS=1.2, **bounds)
    create(user)  # the price is learnt here (1.2 per image): later creates write nothing
    with_limits = _statements(user)
    assert with_limits - without == 2, (without, with_limits)


def test_the_limit_locks_are_one_row_per_scope(rsps, settings, user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=5, CREDITS_PER_DAY=100)
    answers(rsps, 2)
    create(user)
    create(user)
    assert sorted(LimitLock.objects.values_list("key", flat=True)) == [
        "site", f"user:{user.pk}"]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("value, words", [
    ({"ACTIVE_TASKS_PER_USER": 1.5}, "whole number"),
    ({"ACTIVE_TASKS_PER_USER": True}, "whole number"),
    ({"CREDITS_PER_USER_PER_DAY": "10"}, "number of credits"),
    ({"CREDITS_PER_DAY": float("nan")}, "number of credits"),
    ({"CREDITS": 1}, "Unknown limit"),
    ([1], "must be a dict"),
])
def test_limit_errors_say_what_is_allowed(value, words):
    [error] = limits.limit_errors(value)
    assert words in error


def test_good_limits_have_no_errors():
    assert limits.limit_errors(None) == []
    assert limits.limit_errors({"ACTIVE_TASKS_PER_USER": 0, "CREDITS_PER_DAY": Decimal("2.5"),
                                "CREDITS_PER_USER_PER_DAY": 3.5}) == []


def test_standings_list_who_is_near_a_limit(rsps, settings, user, other_user):
    set_limits(settings, ACTIVE_TASKS_PER_USER=5, CREDITS_PER_USER_PER_DAY=10,
               DEFAULT_IMAGE_CREDITS=1.2)
    answers(rsps, 5)
    for _ in range(4):
        create(user)
    create(other_user)
    found = limits.standings()
    assert [s.user for s in found] == [user, other_user]
    assert found[0].near and found[0].active == 4 and found[0].credits == Decimal("4.8")
    assert not found[1].near
    assert limits.site_credits_used() == Decimal("6.0")


def test_check_limits_asks_without_creating(rsps, settings, user):
    """``services.check_limits`` (the public module) refuses as a create would, and
    saves, sends and signals nothing else."""
    set_limits(settings, ACTIVE_TASKS_PER_USER=1)
    services.check_limits(user=user, model=MODEL, n=1)  # allowed: returns None
    answers(rsps, 1)
    create(user)
    with pytest.raises(EvolinkLimitExceededError) as info:
        services.check_limits(user=user, model=MODEL, n=1)
    assert info.value.limit == "ACTIVE_TASKS_PER_USER"
    assert ImageTask.objects.count() == 1 and creates_sent(rsps) == 1
