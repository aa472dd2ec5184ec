"""The Yodlee adapter, through real HTTP to the Yodlee simulator on 127.0.0.1."""
import logging
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import SleepRecorder
from services import errors
from services.errors import ErrorCategory, ProviderError
from services.providers import available_providers, get_adapter_class
from services.providers import yodlee as module
from services.providers.yodlee import (YodleeAdapter, decode_pending_memory, map_account,
                                       map_balances, map_transaction, parse_decimal,
                                       structured_reference, wait_from_text)
from services.proxy import ProxyClient
from services.types import ConsentStatus, SyncPage, TxnStatus
from simulators.yodlee import YodleeServer, simulate_user
from simulators.yodlee import data

REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
CLIENT_SECRET = "yodlee-sim-secret"
BE_CURRENT = data.ACCOUNTS[20001][0]["iban"]


@pytest.fixture
def yodlee():
    server = YodleeServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def make(yodlee, sleeps):
    """``make(config=None, **options)``: an adapter for the simulator that never really sleeps."""

    def build(config=None, **options):
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", (1, 5))
        return YodleeAdapter({"base_url": yodlee.api_url, "client_id": "yodlee-sim-client",
                              "client_secret": CLIENT_SECRET,
                              "admin_login_name": "yodlee-sim-admin",
                              "full_account_number": True, **(config or {})}, **options)

    return build


@pytest.fixture
def adapter(make):
    return make()


def connect(adapter, institution_id="20001", state="state-123", consent=None):
    start = adapter.start_consent(institution_id, REDIRECT_URI, state, consent=consent)
    callback = simulate_user(start.redirect_url, "approve")
    assert callback["state"] == state
    return adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)


@pytest.fixture
def consent(adapter):
    return connect(adapter)


def accounts_by_name(adapter, consent):
    return {account.name: account for account in adapter.list_accounts(consent)}


def current_account(adapter, consent):
    return accounts_by_name(adapter, consent)["Business Current Account"]


# ------------------------------------------------------------------------------ registry, config
def test_registered_with_its_real_urls():
    assert get_adapter_class("yodlee") is YodleeAdapter
    assert ("yodlee", "Yodlee") in available_providers()
    sandbox = YodleeAdapter({})
    assert sandbox.base_url == "https://sandbox.api.yodlee.com/ysl"
    assert sandbox.fastlink_url == \
        "https://fl4.sandbox.yodlee.com/authenticate/restserver/fastlink"
    production = YodleeAdapter({"environment": "production"})
    assert production.base_url == "https://production.api.yodlee.com/ysl"
    assert production.fastlink_url is None
    local = YodleeAdapter({"base_url": "http://127.0.0.1:9/ysl/"})
    assert local.base_url == "http://127.0.0.1:9/ysl"
    assert local.fastlink_url == "http://127.0.0.1:9/authenticate/restserver/fastlink"
    assert YodleeAdapter.uses_pkce is False and YodleeAdapter.max_history_days is None
    with pytest.raises(ValueError):
        YodleeAdapter({"environment": "staging"})
    with pytest.raises(ProviderError) as caught:
        production.start_consent("20001", REDIRECT_URI, "s")
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "NO_FASTLINK_URL"


# ------------------------------------------------------------------------------ institutions
def test_list_institutions(adapter, yodlee):
    everything = adapter.list_institutions()
    assert [i.external_id for i in everything] == [str(i) for i in data.PROVIDER_IDS]
    belgian = adapter.list_institutions(country="be")
    assert [(i.name, i.countries) for i in belgian] == [("Yodlee Sim Bank Belgium", ["BE"])]
    assert belgian[0].logo_url.endswith(".svg") and belgian[0].beta is False
    uk = adapter.list_institutions(query="uk")
    assert [i.external_id for i in uk] == ["20003"] and uk[0].beta is True
    assert adapter.list_institutions(query="nothing like this") == []
    assert adapter.list_institutions(country="JP") == []
    # one admin token for all these calls
    assert yodlee.stats()["requests"]["POST /auth/token"] == 1


def test_institutions_follow_skip_and_top(adapter, yodlee, monkeypatch):
    monkeypatch.setattr(module, "PAGE_TOP", 2)
    assert len(adapter.list_institutions()) == 5
    assert yodlee.stats()["requests"]["GET /providers"] == 3  # 2 + 2 + 1


