"""Ponto Connect (Ibanity) webhooks, signed the way Ibanity's SDKs verify them (the reference
marks the scheme ⚠️; same constants as ``services/webhooks/ponto.py``): a JSON:API POST
``{"data": {"type": "pontoConnect.…", "id", "attributes": {createdAt, …}, "relationships":
{account, organization}}}`` with a ``Signature`` header holding an RS512 JWT (header ``kid``;
claims ``iss`` = the API host, ``aud`` = the application's client id, ``iat``, ``exp``, ``jti``,
``digest`` = base64(SHA-512(raw body))). The public keys are served as a JWKS at
``GET <API host>/webhooks/keys`` (mutual TLS, like the API).

    ponto.webhooks.url = "https://odoo.example/account_online_synchronization/webhook/ponto"
    ponto.webhooks.send(event="pontoConnect.account.transactionsCreated", account_id=...)

Admin over HTTP: ``POST /_sim/webhook`` (see ``simulators/webhook_emitter.py``).
"""
import base64
import hashlib
import json
import uuid
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric import rsa

from . import data
from ..webhook_emitter import WebhookEmitter, b64url_uint, corrupt, sign_jwt

KEYS_PATH = "/webhooks/keys"   # ⚠️ on the API host, outside /ponto-connect
TOKEN_LIFETIME = 60            # ⚠️ seconds between iat and exp (not documented)
EVENTS = (
    "pontoConnect.synchronization.succeededWithoutChange", "pontoConnect.synchronization.failed",
    "pontoConnect.account.detailsUpdated", "pontoConnect.account.transactionsCreated",
    "pontoConnect.account.transactionsUpdated", "pontoConnect.account.pendingTransactionsCreated",
    "pontoConnect.account.pendingTransactionsUpdated", "pontoConnect.account.reauthorized",
    "pontoConnect.integration.accountAdded", "pontoConnect.integration.accountRevoked",
    "pontoConnect.integration.created", "pontoConnect.integration.revoked",
    "pontoConnect.organization.blocked", "pontoConnect.organization.unblocked",
)


class PontoWebhooks(WebhookEmitter):

    def __init__(self, server):
        super().__init__()
        self.server = server
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = str(uuid.uuid4())

    def jwks(self):
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "alg": "RS512", "use": "sig", "kid": self.kid,
                          "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}]}

    def body(self, event, organization_id, account_id=None, age_seconds=0):
        created = datetime.fromtimestamp(self.now(age_seconds), timezone.utc)
        attributes = {"createdAt": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"}
        if event.endswith("ransactionsCreated") or event.endswith("ransactionsUpdated"):
            attributes["count"] = 1
        if event.startswith("pontoConnect.synchronization."):
            attributes["synchronizationSubtype"] = "accountTransactions"
        relationships = {"organization": {"data": {"type": "organization",
                                                   "id": organization_id}}}
        if account_id:
            relationships["account"] = {"data": {"type": "account", "id": account_id}}
        return {"data": {"type": event, "id": str(uuid.uuid4()), "attributes": attributes,
                         "relationships": relationships}}

    def sign(self, body, *, age_seconds=0, kid=None):
        iat = int(self.now(age_seconds))
        claims = {"iss": self.server.root_url, "aud": self.server.client_id, "iat": iat,
                  "exp": iat + TOKEN_LIFETIME, "jti": str(uuid.uuid4()),
                  "digest": base64.b64encode(hashlib.sha512(body).digest()).decode()}
        return sign_jwt({"alg": "RS512", "kid": kid or self.kid, "typ": "JWT"}, claims,
                        self._key)

    def send(self, event="pontoConnect.account.transactionsCreated", account_id=None,
             organization_id=data.ORGANIZATION_ID, url=None, tamper=None, age_seconds=0,
             kid=None):
        """Send one webhook; returns ``(receiver's status, url)``."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        url = url or self.url
        body = json.dumps(self.body(event, organization_id, account_id, age_seconds)).encode()
        token = self.sign(body, age_seconds=age_seconds, kid=kid)
        if tamper == "signature":
            token = corrupt(token)
        return self.post(url, self.tampered(body, tamper), {"Signature": token}), url
