"""Adapter of GoCardless Bank Account Data (ex-Nordigen), API v2 (reference/providers.md §6).

Flow: the application's ``secret_id``/``secret_key`` buy a JWT pair (``POST /token/new/``:
access 24 h, refresh 30 d; ``POST /token/refresh/``). A consent is an End-User Agreement
(``POST /agreements/enduser/``) plus a requisition (``POST /requisitions/``) whose ``link`` is the
bank page; the bank sends the user back to our redirect with ``?ref=<our state>`` (and
``error``/``details`` when it failed). The requisition (status ``LN``) lists the account ids;
data comes from ``/accounts/{id}/details|balances|transactions/``, each limited to 4 successful
calls a day per account (rolling 24 h). Renewal is a new agreement + requisition: the account
ids change, so accounts are re-matched on ``stable_key`` (the IBAN).

Consent secrets (``Consent.secrets``): ``access_token``, ``access_expires_at``,
``refresh_token``, ``refresh_expires_at`` (ISO 8601 UTC) — the JWT pair, refreshed (or bought
again with the application secrets) transparently and updated IN PLACE — plus
``agreement_id``, ``max_historical_days`` and ``access_valid_for_days`` of the consent's
agreement. The caller persists them after each call.

Nothing here logs a token, a secret or a request body; error messages are scrubbed.
"""
import contextlib
import hashlib
import json
import re
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlsplit

from ..errors import ErrorCategory, ProviderError
from ..types import (Account, Balance, Consent, ConsentStart, ConsentStatus, Institution,
                     RateLimitInfo, SyncPage, Transaction, TxnStatus)
from . import register
from .base import ProviderAdapter, parse_retry_after

PROVIDER = "gocardless"
PRODUCTION_URL = "https://bankaccountdata.gocardless.com/api/v2"
# ✅ there is no separate sandbox host: the sandbox is an institution of the production API.
SANDBOX_INSTITUTION = "SANDBOXFINANCE_SFIN0000"
ACCESS_SCOPE = ["balances", "details", "transactions"]
DEFAULT_EUA_DAYS = 90  # ✅ the API's defaults for max_historical_days / access_valid_for_days
REFRESH_MARGIN = timedelta(seconds=120)
MAX_LIST_PAGES = 100  # requisition listing: 100 pages of 100 is far more than any company has

# ⚠️ Which id identifies a BOOKED transaction, best first. The reference lists
# entryReference / transactionId / internalTransactionId (OCA's order); field reports
# (lessons.md: Firefly III #10863, Actual) show banks whose transactionId changes on every call,
# so transactionId comes last. An id shared by several entries of one answer is skipped (banks
# that repeat ids); with none left the id is a synthetic fingerprint.
BOOKED_ID_FIELDS = ("entryReference", "internalTransactionId", "transactionId")
# ⚠️ Pending entries often have no id at all; when they have one it is the transactionId, which
# the booked entry keeps (it then gets an entryReference): ``replaces_external_id`` links them.
PENDING_ID_FIELDS = ("transactionId",)
ALT_ID_KEYS = {"entryReference": "entry_reference", "transactionId": "transaction_id",
               "internalTransactionId": "internal_id"}

# Balance types -> our kinds (reference §8: "booked" is the closing/current booked balance).
BALANCE_KINDS = {
    "closingBooked": "booked",
    "interimBooked": "interim",
    "openingBooked": "other",
    "interimAvailable": "available",
    "closingAvailable": "available",
    "forwardAvailable": "available",
    "expected": "expected",
    "nonInvoiced": "other",
}
CASH_ACCOUNT_KINDS = {"CACC": "checking", "CASH": "checking", "TRAN": "checking",
                      "SVGS": "savings", "CARD": "card", "LOAN": "loan"}

# Requisition statuses (✅): LN linked; EX expired; RJ rejected; the others are steps of a
# consent still being given.
IN_PROGRESS_STATUSES = frozenset({"CR", "GC", "UA", "SA", "GA"})

