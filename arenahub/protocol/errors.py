"""Named failures, each with its HTTP status and OpenAI error type and code.

Every program raises these and maps them to an OpenAI error envelope in one place
(``arenahub.protocol.openai.error_body``).
"""

from __future__ import annotations


class ApiError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"
    # What an upstream (a client, a site) said, bounded and cleaned, beside the platform's own message.
    upstream_message: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class InvalidApiKey(ApiError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class ModelNotAllowed(ApiError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class RequestTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class NoClientAvailable(ApiError):
    """Nothing can serve the request now: answered at once, with the reason."""

    status = 503
    type = "service_unavailable_error"
    code = "no_client_available"


class QueueFull(ApiError):
    """Every client that could serve the request is busy and the wait queue is full."""

    status = 429
    type = "rate_limit_exceeded"
    code = "queue_full"


class UpstreamRateLimited(ApiError):
    """Every client that could serve the request is rate limited by its upstream (arena.ai's 429)."""

    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class PinNotAllowed(ApiError):
    """Pinning a request to a client is for admins (debugging)."""

    status = 403
    type = "invalid_request_error"
    code = "pin_not_allowed"


class UpstreamError(ApiError):
    """The client or its upstream failed while answering."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(ApiError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ShuttingDown(ApiError):
    status = 503
    type = "service_unavailable_error"
    code = "shutting_down"
