"""services/sync.py: windows, de-duplication, statement periods, watermark."""
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.sync import (DEFAULT_OVERLAP_DAYS, Selection, SyncWindow, first_divergence,
                           group_by_statement,
                           next_watermark, plan_window, select_new, statement_period,
                           transaction_identifier)
from services.types import Transaction, TxnStatus

TODAY = date(2024, 5, 20)


def txn(external_id, day, status=TxnStatus.BOOKED, amount="10.00", provider="sandbox"):
    booked = status == TxnStatus.BOOKED
    return Transaction(provider=provider, account_external_id="acc_1", external_id=external_id,
                       id_is_synthetic=False, alt_ids={}, status=status, amount=Decimal(amount),
                       currency="EUR", booking_date=day if booked else None,
                       value_date=day if booked else None, transaction_date=day,
                       description=external_id, structured_reference=None,
                       counterparty_name=None, counterparty_iban=None)


def ident(transaction):
    return transaction_identifier(transaction, "BE14063123456783")


# ------------------------------------------------------------------------------ plan_window
def test_first_sync_starts_at_first_sync_from():
    window = plan_window(TODAY, first_sync_from=date(2024, 5, 1))
    assert window == SyncWindow(date(2024, 5, 1), TODAY)


def test_nothing_known_means_open_start():
    assert plan_window(TODAY) == SyncWindow(None, TODAY)


def test_watermark_goes_back_by_the_overlap():
    assert DEFAULT_OVERLAP_DAYS == 3
    assert plan_window(TODAY, watermark=date(2024, 5, 18)).date_from == date(2024, 5, 15)
    assert plan_window(TODAY, watermark=date(2024, 5, 18), overlap_days=7).date_from == \
        date(2024, 5, 11)
    assert plan_window(TODAY, watermark=date(2024, 5, 18), overlap_days=0).date_from == \
        date(2024, 5, 18)


def test_watermark_wins_over_first_sync_from():
    window = plan_window(TODAY, watermark=date(2024, 5, 10), first_sync_from=date(2024, 1, 1))
    assert window.date_from == date(2024, 5, 7)


def test_overlap_crosses_month_and_year_boundaries():
    assert plan_window(date(2024, 1, 5), watermark=date(2024, 1, 2)).date_from == \
        date(2023, 12, 30)
    assert plan_window(date(2024, 3, 5), watermark=date(2024, 3, 2)).date_from == \
        date(2024, 2, 28)


def test_lock_date_is_never_fetched():
    window = plan_window(TODAY, watermark=date(2024, 5, 2), lock_date=date(2024, 4, 30))
    assert window.date_from == date(2024, 5, 1)  # not 2024-04-29
    assert plan_window(TODAY, lock_date=date(2024, 3, 31)).date_from == date(2024, 4, 1)
    # a lock date before the overlap does not move the start
    assert plan_window(TODAY, watermark=date(2024, 5, 18), lock_date=date(2024, 1, 31)) \
        .date_from == date(2024, 5, 15)


def test_max_history_caps_the_start():
    assert plan_window(TODAY, first_sync_from=date(2023, 1, 1), max_history_days=90).date_from \
        == TODAY - timedelta(days=90)
    assert plan_window(TODAY, max_history_days=90).date_from == date(2024, 2, 20)
    assert plan_window(TODAY, first_sync_from=date(2024, 5, 1), max_history_days=90).date_from \
        == date(2024, 5, 1)
    assert plan_window(TODAY, watermark=date(2023, 6, 1), max_history_days=30).date_from == \
        date(2024, 4, 20)


def test_lock_date_and_max_history_together_take_the_later():
    window = plan_window(TODAY, first_sync_from=date(2023, 1, 1), lock_date=date(2024, 3, 31),
                         max_history_days=90)
    assert window.date_from == date(2024, 4, 1)
    window = plan_window(TODAY, first_sync_from=date(2023, 1, 1), lock_date=date(2023, 12, 31),
                         max_history_days=90)
    assert window.date_from == date(2024, 2, 20)


def test_start_after_today_gives_an_empty_window():
    window = plan_window(TODAY, first_sync_from=date(2024, 6, 1))
    assert window.is_empty
    assert window.date_to == TODAY
    assert plan_window(TODAY, watermark=date(2024, 6, 30)).is_empty


# ------------------------------------------------------------------------------ select_new
def test_identifier_uses_the_stable_account_key():
    a = txn("txn_1", TODAY)
    assert transaction_identifier(a, "BE14063123456783") == "sandbox:BE14063123456783:txn_1"
    renewed = txn("txn_1", TODAY)
    renewed.account_external_id = "acc_other_consent"
    assert ident(renewed) == ident(a)


