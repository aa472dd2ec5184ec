"""Adapter of Enable Banking (reference/providers.md §5): PSD2 account information for European
banks ("ASPSPs") through one REST JSON API at https://api.enablebanking.com.

* Every call carries ``Authorization: Bearer <JWT>``: a JWT the adapter signs itself with RS256
  and the application's private key (header ``kid`` = application id; claims ``iss``
  ``enablebanking.com``, ``aud`` ``api.enablebanking.com``, ``iat``/``exp`` at most 24 h apart).
  There is no token endpoint; the JWT is cached until shortly before it expires.
* Consent: ``POST /auth`` -> the bank's hosted page (``url``) -> redirect back with
  ``?code=&state=`` (or ``?error=``) -> ``POST /sessions {code}`` -> a session
  (``Consent.external_id``) and its accounts. Account ``uid``s are session-scoped:
  ``Account.stable_key`` is the account's ``identification_hash`` (else its IBAN) so accounts are
  re-matched after a renewal, which is simply a new ``/auth`` for the same ASPSP (new session,
  new uids).
* Institutions are identified by ``"<name>|<country>"`` (Enable Banking has no opaque ASPSP id).
* Transactions: unsigned amount + ``credit_debit_indicator`` (CRDT/DBIT), status BOOK/PDNG,
  ``continuation_key`` paging, ``entry_reference`` as the stable id (never ``transaction_id``).

Consent secrets (``Consent.secrets``): ``session_id`` only. The session id is not a credential by
itself (every call also needs the application's signed JWT); the private key stays in the config.
"""
import base64
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from .. import errors
from ..errors import ErrorCategory, ProviderError
from ..types import (Account, Balance, Consent, ConsentStart, ConsentStatus, Institution,
                     SyncPage, Transaction, TxnStatus)
from . import register
from .base import ProviderAdapter, parse_retry_after

try:  # PyJWT signs the application JWT; without it the fallback below does the same with
    import jwt as pyjwt  # ``cryptography`` alone.
except ImportError:  # pragma: no cover - exercised by forcing the fallback in the tests
    pyjwt = None

_logger = logging.getLogger(__name__)

PROVIDER = "enablebanking"
DEFAULT_BASE_URL = "https://api.enablebanking.com"  # sandbox and production alike
JWT_ISSUER = "enablebanking.com"
JWT_AUDIENCE = "api.enablebanking.com"
JWT_DEFAULT_TTL = 3600  # seconds; Enable Banking accepts up to 86400
JWT_MAX_TTL = 86400
JWT_RENEW_MARGIN = 300  # mint a new JWT this many seconds before the cached one expires
MAX_PAGES = 200  # continuation pages of one window: more means the bank is looping
DEFAULT_CONSENT_SECONDS = 90 * 86400  # when the ASPSP's maximum_consent_validity is unknown
# Requested validity stays this far below the ASPSP's maximum, for clock skew between servers.
CONSENT_VALIDITY_MARGIN = timedelta(minutes=10)
DEFAULT_PSU_TYPE = "business"
DEFAULT_PSU_USER_AGENT = "Odoo account_online_synchronization"
PSU_IP_HEADER = "Psu-Ip-Address"
PSU_USER_AGENT_HEADER = "Psu-User-Agent"
ID_STRATEGIES = ("entry_reference", "fingerprint")

