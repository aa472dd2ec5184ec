"""Adapter of Plaid (API version 2020-09-14; reference/providers.md §1).

Every Plaid endpoint is ``POST`` with a JSON body. The client credentials travel in the
``PLAID-CLIENT-ID`` / ``PLAID-SECRET`` headers, the Item's ``access_token`` in the body.

Consent = a Plaid Item, linked through Hosted Link:

1. ``start_consent``: ``/link/token/create`` with ``hosted_link.completion_redirect_uri`` = our
   callback (with our ``state`` in its query, since Hosted Link documents no parameters of its
   own) -> the ``hosted_link_url`` the user's browser goes to; the ``link_token`` is kept in
   ``ConsentStart.pending_data``. With ``consent=`` given, the same in *update mode*
   (``access_token`` instead of ``products``): the user repairs/renews the same Item.
2. ``complete_consent``: ``/link/token/get`` -> the Link session's ``public_token`` (or its
   ``exit``), ``/item/public_token/exchange`` -> ``access_token`` + ``item_id``, then ``/item/get``
   for ``consent_expiration_time`` (EU/UK consents expire, US ones usually do not).

Consent secrets (``Consent.secrets``): ``access_token`` only. Plaid access tokens do not expire
and there is no refresh token, so nothing is ever refreshed and ``consent.secrets`` never changes.

Transactions come from ``/transactions/sync`` per account (``options.account_id``), followed to
``has_more = false``; the returned ``next_cursor`` is the caller's to keep. Plaid's sign (positive
= money out) is inverted to the bank-statement sign.
"""
import contextlib
import logging
import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ErrorCategory, ProviderError
from ..types import (Account, Balance, Consent, ConsentStart, ConsentStatus, Institution,
                     SyncPage, Transaction, TxnStatus)
from . import register
from .base import ProviderAdapter, parse_retry_after

_logger = logging.getLogger(__name__)

PROVIDER = "plaid"
API_VERSION = "2020-09-14"
BASE_URLS = {"sandbox": "https://sandbox.plaid.com", "production": "https://production.plaid.com"}
DEFAULT_ENVIRONMENT = "production"
DEFAULT_CLIENT_NAME = "Odoo"
CLIENT_NAME_MAX = 30
DEFAULT_COUNTRY_CODES = ("BE", "DE", "ES", "FR", "GB", "IE", "IT", "NL")
# CountryCode enum of the OpenAPI spec: Link refuses anything else.
SUPPORTED_COUNTRIES = frozenset({"US", "GB", "ES", "NL", "FR", "IE", "CA", "DE", "IT", "PL",
                                 "DK", "NO", "SE", "EE", "LT", "LV", "PT", "BE", "AT", "FI"})
LINK_LANGUAGES = frozenset({"da", "de", "en", "es", "et", "fr", "hi", "it", "ja", "lt", "lv",
                            "nl", "no", "pl", "pt", "ro", "sv", "vi", "zh"})
DEFAULT_DAYS_REQUESTED = 90          # ✅ LinkTokenTransactions.days_requested default
MAX_DAYS_REQUESTED = 730             # ✅ its maximum
SYNC_PAGE_SIZE = 500                 # ✅ /transactions/sync count maximum
INSTITUTIONS_PAGE_SIZE = 500         # ✅ /institutions/get count maximum
MAX_SYNC_PAGES = 1000                # 500 000 updates in one run: more means a loop
MAX_INSTITUTION_PAGES = 60           # 30 000 institutions
MAX_MUTATION_RESTARTS = 3            # TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION restarts
LINK_RESULT_POLLS = 4                # /link/token/get calls before giving up on a session
LINK_POLL_WAIT = 1.0                 # seconds between them

# --------------------------------------------------------------------------- unconfirmed (❓)
# Plaid's limits are per minute; when a 429 carries neither Retry-After nor "try again in N
# seconds", wait out the minute.
RATE_LIMIT_FALLBACK_SECONDS = 60.0
# Whether to pass the institution chosen in Odoo to /link/token/create (the spec calls the
# top-level ``institution_id`` "used for certain legacy use cases"): off, the user picks it in Link.
SEND_INSTITUTION_ID = False
# Ask for Auth as an optional product so that /auth/get can give the accounts' IBANs.
OPTIONAL_PRODUCTS_FOR_IBAN = ("auth",)

