"""services/fetch.py: bounded parallel fetching against the Sandbox Bank simulator."""
from datetime import timedelta

import pytest

from services.errors import ProviderError
from services.proxy import ProxyClient
from services.fetch import FetchRequest, ParallelFetcher, fetch_account
from services.sync import SyncWindow


@pytest.fixture
def connected(adapter, consent, bank):
    """The façade the models use, over a connected Sandbox Bank adapter."""
    client = ProxyClient.__new__(ProxyClient)
    client.provider_code, client.adapter = "sandbox", adapter
    return client, consent, bank


def _requests(adapter, consent, bank):
    accounts = adapter.accounts(consent)
    window = SyncWindow(bank.today - timedelta(days=10), bank.today)
    return [FetchRequest(account_id=a.external_id, window=window) for a in accounts]


def test_fetch_account_returns_the_page_and_the_balances(connected):
    adapter, consent, bank = connected
    request = _requests(adapter, consent, bank)[0]
    page, balances = fetch_account(adapter, consent, request)
    assert page.added and balances
    assert {t.account_external_id for t in page.added} == {request.account_id}


def test_an_empty_window_asks_only_for_the_balances(connected):
    adapter, consent, bank = connected
    empty = FetchRequest(account_id=_requests(adapter, consent, bank)[0].account_id,
                         window=SyncWindow(bank.today + timedelta(days=1), bank.today))
    before = bank.stats()["requests"]
    page, _balances = fetch_account(adapter, consent, empty)
    assert page.added == []
    after = bank.stats()["requests"]
    assert {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)} \
        == {"GET /api/v1/accounts/{id}/balances": 1}


def test_parallel_fetcher_bounds_requests_per_provider(connected):
    adapter, consent, bank = connected
    requests = _requests(adapter, consent, bank)
    bank.add_fault("delay", seconds=0.2, times=None)
    with ParallelFetcher(workers=6, per_provider=2) as fetcher:
        batches = [fetcher.submit("sandbox", adapter, consent, requests) for _i in range(4)]
        results = [prefetch.result() for batch in batches for prefetch in batch]
    assert all(page.added for page, _balances in results)
    assert bank.stats()["max_in_flight"] == 2


def test_a_failed_fetch_is_raised_by_result_and_the_others_still_answer(connected):
    adapter, consent, bank = connected
    requests = _requests(adapter, consent, bank)
    bank.add_fault("http_500", path=f"/accounts/{requests[0].account_id}/transactions", times=None)
    with ParallelFetcher(workers=2) as fetcher:
        first, second = fetcher.submit("sandbox", adapter, consent, requests[:2])
        with pytest.raises(ProviderError):
            first.result()
        assert second.result()[0].added