# Provider error code -> category (reference §5.4 and the cheat-sheet of §8). Unknown codes are
# categorized from the HTTP status alone.
ERROR_CATEGORIES = {
    "AUTHORIZATION_NOT_PROVIDED": ErrorCategory.AUTH_INVALID,
    "UNAUTHORIZED_ACCESS": ErrorCategory.AUTH_INVALID,  # ⚠️ code of a refused JWT
    "UNAUTHORIZED_IP": ErrorCategory.AUTH_INVALID,  # ⚠️
    "REDIRECT_URI_NOT_ALLOWED": ErrorCategory.AUTH_INVALID,  # §8 (§5.4 says bad_request/config)
    "EXPIRED_SESSION": ErrorCategory.AUTH_EXPIRED,
    "CLOSED_SESSION": ErrorCategory.AUTH_EXPIRED,
    "REVOKED_SESSION": ErrorCategory.AUTH_EXPIRED,
    "SESSION_DOES_NOT_EXIST": ErrorCategory.AUTH_EXPIRED,
    "ASPSP_PSU_ACTION_REQUIRED": ErrorCategory.USER_ACTION_REQUIRED,
    "PSU_HEADER_NOT_PROVIDED": ErrorCategory.USER_ACTION_REQUIRED,  # ⚠️ code
    "ASPSP_RATE_LIMIT_EXCEEDED": ErrorCategory.RATE_LIMITED,
    "ASPSP_ERROR": ErrorCategory.INSTITUTION_DOWN,
    "ASPSP_TIMEOUT": ErrorCategory.INSTITUTION_DOWN,
    "WRONG_TRANSACTIONS_PERIOD": ErrorCategory.BAD_REQUEST,
    "WRONG_REQUEST_PARAMETERS": ErrorCategory.BAD_REQUEST,  # ⚠️
    "WRONG_ASPSP_PROVIDED": ErrorCategory.BAD_REQUEST,  # ⚠️
    "WRONG_AUTHORIZATION_CODE": ErrorCategory.BAD_REQUEST,  # ⚠️
    "EXPIRED_AUTHORIZATION_CODE": ErrorCategory.BAD_REQUEST,  # ⚠️
    "ACCOUNT_DOES_NOT_EXIST": ErrorCategory.NOT_FOUND,  # ❓
}
# ⚠️ Codes meaning "the bank only answers while the user is present": reported with the shared
# code USER_MUST_BE_PRESENT (the core then stops unattended syncs); the provider code stays in
# the message and in ``raw``.
USER_PRESENCE_CODES = frozenset({"PSU_HEADER_NOT_PROVIDED"})
# Codes meaning the session is gone for good (revoking it again is a no-op).
SESSION_GONE_CODES = frozenset({"EXPIRED_SESSION", "CLOSED_SESSION", "REVOKED_SESSION",
                                "SESSION_DOES_NOT_EXIST"})
# ⚠️ Status of ``GET /sessions/{id}`` -> the error code a data call would get.
SESSION_STATUS_CODES = {"EXPIRED": "EXPIRED_SESSION", "CLOSED": "CLOSED_SESSION",
                        "REVOKED": "REVOKED_SESSION", "CANCELLED": "CLOSED_SESSION",
                        "INVALID": "CLOSED_SESSION"}
# Transaction statuses we import; ⚠️ INFO / OTHR lines are informational and skipped.
STATUSES = {"BOOK": TxnStatus.BOOKED, "PDNG": TxnStatus.PENDING}
ACCOUNT_KINDS = {"CACC": "checking", "CASH": "checking", "TRAN": "checking", "SVGS": "savings",
                 "CARD": "card", "LOAN": "loan", "MGLD": "loan"}
AVAILABLE_BALANCES = frozenset({"CLAV", "ITAV", "OPAV", "FWAV", "AVAL"})

_SECRET_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),  # a JWT
    re.compile(r"-----BEGIN[^-]*-----.*?(?:-----END[^-]*-----|$)", re.S),  # a PEM block
)
_SECONDS_HINT = re.compile(r"\bin\s+(\d+)\s*(?:s\b|sec|second)", re.I)


# --------------------------------------------------------------------------- pure helpers
def utcnow():
    return datetime.now(timezone.utc)