def test_select_new_skips_known_and_in_batch_duplicates():
    known = {ident(txn("txn_old", date(2024, 5, 10)))}
    batch = [txn("txn_b", date(2024, 5, 12)), txn("txn_old", date(2024, 5, 10)),
             txn("txn_a", date(2024, 5, 11)), txn("txn_b", date(2024, 5, 12)),
             txn("txn_b", date(2024, 5, 12))]
    selection = select_new(batch, known, ident)
    assert isinstance(selection, Selection)
    assert [t.external_id for t in selection.new] == ["txn_a", "txn_b"]
    assert selection.duplicates == 3  # one known, two repeated in the batch
    assert known == {ident(txn("txn_old", date(2024, 5, 10)))}  # the caller's set is untouched


def test_select_new_keeps_pending_apart():
    batch = [txn("pdg_1", TODAY, TxnStatus.PENDING), txn("txn_1", date(2024, 5, 19)),
             txn("pdg_2", TODAY, TxnStatus.PENDING)]
    selection = select_new(batch, set(), ident)
    assert [t.external_id for t in selection.new] == ["txn_1"]
    assert [t.external_id for t in selection.pending] == ["pdg_1", "pdg_2"]
    assert selection.duplicates == 0


def test_select_new_ignores_booked_lines_before_the_window():
    window = SyncWindow(date(2024, 5, 15), TODAY)
    batch = [txn("txn_early", date(2024, 5, 14)), txn("txn_edge", date(2024, 5, 15)),
             txn("txn_late", date(2024, 5, 20))]
    selection = select_new(batch, set(), ident, window)
    assert [t.external_id for t in selection.new] == ["txn_edge", "txn_late"]
    assert selection.out_of_window == 1
    open_window = select_new(batch, set(), ident, SyncWindow(None, TODAY))
    assert len(open_window.new) == 3 and open_window.out_of_window == 0


def test_select_new_orders_by_date_then_id():
    batch = [txn("txn_c", date(2024, 5, 2)), txn("txn_b", date(2024, 5, 1)),
             txn("txn_a", date(2024, 5, 2))]
    assert [t.external_id for t in select_new(batch, set(), ident).new] == [
        "txn_b", "txn_a", "txn_c"]


def test_overlapping_fetches_import_each_line_once():
    first = [txn(f"txn_{day}", date(2024, 5, day)) for day in range(10, 19)]
    journal = set()
    imported = select_new(first, journal, ident).new
    journal |= {ident(t) for t in imported}
    window = plan_window(TODAY, watermark=next_watermark(None, imported))
    second = [txn(f"txn_{day}", date(2024, 5, day)) for day in range(window.date_from.day, 21)]
    again = select_new(second, journal, ident, window)
    assert [t.external_id for t in again.new] == ["txn_19", "txn_20"]
    assert again.duplicates == 18 - window.date_from.day + 1


# ------------------------------------------------------------------------------ statement_period
def test_statement_period_none_and_day():
    assert statement_period(TODAY, "none") is None
    assert statement_period(TODAY, "day") == (TODAY, TODAY)


@pytest.mark.parametrize("day, expected", [
    (date(2024, 5, 20), (date(2024, 5, 20), date(2024, 5, 26))),  # a Monday
    (date(2024, 5, 26), (date(2024, 5, 20), date(2024, 5, 26))),  # a Sunday
    (date(2024, 1, 1), (date(2024, 1, 1), date(2024, 1, 7))),
    (date(2023, 12, 31), (date(2023, 12, 25), date(2023, 12, 31))),
    (date(2024, 2, 29), (date(2024, 2, 26), date(2024, 3, 3))),
])
def test_statement_period_week_runs_monday_to_sunday(day, expected):
    assert statement_period(day, "week") == expected


@pytest.mark.parametrize("day, expected", [
    (date(2024, 2, 1), (date(2024, 2, 1), date(2024, 2, 15))),
    (date(2024, 2, 15), (date(2024, 2, 1), date(2024, 2, 15))),
    (date(2024, 2, 16), (date(2024, 2, 16), date(2024, 2, 29))),
    (date(2023, 2, 28), (date(2023, 2, 16), date(2023, 2, 28))),
    (date(2024, 4, 30), (date(2024, 4, 16), date(2024, 4, 30))),
    (date(2024, 12, 31), (date(2024, 12, 16), date(2024, 12, 31))),
])
def test_statement_period_bimonthly(day, expected):
    assert statement_period(day, "bimonthly") == expected


