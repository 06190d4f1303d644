"""The HTTP client that speaks Evolink's API.

:class:`EvolinkClient` wraps one :class:`requests.Session` and exposes the four calls
django-evolink needs: create an image task, query a task, read the credits and upload
a file. Every failure surfaces as an :mod:`django_evolink.exceptions` error; the API
key never appears in a log line, an exception message, an exception's context or the
client's ``repr``.

Retries are an explicit, bounded loop (see :meth:`EvolinkClient._send`) rather than a
urllib3 :class:`~urllib3.util.retry.Retry` on the adapter, because urllib3 cannot
express three of our rules: full-jitter backoff, a ``Retry-After`` capped at
``RETRY_MAX_WAIT``, and "retry a POST after a refused connection but never after a
connection reset". The adapter itself never retries (``max_retries=0``), so a request
is sent at most ``MAX_RETRIES + 1`` times in all.

Retry rules:

* ``GET`` (task query, credits): retried on connection errors (refused, DNS, connect
  timeout, reset), read timeouts and HTTP 429/500/502/503/504.
* ``POST`` (create, upload): retried only when Evolink cannot have processed it: the
  connection was never established (refused, DNS, connect timeout) or Evolink answered
  429 or 503. A read timeout, a connection reset after sending or a broken answer raise
  :class:`~django_evolink.exceptions.EvolinkOutcomeUnknownError`; 500/502/504 raise
  their typed error at once.
* Waits: full jitter, ``uniform(0, min(RETRY_MAX_WAIT, RETRY_BACKOFF * 2**attempt))``;
  a ``Retry-After`` header (seconds or HTTP date) replaces it, capped at
  ``RETRY_MAX_WAIT``.
* When retries are exhausted the last typed error is raised (a 429 keeps its
  ``retry_after``).
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import mimetypes
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timezone
from typing import IO, Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from .. import __version__, conf
from ..exceptions import (
    EvolinkAPIError,
    EvolinkAuthenticationError,
    EvolinkConfigurationError,
    EvolinkConnectionError,
    EvolinkError,
    EvolinkMalformedResponseError,
    EvolinkOutcomeUnknownError,
    EvolinkTimeoutError,
    EvolinkTransportError,
    error_class_for,
    redact,
)

logger = logging.getLogger("django_evolink.client")

#: Statuses after which a GET is retried.
RETRYABLE_GET_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses after which a POST is retried: Evolink refused it without processing it.
RETRYABLE_POST_STATUSES = frozenset({429, 503})
#: How much of an unexpected answer body an error message quotes.
BODY_EXCERPT_CHARS = 200

CREATE_PATH = "/v1/images/generations"
TASK_PATH = "/v1/tasks/{task_id}"
CREDITS_PATH = "/v1/credits"
UPLOAD_PATH = "/api/v1/files/upload/stream"
UPLOAD_BASE64_PATH = "/api/v1/files/upload/base64"
UPLOAD_URL_PATH = "/api/v1/files/upload/url"
FILES_LIST_PATH = "/api/v1/files/list"
FILES_QUOTA_PATH = "/api/v1/files/quota"
FILE_PATH = "/api/v1/files/{file_id}"

USER_AGENT = f"django-evolink/{__version__} (+requests/{requests.__version__})"


@dataclass
class _Failure:
    """One failed attempt: the error to raise and whether it may be retried."""

    error: EvolinkError
    retryable: bool
    retry_after: float | None = None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Returns ``None`` when the header is absent or unreadable; never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        current = now if now is not None else time.time()
        seconds = when.timestamp() - current
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def _excerpt(text: str, secret: str | None) -> str:
    """At most :data:`BODY_EXCERPT_CHARS` of ``text``, whitespace collapsed, redacted."""
    flat = " ".join(text.split())
    if len(flat) > BODY_EXCERPT_CHARS:
        flat = flat[:BODY_EXCERPT_CHARS] + "…"
    return redact(flat, secret)


def _redact_json(value: Any, secret: str | None) -> Any:
    """``value`` (parsed JSON) with every string redacted, so error bodies kept on
    exceptions (and stored by callers) never carry the key."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, dict):
        return {redact(str(k), secret): _redact_json(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, secret) for v in value]
    return value


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when ``exc`` proves the request never left this machine.

    That is a connect timeout, or a refused / unresolvable connection (urllib3's
    ``NewConnectionError`` and its subclass ``NameResolutionError``, wrapped in a
    ``MaxRetryError``). A reset or a remote disconnect may happen after the request
    was sent, so it does not count.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return False
    for arg in exc.args:
        reason = getattr(arg, "reason", arg)
        if isinstance(reason, NewConnectionError):
            return True
    return False