# Plaid error_code -> category (reference §1.7 and §8). Codes not listed fall back on
# error_type (TYPE_CATEGORIES), then on the HTTP status.
ERROR_CATEGORIES = {
    "ITEM_LOGIN_REQUIRED": ErrorCategory.AUTH_EXPIRED,
    # §8 lists it under auth_expired, §1.7 under user_action_required: the access is gone for
    # good, a new Link is needed, so it is treated like an expired consent.
    "USER_PERMISSION_REVOKED": ErrorCategory.AUTH_EXPIRED,
    "ACCESS_NOT_GRANTED": ErrorCategory.USER_ACTION_REQUIRED,
    "NO_ACCOUNTS": ErrorCategory.USER_ACTION_REQUIRED,
    "USER_SETUP_REQUIRED": ErrorCategory.USER_ACTION_REQUIRED,
    "PRODUCT_NOT_READY": ErrorCategory.NOT_READY,
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": ErrorCategory.PROVIDER_ERROR,
    "INSTITUTION_DOWN": ErrorCategory.INSTITUTION_DOWN,
    "INSTITUTION_NOT_RESPONDING": ErrorCategory.INSTITUTION_DOWN,
    "INSTITUTION_NOT_AVAILABLE": ErrorCategory.INSTITUTION_DOWN,
    "INSTITUTION_NOT_FOUND": ErrorCategory.BAD_REQUEST,
    "INSTITUTION_NOT_ENABLED_IN_ENVIRONMENT": ErrorCategory.BAD_REQUEST,
    "NOT_ENABLED_IN_ENVIRONMENT": ErrorCategory.BAD_REQUEST,
    "RATE_LIMIT_EXCEEDED": ErrorCategory.RATE_LIMITED,
    "INVALID_ACCESS_TOKEN": ErrorCategory.AUTH_INVALID,
    "INVALID_API_KEYS": ErrorCategory.AUTH_INVALID,
    "INVALID_PUBLIC_TOKEN": ErrorCategory.AUTH_INVALID,
    "MISSING_FIELDS": ErrorCategory.BAD_REQUEST,
    "INVALID_FIELD": ErrorCategory.BAD_REQUEST,
    "UNKNOWN_FIELDS": ErrorCategory.BAD_REQUEST,
    "INVALID_BODY": ErrorCategory.BAD_REQUEST,
    "INVALID_HEADERS": ErrorCategory.BAD_REQUEST,
    "INTERNAL_SERVER_ERROR": ErrorCategory.PROVIDER_ERROR,
    "PLANNED_MAINTENANCE": ErrorCategory.PROVIDER_ERROR,
    "ITEM_NOT_FOUND": ErrorCategory.NOT_FOUND,
}
TYPE_CATEGORIES = {
    "ITEM_ERROR": ErrorCategory.USER_ACTION_REQUIRED,
    "INSTITUTION_ERROR": ErrorCategory.INSTITUTION_DOWN,
    "RATE_LIMIT_EXCEEDED": ErrorCategory.RATE_LIMITED,
    "INVALID_REQUEST": ErrorCategory.BAD_REQUEST,
    "INVALID_INPUT": ErrorCategory.BAD_REQUEST,
    "INVALID_RESULT": ErrorCategory.BAD_REQUEST,
    "API_ERROR": ErrorCategory.PROVIDER_ERROR,
    "TRANSACTIONS_ERROR": ErrorCategory.PROVIDER_ERROR,
}
MUTATION_CODE = "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
# Codes meaning the Item is already gone (removing it again is a no-op).
ITEM_GONE_CODES = frozenset({"INVALID_ACCESS_TOKEN", "ITEM_NOT_FOUND"})

ACCOUNT_KINDS = {"checking": "checking", "savings": "savings", "money market": "savings",
                 "cd": "savings", "cash management": "checking", "credit card": "card",
                 "paypal": "other", "prepaid": "card"}
TYPE_KINDS = {"credit": "card", "loan": "loan", "depository": "checking"}
# Counterparty types that name the other party of a payment (not the bank or a terminal).
PARTY_TYPES = ("merchant", "income_source", "marketplace", "payment_app")