# Error answers -> (code, category). GoCardless bodies carry no machine code, only
# ``summary``/``detail``/``status_code``: codes are the type names of GoCardless' error table
# where one exists. Rules are tried in order; ``None`` matches any text.
# ⚠️/❓ the wording matched for 401/409 is partly unconfirmed: keep it here.
ERROR_RULES = (
    (401, r"end user agreement|\bEUA\b", "EUAExpired", ErrorCategory.AUTH_EXPIRED),
    (401, r"access has expired|revoked", "AccessExpiredError", ErrorCategory.AUTH_EXPIRED),
    (401, r"account (?:is )?inactive|deactivated|no longer exists", "AccountInactiveError",
     ErrorCategory.AUTH_EXPIRED),
    (401, r"invalid token|token is invalid|credentials were not provided|token_not_valid",
     "InvalidToken", ErrorCategory.AUTH_INVALID),
    (401, None, "AuthenticationFailed", ErrorCategory.AUTH_INVALID),
    (403, None, "AccessDenied", ErrorCategory.USER_ACTION_REQUIRED),
    (404, None, "NotFound", ErrorCategory.NOT_FOUND),
    (409, r"being processed|processing", "AccountProcessing", ErrorCategory.NOT_READY),
    (409, None, "AccountSuspended", ErrorCategory.USER_ACTION_REQUIRED),
    (429, None, "RateLimitError", ErrorCategory.RATE_LIMITED),
    (500, None, "UnknownRequestError", ErrorCategory.INSTITUTION_DOWN),
    (503, None, "ServiceError", ErrorCategory.INSTITUTION_DOWN),
    (400, None, "InvalidRequest", ErrorCategory.BAD_REQUEST),
)
# Codes after which a new access token may help (then the call is repeated once).
TOKEN_CODES = frozenset({"InvalidToken"})
# Not retried inside a run although transient: each one counts towards the account's suspension
# after 10 consecutive failures (Zendesk: "try reconnecting once").
NOT_RETRIED_CODES = frozenset({"UnknownRequestError"})

_RETRY_IN = re.compile(r"try again in (\d+) seconds?", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
_LONG_HEX = re.compile(r"\b[0-9a-fA-F]{64,}\b")


# --------------------------------------------------------------------------- pure helpers
def utcnow():
    return datetime.now(timezone.utc)


def scrub(text, *secrets_):
    """``text`` without JWTs, long hex keys or any of ``secrets_``."""
    text = _LONG_HEX.sub("[redacted]", _JWT.sub("[redacted]", str(text or "")))
    for secret in secrets_:
        if secret and len(str(secret)) >= 6:
            text = text.replace(str(secret), "[redacted]")
    return text


def parse_datetime(value):
    """ISO 8601 (``Z`` accepted, any precision) -> aware UTC datetime; naive means UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def format_datetime(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def bank_date(day=None, moment=None):
    """The bank's calendar date: ``day`` (YYYY-MM-DD) or the date AS WRITTEN in ``moment``
    (its local part; never converted to UTC, which would move late-evening entries)."""
    if day:
        return date.fromisoformat(str(day)[:10])
    if moment:
        return date.fromisoformat(str(moment)[:10])
    return None


def parse_amount(value):
    """A signed decimal string (``"-15.00"``) -> Decimal. Numbers are accepted (never via
    float: ``str`` first); garbage and non-finite values are refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"amount must be a decimal string, got {type(value).__name__}")
    amount = Decimal(str(value).strip())
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    return amount


def to_int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def language_code(language):
    """``fr_BE`` / ``fr`` -> ``FR`` (ISO 639-1, as ``user_language`` wants), else None."""
    code = (language or "").split("_")[0].split("-")[0]
    return code.upper() if re.fullmatch(r"[A-Za-z]{2}", code) else None


def mask_iban(iban):
    return f"{iban[:4]} **** {iban[-4:]}" if iban and len(iban) > 8 else None


def map_institution(raw):
    return Institution(
        provider=PROVIDER,
        external_id=raw["id"],
        name=raw["name"],
        countries=list(raw.get("countries") or []),
        bic=raw.get("bic") or None,
        logo_url=raw.get("logo") or None,
        max_history_days=to_int(raw.get("transaction_total_days")),
        max_consent_days=to_int(raw.get("max_access_valid_for_days")),
        beta=raw["id"] == SANDBOX_INSTITUTION,
        raw=dict(raw),
    )


def secrets_from_token(payload, now=None, previous=None):
    """Consent secrets from a ``/token/new/`` or ``/token/refresh/`` answer (the refresh token
    and its expiry stay when the answer has none)."""
    now = now or utcnow()
    result = dict(previous or {})
    result["access_token"] = payload["access"]
    result["access_expires_at"] = format_datetime(
        now + timedelta(seconds=int(payload["access_expires"])))
    if payload.get("refresh"):
        result["refresh_token"] = payload["refresh"]
        result["refresh_expires_at"] = format_datetime(
            now + timedelta(seconds=int(payload["refresh_expires"])))
    return result