def _log_refused_key(error: EvolinkAuthenticationError, method: str, path: str) -> None:
    """Say where the key comes from when Evolink refuses it (never the key itself)."""
    logger.error(
        "Evolink refused the API key (HTTP %s authentication_error) on %s %s: check "
        "EVOLINK['API_KEY'] in settings or the EVOLINK_API_KEY environment variable (a "
        "key from the Evolink dashboard starts with 'sk-evo-'; a revoked or mistyped one is "
        "refused like this).",
        error.status, method, path,
    )


class EvolinkClient:
    """A thread-safe client of Evolink's HTTP API.

    Every argument left as ``None`` comes from ``settings.EVOLINK`` (see
    :mod:`django_evolink.conf`). A missing API key is only reported, as
    :class:`~django_evolink.exceptions.EvolinkConfigurationError`, when a request is
    made. ``sleep`` is the function that waits between retries (tests pass a recorder).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        files_base_url: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
        backoff: float | None = None,
        max_wait: float | None = None,
        *,
        pool_size: int | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        def pick(value: Any, key: str) -> Any:
            return conf.get(key) if value is None else value

        self._api_key: str | None = pick(api_key, "API_KEY") or None
        self.base_url: str = str(pick(base_url, "BASE_URL")).rstrip("/")
        self.files_base_url: str = str(pick(files_base_url, "FILES_BASE_URL")).rstrip("/")
        self.connect_timeout: float = float(pick(connect_timeout, "CONNECT_TIMEOUT"))
        self.read_timeout: float = float(pick(read_timeout, "READ_TIMEOUT"))
        self.max_retries: int = max(0, int(pick(max_retries, "MAX_RETRIES")))
        self.backoff: float = max(0.0, float(pick(backoff, "RETRY_BACKOFF")))
        self.max_wait: float = max(0.0, float(pick(max_wait, "RETRY_MAX_WAIT")))
        self.pool_size: int = max(1, int(pick(pool_size, "POOL_SIZE")))
        self._sleep: Callable[[float], None] = sleep or time.sleep
        self._rng = random.Random()  # jitter only, not cryptography

        self.session = requests.Session()
        # What requests reads from the environment on every request (proxies, NO_PROXY,
        # REQUESTS_CA_BUNDLE) is read once per origin instead (:meth:`_environment`).
        self.session.trust_env = False
        self._environments: dict[str, dict[str, Any]] = {}
        # The adapter never retries: the loop in _send owns every retry decision.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return (
            f"<EvolinkClient base_url={self.base_url!r} files_base_url="
            f"{self.files_base_url!r} api_key={key}>"
        )

    def close(self) -> None:
        """Close the pooled connections of the session."""
        self.session.close()

    # ------------------------------------------------------------------ public calls

    def create_image_task(
        self,
        *,
        model: str,
        prompt: str | None = None,
        image_urls: Iterable[str] | None = None,
        n: int | None = None,
        callback_url: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/images/generations``: create a task; returns Evolink's task object.

        Fields left as ``None`` are not sent; ``params`` are the model's other parameters
        (``size``, ``quality``, ...), sent under Evolink's names. Never resent once it may
        have reached Evolink: a lost answer raises
        :class:`~django_evolink.exceptions.EvolinkOutcomeUnknownError`.
        """
        body: dict[str, Any] = {"model": model}
        if prompt is not None:
            body["prompt"] = prompt
        if image_urls is not None:
            body["image_urls"] = list(image_urls)
        if n is not None:
            body["n"] = n
        body.update(params or {})
        if callback_url is not None:
            body["callback_url"] = callback_url
        return self._request("POST", self.base_url, CREATE_PATH, json=body)

    def get_task(self, task_id: str) -> dict[str, Any]:
        """``GET /v1/tasks/{task_id}``: the task as Evolink sees it now."""
        if not task_id or not isinstance(task_id, str):
            raise ValueError("task_id must be a non-empty string")
        path = TASK_PATH.format(task_id=quote(task_id, safe=""))
        return self._request("GET", self.base_url, path)

    def get_credits(self) -> dict[str, Any]:
        """``GET /v1/credits``: the whole answer (``success``, ``message``, ``data``)."""
        return self._request("GET", self.base_url, CREDITS_PATH)

    def upload_file(
        self,
        fileobj: bytes | IO[bytes],
        *,
        file_name: str,
        content_type: str | None = None,
        upload_path: str | None = None,
    ) -> dict[str, Any]:
        """Upload one image to Evolink's files API; returns the answer's ``data`` dict.

        ``fileobj`` is bytes or a binary file object (read once, so a retry resends the
        same bytes). ``content_type`` defaults to a guess from ``file_name``. An answer
        with ``success: false`` raises a typed :class:`EvolinkAPIError`.
        """
        content = fileobj if isinstance(fileobj, (bytes, bytearray)) else fileobj.read()
        if isinstance(content, str):
            raise TypeError("upload_file needs bytes or a binary file, not text")
        mime = content_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        form: dict[str, str] = {"file_name": file_name}
        if upload_path is not None:
            form["upload_path"] = upload_path
        files = {"file": (file_name, bytes(content), mime)}
        answer = self._request("POST", self.files_base_url, UPLOAD_PATH, data=form, files=files)
        return self._files_data(answer, "upload")

    def upload_base64(
        self,
        content: bytes,
        *,
        file_name: str | None = None,
        content_type: str | None = None,
        upload_path: str | None = None,
    ) -> dict[str, Any]:
        """``POST upload/base64`` of the files API: the same answer as :meth:`upload_file`.

        Without ``file_name`` Evolink generates a unique one; with ``content_type`` the
        bytes are sent as a ``data:`` URL.
        """
        if not isinstance(content, (bytes, bytearray)):
            raise TypeError("upload_base64 needs bytes")
        encoded = base64.b64encode(bytes(content)).decode("ascii")
        if content_type:
            encoded = f"data:{content_type};base64,{encoded}"
        return self._upload_json(UPLOAD_BASE64_PATH, {"base64_data": encoded},
                                 file_name, upload_path)

    def upload_from_url(
        self, file_url: str, *, file_name: str | None = None, upload_path: str | None = None
    ) -> dict[str, Any]:
        """``POST upload/url`` of the files API: Evolink fetches ``file_url`` itself."""
        return self._upload_json(UPLOAD_URL_PATH, {"file_url": file_url}, file_name, upload_path)

    def _upload_json(self, path: str, body: dict[str, str], file_name: str | None,
                     upload_path: str | None) -> dict[str, Any]:
        """POST a JSON upload (base64 or URL) with its optional name and folder."""
        if file_name is not None:
            body["file_name"] = file_name
        if upload_path is not None:
            body["upload_path"] = upload_path
        answer = self._request("POST", self.files_base_url, path, json=body)
        return self._files_data(answer, "upload")

    def list_files(self, *, page: int = 1, page_size: int = 20) -> dict[str, Any]:
        """``GET list`` of the files API: one page of the account's uploaded files."""
        if page < 1 or page_size < 1:
            raise ValueError("page and page_size must be at least 1")
        answer = self._request("GET", self.files_base_url, FILES_LIST_PATH,
                               params={"page": page, "pageSize": page_size})
        return self._files_data(answer, "list")

    def get_files_quota(self) -> dict[str, Any]:
        """``GET quota`` of the files API: how many files the account holds and may hold."""
        answer = self._request("GET", self.files_base_url, FILES_QUOTA_PATH)
        return self._files_data(answer, "quota")

    def delete_file(self, file_id: str) -> dict[str, Any]:
        """``DELETE /{file_id}`` of the files API."""
        if not file_id or not isinstance(file_id, str):
            raise ValueError("file_id must be a non-empty string")
        path = FILE_PATH.format(file_id=quote(file_id, safe=""))
        answer = self._request("DELETE", self.files_base_url, path)
        return self._files_data(answer, "delete")

    def _files_data(self, answer: dict[str, Any], what: str) -> dict[str, Any]:
        """The ``data`` object of a files-API answer; ``success: false`` raises."""
        if answer.get("success") is not True:
            raise self._unsuccessful(_redact_json(answer, self._api_key))
        data = answer.get("data")
        if not isinstance(data, dict):
            raise EvolinkMalformedResponseError(
                f"Evolink's {what} answer has no 'data' object: "
                + _excerpt(json.dumps(answer, default=str), self._api_key),
                status=200,
                body=_redact_json(answer, self._api_key),
            )
        return data

    # ------------------------------------------------------------------ internals

    def _key(self) -> str:
        if not self._api_key:
            raise EvolinkConfigurationError.missing_api_key()
        return self._api_key

    def _request(self, method: str, base: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send with retries and return the JSON object of a 2xx answer."""
        key = self._key()
        response = self._send(method, base + path, path, key, **kwargs)
        return self._decode_success(response)

    def _environment(self, base: str) -> dict[str, Any]:
        """The proxies and ``verify`` the environment gives requests to ``base`` (an origin:
        the client only speaks to ``base_url`` and ``files_base_url``).

        Read the first time ``base`` is used, not on every request as a session that
        trusts the environment would (it scans every environment variable twice per
        request): the proxy variables and ``NO_PROXY`` decide by host, so the answer for
        an origin does not change between requests. A change of those variables is seen
        by the next client (:func:`get_client` builds one when the settings change). Not
        read: ``.netrc``, whose credentials would replace the API key's header.
        """
        found = self._environments.get(base)
        if found is None:
            probe = requests.Session()  # trusts the environment; never sends anything
            merged = probe.merge_environment_settings(base + "/", {}, None, None, None)
            probe.close()
            found = {"proxies": merged["proxies"], "verify": merged["verify"]}
            self._environments[base] = found
        return found

    def _send(self, method: str, url: str, path: str, key: str, **kwargs: Any) -> requests.Response:
        """The retry loop: returns a 2xx response or raises the last typed error."""
        headers = {"Authorization": f"Bearer {key}"}
        environment = self._environment(url[: len(url) - len(path)])
        is_post = method.upper() == "POST"
        attempt = 0
        while True:
            start = time.monotonic()
            failure: _Failure | None = None
            response: requests.Response | None = None
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=(self.connect_timeout, self.read_timeout),
                    allow_redirects=False,
                    **environment,
                    **kwargs,
                )
            except requests.exceptions.RequestException as exc:
                failure = self._transport_failure(exc, method, path, is_post)
            elapsed = time.monotonic() - start

            if response is not None:
                logger.debug(
                    "Evolink %s %s -> %s in %.3fs", method, path, response.status_code, elapsed
                )
                if 200 <= response.status_code < 300:
                    return response
                failure = self._status_failure(response, is_post)
            else:
                assert failure is not None
                logger.debug(
                    "Evolink %s %s -> %s in %.3fs",
                    method,
                    path,
                    type(failure.error).__name__,
                    elapsed,
                )

            # Raised outside the except block: no exception context (which would hold
            # the requests exception and, through it, the request headers) is attached.
            if not failure.retryable or attempt >= self.max_retries:
                if isinstance(failure.error, EvolinkAuthenticationError):
                    _log_refused_key(failure.error, method, path)
                raise failure.error
            wait = self._wait_for(attempt, failure.retry_after)
            logger.debug(
                "Evolink %s %s: retry %d/%d in %.2fs after %s",
                method,
                path,
                attempt + 1,
                self.max_retries,
                wait,
                type(failure.error).__name__,
            )
            self._sleep(wait)
            attempt += 1

    def _wait_for(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number ``attempt + 1``."""
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        ceiling = min(self.max_wait, self.backoff * (2**attempt))
        return self._rng.uniform(0.0, ceiling) if ceiling > 0 else 0.0

    def _transport_failure(
        self, exc: requests.exceptions.RequestException, method: str, path: str, is_post: bool
    ) -> _Failure:
        """Map a requests exception to a typed error and a retry decision."""
        detail = redact(str(exc), self._api_key)
        if len(detail) > 300:
            detail = detail[:300] + "…"
        where = f"{method} {path}"
        if isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc):
            return _Failure(
                EvolinkConnectionError(f"Could not connect to Evolink ({where}): {detail}"),
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.SSLError):
            # Certificate / TLS handshake problems do not fix themselves: no retry.
            return _Failure(
                EvolinkConnectionError(f"TLS error talking to Evolink ({where}): {detail}"),
                retryable=False,
            )
        maybe_sent = isinstance(
            exc,
            (
                requests.exceptions.Timeout,
                requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ),
        )
        if is_post and maybe_sent:
            return _Failure(
                EvolinkOutcomeUnknownError(
                    f"The answer to {where} was lost after the request may have reached "
                    f"Evolink ({type(exc).__name__}: {detail}). It may or may not have been "
                    "processed (and billed); it was not resent."
                ),
                retryable=False,
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return _Failure(
                EvolinkTimeoutError(
                    f"Evolink did not answer {where} within {self.read_timeout:g}s: {detail}"
                ),
                retryable=True,
            )
        if maybe_sent:
            return _Failure(
                EvolinkConnectionError(f"Connection to Evolink failed ({where}): {detail}"),
                retryable=True,
            )
        # Anything else (invalid URL, too many redirects, ...) is a local problem.
        return _Failure(
            EvolinkTransportError(f"Request to Evolink failed ({where}): {detail}"),
            retryable=False,
        )

    def _status_failure(self, response: requests.Response, is_post: bool) -> _Failure:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = self._api_error(response, retry_after)
        statuses = RETRYABLE_POST_STATUSES if is_post else RETRYABLE_GET_STATUSES
        return _Failure(error, retryable=response.status_code in statuses, retry_after=retry_after)

    def _api_error(self, response: requests.Response, retry_after: float | None) -> EvolinkAPIError:
        """The typed error for a non-2xx answer, whatever its body looks like."""
        status = response.status_code
        text = response.text or ""
        try:
            body: Any = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        body = _redact_json(body, self._api_key)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            err_type = error.get("type") if isinstance(error.get("type"), str) else None
            message = error.get("message")
            if not isinstance(message, str) or not message:
                message = f"Evolink answered HTTP {status} ({err_type or 'no message'})"
            return error_class_for(status, err_type)(
                redact(message, self._api_key),
                status=status,
                type=err_type,
                param=_str_or_none(error.get("param")),
                fallback_suggestion=_str_or_none(error.get("fallback_suggestion")),
                retry_after=retry_after,
                body=body,
            )
        if isinstance(body, dict) and isinstance(
            message := body.get("msg") or body.get("message"), str
        ):
            # The files API answers {"success": false, "code": ..., "msg": ...}.
            return error_class_for(status, None)(
                redact(message, self._api_key), status=status, retry_after=retry_after,
                param=_str_or_none(body.get("param")), body=body,
            )
        if not text.strip():
            message = f"Evolink answered HTTP {status} with an empty body"
        elif body is None:
            content_type = response.headers.get("Content-Type", "unknown content type")
            message = (
                f"Evolink answered HTTP {status} with a non-JSON body ({content_type}): "
                f"{_excerpt(text, self._api_key)}"
            )
        else:
            message = (
                f"Evolink answered HTTP {status} without an error object: "
                f"{_excerpt(text, self._api_key)}"
            )
        return error_class_for(status, None)(
            message, status=status, retry_after=retry_after, body=body
        )

    def _decode_success(self, response: requests.Response) -> dict[str, Any]:
        text = response.text or ""
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            shown = _excerpt(text, self._api_key) if text.strip() else "an empty body"
            raise EvolinkMalformedResponseError(
                f"Evolink answered HTTP {response.status_code} with something that is not a "
                f"JSON object: {shown}",
                status=response.status_code,
                body=_redact_json(body, self._api_key),
            )
        return body

    def _unsuccessful(self, answer: dict[str, Any]) -> EvolinkAPIError:
        """The typed error for a 2xx files-API answer saying ``success: false``."""
        code = answer.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 400
        message = answer.get("msg") or answer.get("message") or "Evolink refused the upload"
        if isinstance(answer.get("error"), dict):
            err = answer["error"]
            message = err.get("message") or message
            err_type = err.get("type") if isinstance(err.get("type"), str) else None
        else:
            err_type = None
        return error_class_for(status, err_type)(
            redact(str(message), self._api_key), status=status, type=err_type, body=answer
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------------- shared client

#: The client's constructor arguments and the settings they are read from.
_SETTINGS_KEYS = {
    "api_key": "API_KEY",
    "base_url": "BASE_URL",
    "files_base_url": "FILES_BASE_URL",
    "connect_timeout": "CONNECT_TIMEOUT",
    "read_timeout": "READ_TIMEOUT",
    "max_retries": "MAX_RETRIES",
    "backoff": "RETRY_BACKOFF",
    "max_wait": "RETRY_MAX_WAIT",
    "pool_size": "POOL_SIZE",
}
_shared_lock = threading.Lock()
_shared: tuple[dict[str, Any], EvolinkClient] | None = None


def _current_settings() -> dict[str, Any]:
    return {argument: conf.get(key) for argument, key in _SETTINGS_KEYS.items()}


def get_client() -> EvolinkClient:
    """The shared :class:`EvolinkClient`, rebuilt when the client settings change.

    The instance is keyed on the current values of the client's settings, so
    ``override_settings`` (and pytest-django's ``settings`` fixture) take effect on the
    next call. Safe to call from several threads.
    """
    global _shared
    values = _current_settings()
    with _shared_lock:
        if _shared is None or _shared[0] != values:
            _shared = (values, EvolinkClient(**values))
        return _shared[1]