def test_wrong_or_missing_credentials_are_auth_invalid(make):
    with pytest.raises(ProviderError) as caught:
        make({"client_secret": "not-the-secret-42"}).list_institutions()
    error = caught.value
    assert (error.category, error.code, error.http_status) == (ErrorCategory.AUTH_INVALID,
                                                               "Y301", 400)
    assert "not-the-secret-42" not in str(error) and error.retryable is False
    with pytest.raises(ProviderError) as caught:
        make({"client_secret": ""}).list_institutions()
    assert (caught.value.category, caught.value.code) == (ErrorCategory.AUTH_INVALID, "Y303")
    with pytest.raises(ProviderError) as caught:
        make({"admin_login_name": ""}).list_institutions()
    assert caught.value.code == "NO_ADMIN_LOGIN_NAME"


# ------------------------------------------------------------------------------ consent
def test_start_consent_builds_the_fastlink_url(adapter, yodlee):
    start = adapter.start_consent("20001", REDIRECT_URI, "st-1", language="fr_BE")
    parts = urlsplit(start.redirect_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == yodlee.fastlink_url
    query = parse_qs(parts.query)
    assert query["accessToken"] == [f"Bearer {start.pending_data['access_token']}"]
    extra = {key: values[0] for key, values in parse_qs(query["extraParams"][0]).items()}
    assert extra == {"configName": "Aggregation", "flow": "add", "providerId": "20001",
                     "callback": REDIRECT_URI, "state": "st-1", "locale": "fr_BE"}
    assert start.state == "st-1" and start.code_verifier is None
    assert start.pending_data["login_name"].startswith("odoo-")
    assert start.pending_data["institution_id"] == "20001"
    other = adapter.start_consent("20001", REDIRECT_URI, "st-2")
    assert other.pending_data["login_name"] != start.pending_data["login_name"]
    fixed = YodleeAdapter({**adapter.config, "login_name": "sbMem123"})
    assert fixed.start_consent("20002", REDIRECT_URI, "s").pending_data["login_name"] == \
        "sbMem123"
    with pytest.raises(ProviderError) as caught:
        adapter.start_consent("SANDBOX_BANK", REDIRECT_URI, "s")
    assert caught.value.category == ErrorCategory.BAD_REQUEST


def test_whole_consent_flow(adapter, yodlee):
    start = adapter.start_consent("20001", REDIRECT_URI, "state-xyz")
    fastlink_token = start.pending_data["access_token"]
    callback = simulate_user(start.redirect_url)
    assert callback["status"] == "SUCCESS" and callback["state"] == "state-xyz"
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.provider == "yodlee" and consent.status == ConsentStatus.ACTIVE
    assert consent.external_id == callback["providerAccountId"]
    assert consent.institution_id == "20001"
    assert consent.valid_until.tzinfo is not None and consent.valid_until.utcoffset() == \
        timedelta(0)
    assert abs((consent.valid_until - yodlee.now()) - timedelta(days=180)) < timedelta(minutes=1)
    assert consent.created_at is not None
    assert set(consent.secrets) == {"login_name", "access_token", "access_expires_at"}
    assert consent.secrets["login_name"] == start.pending_data["login_name"]
    # the token that travelled in the FastLink URL is revoked, a fresh one replaces it
    assert consent.secrets["access_token"] != fastlink_token
    assert yodlee.stats()["requests"]["DELETE /auth/token"] == 1
    stale = requests.get(f"{yodlee.api_url}/providers", timeout=5, headers={
        "Api-Version": "1.1", "Authorization": f"Bearer {fastlink_token}"})
    assert stale.status_code == 401
    assert consent.raw["consent"]["consentStatus"] == "ACTIVE"
    assert fastlink_token not in repr(consent.raw)


def test_cancelled_fastlink(adapter):
    start = adapter.start_consent("20001", REDIRECT_URI, "state-c")
    callback = simulate_user(start.redirect_url, "cancel")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED
    assert error.code == "USER_CLOSED_ACCOUNT_ADDITION"
    assert error.user_message == callback["message"]


def test_bad_callbacks(adapter):
    start = adapter.start_consent("20001", REDIRECT_URI, "s")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"status": "SUCCESS"}, REDIRECT_URI,
                                 pending_data=start.pending_data)
    assert caught.value.code == "NO_PROVIDER_ACCOUNT"
    callback = simulate_user(start.redirect_url)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data={})
    assert caught.value.category == ErrorCategory.BAD_REQUEST


