"""Adapter of Salt Edge's Account Information API v6 (reference/providers.md §3).

Salt Edge is an aggregator: it keeps a *connection* per bank login of a *customer*, fetches the
bank's data into its own store (at connect time, daily when ``automatic_refresh`` is on, and on
refreshes) and serves that store through a REST API with a ``{"data": ...}`` envelope.

Flow: one Salt Edge customer per link (``POST /customers``), the Connect widget
(``POST /connections/connect`` -> ``connect_url``), the browser comes back to our redirect URI with
``connection_id`` (or ``error_class``); renewal through ``POST /connections/{id}/reconnect``.
Every call carries ``App-id`` + ``Secret`` and, with a private key, ``Expires-at`` + ``Signature``
(base64 RSA-SHA256 over ``"Expires-at|METHOD|full URL|body"``), computed for each attempt.

Consent secrets (``Consent.secrets``): ``customer_id`` and ``consent_id``; Salt Edge has no
per-consent token (the application's keys sign every call), so there is nothing to refresh: the
connection itself is refreshed with ``refresh_connection`` (``background_refresh``) and
``consent.next_refresh_possible_at`` / ``consent.raw`` are updated in place.
"""
import base64
import contextlib
import functools
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from .. import errors
from ..errors import ErrorCategory, ProviderError
from ..types import (Account, Balance, Consent, ConsentStart, ConsentStatus, Institution,
                     SyncPage, Transaction, TxnStatus)
from . import register
from .base import ProviderAdapter, parse_retry_after

_logger = logging.getLogger(__name__)

PROVIDER = "saltedge"
DEFAULT_BASE_URL = "https://www.saltedge.com/api/v6"  # same host for test and live clients (✅)
SIGNATURE_TTL = 60             # Expires-at = now + 60 s (must be <= 1 h ahead)
PER_PAGE = 1000
MAX_PAGES = 500                # 500 pages of 1000: more means the API is looping
REFRESH_POLLS = 10             # GET /connections/{id} while a refresh is still fetching
REFRESH_POLL_WAIT = 2.0
MAX_CONSENT_DAYS = 180         # EEA maximum; a provider's max_consent_days may be lower
CONSENT_SCOPES = ["accounts", "transactions"]             # v6 names (v5: *_details)
FETCH_SCOPES = ["accounts", "balance", "transactions"]

# ----------------------------------------------------------------------------------------------
# Details of v6 the reference marks ⚠️/❓ (§3, §9): all here, to correct in one place.
# ----------------------------------------------------------------------------------------------
CUSTOMER_ID_KEYS = ("customer_id", "id")      # create-customer answer: v6 customer_id, v5 id
CALLBACK_CONNECTION_PARAM = "connection_id"   # query parameters appended to attempt.return_to
CALLBACK_ERROR_CLASS_PARAM = "error_class"
CALLBACK_ERROR_MESSAGE_PARAM = "error_message"
PENDING_PARAMS = {"pending": "true"}          # v6 pending transactions (v5: /transactions/pending)
CONSENTS_PATH = "/consents"                   # GET /consents?connection_id=
LOCALE_FIELD = "locale"                       # attempt.locale (v5 attempt field)
# "User present" signal: attempt.customer_last_logged_at (v5 attempt field) on refreshes.
USER_PRESENCE_FIELD = "customer_last_logged_at"
# Test/pending clients may call unsigned (⚠️); live ("production") clients must sign.
UNSIGNED_ENVIRONMENTS = frozenset({"sandbox"})

