"""The Plaid adapter, through real HTTP to the Plaid simulator on 127.0.0.1."""
import logging
from datetime import date, timedelta, timezone
from decimal import Decimal

import pytest

from conftest import SleepRecorder
from services.errors import ErrorCategory, ProviderError
from services.providers import available_providers, get_adapter_class
from services.providers.plaid import (PlaidAdapter, map_account, map_balances, map_transaction,
                                      plaid_language, statement_amount, with_query)
from services.types import ConsentStatus, TxnStatus
from simulators.plaid import PlaidServer, simulate_user
from simulators.plaid.data import is_valid_iban

REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
EU_CHECKING_IBAN = "BE41063012345610"


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def plaid():
    server = PlaidServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def make_adapter(plaid, sleeps):
    def make(config=None, **options):
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", (1, 5))
        return PlaidAdapter({"base_url": plaid.url, "client_id": plaid.client_id,
                             "secret": plaid._secret, "environment": "sandbox",
                             "country_codes": ["BE"], **(config or {})}, **options)
    return make


@pytest.fixture
def adapter(make_adapter):
    return make_adapter()


def connect(adapter, decision="approve", consent=None, language=None):
    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "state-123", consent=consent,
                                  language=language)
    callback = simulate_user(start.redirect_url, decision)
    assert callback == {"state": "state-123"}
    return adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)


@pytest.fixture
def consent(adapter):
    return connect(adapter)


def account_by_iban(adapter, consent, iban=EU_CHECKING_IBAN):
    return next(a for a in adapter.list_accounts(consent) if a.iban == iban)


# ------------------------------------------------------------------------------ registry
def test_adapter_is_registered():
    assert get_adapter_class("plaid") is PlaidAdapter
    assert ("plaid", "Plaid") in available_providers()
    assert PlaidAdapter.uses_pkce is False and PlaidAdapter.max_history_days == 730
    assert PlaidAdapter({}).base_url == "https://production.plaid.com"
    assert PlaidAdapter({"environment": "sandbox"}).base_url == "https://sandbox.plaid.com"
    assert PlaidAdapter({"base_url": "http://127.0.0.1:9/"}).base_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError):
        PlaidAdapter({"environment": "development"})


# ------------------------------------------------------------------------------ institutions
def test_list_institutions(make_adapter, plaid):
    adapter = make_adapter()
    eu = adapter.list_institutions()
    assert [i.external_id for i in eu] == ["ins_sim_eu_1"]
    assert eu[0].provider == "plaid" and "BE" in eu[0].countries and eu[0].logo_url is None
    us = adapter.list_institutions(country="us")  # offset paging: 621 institutions, 2 pages
    assert len(us) == 621 and len({i.external_id for i in us}) == 621
    assert plaid.stats()["requests"]["POST /institutions/get"] == 3  # 1 (BE) + 2 (US)
    found = adapter.list_institutions(country="US", query="first platypus")
    assert [i.external_id for i in found] == ["ins_109508"]
    assert found[0].logo_url.startswith("data:image/png;base64,")
    assert "logo" not in found[0].raw
    before = plaid.stats()["total"]
    assert adapter.list_institutions(country="JP") == []  # not a Plaid country: no call
    assert plaid.stats()["total"] == before


def test_wrong_secret_is_auth_invalid(make_adapter):
    adapter = make_adapter({"secret": "not-the-secret-42"})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    error = caught.value
    assert error.category == ErrorCategory.AUTH_INVALID and error.code == "INVALID_API_KEYS"
    assert error.http_status == 400 and error.retryable is False
    assert "not-the-secret-42" not in str(error) and "not-the-secret-42" not in repr(error.raw)


