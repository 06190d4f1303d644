"""Evolink's codes of a failed task (``error.code``, evolink-api.md §7), in three groups.

A task Evolink accepted and could not finish carries ``{"code": "...", "message": "..."}``.
For the codes a user can fix, :func:`hint` says what to change (translated); the others
call for a retry later or for the site's administrators. No database access.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

#: Codes the user can fix by changing the request, with what to change.
USER_FIXABLE: dict[str, Promise] = {
    "content_policy_violation": _(
        "The prompt or an input image was refused by the content policy: change the prompt "
        "or use other images."
    ),
    "invalid_parameters": _(
        "The model refused the parameters: check the prompt, the number of images and the "
        "model's other settings."
    ),
    "image_processing_error": _(
        "An input image could not be fetched or processed: use a JPEG, PNG (without "
        "transparency), BMP or WebP image under 10 MB whose address is publicly reachable."
    ),
    "image_dimension_mismatch": _(
        "The input images do not have the dimensions the model needs: use images of the "
        "allowed size (for wan2.5-image-to-image, 384 to 5000 pixels a side)."
    ),
    "request_cancelled": _("The task was cancelled: submit it again if you still want it."),
}

#: Codes that call for a retry later.
RETRY_LATER = frozenset({
    "generation_failed_no_content", "service_error", "generation_timeout",
    "resource_exhausted", "quota_exceeded", "service_unavailable",
})

#: Every code Evolink publishes.
CODES = frozenset(USER_FIXABLE) | RETRY_LATER | {"resource_not_found", "unknown_error"}


def hint(code: str | None) -> str | None:
    """What the user should change for ``code`` (translated), or None when it is not a
    code the user can fix."""
    text = USER_FIXABLE.get(code or "")
    return None if text is None else str(text)
