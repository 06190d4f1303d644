"""Reading Evolink's credits answer into the figures shown (admin and command alike)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from django_evolink.core.credits import CreditBalance, format_credits, parse_credits
from tests.support import evolink_samples as samples


def test_the_balance_is_the_accounts_and_the_key_comes_second():
    assert parse_credits(samples.credits_answer()) == CreditBalance(
        remaining=Decimal("1095.39"), used=Decimal("135.9"),
        key_remaining=Decimal("99416.44"), key_used=Decimal("583.55"), key_unlimited=False,
    )


@pytest.mark.parametrize("answer", [None, [], {"success": True}, {"data": "none"}])
def test_an_answer_without_data_has_no_balance(answer):
    assert parse_credits(answer) is None


def test_only_finite_numbers_are_amounts_and_only_true_is_unlimited():
    balance = parse_credits({"data": {
        "user": {"remaining_credits": True, "used_credits": "NaN"},
        "token": {"remaining_credits": "12.50", "used_credits": [], "unlimited_credits": 1},
    }})
    assert balance == CreditBalance(None, None, Decimal("12.50"), None, False)
    assert format_credits(balance.key_remaining) == "12.5"
    assert format_credits(Decimal("1E+3")) == "1000" and format_credits(None) == ""
