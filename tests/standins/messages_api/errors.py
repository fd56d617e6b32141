"""The Messages API's errors: a refusal of a malformed request, and each error type's status and words.

`Refusal` is what validation raises (the server answers it and records it in `MessagesAPI.errors`);
the tables word the errors a test asks for (``ErrorReply``, ``[[error=...]]``) as the API would.
"""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def invalid(message: str) -> Refusal:
    return Refusal(400, "invalid_request_error", message)


def bad_tag(path: str, tag: Any) -> Refusal:
    return invalid(f"{path}: Input tag '{tag}' found using 'type' does not match any of the expected tags")


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}
STATUS_OF_ERROR_TYPE = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "timeout_error": 504,
}