def scrub(text):
    """``text`` without anything that looks like a JWT or a PEM key."""
    text = text or ""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def format_datetime(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def parse_datetime(value):
    """RFC 3339 (``Z`` accepted) -> aware UTC datetime; naive values are taken as UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_bank_date(value):
    """A bank date as the bank wrote it: ``2024-03-01`` (a timestamp keeps its own calendar
    day; it is never converted to UTC first)."""
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


def parse_amount(value):
    """A decimal string -> Decimal; floats, empty strings and NaN/Infinity are refused."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("amount must be a decimal string")
    amount = Decimal(value.strip())
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    return amount


def signed_amount(value, indicator):
    """Bank-statement sign from Enable Banking's unsigned amount and CRDT/DBIT indicator (a bank
    that already signs its amounts is tolerated; without an indicator the amount is kept)."""
    amount = parse_amount(value)
    if indicator == "DBIT":
        return -abs(amount)
    if indicator == "CRDT":
        return abs(amount)
    return amount


def seconds_hint(*texts):
    """Seconds of a "try again in N seconds" in a message or detail, else None."""
    for text in texts:
        if text is None:
            continue
        match = _SECONDS_HINT.search(text if isinstance(text, str) else json.dumps(text))
        if match:
            return float(match.group(1))
    return None


def institution_id(name, country):
    return f"{name}|{country}"


def split_institution_id(value):
    """``"Demo Bank|BE"`` -> ``("Demo Bank", "BE")``."""
    name, sep, country = (value or "").rpartition("|")
    if not sep or not name or not country:
        raise ValueError(f"an Enable Banking institution id is 'name|country', got {value!r}")
    return name, country.upper()


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def load_private_key(pem):
    """The application's RSA private key from PEM text; ValueError if it is not one."""
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = pem.encode() if isinstance(pem, str) else bytes(pem or b"")
    try:
        key = serialization.load_pem_private_key(data, None, default_backend())
    except (ValueError, TypeError):
        raise ValueError("the private key is not an unencrypted PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key must be an RSA key")
    return key


def sign_rs256(header, claims, private_key):
    """A compact JWS signed with RS256 using ``cryptography`` only (the fallback of PyJWT)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(),
                                 hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def make_jwt(application_id, private_key, now=None, ttl=JWT_DEFAULT_TTL, use_pyjwt=True):
    """The application JWT Enable Banking wants on every call; returns ``(token, exp)``."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": issued,
              "exp": issued + min(int(ttl), JWT_MAX_TTL)}
    header = {"typ": "JWT", "alg": "RS256", "kid": application_id}
    if use_pyjwt and pyjwt is not None:
        token = pyjwt.encode(claims, private_key, algorithm="RS256", headers=header)
    else:
        token = sign_rs256(header, claims, private_key)
    return (token.decode("ascii") if isinstance(token, bytes) else token), claims["exp"]


# --------------------------------------------------------------------------- mapping
def map_institution(raw):
    seconds = raw.get("maximum_consent_validity")
    return Institution(
        provider=PROVIDER,
        external_id=institution_id(raw["name"], raw["country"]),
        name=raw["name"],
        countries=[raw["country"]],
        bic=raw.get("bic"),
        logo_url=raw.get("logo"),
        max_consent_days=int(seconds) // 86400 if isinstance(seconds, (int, float)) else None,
        beta=bool(raw.get("beta")),
        raw=dict(raw),
    )


def account_iban(raw):
    account_id = raw.get("account_id") or {}
    if account_id.get("iban"):
        return account_id["iban"]
    for identification in raw.get("all_account_ids") or []:
        if (identification or {}).get("scheme_name") == "IBAN":
            return identification.get("identification")
    return None


def account_stable_key(raw):
    """Key that survives a new session: ``identification_hash``, else the IBAN."""
    return raw.get("identification_hash") or account_iban(raw) or None


def _masked(identification):
    if not identification:
        return None
    compact = identification.replace(" ", "")
    if len(compact) <= 8:
        return "****" + compact[-4:]
    return f"{compact[:4]} **** {compact[-4:]}"


def map_account(raw, session_id):
    iban = account_iban(raw)
    other = ((raw.get("account_id") or {}).get("other") or {}).get("identification")
    return Account(
        provider=PROVIDER,
        external_id=raw["uid"],
        stable_key=account_stable_key(raw),
        consent_external_id=session_id,
        iban=iban,
        account_number_masked=_masked(iban or other),
        # ⚠️ "name" is the holder's name; "product"/"details" name the account itself.
        name=raw.get("product") or raw.get("details") or raw.get("name"),
        holder_name=raw.get("name"),
        currency=raw.get("currency"),
        kind=ACCOUNT_KINDS.get(raw.get("cash_account_type"), "other"),
        raw=dict(raw),
    )