def test_link_still_in_progress_is_accepted_at_the_callback(adapter, yodlee):
    start = adapter.start_consent("20002", REDIRECT_URI, "s")
    callback = simulate_user(start.redirect_url)
    yodlee.add_fault("in_progress", path="/providerAccounts")
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.status == ConsentStatus.ACTIVE
    yodlee.add_fault("in_progress", path="/providerAccounts")
    assert len(adapter.list_accounts(consent)) == 1  # the account summary is already there


# ------------------------------------------------------------------------------ accounts
def test_list_accounts_and_stable_keys(adapter, consent, yodlee):
    accounts = accounts_by_name(adapter, consent)
    current = accounts["Business Current Account"]
    assert current.iban == BE_CURRENT and current.stable_key == BE_CURRENT
    assert current.currency == "EUR" and current.kind == "checking"
    assert current.account_number_masked == "xxxx" + BE_CURRENT[-4:]
    assert current.consent_external_id == consent.external_id
    assert accounts["Business Savings Account"].kind == "savings"
    dollar = accounts["Dollar Account"]
    assert dollar.iban is None and dollar.currency == "USD"
    assert dollar.stable_key.startswith("yodlee:")
    # a second link of the same bank: new Yodlee ids, same stable keys
    again = accounts_by_name(adapter, connect(adapter, state="second"))
    assert again["Dollar Account"].external_id != dollar.external_id
    assert {a.stable_key for a in again.values()} == {a.stable_key for a in accounts.values()}
    plain = YodleeAdapter({**adapter.config, "full_account_number": False},
                          sleep=adapter.sleep)
    hashed = accounts_by_name(plain, consent)["Business Current Account"]
    assert hashed.iban is None and hashed.stable_key.startswith("yodlee:")


def test_get_balances(adapter, consent, yodlee):
    current = current_account(adapter, consent)
    balances = {b.kind: b for b in adapter.get_balances(consent, current.external_id)}
    expected = yodlee.expected_balances(BE_CURRENT)
    assert balances["booked"].amount == expected["current"]
    assert balances["available"].amount == expected["available"]
    assert balances["booked"].currency == "EUR"
    assert balances["booked"].reference_date == yodlee.today


def test_unknown_account_is_not_found(adapter, consent):
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, "999999")
    assert (caught.value.category, caught.value.code) == (ErrorCategory.NOT_FOUND, "Y807")


def test_map_balances_pure():
    raw = {"balance": {"amount": 10.5, "currency": "GBP"}, "lastUpdated": "2024-03-31T23:30:00Z"}
    (only,) = map_balances(raw, "7")
    assert (only.kind, only.amount, only.currency) == ("booked", Decimal("10.5"), "GBP")
    assert only.reference_date == date(2024, 3, 31)


# ------------------------------------------------------------------------------ transactions
def test_fetch_returns_exactly_the_banks_transactions(adapter, consent, yodlee):
    current = current_account(adapter, consent)
    since = yodlee.today - timedelta(days=20)
    page = adapter.fetch_transactions(consent, current.external_id, since, yodlee.today)
    assert isinstance(page, SyncPage)
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    pending = [t for t in page.added if t.status == TxnStatus.PENDING]
    expected = yodlee.expected_booked(BE_CURRENT, since, yodlee.today)
    assert sorted(t.external_id for t in booked) == sorted(str(t["id"]) for t in expected)
    assert {t.external_id for t in pending} == {
        str(t["id"]) for t in yodlee.expected_pending(BE_CURRENT)}
    by_id = {str(t["id"]): t for t in expected}
    for txn in booked:
        raw = by_id[txn.external_id]
        value = Decimal(repr(raw["amount"].get("convertedAmount", raw["amount"]["amount"])))
        assert txn.amount == (value if raw["baseType"] == "CREDIT" else -value)
        assert txn.booking_date == date.fromisoformat(raw["postDate"]) == txn.date
        assert txn.transaction_date == date.fromisoformat(raw["transactionDate"])
        assert txn.id_is_synthetic is False and txn.currency == "EUR"
        assert txn.description == raw["description"]["original"]
    assert all(t.booking_date is None and t.date == yodlee.today for t in pending)
    assert any(t.amount > 0 for t in booked) and any(t.amount < 0 for t in booked)
    assert any(t.structured_reference and t.structured_reference.startswith("+++")
               for t in booked)
    assert any(t.counterparty_name and t.merchant_name for t in booked)
    assert page.next_cursor.startswith("ypend1.")


