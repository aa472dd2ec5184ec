"""What the Plaid, Salt Edge and Ponto simulators share to send signed webhooks: the HTTP POST,
the memory of the last request (to replay it verbatim), JWS signing and the ``/_sim/webhook``
admin call. Standard library plus ``cryptography``; nothing imports odoo.

Admin over HTTP, ``POST /_sim/webhook`` with a JSON body:

* ``{"configure_url": "https://..."}``: the URL webhooks go to (the provider's dashboard
  setting; Plaid sends to each Item's own ``webhook`` unless ``url`` is given);
* ``{"replay": true}``: send the last request again, byte for byte (same signature);
* anything else: the event to send (fields per simulator, see its ``webhooks.py``), with the test
  knobs ``url``, ``tamper`` (``"body"``: change the body after signing, ``"signature"``: corrupt
  the signature), ``age_seconds`` (sign as if sent that long ago) and, for JWTs, ``kid``.

The answer: ``{"status": <HTTP status the receiver answered>, "url": ...}``.
"""
import base64
import http.client
import json
import ssl
import threading
import time
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_uint(value):
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def sign_jwt(header, claims, private_key):
    """A compact JWS: ES256 with an EC P-256 key, RS512 with an RSA key (``header['alg']``)."""
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims)).encode("ascii")
    if header["alg"] == "ES256":
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif header["alg"] == "RS512":
        signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA512())
    else:
        raise ValueError("unsupported algorithm")
    return signing_input.decode("ascii") + "." + b64url(signature)


def corrupt(signature):
    """The same signature with one character in the middle of its signature part changed."""
    head, dot, tail = signature.rpartition(".")
    index = len(tail) // 2
    tail = tail[:index] + ("A" if tail[index] != "A" else "B") + tail[index + 1:]
    return head + dot + tail


class WebhookEmitter:
    """Sends webhooks and remembers the last one. Subclasses build and sign the requests."""

    def __init__(self):
        self.url = None
        self.timeout = 30
        self.sent = []            # (url, status) of every request sent
        self._last = None
        self._lock = threading.Lock()

    def post(self, url, body, headers):
        """POST ``body`` to ``url``; returns the receiver's HTTP status (0: no answer)."""
        if not url:
            raise ValueError("no webhook URL: configure one or give url")
        parts = urlsplit(url)
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname, parts.port or 443, timeout=self.timeout,
                context=ssl._create_unverified_context())  # noqa: S323 - local test receivers
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                                    timeout=self.timeout)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        all_headers = {"Content-Type": "application/json", **headers}
        try:
            connection.request("POST", target, body=body, headers=all_headers)
            status = connection.getresponse().status
        except OSError:
            status = 0
        finally:
            connection.close()
        with self._lock:
            self._last = (url, body, dict(headers))
            self.sent.append((url, status))
        return status

    def replay(self):
        """Send the last request again, unchanged (a replay attack, or a provider's retry)."""
        with self._lock:
            last = self._last
        if last is None:
            raise ValueError("no webhook was sent yet")
        return self.post(*last)

    @staticmethod
    def now(age_seconds=0):
        return time.time() - float(age_seconds or 0)

    @staticmethod
    def tampered(body, tamper):
        """The body changed after signing (``tamper="body"``): still JSON, one field more."""
        if tamper == "body" and body.endswith(b"}"):
            return body[:-1] + b', "tampered": true}'
        return body

    def send(self, **event):  # pragma: no cover - implemented by each simulator
        raise NotImplementedError

    def admin(self, payload):
        """``POST /_sim/webhook``: ``(status, answer)``; ValueError/TypeError for bad input."""
        if not isinstance(payload, dict):
            raise ValueError("the body must be a JSON object")
        if "configure_url" in payload:
            self.url = payload["configure_url"] or None
            return 200, {"url": self.url}
        if payload.get("replay"):
            return 200, {"status": self.replay(), "url": self._last[0]}
        status, url = self.send(**payload)
        return 200, {"status": status, "url": url}