# ------------------------------------------------------------------------------ consent
def test_consent_flow_through_hosted_link(adapter, plaid):
    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "st-1", language="fr_BE",
                                  valid_days=500)
    assert start.redirect_url.startswith(f"{plaid.url}/hl/") and start.state == "st-1"
    assert start.code_verifier is None and start.pending_data["link_token"].startswith(
        "link-sandbox-")
    asked = plaid.link_token_info(start.pending_data["link_token"])
    assert asked["language"] == "fr" and asked["country_codes"] == ["BE"]
    assert asked["products"] == ["transactions"] and asked["optional_products"] == ["auth"]
    assert asked["completion_redirect_uri"] == REDIRECT_URI + "?state=st-1"
    assert asked["update_mode"] is False and asked["days_requested"] == 90

    callback = simulate_user(start.redirect_url, "approve")
    assert callback == {"state": "st-1"}
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.provider == "plaid" and consent.status == ConsentStatus.ACTIVE
    assert consent.institution_id == "ins_sim_eu_1"
    assert [item["item_id"] for item in plaid.items()] == [consent.external_id]
    assert set(consent.secrets) == {"access_token"}
    assert consent.secrets["access_token"].startswith("access-sandbox-")
    assert "access_token" not in consent.raw
    assert consent.valid_until.tzinfo == timezone.utc  # EU consent: 180 days
    assert abs(consent.valid_until - (plaid.now() + timedelta(days=180))) < timedelta(minutes=1)


def test_us_item_has_no_consent_expiry_and_no_iban(make_adapter):
    adapter = make_adapter({"country_codes": ["US"]})
    consent = connect(adapter)
    assert consent.institution_id == "ins_109508" and consent.valid_until is None
    accounts = {a.kind: a for a in adapter.list_accounts(consent)}
    assert set(accounts) == {"checking", "card"}
    checking, card = accounts["checking"], accounts["card"]
    assert checking.iban is None and len(checking.stable_key) == 64  # persistent_account_id
    assert checking.currency == "USD" and checking.account_number_masked == "****0000"
    booked = next(b for b in adapter.get_balances(consent, card.external_id) if b.kind == "booked")
    assert booked.amount < 0  # what is owed on a credit card is a negative balance
    assert [b.kind for b in adapter.get_balances(consent, card.external_id)] == ["booked"]


def test_cancelled_link_is_user_action_required(adapter, plaid):
    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "st-2")
    callback = simulate_user(start.redirect_url, "cancel")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED and error.code == "LINK_EXIT"
    assert error.raw["status"] == "requires_oauth" and "requires_oauth" in error.message
    assert error.user_message
    assert plaid.items() == [] and "POST /item/public_token/exchange" not in plaid.stats()[
        "requests"]


def test_link_results_are_polled_a_bounded_number_of_times(adapter, plaid, sleeps):
    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url)
    plaid.add_fault("link_session_pending", times=2)
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.status == ConsentStatus.ACTIVE and sleeps.waits == [1.0, 1.0]

    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url)
    plaid.add_fault("link_session_pending", times=None)
    calls = plaid.stats()["requests"]["POST /link/token/get"]
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.code == "LINK_NOT_COMPLETED"
    assert caught.value.category == ErrorCategory.USER_ACTION_REQUIRED
    assert plaid.stats()["requests"]["POST /link/token/get"] - calls == 4


def test_public_token_exchange_is_never_retried(adapter, plaid):
    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url)
    plaid.add_fault("http_500", path="/item/public_token/exchange")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert caught.value.code == "INTERNAL_SERVER_ERROR" and caught.value.http_status == 500
    assert plaid.stats()["requests"]["POST /item/public_token/exchange"] == 1


def test_complete_consent_without_link_token(adapter):
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"state": "x"}, REDIRECT_URI, pending_data={})
    assert caught.value.category == ErrorCategory.BAD_REQUEST


# ------------------------------------------------------------------------------ accounts
def test_list_accounts_with_ibans(adapter, consent, plaid):
    accounts = adapter.list_accounts(consent)
    assert [(a.currency, a.kind) for a in accounts] == [
        ("EUR", "checking"), ("EUR", "savings"), ("GBP", "checking")]
    for account in accounts:
        assert is_valid_iban(account.iban) and account.stable_key == account.iban
        assert account.consent_external_id == consent.external_id
        assert account.external_id in plaid.items()[0]["accounts"]
    assert accounts[0].iban == EU_CHECKING_IBAN and accounts[0].raw["bic"] == "PLATBEBB"
    assert accounts[0].account_number_masked == "****5610"


def test_without_auth_the_account_id_is_the_stable_key(make_adapter, plaid):
    adapter = make_adapter({"fetch_iban": False})
    consent = connect(adapter)
    accounts = adapter.list_accounts(consent)
    assert all(a.iban is None and a.stable_key == a.external_id for a in accounts)
    assert "POST /auth/get" not in plaid.stats()["requests"]
    assert plaid.link_token_info(next(iter(plaid._link_tokens)))["optional_products"] == []