def test_foreign_card_payments_keep_their_original_amount(adapter, consent, yodlee):
    current = current_account(adapter, consent)
    page = adapter.fetch_transactions(consent, current.external_id,
                                      yodlee.today - timedelta(days=60), yodlee.today)
    foreign = [t for t in page.added if t.original_currency]
    assert foreign
    for txn in foreign:
        assert txn.currency == "EUR" and txn.original_currency in ("USD", "GBP")
        assert txn.amount < 0 and txn.original_amount < 0
        assert txn.raw["amount"]["currency"] == txn.original_currency
        assert -txn.original_amount == Decimal(repr(txn.raw["amount"]["amount"]))


def test_fetch_follows_every_page(make, yodlee):
    yodlee.configure(txns_per_day={"EUR": 20})
    adapter = make()
    consent = connect(adapter)
    current = current_account(adapter, consent)
    since = yodlee.today - timedelta(days=60)
    before = yodlee.stats()["requests"].get("GET /transactions", 0)
    page = adapter.fetch_transactions(consent, current.external_id, since, yodlee.today)
    assert len(page.added) == 20 * 61 + 20
    assert len({t.external_id for t in page.added}) == len(page.added)
    assert yodlee.stats()["requests"]["GET /transactions"] - before == 3  # 500 + 500 + 240
    assert yodlee.stats()["requests"]["GET /transactions/count"] == 1
    assert sorted(t.external_id for t in page.added if t.status == TxnStatus.BOOKED) == sorted(
        str(t["id"]) for t in yodlee.expected_booked(BE_CURRENT, since, yodlee.today))


def test_fetch_page_bound(make, yodlee, monkeypatch):
    yodlee.configure(txns_per_day={"EUR": 20})
    adapter = make()
    consent = connect(adapter)
    current = current_account(adapter, consent)
    monkeypatch.setattr(module, "MAX_PAGES", 1)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, current.external_id,
                                   yodlee.today - timedelta(days=60), yodlee.today)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR


def test_pending_reappears_posted_under_a_new_id(adapter, consent, yodlee):
    current = current_account(adapter, consent)
    first = adapter.fetch_transactions(consent, current.external_id, yodlee.today, yodlee.today)
    pending = {t.alt_ids["match_key"]: t for t in first.added if t.status == TxnStatus.PENDING}
    assert len(pending) == 3
    assert decode_pending_memory(first.next_cursor, current.external_id)
    yodlee.advance_days(1)
    second = adapter.fetch_transactions(consent, current.external_id,
                                        yodlee.today - timedelta(days=1), yodlee.today,
                                        cursor=first.next_cursor)
    posted = [t for t in second.added if t.alt_ids["match_key"] in pending]
    assert len(posted) == 3
    for txn in posted:
        old = pending[txn.alt_ids["match_key"]]
        assert txn.status == TxnStatus.BOOKED and txn.external_id != old.external_id
        assert txn.replaces_external_id == old.external_id
        assert txn.amount == old.amount and txn.transaction_date == old.transaction_date
    assert not {t.external_id for t in pending.values()} & {t.external_id for t in second.added}
    # without the memory (or another account's) nothing is claimed
    blind = adapter.fetch_transactions(consent, current.external_id,
                                       yodlee.today - timedelta(days=1), yodlee.today)
    assert all(t.replaces_external_id is None for t in blind.added)
    assert decode_pending_memory(first.next_cursor, "another-account") == {}
    assert decode_pending_memory("garbage", current.external_id) == {}


