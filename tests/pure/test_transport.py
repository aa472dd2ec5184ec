"""The base transport (ProviderAdapter._request): retries, backoff, Retry-After, timeouts.

Exercised through the Sandbox Bank adapter against the real simulator; ``sleep`` is injected so
the waits are recorded instead of slept.
"""
import socket
import time
from datetime import datetime, timezone

import pytest

from services.errors import ErrorCategory, ProviderError
from services.providers.base import parse_retry_after
from services.providers.sandbox import SandboxBankAdapter

ACCOUNTS = "GET /api/v1/accounts"


def account_calls(bank):
    return bank.stats()["requests"].get(ACCOUNTS, 0)


def test_retries_500_with_exponential_backoff(adapter, consent, bank, sleeps):
    bank.add_fault("http_500", times=2, path="/api/v1/accounts")
    accounts = adapter.list_accounts(consent)
    assert len(accounts) == 2
    assert sleeps.waits == [0.5, 1.0]
    assert account_calls(bank) == 3


def test_persistent_500_gives_up_after_max_retries(make_adapter, connect, bank, sleeps):
    adapter = make_adapter(max_retries=3, backoff=0.25)
    consent = connect(adapter)
    bank.add_fault("http_500", times=None, path="/api/v1/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert caught.value.http_status == 500 and caught.value.retryable
    assert sleeps.waits == [0.25, 0.5, 1.0]
    assert account_calls(bank) == 4


def test_503_is_institution_down_and_retried(adapter, consent, bank, sleeps):
    bank.add_fault("http_503", times=1)
    assert len(adapter.list_accounts(consent)) == 2
    assert sleeps.waits == [0.5]


def test_503_asking_for_a_long_wait_is_not_waited(adapter, consent, bank, sleeps):
    bank.add_fault("http_503", times=1, seconds=3600)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.INSTITUTION_DOWN
    assert caught.value.retry_after == 3600.0
    assert sleeps.waits == [] and account_calls(bank) == 1


def test_429_honours_retry_after(adapter, consent, bank, sleeps):
    bank.add_fault("rate_limit", times=1, seconds=2)
    assert len(adapter.list_accounts(consent)) == 2
    assert sleeps.waits == [2.0]
    assert account_calls(bank) == 2


def test_long_retry_after_is_raised_not_waited(adapter, consent, bank, sleeps):
    bank.add_fault("rate_limit", times=None, seconds=3600)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED and error.code == "RATE_LIMITED"
    assert error.retry_after == 3600.0 and error.http_status == 429
    assert not error.retryable
    assert sleeps.waits == [] and account_calls(bank) == 1


def test_retry_after_up_to_max_retry_wait_is_waited(make_adapter, connect, bank, sleeps):
    adapter = make_adapter(max_retry_wait=120)
    consent = connect(adapter)
    bank.add_fault("rate_limit", times=2, seconds=100)
    assert len(adapter.list_accounts(consent)) == 2
    assert sleeps.waits == [100.0, 100.0]


def test_timeout_becomes_network_error_after_retries(make_adapter, connect, bank, sleeps):
    adapter = make_adapter(timeout=(1, 1), max_retries=1)
    consent = connect(adapter)
    bank.add_fault("timeout", times=None, seconds=30, path="/api/v1/accounts")
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    elapsed = time.monotonic() - started
    assert caught.value.category == ErrorCategory.NETWORK and caught.value.retryable
    assert "timed out" in caught.value.message
    assert sleeps.waits == [0.5] and account_calls(bank) == 2
    assert 1.5 < elapsed < 10


def test_one_timeout_is_absorbed_by_a_retry(make_adapter, connect, bank, sleeps):
    adapter = make_adapter(timeout=(1, 0.5))
    consent = connect(adapter)
    bank.add_fault("timeout", times=1, path="/api/v1/accounts")
    assert len(adapter.list_accounts(consent)) == 2
    assert sleeps.waits == [0.5]


def test_delay_shorter_than_the_read_timeout_is_fine(make_adapter, connect, bank, sleeps):
    adapter = make_adapter(timeout=(1, 2))
    consent = connect(adapter)
    bank.add_fault("delay", seconds=0.2)
    assert len(adapter.list_accounts(consent)) == 2
    assert sleeps.waits == []


def test_malformed_json_is_provider_error(make_adapter, connect, bank, sleeps):
    adapter = make_adapter(max_retries=2)
    consent = connect(adapter)
    bank.add_fault("malformed_json", times=None, path="/api/v1/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert caught.value.http_status == 200 and "not valid JSON" in caught.value.message
    assert account_calls(bank) == 3 and sleeps.waits == [0.5, 1.0]
    bank.clear_faults()
    bank.add_fault("malformed_json", times=1, path="/api/v1/accounts")
    assert len(adapter.list_accounts(consent)) == 2


def test_non_transient_errors_are_not_retried(adapter, consent, bank, sleeps):
    bank.add_fault("consent_expired", times=None)
    with pytest.raises(ProviderError):
        adapter.list_accounts(consent)
    assert sleeps.waits == [] and account_calls(bank) == 1


def test_connection_refused_is_network_error(sleeps):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = SandboxBankAdapter({"base_url": f"http://127.0.0.1:{port}"}, sleep=sleeps,
                                 timeout=(1, 1), max_retries=2)
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    assert caught.value.category == ErrorCategory.NETWORK
    assert sleeps.waits == [0.5, 1.0] and adapter.request_count == 3


# ------------------------------------------------------------------------------ parse_retry_after
def test_parse_retry_after_seconds():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None


def test_parse_retry_after_http_date():
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=timezone.utc)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:00 +0200", now=now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000", now=now) == 90.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0