_TOKEN_PATTERN = re.compile(r"\b(?:access|public|link)-(?:sandbox|development|production)-"
                            r"[A-Za-z0-9\-]+")
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) ?s(?:ec(?:ond)?s?)?\b", re.IGNORECASE)


# --------------------------------------------------------------------------- pure mapping
def utcnow():
    return datetime.now(timezone.utc)


def scrub(text, *secrets):
    """``text`` without Plaid tokens nor any of ``secrets``."""
    text = _TOKEN_PATTERN.sub("[redacted]", text or "")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def parse_date(value):
    """``YYYY-MM-DD`` -> ``date``, as the bank wrote it (never through a time zone)."""
    return date.fromisoformat(value) if value else None


def parse_datetime(value):
    """ISO 8601 (``Z`` accepted) -> aware UTC datetime; naive values are taken as UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_amount(value):
    """A JSON number (Plaid sends numbers) or decimal string -> Decimal, exactly as written."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"amount must be a number, got {type(value).__name__}")
    amount = Decimal(str(value))  # str(float) is the shortest repr: "12.3" stays 12.3
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    return amount


def statement_amount(plaid_amount):
    """Plaid's positive = money out -> bank-statement sign (+ money in)."""
    return Decimal("0") - parse_amount(plaid_amount)


def plaid_language(language):
    """``fr_BE`` / ``fr-be`` / ``FR`` -> ``fr``; anything Link does not speak -> ``en``."""
    code = (language or "en").replace("-", "_").split("_")[0].lower()
    return code if code in LINK_LANGUAGES else "en"


def with_query(url, **params):
    """``url`` with ``params`` added to (or replacing those of) its query string."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend((k, v) for k, v in params.items() if v is not None)
    return urlunsplit(parts._replace(query=urlencode(query)))


def map_institution(raw):
    logo = raw.get("logo")
    return Institution(
        provider=PROVIDER,
        external_id=raw["institution_id"],
        name=raw["name"],
        countries=list(raw.get("country_codes") or []),
        logo_url=f"data:image/png;base64,{logo}" if logo else None,
        raw={key: value for key, value in raw.items() if key != "logo"},
    )


def map_item_consent(item_id, access_token, item=None, institution_id=None, now=None):
    """An active ``Consent`` for the Item (``item``: the ``/item/get`` ``item`` object)."""
    item = item or {}
    status = ConsentStatus.ERROR if item.get("error") else ConsentStatus.ACTIVE
    return Consent(
        provider=PROVIDER,
        external_id=item_id,
        institution_id=item.get("institution_id") or institution_id,
        status=status,
        created_at=parse_datetime(item.get("created_at")) or now or utcnow(),
        valid_until=parse_datetime(item.get("consent_expiration_time")),
        secrets={"access_token": access_token},
        raw={key: item.get(key) for key in ("item_id", "institution_id", "institution_name",
                                            "consent_expiration_time", "products", "error",
                                            "update_type") if key in item},
    )


def account_kind(raw):
    subtype = (raw.get("subtype") or "").lower()
    if subtype in ACCOUNT_KINDS:
        return ACCOUNT_KINDS[subtype]
    return TYPE_KINDS.get(raw.get("type"), "other")


def map_account(raw, consent_external_id, numbers=None):
    """``numbers``: the account's ``/auth/get`` international numbers (``iban``, ``bic``)."""
    numbers = numbers or {}
    balances = raw.get("balances") or {}
    iban = (numbers.get("iban") or "").replace(" ", "") or None
    mask = raw.get("mask")
    return Account(
        provider=PROVIDER,
        external_id=raw["account_id"],
        # IBAN, else Plaid's cross-Item id, else the account id (update mode keeps it).
        stable_key=iban or raw.get("persistent_account_id") or raw["account_id"],
        consent_external_id=consent_external_id,
        iban=iban,
        account_number_masked=f"****{mask}" if mask else None,
        name=raw.get("name") or raw.get("official_name"),
        holder_name=None,
        currency=balances.get("iso_currency_code") or balances.get("unofficial_currency_code"),
        kind=account_kind(raw),
        raw=dict(raw, **({"bic": numbers["bic"]} if numbers.get("bic") else {})),
    )