# Error class -> category (§3.6, §8). Unknown classes: "*NotFound" -> not_found, else the status.
ERROR_CATEGORIES = {
    # our application's credentials or signature
    "AppIdNotProvided": ErrorCategory.AUTH_INVALID,
    "SecretNotProvided": ErrorCategory.AUTH_INVALID,
    "ApiKeyNotFound": ErrorCategory.AUTH_INVALID,
    "MissingSignature": ErrorCategory.AUTH_INVALID,
    "SignatureNotMatch": ErrorCategory.AUTH_INVALID,
    "MissingExpiresAt": ErrorCategory.AUTH_INVALID,
    "ExpiresAtInvalid": ErrorCategory.AUTH_INVALID,
    "RequestExpired": ErrorCategory.AUTH_INVALID,
    "PublicKeyNotProvided": ErrorCategory.AUTH_INVALID,
    "ClientDisabled": ErrorCategory.AUTH_INVALID,
    "ClientPending": ErrorCategory.AUTH_INVALID,
    "ClientRestricted": ErrorCategory.AUTH_INVALID,
    "ActionNotAllowed": ErrorCategory.AUTH_INVALID,
    "CustomerLocked": ErrorCategory.AUTH_INVALID,
    "WrongClientToken": ErrorCategory.AUTH_INVALID,
    # the end user's consent / bank login: reconnect
    "InvalidCredentials": ErrorCategory.AUTH_EXPIRED,
    "AispConsentExpired": ErrorCategory.AUTH_EXPIRED,
    "AispConsentRevoked": ErrorCategory.AUTH_EXPIRED,
    "AispConsentNotFound": ErrorCategory.AUTH_EXPIRED,
    "AispConsentAlreadyRevoked": ErrorCategory.AUTH_EXPIRED,
    "ConsentExpired": ErrorCategory.AUTH_EXPIRED,
    "ConsentRevoked": ErrorCategory.AUTH_EXPIRED,
    "ConnectionDisabled": ErrorCategory.AUTH_EXPIRED,
    # the customer must act (interactive step, denied access)
    "InteractiveAdapterTimeout": ErrorCategory.USER_ACTION_REQUIRED,
    "InteractiveTimeout": ErrorCategory.USER_ACTION_REQUIRED,
    "ProviderAccessNotGranted": ErrorCategory.USER_ACTION_REQUIRED,
    "AllAccountsExcluded": ErrorCategory.USER_ACTION_REQUIRED,
    # limits: retry after next_refresh_possible_at / the announced delay
    "RateLimitExceeded": ErrorCategory.RATE_LIMITED,
    "TooManyRequests": ErrorCategory.RATE_LIMITED,
    "BackgroundFetchLimitExceeded": ErrorCategory.RATE_LIMITED,
    "ConnectionCannotBeRefreshed": ErrorCategory.RATE_LIMITED,
    # the bank
    "ProviderUnavailable": ErrorCategory.INSTITUTION_DOWN,
    "ProviderError": ErrorCategory.INSTITUTION_DOWN,
    "FetchingTimeout": ErrorCategory.INSTITUTION_DOWN,
    "ExecutionTimeout": ErrorCategory.INSTITUTION_DOWN,
    "ConnectionFailed": ErrorCategory.INSTITUTION_DOWN,
    "ConnectionLost": ErrorCategory.INSTITUTION_DOWN,
    "ProviderDisabled": ErrorCategory.INSTITUTION_DOWN,
    "ProviderInactive": ErrorCategory.INSTITUTION_DOWN,
    # still fetching
    "ConnectionAlreadyProcessing": ErrorCategory.NOT_READY,
    "ConnectionFetchingStopped": ErrorCategory.NOT_READY,
    # not found
    "AccountNotFound": ErrorCategory.NOT_FOUND,
    "ConnectionNotFound": ErrorCategory.NOT_FOUND,
    "CustomerNotFound": ErrorCategory.NOT_FOUND,
    "TransactionNotFound": ErrorCategory.NOT_FOUND,
    "ProviderNotFound": ErrorCategory.NOT_FOUND,
    "AttemptNotFound": ErrorCategory.NOT_FOUND,
    # our request
    "WrongRequestFormat": ErrorCategory.BAD_REQUEST,
    "JsonParseError": ErrorCategory.BAD_REQUEST,
    "DateOutOfRange": ErrorCategory.BAD_REQUEST,
    "DateFormatInvalid": ErrorCategory.BAD_REQUEST,
    "InvalidFromDate": ErrorCategory.BAD_REQUEST,
    "InvalidToDate": ErrorCategory.BAD_REQUEST,
    "DateOutOfAispConsentRange": ErrorCategory.BAD_REQUEST,
    "InvalidAispConsentFromDate": ErrorCategory.BAD_REQUEST,
    "InvalidAispConsentPeriod": ErrorCategory.BAD_REQUEST,
    "AispConsentScopesInvalid": ErrorCategory.BAD_REQUEST,
    "AispConsentScopesNotAllowed": ErrorCategory.BAD_REQUEST,
    "FetchScopesInvalid": ErrorCategory.BAD_REQUEST,
    "FetchScopesNotAllowed": ErrorCategory.BAD_REQUEST,
    "ReturnURLInvalid": ErrorCategory.BAD_REQUEST,
    "ReturnURLTooLong": ErrorCategory.BAD_REQUEST,
    "ValueOutOfRange": ErrorCategory.BAD_REQUEST,
    "IdentifierInvalid": ErrorCategory.BAD_REQUEST,
    "DuplicatedCustomer": ErrorCategory.BAD_REQUEST,
    "ConnectionLimitReached": ErrorCategory.BAD_REQUEST,
    "RouteNotFound": ErrorCategory.BAD_REQUEST,
    # Salt Edge itself
    "InternalServerError": ErrorCategory.PROVIDER_ERROR,
}
# Classes meaning the bank wants the customer present (an interactive step nobody answered):
# reported with code errors.USER_MUST_BE_PRESENT so the core asks the user to sync attended.
USER_PRESENCE_CLASSES = frozenset({"InteractiveAdapterTimeout", "InteractiveTimeout"})
# Classes after which revoking is a no-op (the connection or its consent is already gone).
CONSENT_GONE_CLASSES = frozenset({"ConnectionNotFound", "AispConsentRevoked",
                                  "AispConsentAlreadyRevoked", "AispConsentExpired",
                                  "AispConsentNotFound"})

NATURE_KINDS = {"account": "checking", "checking": "checking", "savings": "savings",
                "card": "card", "credit_card": "card", "debit_card": "card", "credit": "loan",
                "loan": "loan", "mortgage": "loan"}

