"""Ponto Connect (Ibanity) webhooks (reference/providers.md §4.5, OpenAPI webhook schemas).

Body: JSON:API ``{"data": {"type": "pontoConnect.<resource>.<event>", "id", "attributes":
{createdAt, ...}, "relationships": {account, organization, synchronization}}}``. The reference
marks the signature scheme ⚠️; what we implement is Ibanity's published SDK behaviour, kept in
the constants below to correct in one place.
"""
import base64
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from ..errors import ProviderError
from . import (CONSENT_REVOKED, ERROR, FORGED, IGNORED, MALFORMED, STALE, SYNC_AVAILABLE,
               UNAVAILABLE, WebhookEvent, WebhookRejected, check_replay, jws, jwt_key, load_json)

PROVIDER = "ponto"

# ----------------------------------------------------------------------------------------------
# ⚠️ Unconfirmed by the reference (from Ibanity's SDKs): the ``Signature`` header holds an RS512
# JWT whose ``kid`` names a key of the JWKS at ``<API host>/webhooks/keys`` (``{"keys": [...]}``);
# claims ``digest`` = base64(SHA-512(raw body)), ``iat``, ``exp``, ``iss`` = the API host
# (``https://api.ibanity.com``), ``aud`` = the application id (extra setting
# ``webhook_application_id``, default: the client id), 30 s tolerance on ``iat``/``exp``.
# ----------------------------------------------------------------------------------------------
HEADER = "signature"
ALGORITHM = "RS512"
KEYS_PATH = "/webhooks/keys"          # on the API host, without the /ponto-connect prefix
KEYS_URL_OPTION = "webhook_keys_url"  # extra setting overriding the keys URL
ISSUER_OPTION = "webhook_issuer"      # extra setting overriding the expected issuer
AUDIENCE_OPTION = "webhook_application_id"
TOLERANCE = timedelta(seconds=30)
MAX_AGE = timedelta(minutes=5)        # ours: an older iat is refused whatever exp says

REVOKED_INTEGRATION = "pontoConnect.integration.revoked"
# Event type -> kind. ``integration.accountRevoked`` names one account (account_ids).
KINDS = {
    "pontoConnect.account.transactionsCreated": SYNC_AVAILABLE,
    "pontoConnect.account.transactionsUpdated": SYNC_AVAILABLE,
    "pontoConnect.account.pendingTransactionsCreated": SYNC_AVAILABLE,
    "pontoConnect.account.pendingTransactionsUpdated": SYNC_AVAILABLE,
    "pontoConnect.account.reauthorized": SYNC_AVAILABLE,
    REVOKED_INTEGRATION: CONSENT_REVOKED,
    "pontoConnect.integration.accountRevoked": CONSENT_REVOKED,
    "pontoConnect.synchronization.failed": ERROR,
    "pontoConnect.organization.blocked": ERROR,
}


def _payload(body):
    data = load_json(body).get("data")
    if not isinstance(data, dict) or not str(data.get("type") or "").startswith("pontoConnect."):
        raise WebhookRejected(MALFORMED, "not a Ponto Connect webhook")
    organization = _related_id(data, "organization")
    if not organization:
        raise WebhookRejected(MALFORMED, "no organization")
    return data, organization


def _related_id(data, name):
    relation = (data.get("relationships") or {}).get(name) \
        if isinstance(data.get("relationships"), dict) else None
    target = relation.get("data") if isinstance(relation, dict) else None
    value = target.get("id") if isinstance(target, dict) else None
    return value if isinstance(value, str) and value else None


def identify(body, path_suffix=None):
    return _payload(body)[1]


def api_host(config):
    from ..providers.ponto import DEFAULT_BASE_URL
    parts = urlsplit(config.get("base_url") or DEFAULT_BASE_URL)
    return f"{parts.scheme}://{parts.netloc}"


def default_key_fetcher(config):
    """``fetch_key(kid)`` reading Ibanity's JWKS with the application's client certificate."""
    from ..providers.ponto import PontoAdapter

    def fetch_key(kid):
        url = config.get(KEYS_URL_OPTION) or api_host(config) + KEYS_PATH
        adapter = PontoAdapter(config, max_retries=1, timeout=(5.0, 10.0))
        try:
            answer = adapter._request("GET", url, auth=False)
        except ProviderError:
            raise WebhookRejected(UNAVAILABLE, "the webhook keys could not be fetched") from None
        keys = answer.get("keys") if isinstance(answer, dict) else None
        return next((key for key in keys or () if isinstance(key, dict)
                     and key.get("kid") == kid), None)
    return fetch_key


def verify(headers, body, config, *, url=None, path_suffix=None, seen=None, now=None,
           fetch_key=None):
    data, organization = _payload(body)
    token, key = jwt_key(headers, HEADER, ALGORITHM, fetch_key or default_key_fetcher(config))
    try:
        claims = jws.verify(token, key, ALGORITHM)
    except jws.JWSError:
        raise WebhookRejected(FORGED, "signature") from None
    digest = base64.b64encode(hashlib.sha512(body).digest()).decode()
    if not isinstance(claims.get("digest"), str) \
            or not hmac.compare_digest(claims["digest"], digest):
        raise WebhookRejected(FORGED, "body digest")
    if claims.get("iss") != (config.get(ISSUER_OPTION) or api_host(config)) \
            or claims.get("aud") != (config.get(AUDIENCE_OPTION) or config.get("client_id")):
        raise WebhookRejected(FORGED, "issuer or audience")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
        raise WebhookRejected(STALE, "no iat/exp")
    issued = datetime.fromtimestamp(iat, timezone.utc)
    expires = datetime.fromtimestamp(exp, timezone.utc)
    if issued - now > TOLERANCE or now - expires > TOLERANCE or now - issued > MAX_AGE:
        raise WebhookRejected(STALE)
    check_replay(seen, PROVIDER, token, max(expires, issued + MAX_AGE) + TOLERANCE)
    kind = KINDS.get(data["type"], IGNORED)
    # integration.revoked ends the whole consent, whatever account it may name.
    account = _related_id(data, "account") if data["type"] != REVOKED_INTEGRATION else None
    attributes = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    detail = {}
    if kind == ERROR:
        detail = {"error_code": data["type"].rsplit(".", 1)[-1],
                  "message": str(attributes.get("synchronizationSubtype") or "")}
    return WebhookEvent(provider=PROVIDER, kind=kind, consent_id=organization,
                        account_ids=(account,) if account else (), code=data["type"],
                        detail=detail)