def test_auth_errors_do_not_break_the_account_list(adapter, consent, plaid):
    plaid.add_fault("PRODUCTS_NOT_SUPPORTED", path="/auth/get")
    accounts = adapter.list_accounts(consent)
    assert len(accounts) == 3 and all(a.iban is None for a in accounts)
    plaid.add_fault("INVALID_API_KEYS", path="/auth/get")  # our keys: that must surface
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_INVALID


def test_balances(make_adapter, plaid, consent):
    adapter = make_adapter()
    account = account_by_iban(adapter, consent)
    expected = plaid.expected_balances(EU_CHECKING_IBAN)
    balances = {b.kind: b for b in adapter.get_balances(consent, account.external_id)}
    assert balances["booked"].amount == expected["current"]
    assert balances["available"].amount == expected["available"]
    assert balances["booked"].currency == "EUR" and balances["booked"].reference_date is None
    assert "POST /accounts/balance/get" not in plaid.stats()["requests"]

    present = make_adapter(user_present=True)  # the user is there: real-time balance
    live = present.get_balances(consent, account.external_id)
    assert plaid.stats()["requests"]["POST /accounts/balance/get"] == 1
    assert live[0].amount == expected["current"] and live[0].reference_date == plaid.today
    cached = make_adapter({"realtime_balance": False}, user_present=True)
    cached.get_balances(consent, account.external_id)
    assert plaid.stats()["requests"]["POST /accounts/balance/get"] == 1

    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, "no-such-account")
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "INVALID_ACCOUNT_ID"


