"""Provider webhooks end to end without Odoo: each simulator signs and POSTs a webhook to a local
receiver, ``services.webhooks`` verifies what arrived (keys fetched from the simulator as from
the real provider). Valid events are accepted; forged, tampered, stale, unknown-key and replayed
requests are refused."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services import webhooks
from services.pkce import new_pkce_pair
from services.providers.plaid import PlaidAdapter
from services.providers.ponto import PontoAdapter
from services.providers.saltedge import SaltEdgeAdapter
from simulators import catalog
from simulators import plaid as plaid_sim
from simulators import ponto as ponto_sim
from simulators import saltedge as saltedge_sim

REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
PROVIDERS = ("plaid", "saltedge", "ponto")


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it receives and answers 200."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Memory:
    """The replay memory, as the database keeps it: keys of accepted requests."""

    def __init__(self):
        self.keys = {}

    def __call__(self, key, keep_until):
        if key in self.keys:
            return True
        self.keys[key] = keep_until
        return False


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.stop()


def _plaid(receiver):
    server = plaid_sim.PlaidServer().start()
    config = {"base_url": server.url, "client_id": plaid_sim.server.DEFAULT_CLIENT_ID,
              "secret": plaid_sim.server.DEFAULT_SECRET, "webhook": receiver.url}
    adapter = PlaidAdapter(config)
    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "s")
    consent = adapter.complete_consent(plaid_sim.simulate_user(start.redirect_url), REDIRECT_URI,
                                       pending_data=start.pending_data)

    def send(**knobs):
        return server.webhooks.send(consent.external_id, "SYNC_UPDATES_AVAILABLE", **knobs)
    return server, config, consent, send


def _saltedge(receiver):
    server, values = catalog.start("saltedge")
    config = {"base_url": values["base_url"], "app_id": values["client_id"],
              "secret": values["client_secret"], "private_key": values["private_key"],
              "callback_public_key": server.webhooks.callback_public_key_pem}
    adapter = SaltEdgeAdapter(config)
    start = adapter.start_consent("fakebank_simple_xf", REDIRECT_URI, "s")
    consent = adapter.complete_consent(saltedge_sim.simulate_user(start.redirect_url),
                                       REDIRECT_URI, pending_data=start.pending_data)
    server.webhooks.url = receiver.url

    def send(**knobs):
        return server.webhooks.send(consent.external_id, "success", **knobs)
    return server, config, consent, send


def _ponto(receiver):
    server = ponto_sim.PontoServer().start()
    config = server.adapter_config()
    adapter = PontoAdapter(config)
    verifier, challenge = new_pkce_pair()
    start = adapter.start_consent(ponto_sim.data.ACCOUNTS[0]["institution_id"], REDIRECT_URI,
                                  "s", code_challenge=challenge)
    consent = adapter.complete_consent(ponto_sim.simulate_user(start.redirect_url, "approve"),
                                       REDIRECT_URI, code_verifier=verifier,
                                       pending_data=start.pending_data)
    account = adapter.list_accounts(consent)[0].external_id
    server.webhooks.url = receiver.url

    def send(**knobs):
        return server.webhooks.send("pontoConnect.account.transactionsCreated", account_id=account,
                                    organization_id=consent.external_id, **knobs)
    return server, config, consent, send


@pytest.fixture(scope="module", params=PROVIDERS)
def provider(request, receiver):
    server, config, consent, send = {"plaid": _plaid, "saltedge": _saltedge,
                                     "ponto": _ponto}[request.param](receiver)
    yield request.param, server, config, consent, send
    server.stop()


def deliver(receiver, send, **knobs):
    """Send one webhook through the simulator; returns what the receiver got."""
    before = len(receiver.received)
    status, url = send(**knobs)
    assert status == 200 and len(receiver.received) == before + 1
    _path, headers, body = receiver.received[-1]
    return headers, body, url


def check(code, config, delivered, memory=None, **options):
    headers, body, url = delivered
    return webhooks.verify(code, headers, body, config, url=url,
                           seen=memory if memory is not None else Memory(), **options)


def test_a_valid_webhook_is_accepted(provider, receiver):
    code, server, config, consent, send = provider
    delivered = deliver(receiver, send)
    assert webhooks.identify(code, delivered[1]) == consent.external_id
    event = check(code, config, delivered)
    assert event.provider == code
    assert event.kind == webhooks.SYNC_AVAILABLE
    assert event.consent_id == consent.external_id
    if code == "ponto":
        assert len(event.account_ids) == 1


def test_a_forged_signature_is_refused(provider, receiver):
    code, _server, config, _consent, send = provider
    with pytest.raises(webhooks.WebhookRejected) as caught:
        check(code, config, deliver(receiver, send, tamper="signature"))
    assert caught.value.reason == webhooks.FORGED


def test_a_tampered_body_is_refused(provider, receiver):
    code, _server, config, _consent, send = provider
    delivered = deliver(receiver, send, tamper="body")
    assert b'"tampered": true' in delivered[1]
    with pytest.raises(webhooks.WebhookRejected) as caught:
        check(code, config, delivered)
    assert caught.value.reason == webhooks.FORGED


def test_a_stale_webhook_is_refused(provider, receiver):
    code, _server, config, _consent, send = provider
    with pytest.raises(webhooks.WebhookRejected) as caught:
        check(code, config, deliver(receiver, send, age_seconds=3600))
    assert caught.value.reason == webhooks.STALE


def test_an_unknown_key_is_refused(provider, receiver):
    code, _server, config, _consent, send = provider
    if code == "saltedge":  # no key id: a callback signed by another key, or no key configured
        other, _values = catalog.start("saltedge")
        other.stop()
        with pytest.raises(webhooks.WebhookRejected) as caught:
            check(code, dict(config, callback_public_key=other.webhooks.callback_public_key_pem),
                  deliver(receiver, send))
        assert caught.value.reason == webhooks.FORGED
        with pytest.raises(webhooks.WebhookRejected) as caught:
            check(code, dict(config, callback_public_key=None), deliver(receiver, send))
    else:
        with pytest.raises(webhooks.WebhookRejected) as caught:
            check(code, config, deliver(receiver, send, kid="0f4e6a4c-unknown-key"))
    assert caught.value.reason == webhooks.UNKNOWN_KEY


def test_a_replayed_webhook_is_refused(provider, receiver):
    code, server, config, _consent, send = provider
    memory = Memory()
    first = deliver(receiver, send)
    check(code, config, first, memory)
    assert server.webhooks.replay() == 200
    again = receiver.received[-1]
    assert again[2] == first[1]
    with pytest.raises(webhooks.WebhookRejected) as caught:
        check(code, config, (again[1], again[2], first[2]), memory)
    assert caught.value.reason == webhooks.REPLAYED
    # A new webhook about the same connection is not a replay.
    assert check(code, config, deliver(receiver, send), memory).kind == webhooks.SYNC_AVAILABLE
    assert len(memory.keys) == 2


def test_webhooks_without_a_signature_or_for_another_provider_are_refused(provider, receiver):
    code, _server, config, _consent, send = provider
    headers, body, url = deliver(receiver, send)
    with pytest.raises(webhooks.WebhookRejected) as caught:
        webhooks.verify(code, {}, body, config, url=url, seen=Memory())
    assert caught.value.reason == webhooks.FORGED
    with pytest.raises(webhooks.WebhookRejected) as caught:
        webhooks.identify(code, b"not json")
    assert caught.value.reason == webhooks.MALFORMED
    with pytest.raises(webhooks.WebhookRejected):
        webhooks.identify("gocardless", body)


KIND_CASES = {
    "plaid": [({"webhook_code": "PENDING_EXPIRATION"}, webhooks.CONSENT_EXPIRING),
              ({"webhook_code": "USER_PERMISSION_REVOKED"}, webhooks.CONSENT_REVOKED),
              ({"webhook_code": "ERROR"}, webhooks.ERROR),
              ({"webhook_code": "NEW_ACCOUNTS_AVAILABLE"}, webhooks.IGNORED)],
    "saltedge": [({"kind": "fail"}, webhooks.ERROR),
                 ({"kind": "fail", "error_class": "ConsentExpired"}, webhooks.CONSENT_REVOKED),
                 ({"kind": "destroy"}, webhooks.SYNC_AVAILABLE),  # one URL: body decides
                 ({"kind": "notify"}, webhooks.IGNORED)],
    "ponto": [({"event": "pontoConnect.integration.revoked"}, webhooks.CONSENT_REVOKED),
              ({"event": "pontoConnect.synchronization.failed"}, webhooks.ERROR),
              ({"event": "pontoConnect.organization.unblocked"}, webhooks.IGNORED)],
}


def test_event_kinds(provider, receiver):
    code, server, config, consent, _send = provider
    for knobs, kind in KIND_CASES[code]:
        if code == "plaid":
            status, url = server.webhooks.send(consent.external_id, **knobs)
        elif code == "saltedge":
            status, url = server.webhooks.send(consent.external_id, **knobs)
        else:
            status, url = server.webhooks.send(organization_id=consent.external_id, **knobs)
        _path, headers, body = receiver.received[-1]
        event = webhooks.verify(code, headers, body, config, url=url, seen=Memory())
        assert (knobs, event.kind) == (knobs, kind)
        assert event.consent_id == consent.external_id
    if code == "plaid":
        server.webhooks.send(consent.external_id, "PENDING_EXPIRATION")
        _path, headers, body = receiver.received[-1]
        event = webhooks.verify(code, headers, body, config, seen=Memory())
        assert event.detail["expires_at"] is not None


@pytest.mark.parametrize("provider", ["saltedge"], indirect=True)
def test_saltedge_callback_kind_from_the_url(provider, receiver):
    """With one URL per kind (Salt Edge's dashboard), the signed URL says which callback it is."""
    code, server, config, consent, _send = provider
    server.webhooks.url_per_kind = True
    try:
        status, url = server.webhooks.send(consent.external_id, "destroy")
    finally:
        server.webhooks.url_per_kind = False
    path, headers, body = receiver.received[-1]
    assert url.endswith("/hook/destroy") and path == "/hook/destroy"
    event = webhooks.verify(code, headers, body, config, url=url, path_suffix="destroy",
                            seen=Memory())
    assert event.kind == webhooks.CONSENT_REVOKED
    with pytest.raises(webhooks.WebhookRejected) as caught:  # the URL is part of the signature
        webhooks.verify(code, headers, body, config, url=url.replace("destroy", "success"),
                        path_suffix="success", seen=Memory())
    assert caught.value.reason == webhooks.FORGED


@pytest.mark.parametrize("provider", ["plaid"], indirect=True)
def test_plaid_sandbox_fire_webhook(provider, receiver):
    """Plaid's own Sandbox trigger sends the same signed webhook to the Item's URL."""
    code, server, config, consent, _send = provider
    adapter = PlaidAdapter(config)
    answer = adapter._post("/sandbox/item/fire_webhook", {
        "access_token": consent.secrets["access_token"], "webhook_code": "SYNC_UPDATES_AVAILABLE"})
    assert answer["webhook_fired"] is True
    _path, headers, body = receiver.received[-1]
    assert check(code, config, (headers, body, None)).consent_id == consent.external_id
