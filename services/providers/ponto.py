"""Adapter of Ponto Connect (Isabel Group / Ibanity), reference/providers.md §4.

JSON:API over mutual TLS (the application's client certificate on every call, the token endpoint
included), OAuth2 authorization code with PKCE (S256), access tokens of about 30 minutes and
rotating refresh tokens. The user picks the accounts to share in Ponto's own pages; the bank
authorization of each account lasts about 90 days and is renewed through a reauthorization
request. Ponto synchronizes the accounts with the banks by itself; when the user is present the
adapter asks for a fresh synchronization (``customerIpAddress``) and waits for it, briefly.

Consent (``Consent``): ``external_id`` is the Ponto organization id (``sub`` of ``/userinfo``),
``valid_until`` the earliest ``authorizationExpirationExpectedAt`` of the shared accounts, and
``secrets`` holds ``access_token``, ``refresh_token`` and ``access_expires_at`` (ISO 8601 UTC).
They are updated in place whenever the adapter refreshes the access token (the refresh token
rotates: the old one stops working); the caller persists them after each call.

``fetch_transactions`` returns ``next_cursor``: an opaque string holding the newest booked
transaction id seen and the pending transactions of this fetch (to recognise them when they post
under a new id). Pass it back on the next call.

When the bank authorization of an account has expired, Ponto keeps serving the data it already
has; ``get_balances`` then raises AUTH_EXPIRED (the account's latest synchronization failed with
``authorizationExpired``/``authorizationInvalid`` after its last authorization), and so does any
synchronization the adapter starts while the user is present.
"""
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import weakref
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode, urlsplit

import requests

from ..errors import ErrorCategory, ProviderError
from ..pkce import new_pkce_pair
from ..types import (Account, Balance, Consent, ConsentStart, ConsentStatus, Institution,
                     SyncPage, Transaction, TxnStatus)
from . import register
from .base import ProviderAdapter, parse_retry_after

_logger = logging.getLogger(__name__)

PROVIDER = "ponto"
DEFAULT_BASE_URL = "https://api.ibanity.com/ponto-connect"  # ✅ sandbox and live alike
AUTHORIZATION_URLS = {  # ✅ host of the /oauth2/auth page the user's browser is sent to
    "sandbox": "https://sandbox-authorization.myponto.com",
    "production": "https://authorization.myponto.com",
}
AUTHORIZE_PATH = "/oauth2/auth"
TOKEN_PATH = "/oauth2/token"
REVOKE_PATH = "/oauth2/revoke"
SCOPE = "ai name offline_access"  # account info, organization name, refresh token (no payments)
JSONAPI = "application/vnd.api+json"
PAGE_LIMIT = 100          # ✅ page[limit] maximum
MAX_PAGES = 500           # 50 000 transactions in one walk: more means the API is looping
MAX_LIST_PAGES = 50       # institutions, accounts, pending transactions
REFRESH_MARGIN = timedelta(seconds=60)
MAX_REMEMBERED_PENDING = 200

# --------------------------------------------------------------------------- facts to keep easy to fix
# ⚠️ Transactions come newest first, by execution date as far as the fixtures show. A bank may
# book late with an earlier date, so the walk goes on this far past the start of the window
# (the OCA module stops at date_since - 7 days).
ORDER_SLACK = timedelta(days=7)
# Polling a synchronization the adapter started (❓ how long Ponto usually takes).
SYNC_POLL_INTERVAL = 1.0
SYNC_MAX_POLLS = 10
NOT_READY_RETRY_AFTER = 60.0
# ❓ The code of a 401 refusing an access token is not documented: any 401 on an API call is
# answered by one refresh of the access token, except these codes (our own credentials).
CLIENT_CREDENTIAL_CODES = frozenset({"invalid_client", "clientIdInvalid", "credentialsInvalid"})
# ❓ Ponto gives no link between a pending transaction and the booked one it becomes. The adapter
# recognises it across fetches by these fields (see ``pending_fingerprint``).
FINGERPRINT_FIELDS = ("amount", "currency", "counterpartReference", "counterpartName",
                      "remittanceInformation")

# Provider error code -> category (§4.6 and §8; anything else: from the HTTP status).
ERROR_CATEGORIES = {
    "authorizationInvalid": ErrorCategory.AUTH_EXPIRED,        # ✅ ask to reauthorize
    "authorizationExpired": ErrorCategory.AUTH_EXPIRED,        # ✅
    "invalid_grant": ErrorCategory.AUTH_EXPIRED,               # ✅ refresh token refused / code used
    "authorizationCodeInvalid": ErrorCategory.AUTH_EXPIRED,    # ⚠️ the consent must be redone
    "unauthorized": ErrorCategory.AUTH_EXPIRED,                # ❓ access token refused
    "invalid_client": ErrorCategory.AUTH_INVALID,              # ✅ our client id/secret
    "clientIdInvalid": ErrorCategory.AUTH_INVALID,             # ✅
    "credentialsInvalid": ErrorCategory.AUTH_INVALID,          # ⚠️
    "TLS_HANDSHAKE_REFUSED": ErrorCategory.AUTH_INVALID,       # our certificate (or CA bundle)
    "tooManyRequests": ErrorCategory.RATE_LIMITED,             # ✅ 429
    "accountRecentlySynchronized": ErrorCategory.RATE_LIMITED,  # ✅ 400, soft
    "resourceNotFound": ErrorCategory.NOT_FOUND,               # ✅ 404
    "onboardingIncomplete": ErrorCategory.USER_ACTION_REQUIRED,  # ❓ code of "onboarding incomplete"
    "validationError": ErrorCategory.BAD_REQUEST,              # ❓ code of a 400 validation error
    "invalid_request": ErrorCategory.BAD_REQUEST,
    "unsupported_grant_type": ErrorCategory.BAD_REQUEST,
    "invalid_scope": ErrorCategory.BAD_REQUEST,
}
AUTHORIZATION_CODES = frozenset({"authorizationInvalid", "authorizationExpired"})