# ------------------------------------------------------------------------------ transactions
def test_fetch_transactions_pages_to_the_end(make_adapter, plaid):
    plaid.configure(txns_per_day={"EUR": 6})
    adapter = make_adapter({"page_size": 100})
    consent = connect(adapter)
    account = account_by_iban(adapter, consent)
    page = adapter.fetch_transactions(consent, account.external_id, None, None)

    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    pending = [t for t in page.added if t.status == TxnStatus.PENDING]
    expected = plaid.expected_booked(account.external_id, date(2000, 1, 1), plaid.today)
    assert len(expected) == 6 * 91
    assert sorted(t.external_id for t in booked) == sorted(t["transaction_id"] for t in expected)
    assert sorted(t.external_id for t in pending) == sorted(
        t["transaction_id"] for t in plaid.expected_pending(account.external_id))
    assert pending and all(t.booking_date is None and t.transaction_date == plaid.today
                           for t in pending)
    by_id = {t["transaction_id"]: t for t in expected}
    for txn in booked:
        raw = by_id[txn.external_id]
        assert txn.amount == -Decimal(str(raw["amount"]))  # Plaid: positive = money out
        assert txn.booking_date == date.fromisoformat(raw["date"])
        assert txn.transaction_date == date.fromisoformat(raw["authorized_date"])
        assert txn.currency == "EUR" and txn.account_external_id == account.external_id
    assert any(t.amount > 0 for t in booked) and any(t.amount < 0 for t in booked)
    assert any(t.counterparty_iban and is_valid_iban(t.counterparty_iban) for t in booked)
    assert any(t.structured_reference and t.structured_reference.startswith("+++")
               for t in booked)
    assert page.next_cursor and page.removed_external_ids == [] and page.modified == []
    total = len(page.added)
    assert plaid.stats()["requests"]["POST /transactions/sync"] == -(-total // 100) > 5

    again = adapter.fetch_transactions(consent, account.external_id, None, None,
                                       cursor=page.next_cursor)
    assert again.added == [] and again.removed_external_ids == []
    assert again.next_cursor == page.next_cursor


def test_pending_posts_under_a_new_id(adapter, consent, plaid):
    account = account_by_iban(adapter, consent)
    first = adapter.fetch_transactions(consent, account.external_id, None, None)
    pending = {t.external_id: t for t in first.added if t.status == TxnStatus.PENDING}
    assert pending
    plaid.advance_days(1)
    second = adapter.fetch_transactions(consent, account.external_id, None, None,
                                        cursor=first.next_cursor)
    assert set(second.removed_external_ids) == set(pending)
    posted = [t for t in second.added if t.replaces_external_id]
    assert {t.replaces_external_id for t in posted} == set(pending)
    for txn in posted:
        before = pending[txn.replaces_external_id]
        assert txn.status == TxnStatus.BOOKED and txn.external_id != before.external_id
        assert txn.amount == before.amount and txn.booking_date == plaid.today
        assert txn.transaction_date == before.transaction_date
        assert txn.alt_ids["pending_transaction_id"] == before.external_id
    new_pending = [t for t in second.added if t.status == TxnStatus.PENDING]
    assert new_pending and all(t.transaction_date == plaid.today for t in new_pending)


def test_removed_and_modified_transactions(adapter, consent, plaid):
    account = account_by_iban(adapter, consent)
    first = adapter.fetch_transactions(consent, account.external_id, None, None)
    booked = [t for t in first.added if t.status == TxnStatus.BOOKED]
    plaid.remove_transaction(booked[0].external_id)
    plaid.modify_transaction(booked[1].external_id, name="CORRECTED DESCRIPTION")
    second = adapter.fetch_transactions(consent, account.external_id, None, None,
                                        cursor=first.next_cursor)
    assert second.removed_external_ids == [booked[0].external_id]
    assert [t.external_id for t in second.modified] == [booked[1].external_id]
    assert second.modified[0].description.startswith("CORRECTED DESCRIPTION")
    assert second.added == []


def test_mutation_during_pagination_restarts_from_the_original_cursor(make_adapter, plaid,
                                                                      sleeps):
    adapter = make_adapter({"page_size": 50})
    consent = connect(adapter)
    account = account_by_iban(adapter, consent)
    plaid.add_fault("transactions_sync_mutation_during_pagination", times=1, skip=1)
    page = adapter.fetch_transactions(consent, account.external_id, None, None)
    ids = [t.external_id for t in page.added]
    assert len(ids) == len(set(ids)) == 3 * 91 + len(plaid.expected_pending(
        account.external_id))
    pages = -(-len(ids) // 50)
    # pages 1, 2 (skipped), 3 fails -> restart: pages 1..n again
    assert plaid.stats()["requests"]["POST /transactions/sync"] == 3 + pages
    assert sleeps.waits == [0.5]

    plaid.add_fault("transactions_sync_mutation_during_pagination", times=None)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, account.external_id, None, None)
    assert caught.value.code == "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert sleeps.waits == [0.5, 0.5, 1.0, 2.0]  # bounded: 3 restarts


def test_first_sync_not_ready(adapter, consent, plaid):
    account = account_by_iban(adapter, consent)
    plaid.add_fault("transactions_not_ready")
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, account.external_id, None, None)
    assert caught.value.category == ErrorCategory.NOT_READY
    assert adapter.fetch_transactions(consent, account.external_id, None, None).added


def test_a_foreign_cursor_is_refused(adapter, consent):
    accounts = adapter.list_accounts(consent)
    page = adapter.fetch_transactions(consent, accounts[0].external_id, None, None)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, accounts[1].external_id, None, None,
                                   cursor=page.next_cursor)
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "INVALID_FIELD"


# ------------------------------------------------------------------------------ pure mapping
RAW_TXN = {
    "account_id": "acc1", "transaction_id": "txn1", "amount": 12.5, "iso_currency_code": "EUR",
    "unofficial_currency_code": None, "date": "2025-03-14", "authorized_date": "2025-03-13",
    "datetime": "2025-03-15T03:30:00Z", "authorized_datetime": None, "pending": False,
    "pending_transaction_id": "pend1", "name": "CAFE DU COIN PARIS",
    "merchant_name": "Café du Coin", "transaction_code": "purchase",
    "payment_meta": {"reference_number": "RF18539007547034", "payee": None, "payer": None,
                     "reason": "Table 4"},
    "counterparties": [{"name": "Visa", "type": "financial_institution"},
                       {"name": "Café du Coin", "type": "merchant",
                        "account_numbers": {"international": {"iban": "FR76 3000 4000 0312 "
                                                              "3456 7890 143",
                                                              "bic": "BNPAFRPP"}}}],
    "personal_finance_category": {"primary": "FOOD_AND_DRINK",
                                  "detailed": "FOOD_AND_DRINK_COFFEE"},
}


