"""Pure sync planning: which window to ask for, which transactions are new, where they go.

The Odoo layer feeds it what the database knows (watermark, identifiers already imported) and
persists what it returns; nothing here talks to a provider or to the database.
"""
import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta

from .types import TxnStatus

DEFAULT_OVERLAP_DAYS = 3

PERIODICITIES = ("none", "day", "week", "bimonthly", "month")


@dataclass(frozen=True)
class SyncWindow:
    date_from: date | None
    date_to: date

    @property
    def is_empty(self):
        """Nothing may be fetched (e.g. everything up to today is locked)."""
        return self.date_from is not None and self.date_from > self.date_to


def plan_window(today, *, watermark=None, first_sync_from=None, lock_date=None,
                max_history_days=None, overlap_days=DEFAULT_OVERLAP_DAYS):
    """Dates to ask the provider for.

    After a successful sync we go back ``overlap_days`` before the watermark, because banks book
    late transactions with an earlier date; de-duplication absorbs the overlap. Before the first
    sync we start at ``first_sync_from`` (the day after the journal's last line). Nothing is
    fetched on or before the lock date, nor before what the provider can serve; the window is
    empty when that leaves nothing up to today.
    """
    if watermark:
        start = watermark - timedelta(days=overlap_days)
    else:
        start = first_sync_from or None
    if lock_date:
        start = max(start, lock_date + timedelta(days=1)) if start else lock_date + timedelta(days=1)
    if max_history_days:
        oldest = today - timedelta(days=max_history_days)
        start = max(start, oldest) if start else oldest
    return SyncWindow(start, today)


def transaction_identifier(transaction, account_key):
    """The identifier stored on the statement line (unique per journal).

    ``account_key`` is the account's stable key, so the identifier survives a re-consent that
    changes the provider's account id.
    """
    return identifier_for(transaction.provider, account_key, transaction.external_id)


def identifier_for(provider, account_key, external_id):
    """``transaction_identifier`` of a transaction known only by its id (e.g. one the bank
    withdrew)."""
    return f"{provider}:{account_key}:{external_id}"


@dataclass
class Selection:
    new: list = field(default_factory=list)
    duplicates: int = 0
    pending: list = field(default_factory=list)
    out_of_window: int = 0


def select_new(transactions, known_identifiers, identifier, window=None):
    """Split fetched transactions into new booked ones, duplicates and pending ones.

    ``identifier`` maps a transaction to its stored identifier.
    ``known_identifiers`` is a set of the identifiers already in the journal: one set lookup per
    transaction, no per-line query. Duplicates inside the fetched batch count once. Booked
    transactions dated before ``window.date_from`` are ignored (the bank sent more than asked).
    """
    selection = Selection()
    seen = set(known_identifiers)
    for txn in transactions:
        if txn.status != TxnStatus.BOOKED:
            selection.pending.append(txn)
            continue
        if window and window.date_from and txn.date and txn.date < window.date_from:
            selection.out_of_window += 1
            continue
        key = identifier(txn)
        if key in seen:
            selection.duplicates += 1
            continue
        seen.add(key)
        selection.new.append(txn)
    selection.new.sort(key=lambda t: (t.date or date.min, t.external_id))
    return selection


def statement_period(day, periodicity):
    """(first day, last day) of the statement a line dated ``day`` belongs to; None: no statement."""
    if periodicity == "none":
        return None
    if periodicity == "day":
        return day, day
    if periodicity == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    last = calendar.monthrange(day.year, day.month)[1]
    if periodicity == "bimonthly":
        if day.day <= 15:
            return day.replace(day=1), day.replace(day=15)
        return day.replace(day=16), day.replace(day=last)
    if periodicity == "month":
        return day.replace(day=1), day.replace(day=last)
    raise ValueError(f"unknown statement periodicity {periodicity!r}")


def group_by_statement(transactions, periodicity):
    """{period or None: [transactions]} in date order, periods in date order."""
    groups = {}
    for txn in sorted(transactions, key=lambda t: (t.date, t.external_id)):
        groups.setdefault(statement_period(txn.date, periodicity), []).append(txn)
    return groups


def next_watermark(current, transactions):
    """The latest booked date now in the journal; never moves backwards."""
    dates = [t.date for t in transactions if t.status == TxnStatus.BOOKED and t.date]
    if current:
        dates.append(current)
    return max(dates) if dates else None


def first_divergence(bank_balance, bank_transactions, journal_balance, journal_totals_by_day):
    """First day on which the bank's and the journal's end-of-day balances differ.

    ``bank_balance`` and ``journal_balance`` are today's closing balances; the end-of-day balance
    of an earlier day is found by taking back the booked amounts dated after it.
    ``bank_transactions`` (booked) cover a range of days; only that range can be compared.
    Only end-of-day balances are compared (an opening line on the first day is no divergence).
    Returns ``(day, exact)``: ``exact`` is False when the balances already differ at the end of
    the first day of the range (the divergence is on that day or earlier).
    """
    if bank_balance == journal_balance:
        return None, True
    bank_by_day = {}
    for txn in bank_transactions:
        if txn.status == TxnStatus.BOOKED and txn.date:
            bank_by_day[txn.date] = bank_by_day.get(txn.date, 0) + txn.amount
    if not bank_by_day:
        return None, False
    days = sorted(set(bank_by_day) | {d for d in journal_totals_by_day if d >= min(bank_by_day)})
    bank, journal = bank_balance, journal_balance
    end_of_day = {}
    for day in reversed(days):
        end_of_day[day] = (bank, journal)
        bank -= bank_by_day.get(day, 0)
        journal -= journal_totals_by_day.get(day, 0)
    for day in days:
        if end_of_day[day][0] != end_of_day[day][1]:
            return day, day != days[0]
    return None, True