def consent_valid_until(agreement, requisition=None):
    """✅ end of access = agreement.accepted + access_valid_for_days (falls back on the
    requisition's creation when the agreement is not marked accepted)."""
    start = parse_datetime(agreement.get("accepted")) or parse_datetime(
        (requisition or {}).get("created"))
    days = to_int(agreement.get("access_valid_for_days"), DEFAULT_EUA_DAYS)
    return start + timedelta(days=days) if start else None


def map_account(account_id, consent_external_id, metadata, details=None):
    """``GET /accounts/{id}/`` (+ ``/details/``'s ``account``) -> ``Account``."""
    details = details or {}
    iban = details.get("iban") or metadata.get("iban") or None
    bban = details.get("bban") or metadata.get("bban") or None
    kind = CASH_ACCOUNT_KINDS.get(details.get("cashAccountType"), "checking" if not details.get(
        "cashAccountType") else "other")
    return Account(
        provider=PROVIDER,
        external_id=account_id,
        stable_key=iban or bban,
        consent_external_id=consent_external_id,
        iban=iban,
        account_number_masked=mask_iban(iban) or (f"****{bban[-4:]}" if bban else None),
        name=details.get("name") or details.get("product") or metadata.get("name") or None,
        holder_name=details.get("ownerName") or metadata.get("owner_name") or None,
        currency=details.get("currency") or None,
        kind=kind,
        raw={"metadata": dict(metadata), "details": dict(details)},
    )


def map_balance(raw, account_external_id, fetched_at=None):
    amount = raw["balanceAmount"]
    return Balance(
        account_external_id=account_external_id,
        kind=BALANCE_KINDS.get(raw.get("balanceType"), "other"),
        amount=parse_amount(amount["amount"]),
        currency=amount["currency"],
        reference_date=bank_date(raw.get("referenceDate"),
                                 raw.get("lastChangeDateTime")),
        fetched_at=fetched_at or utcnow(),
        raw=dict(raw),
    )


def _text(value):
    if isinstance(value, list):
        return " ".join(str(part).strip() for part in value if part and str(part).strip())
    return str(value).strip() if value else ""


def _structured(raw):
    value = raw.get("remittanceInformationStructured")
    if not value:
        array = raw.get("remittanceInformationStructuredArray") or []
        value = array[0] if array else None
    if isinstance(value, dict):  # Berlin Group 1.3.8+: {reference, referenceType, ...}
        value = value.get("reference")
    return str(value).strip() or None if value else None


def original_amount(raw, amount, currency):
    """(original amount, original currency) of a foreign-currency entry, else (None, None).

    ⚠️ ``currencyExchange`` is a list (a dict in some banks' answers). ``instructedAmount`` is
    used when given; otherwise the amount is converted back with ``exchangeRate``, read as units
    of ``targetCurrency`` per 1 ``unitCurrency`` (= ``sourceCurrency``)."""
    exchange = raw.get("currencyExchange")
    if isinstance(exchange, list):
        exchange = exchange[0] if exchange else None
    if not isinstance(exchange, dict):
        return None, None
    instructed = exchange.get("instructedAmount") or {}
    source = instructed.get("currency") or exchange.get("sourceCurrency")
    if not source or source == currency:
        return None, None
    if instructed.get("amount") is not None:
        value = abs(parse_amount(instructed["amount"]))
    else:
        try:
            rate = parse_amount(exchange.get("exchangeRate"))
        except (ValueError, InvalidOperation):
            return None, source
        if not rate:
            return None, source
        if exchange.get("unitCurrency") in (None, source):
            value = (abs(amount) / rate).quantize(Decimal("0.01"))
        else:
            value = (abs(amount) * rate).quantize(Decimal("0.01"))
    return (-value if amount < 0 else value), source


def fingerprint(raw, status):
    """Synthetic id base: sha256 of the fields a bank does not change between two answers."""
    amount = raw.get("transactionAmount") or {}
    creditor = raw.get("creditorAccount") or {}
    debtor = raw.get("debtorAccount") or {}
    parts = [status, raw.get("bookingDate") or (raw.get("bookingDateTime") or "")[:10],
             raw.get("valueDate") or (raw.get("valueDateTime") or "")[:10],
             str(amount.get("amount")), str(amount.get("currency")),
             raw.get("creditorName") or "", creditor.get("iban") or creditor.get("bban") or "",
             raw.get("debtorName") or "", debtor.get("iban") or debtor.get("bban") or "",
             _text(raw.get("remittanceInformationUnstructured"))
             or _text(raw.get("remittanceInformationUnstructuredArray")),
             _structured(raw) or "", raw.get("endToEndId") or "", raw.get("mandateId") or ""]
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()