def test_map_transaction_sign_dates_and_fields():
    txn = map_transaction(RAW_TXN, "acc1")
    assert txn.amount == Decimal("-12.5") and txn.currency == "EUR"
    # the bank's calendar date, not the UTC date of "datetime" (the 15th)
    assert txn.booking_date == date(2025, 3, 14) and txn.transaction_date == date(2025, 3, 13)
    assert txn.value_date is None and txn.date == date(2025, 3, 14)
    assert txn.status == TxnStatus.BOOKED and txn.replaces_external_id == "pend1"
    assert txn.alt_ids == {"transaction_id": "txn1", "pending_transaction_id": "pend1"}
    assert txn.id_is_synthetic is False and txn.external_id == "txn1"
    assert txn.counterparty_name == "Café du Coin"  # the merchant, not the card scheme
    assert txn.counterparty_iban == "FR7630004000031234567890143"
    assert txn.counterparty_bic == "BNPAFRPP"
    assert txn.structured_reference == "RF18539007547034"
    assert txn.description == "CAFE DU COIN PARIS - Table 4"
    assert txn.category == "FOOD_AND_DRINK_COFFEE" and txn.bank_transaction_code == "purchase"
    assert txn.original_amount is None and txn.original_currency is None

    refund = map_transaction(dict(RAW_TXN, amount=-1000, pending=True,
                                  payment_meta={"payer": "Dupont SA"}), "acc1")
    assert refund.amount == Decimal("1000") and refund.status == TxnStatus.PENDING
    assert refund.booking_date is None and refund.transaction_date == date(2025, 3, 13)
    assert refund.replaces_external_id is None and refund.counterparty_name == "Dupont SA"
    odd = map_transaction(dict(RAW_TXN, amount=1850.1, iso_currency_code=None,
                               unofficial_currency_code="BTC", authorized_date=None), "acc1")
    assert odd.amount == Decimal("-1850.1") and odd.currency == "BTC"
    assert odd.transaction_date == date(2025, 3, 14)
    with pytest.raises(ValueError):
        map_transaction(dict(RAW_TXN, iso_currency_code=None), "acc1")


def test_pure_helpers():
    assert statement_amount(0.1) == Decimal("-0.1") and statement_amount(-7) == Decimal("7")
    assert statement_amount(0) == Decimal("0") and not statement_amount(0).is_signed()
    with pytest.raises(ValueError):
        statement_amount(True)
    assert plaid_language("fr_BE") == "fr" and plaid_language("nl-be") == "nl"
    assert plaid_language("tlh") == "en" and plaid_language(None) == "en"
    assert with_query("http://h/cb?a=1&state=old", state="new") == "http://h/cb?a=1&state=new"
    account = map_account({"account_id": "a", "balances": {"unofficial_currency_code": "XBT"},
                           "type": "loan", "subtype": "student", "mask": None}, "item")
    assert account.kind == "loan" and account.currency == "XBT" and account.stable_key == "a"
    assert account.account_number_masked is None
    loan = map_balances({"account_id": "a", "type": "loan",
                         "balances": {"current": 900.25, "available": None,
                                      "iso_currency_code": "USD",
                                      "last_updated_datetime": "2025-01-31T23:59:00Z"}})
    assert [(b.kind, b.amount, b.reference_date) for b in loan] == [
        ("booked", Decimal("-900.25"), date(2025, 1, 31))]


