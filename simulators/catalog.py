"""Every simulator with the provider settings that point our adapters at it.

Used by the demo (all providers connectable in the demo database) and by the Odoo tests.
`start(code, port)` returns the running server and the values of an `account.online.provider`
record (base_url, client_id, client_secret, private_key, certificate, options as JSON text).
"""
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import enablebanking, gocardless, plaid, ponto, saltedge, sandbox_bank, yodlee

CODES = ("sandbox", "plaid", "yodlee", "saltedge", "ponto", "enablebanking", "gocardless")
SIMULATE_USER = {
    "sandbox": sandbox_bank.simulate_user, "plaid": plaid.simulate_user,
    "yodlee": yodlee.simulate_user, "saltedge": saltedge.simulate_user,
    "ponto": ponto.simulate_user, "enablebanking": enablebanking.simulate_user,
    "gocardless": gocardless.simulate_user,
}


def _read(path):
    with open(path) as handle:
        return handle.read()


def _rsa_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def start(code, port=0, host="127.0.0.1"):
    """Start the simulator of ``code``; returns ``(server, provider_values)``."""
    if code == "sandbox":
        server = sandbox_bank.SandboxBankServer(host=host, port=port).start()
        return server, {"base_url": server.url, "client_id": "sandbox-client",
                        "client_secret": "sandbox-secret"}
    if code == "plaid":
        server = plaid.PlaidServer(host=host, port=port).start()
        return server, {"base_url": server.url, "client_id": plaid.server.DEFAULT_CLIENT_ID,
                        "client_secret": plaid.server.DEFAULT_SECRET}
    if code == "yodlee":
        server = yodlee.YodleeServer(host=host, port=port).start()
        return server, {"base_url": server.api_url, "client_id": yodlee.server.DEFAULT_CLIENT_ID,
                        "client_secret": yodlee.server.DEFAULT_CLIENT_SECRET,
                        "options": json.dumps({"admin_login_name":
                                               yodlee.server.DEFAULT_ADMIN_LOGIN})}
    if code == "gocardless":
        server = gocardless.GoCardlessServer(host=host, port=port).start()
        return server, {"base_url": server.api_url, "client_id": gocardless.DEFAULT_SECRET_ID,
                        "client_secret": gocardless.DEFAULT_SECRET_KEY}
    if code == "saltedge":
        private, public = _rsa_pair()
        server = saltedge.SaltEdgeServer(host=host, port=port, public_key=public).start()
        return server, {"base_url": server.api_url, "client_id": saltedge.server.DEFAULT_APP_ID,
                        "client_secret": saltedge.server.DEFAULT_SECRET, "private_key": private,
                        "options": json.dumps({"callback_public_key":
                                               server.webhooks.callback_public_key_pem})}
    if code == "enablebanking":
        server = enablebanking.EnableBankingServer(host=host, port=port).start()
        config = server.client_config()
        return server, {"base_url": server.url, "client_id": config["application_id"],
                        "private_key": config["private_key"]}
    if code == "ponto":
        server = ponto.PontoServer(host=host, port=port,
                                   authorization_port=port + 100 if port else 0).start()
        config = server.adapter_config()
        return server, {"base_url": server.url, "client_id": config["client_id"],
                        "client_secret": config["client_secret"],
                        "private_key": _read(config["private_key"]),
                        "certificate": _read(config["certificate"]),
                        "options": json.dumps({"ca_bundle": config["ca_bundle"],
                                               "authorization_url": config["authorization_url"]})}
    raise KeyError(code)