def assign_ids(items, status):
    """``[(external_id, is_synthetic)]`` for the entries of one answer (one status).

    Takes the first field of the status' id list whose value is present and unique in the
    answer; else ``gc-sha256-<fingerprint>-<n>`` where ``n`` counts identical entries."""
    fields = BOOKED_ID_FIELDS if status == TxnStatus.BOOKED else PENDING_ID_FIELDS
    counts = {field: {} for field in fields}
    for raw in items:
        for field in fields:
            value = raw.get(field)
            if value:
                counts[field][str(value)] = counts[field].get(str(value), 0) + 1
    result, seen = [], {}
    for raw in items:
        chosen = None
        for field in fields:
            value = raw.get(field)
            if value and counts[field][str(value)] == 1:
                chosen = str(value)
                break
        if chosen is not None:
            result.append((chosen, False))
            continue
        base = fingerprint(raw, status.value)
        occurrence = seen.get(base, 0)
        seen[base] = occurrence + 1
        result.append((f"gc-sha256-{base[:40]}-{occurrence}", True))
    return result


def map_transaction(raw, account_external_id, status, external_id, synthetic=False):
    money = raw["transactionAmount"]
    amount = parse_amount(money["amount"])
    currency = money["currency"]
    side = "debtor" if amount > 0 else "creditor"  # ✅ the other party: debtor of a credit
    other = "creditor" if side == "debtor" else "debtor"
    name = raw.get(f"{side}Name") or None
    account = raw.get(f"{side}Account") or {}
    if not name and not account:
        name, account = raw.get(f"{other}Name") or None, {}
    agent = raw.get(f"{side}Agent")
    if isinstance(agent, dict):
        agent = agent.get("bicFi") or agent.get("bic")
    description = (_text(raw.get("remittanceInformationUnstructured"))
                   or _text(raw.get("remittanceInformationUnstructuredArray"))
                   or _text(raw.get("additionalInformation")) or name
                   or _text(raw.get("proprietaryBankTransactionCode")) or "")
    alt_ids = {ALT_ID_KEYS[key]: str(raw[key]) for key in ALT_ID_KEYS if raw.get(key)}
    original, original_currency = original_amount(raw, amount, currency)
    balance_after = None
    after = (raw.get("balanceAfterTransaction") or {}).get("balanceAmount") or {}
    if after.get("amount") is not None:
        balance_after = parse_amount(after["amount"])
    replaces = None
    transaction_id = raw.get("transactionId")
    if status == TxnStatus.BOOKED and transaction_id and str(transaction_id) != external_id:
        replaces = str(transaction_id)  # the id its pending entry was known under
    return Transaction(
        provider=PROVIDER,
        account_external_id=account_external_id,
        external_id=external_id,
        id_is_synthetic=synthetic,
        alt_ids=alt_ids,
        status=status,
        amount=amount,
        currency=currency,
        booking_date=bank_date(raw.get("bookingDate"), raw.get("bookingDateTime")),
        value_date=bank_date(raw.get("valueDate"), raw.get("valueDateTime")),
        transaction_date=None,
        description=description,
        structured_reference=_structured(raw),
        counterparty_name=name,
        counterparty_iban=account.get("iban") or None,
        counterparty_bic=agent or None,
        end_to_end_id=raw.get("endToEndId") or None,
        mandate_id=raw.get("mandateId") or None,
        bank_transaction_code=raw.get("bankTransactionCode")
        or raw.get("proprietaryBankTransactionCode") or None,
        merchant_name=name if raw.get("merchantCategoryCode") else None,
        mcc=raw.get("merchantCategoryCode") or None,
        original_amount=original,
        original_currency=original_currency,
        balance_after=balance_after,
        replaces_external_id=replaces,
        raw=dict(raw),
    )


def map_transactions(payload, account_external_id):
    """The ``transactions`` answer -> booked then pending ``Transaction`` list."""
    lists = payload["transactions"]
    result = []
    for status, items in ((TxnStatus.BOOKED, lists.get("booked") or []),
                          (TxnStatus.PENDING, lists.get("pending") or [])):
        for raw, (external_id, synthetic) in zip(items, assign_ids(items, status)):
            result.append(map_transaction(raw, account_external_id, status, external_id,
                                          synthetic))
    return result


