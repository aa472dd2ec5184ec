"""Salt Edge's callbacks, signed as Salt Edge signs them (reference §3.1, §3.2): a JSON POST of
``{"data": {connection_id, customer_id, custom_fields, stage | error_class, error_message},
"meta": {version, time}}`` to the callback URL set in the client's dashboard, with a
``Signature`` header = base64(RSA-SHA256-PKCS1v1.5(``"{callback_url}|{raw body}"``)) made with
Salt Edge's own key (``callback_public_key_pem``: what the client configures to verify).

    saltedge.webhooks.url = "https://odoo.example/account_online_synchronization/webhook/saltedge"
    saltedge.webhooks.send(connection_id=..., kind="success")
    saltedge.webhooks.replay()

Admin over HTTP: ``POST /_sim/webhook`` (see ``simulators/webhook_emitter.py``).
"""
import base64
import json
from datetime import datetime, timezone

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..webhook_emitter import WebhookEmitter, corrupt

KINDS = ("success", "fail", "notify", "destroy")
API_VERSION = "6"


class SaltEdgeWebhooks(WebhookEmitter):

    def __init__(self, server):
        super().__init__()
        self.server = server
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # Dashboard setting: True sends each kind to "<url>/<kind>", False all to "<url>".
        self.url_per_kind = False

    @property
    def callback_public_key_pem(self):
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, url, body):
        return base64.b64encode(self._key.sign(url.encode() + b"|" + body, padding.PKCS1v15(),
                                               hashes.SHA256())).decode()

    def body(self, connection_id, kind, *, stage=None, error_class=None, error_message=None,
             age_seconds=0):
        with self.server._lock:
            connection = self.server._connections.get(str(connection_id))
            if connection is None:
                raise ValueError(f"unknown connection {connection_id!r}")
            data = {"connection_id": str(connection_id),
                    "customer_id": str(connection["customer_id"]), "custom_fields": {}}
        if kind == "success":
            data["stage"] = stage or "finish"
        elif kind == "notify":
            data["stage"] = stage or "fetching"
        elif kind == "fail":
            data.update(error_class=error_class or "ProviderUnavailable",
                        error_message=error_message or "The bank is not available.")
        sent = datetime.fromtimestamp(self.now(age_seconds), timezone.utc)
        return {"data": data, "meta": {"version": API_VERSION,
                                       "time": sent.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}

    def send(self, connection_id, kind="success", url=None, stage=None, error_class=None,
             error_message=None, tamper=None, age_seconds=0):
        """Send one callback; returns ``(receiver's status, url)``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        url = url or (self.url and (f"{self.url.rstrip('/')}/{kind}" if self.url_per_kind
                                    else self.url))
        if not url:
            raise ValueError("no callback URL configured")
        payload = self.body(connection_id, kind, stage=stage, error_class=error_class,
                            error_message=error_message, age_seconds=age_seconds)
        body = json.dumps(payload).encode()
        signature = self.sign(url, body)
        if tamper == "signature":
            signature = corrupt(signature)
        return self.post(url, self.tampered(body, tamper), {"Signature": signature}), url