def map_balances(raw, fetched_at=None):
    """Balances of one ``AccountBase``: ``current`` -> "booked", ``available`` -> "available".

    Credit and loan accounts report what is owed as a positive ``current``: the booked balance
    is its opposite; their ``available`` is a credit line, not a balance, and is left out.
    """
    fetched_at = fetched_at or utcnow()
    balances = raw.get("balances") or {}
    currency = balances.get("iso_currency_code") or balances.get("unofficial_currency_code")
    updated = parse_datetime(balances.get("last_updated_datetime"))
    reference_date = updated.date() if updated else None
    owed = raw.get("type") in ("credit", "loan")
    result = []
    if balances.get("current") is not None:
        current = parse_amount(balances["current"])
        result.append(Balance(account_external_id=raw["account_id"], kind="booked",
                              amount=Decimal("0") - current if owed else current,
                              currency=currency, reference_date=reference_date,
                              fetched_at=fetched_at, raw=dict(balances)))
    if balances.get("available") is not None and not owed:
        result.append(Balance(account_external_id=raw["account_id"], kind="available",
                              amount=parse_amount(balances["available"]), currency=currency,
                              reference_date=reference_date, fetched_at=fetched_at,
                              raw=dict(balances)))
    return result


def _counterparty(raw):
    parties = [p for p in raw.get("counterparties") or [] if isinstance(p, dict)]
    preferred = next((p for p in parties if p.get("type") in PARTY_TYPES), None)
    party = preferred or (parties[0] if parties else {})
    international = {}
    for candidate in [party] + parties:
        numbers = ((candidate.get("account_numbers") or {}).get("international") or {})
        if numbers.get("iban"):
            international = numbers
            break
    return party, international


def map_transaction(raw, account_external_id):
    pending = bool(raw.get("pending"))
    amount = statement_amount(raw["amount"])
    currency = raw.get("iso_currency_code") or raw.get("unofficial_currency_code")
    if not currency:
        raise ValueError("a transaction without currency")
    day = parse_date(raw["date"])
    meta = raw.get("payment_meta") or {}
    party, international = _counterparty(raw)
    other_side = meta.get("payee") if amount < 0 else meta.get("payer")
    counterparty_name = other_side or party.get("name") or raw.get("merchant_name")
    description = raw.get("original_description") or raw.get("name") or \
        raw.get("merchant_name") or counterparty_name or ""
    reason = meta.get("reason")
    if reason and reason.casefold() not in description.casefold():
        description = f"{description} - {reason}" if description else reason
    category = raw.get("personal_finance_category") or {}
    legacy = raw.get("category") or []
    pending_id = None if pending else raw.get("pending_transaction_id")
    alt_ids = {"transaction_id": raw["transaction_id"]}
    if pending_id:
        alt_ids["pending_transaction_id"] = pending_id
    iban = (international.get("iban") or "").replace(" ", "") or None
    return Transaction(
        provider=PROVIDER,
        account_external_id=account_external_id,
        external_id=raw["transaction_id"],
        id_is_synthetic=False,
        alt_ids=alt_ids,
        status=TxnStatus.PENDING if pending else TxnStatus.BOOKED,
        amount=amount,
        currency=currency,
        booking_date=None if pending else day,     # posted: the posting date
        value_date=None,                           # Plaid has no value date
        transaction_date=parse_date(raw.get("authorized_date")) or day,
        description=description,
        structured_reference=meta.get("reference_number") or None,
        counterparty_name=counterparty_name,
        counterparty_iban=iban,
        counterparty_bic=international.get("bic") or None,
        bank_transaction_code=raw.get("transaction_code"),
        merchant_name=raw.get("merchant_name"),
        category=category.get("detailed") or category.get("primary") or (
            " > ".join(legacy) if legacy else None),
        # Plaid reports no foreign-currency amount: original_amount/currency stay None.
        replaces_external_id=pending_id,
        raw=dict(raw),
    )


class _SyncAccumulator:
    """Nets the pages of one /transactions/sync loop (an id added then removed is dropped)."""

    def __init__(self):
        self.added = {}
        self.modified = {}
        self.removed = {}

    def add(self, txn):
        self.removed.pop(txn.external_id, None)
        self.added[txn.external_id] = txn

    def modify(self, txn):
        if txn.external_id in self.added:
            self.added[txn.external_id] = txn
        else:
            self.modified[txn.external_id] = txn

    def remove(self, transaction_id):
        self.added.pop(transaction_id, None)
        self.modified.pop(transaction_id, None)
        self.removed[transaction_id] = True

    def page(self, next_cursor):
        return SyncPage(added=list(self.added.values()), modified=list(self.modified.values()),
                        removed_external_ids=list(self.removed), next_cursor=next_cursor or None)


