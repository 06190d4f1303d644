"""How Evolink refusals and failures become HTTP answers of the REST API.

=====================================================  ======  ==========================
Evolink (or local) failure                             HTTP    body
=====================================================  ======  ==========================
local validation (:class:`EvolinkValidationError`)     400     field-keyed messages
400 ``invalid_request_error``, 404 ``not_found_error``   400     ``{detail, code, task}``
413 ``request_too_large_error``                        400     ``{detail, code, task}``
401 ``authentication_error``, 403 ``permission_error``   502     ``{detail, code, task}``
missing API key (:class:`EvolinkConfigurationError`)   502     ``{detail, code, task}``
402 ``insufficient_quota_error``                       503     ``{detail, code, task}``
429 ``rate_limit_error`` (after the client's retries)  429     ``{detail, code, task}`` +
                                                               ``Retry-After``
a spending limit (:class:`EvolinkLimitExceededError`)  429     ``{detail, code, task:
                                                               null, limit, remaining}``
                                                               + ``Retry-After`` when the
                                                               limit frees up by time
5xx, malformed answer, network failure, lost answer    502     ``{detail, code, task}``
=====================================================  ======  ==========================

``code`` is Evolink's error type (``insufficient_quota_error``...) or a local code
(``outcome_unknown``, ``connection_error``, ``configuration_error``...); ``task`` is the
task as stored (``failed`` with the error) or null when no task was made (a refused
upload of an input image).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import status as http
from rest_framework.response import Response

from ..exceptions import (
    EvolinkAPIError,
    EvolinkAuthenticationError,
    EvolinkConfigurationError,
    EvolinkError,
    EvolinkInsufficientQuotaError,
    EvolinkInvalidRequestError,
    EvolinkLimitExceededError,
    EvolinkNotFoundError,
    EvolinkPermissionError,
    EvolinkRateLimitError,
    EvolinkRequestTooLargeError,
    EvolinkValidationError,
)
from .serializers import ImageTaskSerializer

logger = logging.getLogger("django_evolink.api")

#: Retry-After sent on a 429 when Evolink did not say how long to wait (seconds).
DEFAULT_RETRY_AFTER = 60


def status_for(exc: EvolinkError) -> int:
    """The HTTP status the API answers for ``exc``."""
    if isinstance(exc, EvolinkValidationError):
        return http.HTTP_400_BAD_REQUEST
    if isinstance(exc, (EvolinkInvalidRequestError, EvolinkNotFoundError,
                        EvolinkRequestTooLargeError)):
        return http.HTTP_400_BAD_REQUEST
    if isinstance(exc, EvolinkInsufficientQuotaError):
        return http.HTTP_503_SERVICE_UNAVAILABLE
    if isinstance(exc, (EvolinkRateLimitError, EvolinkLimitExceededError)):
        return http.HTTP_429_TOO_MANY_REQUESTS
    if isinstance(exc, EvolinkAPIError) and exc.status in (400, 404) and not exc.retryable:
        return http.HTTP_400_BAD_REQUEST
    # 401/403 (site misconfigured), configuration errors, 5xx, malformed answers,
    # network failures and lost answers: the gateway (Evolink) failed us.
    return http.HTTP_502_BAD_GATEWAY


def detail_for(exc: EvolinkError) -> str:
    """A message for the person using the frontend (no secrets, no setting dumps)."""
    if isinstance(exc, (EvolinkAuthenticationError, EvolinkPermissionError,
                        EvolinkConfigurationError)):
        return _("The image service is not configured correctly on this site; the site's "
                 "administrators have to fix it. Please try again later.")
    if isinstance(exc, EvolinkInsufficientQuotaError):
        return _("The image service is temporarily unavailable (the site has no credits "
                 "left). Please try again later.")
    if isinstance(exc, EvolinkLimitExceededError):
        return exc.message  # written for a person, in the request's language
    if isinstance(exc, EvolinkRateLimitError):
        return _("The image service is busy; please retry after the time in Retry-After.")
    if isinstance(exc, EvolinkRequestTooLargeError):
        return _("The request is too large for the image service (%(what)s): send smaller "
                 "input images (for wan2.5-image-to-image at most 10 MB each) or a shorter "
                 "prompt. %(message)s") % {"what": exc.param or _("the request"),
                                           "message": exc.message}
    if isinstance(exc, (EvolinkInvalidRequestError, EvolinkNotFoundError)):
        return _("Evolink refused the request: %(message)s") % {"message": exc.message}
    if getattr(exc, "code", "") == "outcome_unknown":
        return _("The request was sent to the image service but its answer was lost; it was "
                 "not sent again. Please check the task before submitting again.")
    return _("The image service failed or could not be reached; please try again later.")


def error_response(
    exc: EvolinkError, *, task: Any = None, context: Mapping[str, Any] | None = None
) -> Response:
    """The answer for an Evolink refusal or failure: ``{detail, code, task}``."""

    if isinstance(exc, EvolinkValidationError):
        return Response(exc.errors, status=http.HTTP_400_BAD_REQUEST)
    task = task if task is not None else getattr(exc, "task", None)
    status = status_for(exc)
    body = {
        "detail": detail_for(exc),
        "code": getattr(exc, "code", None) or "evolink_error",
        "task": ImageTaskSerializer(task, context=context or {}).data if task is not None else None,
    }
    headers = {}
    if isinstance(exc, EvolinkLimitExceededError):
        body["limit"] = exc.limit
        body["remaining"] = format(exc.remaining.normalize(), "f")
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif status == http.HTTP_429_TOO_MANY_REQUESTS:
        retry_after = getattr(exc, "retry_after", None)
        wait = DEFAULT_RETRY_AFTER if retry_after is None else max(1, math.ceil(retry_after))
        headers["Retry-After"] = str(wait)
    logger.warning("Evolink refused or failed (%s): answering HTTP %s", body["code"], status)
    return Response(body, status=status, headers=headers)
