"""The usage mirror copes with every billing rule of the catalogue's models."""

from __future__ import annotations

from decimal import Decimal

import pytest

from django_evolink.core.transitions import apply_payload
from django_evolink.models import EventSource, ImageTask
from tests.support.evolink_samples import TASK_ID, task_answer

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("rule", "credits", "stored"), [
    ("per_call", 1.2, Decimal("1.2")),
    ("per_token", 0.0375, Decimal("0.0375")),   # token-priced models: small amounts
    ("per_second", 12.5, Decimal("12.5")),
    ("per_image_and_megapixel", 3, Decimal("3")),  # a rule not known today: kept as sent
])
def test_every_billing_rule_is_mirrored(rule, credits, stored):
    task = ImageTask.objects.create(model="gpt-image-2", prompt="p", evolink_id=TASK_ID,
                                    status="pending", params={"quality": "high"})
    payload = task_answer(status="processing", model="gpt-image-2", billing_rule=rule,
                          credits_reserved=credits)
    apply_payload(task, payload, source=EventSource.POLL)
    task.refresh_from_db()
    assert task.billing_rule == rule and task.credits_reserved == stored
    assert task.usage == {"billing_rule": rule, "credits_reserved": format(stored, "f"),
                          "user_group": "default"}


def test_usage_without_credits_is_kept_empty():
    task = ImageTask.objects.create(model="gpt-image-2", prompt="p", evolink_id=TASK_ID,
                                    status="pending")
    payload = task_answer(status="processing", model="gpt-image-2", billing_rule="per_token")
    del payload["usage"]["credits_reserved"]
    apply_payload(task, payload, source=EventSource.POLL)
    task.refresh_from_db()
    assert task.billing_rule == "per_token" and task.credits_reserved is None
    assert task.usage["credits_reserved"] is None
