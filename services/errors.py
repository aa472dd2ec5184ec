"""Error taxonomy shared by all providers (reference/providers.md §8).

Adapters translate every provider failure into a ``ProviderError`` with one ``ErrorCategory``;
the Odoo layer decides what the user sees from the category alone.
"""
import secrets
from enum import Enum


class ErrorCategory(str, Enum):
    AUTH_INVALID = "auth_invalid"
    AUTH_EXPIRED = "auth_expired"
    USER_ACTION_REQUIRED = "user_action_required"
    RATE_LIMITED = "rate_limited"
    INSTITUTION_DOWN = "institution_down"
    NOT_READY = "not_ready"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    PROVIDER_ERROR = "provider_error"
    NETWORK = "network"


# Categories worth retrying inside one run (with backoff); the others need time or a person.
TRANSIENT_CATEGORIES = frozenset({
    ErrorCategory.PROVIDER_ERROR,
    ErrorCategory.INSTITUTION_DOWN,
    ErrorCategory.NETWORK,
})

# Code our adapters use when a bank refuses unattended access (PSD2 "user must be present").
USER_MUST_BE_PRESENT = "USER_MUST_BE_PRESENT"


def new_error_reference():
    """Short reference a user can quote to support; unique enough to grep logs for."""
    return "OS-" + secrets.token_hex(4).upper()


class ProviderError(Exception):
    """A provider call failed. ``message`` is for developers and never contains a secret."""

    def __init__(self, provider, category, message, *, http_status=None, code=None,
                 user_message=None, retryable=None, retry_after=None, reconnect_url=None,
                 raw=None):
        super().__init__(message)
        self.provider = provider
        self.category = ErrorCategory(category)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.user_message = user_message
        self.retryable = (self.category in TRANSIENT_CATEGORIES) if retryable is None else retryable
        self.retry_after = retry_after
        self.reconnect_url = reconnect_url
        self.raw = raw
        self.reference = new_error_reference()

    @property
    def requires_user_presence(self):
        return self.category == ErrorCategory.USER_ACTION_REQUIRED and self.code == USER_MUST_BE_PRESENT

    def __str__(self):
        parts = [f"[{self.reference}] {self.provider}: {self.category.value}"]
        if self.code:
            parts.append(f"({self.code})")
        if self.http_status:
            parts.append(f"HTTP {self.http_status}")
        parts.append(f"- {self.message}")
        return " ".join(parts)
