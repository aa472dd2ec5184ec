"""Provider webhooks: parse and verify a request (headers, raw body) into a ``WebhookEvent``.

Pure Python (no Odoo). Two steps, because the keys to verify with belong to the company of the
connection the webhook names:

1. ``identify(provider, body, path_suffix)``: the connection's external id the (not yet trusted)
   body names, to find the connection and its provider settings;
2. ``verify(provider, headers, body, config, url=..., seen=..., ...)``: checks the signature,
   the body's integrity and the freshness, then asks ``seen(replay_key, keep_until)`` whether
   this exact signature was already accepted (replay); returns the normalized event or raises
   ``WebhookRejected``. ``seen`` must remember the key durably (the Odoo side keeps it in the
   database so that every worker shares it).
"""
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

# Normalized kinds of event.
SYNC_AVAILABLE = "sync_available"      # new or changed transactions: synchronize that connection
CONSENT_EXPIRING = "consent_expiring"  # the consent ends soon (detail["expires_at"] if known)
CONSENT_REVOKED = "consent_revoked"    # the consent ended (revoked, removed): reconnect needed
ERROR = "error"                        # the provider reports a failure of the connection
IGNORED = "ignored"                    # authentic, but nothing for us to do
KINDS = (SYNC_AVAILABLE, CONSENT_EXPIRING, CONSENT_REVOKED, ERROR, IGNORED)

# Why a request is refused (never shown to the caller).
MALFORMED = "malformed"        # not a webhook of this provider (body, headers)
FORGED = "forged"              # signature or body hash wrong
UNKNOWN_KEY = "unknown_key"    # the key id is not one of the provider's keys / no key configured
STALE = "stale"                # too old (or from the future)
REPLAYED = "replayed"          # this exact signed request was already accepted
UNAVAILABLE = "unavailable"    # the provider's key could not be fetched now (retry later)


class WebhookRejected(Exception):
    """The request is not an authentic, fresh, first-time webhook. ``reason`` is one of the
    constants above; the message never contains the token or the signature."""

    def __init__(self, reason, message=""):
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


@dataclass(frozen=True)
class WebhookEvent:
    provider: str
    kind: str
    consent_id: str
    account_ids: tuple = ()
    code: str = ""                      # the provider's own event name
    detail: dict = field(default_factory=dict)  # expires_at (datetime), error_code, message


def utcnow():
    return datetime.now(timezone.utc)


def replay_key(provider, signature):
    """What is remembered of an accepted request: a hash, never the signature itself."""
    return hashlib.sha256(f"{provider}|{signature}".encode()).hexdigest()


def parse_time(value):
    """An ISO 8601 timestamp of a webhook body (``Z`` or offset) as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def load_json(body):
    """The decoded JSON object of a body; ``WebhookRejected(MALFORMED)`` otherwise."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(MALFORMED, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(MALFORMED, "body is not a JSON object")
    return payload


def jwt_key(headers, header_name, algorithm, fetch_key):
    """``(token, jwk)`` of a JWT-signed webhook: the token of ``header_name``, its header checked
    (exact ``algorithm``, a ``kid``) and the provider's key for that ``kid``."""
    from . import jws
    token = lower_headers(headers).get(header_name)
    if not token:
        raise WebhookRejected(FORGED, "no signature header")
    try:
        header = jws.split(token)[0]
    except jws.JWSError:
        raise WebhookRejected(FORGED, "the signature header is not a JWT") from None
    if header.get("alg") != algorithm or not isinstance(header.get("kid"), str):
        raise WebhookRejected(FORGED, "unexpected JWT algorithm or key id")
    key = fetch_key(header["kid"])
    if not isinstance(key, dict):
        raise WebhookRejected(UNKNOWN_KEY)
    return token, key


def lower_headers(headers):
    return {str(name).lower(): value for name, value in (headers or {}).items()}


def check_replay(seen, provider, signature, keep_until):
    if seen is None:
        raise ValueError("a replay memory is required")
    if seen(replay_key(provider, signature), keep_until):
        raise WebhookRejected(REPLAYED)


def _module(provider):
    from . import plaid, ponto, saltedge
    modules = {"plaid": plaid, "ponto": ponto, "saltedge": saltedge}
    if provider not in modules:
        raise WebhookRejected(MALFORMED, "this provider sends no webhooks")
    return modules[provider]


def supported_providers():
    return ("plaid", "ponto", "saltedge")


def identify(provider, body, path_suffix=None):
    """The consent (connection) external id the body names; raises ``WebhookRejected``."""
    return _module(provider).identify(body, path_suffix)


def verify(provider, headers, body, config, *, url=None, path_suffix=None, seen=None, now=None,
           fetch_key=None):
    """Verify one webhook request; see the module docstring. ``config`` is the adapter's config
    of the provider record (credentials, options); ``url`` the URL the provider posted to
    (Salt Edge signs it); ``fetch_key(kid)`` overrides how a JWT key is obtained (tests)."""
    return _module(provider).verify(headers, body, config, url=url, path_suffix=path_suffix,
                                    seen=seen, now=now or utcnow(), fetch_key=fetch_key)