# --------------------------------------------------------------------------- adapter
@register
class PlaidAdapter(ProviderAdapter):
    """Plaid through Hosted Link and ``/transactions/sync``.

    Config keys:

    * ``client_id``, ``secret``: the Plaid API keys (the secret is per environment);
    * ``environment``: ``"sandbox"`` or ``"production"`` (default), picks the base URL;
    * ``base_url``: overrides it (the tests point it at ``simulators.plaid``);
    * ``client_name``: the name Link shows (≤ 30 characters, default "Odoo");
    * ``country_codes``: list (or comma-separated string) of the countries Link offers and
      ``list_institutions`` searches by default (default: BE DE ES FR GB IE IT NL);
    * ``client_user_id``: the end-user id given to Link (no personal data; default derived);
    * ``days_requested``: transaction history asked at the first link (1-730, default 90);
    * ``webhook``: optional webhook URL given to Link;
    * ``fetch_iban``: also call ``/auth/get`` for the accounts' IBANs (default true);
    * ``realtime_balance``: true: ``/accounts/balance/get`` (slow, 5/min), false: cached
      ``/accounts/get``; unset: real-time only while the user is present;
    * ``page_size``: ``/transactions/sync`` ``count`` (1-500, default 500).

    Plaid has no "user present" header; ``user_present`` only selects real-time balances.
    """

    code = PROVIDER
    label = "Plaid"
    default_base_url = BASE_URLS[DEFAULT_ENVIRONMENT]
    max_history_days = MAX_DAYS_REQUESTED
    uses_pkce = False

    def __init__(self, config, **options):
        super().__init__(config, **options)
        environment = self.config.get("environment") or DEFAULT_ENVIRONMENT
        if environment not in BASE_URLS:
            raise ValueError(f"unknown Plaid environment {environment!r}")
        self.environment = environment
        if not self.config.get("base_url"):
            self.base_url = BASE_URLS[environment]
        self.client_id = self.config.get("client_id") or ""
        self.secret = self.config.get("secret") or ""
        self.client_name = (self.config.get("client_name") or DEFAULT_CLIENT_NAME)[:CLIENT_NAME_MAX]
        countries = self.config.get("country_codes") or DEFAULT_COUNTRY_CODES
        if isinstance(countries, str):
            countries = [c.strip() for c in countries.split(",")]
        self.country_codes = [c.upper() for c in countries
                              if c and c.upper() in SUPPORTED_COUNTRIES]
        self.client_user_id = self.config.get("client_user_id") or "odoo-" + (
            self.client_id[-12:] if self.client_id else "user")
        self.days_requested = max(1, min(int(self.config.get("days_requested")
                                             or DEFAULT_DAYS_REQUESTED), MAX_DAYS_REQUESTED))
        self.webhook = self.config.get("webhook") or None
        self.fetch_iban = self.config.get("fetch_iban", True) not in (False, "0", "false", 0)
        self.realtime_balance = self.config.get("realtime_balance")
        self.page_size = max(1, min(int(self.config.get("page_size") or SYNC_PAGE_SIZE),
                                    SYNC_PAGE_SIZE))

    # ------------------------------------------------------------------ hooks
    def _auth_headers(self, method, url, json_body):
        return {"PLAID-CLIENT-ID": self.client_id, "PLAID-SECRET": self.secret,
                "Plaid-Version": API_VERSION}

    def _map_error(self, status, body, response):
        code = body.get("error_code") if isinstance(body.get("error_code"), str) else None
        error_type = body.get("error_type") if isinstance(body.get("error_type"), str) else None
        text = scrub(str(body.get("error_message") or ""), self.secret)[:300]
        reason = body.get("error_code_reason")
        request_id = body.get("request_id")
        message = (f"HTTP {status} {error_type or 'error'}/{code or '?'}"
                   + (f" ({reason})" if reason else "") + (f": {text}" if text else "")
                   + (f" [{request_id}]" if request_id else ""))
        category = ERROR_CATEGORIES.get(code) or TYPE_CATEGORIES.get(error_type)
        if category is None and code and code.endswith("_LIMIT"):
            category = ErrorCategory.RATE_LIMITED
        if category is None:
            category = self._generic_error(status).category
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            match = _TRY_AGAIN.search(text)
            if match:
                retry_after = float(match.group(1))
        if retry_after is None and category == ErrorCategory.RATE_LIMITED:
            retry_after = RATE_LIMIT_FALLBACK_SECONDS
        raw = dict(body)
        if "error_message" in raw:
            raw["error_message"] = text
        display = body.get("display_message")
        return ProviderError(
            self.code, category, message, http_status=status, code=code,
            user_message=display if isinstance(display, str) else None,
            # the mutation error is never retried alone: the whole loop restarts
            retryable=False if code == MUTATION_CODE else None,
            retry_after=retry_after, raw=raw)

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _mapping(self, what):
        """Turn an answer that does not have the documented shape into a PROVIDER_ERROR."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"unexpected {what} answer: {type(exc).__name__}",
                                retryable=False) from None

    def _post(self, path, body, **kwargs):
        return self._request("POST", path, json=body, **kwargs)

    def _item_post(self, consent, path, body=None, **kwargs):
        token = (consent.secrets or {}).get("access_token")
        if not token:
            raise ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                "the consent has no Plaid access token", code="NO_ACCESS_TOKEN")
        return self._post(path, {"access_token": token, **(body or {})}, **kwargs)

    def _countries(self, country=None):
        if country:
            code = country.upper()
            return [code] if code in SUPPORTED_COUNTRIES else []
        return list(self.country_codes)

    def _use_realtime_balance(self):
        if self.realtime_balance is None or self.realtime_balance == "":
            return bool(self.user_present)
        return self.realtime_balance not in (False, "0", "false", 0)

    # ------------------------------------------------------------------ operations
    def list_institutions(self, country=None, query=None):
        """Institutions offering Transactions in ``country`` (default: the configured
        countries); ``query`` uses ``/institutions/search``, else ``/institutions/get`` is read
        page by page (offset paging)."""
        countries = self._countries(country)
        if not countries:
            return []
        if query:
            payload = self._post("/institutions/search", {
                "query": query, "country_codes": countries, "products": ["transactions"],
                "options": {"include_optional_metadata": True}})
            with self._mapping("institutions"):
                return [map_institution(raw) for raw in payload["institutions"]]
        result, offset = [], 0
        for _page in range(MAX_INSTITUTION_PAGES):
            payload = self._post("/institutions/get", {
                "count": INSTITUTIONS_PAGE_SIZE, "offset": offset, "country_codes": countries,
                "options": {"products": ["transactions"]}})
            with self._mapping("institutions"):
                batch = payload["institutions"]
                total = int(payload["total"])
                result.extend(map_institution(raw) for raw in batch)
            offset += len(batch)
            if not batch or offset >= total:
                return result
        raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                            f"more than {MAX_INSTITUTION_PAGES} pages of institutions",
                            retryable=False)

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """A Hosted Link session. ``valid_days`` is not Plaid's to choose (EU/UK consents last
        what the institution allows) and is ignored; ``code_challenge`` too (no PKCE)."""
        body = {
            "client_name": self.client_name,
            "language": plaid_language(language),
            "country_codes": self.country_codes or ["US"],
            "user": {"client_user_id": self.client_user_id},
            "hosted_link": {"completion_redirect_uri": with_query(redirect_uri, state=state)},
        }
        pending = {"institution_id": institution_id}
        if consent is not None:  # update mode: the same Item, repaired and renewed
            token = (consent.secrets or {}).get("access_token")
            if not token:
                raise ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                    "the consent to renew has no Plaid access token",
                                    code="NO_ACCESS_TOKEN")
            body["access_token"] = token
            pending.update(renews=consent.external_id, access_token=token,
                           institution_id=institution_id or consent.institution_id)
        else:
            body["products"] = ["transactions"]
            if self.fetch_iban:
                body["optional_products"] = list(OPTIONAL_PRODUCTS_FOR_IBAN)
            body["transactions"] = {"days_requested": self.days_requested}
            if SEND_INSTITUTION_ID and institution_id:
                body["institution_id"] = institution_id
        if self.webhook:
            body["webhook"] = self.webhook
        payload = self._post("/link/token/create", body)
        with self._mapping("link token"):
            link_token = payload["link_token"]
            url = payload.get("hosted_link_url")
            expiration = payload.get("expiration")
        if not url:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                "Plaid returned no hosted_link_url (is Hosted Link enabled "
                                "for this client?)", code="NO_HOSTED_LINK", retryable=False)
        pending.update(link_token=link_token, link_expiration=expiration)
        return ConsentStart(redirect_url=url, state=state, code_verifier=None,
                            pending_data=pending)

    def _link_outcome(self, link_token):
        """The public token of the finished Link session, or a ProviderError for its exit."""
        for attempt in range(LINK_RESULT_POLLS):
            payload = self._post("/link/token/get", {"link_token": link_token})
            with self._mapping("link token"):
                sessions = [s for s in payload.get("link_sessions") or [] if isinstance(s, dict)]
                for session in reversed(sessions):
                    results = (session.get("results") or {}).get("item_add_results") or []
                    if results and results[-1].get("public_token"):
                        return results[-1]["public_token"], results[-1]
                    success = session.get("on_success") or {}
                    if success.get("public_token"):
                        return success["public_token"], success.get("metadata") or {}
                    exit_ = session.get("exit") or session.get("on_exit")
                    if exit_:
                        raise self._exit_error(exit_)
            if attempt + 1 < LINK_RESULT_POLLS:
                self.sleep(LINK_POLL_WAIT)
        raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                            "the Plaid Link session has not finished", code="LINK_NOT_COMPLETED",
                            user_message="The bank connection was not completed.")

    def _exit_error(self, exit_):
        error = exit_.get("error") or {}
        metadata = exit_.get("metadata") or {}
        status = metadata.get("status") or "exited"
        code = error.get("error_code") or "LINK_EXIT"
        institution = (metadata.get("institution") or {}).get("name")
        return ProviderError(
            self.code, ErrorCategory.USER_ACTION_REQUIRED,
            f"the user left Plaid Link at {status}"
            + (f" ({scrub(str(error.get('error_message') or ''), self.secret)[:200]})"
               if error else ""),
            code=code,
            user_message=error.get("display_message") or "The bank connection was cancelled.",
            raw={"status": status, "error_code": error.get("error_code"),
                 "error_type": error.get("error_type"), "institution": institution,
                 "link_session_id": metadata.get("link_session_id")})

    def _item_info(self, access_token):
        """``/item/get``'s ``item`` (None if it fails: the consent is still usable)."""
        try:
            payload = self._post("/item/get", {"access_token": access_token})
            return payload["item"] if isinstance(payload.get("item"), dict) else None
        except ProviderError as error:
            _logger.warning("plaid: /item/get failed after linking (%s); consent expiry unknown",
                            error.category.value)
            return None

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        pending = dict(pending_data or {})
        link_token = pending.get("link_token")
        if not link_token:
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "no Plaid link_token was kept for this consent")
        public_token, _result = self._link_outcome(link_token)
        if pending.get("renews") and pending.get("access_token"):
            # Update mode: same Item, same access token; the public token is not exchanged.
            item_id, access_token = pending["renews"], pending["access_token"]
        else:
            # A public token is single-use: a retried exchange would only be refused.
            payload = self._post("/item/public_token/exchange", {"public_token": public_token},
                                 retry=False)
            with self._mapping("token exchange"):
                item_id, access_token = payload["item_id"], payload["access_token"]
        item = self._item_info(access_token)
        with self._mapping("item"):
            return map_item_consent(item_id, access_token, item,
                                    institution_id=pending.get("institution_id"))

    def list_accounts(self, consent):
        payload = self._item_post(consent, "/accounts/get")
        numbers = self._numbers(consent) if self.fetch_iban else {}
        with self._mapping("accounts"):
            self._note_item(consent, payload.get("item"))
            return [map_account(raw, consent.external_id, numbers.get(raw["account_id"]))
                    for raw in payload["accounts"]]

    def _numbers(self, consent):
        """{account_id: {"iban", "bic"}} from /auth/get; {} when Auth is not available."""
        try:
            payload = self._item_post(consent, "/auth/get")
        except ProviderError as error:
            if error.category in (ErrorCategory.BAD_REQUEST, ErrorCategory.USER_ACTION_REQUIRED,
                                  ErrorCategory.NOT_FOUND, ErrorCategory.NOT_READY):
                _logger.info("plaid: no account numbers (%s)", error.code or error.category.value)
                return {}
            raise
        with self._mapping("auth"):
            international = (payload.get("numbers") or {}).get("international") or []
            return {entry["account_id"]: entry for entry in international if entry.get("iban")}

    @staticmethod
    def _note_item(consent, item):
        """Keep the consent's expiry up to date when an answer carries the Item."""
        if isinstance(item, dict) and item.get("consent_expiration_time"):
            consent.valid_until = parse_datetime(item["consent_expiration_time"])

    def get_balances(self, consent, account_external_id):
        path = "/accounts/balance/get" if self._use_realtime_balance() else "/accounts/get"
        payload = self._item_post(consent, path,
                                  {"options": {"account_ids": [account_external_id]}})
        fetched_at = utcnow()
        with self._mapping("balances"):
            for raw in payload["accounts"]:
                if raw["account_id"] == account_external_id:
                    return map_balances(raw, fetched_at)
        raise ProviderError(self.code, ErrorCategory.NOT_FOUND,
                            "Plaid returned no such account", code="ACCOUNT_NOT_FOUND")

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Every update of the account since ``cursor`` (everything the Item holds without
        one), booked and pending, following ``has_more`` to the end. ``/transactions/sync``
        has no date filter: ``date_from``/``date_to`` are not sent (the caller's window drops
        what it does not want). A page failing with TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION
        restarts the whole loop from ``cursor`` (at most ``MAX_MUTATION_RESTARTS`` times)."""
        for restart in range(MAX_MUTATION_RESTARTS + 1):
            try:
                return self._sync_loop(consent, account_external_id, cursor)
            except ProviderError as error:
                if error.code != MUTATION_CODE or restart >= MAX_MUTATION_RESTARTS:
                    raise
                _logger.info("plaid: transactions changed during pagination, restarting the "
                             "sync loop (%d/%d)", restart + 1, MAX_MUTATION_RESTARTS)
                self.sleep(self.backoff * (2 ** restart))
        raise AssertionError("unreachable")  # pragma: no cover

    def _sync_loop(self, consent, account_external_id, cursor):
        accumulator = _SyncAccumulator()
        next_cursor = cursor or None
        seen = set()
        status = None
        for _page in range(MAX_SYNC_PAGES):
            body = {"count": self.page_size,
                    "options": {"account_id": account_external_id,
                                "include_original_description": True}}
            if next_cursor:
                body["cursor"] = next_cursor
            payload = self._item_post(consent, "/transactions/sync", body)
            with self._mapping("transactions"):
                for raw in payload["added"]:
                    if raw.get("account_id") in (None, account_external_id):
                        accumulator.add(map_transaction(raw, account_external_id))
                for raw in payload["modified"]:
                    if raw.get("account_id") in (None, account_external_id):
                        accumulator.modify(map_transaction(raw, account_external_id))
                for raw in payload["removed"]:
                    if raw.get("account_id") in (None, account_external_id):
                        accumulator.remove(raw["transaction_id"])
                has_more = bool(payload["has_more"])
                next_cursor = payload.get("next_cursor") or next_cursor
                status = payload.get("transactions_update_status")
            if not has_more:
                page = accumulator.page(next_cursor)
                if status == "NOT_READY" and not (page.added or page.modified
                                                  or page.removed_external_ids):
                    raise ProviderError(self.code, ErrorCategory.NOT_READY,
                                        "Plaid has not finished the first transactions pull",
                                        code="NOT_READY")
                return page
            if next_cursor in seen:
                raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                    "Plaid returned the same sync cursor twice", retryable=False)
            seen.add(next_cursor)
        raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                            f"more than {MAX_SYNC_PAGES} pages of transactions; giving up",
                            retryable=False)

    def revoke_consent(self, consent):
        """``/item/remove``. True if removed now, False if the Item was already gone."""
        try:
            self._item_post(consent, "/item/remove")
        except ProviderError as error:
            if error.code in ITEM_GONE_CODES:
                return False
            raise
        return True