_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,}")
_RETRY_IN_PATTERN = re.compile(r"try again in (\d+(?:\.\d+)?) ?s(?:econds?)?", re.IGNORECASE)
_SSL_REASON_PATTERN = re.compile(r"\[SSL: ([A-Z0-9_]+)\]|(EOF occurred in violation of protocol)")
ACCOUNT_KINDS = {"checking": "checking", "savings": "savings", "card": "card"}


# --------------------------------------------------------------------------- pure mapping
def utcnow():
    return datetime.now(timezone.utc)


def scrub(text, secrets=()):
    """``text`` without anything that looks like a Ponto token, nor any of ``secrets``."""
    text = str(text or "")
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_PATTERN.sub("[redacted]", text)


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


def parse_bank_date(value):
    """The bank's calendar date of a Ponto date-time (``2025-03-14T00:00:00.000Z``).

    Ponto writes bank dates as midnight UTC; the date is the literal date part, never converted
    through a time zone (``2025-03-14T00:00:00+02:00`` is still the 14th).
    """
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


def parse_amount(value):
    """A JSON number (or decimal string) -> Decimal; booleans, NaN and garbage are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"amount must be a number, got {type(value).__name__}")
    amount = Decimal(str(value))  # str(float) is the shortest exact decimal: -527.34 stays so
    if not amount.is_finite():
        raise ValueError("amount is not a finite number")
    return amount


def _alnum_to_digits(text):
    return "".join(str(int(char, 36)) for char in text.upper())


def is_iban(value):
    """ISO 13616 shape and mod-97 check."""
    value = (value or "").replace(" ", "").upper()
    if not 15 <= len(value) <= 34 or not value.isalnum() or not value[:2].isalpha() \
            or not value[2:4].isdigit():
        return False
    return int(_alnum_to_digits(value[4:] + value[:4])) % 97 == 1


def mask_reference(reference):
    reference = (reference or "").replace(" ", "")
    if len(reference) <= 8:
        return reference or None
    return f"{reference[:4]} **** {reference[-4:]}"


def _text(value):
    """A string attribute (the spec types some of them as objects); None if empty."""
    if value is None or isinstance(value, (dict, list)):
        return None
    value = str(value).strip()
    return value or None


def map_institution(raw):
    attrs = raw.get("attributes") or {}
    country = _text(attrs.get("country"))
    return Institution(
        provider=PROVIDER,
        external_id=raw["id"],
        name=_text(attrs.get("name")) or raw["id"],
        countries=[country] if country else [],
        bic=_text(attrs.get("bic")),
        logo_url=_text(attrs.get("logoUrl")),
        beta=attrs.get("status") in ("beta", "experimental"),
        raw=dict(raw),
    )


def institution_matches(institution, country=None, query=None):
    """Client-side filter (❓ Ponto's filter syntax is not confirmed)."""
    attrs = institution.raw.get("attributes") or {}
    if attrs.get("deprecated"):
        return False
    if country and country.upper() not in institution.countries:
        return False
    if query:
        needle = query.casefold()
        haystack = " ".join(filter(None, (institution.name, institution.bic,
                                          _text(attrs.get("sharedBrandName"))))).casefold()
        if needle not in haystack:
            return False
    return True


def secrets_from_token(payload, now=None):
    """Consent secrets of a token answer (the refresh token stays if none is returned)."""
    now = now or utcnow()
    result = {
        "access_token": payload["access_token"],
        "access_expires_at": format_datetime(now + timedelta(seconds=int(payload["expires_in"]))),
    }
    if payload.get("refresh_token"):
        result["refresh_token"] = payload["refresh_token"]
    return result


def account_expiry(raw):
    return parse_datetime((raw.get("attributes") or {}).get("authorizationExpirationExpectedAt"))


def consent_valid_until(raw_accounts):
    """The earliest authorization end of the shared accounts (None if none is known)."""
    ends = [end for end in map(account_expiry, raw_accounts) if end]
    return min(ends) if ends else None


def account_institution(raw):
    relation = ((raw.get("relationships") or {}).get("financialInstitution") or {}).get("data")
    return relation.get("id") if isinstance(relation, dict) else None


def map_account(raw, consent_external_id):
    attrs = raw.get("attributes") or {}
    reference = _text(attrs.get("reference"))
    reference_type = attrs.get("referenceType")
    iban = reference.replace(" ", "").upper() if reference and (
        reference_type == "IBAN" or (reference_type is None and is_iban(reference))) else None
    if reference and reference_type == "MASKEDPAN":
        masked = reference
    else:
        masked = mask_reference(reference)
    return Account(
        provider=PROVIDER,
        external_id=raw["id"],
        # Ponto's account id is stable within the organization; the IBAN survives even a new one.
        stable_key=iban or (f"{reference_type}:{reference}" if reference else raw["id"]),
        consent_external_id=consent_external_id,
        iban=iban,
        account_number_masked=masked,
        name=_text(attrs.get("description")) or _text(attrs.get("product")),
        holder_name=_text(attrs.get("holderName")),
        currency=_text(attrs.get("currency")),
        kind=ACCOUNT_KINDS.get(attrs.get("subtype"), "other"),
        raw=dict(raw),
    )


def map_balances(raw, account_external_id, fetched_at=None):
    """``currentBalance`` -> "booked", ``availableBalance`` -> "available"."""
    attrs = raw.get("attributes") or {}
    fetched_at = fetched_at or utcnow()
    balances = []
    for kind, field in (("booked", "currentBalance"), ("available", "availableBalance")):
        if attrs.get(field) is None:
            continue
        balances.append(Balance(
            account_external_id=account_external_id,
            kind=kind,
            amount=parse_amount(attrs[field]),
            currency=attrs["currency"],
            reference_date=parse_bank_date(attrs.get(field + "ReferenceDate")),
            fetched_at=fetched_at,
            raw={key: attrs.get(key) for key in (field, field + "ReferenceDate",
                                                 field + "ChangedAt", "currency")},
        ))
    return balances


def pending_fingerprint(raw):
    """What a pending transaction and its booked successor share (❓ no link in the API)."""
    attrs = raw.get("attributes") or {}
    parts = []
    for name in FINGERPRINT_FIELDS:
        value = attrs.get(name)
        parts.append(str(parse_amount(value).normalize()) if name == "amount" and value is not None
                     else str(_text(value) or ""))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def synthetic_id(raw, account_external_id):
    """A stable id for a transaction without one (sha256 of its immutable fields)."""
    attrs = raw.get("attributes") or {}
    fields = [account_external_id, raw.get("type")] + [
        str(attrs.get(name)) for name in ("executionDate", "valueDate", "amount", "currency",
                                          "counterpartReference", "remittanceInformation",
                                          "digest", "internalReference")]
    return "sha256:" + hashlib.sha256("|".join(fields).encode()).hexdigest()


def map_transaction(raw, account_external_id, status=TxnStatus.BOOKED):
    attrs = raw["attributes"]
    status = TxnStatus(status)
    execution = parse_bank_date(attrs.get("executionDate"))
    value = parse_bank_date(attrs.get("valueDate"))
    remittance = _text(attrs.get("remittanceInformation"))
    structured = remittance if attrs.get("remittanceInformationType") == "structured" else None
    counterpart_name = _text(attrs.get("counterpartName"))
    counterpart_reference = _text(attrs.get("counterpartReference"))
    end_to_end = _text(attrs.get("endToEndId"))
    alt_ids = {key: attrs[name] for key, name in (("internal_reference", "internalReference"),
                                                  ("digest", "digest"))
               if _text(attrs.get(name))}
    external_id = _text(raw.get("id"))
    card = _text(attrs.get("cardReference"))
    return Transaction(
        provider=PROVIDER,
        account_external_id=account_external_id,
        external_id=external_id or synthetic_id(raw, account_external_id),
        id_is_synthetic=not external_id,
        alt_ids=alt_ids,
        status=status,
        amount=parse_amount(attrs["amount"]),  # ✅ signed: negative is money out
        currency=attrs["currency"],
        # executionDate ≈ booking date; a pending one is not booked yet.
        booking_date=execution if status == TxnStatus.BOOKED else None,
        value_date=value,
        transaction_date=execution if status == TxnStatus.PENDING else None,
        description=remittance or _text(attrs.get("description")) or counterpart_name or "",
        structured_reference=structured,
        counterparty_name=counterpart_name,
        counterparty_iban=counterpart_reference.replace(" ", "").upper()
        if counterpart_reference and is_iban(counterpart_reference) else None,
        end_to_end_id=end_to_end if end_to_end and end_to_end != "NOTPROVIDED" else None,
        mandate_id=_text(attrs.get("mandateId")),
        bank_transaction_code=_text(attrs.get("bankTransactionCode"))
        or _text(attrs.get("proprietaryBankTransactionCode")),
        merchant_name=counterpart_name if card else None,
        # Ponto has no original amount/currency field: a foreign card payment only mentions it
        # in free text (additionalInformation), so original_amount stays None.
        raw=dict(raw),
    )


def first_error(body):
    """(code, detail, meta) of a JSON:API ``errors`` body or an OAuth error body."""
    if not isinstance(body, dict):
        return None, "", {}
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        error = errors[0]
        code = error.get("code") if isinstance(error.get("code"), str) else None
        meta = error.get("meta") if isinstance(error.get("meta"), dict) else {}
        return code, str(error.get("detail") or ""), meta
    if isinstance(body.get("error"), str):
        return body["error"], str(body.get("error_description") or ""), {}
    return None, "", {}


def retry_after_from_text(text):
    """Seconds of a "try again in N seconds" message, else None."""
    match = _RETRY_IN_PATTERN.search(text or "")
    return float(match.group(1)) if match else None


def encode_cursor(newest_id, pending_transactions):
    """The opaque cursor: newest booked id and the pending transactions seen (id, print, date)."""
    state = {"v": 1, "n": newest_id, "p": [
        [txn.external_id, pending_fingerprint(txn.raw),
         (txn.transaction_date or txn.value_date or date.min).isoformat()]
        for txn in pending_transactions[:MAX_REMEMBERED_PENDING]]}
    return "v1." + base64.urlsafe_b64encode(
        json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor):
    """(newest booked id or None, [[pending id, fingerprint, date], ...]); a bare id is taken
    as the newest booked id; anything unreadable as no cursor."""
    if not cursor:
        return None, []
    if not cursor.startswith("v1."):
        return cursor, []
    try:
        text = cursor[3:]
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        pending = [entry for entry in state.get("p") or []
                   if isinstance(entry, list) and len(entry) == 3]
        return state.get("n"), pending
    except (ValueError, TypeError, AttributeError):
        return None, []


def link_posted_pending(booked, pending_now, remembered):
    """Set ``replaces_external_id`` on booked transactions that a remembered pending one became.

    ``remembered``: [[pending id, fingerprint, date]] of the previous fetch. A pending id still
    pending now is not posted; each pending id and each booked transaction is used once; the
    booked one must not be dated before the pending one.
    """
    still_pending = {txn.external_id for txn in pending_now}
    candidates = {}
    for pending_id, fingerprint, day in remembered:
        if pending_id not in still_pending:
            candidates.setdefault(fingerprint, []).append((pending_id, day))
    for txn in sorted(booked, key=lambda t: (t.booking_date or date.min, t.external_id)):
        options = candidates.get(pending_fingerprint(txn.raw))
        if not options:
            continue
        for index, (pending_id, day) in enumerate(options):
            if not txn.booking_date or txn.booking_date.isoformat() >= day:
                txn.replaces_external_id = pending_id
                txn.alt_ids["pending_id"] = pending_id
                del options[index]
                break


def reauthorization_redirect_uri(redirect_uri, state):
    """Where Ponto sends the browser after a reauthorization: our callback with ``state``.

    ❓ A reauthorization request carries no state of its own (only ``redirectUri``), so the state
    travels in the redirect URI's query.
    """
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return f"{redirect_uri}{separator}{urlencode({'state': state})}"


# --------------------------------------------------------------------------- transport pieces
class _MutualTLSSession:
    """Wraps a ``requests.Session``: adds the client certificate and CA bundle to every request
    (explicitly: a session-level ``verify`` loses against ``REQUESTS_CA_BUNDLE``) and turns a
    refused TLS handshake into AUTH_INVALID instead of a network error to retry."""

    def __init__(self, session, cert, verify, setup_error=None):
        self.session = session
        self.cert = cert
        self.verify = verify
        self.setup_error = setup_error

    def request(self, method, url, **kwargs):
        if self.setup_error is not None:
            raise self.setup_error
        if self.cert is not None:
            kwargs.setdefault("cert", self.cert)
        if self.verify is not None:
            kwargs.setdefault("verify", self.verify)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.SSLError as exc:
            match = _SSL_REASON_PATTERN.search(str(exc))
            reason = (match.group(1) or match.group(2)) if match else type(exc).__name__
            raise ProviderError(
                PROVIDER, ErrorCategory.AUTH_INVALID,
                f"TLS handshake with {urlsplit(url).hostname} refused ({reason}): check the "
                "client certificate, its private key and the CA bundle",
                code="TLS_HANDSHAKE_REFUSED", retryable=False) from None
        except requests.RequestException:
            raise  # the transport's business (network error, timeout)
        except OSError as exc:  # requests: "Could not find the TLS certificate file", ...
            raise ProviderError(PROVIDER, ErrorCategory.AUTH_INVALID,
                                f"the client certificate or CA files cannot be used "
                                f"({type(exc).__name__})", code="CERTIFICATE_UNREADABLE",
                                retryable=False) from None

    def close(self):
        self.session.close()


def _prepare_tls(config, directory):
    """(cert, verify) for requests from the config; PEM text is written to private files."""
    def as_file(value, name):
        if value is None or value == "":
            return None
        value = str(value)
        if "-----BEGIN" in value:
            path = os.path.join(directory(), name)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(value)
            return path
        return os.path.expanduser(value)

    certificate = as_file(config.get("certificate"), "client.pem")
    private_key = config.get("private_key")
    passphrase = config.get("private_key_passphrase")
    if private_key and passphrase:
        from cryptography.hazmat.primitives import serialization
        text = str(private_key)
        if "-----BEGIN" in text:
            raw = text.encode()
        else:
            with open(os.path.expanduser(text), "rb") as handle:
                raw = handle.read()
        try:
            key = serialization.load_pem_private_key(raw, password=str(passphrase).encode())
        except (ValueError, TypeError):
            raise ProviderError(PROVIDER, ErrorCategory.AUTH_INVALID,
                                "the private key could not be decrypted with the configured "
                                "passphrase", code="PRIVATE_KEY_INVALID",
                                retryable=False) from None
        private_key = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    key_path = as_file(private_key, "client.key")
    cert = None
    if certificate:
        cert = (certificate, key_path) if key_path else certificate
    verify = as_file(config.get("ca_bundle"), "ca.pem")
    for path in filter(None, (certificate, key_path, verify)):
        if not os.path.isfile(path):
            raise OSError(f"no such file: {os.path.basename(path)}")
    return cert, verify


# --------------------------------------------------------------------------- adapter
@register
class PontoAdapter(ProviderAdapter):
    """Ponto Connect.

    Config keys:

    * ``client_id``, ``client_secret``: the Ponto Connect application's OAuth2 credentials;
    * ``certificate``, ``private_key``: the application's client certificate and key (PEM file
      paths or PEM text, written then to a private temporary file); ``private_key_passphrase``
      if the key is encrypted (as the Ibanity portal delivers it);
    * ``ca_bundle``: CA file or PEM text to verify the server with (default: the system's);
    * ``environment``: ``sandbox`` (default) or ``production``: which Ponto authorization host
      the user is sent to (the API host is the same for both);
    * ``base_url``: API base URL (default ``https://api.ibanity.com/ponto-connect``);
    * ``authorization_url``: base URL of the authorization host (overrides ``environment``;
      the simulator's ``authorization_url``).
    """

    code = PROVIDER
    label = "Ponto"
    default_base_url = DEFAULT_BASE_URL
    max_history_days = None  # ❓ depends on the bank (PSD2: 90 days at the first authorization)
    uses_pkce = True

    def __init__(self, config, **options):
        super().__init__(config, **options)
        self.client_id = self.config.get("client_id") or ""
        self.client_secret = self.config.get("client_secret") or ""
        self.environment = self.config.get("environment") or "sandbox"
        self._local = threading.local()
        self._client_token_cache = None
        self._tmpdir = None
        setup_error = None
        try:
            cert, verify = _prepare_tls(self.config, self._private_dir)
        except (ProviderError, OSError) as error:
            cert = verify = None
            setup_error = error if isinstance(error, ProviderError) else ProviderError(
                PROVIDER, ErrorCategory.AUTH_INVALID,
                f"the client certificate files cannot be read ({type(error).__name__})",
                code="CERTIFICATE_UNREADABLE", retryable=False)
        self.session = _MutualTLSSession(self.session, cert, verify, setup_error)

    def _private_dir(self):
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="ponto-tls-")
            weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
        return self._tmpdir

    @property
    def authorization_url(self):
        explicit = self.config.get("authorization_url")
        if explicit:
            return explicit.rstrip("/")
        return AUTHORIZATION_URLS.get(self.environment, AUTHORIZATION_URLS["sandbox"])

    # ------------------------------------------------------------------ hooks
    def _auth_headers(self, method, url, json_body):
        if urlsplit(url).path.endswith((TOKEN_PATH, REVOKE_PATH)):
            pair = f"{self.client_id}:{self.client_secret}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        token = getattr(self._local, "bearer", None)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _known_secrets(self):
        consent = getattr(self._local, "consent", None)
        values = [self.client_secret, getattr(self._local, "bearer", None)]
        if consent is not None:
            values.extend(v for v in consent.secrets.values() if isinstance(v, str))
        return [value for value in values if value]

    def _map_error(self, status, body, response):
        code, detail, meta = first_error(body)
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return self._error(code, detail, meta, status, retry_after=retry_after, raw=body)

    def _error(self, code, detail, meta, status=None, *, retry_after=None, raw=None):
        """A ProviderError for a Ponto error (HTTP answer or synchronization error)."""
        text = scrub(detail, self._known_secrets())[:300]
        request_id = meta.get("requestId") if isinstance(meta, dict) else None
        prefix = f"HTTP {status} " if status else "synchronization "
        message = prefix + (code or "error") + (f": {text}" if text else "") + (
            f" [{request_id}]" if request_id else "")
        if retry_after is None:
            retry_after = retry_after_from_text(detail)
        category = ERROR_CATEGORIES.get(code)
        bank = (meta or {}).get("financialInstitutionResponse") if isinstance(meta, dict) else None
        bank_status = bank.get("statusCode") if isinstance(bank, dict) else None
        if code not in AUTHORIZATION_CODES and isinstance(bank_status, int) and bank_status >= 500:
            category = ErrorCategory.INSTITUTION_DOWN  # the bank behind Ponto failed
        if category is None:
            if status:
                return self._generic_error(status, code=code, message=message,
                                           retry_after=retry_after, raw=raw)
            category = ErrorCategory.PROVIDER_ERROR
        return ProviderError(self.code, category, message, http_status=status, code=code,
                             retry_after=retry_after, raw=raw)

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

    def _with_bearer(self, token, method, path, consent=None, **kwargs):
        previous = (getattr(self._local, "bearer", None), getattr(self._local, "consent", None))
        self._local.bearer, self._local.consent = token, consent
        try:
            return self._request(method, path, **kwargs)
        finally:
            self._local.bearer, self._local.consent = previous

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
        """New access token (and, rotating, refresh token): ``consent.secrets`` updated in place."""
        refresh_token = consent.secrets.get("refresh_token")
        if not refresh_token:
            raise ProviderError(self.code, ErrorCategory.AUTH_EXPIRED,
                                "the access token expired and there is no refresh token",
                                code="NO_REFRESH_TOKEN")
        previous = getattr(self._local, "consent", None)
        self._local.consent = consent
        try:
            payload = self._request("POST", TOKEN_PATH, data={
                "grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": self.client_id})
        finally:
            self._local.consent = previous
        with self._mapping("token"):
            consent.secrets.update(secrets_from_token(payload))
        _logger.debug("ponto: access token of organization %s refreshed", consent.external_id)

    def _call(self, consent, method, path, **kwargs):
        """One API call with ``consent``'s access token, refreshed first if it is (nearly)
        expired, and once more if the API refuses it."""
        if self._needs_refresh(consent):
            self._refresh(consent)
        try:
            return self._with_bearer(consent.secrets.get("access_token"), method, path,
                                     consent=consent, **kwargs)
        except ProviderError as error:
            if error.http_status != 401 or error.code in CLIENT_CREDENTIAL_CODES \
                    or not consent.secrets.get("refresh_token"):
                raise
        self._refresh(consent)
        return self._with_bearer(consent.secrets.get("access_token"), method, path,
                                 consent=consent, **kwargs)

    def _client_token(self):
        """An access token of the application itself (client credentials), cached."""
        cached = self._client_token_cache
        if cached and cached[1] > utcnow() + REFRESH_MARGIN:
            return cached[0]
        payload = self._request("POST", TOKEN_PATH, data={"grant_type": "client_credentials",
                                                          "client_id": self.client_id})
        with self._mapping("token"):
            token = payload["access_token"]
            expires_at = utcnow() + timedelta(seconds=int(payload["expires_in"]))
        self._client_token_cache = (token, expires_at)
        return token

    def _as_application(self, method, path, **kwargs):
        """One call with the application's own token; a refused cached token is renewed once."""
        try:
            return self._with_bearer(self._client_token(), method, path, **kwargs)
        except ProviderError as error:
            if error.http_status != 401 or error.code in CLIENT_CREDENTIAL_CODES:
                raise
        self._client_token_cache = None
        return self._with_bearer(self._client_token(), method, path, **kwargs)

    def _walk(self, fetch, path, max_pages, what, params=None):
        """Every item of a JSON:API collection, following ``page[after]`` (bounded)."""
        items, after, seen = [], None, set()
        for _page in range(max_pages):
            page_params = dict(params or {}, **{"page[limit]": PAGE_LIMIT})
            if after:
                page_params["page[after]"] = after
            payload = fetch(path, page_params)
            with self._mapping(what):
                page = payload["data"]
                items.extend(page)
                more = bool((payload.get("links") or {}).get("next")) and page
                after = page[-1]["id"] if more else None
            if not after:
                return items, payload
            if after in seen:
                raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                    f"the {what} list returned the same page twice",
                                    retryable=False)
            seen.add(after)
        raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                            f"more than {max_pages} pages of {what}; giving up", retryable=False)

    def _consent_fetch(self, consent):
        return lambda path, params: self._call(consent, "GET", path, params=params)

    def _account_resources(self, consent):
        items, _payload = self._walk(self._consent_fetch(consent), "/accounts", MAX_LIST_PAGES,
                                     "accounts")
        return items

    @staticmethod
    def _account_path(account_external_id, tail=""):
        return f"/accounts/{quote(str(account_external_id), safe='')}{tail}"

    def _synchronize(self, consent, account_external_id, subtype):
        """With the user present, ask Ponto to synchronize the account now and wait (briefly).

        Ponto synchronizes on its own schedule too, so without the user (no customer IP to send)
        the adapter reads what Ponto already has. A synchronization refused because one ran
        recently means the data is fresh: read it.
        """
        if not (self.user_present and self.psu_ip):
            return
        body = {"data": {"type": "synchronization", "attributes": {
            "resourceType": "account", "resourceId": account_external_id, "subtype": subtype,
            "customerIpAddress": self.psu_ip}}}
        try:
            payload = self._call(consent, "POST", "/synchronizations", json=body,
                                 headers={"Content-Type": JSONAPI})
        except ProviderError as error:
            if error.code == "accountRecentlySynchronized":
                _logger.info("ponto: %s of account %s synchronized recently; reading Ponto's data",
                             subtype, account_external_id)
                return
            raise
        with self._mapping("synchronization"):
            sync_id = payload["data"]["id"]
        path = f"/synchronizations/{quote(str(sync_id), safe='')}"
        for poll in range(SYNC_MAX_POLLS + 1):
            with self._mapping("synchronization"):
                attributes = payload["data"]["attributes"]
                status = attributes["status"]
                sync_errors = attributes.get("errors") or []
            if status == "success":
                return
            if status == "error":
                code, detail, meta = first_error({"errors": sync_errors})
                raise self._error(code, detail or "the synchronization failed", meta,
                                  raw={"synchronization": sync_id, "errors": sync_errors})
            if poll == SYNC_MAX_POLLS:
                break
            self.sleep(SYNC_POLL_INTERVAL)
            payload = self._call(consent, "GET", path)
        raise ProviderError(self.code, ErrorCategory.NOT_READY,
                            f"the {subtype} synchronization of account {account_external_id} is "
                            f"still {status}", code="synchronizationPending",
                            retry_after=NOT_READY_RETRY_AFTER, raw={"synchronization": sync_id})

    def _check_authorization(self, resource):
        """AUTH_EXPIRED if the account's latest synchronization failed for lack of a bank
        authorization after its last authorization (Ponto keeps serving the old data)."""
        meta = resource.get("meta") or {}
        latest = meta.get("latestSynchronization") or {}
        attributes = latest.get("attributes") or {}
        if attributes.get("status") != "error":
            return
        code, detail, error_meta = first_error({"errors": attributes.get("errors") or []})
        if code not in AUTHORIZATION_CODES:
            return
        authorized_at = parse_datetime((resource.get("attributes") or {}).get("authorizedAt"))
        failed_at = parse_datetime(attributes.get("createdAt"))
        if authorized_at and failed_at and failed_at < authorized_at:
            return  # it failed before the user reauthorized
        raise self._error(code, detail, error_meta, raw={"account": resource.get("id"),
                                                         "synchronization": latest.get("id")})

    # ------------------------------------------------------------------ operations
    def list_institutions(self, country=None, query=None):
        items, _payload = self._walk(
            lambda path, params: self._as_application("GET", path, params=params),
            "/financial-institutions", MAX_LIST_PAGES, "financial institutions")
        with self._mapping("financial institutions"):
            institutions = [map_institution(raw) for raw in items]
        return [inst for inst in institutions if institution_matches(inst, country, query)]

    def start_consent(self, institution_id, redirect_uri, state, *, code_challenge=None,
                      language=None, valid_days=None, consent=None):
        """Ponto's authorization page (``/oauth2/auth``); the user picks the accounts to share
        there. Without ``code_challenge`` a PKCE pair is made and its verifier returned. The
        bank decides how long an authorization lasts and Ponto's page its language:
        ``valid_days`` and ``language`` are not sent (❓ no documented parameter).

        With ``consent``: a reauthorization request for its account whose authorization ends
        first (Ponto's renewal flow; accounts at several banks may need one renewal per bank);
        ``pending_data`` then carries the consent's secrets, possibly refreshed here, which
        ``complete_consent`` returns.
        """
        if consent is not None:
            renewal = self._start_reauthorization(consent, institution_id, redirect_uri, state)
            if renewal is not None:
                return renewal
        verifier = None
        if code_challenge is None:
            verifier, code_challenge = new_pkce_pair()
        params = {"client_id": self.client_id, "redirect_uri": redirect_uri,
                  "response_type": "code", "scope": SCOPE, "state": state,
                  "code_challenge": code_challenge, "code_challenge_method": "S256"}
        pending = {"flow": "authorization", "institution_id": institution_id}
        if consent is not None:
            pending["renews"] = consent.external_id
        return ConsentStart(redirect_url=f"{self.authorization_url}{AUTHORIZE_PATH}?"
                                         f"{urlencode(params)}",
                            state=state, code_verifier=verifier, pending_data=pending)

    def _start_reauthorization(self, consent, institution_id, redirect_uri, state):
        accounts = self._account_resources(consent)
        if not accounts:
            return None  # nothing shared any more: a new authorization instead
        far = datetime.max.replace(tzinfo=timezone.utc)
        preferred = institution_id or consent.institution_id
        with self._mapping("accounts"):
            # The account whose authorization ends first (it bounds valid_until); on a tie, one
            # of the consent's institution. Reauthorizing renews the accounts of that bank.
            target = min(accounts, key=lambda raw: (account_expiry(raw) or far,
                                                    account_institution(raw) != preferred,
                                                    raw["id"]))
        body = {"data": {"type": "reauthorizationRequest", "attributes": {
            "redirectUri": reauthorization_redirect_uri(redirect_uri, state)}}}
        payload = self._call(consent, "POST",
                             self._account_path(target["id"], "/reauthorization-requests"),
                             json=body, headers={"Content-Type": JSONAPI})
        with self._mapping("reauthorization request"):
            link = payload["data"]["links"]["redirect"]
            request_id = payload["data"]["id"]
        expiry = account_expiry(target)
        return ConsentStart(redirect_url=link, state=state, code_verifier=None, pending_data={
            "flow": "reauthorization", "organization_id": consent.external_id,
            "institution_id": account_institution(target) or consent.institution_id,
            "account_id": target["id"], "reauthorization_request_id": request_id,
            "previous_expiry": expiry.isoformat() if expiry else None,  # full precision
            "secrets": dict(consent.secrets)})

    def complete_consent(self, callback_params, redirect_uri, *, code_verifier=None,
                         pending_data=None):
        params = dict(callback_params or {})
        pending = dict(pending_data or {})
        if params.get("error"):
            error = str(params["error"])
            description = str(params.get("error_description") or "The Ponto authorization was "
                                                                  "not given.")
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                f"Ponto answered the authorization with {error}", code=error,
                                user_message=description,
                                raw={"error": error, "error_description": description})
        if pending.get("flow") == "reauthorization":
            return self._complete_reauthorization(pending)
        if not params.get("code"):
            raise ProviderError(self.code, ErrorCategory.BAD_REQUEST,
                                "the authorization callback carries no code")
        form = {"grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": redirect_uri, "client_id": self.client_id}
        if code_verifier:
            form["code_verifier"] = code_verifier
        # The code is single-use: a retried exchange could only get invalid_grant.
        payload = self._request("POST", TOKEN_PATH, data=form, retry=False)
        now = utcnow()
        with self._mapping("token"):
            consent = Consent(provider=self.code, external_id="", institution_id=None,
                              status=ConsentStatus.ACTIVE, created_at=now, valid_until=None,
                              secrets=secrets_from_token(payload, now))
            scope = payload.get("scope")
        userinfo = self._call(consent, "GET", "/userinfo")
        accounts = self._account_resources(consent)
        with self._mapping("userinfo"):
            consent.external_id = userinfo["sub"]
            consent.valid_until = consent_valid_until(accounts)
            consent.institution_id = pending.get("institution_id") or next(
                filter(None, map(account_institution, accounts)), None)
            consent.raw = {"organization_name": userinfo.get("name"),
                           "onboarding_complete": userinfo.get("onboardingComplete"),
                           "scope": scope, "account_ids": [raw["id"] for raw in accounts]}
        return consent

    def _complete_reauthorization(self, pending):
        consent = Consent(provider=self.code, external_id=pending.get("organization_id") or "",
                          institution_id=pending.get("institution_id"),
                          status=ConsentStatus.ACTIVE, created_at=utcnow(), valid_until=None,
                          secrets=dict(pending.get("secrets") or {}))
        accounts = self._account_resources(consent)
        with self._mapping("accounts"):
            renewed = next((raw for raw in accounts if raw["id"] == pending.get("account_id")),
                           None)
        if renewed is None:
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                "the reauthorized account is no longer shared with this "
                                "application", code="ACCOUNT_NOT_SHARED",
                                user_message="The account is no longer shared in Ponto.")
        previous = parse_datetime(pending.get("previous_expiry"))
        new_expiry = account_expiry(renewed)
        if previous and (new_expiry is None or new_expiry <= previous):
            raise ProviderError(self.code, ErrorCategory.USER_ACTION_REQUIRED,
                                "the account was not reauthorized", code="NOT_REAUTHORIZED",
                                user_message="The bank authorization was not renewed.")
        consent.valid_until = consent_valid_until(accounts)
        consent.raw = {"reauthorization_request_id": pending.get("reauthorization_request_id"),
                       "account_ids": [raw["id"] for raw in accounts]}
        return consent

    def list_accounts(self, consent):
        accounts = self._account_resources(consent)
        with self._mapping("accounts"):
            result = [map_account(raw, consent.external_id) for raw in accounts]
            valid_until = consent_valid_until(accounts)
        if valid_until:
            consent.valid_until = valid_until
        return result

    def get_balances(self, consent, account_external_id):
        self._synchronize(consent, account_external_id, "accountDetails")
        payload = self._call(consent, "GET", self._account_path(account_external_id))
        with self._mapping("account"):
            resource = payload["data"]
        self._check_authorization(resource)
        with self._mapping("account"):
            return map_balances(resource, account_external_id, utcnow())

    def fetch_transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        """Booked transactions of [date_from, date_to] (walking Ponto's newest-first pages
        until ``ORDER_SLACK`` before ``date_from``; without ``date_from``, until the newest
        transaction of the previous fetch named by ``cursor``, or to the end) and every pending
        transaction."""
        newest_known, remembered = decode_cursor(cursor)
        self._synchronize(consent, account_external_id, "accountTransactions")
        stop_id = newest_known if date_from is None else None
        oldest = date_from - ORDER_SLACK if date_from else None
        path = self._account_path(account_external_id, "/transactions")
        booked, newest, after, seen = [], None, None, set()
        for page_number in range(MAX_PAGES):
            params = {"page[limit]": PAGE_LIMIT}
            if after:
                params["page[after]"] = after
            payload = self._call(consent, "GET", path, params=params)
            done = False
            with self._mapping("transactions"):
                items = payload["data"]
                if page_number == 0 and items:
                    newest = items[0]["id"]
                for raw in items:
                    if stop_id and raw.get("id") == stop_id:
                        done = True
                        break
                    txn = map_transaction(raw, account_external_id, TxnStatus.BOOKED)
                    day = txn.booking_date or txn.value_date
                    if oldest and day and day < oldest:
                        done = True
                        break
                    if (date_from and day and day < date_from) or (date_to and day
                                                                   and day > date_to):
                        continue
                    booked.append(txn)
                more = bool((payload.get("links") or {}).get("next")) and items
                after = items[-1]["id"] if more else None
            if done or not after:
                break
            if after in seen:
                raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                    "the transactions list returned the same page twice",
                                    retryable=False)
            seen.add(after)
        else:
            raise ProviderError(self.code, ErrorCategory.PROVIDER_ERROR,
                                f"more than {MAX_PAGES} pages of transactions; giving up",
                                retryable=False)
        raw_pending, _payload = self._walk(
            self._consent_fetch(consent), self._account_path(account_external_id,
                                                             "/pending-transactions"),
            MAX_LIST_PAGES, "pending transactions")
        with self._mapping("pending transactions"):
            pending = [map_transaction(raw, account_external_id, TxnStatus.PENDING)
                       for raw in raw_pending]
            link_posted_pending(booked, pending, remembered)
        return SyncPage(added=booked + pending,
                        next_cursor=encode_cursor(newest or newest_known, pending))

    def revoke_consent(self, consent):
        """Delete the organization's integration (with the application's own token) and revoke
        the refresh token. True if revoked now, False if it was already gone."""
        organization = quote(str(consent.external_id), safe="")
        try:
            self._as_application("DELETE", f"/organizations/{organization}/integration",
                                 parse=False)
        except ProviderError as error:
            if error.category != ErrorCategory.NOT_FOUND:
                raise
            revoked = False
        else:
            revoked = True
        refresh_token = consent.secrets.get("refresh_token")
        if refresh_token:
            try:
                self._with_bearer(None, "POST", REVOKE_PATH, consent=consent, parse=False,
                                  data={"token": refresh_token, "token_type_hint": "refresh_token",
                                        "client_id": self.client_id})
            except ProviderError as error:  # the integration is gone: the token is dead anyway
                _logger.info("ponto: refresh token revocation failed: %s", error.category.value)
        return revoked
