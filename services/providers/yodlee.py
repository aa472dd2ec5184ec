"""Adapter of Envestnet | Yodlee, API v1.1 (reference/providers.md §2; specs/yodlee-core-swagger).

Flow: ``POST /auth/token`` (form ``clientId`` + ``secret``, header ``loginName``) gives a bearer
token for one Yodlee user, valid ~30 minutes; there is no refresh token, a new token is simply
asked again for the same ``loginName``. Every request carries ``Api-Version: 1.1``. The user links
a bank in FastLink 4 (Yodlee's hosted page), which creates a *providerAccount*: its id is our
consent's ``external_id``. Accounts, balances (inside the account objects) and transactions
(offset paging, ``skip``/``top`` ≤ 500) are then read with the user's token. Account problems are
not HTTP errors: they show in the providerAccount's and account's ``dataset[].additionalStatus``,
which the adapter checks before reading data.

Consent secrets (``Consent.secrets``): ``login_name`` (the Yodlee user), ``access_token`` and
``access_expires_at`` (ISO 8601 UTC). A new token is fetched transparently when the current one
is (about to be) expired or refused, and ``consent.secrets`` is updated in place.

Yodlee has no "user present" signal (no PSU headers): ``user_present`` changes nothing here.
"""
import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets as _secrets
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode, urlsplit

from ..errors import ErrorCategory, ProviderError
from ..types import (Account, Balance, Consent, ConsentStart, ConsentStatus, Institution,
                     SyncPage, Transaction, TxnStatus)
from . import register
from .base import ProviderAdapter, parse_retry_after

_logger = logging.getLogger(__name__)

PROVIDER = "yodlee"
API_VERSION = "1.1"
# ✅ API hosts of the reference (§2.1); production is usually customer-specific.
BASE_URLS = {
    "sandbox": "https://sandbox.api.yodlee.com/ysl",
    "development": "https://development.api.yodlee.com/ysl",
    "production": "https://production.api.yodlee.com/ysl",
}
# ✅ the sandbox FastLink 4 URL; other environments get theirs from Yodlee (config fastlink_url).
FASTLINK_URLS = {"sandbox": "https://fl4.sandbox.yodlee.com/authenticate/restserver/fastlink"}
FASTLINK_PATH = "/authenticate/restserver/fastlink"
DEFAULT_FASTLINK_CONFIG = "Aggregation"
PAGE_TOP = 500                    # ✅ Y804: "Permitted values of top between 1 - 500"
MAX_PAGES = 200                   # 100 000 transactions for one window: the bank is looping
MAX_INSTITUTION_PAGES = 40
TOKEN_MARGIN = timedelta(seconds=60)
# ⚠️ Without a date, GET /transactions returns only the last 30 days; we ask for this many.
DEFAULT_HISTORY_DAYS = 90
MAX_REMEMBERED_PENDING = 300
MAX_KNOWN_SECRETS = 64            # tokens this adapter handled, scrubbed from error texts

# Error codes -> category (reference §2.6 and §8, completed from the swagger). Codes not listed:
# category from the HTTP status.
ERROR_CATEGORIES = {
    # Our own credentials or configuration.
    "Y001": ErrorCategory.AUTH_INVALID, "Y002": ErrorCategory.AUTH_INVALID,
    "Y003": ErrorCategory.AUTH_INVALID, "Y005": ErrorCategory.AUTH_INVALID,
    "Y007": ErrorCategory.AUTH_INVALID, "Y009": ErrorCategory.AUTH_INVALID,
    "Y010": ErrorCategory.AUTH_INVALID, "Y011": ErrorCategory.AUTH_INVALID,
    "Y015": ErrorCategory.AUTH_INVALID, "Y016": ErrorCategory.AUTH_INVALID,
    "Y019": ErrorCategory.AUTH_INVALID, "Y027": ErrorCategory.AUTH_INVALID,
    "Y301": ErrorCategory.AUTH_INVALID, "Y303": ErrorCategory.AUTH_INVALID,
    "Y305": ErrorCategory.AUTH_INVALID,
    # The end user's token: asked again once; if that does not help, AUTH_INVALID (see _call).
    "Y008": ErrorCategory.AUTH_EXPIRED, "Y020": ErrorCategory.AUTH_EXPIRED,
    "Y023": ErrorCategory.AUTH_EXPIRED,
    # The Yodlee user behind the link is gone or inactive: link again.
    "Y004": ErrorCategory.AUTH_EXPIRED, "Y006": ErrorCategory.AUTH_EXPIRED,
    # Validation.
    "Y800": ErrorCategory.BAD_REQUEST, "Y801": ErrorCategory.BAD_REQUEST,
    "Y802": ErrorCategory.BAD_REQUEST, "Y803": ErrorCategory.BAD_REQUEST,
    "Y804": ErrorCategory.BAD_REQUEST, "Y805": ErrorCategory.BAD_REQUEST,
    "Y806": ErrorCategory.BAD_REQUEST, "Y809": ErrorCategory.BAD_REQUEST,
    "Y824": ErrorCategory.BAD_REQUEST, "Y901": ErrorCategory.BAD_REQUEST,
    "Y807": ErrorCategory.NOT_FOUND,
    "Y868": ErrorCategory.NOT_READY,
    # ⚠️ Y902 "Oops some issue at our end" (5xx).
    "Y902": ErrorCategory.PROVIDER_ERROR,
}
TOKEN_CODES = frozenset({"Y008", "Y020", "Y023"})
# Y800 on an id of ours means the providerAccount/account no longer exists at Yodlee.
_GONE_PATTERN = re.compile(r"invalid value for (?:providerAccountId|accountId)\b", re.I)