# ------------------------------------------------------------------------------ errors
ERROR_CASES = [
    ("ITEM_LOGIN_REQUIRED", ErrorCategory.AUTH_EXPIRED, 400),
    ("USER_PERMISSION_REVOKED", ErrorCategory.AUTH_EXPIRED, 400),
    ("ACCESS_NOT_GRANTED", ErrorCategory.USER_ACTION_REQUIRED, 400),
    ("NO_ACCOUNTS", ErrorCategory.USER_ACTION_REQUIRED, 400),
    ("USER_SETUP_REQUIRED", ErrorCategory.USER_ACTION_REQUIRED, 400),
    ("PRODUCTS_NOT_SUPPORTED", ErrorCategory.USER_ACTION_REQUIRED, 400),
    ("PRODUCT_NOT_READY", ErrorCategory.NOT_READY, 400),
    ("ITEM_NOT_FOUND", ErrorCategory.NOT_FOUND, 400),
    ("TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION", ErrorCategory.PROVIDER_ERROR, 400),
    ("INSTITUTION_DOWN", ErrorCategory.INSTITUTION_DOWN, 400),
    ("INSTITUTION_NOT_RESPONDING", ErrorCategory.INSTITUTION_DOWN, 400),
    ("INSTITUTION_NOT_AVAILABLE", ErrorCategory.INSTITUTION_DOWN, 400),
    ("INSTITUTION_NOT_FOUND", ErrorCategory.BAD_REQUEST, 400),
    ("INSTITUTION_NOT_ENABLED_IN_ENVIRONMENT", ErrorCategory.BAD_REQUEST, 400),
    ("RATE_LIMIT_EXCEEDED", ErrorCategory.RATE_LIMITED, 429),
    ("RATE_LIMIT", ErrorCategory.RATE_LIMITED, 429),
    ("ACCOUNTS_LIMIT", ErrorCategory.RATE_LIMITED, 429),
    ("BALANCE_LIMIT", ErrorCategory.RATE_LIMITED, 429),
    ("AUTH_LIMIT", ErrorCategory.RATE_LIMITED, 429),
    ("ITEM_GET_LIMIT", ErrorCategory.RATE_LIMITED, 429),
    ("TRANSACTIONS_LIMIT", ErrorCategory.RATE_LIMITED, 429),
    ("TRANSACTIONS_SYNC_LIMIT", ErrorCategory.RATE_LIMITED, 429),
    ("INVALID_ACCESS_TOKEN", ErrorCategory.AUTH_INVALID, 400),
    ("INVALID_API_KEYS", ErrorCategory.AUTH_INVALID, 400),
    ("INVALID_PUBLIC_TOKEN", ErrorCategory.AUTH_INVALID, 400),
    ("INVALID_LINK_TOKEN", ErrorCategory.BAD_REQUEST, 400),
    ("INVALID_ACCOUNT_ID", ErrorCategory.BAD_REQUEST, 400),
    ("MISSING_FIELDS", ErrorCategory.BAD_REQUEST, 400),
    ("INVALID_FIELD", ErrorCategory.BAD_REQUEST, 400),
    ("UNKNOWN_FIELDS", ErrorCategory.BAD_REQUEST, 400),
    ("INVALID_BODY", ErrorCategory.BAD_REQUEST, 400),
    ("INVALID_HEADERS", ErrorCategory.BAD_REQUEST, 400),
    ("INTERNAL_SERVER_ERROR", ErrorCategory.PROVIDER_ERROR, 500),
    ("PLANNED_MAINTENANCE", ErrorCategory.PROVIDER_ERROR, 503),
]


@pytest.fixture(scope="module")
def shared():
    """One simulator and one consent for the error table (faults are consumed per test)."""
    server = PlaidServer(port=0).start()
    server.configure(rate_limits={"/accounts/get": None})
    adapter = PlaidAdapter({"base_url": server.url, "client_id": server.client_id,
                            "secret": server._secret, "environment": "sandbox",
                            "country_codes": ["BE"], "fetch_iban": False},
                           sleep=SleepRecorder(), max_retries=0, timeout=(1, 5))
    try:
        yield server, adapter, connect(adapter)
    finally:
        server.stop()


@pytest.mark.parametrize("code, category, status", ERROR_CASES)
def test_every_plaid_error_code_is_mapped(shared, code, category, status):
    server, adapter, consent = shared
    server.clear_faults()
    server.add_fault(code, path="/accounts/get")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert (error.category, error.code, error.http_status) == (category, code, status)
    assert error.provider == "plaid" and error.raw["error_code"] == code
    assert code in str(error) and error.raw["request_id"] in error.message
    if category == ErrorCategory.RATE_LIMITED:
        assert error.retry_after == 60  # the simulator's Retry-After
    if code == "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION":
        assert error.retryable is False  # restarting the loop is the only fix
    if code in ("ITEM_LOGIN_REQUIRED", "INSTITUTION_DOWN"):
        assert error.user_message  # Plaid's display_message
    assert adapter.list_accounts(consent)  # the fault was used once


