"""One identity across sources: same identifier, or per day and amount as many lines as the
source that saw the most."""
from datetime import date
from decimal import Decimal
from functools import partial

from services import identity
from services.sync import transaction_identifier
from test_sync import txn

D1, D2 = date(2026, 5, 3), date(2026, 5, 4)
ident = partial(transaction_identifier, account_key="BE71096123456769")


def plan(transactions, known=(), counts=None):
    return identity.plan_import(transactions, ident, set(known), counts or {})


def test_everything_new_in_an_empty_journal():
    batch = [txn("a", D1), txn("b", D1), txn("c", D2, amount="-4.20")]
    result = plan(batch)
    assert [t.external_id for t in result.new] == ["a", "b", "c"]
    assert result.skipped == []


def test_known_identifier_is_skipped_with_its_reason():
    a, b = txn("a", D1), txn("b", D2)
    result = plan([a, b], known=[ident(a)], counts={identity.content_key(D1, "10.00"): 1})
    assert result.new == [b]
    assert result.skipped == [(a, identity.SKIP_SAME_IDENTIFIER)]


def test_twice_in_one_batch_counts_once():
    a = txn("a", D1)
    result = plan([a, txn("a", D1)])
    assert result.new == [a]
    assert result.skipped_count(identity.SKIP_TWICE_IN_BATCH) == 1


def test_file_line_already_synced_is_recognised_by_day_and_amount():
    from_file = txn("FIT-1", D1, provider="file")
    result = plan([from_file], counts={identity.content_key(D1, Decimal("10")): 1})
    assert result.new == []
    assert result.skipped == [(from_file, identity.SKIP_SAME_CONTENT)]


def test_second_coffee_of_the_day_is_not_lost():
    # The journal holds one 10.00 on D1 (from a file); the bank now shows two: one is new.
    batch = [txn("a", D1), txn("b", D1)]
    result = plan(batch, counts={identity.content_key(D1, "10.00"): 1})
    assert len(result.new) == 1
    assert result.skipped_count(identity.SKIP_SAME_CONTENT) == 1


def test_late_booked_line_with_an_earlier_date_is_new():
    # First sync saw "a"; the bank later books "b" on the same day for the same amount.
    a, b = txn("a", D1), txn("b", D1)
    result = plan([a, b], known=[ident(a)], counts={identity.content_key(D1, "10.00"): 1})
    assert result.new == [b]


def test_booked_transaction_reissued_under_a_new_id_is_not_duplicated():
    renamed = txn("new-id", D1)
    result = plan([renamed], counts={identity.content_key(D1, "10.00"): 1})
    assert result.new == []


def test_other_amounts_or_days_do_not_match():
    batch = [txn("a", D1, amount="10.01"), txn("b", D2)]
    result = plan(batch, counts={identity.content_key(D1, "10.00"): 1})
    assert [t.external_id for t in result.new] == ["a", "b"]


def test_content_key_rounds_to_the_cent():
    assert identity.content_key(D1, Decimal("-3.5")) == identity.content_key(D1, "-3.500")