# Dataset additionalStatus -> category (reference §2.6/§8). Anything not listed is fine.
DATASET_CATEGORIES = {
    "CONSENT_EXPIRED": ErrorCategory.AUTH_EXPIRED,
    "CONSENT_REVOKED": ErrorCategory.AUTH_EXPIRED,
    "CONSENT_REQUIRED": ErrorCategory.AUTH_EXPIRED,
    "CREDENTIALS_UPDATE_NEEDED": ErrorCategory.AUTH_EXPIRED,
    "INCORRECT_OAUTH_TOKEN": ErrorCategory.AUTH_EXPIRED,
    "NEW_AUTHENTICATION_REQUIRED": ErrorCategory.AUTH_EXPIRED,
    "SITE_SESSION_INVALIDATED": ErrorCategory.AUTH_EXPIRED,
    "ADDL_AUTHENTICATION_REQUIRED": ErrorCategory.USER_ACTION_REQUIRED,
    "USER_ACTION_NEEDED_AT_SITE": ErrorCategory.USER_ACTION_REQUIRED,
    "INCORRECT_CREDENTIALS": ErrorCategory.USER_ACTION_REQUIRED,
    "ACCOUNT_LOCKED": ErrorCategory.USER_ACTION_REQUIRED,
    "INVALID_ADDL_INFO_PROVIDED": ErrorCategory.USER_ACTION_REQUIRED,
    "ENROLLMENT_REQUIRED_FOR_DATASET": ErrorCategory.USER_ACTION_REQUIRED,
    "SITE_UNAVAILABLE": ErrorCategory.INSTITUTION_DOWN,
    "SITE_BLOCKING_ERROR": ErrorCategory.INSTITUTION_DOWN,
    "UNEXPECTED_SITE_ERROR": ErrorCategory.INSTITUTION_DOWN,
    "TECH_ERROR": ErrorCategory.INSTITUTION_DOWN,
    "REQUEST_TIME_OUT": ErrorCategory.INSTITUTION_DOWN,
    "SITE_NOT_SUPPORTED": ErrorCategory.INSTITUTION_DOWN,
    "DATA_RETRIEVAL_FAILED": ErrorCategory.INSTITUTION_DOWN,
    "LOGIN_IN_PROGRESS": ErrorCategory.NOT_READY,
    "DATA_RETRIEVAL_IN_PROGRESS": ErrorCategory.NOT_READY,
    "ACCT_SUMMARY_RECEIVED": ErrorCategory.NOT_READY,
    "MIGRATION_IN_PROGRESS": ErrorCategory.NOT_READY,
}
# providerAccount.status values that need something even when no dataset says why.
LINK_STATUS_CATEGORIES = {
    "LOGIN_IN_PROGRESS": ErrorCategory.NOT_READY,
    "IN_PROGRESS": ErrorCategory.NOT_READY,
    "MIGRATION_IN_PROGRESS": ErrorCategory.NOT_READY,
    "USER_INPUT_REQUIRED": ErrorCategory.USER_ACTION_REQUIRED,
    "FAILED": ErrorCategory.INSTITUTION_DOWN,
    "DATA_RETRIEVAL_FAILED": ErrorCategory.INSTITUTION_DOWN,
}
DATASET_MESSAGES = {
    ErrorCategory.AUTH_EXPIRED: "The bank connection at Yodlee has expired or was revoked; "
                                "reconnect the bank.",
    ErrorCategory.USER_ACTION_REQUIRED: "The bank asks you to act (sign in again or confirm) "
                                        "before Yodlee can update this connection.",
    ErrorCategory.INSTITUTION_DOWN: "Yodlee could not reach the bank on its last update; it "
                                    "will try again.",
    ErrorCategory.NOT_READY: "Yodlee is still retrieving the data of this bank.",
}

# What FastLink reports back on our callback (⚠️ FastLink 4 really answers with a JS
# postMessage; the parameters keep its names: status, providerAccountId, providerId, requestId).
FASTLINK_SUCCESS = frozenset({"SUCCESS", "PARTIAL_SUCCESS"})

ACCOUNT_KINDS = {"CHECKING": "checking", "SAVINGS": "savings", "MONEY_MARKET": "savings",
                 "CD": "savings"}
CONTAINER_KINDS = {"creditCard": "card", "loan": "loan"}
BOOKED_STATUSES = {"POSTED": TxnStatus.BOOKED, "CLEARED": TxnStatus.BOOKED,
                   "PENDING": TxnStatus.PENDING}
# SCHEDULED (future) and FAILED transactions are not movements of money: they are left out.

_BEARER_PATTERN = re.compile(r"(?i)(bearer\s+)[^\s,;\"']+")
_OGM_PATTERN = re.compile(r"(?:\+\+\+|\*\*\*)\s*(\d{3})\s*/\s*(\d{4})\s*/\s*(\d{5})\s*"
                          r"(?:\+\+\+|\*\*\*)")