def test_unknown_codes_fall_back_on_type_then_status(adapter):
    def mapped(status, body, headers=None):
        response = type("R", (), {"headers": headers or {}})()
        return adapter._map_error(status, body, response)

    assert mapped(400, {"error_type": "ITEM_ERROR", "error_code": "ITEM_LOCKED"}).category == \
        ErrorCategory.USER_ACTION_REQUIRED
    assert mapped(400, {"error_type": "INSTITUTION_ERROR", "error_code": "NEW_ONE"}).category \
        == ErrorCategory.INSTITUTION_DOWN
    assert mapped(429, {"error_type": "SOMETHING", "error_code": "IDENTITY_LIMIT"}).category \
        == ErrorCategory.RATE_LIMITED
    assert mapped(502, {}).category == ErrorCategory.PROVIDER_ERROR
    assert mapped(404, {"nonsense": 1}).category == ErrorCategory.NOT_FOUND
    # no Retry-After: "try again in N seconds", else the per-minute window
    limited = mapped(429, {"error_type": "RATE_LIMIT_EXCEEDED", "error_code": "RATE_LIMIT",
                           "error_message": "too many requests, try again in 7 seconds"})
    assert limited.retry_after == 7.0
    assert mapped(429, {"error_type": "RATE_LIMIT_EXCEEDED",
                        "error_code": "RATE_LIMIT"}).retry_after == 60.0
    leaky = mapped(400, {"error_type": "INVALID_INPUT", "error_code": "INVALID_ACCESS_TOKEN",
                         "error_message": "bad token access-sandbox-1234-abcd"})
    assert "access-sandbox-1234" not in leaky.message
    assert "access-sandbox-1234" not in leaky.raw["error_message"]


def test_transient_errors_are_retried(adapter, consent, plaid, sleeps):
    plaid.add_fault("INSTITUTION_DOWN", path="/accounts/get")
    plaid.add_fault("http_500", path="/accounts/get")
    assert len(adapter.list_accounts(consent)) == 3
    assert sleeps.waits == [0.5, 1.0]


def test_short_rate_limit_is_waited_out_long_one_raised(adapter, consent, plaid, sleeps):
    plaid.add_fault("rate_limit", seconds=2, path="/accounts/get")
    assert adapter.list_accounts(consent)
    assert sleeps.waits == [2.0]
    plaid.add_fault("rate_limit", seconds=120, path="/accounts/get")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED and error.retry_after == 120
    assert error.code == "ACCOUNTS_LIMIT" and error.http_status == 429
    assert sleeps.waits == [2.0]


def test_real_rate_limit_of_the_simulator(make_adapter, plaid, consent, sleeps):
    plaid.configure(rate_limits={"/accounts/get": 2})
    adapter = make_adapter({"fetch_iban": False})
    adapter.list_accounts(consent)
    adapter.list_accounts(consent)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.RATE_LIMITED
    assert caught.value.code == "ACCOUNTS_LIMIT" and 30 < caught.value.retry_after <= 60
    assert sleeps.waits == []  # a minute is too long to block a run


def test_timeout_is_retried_then_network_error(make_adapter, consent, plaid, sleeps):
    adapter = make_adapter({"fetch_iban": False}, timeout=(1, 0.5), max_retries=1)
    plaid.add_fault("timeout", seconds=2, path="/accounts/get")
    assert adapter.list_accounts(consent)
    assert sleeps.waits == [0.5]
    plaid.add_fault("timeout", seconds=2, path="/accounts/get", times=None)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.NETWORK and caught.value.retryable


def test_malformed_json(make_adapter, consent, plaid, sleeps):
    adapter = make_adapter({"fetch_iban": False}, max_retries=1)
    plaid.add_fault("malformed_json", path="/accounts/get")
    assert len(adapter.list_accounts(consent)) == 3
    plaid.add_fault("malformed_json", path="/accounts/get", times=None)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert "not valid JSON" in caught.value.message


def test_user_must_be_present_fault(adapter, consent, plaid):
    plaid.add_fault("user_must_be_present")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.USER_ACTION_REQUIRED
    assert caught.value.code == "USER_SETUP_REQUIRED"


