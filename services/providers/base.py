"""Base class of every provider adapter: one transport method, the operations the core calls.

An adapter speaks HTTP to one provider and returns the normalized records of ``services.types``.
It never touches the ORM. Subclasses implement the operations and ``_map_error``; field mapping
lives in small pure functions of the adapter module.
"""
import email.utils
import logging
import time
from datetime import datetime, timezone

import requests

from ..errors import ErrorCategory, ProviderError

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds


def parse_retry_after(value, now=None):
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" and obsolete zones parse as naive: they mean UTC
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class ProviderAdapter:
    """Common transport and contract. Subclasses set ``code``, ``label`` and ``default_base_url``."""

    code = None
    label = None
    default_base_url = None
    #: How far back the provider can return transactions, in days (None: no known limit).
    max_history_days = None
    #: Public credentials of a provider that needs no contract (the Sandbox Bank), else None.
    default_credentials = None
    #: The callback query parameter that carries our ``state`` back.
    callback_state_param = "state"
    #: Whether the consent flow uses PKCE; the core then keeps a code verifier for the callback.
    uses_pkce = False

    def __init__(self, config, *, session=None, timeout=DEFAULT_TIMEOUT, max_retries=3,
                 backoff=0.5, max_retry_wait=30.0, sleep=time.sleep, user_present=False,
                 psu_ip=None):
        self.config = dict(config or {})
        self.base_url = (self.config.get("base_url") or self.default_base_url or "").rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        self.user_present = user_present
        self.psu_ip = psu_ip
        self.request_count = 0

    # ------------------------------------------------------------------ transport
    def _request(self, method, path, *, params=None, json=None, data=None, headers=None,
                 auth=True, parse=True, retry=True):
        """Send one request with retries; return the decoded JSON (or the response).

        Retries transient failures with exponential backoff and waits out short rate limits
        (honouring ``Retry-After``); anything else becomes a ``ProviderError`` at once.
        ``retry=False`` for calls that must not be repeated (a single-use authorization code).
        """
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            all_headers = dict(self._auth_headers(method, url, json) if auth else {})
            all_headers.update(headers or {})
            try:
                self.request_count += 1
                response = self.session.request(
                    method, url, params=params, json=json, data=data, headers=all_headers,
                    timeout=self.timeout, allow_redirects=False)
            except requests.Timeout:
                error = ProviderError(self.code, ErrorCategory.NETWORK,
                                      f"{method} {path} timed out", retryable=True)
            except requests.RequestException as exc:
                error = ProviderError(self.code, ErrorCategory.NETWORK,
                                      f"{method} {path} failed: {type(exc).__name__}",
                                      retryable=True)
            else:
                _logger.debug("%s %s %s -> %s", self.code, method, path, response.status_code)
                if response.status_code < 400:
                    if not parse:
                        return response
                    try:
                        return response.json()
                    except ValueError:
                        error = ProviderError(
                            self.code, ErrorCategory.PROVIDER_ERROR,
                            f"{method} {path} returned a response that is not valid JSON",
                            http_status=response.status_code, retryable=True)
                else:
                    error = self._error_from_response(response, method, path)
            if not retry or not self._should_retry(error, attempt):
                raise error
            wait = error.retry_after if error.retry_after is not None else self.backoff * (2 ** attempt)
            _logger.info("%s: %s, retrying in %.1fs (attempt %d/%d)", self.code,
                         error.category.value, wait, attempt + 1, self.max_retries)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _should_retry(self, error, attempt):
        if attempt >= self.max_retries:
            return False
        if error.category == ErrorCategory.RATE_LIMITED:
            return error.retry_after is not None and error.retry_after <= self.max_retry_wait
        if error.retry_after is not None and error.retry_after > self.max_retry_wait:
            return False  # e.g. a 503 asking for an hour: never block a run that long
        return error.retryable

    def _error_from_response(self, response, method, path):
        try:
            body = response.json()
        except ValueError:
            body = None
        error = self._map_error(response.status_code, body if isinstance(body, dict) else {}, response)
        if error.retry_after is None:
            error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if not error.message:
            error.message = f"{method} {path} answered HTTP {response.status_code}"
        return error

    def _generic_error(self, status, code=None, message=None, **kwargs):
        """Category from the HTTP status alone, for codes an adapter does not know."""
        if status == 429:
            category = ErrorCategory.RATE_LIMITED
        elif status == 401:
            category = ErrorCategory.AUTH_INVALID
        elif status == 403:
            category = ErrorCategory.USER_ACTION_REQUIRED
        elif status == 404:
            category = ErrorCategory.NOT_FOUND
        elif 400 <= status < 500:
            category = ErrorCategory.BAD_REQUEST
        else:
            category = ErrorCategory.PROVIDER_ERROR
        return ProviderError(self.code, category, message or f"HTTP {status}", http_status=status,
                             code=code, **kwargs)

    # ------------------------------------------------------------------ hooks
    def _auth_headers(self, method, url, json_body):
        """Headers that authenticate one request (tokens, signatures). None by default."""
        return {}

    def _map_error(self, status, body, response):
        """Turn an HTTP error answer into a ProviderError. Adapters override with their codes."""
        return self._generic_error(status)

    # ------------------------------------------------------------------ operations
    def list_institutions(self, country=None, query=None):
        raise NotImplementedError

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """Return a ``ConsentStart``; with ``consent`` given, renew that consent instead."""
        raise NotImplementedError

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        """Turn the callback's parameters into an active ``Consent``."""
        raise NotImplementedError

    def list_accounts(self, consent):
        raise NotImplementedError

    def get_balances(self, consent, account_external_id):
        raise NotImplementedError

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Return one ``SyncPage`` covering every page of the window (or since ``cursor``)."""
        raise NotImplementedError

    def revoke_consent(self, consent):
        raise NotImplementedError