_RF_PATTERN = re.compile(r"\bRF(\d{2})([0-9A-Z]{1,21})\b")
_WAIT_SECONDS = re.compile(r"(?i)try again in (\d+)\s*second")
_WAIT_HOURS = re.compile(r"(?i)try (?:again )?after (\d+)\s*hour")
_IBAN_PATTERN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}\Z")


# --------------------------------------------------------------------------- pure mapping
def utcnow():
    return datetime.now(timezone.utc)


def format_datetime(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def parse_datetime(value):
    """Yodlee timestamp (``2025-03-10T13:42:35Z``) or date -> aware UTC datetime, else None."""
    if not value:
        return None
    text = str(value).strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_bank_date(value):
    """A bank date ``YYYY-MM-DD`` as the bank wrote it: never shifted through a time zone."""
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


def parse_decimal(value):
    """A JSON number (Yodlee sends amounts as numbers) -> exact Decimal.

    A float goes through its shortest repr (``42.1`` -> ``Decimal("42.1")``), which is the
    literal the server wrote; booleans, NaN and garbage are refused.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("amount is missing or not a number")
    if isinstance(value, float):
        value = repr(value)
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    return amount


def parse_money(money):
    """``{"amount": 12.3, "currency": "EUR"}`` -> (Decimal, currency)."""
    return parse_decimal(money["amount"]), money.get("currency")


def wait_from_text(text):
    """Seconds to wait from a message like "try again in 30 seconds" / "try after 24 hours"."""
    match = _WAIT_SECONDS.search(text or "")
    if match:
        return float(match.group(1))
    match = _WAIT_HOURS.search(text or "")
    if match:
        return float(match.group(1)) * 3600
    return None


def categorize_error(code, status, message=""):
    """The category of a Yodlee error answer (``code`` may be None)."""
    if status == 429:
        return ErrorCategory.RATE_LIMITED
    if code == "Y800" and _GONE_PATTERN.search(message or ""):
        return ErrorCategory.NOT_FOUND
    category = ERROR_CATEGORIES.get(code)
    if category is not None:
        return category
    if status >= 500:
        return ErrorCategory.PROVIDER_ERROR
    if status == 401:
        return ErrorCategory.AUTH_INVALID
    if status == 404:
        return ErrorCategory.NOT_FOUND
    if status == 403:
        return ErrorCategory.USER_ACTION_REQUIRED
    return ErrorCategory.BAD_REQUEST


def dataset_problem(link_status, datasets):
    """(category, code) of what a providerAccount/account ``dataset`` reports, else None."""
    for dataset in datasets or []:
        additional = (dataset or {}).get("additionalStatus")
        if additional in DATASET_CATEGORIES:
            return DATASET_CATEGORIES[additional], additional
    if link_status in LINK_STATUS_CATEGORIES:
        return LINK_STATUS_CATEGORIES[link_status], link_status
    return None


def is_iban(value):
    text = (value or "").replace(" ", "").upper()
    if not _IBAN_PATTERN.match(text):
        return False
    digits = "".join(str(int(char, 36)) for char in text[4:] + text[:4])
    return int(digits) % 97 == 1


def structured_reference(text):
    """A Belgian structured communication (checked mod 97, as ``+++123/4567/89012+++``) or an
    ISO 11649 creditor reference (``RF…``) found in the bank's text, else None."""
    text = text or ""
    for match in _OGM_PATTERN.finditer(text):
        digits = "".join(match.groups())
        if (int(digits[:10]) % 97 or 97) == int(digits[10:]):
            return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"
    for match in _RF_PATTERN.finditer(text.upper()):
        check, body = match.groups()
        number = "".join(str(int(char, 36)) for char in body + "RF" + check)
        if int(number) % 97 == 1:
            return f"RF{check}{body}"
    return None


def map_institution(raw):
    country = raw.get("countryISOCode")
    return Institution(
        provider=PROVIDER,
        external_id=str(raw["id"]),
        name=raw["name"],
        countries=[country.upper()] if country else [],
        logo_url=raw.get("logo") or raw.get("favicon"),
        beta=raw.get("status") == "Beta",
        raw=dict(raw),
    )


def account_currency(raw):
    for key in ("currentBalance", "balance", "availableBalance"):
        money = raw.get(key)
        if isinstance(money, dict) and money.get("currency"):
            return money["currency"]
    return None


def stable_account_key(raw, iban=None):
    """The IBAN when known, else a hash of what identifies the account at its bank (Yodlee's
    account ids change when a bank is linked anew)."""
    if iban:
        return iban
    number = raw.get("accountNumber")
    if not number:
        return f"yodlee-account:{raw['id']}"
    parts = (str(raw.get("providerId") or ""), raw.get("CONTAINER") or "",
             raw.get("accountType") or "", number, account_currency(raw) or "")
    return "yodlee:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def map_account(raw, consent_external_id):
    numbers = raw.get("fullAccountNumberList") or {}
    iban = next((value.replace(" ", "").upper() for value in (
        numbers.get("paymentAccountNumber"), numbers.get("unmaskedAccountNumber"),
        raw.get("fullAccountNumber")) if value and is_iban(value)), None)
    kind = CONTAINER_KINDS.get(raw.get("CONTAINER")) or ACCOUNT_KINDS.get(
        (raw.get("accountType") or "").upper(), "checking" if raw.get("CONTAINER") == "bank"
        else "other")
    holders = raw.get("holder") or []
    holder = ((holders[0] or {}).get("name") or {}).get("fullName") if holders else None
    return Account(
        provider=PROVIDER,
        external_id=str(raw["id"]),
        stable_key=stable_account_key(raw, iban),
        consent_external_id=str(consent_external_id),
        iban=iban,
        account_number_masked=raw.get("accountNumber"),
        name=raw.get("accountName") or raw.get("nickname") or raw.get("displayedName"),
        holder_name=holder,
        currency=account_currency(raw),
        kind=kind,
        raw={key: value for key, value in raw.items() if key != "fullAccountNumberList"},
    )


def map_balances(raw, account_external_id, fetched_at=None):
    """Balances of an account object: ``currentBalance`` is the booked one (§8),
    ``availableBalance`` the available one; ``balance`` only when neither is there."""
    fetched_at = fetched_at or utcnow()
    reference = parse_bank_date(raw.get("lastUpdated"))  # the last refresh, as Yodlee dates it
    kinds = [("currentBalance", "booked"), ("availableBalance", "available")]
    if not any(isinstance(raw.get(key), dict) for key, _kind in kinds):
        kinds = [("balance", "booked")]
    result = []
    for key, kind in kinds:
        money = raw.get(key)
        if not isinstance(money, dict):
            continue
        amount, currency = parse_money(money)
        result.append(Balance(account_external_id=str(account_external_id), kind=kind,
                              amount=amount, currency=currency or account_currency(raw),
                              reference_date=reference, fetched_at=fetched_at,
                              raw={key: dict(money)}))
    return result


def match_key(raw):
    """What a pending transaction and its posted successor share (Yodlee gives them different
    ids and no link, §2.5): account, direction, amount, currency and transaction date."""
    money = raw.get("amount") or {}
    parts = (str(raw.get("accountId") or ""), raw.get("baseType") or "",
             str(parse_decimal(money.get("amount"))), money.get("currency") or "",
             str(raw.get("transactionDate") or raw.get("date") or ""))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def synthetic_id(raw, occurrence):
    """sha256 of the immutable fields + occurrence index, for a transaction without an id."""
    money = raw.get("amount") or {}
    description = raw.get("description") or {}
    parts = (str(raw.get("accountId") or ""), raw.get("baseType") or "",
             str(money.get("amount")), money.get("currency") or "",
             str(raw.get("transactionDate") or ""), str(raw.get("postDate") or raw.get("date")),
             description.get("original") or "", str(occurrence))
    return "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def map_transaction(raw, account_external_id, account_currency_code=None, occurrence=0):
    """A ``Transaction`` from a Yodlee transaction, or None for SCHEDULED/FAILED ones.

    The sign comes from ``baseType`` (CREDIT: money in). A foreign-currency amount (its
    currency differs from the account's and ``convertedAmount`` is in the account's currency)
    becomes ``original_amount``/``original_currency``.
    """
    status = BOOKED_STATUSES.get(raw.get("status") or "POSTED")
    if status is None:
        return None
    base_type = raw.get("baseType")
    if base_type not in ("CREDIT", "DEBIT"):
        raise ValueError(f"unknown baseType {base_type!r}")
    money = raw["amount"]
    amount, currency = parse_money(money)
    original_amount = original_currency = None
    converted_currency = money.get("convertedCurrency")
    if account_currency_code and currency and currency != account_currency_code \
            and converted_currency == account_currency_code \
            and money.get("convertedAmount") is not None:
        original_amount, original_currency = abs(amount), currency
        amount, currency = parse_decimal(money["convertedAmount"]), converted_currency
    sign = Decimal(1) if base_type == "CREDIT" else Decimal(-1)
    amount = sign * abs(amount)
    if original_amount is not None:
        original_amount = sign * original_amount
    description = raw.get("description") or {}
    merchant = raw.get("merchant") or {}
    text = description.get("original") or description.get("simple") or \
        description.get("consumer") or merchant.get("name") or ""
    booking = parse_bank_date(raw.get("postDate") or (
        raw.get("date") if status == TxnStatus.BOOKED else None))
    alt_ids = {"match_key": match_key(raw)}
    if raw.get("sourceId"):
        alt_ids["source_id"] = str(raw["sourceId"])
    if raw.get("CONTAINER"):
        alt_ids["container"] = raw["CONTAINER"]
    has_id = raw.get("id") is not None
    running = raw.get("runningBalance")
    return Transaction(
        provider=PROVIDER,
        account_external_id=str(account_external_id),
        external_id=str(raw["id"]) if has_id else synthetic_id(raw, occurrence),
        id_is_synthetic=not has_id,
        alt_ids=alt_ids,
        status=status,
        amount=amount,
        currency=currency or account_currency_code,
        booking_date=booking if status == TxnStatus.BOOKED else None,
        value_date=None,
        transaction_date=parse_bank_date(raw.get("transactionDate")),
        description=text,
        structured_reference=structured_reference(
            " ".join(filter(None, (description.get("original"), description.get("simple"))))),
        counterparty_name=merchant.get("name") or None,
        counterparty_iban=None,  # Yodlee has no counterparty account fields (§2.5)
        merchant_name=merchant.get("name") or None,
        category=raw.get("category"),
        original_amount=original_amount,
        original_currency=original_currency,
        balance_after=_running_balance(running),
        raw=dict(raw),
    )


def _running_balance(money):
    if not isinstance(money, dict):
        return None
    try:
        return parse_decimal(money.get("amount"))
    except (ValueError, InvalidOperation):
        return None


# ⚠️ The pending memory: Yodlee re-creates a posted transaction under a new id and does not link
# it to the pending one. ``fetch_transactions`` returns, as ``next_cursor``, the pending ids it
# saw by ``match_key``; given back, it sets ``replaces_external_id`` on the posted successors.
_CURSOR_PREFIX = "ypend1."


def encode_pending_memory(account_external_id, pending):
    """Opaque cursor of {match_key: [pending ids]} (bounded)."""
    memory = {}
    for txn in pending[:MAX_REMEMBERED_PENDING]:
        memory.setdefault(txn.alt_ids["match_key"], []).append(txn.external_id)
    payload = json.dumps({"a": str(account_external_id), "p": memory}, separators=(",", ":"))
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_pending_memory(cursor, account_external_id):
    """{match_key: [pending ids]} of a cursor of ``encode_pending_memory``; {} if foreign."""
    if not cursor or not cursor.startswith(_CURSOR_PREFIX):
        return {}
    text = cursor[len(_CURSOR_PREFIX):]
    try:
        payload = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if payload.get("a") != str(account_external_id):
            return {}
        return {str(key): [str(i) for i in ids] for key, ids in dict(payload["p"]).items()
                if isinstance(ids, list)}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def fastlink_launch_url(fastlink_url, access_token, extra_params):
    """The FastLink URL the user's browser opens.

    ⚠️ FastLink 4 is documented as launched by a form POST of ``accessToken`` and
    ``extraParams``; a redirect can only be a GET, so both go in the query string. The token is
    a 30-minute user token that ``complete_consent`` revokes at once (DELETE /auth/token).
    """
    query = urlencode({"accessToken": f"Bearer {access_token}",
                       "extraParams": urlencode(extra_params)})
    return f"{fastlink_url}?{query}"


def new_login_name():
    """A Yodlee user name of our own for one link (unknown names are registered implicitly)."""
    return "odoo-" + _secrets.token_hex(12)


# --------------------------------------------------------------------------- adapter
@register
class YodleeAdapter(ProviderAdapter):
    """Envestnet | Yodlee API v1.1 with FastLink 4.

    Config keys:

    * ``client_id``, ``client_secret``: the API key pair of the Yodlee dashboard.
    * ``admin_login_name``: the admin login name (for ``GET /providers``).
    * ``environment``: ``sandbox`` (default), ``development`` or ``production``; picks the API
      host and, for the sandbox, FastLink's.
    * ``base_url``: overrides the API base (``…/ysl``); the tests point it at the simulator.
    * ``fastlink_url``: FastLink's URL (required outside the sandbox unless ``base_url`` is
      given, in which case it defaults to ``<origin of base_url>/authenticate/restserver/
      fastlink``).
    * ``fastlink_config_name``: FastLink configuration name (default ``Aggregation``).
    * ``login_name``: one fixed Yodlee user for every link (Yodlee's sandbox only issues tokens
      to its pre-registered users, error Y305); default: a new user per link.
    * ``full_account_number``: ask for ``include=fullAccountNumberList`` to get IBANs (a premium
      feature of Yodlee, off by default).
    """

    code = PROVIDER
    label = "Yodlee"
    default_base_url = BASE_URLS["sandbox"]
    max_history_days = None  # not documented (Yodlee keeps what it aggregated)
    uses_pkce = False

    def __init__(self, config, **options):
        super().__init__(config, **options)
        environment = self.config.get("environment") or "sandbox"
        if environment not in BASE_URLS:
            raise ValueError(f"unknown Yodlee environment {environment!r}")
        self.environment = environment
        if not self.config.get("base_url"):
            self.base_url = BASE_URLS[environment]
        self.client_id = self.config.get("client_id") or ""
        self.client_secret = self.config.get("client_secret") or ""
        self.admin_login_name = self.config.get("admin_login_name") or ""
        self.login_name = self.config.get("login_name") or None
        self.fastlink_config_name = self.config.get("fastlink_config_name") or \
            DEFAULT_FASTLINK_CONFIG
        self.full_account_number = bool(self.config.get("full_account_number"))
        self.fastlink_url = self.config.get("fastlink_url") or self._default_fastlink_url()
        self._local = threading.local()
        self._admin_token = None  # (token, expires_at)
        self._known_secrets = {}  # insertion-ordered set of the last MAX_KNOWN_SECRETS values
        self._remember_secret(self.client_secret)

    def _default_fastlink_url(self):
        if self.config.get("base_url"):
            parts = urlsplit(self.base_url)
            return f"{parts.scheme}://{parts.netloc}{FASTLINK_PATH}"
        return FASTLINK_URLS.get(self.environment)

    # ------------------------------------------------------------------ secrets
    def _remember_secret(self, value):
        if not value or len(value) < 6:
            return
        self._known_secrets.pop(value, None)
        self._known_secrets[value] = True
        while len(self._known_secrets) > MAX_KNOWN_SECRETS:
            # the oldest token goes first; the client secret is always re-added in scrub()
            self._known_secrets.pop(next(iter(self._known_secrets)))

    def scrub(self, text):
        """``text`` without our client secret, any token we handled or bearer value."""
        text = _BEARER_PATTERN.sub(r"\1[redacted]", str(text or ""))
        known = set(self._known_secrets)
        if self.client_secret and len(self.client_secret) >= 6:
            known.add(self.client_secret)
        for secret in sorted(known, key=len, reverse=True):
            text = text.replace(secret, "[redacted]")
        return text

    # ------------------------------------------------------------------ hooks
    def _auth_headers(self, method, url, json_body):
        headers = {"Api-Version": API_VERSION}
        token = getattr(self._local, "token", None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _map_error(self, status, body, response):
        code = body.get("errorCode") if isinstance(body.get("errorCode"), str) else None
        text = self.scrub(body.get("errorMessage") or "")[:300]
        reference = body.get("referenceCode")
        message = f"HTTP {status} {code or 'error'}" + (f": {text}" if text else "") + (
            f" [{reference}]" if isinstance(reference, str) and reference else "")
        category = categorize_error(code, status, text)
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None and status in (429, 503):
            retry_after = wait_from_text(text)
        return ProviderError(self.code, category, message, http_status=status, code=code,
                             retry_after=retry_after, raw=body)

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _mapping(self, what):
        """Turn an answer that does not have the documented shape into a PROVIDER_ERROR."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                InvalidOperation) as exc:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"unexpected {what} answer: {type(exc).__name__}",
                                retryable=False) from None

    def _issue_token(self, login_name):
        """``POST /auth/token`` for ``login_name``: (token, expires_at)."""
        payload = self._request(
            "POST", "/auth/token", auth=False,
            data={"clientId": self.client_id, "secret": self.client_secret},
            headers={"Api-Version": API_VERSION, "loginName": login_name})
        with self._mapping("token"):
            info = payload["token"]
            token = str(info["accessToken"])
            expires_at = utcnow() + timedelta(seconds=int(info.get("expiresIn") or 1800))
        self._remember_secret(token)
        return token, expires_at

    def _as(self, token, method, path, **kwargs):
        previous = getattr(self._local, "token", None)
        self._local.token = token
        try:
            return self._request(method, path, **kwargs)
        finally:
            self._local.token = previous

    @staticmethod
    def _login_name(consent):
        login_name = (consent.secrets or {}).get("login_name")
        if not login_name:
            raise ProviderError(PROVIDER, ErrorCategory.AUTH_EXPIRED,
                                "the consent carries no Yodlee login name; link the bank again",
                                code="NO_LOGIN_NAME")
        return login_name

    def _needs_token(self, consent):
        secrets = consent.secrets
        if not secrets.get("access_token"):
            return True
        try:
            expires_at = parse_datetime(secrets.get("access_expires_at"))
        except ValueError:
            return True
        return expires_at is None or expires_at <= utcnow() + TOKEN_MARGIN

    def _renew_token(self, consent):
        """A new user token; ``consent.secrets`` is updated in place."""
        token, expires_at = self._issue_token(self._login_name(consent))
        consent.secrets.update({"access_token": token,
                                "access_expires_at": format_datetime(expires_at)})

    def _call(self, consent, method, path, **kwargs):
        """One API call as the consent's Yodlee user, asking a new token once if refused."""
        self._login_name(consent)
        if self._needs_token(consent):
            self._renew_token(consent)
        self._remember_secret(consent.secrets.get("access_token"))
        try:
            return self._as(consent.secrets["access_token"], method, path, **kwargs)
        except ProviderError as error:
            if error.code not in TOKEN_CODES:
                raise
        self._renew_token(consent)
        try:
            return self._as(consent.secrets["access_token"], method, path, **kwargs)
        except ProviderError as error:
            if error.code in TOKEN_CODES:  # refused right after being issued: our setup
                error.category = ErrorCategory.AUTH_INVALID
                error.retryable = False
            raise

    def _admin_call(self, method, path, **kwargs):
        """One API call with the admin token (asked again once if refused)."""
        login_name = self.admin_login_name or self.login_name
        if not login_name:
            raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                "the Yodlee configuration has no admin login name",
                                code="NO_ADMIN_LOGIN_NAME", retryable=False)
        for attempt in range(2):
            if self._admin_token is None or self._admin_token[1] <= utcnow() + TOKEN_MARGIN:
                self._admin_token = self._issue_token(login_name)
            try:
                return self._as(self._admin_token[0], method, path, **kwargs)
            except ProviderError as error:
                if error.code not in TOKEN_CODES:
                    raise
                self._admin_token = None
                if attempt:
                    error.category = ErrorCategory.AUTH_INVALID
                    error.retryable = False
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _retire_token(self, consent):
        """Revoke the consent's current token (best effort) so the next call gets a new one."""
        token = consent.secrets.get("access_token")
        if token:
            try:
                self._as(token, "DELETE", "/auth/token", parse=False, retry=False)
            except ProviderError as error:
                _logger.debug("yodlee: the token could not be revoked (%s)", error.category.value)
        consent.secrets.pop("access_token", None)
        consent.secrets.pop("access_expires_at", None)

    def _problem(self, category, code, what):
        return ProviderError(self.code, category, f"{what} reports {code}", code=code,
                             user_message=DATASET_MESSAGES.get(category), retryable=False)

    def _provider_account(self, consent, allow_not_ready=False):
        """``GET /providerAccounts/{id}``; raises what its status reports."""
        payload = self._call(consent, "GET", f"/providerAccounts/{_q(consent.external_id)}")
        with self._mapping("providerAccount"):
            found = payload["providerAccount"]
            link = found[0] if isinstance(found, list) else found
            problem = dataset_problem(link.get("status"), link.get("dataset"))
        if problem and not (allow_not_ready and problem[0] == ErrorCategory.NOT_READY):
            raise self._problem(*problem, "the Yodlee link")
        return link

    @staticmethod
    def _account_path(account_external_id):
        return f"/accounts/{_q(account_external_id)}"

    def _account(self, consent, account_external_id):
        """``GET /accounts/{id}`` (balances, currency, dataset status); raises on a problem."""
        payload = self._call(consent, "GET", self._account_path(account_external_id))
        with self._mapping("account"):
            raw = payload["account"][0]
            problem = dataset_problem(None, raw.get("dataset"))
        if problem:
            raise self._problem(*problem, "the Yodlee account")
        return raw

    # ------------------------------------------------------------------ operations
    def list_institutions(self, country=None, query=None):
        """Yodlee's providers; ``country`` is filtered here on ``countryISOCode`` (⚠️ the API
        has no country parameter). A name search is one call; a listing pages with skip/top."""
        found = []
        if query:
            payload = self._admin_call("GET", "/providers", params={"name": query})
            found = payload.get("provider") or []
        else:
            for page in range(MAX_INSTITUTION_PAGES):
                payload = self._admin_call("GET", "/providers", params={
                    "skip": page * PAGE_TOP, "top": PAGE_TOP})
                items = payload.get("provider") or []
                found.extend(items)
                if len(items) < PAGE_TOP:
                    break
        with self._mapping("providers"):
            institutions = [map_institution(raw) for raw in found]
        if country:
            institutions = [i for i in institutions if country.upper() in i.countries]
        return institutions

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """FastLink's URL for linking ``institution_id`` (a Yodlee providerId), or with
        ``consent`` FastLink's refresh flow for that providerAccount (a new consent period for the
        same link and account ids). ``valid_days`` and PKCE do not apply (the bank and Yodlee
        decide the consent length)."""
        if not self.fastlink_url:
            raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                "the Yodlee configuration has no FastLink URL",
                                code="NO_FASTLINK_URL", retryable=False)
        extra = {"configName": self.fastlink_config_name}
        if consent is not None:
            login_name = self._login_name(consent)
            if self._needs_token(consent):
                self._renew_token(consent)
            token = consent.secrets["access_token"]
            expires_at = consent.secrets["access_expires_at"]
            institution_id = institution_id or consent.institution_id
            extra.update(flow="refresh", providerAccountId=str(consent.external_id))
        else:
            if not str(institution_id or "").isdigit():
                raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                    "a Yodlee institution id is a number (providerId)",
                                    code="INVALID_INSTITUTION")
            login_name = self.login_name or new_login_name()
            token, moment = self._issue_token(login_name)
            expires_at = format_datetime(moment)
            extra.update(flow="add", providerId=str(institution_id))
        extra.update(callback=redirect_uri, state=state)
        if language:
            extra["locale"] = language
        pending = {"login_name": login_name, "access_token": token,
                   "access_expires_at": expires_at,
                   "institution_id": str(institution_id) if institution_id else None}
        if consent is not None:
            pending["renews"] = str(consent.external_id)
        return ConsentStart(redirect_url=fastlink_launch_url(self.fastlink_url, token, extra),
                            state=state, code_verifier=None, pending_data=pending)

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        params = dict(callback_params or {})
        status = params.get("status")
        if status not in FASTLINK_SUCCESS:
            code = params.get("reason") or status or "FASTLINK_FAILED"
            text = params.get("message") or "The bank link was not completed in FastLink."
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                f"FastLink ended with {code}", code=str(code),
                                user_message=str(text),
                                raw={key: params.get(key) for key in ("status", "reason",
                                                                      "message")})
        provider_account_id = str(params.get("providerAccountId") or "")
        if not provider_account_id.isdigit():
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the FastLink callback carries no providerAccountId",
                                code="NO_PROVIDER_ACCOUNT")
        pending = dict(pending_data or {})
        if not pending.get("login_name"):
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the pending consent carries no Yodlee login name",
                                code="NO_LOGIN_NAME")
        consent = Consent(
            provider=PROVIDER, external_id=provider_account_id,
            institution_id=str(params.get("providerId") or pending.get("institution_id") or "")
            or None,
            status=ConsentStatus.PENDING, created_at=None, valid_until=None,
            secrets={key: pending[key] for key in ("login_name", "access_token",
                                                   "access_expires_at") if pending.get(key)})
        # The FastLink token travelled in a URL: revoke it, the next call asks a new one.
        self._retire_token(consent)
        link = self._provider_account(consent, allow_not_ready=True)
        payload = self._call(consent, "GET", "/consents",
                             params={"providerAccountIds": provider_account_id})
        with self._mapping("consents"):
            details = next((item for item in payload.get("consent") or []
                            if str(item.get("providerAccountId")) == provider_account_id
                            or item.get("consentId") == link.get("consentId")), {})
            if details.get("consentStatus") in ("EXPIRED", "REVOKED"):
                raise self._problem(ErrorCategory.AUTH_EXPIRED,
                                    "CONSENT_" + details["consentStatus"], "the Yodlee consent")
            consent.valid_until = parse_datetime(details.get("expirationDate"))
            consent.created_at = parse_datetime(link.get("createdDate"))
            if link.get("providerId"):
                consent.institution_id = str(link["providerId"])
        consent.status = ConsentStatus.ACTIVE
        consent.raw = {"providerAccount": {key: link.get(key) for key in (
            "id", "providerId", "status", "consentId", "createdDate", "requestId")},
            "consent": {key: details.get(key) for key in (
                "consentId", "consentStatus", "startDate", "expirationDate")}}
        return consent

    def list_accounts(self, consent):
        link = self._provider_account(consent, allow_not_ready=True)
        params = {"providerAccountId": str(consent.external_id)}
        if self.full_account_number:
            params["include"] = "fullAccountNumberList"
        payload = self._call(consent, "GET", "/accounts", params=params)
        with self._mapping("accounts"):
            accounts = [map_account(raw, consent.external_id)
                        for raw in payload.get("account") or []
                        if raw.get("accountStatus") not in ("CLOSED", "DELETED")]
        if not accounts:
            problem = dataset_problem(link.get("status"), link.get("dataset"))
            if problem:  # still retrieving: the accounts come later
                raise self._problem(*problem, "the Yodlee link")
        return accounts

    def get_balances(self, consent, account_external_id):
        raw = self._account(consent, account_external_id)
        with self._mapping("account"):
            return map_balances(raw, account_external_id, utcnow())

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Every POSTED and PENDING transaction of [date_from, date_to] (by Yodlee's ``date``),
        paging with skip/top to the end. ``cursor`` is the pending memory of the previous call
        (see ``encode_pending_memory``); the new one comes back as ``next_cursor``."""
        account = self._account(consent, account_external_id)
        currency = account_currency(account)
        if date_from is None:
            date_from = date.today() - timedelta(days=DEFAULT_HISTORY_DAYS)
        params = {"accountId": str(account_external_id), "fromDate": date_from.isoformat()}
        if date_to is not None:
            params["toDate"] = date_to.isoformat()
        count_payload = self._call(consent, "GET", "/transactions/count", params=params)
        with self._mapping("transactions count"):
            total = int(((count_payload.get("transaction") or {}).get("TOTAL") or {})
                        .get("count") or 0)
        # Offset paging over a list that may change under us: a page more than the count says,
        # duplicates dropped by id.
        max_pages = min(MAX_PAGES, total // PAGE_TOP + 2)
        raws, seen = [], set()
        for page in range(max_pages):
            payload = self._call(consent, "GET", "/transactions",
                                 params={**params, "skip": page * PAGE_TOP, "top": PAGE_TOP})
            with self._mapping("transactions"):
                items = payload.get("transaction") or []
                for raw in items:
                    key = (raw.get("CONTAINER"), raw.get("id"))
                    if raw.get("id") is not None and key in seen:
                        continue
                    seen.add(key)
                    raws.append(raw)
            if len(items) < PAGE_TOP:
                break
        else:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"more than {max_pages} pages of transactions for "
                                f"{total} announced; giving up", retryable=False)
        return self._sync_page(raws, account_external_id, currency, cursor)

    def _sync_page(self, raws, account_external_id, currency, cursor):
        memory = decode_pending_memory(cursor, account_external_id)
        added, occurrences = [], {}
        with self._mapping("transactions"):
            for raw in raws:
                base = None if raw.get("id") is not None else synthetic_id(raw, 0)
                occurrence = occurrences.get(base, 0) if base else 0
                if base:
                    occurrences[base] = occurrence + 1
                txn = map_transaction(raw, account_external_id, currency, occurrence)
                if txn is not None:
                    added.append(txn)
        pending = [txn for txn in added if txn.status == TxnStatus.PENDING]
        pending_ids = {txn.external_id for txn in pending}
        for txn in added:
            if txn.status != TxnStatus.BOOKED:
                continue
            candidates = memory.get(txn.alt_ids["match_key"]) or []
            candidates = [i for i in candidates if i not in pending_ids and i != txn.external_id]
            if candidates:
                txn.replaces_external_id = candidates[0]
                memory[txn.alt_ids["match_key"]] = candidates[1:]
        _logger.debug("yodlee: %d transactions (%d pending) for account %s", len(added),
                      len(pending), account_external_id)
        return SyncPage(added=added,
                        next_cursor=encode_pending_memory(account_external_id, pending))

    def revoke_consent(self, consent):
        """Delete the providerAccount at Yodlee (its accounts and data go with it). True if
        deleted now, False if it was already gone."""
        try:
            self._call(consent, "DELETE", f"/providerAccounts/{_q(consent.external_id)}",
                       parse=False)
        except ProviderError as error:
            if error.category == ErrorCategory.NOT_FOUND:
                return False
            raise
        self._retire_token(consent)
        return True


def _q(value):
    return quote(str(value), safe="")
