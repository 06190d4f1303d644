"""Throttling of the REST API (create, refresh); rates from EVOLINK["THROTTLE_RATES"]."""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import ScopedRateThrottle

from .. import conf

#: Scope of ``POST tasks/`` (create).
CREATE_SCOPE = "evolink_create"
#: Scope of ``POST tasks/{id}/refresh/``.
REFRESH_SCOPE = "evolink_refresh"


def throttle_rates() -> dict[str, str | None]:
    """The effective rates: the defaults, updated by ``EVOLINK['THROTTLE_RATES']``.

    A scope whose rate is ``None`` is not throttled.
    """
    rates = dict(conf.DEFAULTS["THROTTLE_RATES"])
    rates.update(conf.get("THROTTLE_RATES") or {})
    return rates


class EvolinkScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, with its rates read from ``EVOLINK['THROTTLE_RATES']``.

    A view names its scope with ``throttle_scope`` or, when the scope depends on the
    method (``tasks/`` lists with GET and creates with POST), with
    ``get_throttle_scope(request)``. Views and methods without a scope are not
    throttled. Requests are counted per user (per client IP for anonymous callers), in
    Django's default cache.
    """

    def get_rate(self) -> str | None:
        return throttle_rates().get(self.scope) if self.scope else None

    def allow_request(self, request: Any, view: Any) -> bool:
        getter = getattr(view, "get_throttle_scope", None)
        self.scope = getter(request) if getter else getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        # SimpleRateThrottle.allow_request, skipping ScopedRateThrottle's scope lookup
        return super(ScopedRateThrottle, self).allow_request(request, view)
