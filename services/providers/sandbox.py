"""Adapter of the Sandbox Bank, the local simulator of ``simulators/sandbox_bank`` (its README
documents the API). It is also the reference adapter: a hosted consent page with PKCE, short
access tokens refreshed transparently, cursor paging, and every error of §8 of the taxonomy.

Consent secrets (``Consent.secrets``): ``access_token``, ``refresh_token`` and
``access_expires_at`` (ISO 8601 UTC). They are updated in place when the adapter refreshes the
access token; the caller persists them after each call.
"""
import base64
import contextlib
import re
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode

from .. import errors
from ..errors import ErrorCategory, ProviderError
from ..pkce import new_pkce_pair
from ..types import (Account, Balance, Consent, ConsentStart, ConsentStatus, Institution,
                     SyncPage, Transaction, TxnStatus)
from . import register
from .base import ProviderAdapter, parse_retry_after

PROVIDER = "sandbox"
DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
DEFAULT_INSTITUTION = "SANDBOX_BANK"
MAX_CONSENT_DAYS = 90
PAGE_LIMIT = 500
MAX_PAGES = 1000  # 500 000 transactions for one window: more means the bank is looping
REFRESH_MARGIN = timedelta(seconds=60)
PSU_HEADER = "PSU-IP-Address"

# Provider error code -> category (anything else: from the HTTP status).
ERROR_CATEGORIES = {
    "INVALID_CLIENT": ErrorCategory.AUTH_INVALID,
    "CONSENT_EXPIRED": ErrorCategory.AUTH_EXPIRED,
    "CONSENT_REVOKED": ErrorCategory.AUTH_EXPIRED,
    "INVALID_TOKEN": ErrorCategory.AUTH_EXPIRED,
    "TOKEN_EXPIRED": ErrorCategory.AUTH_EXPIRED,
    "USER_MUST_BE_PRESENT": ErrorCategory.USER_ACTION_REQUIRED,
    "RATE_LIMITED": ErrorCategory.RATE_LIMITED,
    "INTERNAL_ERROR": ErrorCategory.PROVIDER_ERROR,
    "BANK_UNAVAILABLE": ErrorCategory.INSTITUTION_DOWN,
    "DATE_OUT_OF_RANGE": ErrorCategory.BAD_REQUEST,
    "INVALID_REQUEST": ErrorCategory.BAD_REQUEST,
    "INVALID_CURSOR": ErrorCategory.BAD_REQUEST,
    "invalid_grant": ErrorCategory.BAD_REQUEST,
    "unsupported_grant_type": ErrorCategory.BAD_REQUEST,
    "ACCOUNT_NOT_FOUND": ErrorCategory.NOT_FOUND,
    "CONSENT_NOT_FOUND": ErrorCategory.NOT_FOUND,
    "NOT_FOUND": ErrorCategory.NOT_FOUND,
}
# Codes after which one refresh of the access token may help.
REFRESHABLE_CODES = frozenset({"TOKEN_EXPIRED", "INVALID_TOKEN"})
# Codes meaning the consent is gone for good (revoking it again is a no-op).
CONSENT_GONE_CODES = frozenset({"CONSENT_EXPIRED", "CONSENT_REVOKED"})

_SECRET_PATTERN = re.compile(r"sbx_(?:at|rt)_[A-Za-z0-9_\-]+")
ACCOUNT_KINDS = {"checking", "savings", "card", "loan"}


# --------------------------------------------------------------------------- pure mapping
def utcnow():
    return datetime.now(timezone.utc)


def scrub(text):
    """``text`` without anything that looks like a Sandbox Bank token."""
    return _SECRET_PATTERN.sub("[redacted]", text or "")


def parse_date(value):
    return date.fromisoformat(value) if value else None