def rate_limit_info(headers, now=None):
    """``X-RateLimit-Account-Success-*`` headers -> ``RateLimitInfo`` (None without them)."""
    limit = to_int(headers.get("X-RateLimit-Account-Success-Limit"))
    remaining = to_int(headers.get("X-RateLimit-Account-Success-Remaining"))
    reset = to_int(headers.get("X-RateLimit-Account-Success-Reset"))
    if limit is None and remaining is None and reset is None:
        return None
    now = now or utcnow()
    return RateLimitInfo(remaining=remaining, limit=limit,
                         reset_at=now + timedelta(seconds=reset) if reset is not None else None)


def error_text(body):
    """(summary, detail, {field: summary}) of an error body, plain or field-keyed."""
    if not isinstance(body, dict):
        return "", "", {}
    if "summary" in body or "detail" in body:
        return str(body.get("summary") or ""), str(body.get("detail") or ""), {}
    fields = {}
    for field, value in body.items():
        if isinstance(value, dict):
            fields[str(field)] = str(value.get("summary") or value.get("detail") or "")
        elif isinstance(value, list):
            fields[str(field)] = " ".join(str(part) for part in value)
        elif field != "status_code":
            fields[str(field)] = str(value)
    return "", "", fields


def classify_error(status, summary, detail):
    """(code, category) of an error answer; None for statuses the table does not know."""
    text = f"{summary} {detail}"
    for rule_status, pattern, code, category in ERROR_RULES:
        if status == rule_status and (pattern is None or re.search(pattern, text, re.I)):
            return code, category
    return None


def retry_after_of(status, detail, headers):
    """Seconds to wait: the account quota's reset header, the general one when exhausted,
    then "try again in N seconds", then ``Retry-After``."""
    for name in ("X-RateLimit-Account-Success-Reset",):
        if status == 429 and to_int(headers.get(name)) is not None and \
                to_int(headers.get("X-RateLimit-Account-Success-Remaining"), 1) == 0:
            return float(to_int(headers.get(name)))
    if status == 429 and to_int(headers.get("X-RateLimit-Remaining"), 1) == 0 and \
            to_int(headers.get("X-RateLimit-Reset")) is not None:
        return float(to_int(headers.get("X-RateLimit-Reset")))
    match = _RETRY_IN.search(detail or "")
    if match:
        return float(match.group(1))
    return parse_retry_after(headers.get("Retry-After"))