@pytest.mark.parametrize("day, expected", [
    (date(2024, 2, 10), (date(2024, 2, 1), date(2024, 2, 29))),
    (date(2023, 2, 10), (date(2023, 2, 1), date(2023, 2, 28))),
    (date(2000, 2, 29), (date(2000, 2, 1), date(2000, 2, 29))),
    (date(1900, 2, 1), (date(1900, 2, 1), date(1900, 2, 28))),
    (date(2024, 4, 30), (date(2024, 4, 1), date(2024, 4, 30))),
    (date(2024, 12, 31), (date(2024, 12, 1), date(2024, 12, 31))),
    (date(2024, 1, 1), (date(2024, 1, 1), date(2024, 1, 31))),
])
def test_statement_period_month(day, expected):
    assert statement_period(day, "month") == expected


def test_statement_period_unknown():
    with pytest.raises(ValueError):
        statement_period(TODAY, "fortnight")


# ------------------------------------------------------------------------------ group_by_statement
def test_group_by_statement_month():
    lines = [txn("txn_3", date(2024, 3, 1)), txn("txn_1", date(2024, 2, 29)),
             txn("txn_2", date(2024, 2, 1)), txn("txn_0", date(2024, 2, 29))]
    groups = group_by_statement(lines, "month")
    assert list(groups) == [(date(2024, 2, 1), date(2024, 2, 29)),
                            (date(2024, 3, 1), date(2024, 3, 31))]
    assert [t.external_id for t in groups[(date(2024, 2, 1), date(2024, 2, 29))]] == [
        "txn_2", "txn_0", "txn_1"]


def test_group_by_statement_none_is_one_group():
    lines = [txn("txn_2", date(2024, 3, 1)), txn("txn_1", date(2024, 2, 1))]
    groups = group_by_statement(lines, "none")
    assert list(groups) == [None]
    assert [t.external_id for t in groups[None]] == ["txn_1", "txn_2"]


def test_group_by_statement_day_and_week():
    lines = [txn(f"txn_{n}", date(2024, 5, 17) + timedelta(days=n)) for n in range(5)]
    assert len(group_by_statement(lines, "day")) == 5
    weeks = group_by_statement(lines, "week")  # Fri 17 .. Tue 21
    assert list(weeks) == [(date(2024, 5, 13), date(2024, 5, 19)),
                           (date(2024, 5, 20), date(2024, 5, 26))]
    assert [len(v) for v in weeks.values()] == [3, 2]
    assert group_by_statement([], "month") == {}


# ------------------------------------------------------------------------------ next_watermark
def test_next_watermark_is_the_latest_booked_date():
    lines = [txn("txn_1", date(2024, 5, 10)), txn("txn_2", date(2024, 5, 12)),
             txn("pdg_1", date(2024, 5, 20), TxnStatus.PENDING)]
    assert next_watermark(None, lines) == date(2024, 5, 12)  # pending lines do not count
    assert next_watermark(date(2024, 5, 1), lines) == date(2024, 5, 12)


def test_next_watermark_never_moves_backwards():
    assert next_watermark(date(2024, 5, 15), [txn("txn_1", date(2024, 5, 10))]) == \
        date(2024, 5, 15)
    assert next_watermark(date(2024, 5, 15), []) == date(2024, 5, 15)
    assert next_watermark(None, []) is None
    assert next_watermark(None, [txn("pdg", TODAY, TxnStatus.PENDING)]) is None


def test_window_is_empty_when_everything_up_to_today_is_locked():
    window = plan_window(TODAY, watermark=TODAY - timedelta(days=1), lock_date=TODAY)
    assert window.is_empty
    assert not plan_window(TODAY, lock_date=TODAY - timedelta(days=1)).is_empty
    assert not plan_window(TODAY).is_empty


# ------------------------------------------------------------------------------ balance checkpoint
def _booked(day, amount):
    return txn(f"t{day}{amount}", day, amount=Decimal(amount))


def test_balances_that_agree_have_no_divergence():
    assert first_divergence(Decimal("100"), [], Decimal("100"), {}) == (None, True)


def test_first_divergence_finds_the_missing_day():
    d1, d2, d3 = TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY
    bank = [_booked(d1, "10"), _booked(d2, "-4"), _booked(d3, "5")]
    # The journal lacks the -4 of d2: it agrees at the end of d1, not from d2 on.
    journal_days = {d1: Decimal("10"), d3: Decimal("5")}
    assert first_divergence(Decimal("111"), bank, Decimal("115"), journal_days) == (d2, True)


def test_divergence_before_the_compared_range_is_not_exact():
    d1 = TODAY - timedelta(days=1)
    bank = [_booked(d1, "10")]
    day, exact = first_divergence(Decimal("50"), bank, Decimal("60"), {d1: Decimal("10")})
    assert (day, exact) == (d1, False)