def test_map_transaction_pure():
    raw = {"CONTAINER": "bank", "id": 61995218, "accountId": 11121655,
           "amount": {"amount": 42.1, "currency": "USD"}, "baseType": "DEBIT",
           "status": "POSTED", "date": "2025-03-10", "transactionDate": "2025-03-09",
           "postDate": "2025-03-10",
           "description": {"original": "POS DEBIT 0309 GROCERY MART #12", "simple": "Grocery"},
           "merchant": {"id": "grocerymart", "name": "Grocery Mart"}, "category": "Groceries",
           "runningBalance": {"amount": 5974.21, "currency": "USD"}}
    txn = map_transaction(raw, "11121655", "USD")
    assert txn.amount == Decimal("-42.1") and str(txn.amount) == "-42.1"
    assert (txn.booking_date, txn.transaction_date) == (date(2025, 3, 10), date(2025, 3, 9))
    assert txn.external_id == "61995218" and txn.counterparty_name == "Grocery Mart"
    assert txn.category == "Groceries" and txn.balance_after == Decimal("5974.21")
    assert txn.counterparty_iban is None and txn.original_amount is None
    credit = map_transaction({**raw, "baseType": "CREDIT", "amount": {"amount": 1850,
                                                                      "currency": "USD"}}, "1")
    assert credit.amount == Decimal("1850")
    late = map_transaction({**raw, "postDate": "2024-12-31", "date": "2024-12-31"}, "1")
    assert late.booking_date == date(2024, 12, 31)  # never shifted through a time zone
    pending = map_transaction({**raw, "status": "PENDING", "postDate": None,
                               "date": "2025-03-09"}, "1")
    assert pending.status == TxnStatus.PENDING and pending.booking_date is None
    assert pending.date == date(2025, 3, 9)
    assert map_transaction({**raw, "status": "SCHEDULED"}, "1") is None
    assert map_transaction({**raw, "status": "FAILED"}, "1") is None
    anonymous = {key: value for key, value in raw.items() if key != "id"}
    first, second = (map_transaction(anonymous, "1", occurrence=n) for n in (0, 1))
    assert first.id_is_synthetic and first.external_id.startswith("sha256:")
    assert first.external_id != second.external_id
    assert first.external_id == map_transaction(anonymous, "1").external_id
    with pytest.raises(ValueError):
        map_transaction({**raw, "baseType": "OTHER"}, "1")
    with pytest.raises(ValueError):
        parse_decimal(True)
    assert parse_decimal(0.1) + parse_decimal(0.2) == Decimal("0.3")


def test_structured_references_and_waits_pure():
    assert structured_reference("TRANSFER +++090/9337/55493+++ X") == "+++090/9337/55493+++"
    assert structured_reference("TRANSFER +++090/9337/55494+++") is None  # bad check digits
    assert structured_reference("PAYMENT RF18539007547034 THANKS") == "RF18539007547034"
    assert structured_reference("RF19539007547034") is None
    assert structured_reference(None) is None
    assert wait_from_text("Too many requests. Please try again in 42 seconds.") == 42.0
    assert wait_from_text("Maximum Thresholds for the day have reached. Please try after "
                          "24 hours.") == 86400.0
    assert wait_from_text("nothing") is None
    account = map_account({"id": 5, "CONTAINER": "creditCard", "accountName": "Visa",
                           "accountNumber": "xxxx1111", "providerId": "1",
                           "balance": {"amount": 1, "currency": "EUR"},
                           "fullAccountNumberList": {"paymentAccountNumber": "not an iban"}}, 9)
    assert account.kind == "card" and account.iban is None
    assert "fullAccountNumberList" not in account.raw


# ------------------------------------------------------------------------------ tokens
def test_token_known_to_be_expired_is_renewed_first(adapter, consent, yodlee):
    old = consent.secrets["access_token"]
    consent.secrets["access_expires_at"] = "2000-01-01T00:00:00Z"
    tokens_before = yodlee.stats()["requests"]["POST /auth/token"]
    adapter.list_accounts(consent)
    assert consent.secrets["access_token"] != old
    assert consent.secrets["access_expires_at"] > "2020"
    assert yodlee.stats()["requests"]["POST /auth/token"] == tokens_before + 1