# ------------------------------------------------------------------------------ consent life
def test_expired_consent(adapter, consent, plaid):
    account = account_by_iban(adapter, consent)
    plaid.add_fault("consent_expired")
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, account.external_id, None, None)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "ITEM_LOGIN_REQUIRED"
    assert caught.value.raw["error_code_reason"] == "OAUTH_CONSENT_EXPIRED"

    plaid.advance_days(181)  # past consent_expiration_time
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, account.external_id)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.raw["error_code_reason"] == "OAUTH_CONSENT_EXPIRED"


def test_revoked_consent(adapter, consent, plaid):
    plaid.revoke_consent(consent.external_id)  # the user, at Plaid
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "USER_PERMISSION_REVOKED"


def test_revoke_consent(adapter, consent, plaid):
    assert adapter.revoke_consent(consent) is True
    assert plaid.items()[0]["removed"] is True
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.code == "INVALID_ACCESS_TOKEN"
    assert adapter.revoke_consent(consent) is False  # already gone


def test_renewal_in_update_mode(adapter, consent, plaid):
    accounts = adapter.list_accounts(consent)
    plaid.advance_days(170)
    plaid.reset_login(consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    before = consent.valid_until

    start = adapter.start_consent(None, REDIRECT_URI, "renew-1", consent=consent)
    asked = plaid.link_token_info(start.pending_data["link_token"])
    assert asked["update_mode"] is True and asked["products"] == []
    assert start.pending_data["renews"] == consent.external_id
    callback = simulate_user(start.redirect_url)
    renewed = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert renewed.external_id == consent.external_id
    assert renewed.secrets == consent.secrets and renewed.status == ConsentStatus.ACTIVE
    assert renewed.institution_id == "ins_sim_eu_1"
    assert renewed.valid_until - before > timedelta(days=169)
    assert plaid.stats()["requests"]["POST /item/public_token/exchange"] == 1  # not renewed
    again = adapter.list_accounts(renewed)
    assert [(a.external_id, a.stable_key) for a in again] == [
        (a.external_id, a.stable_key) for a in accounts]


def test_access_token_never_changes(adapter, consent, plaid):
    """Plaid access tokens do not expire: no refresh, secrets stay as they are."""
    snapshot = dict(consent.secrets)
    account = account_by_iban(adapter, consent)
    plaid.advance_days(60)
    adapter.fetch_transactions(consent, account.external_id, None, None)
    adapter.get_balances(consent, account.external_id)
    assert consent.secrets == snapshot
    assert plaid.stats()["requests"]["POST /item/public_token/exchange"] == 1
    assert plaid.stats()["requests"]["POST /link/token/create"] == 1


def test_no_secret_in_any_log_line(make_adapter, plaid, caplog):
    caplog.set_level(logging.DEBUG)
    plaid.verbose = True  # the simulator's request log too
    adapter = make_adapter({"page_size": 100})
    start = adapter.start_consent("ins_sim_eu_1", REDIRECT_URI, "st-log")
    link_token = start.pending_data["link_token"]
    callback = simulate_user(start.redirect_url)
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    accounts = adapter.list_accounts(consent)
    adapter.get_balances(consent, accounts[0].external_id)
    plaid.add_fault("rate_limit", seconds=1)
    plaid.add_fault("transactions_sync_mutation_during_pagination", skip=1)
    adapter.fetch_transactions(consent, accounts[0].external_id, None, None)
    plaid.add_fault("ITEM_LOGIN_REQUIRED")
    errors = []
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    errors.append(caught.value)
    with pytest.raises(ProviderError) as caught:
        make_adapter({"secret": "wrong-secret-77"}).list_institutions()
    errors.append(caught.value)
    adapter.revoke_consent(consent)
    public_tokens = [k for k in plaid._public_tokens] + [
        s["results"]["item_add_results"][0]["public_token"]
        for r in plaid._link_tokens.values() for s in r["sessions"] if "results" in s]
    secrets = [consent.secrets["access_token"], plaid._secret, link_token, "wrong-secret-77",
               *public_tokens]
    assert caplog.records, "the adapter logs nothing at all?"
    text = caplog.text + "".join(str(e) + repr(e.raw) for e in errors)
    for secret in secrets:
        assert secret not in text
    assert "access-sandbox-" not in text and "public-sandbox-" not in text
