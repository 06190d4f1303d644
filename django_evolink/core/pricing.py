"""Which parameters of a create set its price, and the price table's key for them.

No database access: :class:`~django_evolink.core.models.ModelPrice` keys its rows with
:func:`price_key` and :mod:`django_evolink.core.limits` looks them up with it.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

#: Parameters that differ from one request to the next without changing what Evolink
#: charges (a seed, texts and links); left out of the price table's key.
PRICE_NEUTRAL_PARAMS = frozenset({"seed", "negative_prompt", "mask_url", "callback_url"})


def price_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters of a create that set its price (``params`` without the neutral ones)."""
    return {k: v for k, v in sorted((params or {}).items()) if k not in PRICE_NEUTRAL_PARAMS}


def price_key(params: dict[str, Any] | None) -> str:
    """A short stable key of :func:`price_params` (the same for the same values, whatever
    their order)."""
    text = json.dumps(price_params(params), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def per_image(credits: Decimal, n: int | None) -> Decimal:
    """``credits`` reserved for a task of ``n`` images, per image (4 decimals, rounded up)."""
    images = max(1, int(n or 1))
    return (Decimal(credits) / images).quantize(Decimal("0.0001"), rounding="ROUND_CEILING")