def test_token_refused_by_yodlee_is_renewed_transparently(adapter, consent, yodlee):
    current = current_account(adapter, consent)
    old = consent.secrets["access_token"]
    yodlee.advance_days(1)  # the 30-minute token is dead at Yodlee, not in our secrets
    page = adapter.fetch_transactions(consent, current.external_id, yodlee.today, yodlee.today)
    assert page.added and consent.secrets["access_token"] != old
    assert consent.secrets["login_name"].startswith("odoo-")
    renewed = consent.secrets["access_token"]
    yodlee.add_fault("token_expired", path="/accounts/")
    adapter.get_balances(consent, current.external_id)
    assert consent.secrets["access_token"] != renewed


@pytest.mark.parametrize("code", ["Y008", "Y020", "Y023"])
def test_token_codes_retry_once_then_auth_invalid(adapter, consent, yodlee, code):
    yodlee.add_fault("api_error", code=code, path="/providerAccounts/")
    assert adapter.list_accounts(consent)  # a new token, then it works
    yodlee.add_fault("api_error", code=code, path="/providerAccounts/", times=2)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert (caught.value.category, caught.value.code) == (ErrorCategory.AUTH_INVALID, code)


def test_missing_login_name_means_reconnect(adapter, consent):
    consent.secrets.pop("login_name")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("code, category, status", [
    ("Y001", ErrorCategory.AUTH_INVALID, 401), ("Y002", ErrorCategory.AUTH_INVALID, 401),
    ("Y003", ErrorCategory.AUTH_INVALID, 401), ("Y004", ErrorCategory.AUTH_EXPIRED, 400),
    ("Y005", ErrorCategory.AUTH_INVALID, 401), ("Y006", ErrorCategory.AUTH_EXPIRED, 401),
    ("Y007", ErrorCategory.AUTH_INVALID, 401), ("Y009", ErrorCategory.AUTH_INVALID, 401),
    ("Y010", ErrorCategory.AUTH_INVALID, 401), ("Y011", ErrorCategory.AUTH_INVALID, 401),
    ("Y301", ErrorCategory.AUTH_INVALID, 400), ("Y303", ErrorCategory.AUTH_INVALID, 400),
    ("Y800", ErrorCategory.BAD_REQUEST, 400), ("Y801", ErrorCategory.BAD_REQUEST, 400),
    ("Y802", ErrorCategory.BAD_REQUEST, 400), ("Y803", ErrorCategory.BAD_REQUEST, 400),
    ("Y804", ErrorCategory.BAD_REQUEST, 400), ("Y805", ErrorCategory.BAD_REQUEST, 400),
    ("Y806", ErrorCategory.BAD_REQUEST, 400), ("Y807", ErrorCategory.NOT_FOUND, 400),
    ("Y809", ErrorCategory.BAD_REQUEST, 400), ("Y868", ErrorCategory.NOT_READY, 400),
    ("Y902", ErrorCategory.PROVIDER_ERROR, 500),
])
def test_error_code_mapping(make, yodlee, code, category, status):
    adapter = make(max_retries=0)
    consent = connect(adapter)
    yodlee.add_fault("api_error", code=code, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert (error.category, error.code, error.http_status) == (category, code, status)
    assert error.provider == "yodlee" and error.reference.startswith("OS-")
    assert code in error.message and "[y" in error.message  # Yodlee's referenceCode
    assert consent.secrets["access_token"] not in str(error)
    assert error.retryable == (category in errors.TRANSIENT_CATEGORIES)


def test_gone_link_is_not_found(adapter, consent, yodlee):
    assert adapter.revoke_consent(consent) is True
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert (caught.value.category, caught.value.code) == (ErrorCategory.NOT_FOUND, "Y800")


@pytest.mark.parametrize("kind, category, code", [
    ("consent_expired", ErrorCategory.AUTH_EXPIRED, "CONSENT_EXPIRED"),
    ("consent_revoked", ErrorCategory.AUTH_EXPIRED, "CONSENT_REVOKED"),
    ("credentials_update_needed", ErrorCategory.AUTH_EXPIRED, "CREDENTIALS_UPDATE_NEEDED"),
    ("user_must_be_present", ErrorCategory.USER_ACTION_REQUIRED, "ADDL_AUTHENTICATION_REQUIRED"),
    ("user_action_needed_at_site", ErrorCategory.USER_ACTION_REQUIRED,
     "USER_ACTION_NEEDED_AT_SITE"),
    ("incorrect_credentials", ErrorCategory.USER_ACTION_REQUIRED, "INCORRECT_CREDENTIALS"),
    ("site_unavailable", ErrorCategory.INSTITUTION_DOWN, "SITE_UNAVAILABLE"),
    ("site_blocking_error", ErrorCategory.INSTITUTION_DOWN, "SITE_BLOCKING_ERROR"),
    ("unexpected_site_error", ErrorCategory.INSTITUTION_DOWN, "UNEXPECTED_SITE_ERROR"),
    ("tech_error", ErrorCategory.INSTITUTION_DOWN, "TECH_ERROR"),
    ("request_time_out", ErrorCategory.INSTITUTION_DOWN, "REQUEST_TIME_OUT"),
    ("in_progress", ErrorCategory.NOT_READY, "DATA_RETRIEVAL_IN_PROGRESS"),
])
def test_dataset_status_mapping(adapter, consent, yodlee, kind, category, code):
    current = current_account(adapter, consent)
    yodlee.add_fault(kind)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, current.external_id, yodlee.today, yodlee.today)
    error = caught.value
    assert (error.category, error.code) == (category, code)
    assert error.user_message and error.retryable is False
    assert not error.requires_user_presence
    yodlee.add_fault(kind, path="/providerAccounts/")  # the link's status, in list_accounts
    if category == ErrorCategory.NOT_READY:
        assert adapter.list_accounts(consent)  # the account summary is already there
        return
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert (caught.value.category, caught.value.code) == (category, code)