def balance_kind(balance_type, types_present=()):
    """CLBD is the booked balance; ITBD stands in for it when the bank gives no CLBD."""
    if balance_type == "CLBD":
        return "booked"
    if balance_type == "ITBD":
        return "interim" if "CLBD" in types_present else "booked"
    if balance_type in AVAILABLE_BALANCES:
        return "available"
    if balance_type == "XPCD":
        return "expected"
    return "other"


def map_balance(raw, account_external_id, types_present=(), fetched_at=None):
    money = raw["balance_amount"]
    return Balance(
        account_external_id=account_external_id,
        kind=balance_kind(raw.get("balance_type"), types_present),
        amount=parse_amount(money["amount"]),
        currency=money["currency"],
        reference_date=parse_bank_date(raw.get("reference_date")),
        fetched_at=fetched_at or utcnow(),
        raw=dict(raw),
    )


def _counterparty(raw):
    """(name, iban, bic) of the other party: the creditor of a debit, the debtor of a credit."""
    side = "creditor" if raw.get("credit_debit_indicator") == "DBIT" else "debtor"
    party = raw.get(side) or {}
    account = raw.get(f"{side}_account") or {}
    agent = raw.get(f"{side}_agent") or {}
    iban = account.get("iban") or ((account.get("other") or {}).get("identification"))
    return party.get("name") or None, iban or None, agent.get("bic_fi") or None


def _remittance(raw):
    value = raw.get("remittance_information")
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [str(line) for line in value or [] if line]


def transaction_fingerprint(raw):
    """sha256 of the fields a transaction keeps from pending to booked (no id, no status, no
    booking date), for banks that send no usable ``entry_reference``."""
    name, iban, _bic = _counterparty(raw)
    money = raw.get("transaction_amount") or {}
    parts = [
        money.get("currency"),
        str(signed_amount(money.get("amount"), raw.get("credit_debit_indicator"))),
        raw.get("transaction_date") or raw.get("value_date") or raw.get("booking_date"),
        name, iban, _remittance(raw), raw.get("reference_number"),
    ]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def synthetic_id(fingerprint, occurrence):
    """Synthetic id of the ``occurrence``-th transaction with this fingerprint in a fetch."""
    return "eb-" + hashlib.sha256(f"{fingerprint}|{occurrence}".encode()).hexdigest()[:40]


def map_transaction(raw, account_external_id, external_id, *, id_is_synthetic=False,
                    replaces_external_id=None):
    money = raw["transaction_amount"]
    currency = money["currency"]
    amount = signed_amount(money["amount"], raw.get("credit_debit_indicator"))
    name, iban, bic = _counterparty(raw)
    lines = _remittance(raw)
    code = raw.get("bank_transaction_code") or {}
    code_text = "/".join(part for part in (code.get("code"), code.get("sub_code")) if part) \
        or code.get("description")
    original_amount = original_currency = None
    instructed = (raw.get("exchange_rate") or {}).get("instructed_amount") or {}
    if instructed.get("amount") and instructed.get("currency") and \
            instructed["currency"] != currency:
        original_currency = instructed["currency"]
        original_amount = signed_amount(instructed["amount"], raw.get("credit_debit_indicator"))
    balance_after = raw.get("balance_after_transaction")
    if isinstance(balance_after, dict):
        balance_after = balance_after.get("balance_amount", balance_after).get("amount")
    mcc = raw.get("merchant_category_code") or None
    alt_ids = {key: raw[key] for key in ("entry_reference", "transaction_id") if raw.get(key)}
    return Transaction(
        provider=PROVIDER,
        account_external_id=account_external_id,
        external_id=external_id,
        id_is_synthetic=id_is_synthetic,
        alt_ids=alt_ids,
        status=STATUSES[raw.get("status")],
        amount=amount,
        currency=currency,
        booking_date=parse_bank_date(raw.get("booking_date")),
        value_date=parse_bank_date(raw.get("value_date")),
        transaction_date=parse_bank_date(raw.get("transaction_date")),
        description=" ".join(lines) or name or code.get("description") or raw.get("note") or "",
        structured_reference=raw.get("reference_number") or None,
        counterparty_name=name,
        counterparty_iban=iban,
        counterparty_bic=bic,
        bank_transaction_code=code_text or None,
        merchant_name=name if mcc else None,
        mcc=mcc,
        original_amount=original_amount,
        original_currency=original_currency,
        balance_after=parse_amount(balance_after) if isinstance(balance_after, str) else None,
        replaces_external_id=replaces_external_id,
        raw=dict(raw),
    )


