"""VLM errors, classified for the engine that schedules calls.

The engine owns retries (the SDKs' own are off), so each failure says which side of that line it is on:
`RetryableVLMError` (the same request may well succeed later: rate limits, 5xx, timeouts, dropped
connections) or `PermanentVLMError` (asking again wastes money: bad key, bad request, a safety block, an
empty answer, JSON that stayed malformed after the one corrective retry). `.reason` is a short stable code
for the run store's per-item status table; the message is one line and never contains an API key.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ggt.vlm.result import Usage

Reason = Literal[
    # retryable
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "conflict",
    "bad_response",
    # permanent
    "auth",
    "invalid_request",
    "not_found",
    "quota_exceeded",
    "safety_block",
    "empty_response",
    "malformed_json",
    "no_image",  # an image generator answered without an image (text only, or finishReason NO_IMAGE)
    "bad_output",  # an image generator returned bytes that do not decode as an image
    "batch_failed",  # a batch job ended failed, cancelled or expired
    "missing_api_key",
    "invalid_config",
    "unsupported",
]

_MAX_MESSAGE = 300


def _one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret replaced by `***`. Short strings are skipped: they would mangle prose."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text


class VLMError(Exception):
    """A VLM call that failed. `reason` is a short code; `str(err)` a one-line message."""

    reason: Reason = "invalid_request"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        backend: str | None = None,
        model: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
        raw_text: str | None = None,
        usage: Usage | None = None,
    ) -> None:
        if reason is not None:
            self.reason = reason
        self.backend = backend
        self.model = model
        self.status = status
        self.retry_after_s = retry_after_s
        # The model's last answer, for the error log; malformed answers are exactly what one wants to see.
        self.raw_text = raw_text
        # Tokens spent before the failure (a blocked prompt or two malformed answers are still billed).
        self.usage = usage
        where = " ".join(x for x in (backend, model) if x)
        self.message = _one_line(f"{where}: {message}" if where else message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the error picklable across process pools and Ray workers with its fields intact.
        state = {k: v for k, v in self.__dict__.items() if k != "message"}
        return (_rebuild, (type(self), self.message, state))


def _rebuild(cls: type[VLMError], message: str, state: dict[str, Any]) -> VLMError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    err.message = message
    return err


class RetryableVLMError(VLMError):
    """Transient: the engine may try again later (after `retry_after_s` when the server said so)."""

    reason: Reason = "server_error"
    retryable = True


class PermanentVLMError(VLMError):
    """Asking again will fail the same way (or cost money for nothing); record it and move on."""

    reason: Reason = "invalid_request"


class SafetyBlockError(PermanentVLMError):
    reason: Reason = "safety_block"


class EmptyResponseError(PermanentVLMError):
    reason: Reason = "empty_response"


class MalformedResponseError(PermanentVLMError):
    """The answer was not valid JSON for the schema, even after one retry that quoted the error.

    Permanent because the corrective retry already happened inside the call: paying again for the same
    prompt rarely helps, and the engine's budget is better spent on other items.
    """

    reason: Reason = "malformed_json"


class VLMConfigError(PermanentVLMError, ValueError):
    """The client cannot be built or used as configured: a missing key, bad options, an unsupported request."""

    reason: Reason = "invalid_config"


# ----------------------------------------------------------------------------------------------------------
# Helpers shared by the backends' classifiers


def parse_retry_after(headers: Mapping[str, str] | None, body: Any = None) -> float | None:
    """Seconds to wait, from a Retry-After header (seconds or HTTP date) or a Google RetryInfo detail."""
    value = None
    if headers is not None:
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except Exception:
            value = None
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    # Gemini puts the delay it wants in the error body instead: {"@type": ".../google.rpc.RetryInfo",
    # "retryDelay": "27s"}.
    try:
        text = body if isinstance(body, str) else json.dumps(body)
    except (TypeError, ValueError):
        return None
    match = re.search(r'"retryDelay"\s*:\s*"([\d.]+)s"', text or "")
    return float(match.group(1)) if match else None


def transport_reason(exc: BaseException) -> Reason | None:
    """'timeout' / 'connection' for network-level failures of any HTTP stack, else None.

    Matched by class name along the MRO so one rule covers httpx, httpx2 (the SDKs' current transport)
    and aiohttp (google-genai's choice when it is installed) without importing any of them.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TimeoutException", "TimeoutError", "ServerTimeoutError", "APITimeoutError"}:
        return "timeout"
    if names & {
        "TransportError",
        "NetworkError",
        "ProtocolError",
        "ConnectionError",
        "ClientOSError",
        "ClientConnectionError",
        "ServerDisconnectedError",
        "APIConnectionError",
    }:
        return "connection"
    return None


_STATUS_REASONS: dict[int, tuple[type[VLMError], Reason]] = {
    400: (PermanentVLMError, "invalid_request"),
    401: (PermanentVLMError, "auth"),
    403: (PermanentVLMError, "auth"),
    404: (PermanentVLMError, "not_found"),
    408: (RetryableVLMError, "timeout"),
    409: (RetryableVLMError, "conflict"),
    413: (PermanentVLMError, "invalid_request"),
    422: (PermanentVLMError, "invalid_request"),
    429: (RetryableVLMError, "rate_limited"),
}


def error_for_status(status: int) -> tuple[type[VLMError], Reason]:
    if status in _STATUS_REASONS:
        return _STATUS_REASONS[status]
    if status >= 500:
        return RetryableVLMError, "server_error"
    return PermanentVLMError, "invalid_request"


def strip_cause_if_leaky(err: VLMError, cause: BaseException, secrets: Iterable[str | None]) -> VLMError:
    """Chain `cause` for debugging unless its text would reveal a secret (a proxy echoing headers)."""
    text = f"{cause!s} {cause!r}"
    if redact(text, secrets) != text:
        err.__cause__ = None
        err.__suppress_context__ = True
    else:
        err.__cause__ = cause
    return err