# ------------------------------------------------------------------------------ transport
def test_short_rate_limit_is_waited_out(adapter, consent, yodlee, sleeps):
    yodlee.add_fault("rate_limit", seconds=2, path="/accounts")
    assert adapter.list_accounts(consent)
    assert sleeps.waits == [2.0]


def test_long_rate_limit_is_raised_with_retry_after(adapter, consent, yodlee, sleeps):
    yodlee.add_fault("rate_limit", seconds=120, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED and error.http_status == 429
    assert error.retry_after == 120.0 and sleeps.waits == []
    yodlee.add_fault("rate_limit", seconds=86400, path="/accounts")  # the daily threshold text
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.retry_after == 86400.0


def test_enforced_rate_limit(adapter, consent, yodlee):
    yodlee.configure(rate_limit_per_minute=3)
    with pytest.raises(ProviderError) as caught:
        for _ in range(3):
            adapter.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED
    assert 30 < error.retry_after <= 60


def test_timeout_is_retried_then_network_error(make, yodlee, sleeps):
    adapter = make(timeout=(1, 0.8))
    consent = connect(adapter)
    yodlee.add_fault("timeout", seconds=3, path="/accounts")
    assert adapter.list_accounts(consent)
    assert sleeps.waits == [0.5]
    impatient = make(timeout=(1, 0.8), max_retries=0)
    yodlee.add_fault("timeout", seconds=3, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        impatient.list_accounts(consent)
    assert caught.value.category == ErrorCategory.NETWORK and caught.value.retryable


def test_malformed_json(make, yodlee, sleeps):
    adapter = make(max_retries=1)
    consent = connect(adapter)
    yodlee.add_fault("malformed_json", path="/accounts")
    assert adapter.list_accounts(consent)  # retried once
    yodlee.add_fault("malformed_json", path="/accounts", times=None)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR


def test_server_error_is_retried(adapter, consent, yodlee, sleeps):
    yodlee.add_fault("http_500", path="/accounts", times=2)
    assert adapter.list_accounts(consent)
    assert sleeps.waits == [0.5, 1.0]


# ------------------------------------------------------------------------------ lifecycle
def test_expired_consent_needs_reconnection(adapter, consent, yodlee):
    current = current_account(adapter, consent)
    yodlee.advance_days(181)  # the Belgian bank's 180-day consent
    for call in (lambda: adapter.list_accounts(consent),
                 lambda: adapter.get_balances(consent, current.external_id),
                 lambda: adapter.fetch_transactions(consent, current.external_id, None, None)):
        with pytest.raises(ProviderError) as caught:
            call()
        assert (caught.value.category, caught.value.code) == (ErrorCategory.AUTH_EXPIRED,
                                                              "CONSENT_EXPIRED")


def test_consent_revoked_at_the_bank(adapter, consent, yodlee):
    current = current_account(adapter, consent)
    yodlee.revoke_consent(consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, current.external_id, yodlee.today, yodlee.today)
    assert (caught.value.category, caught.value.code) == (ErrorCategory.AUTH_EXPIRED,
                                                          "CONSENT_REVOKED")


def test_renewal_keeps_the_link_and_its_accounts(adapter, consent, yodlee):
    before = accounts_by_name(adapter, consent)
    old_until = consent.valid_until
    yodlee.advance_days(181)
    with pytest.raises(ProviderError):
        adapter.list_accounts(consent)
    start = adapter.start_consent(None, REDIRECT_URI, "renew-1", consent=consent)
    extra = parse_qs(parse_qs(urlsplit(start.redirect_url).query)["extraParams"][0])
    assert extra["flow"] == ["refresh"] and extra["providerAccountId"] == [consent.external_id]
    assert start.pending_data["renews"] == consent.external_id
    assert start.pending_data["login_name"] == consent.secrets["login_name"]
    callback = simulate_user(start.redirect_url)
    renewed = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert renewed.external_id == consent.external_id
    assert renewed.valid_until > old_until + timedelta(days=180)
    after = accounts_by_name(adapter, renewed)
    assert {a.external_id for a in after.values()} == {a.external_id for a in before.values()}
    assert {a.stable_key for a in after.values()} == {a.stable_key for a in before.values()}
    current = after["Business Current Account"]
    assert adapter.fetch_transactions(renewed, current.external_id, yodlee.today,
                                      yodlee.today).added


def test_revoke_consent(adapter, consent, yodlee):
    assert adapter.revoke_consent(consent) is True
    assert yodlee.consents()[0]["deleted"] is True
    assert "access_token" not in consent.secrets
    assert adapter.revoke_consent(consent) is False  # already gone


def test_proxy_client_end_to_end(yodlee):
    config = {"base_url": yodlee.api_url, "client_id": "yodlee-sim-client",
              "client_secret": CLIENT_SECRET, "admin_login_name": "yodlee-sim-admin"}
    client = ProxyClient("yodlee", config, sleep=lambda s: None)
    assert client.uses_pkce is False
    start = client.start_consent("20003", REDIRECT_URI, "px")
    consent = client.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                      pending_data=start.pending_data)
    rebuilt = ProxyClient.consent("yodlee", consent.external_id, consent.secrets,
                                  valid_until=consent.valid_until)
    (account,) = client.accounts(rebuilt)
    assert account.currency == "GBP"
    page = client.transactions(rebuilt, account.external_id, yodlee.today - timedelta(days=3),
                               yodlee.today)
    assert len(page.added) == 4 * 1 + 1  # GBP: one a day, plus today's pending one
    assert rebuilt.secrets["access_token"] == consent.secrets["access_token"]
    assert client.revoke(rebuilt) is True


def test_no_secret_in_any_log_line(make, yodlee, caplog):
    caplog.set_level(logging.DEBUG)
    adapter = make(sleep=lambda s: None)
    collected = []
    with pytest.raises(ProviderError) as caught:
        make({"client_secret": "very-wrong-secret"}).list_institutions()
    collected.append(str(caught.value))
    adapter.list_institutions(country="BE")
    start = adapter.start_consent("20001", REDIRECT_URI, "log-state")
    consent = adapter.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                       pending_data=start.pending_data)
    current = current_account(adapter, consent)
    yodlee.add_fault("rate_limit", seconds=1, path="/transactions")
    yodlee.add_fault("token_expired", path="/accounts/")
    adapter.fetch_transactions(consent, current.external_id, yodlee.today - timedelta(days=5),
                               yodlee.today)
    adapter.get_balances(consent, current.external_id)
    yodlee.add_fault("api_error", code="Y902", times=None, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    collected.append(str(caught.value))
    adapter.revoke_consent(consent)
    secrets = set(yodlee.issued_tokens()) | {CLIENT_SECRET, "very-wrong-secret"}
    assert len(secrets) >= 5
    text = caplog.text + "\n".join(collected)
    assert "retrying" in caplog.text  # the log did record the run
    for secret in secrets:
        assert secret not in text