def map_transactions(raws, account_external_id, strategy="entry_reference"):
    """Normalized transactions of one fetch, each with its stable id.

    The id is the ``entry_reference`` when the bank gives one that is unique in the fetch (a
    value shared by several lines, e.g. ``NONREF``, identifies none of them); otherwise, or with
    ``strategy="fingerprint"`` (banks whose references change between retrievals), a synthetic
    ``eb-…`` id from the transaction's content and its occurrence among identical ones.
    A booked line whose id is its entry reference also says which synthetic id its pending form
    had (``replaces_external_id``): banks send pending lines without an entry reference, and the
    line posts under a new id.
    """
    raws = [raw for raw in raws if raw.get("status") in STATUSES]
    references = Counter(raw.get("entry_reference") for raw in raws if raw.get("entry_reference"))
    occurrences = Counter()
    result = []
    for raw in raws:
        fingerprint = transaction_fingerprint(raw)
        key = (raw["status"], fingerprint)
        synthetic = synthetic_id(fingerprint, occurrences[key])
        occurrences[key] += 1
        reference = raw.get("entry_reference")
        if strategy == "entry_reference" and reference and references[reference] == 1:
            external_id, is_synthetic = str(reference), False
        else:
            external_id, is_synthetic = synthetic, True
        replaces = synthetic if raw["status"] == "BOOK" and external_id != synthetic else None
        result.append(map_transaction(raw, account_external_id, external_id,
                                      id_is_synthetic=is_synthetic,
                                      replaces_external_id=replaces))
    return result


def map_consent(session, institution=None):
    """``POST /sessions`` answer -> active ``Consent``."""
    aspsp = session.get("aspsp") or {}
    institution = institution or (institution_id(aspsp["name"], aspsp["country"])
                                  if aspsp.get("name") and aspsp.get("country") else None)
    accounts = [{"uid": account.get("uid"),
                 "identification_hash": account.get("identification_hash")}
                for account in session.get("accounts") or []]
    return Consent(
        provider=PROVIDER,
        external_id=session["session_id"],
        institution_id=institution,
        status=ConsentStatus.ACTIVE,
        created_at=utcnow(),
        valid_until=parse_datetime((session.get("access") or {}).get("valid_until")),
        secrets={"session_id": session["session_id"]},
        raw={"aspsp": dict(aspsp), "psu_type": session.get("psu_type"),
             "access": dict(session.get("access") or {}), "accounts": accounts},
    )


