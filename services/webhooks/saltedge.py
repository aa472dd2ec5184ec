"""Salt Edge callbacks (reference/providers.md §3.1, §3.2).

Salt Edge posts ``{"data": {connection_id, customer_id, custom_fields, stage | error_class,
error_message}, "meta": {version, time}}`` to the callback URLs set in its dashboard and signs
each with its own RSA key: header ``Signature`` = base64(RSA-SHA256-PKCS1v1.5(
``"{callback_url}|{raw body}"``)). The public key is put in the provider record's extra settings
as ``callback_public_key`` (PEM).
"""
import base64
import binascii
from datetime import timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import (CONSENT_REVOKED, ERROR, FORGED, IGNORED, MALFORMED, STALE, SYNC_AVAILABLE,
               UNKNOWN_KEY, WebhookEvent, WebhookRejected, check_replay, load_json,
               lower_headers, parse_time)

PROVIDER = "saltedge"
HEADER = "signature"
PUBLIC_KEY_OPTION = "callback_public_key"

# ----------------------------------------------------------------------------------------------
# Not confirmed by the reference (⚠️), kept here to correct in one place:
# ----------------------------------------------------------------------------------------------
# The callback kinds, one URL each in Salt Edge's dashboard; our URL may end with the kind
# (.../webhook/saltedge/success). Without it, the body tells: error_class -> fail, a stage other
# than "finish" -> notify, otherwise success.
CALLBACK_KINDS = {"success": SYNC_AVAILABLE, "fail": ERROR, "notify": IGNORED,
                  "destroy": CONSENT_REVOKED, "service": IGNORED}
FINAL_STAGE = "finish"
# Fail callbacks whose error class means the consent is gone (reconnect needed).
CONSENT_GONE_ERRORS = frozenset({
    "ConsentExpired", "ConsentRevoked", "AispConsentExpired", "AispConsentRevoked",
    "ConnectionDisabled", "InvalidCredentials"})
# meta.time (⚠️ shape from the reference) bounds a callback's age: our own window, there is no
# documented one. A callback without meta.time is refused (no freshness, no replay bound).
MAX_AGE = timedelta(minutes=15)
CLOCK_SKEW = timedelta(minutes=5)


def _payload(body):
    payload = load_json(body)
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("connection_id") in (None, ""):
        raise WebhookRejected(MALFORMED, "not a Salt Edge callback")
    return payload, data


def identify(body, path_suffix=None):
    return str(_payload(body)[1]["connection_id"])


def load_public_key(pem):
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def verify(headers, body, config, *, url=None, path_suffix=None, seen=None, now=None,
           fetch_key=None):
    payload, data = _payload(body)
    if path_suffix and path_suffix not in CALLBACK_KINDS:
        raise WebhookRejected(MALFORMED, "unknown callback kind")
    signature = lower_headers(headers).get(HEADER)
    if not signature:
        raise WebhookRejected(FORGED, "no Signature header")
    key = load_public_key(config.get(PUBLIC_KEY_OPTION) or "")
    if key is None:
        raise WebhookRejected(UNKNOWN_KEY, "no Salt Edge callback key configured")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(FORGED, "signature is not base64") from None
    urls = [url] if isinstance(url, str) else list(url or ())
    for candidate in urls:
        try:
            key.verify(raw_signature, candidate.encode() + b"|" + body, padding.PKCS1v15(),
                       hashes.SHA256())
            break
        except InvalidSignature:
            continue
    else:
        raise WebhookRejected(FORGED, "signature")
    sent = parse_time((payload.get("meta") or {}).get("time")
                       if isinstance(payload.get("meta"), dict) else None)
    if sent is None or now - sent > MAX_AGE or sent - now > CLOCK_SKEW:
        raise WebhookRejected(STALE)
    check_replay(seen, PROVIDER, signature, sent + MAX_AGE)
    if path_suffix:
        kind = CALLBACK_KINDS[path_suffix]
    elif data.get("error_class"):
        kind = ERROR
    elif data.get("stage") not in (None, FINAL_STAGE):
        kind = IGNORED
    else:
        kind = SYNC_AVAILABLE
    detail = {}
    if kind == ERROR:
        detail = {"error_code": str(data.get("error_class") or ""),
                  "message": str(data.get("error_message") or "")}
        if detail["error_code"] in CONSENT_GONE_ERRORS:
            kind = CONSENT_REVOKED
    return WebhookEvent(provider=PROVIDER, kind=kind, consent_id=str(data["connection_id"]),
                        code=path_suffix or data.get("error_class") or data.get("stage") or "",
                        detail=detail)