_OGM = re.compile(r"\+\+\+(\d{3})/(\d{4})/(\d{5})\+\+\+|\*\*\*(\d{3})/(\d{4})/(\d{5})\*\*\*")
_RF = re.compile(r"\bRF\d{2}[A-Z0-9]{1,21}\b")
_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_TRY_AGAIN = re.compile(r"(?:try again|retry) in (\d+(?:\.\d+)?) ?(second|minute|hour)s?",
                        re.IGNORECASE)
_POSSIBLE_AT = re.compile(r"possible at (\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)")
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$)", re.DOTALL)
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")


# --------------------------------------------------------------------------- pure helpers
def utcnow():
    return datetime.now(timezone.utc)


def parse_date(value):
    """``YYYY-MM-DD`` -> ``date`` (the bank's calendar date, no time zone involved)."""
    return date.fromisoformat(value) if value else None


def parse_datetime(value):
    """ISO 8601 (``Z`` accepted) -> aware UTC datetime; naive values are taken as UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def format_datetime(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def parse_amount(value):
    """A JSON number (Salt Edge sends numbers) or decimal string -> ``Decimal``.

    Floats go through their shortest repr, so ``-49.9`` is ``Decimal("-49.9")``, never
    ``-49.89999…``; booleans, None and non-finite values are refused.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("amount is missing or not a number")
    if isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, (int, str)):
        amount = Decimal(value)
    else:
        raise ValueError(f"amount must be a number, got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    return amount


def is_iban(value):
    """Whether ``value`` is an IBAN (format and ISO 13616 mod-97 check)."""
    text = (value or "").replace(" ", "").upper()
    if not _IBAN.match(text):
        return False
    digits = "".join(str(int(char, 36)) for char in text[4:] + text[:4])
    return int(digits) % 97 == 1


def _mod97_ok(reference):
    text = reference[4:] + reference[:4]
    return int("".join(str(int(char, 36)) for char in text)) % 97 == 1


def find_structured_reference(*texts):
    """The first valid Belgian structured communication (``+++123/4567/89002+++``) or ISO 11649
    creditor reference (``RF18539007547034``) found in ``texts``, normalized; else None."""
    for text in texts:
        if not isinstance(text, str) or not text:
            continue
        for match in _OGM.finditer(text):
            digits = "".join(group for group in match.groups() if group)
            if (int(digits[:10]) % 97 or 97) == int(digits[10:]):
                return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"
        for match in _RF.finditer(text.upper()):
            if _mod97_ok(match.group(0)):
                return match.group(0)
    return None


def fingerprint(made_on, amount, currency, description):
    """Content hash of a transaction, equal for its pending and its posted record (Salt Edge
    gives the posted record a new id and no link to the pending one)."""
    text = " ".join((description or "").lower().split())
    payload = f"{made_on}|{amount.normalize()}|{currency}|{text}"
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def retry_after_from_message(text, now=None):
    """Seconds to wait announced in an error message ("Try again in 30 seconds", "Next refresh
    is possible at 2025-03-04T10:00:00Z"), else None."""
    text = text or ""
    match = _TRY_AGAIN.search(text)
    if match:
        factor = {"second": 1, "minute": 60, "hour": 3600}[match.group(2).lower()]
        return float(match.group(1)) * factor
    match = _POSSIBLE_AT.search(text)
    if match:
        try:
            when = parse_datetime(match.group(1))
        except ValueError:
            return None
        return max(0.0, (when - (now or utcnow())).total_seconds())
    return None


def scrub(text, *secret_values):
    """``text`` without the given secrets, PEM blocks or long base64 runs (signatures)."""
    text = str(text or "")
    for value in secret_values:
        if value and len(value) >= 6:
            text = text.replace(value, "[redacted]")
    text = _PEM.sub("[redacted]", text)
    return _LONG_BASE64.sub("[redacted]", text)


def signature_message(expires_at, method, url, body):
    """The string Salt Edge signs: ``"Expires-at|METHOD|full URL|raw body"``."""
    return f"{expires_at}|{method.upper()}|{url}|{body or ''}"


def sign(private_key, expires_at, method, url, body):
    """base64(RSA-SHA256 PKCS#1 v1.5 signature of ``signature_message``)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    message = signature_message(expires_at, method, url, body).encode("utf-8")
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(),
                                             hashes.SHA256())).decode("ascii")


@functools.lru_cache(maxsize=8)
def load_private_key(pem, password=None):
    """The RSA key of a PEM (cached: loading checks the key, which costs milliseconds)."""
    from cryptography.hazmat.primitives import serialization
    return serialization.load_pem_private_key(pem, password=password)


def append_query(url, params):
    """``url`` with ``params`` added to its query string (existing parameters kept)."""
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query and params else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def transaction_cursor(cursor):
    """The ``from_id`` a sync cursor stands for: a Salt Edge transaction id (decimal digits),
    else None (no cursor, ``False`` from an empty field, or a value Salt Edge would refuse)."""
    if isinstance(cursor, int) and not isinstance(cursor, bool) and cursor > 0:
        return str(cursor)
    if isinstance(cursor, str) and re.fullmatch(r"[0-9]{1,20}", cursor.strip()):
        return cursor.strip()
    return None


def map_institution(raw):
    country = raw.get("country_code")
    return Institution(
        provider=PROVIDER,
        external_id=raw["code"],
        name=raw["name"],
        countries=[country] if country else [],
        bic=(raw.get("bic_codes") or [None])[0] if isinstance(raw.get("bic_codes"), list) else None,
        logo_url=raw.get("logo_url"),
        max_history_days=raw.get("max_fetch_interval"),
        max_consent_days=raw.get("max_consent_days"),
        beta=raw.get("status") not in (None, "active"),
        raw=dict(raw),
    )


def _mask(number):
    text = (number or "").replace(" ", "")
    if not text:
        return None
    if is_iban(text):
        return f"{text[:4]} **** {text[-4:]}"
    return "****" + text[-4:]


def account_stable_key(raw):
    """What identifies the account across connections: its IBAN, else its account number,
    else a hash of name and currency (Salt Edge gives account ids per connection)."""
    extra = raw.get("extra") or {}
    iban = (extra.get("iban") or "").replace(" ", "").upper()
    if iban:
        return iban
    number = (extra.get("account_number") or "").replace(" ", "")
    if number:
        return f"number:{number}"
    seed = f"{raw.get('name') or ''}|{raw.get('currency_code') or ''}"
    return "name:" + hashlib.sha256(seed.encode()).hexdigest()[:16]


def map_account(raw, consent_external_id):
    extra = raw.get("extra") or {}
    iban = (extra.get("iban") or "").replace(" ", "").upper() or None
    return Account(
        provider=PROVIDER,
        external_id=str(raw["id"]),
        stable_key=account_stable_key(raw),
        consent_external_id=consent_external_id,
        iban=iban,
        account_number_masked=_mask(iban or extra.get("account_number")),
        name=raw.get("name") or extra.get("account_name"),
        holder_name=extra.get("client_name"),
        currency=raw.get("currency_code"),
        kind=NATURE_KINDS.get(raw.get("nature"), "other"),
        raw=dict(raw),
    )


def map_balances(raw, fetched_at=None):
    """``balance`` is the current booked balance; ``extra.available_amount`` the available one."""
    fetched_at = fetched_at or utcnow()
    extra = raw.get("extra") or {}
    updated = raw.get("updated_at")
    reference = date.fromisoformat(str(updated)[:10]) if updated else None
    result = [Balance(account_external_id=str(raw["id"]), kind="booked",
                      amount=parse_amount(raw["balance"]), currency=raw["currency_code"],
                      reference_date=reference, fetched_at=fetched_at, raw=dict(raw))]
    if extra.get("available_amount") is not None:
        result.append(Balance(account_external_id=str(raw["id"]), kind="available",
                              amount=parse_amount(extra["available_amount"]),
                              currency=raw["currency_code"], reference_date=reference,
                              fetched_at=fetched_at, raw=dict(raw)))
    return result


def map_transaction(raw, account_external_id):
    extra = raw.get("extra") or {}
    status = raw.get("status")
    if status not in ("posted", "pending"):
        raise ValueError(f"unknown transaction status {status!r}")
    booked = status == "posted"
    amount = parse_amount(raw["amount"])
    currency = raw["currency_code"]
    made_on = parse_date(raw["made_on"])
    posting_date = parse_date(extra.get("posting_date"))
    payee, payer = extra.get("payee"), extra.get("payer")
    counterparty = (payee or payer) if amount < 0 else (payer or payee)
    number = (extra.get("account_number") or "").replace(" ", "").upper()
    remittance = [extra.get(key) for key in ("additional", "information", "payee_information",
                                             "payer_information")]
    parts = []
    for part in [raw.get("description")] + remittance:
        if isinstance(part, str) and part.strip() and part.strip() not in parts:
            parts.append(part.strip())
    description = " - ".join(parts) or counterparty or ""
    alt_ids = {"fingerprint": fingerprint(made_on, amount, currency, raw.get("description"))}
    for source, key in (("id", "bank_id"), ("record_number", "record_number"),
                        ("end_to_end_id", "end_to_end_id")):
        if extra.get(source):
            alt_ids[key] = str(extra[source])
    original_amount = extra.get("original_amount")
    balance_after = extra.get("account_balance_snapshot")
    card = extra.get("type") == "card_transaction" or bool(extra.get("mcc"))
    return Transaction(
        provider=PROVIDER,
        account_external_id=account_external_id,
        external_id=str(raw["id"]),
        id_is_synthetic=False,
        alt_ids=alt_ids,
        status=TxnStatus.BOOKED if booked else TxnStatus.PENDING,
        amount=amount,
        currency=currency,
        booking_date=(posting_date or made_on) if booked else None,
        value_date=made_on,  # Salt Edge has no value date: made_on (§3.5)
        transaction_date=made_on,
        description=description,
        structured_reference=find_structured_reference(*remittance, raw.get("description")),
        counterparty_name=counterparty,
        counterparty_iban=number if is_iban(number) else None,
        end_to_end_id=extra.get("end_to_end_id"),
        merchant_name=(payee if card else None) or extra.get("merchant_id"),
        mcc=str(extra["mcc"]) if extra.get("mcc") else None,
        category=raw.get("category"),
        original_amount=parse_amount(original_amount) if original_amount is not None else None,
        original_currency=extra.get("original_currency_code"),
        balance_after=parse_amount(balance_after) if balance_after is not None else None,
        # Salt Edge posts a pending transaction under a new id without naming the pending one;
        # alt_ids["fingerprint"] is what the two records share.
        replaces_external_id=None,
        raw=dict(raw),
    )


def map_consent(connection, consent_raw, customer_id):
    """A ``Consent`` from the connection and its last consent (Salt Edge objects)."""
    return Consent(
        provider=PROVIDER,
        external_id=str(connection["id"]),
        institution_id=connection.get("provider_code"),
        status=ConsentStatus.ACTIVE,
        created_at=parse_datetime(consent_raw.get("created_at") or connection.get("created_at")),
        valid_until=parse_datetime(consent_raw.get("expires_at")),
        secrets={"customer_id": str(customer_id or connection.get("customer_id")),
                 "consent_id": str(consent_raw["id"])},
        next_refresh_possible_at=parse_datetime(connection.get("next_refresh_possible_at")),
        raw={"connection": dict(connection), "consent": dict(consent_raw)},
    )


# --------------------------------------------------------------------------- adapter
@register
class SaltEdgeAdapter(ProviderAdapter):
    """Salt Edge Account Information API v6.

    Config keys:

    * ``app_id``, ``secret``: the application's API key (headers ``App-id`` / ``Secret``);
    * ``private_key``: PEM of the RSA key whose public half is registered on the API key; every
      request is then signed. Required when ``environment`` is ``production`` (live clients);
      ``private_key_password`` if the PEM is encrypted;
    * ``environment``: ``sandbox`` (default: fake providers of country XF are listed and
      selectable, unsigned calls allowed) or ``production``;
    * ``base_url``: API root override (default ``https://www.saltedge.com/api/v6``; the tests
      point it at the simulator);
    * ``customer_id``: an existing Salt Edge customer to attach new connections to; otherwise one
      customer is created per link, named ``customer_identifier`` (default ``odoo-<random>``);
    * ``history_days``: how far back the first fetch goes (``attempt.from_date``; default: Salt
      Edge's own, 90 days);
    * ``automatic_refresh`` (default True): let Salt Edge refresh the connection daily;
    * ``refresh_before_fetch`` (default False): ask for a background refresh before reading
      transactions (always done when the user is present).
    """

    code = PROVIDER
    label = "Salt Edge"
    default_base_url = DEFAULT_BASE_URL
    max_history_days = 90
    uses_pkce = False

    def __init__(self, config, **options):
        super().__init__(config, **options)
        self.app_id = str(self.config.get("app_id") or "")
        self._secret = str(self.config.get("secret") or "")
        self.environment = self.config.get("environment") or "sandbox"
        self._private_key = None
        self._local = threading.local()  # raw body of the request being sent (for the signature)
        self._refreshed = set()          # connections refreshed by this adapter instance

    def __repr__(self):
        return f"<SaltEdgeAdapter {self.base_url} environment={self.environment}>"

    # ------------------------------------------------------------------ signing
    def _signing_key(self):
        if self._private_key is not None:
            return self._private_key
        pem = self.config.get("private_key")
        if not pem:
            if self.environment not in UNSIGNED_ENVIRONMENTS:
                raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                    "a private_key is required to sign Salt Edge requests "
                                    f"in the {self.environment} environment",
                                    code="MissingPrivateKey", retryable=False)
            return None
        password = self.config.get("private_key_password")
        try:
            self._private_key = load_private_key(
                pem.encode() if isinstance(pem, str) else bytes(pem),
                password.encode() if isinstance(password, str) else password)
        except Exception:  # noqa: BLE001 - never echo the key or the library's message
            raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                "the configured private_key could not be loaded (PEM RSA key "
                                "expected)", code="InvalidPrivateKey", retryable=False) from None
        return self._private_key

    def _auth_headers(self, method, url, json_body):
        headers = {"Accept": "application/json", "Content-Type": "application/json",
                   "App-id": self.app_id, "Secret": self._secret}
        key = self._signing_key()
        if key is not None:
            expires_at = str(int(time.time()) + SIGNATURE_TTL)
            body = getattr(self._local, "body", "") or ""
            headers["Expires-at"] = expires_at
            headers["Signature"] = sign(key, expires_at, method, url, body)
        return headers

    def _scrub(self, text):
        return scrub(text, self._secret)

    # ------------------------------------------------------------------ errors
    def _map_error(self, status, body, response):
        info = body.get("error") if isinstance(body.get("error"), dict) else {}
        error_class = info.get("class") if isinstance(info.get("class"), str) else None
        text = self._scrub(info.get("message") or "")[:300]
        message = f"HTTP {status} {error_class or 'error'}" + (f": {text}" if text else "")
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            retry_after = retry_after_from_message(text)
        raw = {"error": {"class": error_class, "message": text,
                         "documentation_url": info.get("documentation_url")}}
        return self._error(error_class, message, status=status, retry_after=retry_after,
                           user_message=text or None, raw=raw)

    def _error(self, error_class, message, *, status=None, retry_after=None, user_message=None,
               raw=None):
        """A ProviderError for a Salt Edge error class (HTTP answer or failed attempt)."""
        category = ERROR_CATEGORIES.get(error_class)
        if category is None and error_class and error_class.endswith("NotFound"):
            category = ErrorCategory.NOT_FOUND
        if category is None:
            if status is None:
                category = ErrorCategory.PROVIDER_ERROR
            else:
                return self._generic_error(status, code=error_class, message=message,
                                           retry_after=retry_after, raw=raw)
        code = errors.USER_MUST_BE_PRESENT if error_class in USER_PRESENCE_CLASSES else error_class
        retryable = None
        if error_class in ("ProviderDisabled", "ProviderInactive"):
            retryable = False
        return ProviderError(self.code, category, message, http_status=status, code=code,
                             user_message=user_message, retryable=retryable,
                             retry_after=retry_after, raw=raw)

    @contextlib.contextmanager
    def _mapping(self, what):
        """An answer without the documented shape becomes a PROVIDER_ERROR."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"unexpected {what} answer: {type(exc).__name__}",
                                retryable=False) from None

    # ------------------------------------------------------------------ transport helpers
    def _api(self, method, path, params=None, body=None, **kwargs):
        """One API call: query string in the URL (it is signed), body wrapped in ``data``."""
        if not self.app_id or not self._secret:
            raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                "app_id and secret must be configured", code="MissingApiKey",
                                retryable=False)
        self._signing_key()  # fail before any call when a key is required but unusable
        query = urlencode([(key, value) for key, value in (params or {}).items()
                           if value is not None])
        target = path + (f"?{query}" if query else "")
        raw = json.dumps({"data": body}, separators=(",", ":")) if body is not None else ""
        previous = getattr(self._local, "body", None)
        self._local.body = raw
        try:
            return self._request(method, target, data=raw.encode("utf-8") if raw else None,
                                 **kwargs)
        finally:
            self._local.body = previous

    def _paged(self, path, params, what, from_id=None):
        """Every item of a ``from_id`` / ``meta.next_id`` paged list."""
        items = []
        seen = set()
        next_id = from_id
        for _page in range(MAX_PAGES):
            payload = self._api("GET", path, params=dict(params, from_id=next_id))
            with self._mapping(what):
                page = payload["data"]
                if not isinstance(page, list):
                    raise TypeError("data is not a list")
                items.extend(page)
                next_id = (payload.get("meta") or {}).get("next_id")
            if not next_id:
                return items
            if next_id in seen:
                raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                    f"Salt Edge returned the same {what} page twice",
                                    retryable=False)
            seen.add(next_id)
        raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                            f"more than {MAX_PAGES} pages of {what}; giving up", retryable=False)

    @staticmethod
    def _connection_path(connection_id, tail=""):
        return f"/connections/{quote(str(connection_id), safe='')}{tail}"

    def _sandbox(self):
        return self.environment == "sandbox"

    def _consent_body(self, valid_days):
        body = {"scopes": list(CONSENT_SCOPES)}
        if valid_days:
            body["period_days"] = max(1, min(int(valid_days), MAX_CONSENT_DAYS))
        return body

    def _attempt_body(self, return_to=None, language=None):
        attempt = {"fetch_scopes": list(FETCH_SCOPES)}
        history = self.config.get("history_days")
        if history:
            attempt["from_date"] = (utcnow().date() - timedelta(days=int(history))).isoformat()
        if return_to:
            attempt["return_to"] = return_to
        if language:
            attempt[LOCALE_FIELD] = language
        if self.user_present:
            attempt[USER_PRESENCE_FIELD] = format_datetime(utcnow())
        return attempt

    def _ensure_customer(self):
        customer_id = self.config.get("customer_id")
        if customer_id:
            return str(customer_id)
        identifier = self.config.get("customer_identifier") or f"odoo-{secrets.token_hex(8)}"
        # Not retried: a retry after a lost answer would only meet DuplicatedCustomer.
        payload = self._api("POST", "/customers", body={"identifier": identifier}, retry=False)
        with self._mapping("customer"):
            data = payload["data"]
            for key in CUSTOMER_ID_KEYS:
                if data.get(key):
                    return str(data[key])
            raise KeyError("customer_id")

    def _post_consent(self, path, body):
        """POST a connect/reconnect request. A ``period_days`` above the provider's
        ``max_consent_days`` (InvalidAispConsentPeriod) is dropped once: the provider's maximum
        then applies."""
        try:
            return self._api("POST", path, body=body)
        except ProviderError as error:
            if error.code != "InvalidAispConsentPeriod" or "period_days" not in body["consent"]:
                raise
        body = dict(body, consent={k: v for k, v in body["consent"].items() if k != "period_days"})
        return self._api("POST", path, body=body)

    def _connect_start(self, payload, state, pending):
        with self._mapping("connect"):
            url = payload["data"]["connect_url"]
            pending["connect_expires_at"] = payload["data"].get("expires_at")
        return ConsentStart(redirect_url=url, state=state, code_verifier=None,
                            pending_data=pending)

    def _get_connection(self, connection_id):
        payload = self._api("GET", self._connection_path(connection_id))
        with self._mapping("connection"):
            connection = payload["data"]
            str(connection["id"])
            return connection

    def _update_from_connection(self, consent, connection):
        """Refresh what the consent knows about its connection (in place)."""
        consent.next_refresh_possible_at = parse_datetime(
            connection.get("next_refresh_possible_at"))
        raw = dict(consent.raw or {})
        raw["connection"] = dict(connection)
        consent.raw = raw

    def _attempt_failure(self, attempt):
        error_class = attempt.get("fail_error_class")
        text = self._scrub(attempt.get("fail_message") or "")[:300]
        return self._error(error_class, f"the last Salt Edge attempt failed with {error_class}"
                           + (f": {text}" if text else ""), user_message=text or None,
                           raw={"last_attempt": {"fail_error_class": error_class,
                                                 "fail_message": text}})

    # ------------------------------------------------------------------ operations
    def list_institutions(self, country=None, query=None):
        params = {"country_code": country.upper() if country else None,
                  "include_sandboxes": "true" if self._sandbox() else None}
        raws = self._paged("/providers", params, "providers")
        with self._mapping("providers"):
            result = [map_institution(raw) for raw in raws]
        if query:
            needle = query.lower()
            result = [inst for inst in result
                      if needle in inst.name.lower() or needle in inst.external_id.lower()]
        return result

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """URL of the Salt Edge Connect widget. ``institution_id`` is a provider code (None: the
        customer picks the bank in the widget). With ``consent``, the connection is reconnected
        (a new consent on the same connection and accounts). Salt Edge has no PKCE."""
        return_to = append_query(redirect_uri, {"state": state})
        if consent is not None:
            body = {"consent": self._consent_body(valid_days),
                    "attempt": self._attempt_body(return_to, language)}
            payload = self._post_consent(
                self._connection_path(consent.external_id, "/reconnect"), body)
            pending = {"flow": "reconnect", "connection_id": consent.external_id,
                       "customer_id": (consent.secrets or {}).get("customer_id"),
                       "institution_id": consent.institution_id}
            return self._connect_start(payload, state, pending)
        customer_id = self._ensure_customer()
        body = {"customer_id": customer_id, "consent": self._consent_body(valid_days),
                "attempt": self._attempt_body(return_to, language),
                "automatic_refresh": bool(self.config.get("automatic_refresh", True))}
        if institution_id:
            body["provider"] = {"code": institution_id}
        else:
            body["provider"] = {"include_sandboxes": self._sandbox()}
        payload = self._post_consent("/connections/connect", body)
        pending = {"flow": "connect", "customer_id": customer_id,
                   "institution_id": institution_id}
        return self._connect_start(payload, state, pending)

    def start_refresh(self, consent, redirect_uri, state):
        """Interactive refresh (the customer answers the bank's SCA in the widget): a
        ``ConsentStart`` whose callback ``complete_consent`` turns into the refreshed consent."""
        body = {"attempt": self._attempt_body(append_query(redirect_uri, {"state": state}))}
        payload = self._api("POST", self._connection_path(consent.external_id, "/refresh"),
                            body=body)
        pending = {"flow": "refresh", "connection_id": consent.external_id,
                   "customer_id": (consent.secrets or {}).get("customer_id"),
                   "institution_id": consent.institution_id}
        return self._connect_start(payload, state, pending)

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        params = dict(callback_params or {})
        pending = dict(pending_data or {})
        error_class = params.get(CALLBACK_ERROR_CLASS_PARAM)
        if error_class:
            error_class = str(error_class)
            reason = self._scrub(params.get(CALLBACK_ERROR_MESSAGE_PARAM)
                                 or "The bank connection was not completed.")[:300]
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                f"Salt Edge Connect ended with {error_class}", code=error_class,
                                user_message=reason,
                                raw={"error_class": error_class, "error_message": reason})
        connection_id = params.get(CALLBACK_CONNECTION_PARAM) or (
            pending.get("connection_id") if pending.get("flow") in ("reconnect", "refresh")
            else None)
        if not connection_id:
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the Salt Edge callback carries no connection_id")
        expected = pending.get("connection_id")
        if expected and str(expected) != str(connection_id):
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the callback names another connection than the one renewed")
        connection = self._get_connection(connection_id)
        customer_id = pending.get("customer_id")
        if customer_id and str(connection.get("customer_id")) != str(customer_id):
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the callback's connection belongs to another customer")
        attempt = connection.get("last_attempt") or {}
        if attempt.get("fail_error_class") and not attempt.get("success_at"):
            error = self._attempt_failure(attempt)
            if error.category in (ErrorCategory.PROVIDER_ERROR, ErrorCategory.BAD_REQUEST):
                error.category = ErrorCategory.USER_ACTION_REQUIRED
            raise error
        payload = self._api("GET", CONSENTS_PATH, params={"connection_id": connection_id})
        with self._mapping("consents"):
            consents = payload["data"]
            wanted = connection.get("last_consent_id")
            chosen = next((c for c in consents if str(c["id"]) == str(wanted)), None)
            if chosen is None and consents:
                chosen = max(consents, key=lambda c: (c.get("created_at") or "", int(c["id"])))
        if chosen is None:
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                "the connection has no consent", code="AispConsentNotFound")
        status = chosen.get("status")
        if status != "given" or connection.get("status") not in (None, "active"):
            category = (ErrorCategory.AUTH_EXPIRED if status in ("expired", "revoked")
                        else ErrorCategory.USER_ACTION_REQUIRED)
            raise ProviderError(self.code, category,
                                f"the connection's consent is {status} (connection "
                                f"{connection.get('status')})", code=f"consent_{status}")
        with self._mapping("connection"):
            return map_consent(connection, chosen, customer_id)

    def list_accounts(self, consent):
        raws = self._paged("/accounts", {"connection_id": consent.external_id}, "accounts")
        with self._mapping("accounts"):
            return [map_account(raw, consent.external_id) for raw in raws]

    def get_balances(self, consent, account_external_id):
        raws = self._paged("/accounts", {"connection_id": consent.external_id}, "accounts")
        fetched_at = utcnow()
        with self._mapping("accounts"):
            for raw in raws:
                if str(raw["id"]) == str(account_external_id):
                    return map_balances(raw, fetched_at)
        raise ProviderError(self.code, ErrorCategory.NOT_FOUND,
                            "no such account in this connection", code="AccountNotFound")

    def refresh_connection(self, consent):
        """Ask Salt Edge to fetch fresh data from the bank (``background_refresh``), wait until
        the attempt finishes (bounded) and update ``consent`` in place. Raises RATE_LIMITED
        (``retry_after`` from the answer or ``next_refresh_possible_at``) when too early."""
        path = self._connection_path(consent.external_id, "/background_refresh")
        try:
            payload = self._api("POST", path, body={"attempt": self._attempt_body()})
        except ProviderError as error:
            if error.category == ErrorCategory.RATE_LIMITED and error.retry_after is None \
                    and consent.next_refresh_possible_at is not None:
                error.retry_after = max(
                    0.0, (consent.next_refresh_possible_at - utcnow()).total_seconds())
            raise
        with self._mapping("refresh"):
            connection = payload["data"]
            attempt = connection.get("last_attempt") or {}
        for poll in range(REFRESH_POLLS + 1):
            if attempt.get("finished", True):
                break
            if poll == REFRESH_POLLS:
                self._update_from_connection(consent, connection)
                raise ProviderError(self.code, ErrorCategory.NOT_READY,
                                    "Salt Edge is still fetching the bank's data",
                                    code=str(attempt.get("stage") or "fetching"),
                                    retry_after=REFRESH_POLL_WAIT * REFRESH_POLLS)
            self.sleep(REFRESH_POLL_WAIT)
            connection = self._get_connection(consent.external_id)
            attempt = connection.get("last_attempt") or {}
        self._update_from_connection(consent, connection)
        self._refreshed.add(str(consent.external_id))
        if attempt.get("fail_error_class") and not attempt.get("success_at"):
            raise self._attempt_failure(attempt)
        return consent

    def _refresh_before_fetch(self, consent):
        if str(consent.external_id) in self._refreshed:
            return
        try:
            self.refresh_connection(consent)
        except ProviderError as error:
            if error.category not in (ErrorCategory.RATE_LIMITED, ErrorCategory.NOT_READY):
                raise
            self._refreshed.add(str(consent.external_id))
            _logger.info("%s: refresh of connection %s skipped (%s %s); reading stored data",
                         self.code, consent.external_id, error.category.value, error.code)

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Posted and pending transactions of the account dated in [date_from, date_to] (None:
        unbounded), following ``meta.next_id`` to the last page. Salt Edge's list has no date
        filter, so the window is applied here. ``cursor``: a posted-transaction id to start
        from (``from_id``); Salt Edge is synced by date window, so ``next_cursor`` is None.
        A cursor that is no Salt Edge id (empty, ``False`` from an empty field, another
        provider's or an older format's cursor) is ignored: the whole window is read."""
        if self.user_present or self.config.get("refresh_before_fetch"):
            self._refresh_before_fetch(consent)
        params = {"connection_id": consent.external_id, "account_id": account_external_id,
                  "per_page": PER_PAGE}
        posted = self._paged("/transactions", params, "transactions",
                             from_id=transaction_cursor(cursor))
        pending = self._paged("/transactions", dict(params, **PENDING_PARAMS), "transactions")
        added = []
        with self._mapping("transactions"):
            for raw in posted + pending:
                txn = map_transaction(raw, str(account_external_id))
                day = txn.date
                if day is not None and ((date_from and day < date_from)
                                        or (date_to and day > date_to)):
                    continue
                added.append(txn)
        return SyncPage(added=added)

    def revoke_consent(self, consent):
        """Remove the connection at Salt Edge (its consent is revoked). True if removed now,
        False if it was already gone."""
        try:
            self._api("DELETE", self._connection_path(consent.external_id))
        except ProviderError as error:
            if error.code in CONSENT_GONE_CLASSES:
                return False
            raise
        return True
