"""Plaid's webhooks, signed as Plaid signs them (reference §1.7, OpenAPI): a JSON POST to the
Item's ``webhook`` URL with a ``Plaid-Verification`` header holding an ES256 JWT (header ``kid``;
claims ``iat`` and ``request_body_sha256``, the hex SHA-256 of the body). The public key is
served by ``POST /webhook_verification_key/get {key_id}`` as a JWK.

    plaid.webhooks.send(item_id=..., webhook_code="SYNC_UPDATES_AVAILABLE")
    plaid.webhooks.replay()

Also reachable as Plaid's ``/sandbox/item/fire_webhook`` and the admin ``POST /_sim/webhook``.
"""
import hashlib
import json
import time
import uuid

from cryptography.hazmat.primitives.asymmetric import ec

from ..webhook_emitter import WebhookEmitter, b64url_uint, corrupt, sign_jwt

# webhook_code -> webhook_type (Plaid fires these for a transactions Item).
TYPES = {
    "SYNC_UPDATES_AVAILABLE": "TRANSACTIONS", "DEFAULT_UPDATE": "TRANSACTIONS",
    "PENDING_EXPIRATION": "ITEM", "PENDING_DISCONNECT": "ITEM", "ERROR": "ITEM",
    "USER_PERMISSION_REVOKED": "ITEM", "USER_ACCOUNT_REVOKED": "ITEM", "LOGIN_REPAIRED": "ITEM",
    "NEW_ACCOUNTS_AVAILABLE": "ITEM",
}


class PlaidWebhooks(WebhookEmitter):

    def __init__(self, server):
        super().__init__()
        self.server = server
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.kid = str(uuid.uuid4())
        self.created_at = int(time.time())

    def verification_key(self, kid):
        """The JWK ``/webhook_verification_key/get`` returns for ``kid``, or None."""
        if kid != self.kid:
            return None
        numbers = self._key.public_key().public_numbers()
        return {"alg": "ES256", "created_at": self.created_at, "crv": "P-256",
                "expired_at": None, "kid": self.kid, "kty": "EC", "use": "sig",
                "x": b64url_uint(numbers.x), "y": b64url_uint(numbers.y)}

    def body(self, item, webhook_code, webhook_type=None, error_code=None):
        """The webhook body Plaid sends for ``webhook_code`` about ``item`` (OpenAPI schemas)."""
        body = {"webhook_type": webhook_type or TYPES.get(webhook_code, "ITEM"),
                "webhook_code": webhook_code, "item_id": item["item_id"]}
        if webhook_code == "SYNC_UPDATES_AVAILABLE":
            body.update(initial_update_complete=True, historical_update_complete=True)
        elif webhook_code == "PENDING_EXPIRATION":
            expires = item.get("consent_expires")
            body["consent_expiration_time"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ") \
                if expires else None
        elif webhook_code == "PENDING_DISCONNECT":
            body.update(reason="INSTITUTION_MIGRATION", disconnect_time=None)
        elif webhook_code in ("ERROR", "USER_PERMISSION_REVOKED", "USER_ACCOUNT_REVOKED"):
            code = error_code or ("ITEM_LOGIN_REQUIRED" if webhook_code == "ERROR"
                                  else webhook_code)
            body["error"] = {"error_type": "ITEM_ERROR", "error_code": code,
                             "error_message": code.lower().replace("_", " "),
                             "display_message": None, "status": 400}
        body["environment"] = self.server.environment
        return body

    def sign(self, body, *, age_seconds=0, kid=None):
        header = {"alg": "ES256", "kid": kid or self.kid, "typ": "JWT"}
        claims = {"iat": int(self.now(age_seconds)),
                  "request_body_sha256": hashlib.sha256(body).hexdigest()}
        return sign_jwt(header, claims, self._key)

    def send(self, item_id, webhook_code="SYNC_UPDATES_AVAILABLE", webhook_type=None, url=None,
             error_code=None, tamper=None, age_seconds=0, kid=None):
        """Send one webhook about ``item_id``; returns ``(receiver's status, url)``."""
        with self.server._lock:
            item = self.server._items.get(item_id)
            if item is None:
                raise ValueError(f"unknown item {item_id!r}")
            url = url or item.get("webhook") or self.url
            payload = self.body(item, webhook_code, webhook_type, error_code)
        body = json.dumps(payload, indent=2).encode()  # Plaid's bodies are indented JSON
        token = self.sign(body, age_seconds=age_seconds, kid=kid)
        if tamper == "signature":
            token = corrupt(token)
        return self.post(url, self.tampered(body, tamper), {"Plaid-Verification": token}), url