# --------------------------------------------------------------------------- adapter
@register
class GoCardlessAdapter(ProviderAdapter):
    """GoCardless Bank Account Data (ex-Nordigen).

    Config keys:

    * ``secret_id``, ``secret_key`` — the application's user secrets (required);
    * ``environment`` — ``"production"`` (default) or ``"sandbox"``: the same API (GoCardless
      has no sandbox host); in ``sandbox`` the default institution is
      ``SANDBOXFINANCE_SFIN0000``;
    * ``base_url`` — API root override, ``.../api/v2`` (the tests' simulator).

    GoCardless has no "user present" signal (no PSU headers): ``user_present`` changes nothing;
    a bank's own unattended-access cap comes back as ``RateLimitError`` (RATE_LIMITED).
    """

    code = PROVIDER
    label = "GoCardless"
    callback_state_param = "ref"  # the requisition's reference (our state) comes back as ?ref=
    default_base_url = PRODUCTION_URL
    #: ⚠️ the longest history institutions offer (``transaction_total_days``, 730 seen); each
    #: institution's own value is on ``Institution.max_history_days``, each consent's in
    #: ``secrets["max_historical_days"]``. Older windows are clipped (see fetch_transactions).
    max_history_days = 730
    uses_pkce = False

    def __init__(self, config, **options):
        super().__init__(config, **options)
        self.secret_id = self.config.get("secret_id") or ""
        self.secret_key = self.config.get("secret_key") or ""
        self.environment = self.config.get("environment") or "production"
        self._app_tokens = {}  # token pair for calls made outside a consent
        self._lock = threading.RLock()
        self._local = threading.local()  # the token store the current call uses

    # ------------------------------------------------------------------ hooks
    def _auth_headers(self, method, url, json_body):
        store = getattr(self._local, "store", None)
        token = (store or {}).get("access_token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _scrub(self, text):
        return scrub(text, self.secret_id, self.secret_key)[:400]

    def _map_error(self, status, body, response):
        summary, detail, fields = error_text(body)
        headers = response.headers if response is not None else {}
        known = classify_error(status, summary, detail)
        if fields and status == 400:
            known = ("ValidationError", ErrorCategory.BAD_REQUEST)
        text = "; ".join(f"{field}: {value}" for field, value in fields.items()) if fields else \
            " - ".join(part for part in (summary, detail) if part)
        code, category = known if known else (None, None)
        message = self._scrub(f"HTTP {status} {code or 'error'}" + (f": {text}" if text else ""))
        raw = json.loads(scrub(json.dumps(body), self.secret_id, self.secret_key)) if body else {}
        if category is None:
            error = self._generic_error(status, message=message, raw=raw)
        else:
            error = ProviderError(self.code, category, message, http_status=status, code=code,
                                  raw=raw, user_message=self._scrub(detail or summary) or None)
        if code in NOT_RETRIED_CODES:
            error.retryable = False
        error.retry_after = retry_after_of(status, detail, headers)
        return error

    # ------------------------------------------------------------------ tokens
    @contextlib.contextmanager
    def _using(self, store):
        previous = getattr(self._local, "store", None)
        self._local.store = store
        try:
            yield
        finally:
            self._local.store = previous

    @staticmethod
    def _alive(store, key, margin=REFRESH_MARGIN):
        if not store.get(key.replace("_expires_at", "_token")):
            return False
        try:
            expires_at = parse_datetime(store.get(key))
        except ValueError:
            return False
        return expires_at is not None and expires_at > utcnow() + margin

    def _new_tokens(self, store):
        if not (self.secret_id and self.secret_key):
            raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                "secret_id and secret_key are required", code="NO_CREDENTIALS")
        with self._using({}):
            payload = self._request("POST", "/token/new/", auth=False, json={
                "secret_id": self.secret_id, "secret_key": self.secret_key})
        with self._mapping("token"):
            store.update(secrets_from_token(payload, previous=store))

    def _refresh_tokens(self, store):
        try:
            with self._using({}):
                payload = self._request("POST", "/token/refresh/", auth=False,
                                        json={"refresh": store["refresh_token"]})
        except ProviderError as error:
            if error.http_status == 401:  # the refresh token died: buy a new pair
                self._new_tokens(store)
                return
            raise
        with self._mapping("token"):
            store.update(secrets_from_token(payload, previous=store))

    def _ensure_token(self, store, force=False):
        """Make ``store`` hold a live access token (refreshing or buying one); in place."""
        with self._lock:
            if not force and self._alive(store, "access_expires_at"):
                return
            if self._alive(store, "refresh_expires_at"):
                self._refresh_tokens(store)
            else:
                self._new_tokens(store)

    def _call(self, store, method, path, **kwargs):
        """One API call with ``store``'s token; a refused token is renewed once."""
        self._ensure_token(store)
        try:
            with self._using(store):
                return self._request(method, path, **kwargs)
        except ProviderError as error:
            if error.code not in TOKEN_CODES:
                raise
        store.pop("access_token", None)
        store.pop("access_expires_at", None)
        self._ensure_token(store, force=True)
        with self._using(store):
            return self._request(method, path, **kwargs)

    def _app_call(self, method, path, **kwargs):
        return self._call(self._app_tokens, method, path, **kwargs)

    def _consent_store(self, consent):
        return consent.secrets

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _mapping(self, what):
        """An answer without the documented shape becomes a PROVIDER_ERROR."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                InvalidOperation) as exc:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"unexpected {what} answer: {type(exc).__name__}",
                                retryable=False) from None

    def _data_call(self, consent, account_external_id, tail, params=None):
        """GET an account's quota-limited endpoint: (payload, response headers). The body is
        decoded here so that a bad answer is not fetched again (each success costs quota)."""
        path = f"/accounts/{quote(str(account_external_id), safe='')}/{tail}/"
        response = self._call(self._consent_store(consent), "GET", path, params=params,
                              parse=False)
        try:
            payload = response.json()
        except ValueError:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"GET {path} returned a response that is not valid JSON",
                                http_status=response.status_code) from None
        return payload, response.headers

    @staticmethod
    def _id_path(kind, external_id):
        return f"/{kind}/{quote(str(external_id), safe='')}/"

    def _requisition_error(self, requisition):
        """The error for a requisition that is not linked, or None when it is (``LN``)."""
        status = requisition.get("status")
        if status == "LN":
            return None
        if status == "EX":
            return ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                 "the requisition has expired (EX): reconnect",
                                 code="RequisitionExpired")
        if status == "RJ":
            return ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                 "the requisition was rejected (RJ)", code="RequisitionRejected",
                                 user_message="The bank refused the connection (wrong "
                                              "credentials or identity check).")
        if status in IN_PROGRESS_STATUSES:
            return ProviderError(self.code, ErrorCategory.NOT_READY,
                                 f"the requisition is not linked yet ({status})",
                                 code=f"Requisition{status}")
        return ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                             f"unknown requisition status {status!r}", code="RequisitionStatus",
                             retryable=False)

    # ------------------------------------------------------------------ operations
    def list_institutions(self, country=None, query=None):
        """Institutions of ``country`` (ISO 3166 alpha-2); ``query`` filters names here (the
        API has no name search)."""
        params = {"country": country.upper()} if country else None
        payload = self._app_call("GET", "/institutions/", params=params)
        with self._mapping("institutions"):
            institutions = [map_institution(raw) for raw in payload]
        if query:
            wanted = query.casefold()
            institutions = [i for i in institutions
                            if wanted in i.name.casefold() or wanted in i.external_id.casefold()]
        return institutions

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """Create the End-User Agreement (as much history as the institution gives, access
        for ``valid_days`` capped at its maximum, all three scopes) and the requisition whose
        ``link`` is the bank page. ``state`` is the requisition's ``reference`` and comes back
        as ``ref``. With ``consent``: the same for its institution (GoCardless cannot extend a
        consent; the new requisition has new account ids)."""
        institution_id = institution_id or (consent.institution_id if consent else None) or (
            SANDBOX_INSTITUTION if self.environment == "sandbox" else None)
        if not institution_id:
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "an institution is required")
        institution = self._app_call("GET", self._id_path("institutions", institution_id))
        with self._mapping("institution"):
            max_history = to_int(institution.get("transaction_total_days"), DEFAULT_EUA_DAYS)
            max_access = to_int(institution.get("max_access_valid_for_days"), DEFAULT_EUA_DAYS)
        access_days = max(1, min(int(valid_days), max_access)) if valid_days else max_access
        agreement = self._app_call("POST", "/agreements/enduser/", json={
            "institution_id": institution_id, "max_historical_days": max_history,
            "access_valid_for_days": access_days, "access_scope": list(ACCESS_SCOPE)})
        body = {"redirect": redirect_uri, "institution_id": institution_id, "reference": state,
                "agreement": agreement.get("id") if isinstance(agreement, dict) else None}
        if language_code(language):
            body["user_language"] = language_code(language)
        # Not repeated: a second requisition with the same reference would be refused.
        requisition = self._app_call("POST", "/requisitions/", json=body, retry=False)
        with self._mapping("requisition"):
            pending = {"requisition_id": requisition["id"], "agreement_id": agreement["id"],
                       "institution_id": institution_id, "reference": state,
                       "max_historical_days": agreement["max_historical_days"],
                       "access_valid_for_days": agreement["access_valid_for_days"]}
            link = requisition["link"]
        if consent is not None:
            pending["renews"] = consent.external_id
        return ConsentStart(redirect_url=link, state=state, code_verifier=None,
                            pending_data=pending)

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        params = dict(callback_params or {})
        pending = dict(pending_data or {})
        if params.get("error"):
            error = str(params["error"])
            details = str(params.get("details") or "The bank connection was not completed.")
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                self._scrub(f"the bank connection failed: {error}"), code=error,
                                user_message=self._scrub(details),
                                raw={"error": error, "details": details})
        if not pending.get("requisition_id"):
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "no requisition is pending for this callback")
        if pending.get("reference") and params.get("ref") != pending["reference"]:
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the callback's ref does not match the pending requisition",
                                code="REF_MISMATCH")
        # The consent gets its own copy of the application's token pair (refreshed in place).
        with self._lock:
            secrets_ = {key: value for key, value in self._app_tokens.items()}
        requisition = self._call(secrets_, "GET",
                                 self._id_path("requisitions", pending["requisition_id"]))
        with self._mapping("requisition"):
            problem = self._requisition_error(requisition)
        if problem is not None:
            raise problem
        agreement_id = requisition.get("agreement") or pending.get("agreement_id")
        agreement = self._call(secrets_, "GET", self._id_path("agreements/enduser", agreement_id))
        with self._mapping("agreement"):
            valid_until = consent_valid_until(agreement, requisition)
            secrets_.update({"agreement_id": agreement["id"],
                             "max_historical_days": int(agreement["max_historical_days"]),
                             "access_valid_for_days": int(agreement["access_valid_for_days"])})
            return Consent(
                provider=PROVIDER,
                external_id=requisition["id"],
                institution_id=requisition.get("institution_id") or pending.get("institution_id"),
                status=ConsentStatus.ACTIVE,
                created_at=parse_datetime(requisition.get("created")),
                valid_until=valid_until,
                secrets=secrets_,
                raw={"requisition": dict(requisition), "agreement": dict(agreement),
                     "renews": pending.get("renews")},
            )

    def list_accounts(self, consent):
        """The requisition's accounts: metadata (free) and details (1 of the account's 4 daily
        ``details`` calls; when refused for quota, suspension or processing, the account is
        still listed, from its metadata, with ``raw["details_error"]``)."""
        store = self._consent_store(consent)
        requisition = self._call(store, "GET", self._id_path("requisitions", consent.external_id))
        with self._mapping("requisition"):
            problem = self._requisition_error(requisition)
            account_ids = list(requisition["accounts"])
        if problem is not None:
            raise problem
        accounts = []
        for account_id in account_ids:
            metadata = self._call(store, "GET", self._id_path("accounts", account_id))
            if isinstance(metadata, dict) and metadata.get("status") == "EXPIRED":
                raise ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                    "the account's access has expired (EXPIRED): reconnect",
                                    code="AccountExpired")
            details, details_error = {}, None
            try:
                payload, _headers = self._data_call(consent, account_id, "details")
                details = payload.get("account") or {} if isinstance(payload, dict) else {}
            except ProviderError as error:
                if error.category not in (ErrorCategory.RATE_LIMITED,
                                          ErrorCategory.USER_ACTION_REQUIRED,
                                          ErrorCategory.NOT_READY,
                                          ErrorCategory.INSTITUTION_DOWN):
                    raise
                details_error = error.code or error.category.value
            with self._mapping("account"):
                account = map_account(str(account_id), consent.external_id, metadata, details)
            if details_error:
                account.raw["details_error"] = details_error
            accounts.append(account)
        return accounts

    def get_balances(self, consent, account_external_id):
        payload, _headers = self._data_call(consent, account_external_id, "balances")
        fetched_at = utcnow()
        with self._mapping("balances"):
            return [map_balance(raw, account_external_id, fetched_at)
                    for raw in payload["balances"]]

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Booked and pending transactions of [date_from, date_to] (None: the agreement's whole
        window). GoCardless has no paging: one call per window, which costs one of the
        account's 4 daily ``transactions`` calls; ``SyncPage.rate_limit`` tells what is left."""
        params = {}
        if date_from:
            params["date_from"] = date_from.isoformat()
        if date_to:
            params["date_to"] = date_to.isoformat()
        try:
            payload, headers = self._data_call(consent, account_external_id, "transactions",
                                               params=params or None)
        except ProviderError as error:
            if not self._date_from_refused(error, date_from, date_to):
                raise
            # ⚠️ a date_from beyond the agreement's history may be refused rather than clipped:
            # ask again for the agreement's whole window (a refused call costs no quota).
            del params["date_from"]
            payload, headers = self._data_call(consent, account_external_id, "transactions",
                                               params=params or None)
        with self._mapping("transactions"):
            added = map_transactions(payload, account_external_id)
        return SyncPage(added=added, next_cursor=None, rate_limit=rate_limit_info(headers))

    @staticmethod
    def _date_from_refused(error, date_from, date_to):
        """True for a field-keyed 400 on ``date_from`` that is not a reversed range."""
        return (error.code == "ValidationError" and isinstance(error.raw, dict)
                and "date_from" in error.raw and date_from is not None
                and (date_to is None or date_from <= date_to))

    def revoke_consent(self, consent):
        """Delete the requisition (and its agreement). True if deleted now, False if it was
        already gone."""
        try:
            self._call(self._consent_store(consent), "DELETE",
                       self._id_path("requisitions", consent.external_id), parse=False)
        except ProviderError as error:
            if error.category == ErrorCategory.NOT_FOUND:
                return False
            raise
        return True

    # ------------------------------------------------------------------ extras
    def list_requisitions(self, max_pages=MAX_LIST_PAGES):
        """Every requisition of the application (following ``next``, bounded): to find the
        orphans that count against the connection quota."""
        results, path, seen = [], "/requisitions/", set()
        params = {"limit": 100, "offset": 0}
        base = urlsplit(self.base_url)
        for _page in range(max_pages):
            payload = self._app_call("GET", path, params=params)
            with self._mapping("requisitions"):
                results.extend(payload["results"])
                next_url = payload.get("next")
            if not next_url:
                return results
            target = urlsplit(next_url)
            if (target.scheme, target.netloc) != (base.scheme, base.netloc) or next_url in seen:
                raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                    "unexpected next link in the requisition list",
                                    retryable=False)
            seen.add(next_url)
            path, params = next_url, None
        raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                            f"more than {max_pages} pages of requisitions; giving up",
                            retryable=False)
