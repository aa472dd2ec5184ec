"""Fixtures of the pure test suite: a real Sandbox Bank on 127.0.0.1 and adapters talking to it."""
import pytest

from services.pkce import new_pkce_pair
from services.providers.sandbox import SandboxBankAdapter
from simulators.sandbox_bank import SandboxBankServer, simulate_user

REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"


class SleepRecorder:
    """Stand-in for ``time.sleep`` that records the waits instead of sleeping."""

    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)


@pytest.fixture
def bank():
    """A fresh Sandbox Bank on a free port, stopped after the test."""
    server = SandboxBankServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def make_adapter(bank, sleeps):
    """``make_adapter(**options)``: an adapter for ``bank`` whose retries do not really sleep."""

    def make(config=None, **options):
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", (1, 5))
        return SandboxBankAdapter({"base_url": bank.url, **(config or {})}, **options)

    return make


@pytest.fixture
def adapter(make_adapter):
    return make_adapter()


@pytest.fixture
def connect():
    """``connect(adapter, institution_id=..., valid_days=...)``: the whole consent flow over HTTP
    (consent page, "Allow access", code exchange with PKCE) -> an active ``Consent``."""

    def do_connect(adapter, institution_id="SANDBOX_BANK", valid_days=None):
        verifier, challenge = new_pkce_pair()
        start = adapter.start_consent(institution_id, REDIRECT_URI, "state-123",
                                      code_challenge=challenge, valid_days=valid_days)
        callback = simulate_user(start.redirect_url, "approve")
        assert callback["state"] == "state-123"
        return adapter.complete_consent(callback, REDIRECT_URI, code_verifier=verifier)

    return do_connect


@pytest.fixture
def consent(adapter, connect):
    return connect(adapter)