# --------------------------------------------------------------------------- adapter
@register
class EnableBankingAdapter(ProviderAdapter):
    """Enable Banking. Config keys:

    * ``application_id`` (or ``client_id``): the application's id, the JWT's ``kid``;
    * ``private_key`` (or ``client_secret``): the application's RSA private key, PEM text
      (``private_key_path``: a PEM file instead);
    * ``base_url``: API address (default https://api.enablebanking.com; tests: the simulator);
    * ``environment``: "sandbox" / "production", informational: Enable Banking picks the
      environment from the application, the address is the same;
    * optional: ``psu_type`` ("business" by default, else what the ASPSP offers),
      ``psu_user_agent`` (sent as Psu-User-Agent with the PSU's IP when the user is present),
      ``jwt_ttl`` (seconds, ≤ 86400, default 3600), ``transaction_id_strategy``
      ("entry_reference", default, or "fingerprint" for banks whose references change).
    """

    code = PROVIDER
    label = "Enable Banking"
    default_base_url = DEFAULT_BASE_URL
    # How far back depends on the ASPSP (often 90 days, more right after the consent); an older
    # window is retried with strategy=longest, so no fixed limit is announced.
    max_history_days = None
    uses_pkce = False

    def __init__(self, config, **options):
        super().__init__(config, **options)
        config = self.config
        self.application_id = config.get("application_id") or config.get("client_id")
        self._private_key_pem = config.get("private_key") or config.get("client_secret")
        self._private_key_path = config.get("private_key_path")
        self.environment = config.get("environment") or "sandbox"
        self.psu_type = config.get("psu_type") or None
        self.psu_user_agent = config.get("psu_user_agent") or DEFAULT_PSU_USER_AGENT
        try:
            self.jwt_ttl = max(60, min(int(config.get("jwt_ttl") or JWT_DEFAULT_TTL), JWT_MAX_TTL))
        except (TypeError, ValueError):
            self.jwt_ttl = JWT_DEFAULT_TTL
        strategy = config.get("transaction_id_strategy") or "entry_reference"
        self.id_strategy = strategy if strategy in ID_STRATEGIES else "entry_reference"
        self._private_key = None
        self._jwt = None  # (token, exp)
        self._jwt_lock = threading.Lock()

    # ------------------------------------------------------------------ credentials
    def _key(self):
        if self._private_key is None:
            pem = self._private_key_pem
            if not pem and self._private_key_path:
                try:
                    with open(self._private_key_path, "rb") as handle:
                        pem = handle.read()
                except OSError as exc:
                    raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                        f"cannot read the private key file ({type(exc).__name__})",
                                        code="INVALID_PRIVATE_KEY", retryable=False) from None
            if not self.application_id or not pem:
                raise ProviderError(self.code, ErrorCategory.AUTH_INVALID,
                                    "the application id and private key are not configured",
                                    code="MISSING_CREDENTIALS", retryable=False)
            try:
                self._private_key = load_private_key(pem)
            except ValueError as exc:
                raise ProviderError(self.code, ErrorCategory.AUTH_INVALID, str(exc),
                                    code="INVALID_PRIVATE_KEY", retryable=False) from None
        return self._private_key

    def _token(self):
        """The cached application JWT, minted again shortly before it expires."""
        with self._jwt_lock:
            now = time.time()
            if self._jwt is None or self._jwt[1] - JWT_RENEW_MARGIN <= now:
                self._jwt = make_jwt(self.application_id, self._key(), now, self.jwt_ttl)
            return self._jwt[0]

    # ------------------------------------------------------------------ hooks
    def _auth_headers(self, method, url, json_body):
        return {"Authorization": f"Bearer {self._token()}"}

    def _map_error(self, status, body, response):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        text = scrub(str(body.get("message") or ""))[:300]
        detail = body.get("detail")
        message = f"HTTP {status} {code or 'error'}" + (f": {text}" if text else "")
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            retry_after = seconds_hint(text, detail)
        raw = {key: body.get(key) for key in ("code", "message", "error", "detail") if key in body}
        category = ERROR_CATEGORIES.get(code)
        if category is None:
            return self._generic_error(status, code=code, message=message, raw=raw,
                                       retry_after=retry_after)
        if code in USER_PRESENCE_CODES:
            code = errors.USER_MUST_BE_PRESENT
        return ProviderError(self.code, category, message, http_status=status, code=code,
                             retry_after=retry_after, raw=raw)

    # ------------------------------------------------------------------ helpers
    def _psu_headers(self):
        """The PSU headers that mark a call as made while the user is present."""
        if not self.user_present:
            return {}
        return {PSU_IP_HEADER: self.psu_ip or "127.0.0.1",
                PSU_USER_AGENT_HEADER: self.psu_user_agent}

    @contextlib.contextmanager
    def _mapping(self, what):
        """An answer without the documented shape becomes a PROVIDER_ERROR."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"unexpected {what} answer: {type(exc).__name__}",
                                retryable=False) from None

    @staticmethod
    def _session_id(consent):
        return (consent.secrets or {}).get("session_id") or consent.external_id

    @staticmethod
    def _account_path(account_external_id, tail):
        return f"/accounts/{quote(str(account_external_id), safe='')}/{tail}"

    def _aspsp(self, name, country):
        """The ASPSP record (``GET /aspsps?country=``), or None when it is not listed."""
        payload = self._request("GET", "/aspsps", params={"country": country})
        with self._mapping("aspsps"):
            for raw in payload["aspsps"]:
                if raw["name"] == name and raw["country"] == country:
                    return raw
        return None

    # ------------------------------------------------------------------ operations
    def get_application(self):
        """``GET /application``: the application's details (checks the credentials)."""
        return self._request("GET", "/application")

    def list_institutions(self, country=None, query=None):
        """ASPSPs of ``country`` (all countries without it); ``query`` filters on the name here,
        the API has no name search."""
        payload = self._request("GET", "/aspsps",
                                params={"country": country.upper()} if country else None)
        with self._mapping("aspsps"):
            institutions = [map_institution(raw) for raw in payload["aspsps"]]
        if query:
            needle = query.casefold()
            institutions = [i for i in institutions if needle in i.name.casefold()]
        return institutions

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """``POST /auth`` for the ASPSP ``"name|country"``; returns the hosted page's URL.

        The validity asked is ``valid_days`` (default: the longest), capped at the ASPSP's
        ``maximum_consent_validity``. With ``consent``, a new authorization for the same ASPSP:
        Enable Banking has no extension, the renewal is a new session with new account uids.
        PKCE is not used (``code_challenge`` is ignored).
        """
        institution_id = institution_id or (consent.institution_id if consent else None)
        try:
            name, country = split_institution_id(institution_id)
        except ValueError as exc:
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST, str(exc),
                                code="INVALID_INSTITUTION", retryable=False) from None
        aspsp = self._aspsp(name, country) or {}
        max_seconds = aspsp.get("maximum_consent_validity") or DEFAULT_CONSENT_SECONDS
        longest = timedelta(seconds=int(max_seconds)) - CONSENT_VALIDITY_MARGIN
        wanted = timedelta(days=int(valid_days)) if valid_days else longest
        valid_until = utcnow() + max(timedelta(hours=1), min(wanted, longest))
        psu_types = aspsp.get("psu_types") or [DEFAULT_PSU_TYPE]
        psu_type = self.psu_type or (DEFAULT_PSU_TYPE if DEFAULT_PSU_TYPE in psu_types
                                     else psu_types[0])
        body = {"access": {"valid_until": format_datetime(valid_until)},
                "aspsp": {"name": name, "country": country},
                "state": state, "redirect_url": redirect_uri, "psu_type": psu_type}
        if language:
            body["language"] = str(language)[:2].lower()
        payload = self._request("POST", "/auth", json=body, headers=self._psu_headers())
        with self._mapping("auth"):
            url = payload["url"]
            pending = {"aspsp": {"name": name, "country": country},
                       "authorization_id": payload.get("authorization_id"),
                       "valid_until": body["access"]["valid_until"], "psu_type": psu_type,
                       "state": state}
        if consent is not None:
            pending["renews"] = consent.external_id
        return ConsentStart(redirect_url=url, state=state, pending_data=pending)

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        """``POST /sessions {code}`` -> the active session as a ``Consent``."""
        params = dict(callback_params or {})
        pending = dict(pending_data or {})
        if params.get("error"):
            error = str(params["error"])
            description = params.get("error_description") or "The bank consent was not given."
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                f"the bank answered the authorization with {error}", code=error,
                                user_message=description,
                                raw={"error": error, "error_description": description})
        if not params.get("code"):
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the authorization callback carries no code", retryable=False)
        if pending.get("state") and params.get("state") != pending["state"]:
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the callback's state is not the one sent", code="STATE_MISMATCH",
                                retryable=False)
        # The code is single-use: a retried exchange could only fail.
        payload = self._request("POST", "/sessions", json={"code": params["code"]},
                                headers=self._psu_headers(), retry=False)
        aspsp = pending.get("aspsp") or {}
        institution = institution_id(aspsp["name"], aspsp["country"]) \
            if aspsp.get("name") and aspsp.get("country") else None
        with self._mapping("session"):
            return map_consent(payload, institution)

    def list_accounts(self, consent):
        """The session's accounts: ``GET /sessions/{id}`` then each account's details."""
        session_id = self._session_id(consent)
        payload = self._request("GET", f"/sessions/{quote(str(session_id), safe='')}",
                                headers=self._psu_headers())
        with self._mapping("session"):
            status = payload.get("status") or "AUTHORIZED"
            uids = [uid if isinstance(uid, str) else uid["uid"] for uid in payload["accounts"]]
            valid_until = parse_datetime((payload.get("access") or {}).get("valid_until"))
        if status != "AUTHORIZED":
            code = SESSION_STATUS_CODES.get(status, "CLOSED_SESSION")
            raise ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                f"the session is {status.lower()}", code=code,
                                raw={"status": status}, retryable=False)
        if valid_until:
            consent.valid_until = valid_until
        accounts = []
        for uid in uids:
            details = self._request("GET", self._account_path(uid, "details"),
                                    headers=self._psu_headers())
            with self._mapping("account details"):
                accounts.append(map_account(dict(details, uid=details.get("uid") or uid),
                                            consent.external_id))
        return accounts

    def get_balances(self, consent, account_external_id):
        payload = self._request("GET", self._account_path(account_external_id, "balances"),
                                headers=self._psu_headers())
        fetched_at = utcnow()
        with self._mapping("balances"):
            types = {raw.get("balance_type") for raw in payload["balances"]}
            return [map_balance(raw, account_external_id, types, fetched_at)
                    for raw in payload["balances"]]

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Booked and pending transactions of [date_from, date_to], every continuation page.

        Enable Banking pages with a continuation key inside one window, so ``cursor`` is not
        used and ``next_cursor`` stays None. When the bank refuses the window
        (``WRONG_TRANSACTIONS_PERIOD``), it is asked once more with ``strategy=longest``.
        """
        params = {}
        if date_from:
            params["date_from"] = date_from.isoformat()
        if date_to:
            params["date_to"] = date_to.isoformat()
        path = self._account_path(account_external_id, "transactions")
        try:
            raws, pages = self._all_pages(path, params)
        except ProviderError as error:
            if error.code != "WRONG_TRANSACTIONS_PERIOD":
                raise
            _logger.info("%s: the bank refused the period %s..%s, asking its longest instead",
                         self.code, params.get("date_from"), params.get("date_to"))
            raws, pages = self._all_pages(path, dict(params, strategy="longest"))
        with self._mapping("transactions"):
            added = map_transactions(raws, account_external_id, self.id_strategy)
        _logger.debug("%s: %d transactions in %d pages", self.code, len(added), pages)
        return SyncPage(added=added)

    def _all_pages(self, path, params):
        raws = []
        seen = set()
        key = None
        for page in range(1, MAX_PAGES + 1):
            page_params = dict(params, continuation_key=key) if key else params
            payload = self._request("GET", path, params=page_params, headers=self._psu_headers())
            with self._mapping("transactions"):
                items = payload["transactions"]
                if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                    raise TypeError("transactions is not a list of objects")
                raws.extend(items)
                key = payload.get("continuation_key")
            if not key:
                return raws, page
            if key in seen:
                raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                    "the bank returned the same continuation key twice",
                                    code="CONTINUATION_LOOP", retryable=False)
            seen.add(key)
        raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                            f"more than {MAX_PAGES} pages of transactions; giving up",
                            code="TOO_MANY_PAGES", retryable=False)

    def revoke_consent(self, consent):
        """``DELETE /sessions/{id}``. True if closed now, False if it was already gone."""
        path = f"/sessions/{quote(str(self._session_id(consent)), safe='')}"
        try:
            self._request("DELETE", path, parse=False, headers=self._psu_headers())
        except ProviderError as error:
            if error.code in SESSION_GONE_CODES:
                return False
            raise
        return True