def parse_datetime(value):
    """ISO 8601 (``Z`` accepted) -> aware UTC datetime; naive values are taken as UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def format_datetime(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def parse_amount(value):
    """A decimal string (``"-12.30"``) -> Decimal; floats and garbage are refused."""
    if not isinstance(value, str):
        raise ValueError(f"amount must be a decimal string, got {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    return amount


def map_institution(raw):
    return Institution(
        provider=PROVIDER,
        external_id=raw["id"],
        name=raw["name"],
        countries=list(raw.get("countries") or []),
        bic=raw.get("bic"),
        logo_url=raw.get("logo_url"),
        max_history_days=raw.get("max_history_days"),
        max_consent_days=raw.get("max_consent_days"),
        beta=bool(raw.get("beta")),
        raw=dict(raw),
    )


def secrets_from_token(payload, now=None):
    """The consent secrets of a token answer (the refresh token stays if none is returned)."""
    now = now or utcnow()
    result = {
        "access_token": payload["access_token"],
        "access_expires_at": format_datetime(now + timedelta(seconds=int(payload["expires_in"]))),
    }
    if payload.get("refresh_token"):
        result["refresh_token"] = payload["refresh_token"]
    return result


def map_consent(payload, now=None):
    """Token answer of an authorization-code exchange -> active ``Consent``."""
    info = payload["consent"]
    return Consent(
        provider=PROVIDER,
        external_id=info["id"],
        institution_id=info.get("institution_id"),
        status=ConsentStatus.ACTIVE,
        created_at=parse_datetime(info.get("created_at")),
        valid_until=parse_datetime(info.get("valid_until")),
        secrets=secrets_from_token(payload, now),
        raw=dict(info),  # no token in there
    )


def map_account(raw, consent_external_id):
    kind = raw.get("type") or "checking"
    return Account(
        provider=PROVIDER,
        external_id=raw["id"],
        stable_key=raw.get("iban") or raw.get("stable_id"),
        consent_external_id=consent_external_id,
        iban=raw.get("iban"),
        account_number_masked=raw.get("masked_number"),
        name=raw.get("name"),
        holder_name=raw.get("holder_name"),
        currency=raw.get("currency"),
        kind=kind if kind in ACCOUNT_KINDS else "other",
        raw=dict(raw),
    )


def map_balance(raw, account_external_id, fetched_at=None):
    return Balance(
        account_external_id=account_external_id,
        kind=raw["type"] if raw.get("type") in ("booked", "available") else "other",
        amount=parse_amount(raw["amount"]),
        currency=raw["currency"],
        reference_date=parse_date(raw.get("date")),
        fetched_at=fetched_at or utcnow(),
        raw=dict(raw),
    )


def map_transaction(raw, account_external_id):
    counterparty = raw.get("counterparty") or {}
    pending_id = raw.get("pending_id")
    return Transaction(
        provider=PROVIDER,
        account_external_id=account_external_id,
        external_id=raw["id"],
        id_is_synthetic=False,
        alt_ids={"pending_id": pending_id} if pending_id else {},
        status=TxnStatus(raw["status"]),
        amount=parse_amount(raw["amount"]),
        currency=raw["currency"],
        booking_date=parse_date(raw.get("booking_date")),
        value_date=parse_date(raw.get("value_date")),
        transaction_date=parse_date(raw.get("transaction_date")),
        description=raw.get("description") or counterparty.get("name") or "",
        structured_reference=raw.get("reference") or None,
        counterparty_name=counterparty.get("name"),
        counterparty_iban=counterparty.get("iban"),
        replaces_external_id=pending_id,
        raw=dict(raw),
    )


# --------------------------------------------------------------------------- adapter
@register
class SandboxBankAdapter(ProviderAdapter):
    """Config keys: ``base_url``, ``client_id``, ``client_secret`` (sandbox defaults)."""

    code = PROVIDER
    label = "Sandbox Bank"
    default_base_url = "http://127.0.0.1:8079"
    max_history_days = 90
    uses_pkce = True
    default_credentials = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}

    def __init__(self, config, **options):
        super().__init__(config, **options)
        self.client_id = self.config.get("client_id") or DEFAULT_CLIENT_ID
        self.client_secret = self.config.get("client_secret") or DEFAULT_CLIENT_SECRET
        self._local = threading.local()  # the consent whose token the current call uses

    # ------------------------------------------------------------------ hooks
    def _auth_headers(self, method, url, json_body):
        path = url.split("?", 1)[0]
        if path.endswith(("/api/v1/token", "/api/v1/institutions")):
            pair = f"{self.client_id}:{self.client_secret}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        consent = getattr(self._local, "consent", None)
        token = consent.secrets.get("access_token") if consent is not None else None
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _map_error(self, status, body, response):
        info = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = info.get("code") if isinstance(info.get("code"), str) else None
        text = scrub(str(info.get("message") or ""))[:300]
        request_id = info.get("request_id")
        message = f"HTTP {status} {code or 'error'}" + (f": {text}" if text else "") + (
            f" [{request_id}]" if request_id else "")
        category = ERROR_CATEGORIES.get(code)
        if category is None:
            return self._generic_error(status, code=code, message=message, raw=body)
        if code == "USER_MUST_BE_PRESENT":
            code = errors.USER_MUST_BE_PRESENT
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return ProviderError(self.code, category, message, http_status=status, code=code,
                             retry_after=retry_after, raw=body)

    # ------------------------------------------------------------------ helpers
    def _extra_headers(self):
        return {PSU_HEADER: self.psu_ip or "127.0.0.1"} if self.user_present else {}

    @contextlib.contextmanager
    def _mapping(self, what):
        """Turn an answer that does not have the documented shape into a PROVIDER_ERROR."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"unexpected {what} answer: {type(exc).__name__}",
                                retryable=False) from None

    def _as(self, consent, method, path, **kwargs):
        previous = getattr(self._local, "consent", None)
        self._local.consent = consent
        try:
            return self._request(method, path, headers=self._extra_headers(), **kwargs)
        finally:
            self._local.consent = previous

    def _needs_refresh(self, consent):
        secrets = consent.secrets
        if not secrets.get("refresh_token"):
            return False
        if not secrets.get("access_token"):
            return True
        try:
            expires_at = parse_datetime(secrets.get("access_expires_at"))
        except ValueError:
            return True
        return expires_at is not None and expires_at <= utcnow() + REFRESH_MARGIN

    def _refresh(self, consent):
        """Get a new access token; updates ``consent.secrets`` (and ``valid_until``) in place."""
        refresh_token = consent.secrets.get("refresh_token")
        if not refresh_token:
            raise ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                "the access token expired and there is no refresh token",
                                code="NO_REFRESH_TOKEN")
        try:
            payload = self._request("POST", "/api/v1/token", headers=self._extra_headers(),
                                    data={"grant_type": "refresh_token",
                                          "refresh_token": refresh_token})
        except ProviderError as error:
            if error.code == "invalid_grant":  # the bank forgot the refresh token: reconnect
                raise ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                    "the refresh token was refused: " + error.message,
                                    http_status=error.http_status, code=error.code,
                                    raw=error.raw) from None
            raise
        with self._mapping("token"):
            consent.secrets.update(secrets_from_token(payload))
            valid_until = parse_datetime((payload.get("consent") or {}).get("valid_until"))
        if valid_until:
            consent.valid_until = valid_until

    def _call(self, consent, method, path, **kwargs):
        """One API call with ``consent``'s token, refreshing it once when it has expired."""
        if self._needs_refresh(consent):
            self._refresh(consent)
        try:
            return self._as(consent, method, path, **kwargs)
        except ProviderError as error:
            if error.code not in REFRESHABLE_CODES or not consent.secrets.get("refresh_token"):
                raise
        self._refresh(consent)
        return self._as(consent, method, path, **kwargs)

    @staticmethod
    def _account_path(account_external_id, tail):
        return f"/api/v1/accounts/{quote(str(account_external_id), safe='')}/{tail}"

    # ------------------------------------------------------------------ operations
    def list_institutions(self, country=None, query=None):
        params = {}
        if country:
            params["country"] = country
        if query:
            params["q"] = query
        payload = self._request("GET", "/api/v1/institutions", params=params or None)
        with self._mapping("institutions"):
            return [map_institution(raw) for raw in payload["institutions"]]

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """URL of the bank's consent page. Without ``code_challenge`` a PKCE pair is made here
        and its verifier returned in ``ConsentStart.code_verifier``. With ``consent``, the user
        gives a new consent for the same institution (the Sandbox Bank cannot extend one)."""
        institution_id = institution_id or (consent.institution_id if consent else None) \
            or DEFAULT_INSTITUTION
        verifier = None
        if code_challenge is None:
            verifier, code_challenge = new_pkce_pair()
        params = {"client_id": self.client_id, "redirect_uri": redirect_uri, "state": state,
                  "institution_id": institution_id, "code_challenge": code_challenge,
                  "code_challenge_method": "S256"}
        if valid_days:
            params["valid_days"] = max(1, min(int(valid_days), MAX_CONSENT_DAYS))
        if language:
            params["lang"] = language
        pending = {"institution_id": institution_id}
        if consent is not None:
            pending["renews"] = consent.external_id
        return ConsentStart(redirect_url=f"{self.base_url}/consent?{urlencode(params)}",
                            state=state, code_verifier=verifier, pending_data=pending)

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        params = dict(callback_params or {})
        if params.get("error"):
            error = str(params["error"])
            description = params.get("error_description") or "The bank consent was not given."
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                f"the bank answered the consent with {error}", code=error,
                                user_message=description,
                                raw={"error": error, "error_description": description})
        if not params.get("code"):
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the consent callback carries no authorization code")
        form = {"grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        # The code is single-use: a retried exchange would only get invalid_grant.
        payload = self._request("POST", "/api/v1/token", data=form, headers=self._extra_headers(),
                                retry=False)
        with self._mapping("token"):
            return map_consent(payload)

    def list_accounts(self, consent):
        payload = self._call(consent, "GET", "/api/v1/accounts")
        with self._mapping("accounts"):
            return [map_account(raw, consent.external_id) for raw in payload["accounts"]]

    def get_balances(self, consent, account_external_id):
        payload = self._call(consent, "GET", self._account_path(account_external_id, "balances"))
        fetched_at = utcnow()
        with self._mapping("balances"):
            return [map_balance(raw, account_external_id, fetched_at)
                    for raw in payload["balances"]]

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Every booked and pending transaction of [date_from, date_to] (None: the bank's
        default), following the bank's cursor to the last page."""
        params = {"status": "all", "limit": PAGE_LIMIT}
        if date_from:
            params["date_from"] = date_from.isoformat()
        if date_to:
            params["date_to"] = date_to.isoformat()
        path = self._account_path(account_external_id, "transactions")
        added = []
        seen = set()
        next_cursor = cursor
        for _page in range(MAX_PAGES):
            page_params = dict(params, cursor=next_cursor) if next_cursor else params
            payload = self._call(consent, "GET", path, params=page_params)
            with self._mapping("transactions"):
                added.extend(map_transaction(raw, account_external_id)
                             for raw in payload["transactions"])
                next_cursor = payload.get("next_cursor")
            if not next_cursor:
                return SyncPage(added=added)
            if next_cursor in seen:
                raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                    "the bank returned the same page cursor twice",
                                    retryable=False)
            seen.add(next_cursor)
        raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                            f"more than {MAX_PAGES} pages of transactions; giving up",
                            retryable=False)

    def revoke_consent(self, consent):
        """Revoke at the bank. True if revoked now, False if it was already expired/revoked."""
        path = f"/api/v1/consents/{quote(str(consent.external_id), safe='')}"
        try:
            self._call(consent, "DELETE", path, parse=False)
        except ProviderError as error:
            if error.code in CONSENT_GONE_CODES:
                return False
            raise
        return True
