"""Plaid webhooks (reference/providers.md §1.7, OpenAPI ``/webhook_verification_key/get``).

Plaid posts JSON to the ``webhook`` URL given to Link and signs it with a JWT in the
``Plaid-Verification`` header: ES256, ``kid`` in the header naming a key served by
``POST /webhook_verification_key/get {key_id}``, claims ``iat`` (not older than 5 minutes) and
``request_body_sha256`` (hex SHA-256 of the raw body).
"""
import hashlib
import hmac
from datetime import datetime, timedelta, timezone

from ..errors import ProviderError
from . import (CONSENT_EXPIRING, CONSENT_REVOKED, ERROR, FORGED, IGNORED, MALFORMED, STALE,
               SYNC_AVAILABLE, UNAVAILABLE, UNKNOWN_KEY, WebhookEvent, WebhookRejected,
               check_replay, jws, jwt_key, load_json, parse_time)

PROVIDER = "plaid"
HEADER = "plaid-verification"
ALGORITHM = "ES256"
MAX_AGE = timedelta(minutes=5)          # ✅ iat not older than 5 minutes
CLOCK_SKEW = timedelta(minutes=1)       # our tolerance for an iat slightly in the future
KEY_PATH = "/webhook_verification_key/get"
# ITEM/ERROR codes after which only the user can repair the Item (update mode).
RECONNECT_ERRORS = frozenset({"ITEM_LOGIN_REQUIRED"})

# (webhook_type, webhook_code) -> kind. Legacy TRANSACTIONS codes (DEFAULT_UPDATE, ...) are
# also sent to /transactions/sync users and need no answer (OpenAPI): ignored.
KINDS = {
    ("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE"): SYNC_AVAILABLE,
    ("ITEM", "LOGIN_REPAIRED"): SYNC_AVAILABLE,
    ("ITEM", "PENDING_EXPIRATION"): CONSENT_EXPIRING,
    ("ITEM", "PENDING_DISCONNECT"): CONSENT_EXPIRING,
    ("ITEM", "USER_PERMISSION_REVOKED"): CONSENT_REVOKED,
    ("ITEM", "USER_ACCOUNT_REVOKED"): CONSENT_REVOKED,
    ("ITEM", "ERROR"): ERROR,
}


def _payload(body):
    payload = load_json(body)
    if not isinstance(payload.get("item_id"), str) \
            or not payload["item_id"] or not isinstance(payload.get("webhook_code"), str):
        raise WebhookRejected(MALFORMED, "not a Plaid Item webhook")
    return payload


def identify(body, path_suffix=None):
    return _payload(body)["item_id"]


def default_key_fetcher(config):
    """``fetch_key(kid)`` asking Plaid (with the company's API keys) for the JWK of ``kid``."""
    from ..providers.plaid import PlaidAdapter

    def fetch_key(kid):
        adapter = PlaidAdapter(config, max_retries=1, timeout=(5.0, 10.0))
        try:
            answer = adapter._post(KEY_PATH, {"key_id": kid})
        except ProviderError as error:
            if error.http_status and 400 <= error.http_status < 500:
                return None
            raise WebhookRejected(UNAVAILABLE, "the verification key could not be fetched") \
                from None
        return answer.get("key") if isinstance(answer, dict) else None
    return fetch_key


def verify(headers, body, config, *, url=None, path_suffix=None, seen=None, now=None,
           fetch_key=None):
    payload = _payload(body)
    token, key = jwt_key(headers, HEADER, ALGORITHM, fetch_key or default_key_fetcher(config))
    expired_at = key.get("expired_at")
    if isinstance(expired_at, (int, float)) and expired_at <= now.timestamp():
        raise WebhookRejected(UNKNOWN_KEY, "the key has expired")
    try:
        claims = jws.verify(token, key, ALGORITHM)
    except jws.JWSError:
        raise WebhookRejected(FORGED, "signature") from None
    iat = claims.get("iat")
    if not isinstance(iat, (int, float)):
        raise WebhookRejected(STALE, "no iat")
    issued = datetime.fromtimestamp(iat, timezone.utc)
    if now - issued > MAX_AGE or issued - now > CLOCK_SKEW:
        raise WebhookRejected(STALE)
    expected = hashlib.sha256(body).hexdigest()
    claimed = claims.get("request_body_sha256")
    if not isinstance(claimed, str) or not hmac.compare_digest(claimed.lower(), expected):
        raise WebhookRejected(FORGED, "body hash")
    check_replay(seen, PROVIDER, token, issued + MAX_AGE)
    webhook_type, code = payload.get("webhook_type"), payload["webhook_code"]
    kind = KINDS.get((webhook_type, code), IGNORED)
    detail = {}
    if kind == CONSENT_EXPIRING:
        detail["expires_at"] = parse_time(payload.get("consent_expiration_time")
                                           or payload.get("disconnect_time"))
    error = payload.get("error")
    if isinstance(error, dict):
        detail["error_code"] = str(error.get("error_code") or "")
        detail["message"] = str(error.get("display_message") or error.get("error_message") or "")
        detail["reconnect"] = detail["error_code"] in RECONNECT_ERRORS
    account_id = payload.get("account_id")
    return WebhookEvent(provider=PROVIDER, kind=kind, consent_id=payload["item_id"],
                        account_ids=(account_id,) if isinstance(account_id, str) else (),
                        code=f"{webhook_type}/{code}", detail=detail)
