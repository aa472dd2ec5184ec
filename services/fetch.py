"""Fetching accounts' transactions and balances, alone or many at once.

The cron synchronizes many connections. Their HTTP calls (mostly waiting on the bank) run in a
bounded pool of threads, at most a few at a time per provider so that rate limits hold, while
everything that touches the database stays on the cron's own thread. Nothing here imports Odoo.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

from .sync import SyncWindow
from .types import SyncPage


@dataclass(frozen=True)
class FetchRequest:
    account_id: str
    window: SyncWindow
    cursor: str | None = None
    last_line_date: date | None = None


def fetch_account(client, consent, request):
    """(SyncPage, balances) of one account: the only provider calls of a synchronization."""
    if request.window.is_empty:
        page = SyncPage(added=[])
    else:
        page = client.transactions(consent, request.account_id, request.window.date_from,
                                   request.window.date_to, cursor=request.cursor)
    return page, client.balances(consent, request.account_id)


class Prefetch:
    """A fetch started ahead of the import; ``result()`` waits and re-raises its error."""

    def __init__(self, request, future):
        self.request = request
        self._future = future

    def result(self):
        return self._future.result()


class ParallelFetcher:
    """Bounded parallel fetching: ``workers`` threads in all, ``per_provider`` at a time for
    one provider. The accounts of one connection are fetched one after the other in the same
    thread: they share the connection's tokens, which a refresh may rotate."""

    def __init__(self, workers=8, per_provider=4):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                        thread_name_prefix="online-sync-fetch")
        self._per_provider = max(1, per_provider)
        self._slots = {}
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _slot(self, provider):
        with self._lock:
            if provider not in self._slots:
                self._slots[provider] = threading.BoundedSemaphore(self._per_provider)
            return self._slots[provider]

    def submit(self, provider, client, consent, requests):
        """Fetch ``requests`` (one connection's accounts) in order; returns one Prefetch each."""
        done = {}
        ready = [threading.Event() for _request in requests]

        def run():
            with self._slot(provider):
                for index, request in enumerate(requests):
                    try:
                        done[index] = (True, fetch_account(client, consent, request))
                    except Exception as error:  # noqa: BLE001 — re-raised by result()
                        done[index] = (False, error)
                    ready[index].set()

        future = self._pool.submit(run)
        return [Prefetch(request, _Outcome(future, ready[index], done, index))
                for index, request in enumerate(requests)]


class _Outcome:
    """The result of one request of a connection's batch, as a future-like object."""

    def __init__(self, future, ready, done, index):
        self._future, self._ready, self._done, self._index = future, ready, done, index

    def result(self):
        while not self._ready.wait(timeout=1):
            if self._future.done():  # the thread died without reaching this request
                self._future.result()
                raise RuntimeError("the fetch stopped before this account")
        ok, value = self._done[self._index]
        if ok:
            return value
        raise value
