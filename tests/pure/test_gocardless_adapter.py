"""The GoCardless Bank Account Data adapter, through real HTTP to its simulator on 127.0.0.1."""
import logging
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from conftest import SleepRecorder
from services.errors import ErrorCategory, ProviderError
from services.providers import get_adapter_class
from services.providers.gocardless import (GoCardlessAdapter, assign_ids, classify_error,
                                           map_transaction, original_amount, rate_limit_info)
from services.types import ConsentStatus, SyncPage, TxnStatus
from simulators.gocardless import (DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, GoCardlessServer,
                                   simulate_user)
from simulators.gocardless import data

REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
SANDBOX = "SANDBOXFINANCE_SFIN0000"
MAIN_IBAN = data.ACCOUNTS[SANDBOX][0]["iban"]
GBP_IBAN = data.ACCOUNTS[SANDBOX][2]["iban"]
TODAY = date(2024, 3, 1)


@pytest.fixture
def gc():
    server = GoCardlessServer(port=0, today=TODAY).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def make_adapter(gc, sleeps):
    def make(config=None, **options):
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", (1, 5))
        return GoCardlessAdapter({"base_url": gc.api_url, "secret_id": DEFAULT_SECRET_ID,
                                  "secret_key": DEFAULT_SECRET_KEY, **(config or {})}, **options)
    return make


@pytest.fixture
def adapter(make_adapter):
    return make_adapter()


def connect(adapter, institution_id=SANDBOX, valid_days=None, state="state-123", consent=None):
    start = adapter.start_consent(institution_id, REDIRECT_URI, state, valid_days=valid_days,
                                  consent=consent)
    callback = simulate_user(start.redirect_url, "approve")
    assert callback == {"ref": state}
    return adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)


@pytest.fixture
def consent(adapter):
    return connect(adapter)


def by_iban(adapter, consent):
    return {account.iban: account for account in adapter.list_accounts(consent)}


def calls(gc, key):
    return gc.stats()["requests"].get(key, 0)


TXNS = "GET /api/v2/accounts/{id}/transactions/"


# ------------------------------------------------------------------------------ registry, config
def test_adapter_is_registered_with_its_facts():
    assert get_adapter_class("gocardless") is GoCardlessAdapter
    assert GoCardlessAdapter.label == "GoCardless" and GoCardlessAdapter.uses_pkce is False
    assert GoCardlessAdapter({}).base_url == "https://bankaccountdata.gocardless.com/api/v2"
    assert GoCardlessAdapter.max_history_days == 730


def test_missing_credentials_fail_before_any_call(gc):
    adapter = GoCardlessAdapter({"base_url": gc.api_url})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "NO_CREDENTIALS" and gc.stats()["total"] == 0


def test_wrong_secret_is_auth_invalid(make_adapter, gc):
    adapter = make_adapter({"secret_key": "not-the-key-0123456789"})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    error = caught.value
    assert error.category == ErrorCategory.AUTH_INVALID and error.http_status == 401
    assert error.code == "AuthenticationFailed" and not error.retryable
    assert "not-the-key-0123456789" not in str(error) and "not-the-key" not in repr(error.raw)
    assert calls(gc, "POST /api/v2/token/new/") == 1


# ------------------------------------------------------------------------------ institutions
def test_list_institutions(adapter, gc):
    everything = adapter.list_institutions()
    assert [i.external_id for i in everything] == [SANDBOX, "SIMBANK_SIMBBEBB"]
    belgian = adapter.list_institutions(country="be", query="belgium")
    assert [i.external_id for i in belgian] == ["SIMBANK_SIMBBEBB"]
    simbank = belgian[0]
    assert simbank.provider == "gocardless" and simbank.bic == "SIMBBEBB"
    assert simbank.max_history_days == 730 and simbank.max_consent_days == 180  # from strings
    assert simbank.logo_url.startswith(gc.url) and simbank.countries == ["BE"]
    assert everything[0].beta is True  # the sandbox institution
    assert adapter.list_institutions(country="JP") == []
    assert calls(gc, "POST /api/v2/token/new/") == 1  # the token pair is kept


# ------------------------------------------------------------------------------ consent
def test_consent_flow_through_the_bank_page(adapter, gc):
    start = adapter.start_consent("SIMBANK_SIMBBEBB", REDIRECT_URI, "st-42", language="fr_BE",
                                  valid_days=500)
    assert start.redirect_url.startswith(f"{gc.url}/ob-psd2/start/")
    assert start.state == "st-42" and start.code_verifier is None
    agreement = next(a for a in gc.agreements() if a["id"] == start.pending_data["agreement_id"])
    # as much history as the bank gives, access capped at the bank's maximum, every scope
    assert agreement["max_historical_days"] == 730 and agreement["access_valid_for_days"] == 180
    assert agreement["access_scope"] == ["balances", "details", "transactions"]
    requisition = gc.requisitions()[0]
    assert requisition["reference"] == "st-42" and requisition["redirect"] == REDIRECT_URI
    assert requisition["user_language"] == "FR" and requisition["status"] == "CR"
    assert requisition["id"] == start.pending_data["requisition_id"]

    callback = simulate_user(start.redirect_url)
    assert callback == {"ref": "st-42"}
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.provider == "gocardless" and consent.status == ConsentStatus.ACTIVE
    assert consent.external_id == requisition["id"]
    assert consent.institution_id == "SIMBANK_SIMBBEBB"
    accepted = datetime.fromisoformat(
        next(a for a in gc.agreements() if a["id"] == agreement["id"])["accepted"]
        .replace("Z", "+00:00"))
    assert consent.valid_until == accepted + timedelta(days=180)
    assert consent.valid_until.utcoffset() == timedelta(0)
    assert {"access_token", "access_expires_at", "refresh_token", "refresh_expires_at",
            "agreement_id", "max_historical_days"} <= set(consent.secrets)
    assert consent.secrets["max_historical_days"] == 730
    assert consent.secrets["access_token"] not in repr(consent.raw)
    assert consent.secrets["refresh_token"] not in repr(consent.raw)
    with pytest.raises(RuntimeError):  # the link is single-use
        simulate_user(start.redirect_url)


def test_default_access_is_the_institutions_maximum(adapter, gc):
    consent = connect(adapter)
    assert consent.valid_until - consent.created_at >= timedelta(days=90)
    assert consent.valid_until - consent.created_at < timedelta(days=90, minutes=1)


def test_cancelled_consent(adapter, gc):
    start = adapter.start_consent(SANDBOX, REDIRECT_URI, "st-c")
    callback = simulate_user(start.redirect_url, "cancel")
    assert callback["ref"] == "st-c" and callback["error"] == "UserCancelledSession"
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED
    assert error.code == "UserCancelledSession"
    assert error.user_message == "User cancelled the session."
    assert not error.requires_user_presence
    with pytest.raises(ProviderError) as caught:  # the requisition itself says rejected
        adapter.complete_consent({"ref": "st-c"}, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.category == ErrorCategory.USER_ACTION_REQUIRED
    assert caught.value.code == "RequisitionRejected"


def test_callback_checks(adapter, gc):
    start = adapter.start_consent(SANDBOX, REDIRECT_URI, "st-x")
    with pytest.raises(ProviderError) as caught:  # not our requisition's reference
        adapter.complete_consent({"ref": "other"}, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "REF_MISMATCH"
    with pytest.raises(ProviderError) as caught:  # the user has not finished at the bank
        adapter.complete_consent({"ref": "st-x"}, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.category == ErrorCategory.NOT_READY
    assert caught.value.code == "RequisitionCR"
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"ref": "st-x"}, REDIRECT_URI, pending_data={})
    assert caught.value.category == ErrorCategory.BAD_REQUEST


def test_duplicate_reference_is_bad_request_and_not_retried(adapter, gc):
    adapter.start_consent(SANDBOX, REDIRECT_URI, "same-state")
    with pytest.raises(ProviderError) as caught:
        adapter.start_consent(SANDBOX, REDIRECT_URI, "same-state")
    error = caught.value
    assert error.category == ErrorCategory.BAD_REQUEST and error.code == "ValidationError"
    assert "reference" in error.message and error.http_status == 400
    assert calls(gc, "POST /api/v2/requisitions/") == 2


def test_renewal_gives_new_account_ids_with_the_same_stable_keys(adapter, gc, consent):
    old = by_iban(adapter, consent)
    start = adapter.start_consent(None, REDIRECT_URI, "renew-1", consent=consent)
    assert start.pending_data["renews"] == consent.external_id
    assert start.pending_data["institution_id"] == SANDBOX
    renewed = adapter.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                       pending_data=start.pending_data)
    assert renewed.external_id != consent.external_id
    new = by_iban(adapter, renewed)
    assert set(new) == set(old) == {a["iban"] for a in data.ACCOUNTS[SANDBOX]}
    for iban in old:
        assert new[iban].stable_key == old[iban].stable_key == iban
        assert new[iban].external_id != old[iban].external_id


# ------------------------------------------------------------------------------ accounts, balances
def test_list_accounts(adapter, consent):
    accounts = by_iban(adapter, consent)
    main, gbp = accounts[MAIN_IBAN], accounts[GBP_IBAN]
    assert data.is_valid_iban(MAIN_IBAN) and data.is_valid_iban(GBP_IBAN)
    assert main.currency == "EUR" and main.kind == "checking" and main.name == "Main Account"
    assert main.holder_name == "Simulated Demo Company" and main.consent_external_id == \
        consent.external_id
    assert main.account_number_masked == f"{MAIN_IBAN[:4]} **** {MAIN_IBAN[-4:]}"
    assert gbp.currency == "GBP"
    assert sorted(a.kind for a in accounts.values()) == ["checking", "checking", "savings"]


def test_list_accounts_survives_an_exhausted_details_quota(adapter, consent, gc):
    for _ in range(4):
        assert all(a.currency for a in adapter.list_accounts(consent))
    accounts = by_iban(adapter, consent)  # the 5th details call of the day is refused
    main = accounts[MAIN_IBAN]
    assert main.currency is None and main.raw["details_error"] == "RateLimitError"
    assert main.stable_key == MAIN_IBAN and main.holder_name == "Simulated Demo Company"


def test_get_balances(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    balances = {b.kind: b for b in adapter.get_balances(consent, main.external_id)}
    expected = gc.expected_balances(MAIN_IBAN)
    assert balances["booked"].amount == expected["closingBooked"]
    assert balances["available"].amount == expected["interimAvailable"]
    assert isinstance(balances["booked"].amount, Decimal)
    assert balances["booked"].currency == "EUR" and balances["booked"].reference_date == TODAY


def test_unknown_account_is_not_found(adapter, consent):
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, "00000000-0000-4000-a000-000000000000")
    assert caught.value.category == ErrorCategory.NOT_FOUND and caught.value.code == "NotFound"


# ------------------------------------------------------------------------------ transactions
def test_fetch_transactions_is_exactly_what_the_bank_holds(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    page = adapter.fetch_transactions(consent, main.external_id, date(2024, 2, 1), TODAY)
    assert isinstance(page, SyncPage) and page.next_cursor is None
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    pending = [t for t in page.added if t.status == TxnStatus.PENDING]
    expected = gc.expected_booked(MAIN_IBAN, date(2024, 2, 1), TODAY)
    assert [t.external_id for t in booked] == [t["entryReference"] for t in expected]
    assert [t.amount for t in booked] == [Decimal(t["transactionAmount"]["amount"])
                                         for t in expected]
    assert len(pending) == len(gc.expected_pending(MAIN_IBAN)) == 3
    assert all(t.account_external_id == main.external_id for t in page.added)
    assert calls(gc, TXNS) == 1  # one shot for the whole window
    assert page.rate_limit.limit == 4 and page.rate_limit.remaining == 3
    wait = page.rate_limit.reset_at - datetime.now(timezone.utc)
    assert timedelta(hours=23) < wait <= timedelta(hours=24)


def test_mapping_signs_dates_counterparties_and_references(adapter, consent, gc):
    gc.configure(txns_per_day={"EUR": 10})
    main = by_iban(adapter, consent)[MAIN_IBAN]
    txns = adapter.fetch_transactions(consent, main.external_id, date(2024, 1, 15), TODAY).added
    booked = [t for t in txns if t.status == TxnStatus.BOOKED]
    raw_by_id = {t["entryReference"]: t for t in gc.expected_booked(MAIN_IBAN, date(2024, 1, 15),
                                                                     TODAY)}
    for txn in booked:
        raw = raw_by_id[txn.external_id]
        assert str(txn.amount) == raw["transactionAmount"]["amount"]
        assert txn.booking_date == date.fromisoformat(raw["bookingDate"])
        assert txn.alt_ids == {"entry_reference": raw["entryReference"],
                               "transaction_id": raw["transactionId"],
                               "internal_id": raw["internalTransactionId"]}
        side = "debtor" if txn.amount > 0 else "creditor"
        assert txn.counterparty_name == raw.get(f"{side}Name")
        assert txn.counterparty_iban == (raw.get(f"{side}Account") or {}).get("iban")
        assert txn.balance_after == Decimal(raw["balanceAfterTransaction"]["balanceAmount"]
                                            ["amount"])
    credits = [t for t in booked if t.amount > 0]
    debits = [t for t in booked if t.amount < 0]
    assert credits and debits and not any(t.id_is_synthetic for t in booked)
    ogm = [t for t in booked if (t.structured_reference or "").startswith("+++")]
    rf = [t for t in booked if (t.structured_reference or "").startswith("RF")]
    assert ogm and rf
    foreign = [t for t in booked if t.original_currency]
    assert foreign and all(t.original_currency in ("USD", "CHF") for t in foreign)
    assert all((t.original_amount < 0) == (t.amount < 0) for t in foreign)
    assert any(t.mandate_id for t in booked) and any(t.end_to_end_id for t in booked)
    assert any(t.mcc and t.merchant_name for t in booked)
    assert txns[0].bank_transaction_code.count("-") == 2
    # the running balance ends on the booked balance
    newest = booked[0]
    assert newest.balance_after == gc.expected_balances(MAIN_IBAN)["closingBooked"]


def test_large_window_in_one_answer(make_adapter, gc):
    gc.configure(txns_per_day={"EUR": 25})
    adapter = make_adapter()
    consent = connect(adapter)
    main = by_iban(adapter, consent)[MAIN_IBAN]
    page = adapter.fetch_transactions(consent, main.external_id, None, None)
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    assert len(booked) == 91 * 25  # the agreement's 90 days back + today
    assert len({t.external_id for t in page.added}) == len(page.added) == 91 * 25 + 25
    assert calls(gc, TXNS) == 1


def test_window_older_than_the_agreement_is_clipped(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    page = adapter.fetch_transactions(consent, main.external_id, TODAY - timedelta(days=400),
                                      TODAY)
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    assert min(t.booking_date for t in booked) == TODAY - timedelta(days=90)


def test_window_older_than_the_agreement_refused_is_asked_again(adapter, consent, gc,
                                                                 monkeypatch):
    import simulators.gocardless.server as server_module
    monkeypatch.setattr(server_module, "OUT_OF_RANGE_POLICY", "reject")
    main = by_iban(adapter, consent)[MAIN_IBAN]
    page = adapter.fetch_transactions(consent, main.external_id, TODAY - timedelta(days=400),
                                      TODAY)
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    assert min(t.booking_date for t in booked) == TODAY - timedelta(days=90)
    assert calls(gc, TXNS) == 2 and page.rate_limit.remaining == 3


def test_list_requisitions_follows_every_page(adapter, gc, monkeypatch):
    for number in range(5):
        adapter.start_consent(SANDBOX, REDIRECT_URI, f"st-{number}")
    real_request = adapter._request
    limits = []

    def small_pages(method, path, **kwargs):
        if path == "/requisitions/" and kwargs.get("params"):
            kwargs["params"] = dict(kwargs["params"], limit=2)
            limits.append(2)
        return real_request(method, path, **kwargs)

    monkeypatch.setattr(adapter, "_request", small_pages)
    requisitions = adapter.list_requisitions()
    assert sorted(r["reference"] for r in requisitions) == [f"st-{n}" for n in range(5)]
    assert calls(gc, "GET /api/v2/requisitions/") == 3 and limits == [2]
    with pytest.raises(ProviderError) as caught:
        adapter.list_requisitions(max_pages=2)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR


def test_pending_card_payment_posts_under_a_new_id(adapter, consent, gc):
    gc.configure(txns_per_day={"EUR": 12})
    main = by_iban(adapter, consent)[MAIN_IBAN]
    first = adapter.fetch_transactions(consent, main.external_id, TODAY - timedelta(days=1),
                                       None).added
    pending = [t for t in first if t.status == TxnStatus.PENDING]
    with_id = {t.external_id: t for t in pending if not t.id_is_synthetic}
    without_id = [t for t in pending if t.id_is_synthetic]
    assert with_id and without_id  # card payments carry their transactionId, transfers nothing
    assert all(t.booking_date is None and t.value_date == TODAY for t in pending)
    gc.advance_days(1)
    second = adapter.fetch_transactions(consent, main.external_id, TODAY, None).added
    posted = [t for t in second if t.status == TxnStatus.BOOKED
              and t.booking_date == TODAY + timedelta(days=1)]
    assert len(posted) == len(pending)
    replaced = {t.replaces_external_id: t for t in posted if t.replaces_external_id in with_id}
    assert set(replaced) == set(with_id)
    for old_id, txn in replaced.items():
        assert txn.external_id != old_id and txn.amount == with_id[old_id].amount
    assert not set(with_id) & {t.external_id for t in second}


def test_ids_that_change_on_every_call(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault("changing_ids", times=None)
    first = adapter.fetch_transactions(consent, main.external_id, date(2024, 2, 20), TODAY).added
    second = adapter.fetch_transactions(consent, main.external_id, date(2024, 2, 20), TODAY).added
    booked_first = [t for t in first if t.status == TxnStatus.BOOKED]
    booked_second = [t for t in second if t.status == TxnStatus.BOOKED]
    assert [t.external_id for t in booked_first] == [t.external_id for t in booked_second]
    assert [t.alt_ids["transaction_id"] for t in booked_first] != \
        [t.alt_ids["transaction_id"] for t in booked_second]
    assert all(t.external_id == t.alt_ids["internal_id"] for t in booked_first)


def test_ids_that_repeat_get_stable_synthetic_ids(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault("repeated_ids", times=None)
    first = adapter.fetch_transactions(consent, main.external_id, date(2024, 2, 20), TODAY).added
    second = adapter.fetch_transactions(consent, main.external_id, date(2024, 2, 20), TODAY).added
    booked = [t for t in first if t.status == TxnStatus.BOOKED]
    assert booked and all(t.id_is_synthetic for t in booked)
    assert len({t.external_id for t in first}) == len(first)
    assert [t.external_id for t in first] == [t.external_id for t in second]
    assert len({t.alt_ids["entry_reference"] for t in booked}) == 11  # one per day


def test_pure_id_choice_and_dates():
    def entry(**fields):
        return {"transactionAmount": {"amount": "-5.00", "currency": "EUR"}, **fields}
    items = [entry(entryReference="A", transactionId="T1"), entry(entryReference="A",
                                                                  transactionId="T2"),
             entry(internalTransactionId="I3"), entry(), entry()]
    ids = assign_ids(items, TxnStatus.BOOKED)
    assert ids[0] == ("T1", False) and ids[1] == ("T2", False)  # "A" is not unique
    assert ids[2] == ("I3", False)
    assert ids[3][1] and ids[4][1] and ids[3][0] != ids[4][0]  # identical twins: n = 0, 1
    assert ids[3][0].endswith("-0") and ids[4][0].endswith("-1")
    # a late-evening entry stays on its bank date (never read through UTC)
    txn = map_transaction(entry(bookingDateTime="2024-03-01T00:30:00+01:00",
                                valueDateTime="2024-02-29T23:45:00-05:00",
                                debtorName="X", transactionAmount={"amount": "12.5",
                                                                   "currency": "EUR"}),
                          "acc", TxnStatus.BOOKED, "id1")
    assert txn.booking_date == date(2024, 3, 1) and txn.value_date == date(2024, 2, 29)
    assert txn.amount == Decimal("12.5") and txn.counterparty_name == "X"
    with pytest.raises(ValueError):
        map_transaction(entry(transactionAmount={"amount": "NaN", "currency": "EUR"}), "a",
                        TxnStatus.BOOKED, "x")
    # foreign currency from the rate alone
    assert original_amount({"currencyExchange": {"sourceCurrency": "USD", "exchangeRate": "0.5",
                                                 "unitCurrency": "USD", "targetCurrency": "EUR"}},
                           Decimal("-10.00"), "EUR") == (Decimal("-20.00"), "USD")
    assert original_amount({}, Decimal("1"), "EUR") == (None, None)
    info = rate_limit_info({"X-RateLimit-Account-Success-Limit": "4",
                            "X-RateLimit-Account-Success-Remaining": "1",
                            "X-RateLimit-Account-Success-Reset": "60"},
                           now=datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert (info.limit, info.remaining, info.reset_at) == (
        4, 1, datetime(2024, 1, 1, 0, 1, tzinfo=timezone.utc))
    assert rate_limit_info({}) is None


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kind, options, category, code, status", [
    ("http_500", {}, ErrorCategory.INSTITUTION_DOWN, "UnknownRequestError", 500),
    ("http_503", {}, ErrorCategory.INSTITUTION_DOWN, "ServiceError", 503),
    ("consent_expired", {}, ErrorCategory.AUTH_EXPIRED, "EUAExpired", 401),
    ("access_expired", {}, ErrorCategory.AUTH_EXPIRED, "AccessExpiredError", 401),
    ("account_inactive", {}, ErrorCategory.AUTH_EXPIRED, "AccountInactiveError", 401),
    ("account_suspended", {}, ErrorCategory.USER_ACTION_REQUIRED, "AccountSuspended", 409),
    ("account_processing", {}, ErrorCategory.NOT_READY, "AccountProcessing", 409),
    ("access_denied", {}, ErrorCategory.USER_ACTION_REQUIRED, "AccessDenied", 403),
    ("user_must_be_present", {}, ErrorCategory.RATE_LIMITED, "RateLimitError", 429),
    ("rate_limit", {"seconds": 85092}, ErrorCategory.RATE_LIMITED, "RateLimitError", 429),
])
def test_error_mapping(make_adapter, gc, kind, options, category, code, status):
    adapter = make_adapter(max_retries=0)
    consent = connect(adapter)
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault(kind, path="/transactions", **options)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, None, None)
    error = caught.value
    assert (error.category, error.code, error.http_status) == (category, code, status)
    assert error.provider == "gocardless" and error.reference.startswith("OS-")
    assert code in error.message
    for secret in (consent.secrets["access_token"], consent.secrets["refresh_token"],
                   DEFAULT_SECRET_KEY):
        assert secret not in str(error) and secret not in repr(error.raw)
    if kind == "rate_limit":
        assert error.retry_after == 85092.0
    if kind == "user_must_be_present":  # the bank's own daily cap: no reset given
        assert error.retry_after is None and "Institution" in error.message
    if kind == "http_500":  # counts towards suspension: never repeated inside a run
        assert not error.retryable
    if kind == "http_503":
        assert error.retryable


def test_field_keyed_validation_error(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, TODAY, TODAY - timedelta(days=3))
    error = caught.value
    assert error.category == ErrorCategory.BAD_REQUEST and error.code == "ValidationError"
    assert "date_from: Incorrect date range" in error.message and not error.retryable
    assert calls(gc, TXNS) == 1  # a reversed range is not asked again without date_from


def test_classify_error_table():
    assert classify_error(401, "Invalid token", "Token is invalid or expired") == (
        "InvalidToken", ErrorCategory.AUTH_INVALID)
    assert classify_error(401, "End User Agreement (EUA) x has expired", "") == (
        "EUAExpired", ErrorCategory.AUTH_EXPIRED)
    assert classify_error(418, "", "") is None


def test_503_is_retried_and_500_is_not(adapter, consent, gc, sleeps):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault("http_503", path="/balances", times=2)
    assert adapter.get_balances(consent, main.external_id)
    assert sleeps.waits == [0.5, 1.0]
    gc.add_fault("http_500", path="/balances", times=1)
    before = calls(gc, "GET /api/v2/accounts/{id}/balances/")
    with pytest.raises(ProviderError):
        adapter.get_balances(consent, main.external_id)
    assert calls(gc, "GET /api/v2/accounts/{id}/balances/") == before + 1


def test_ten_failures_suspend_the_account(make_adapter, gc):
    adapter = make_adapter(max_retries=0)
    consent = connect(adapter)
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault("http_500", path="/balances", times=10)
    for _ in range(10):
        with pytest.raises(ProviderError) as caught:
            adapter.get_balances(consent, main.external_id)
        assert caught.value.code == "UnknownRequestError"
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, main.external_id)
    assert caught.value.category == ErrorCategory.USER_ACTION_REQUIRED
    assert caught.value.code == "AccountSuspended"


# ------------------------------------------------------------------------------ rate limits
def test_daily_quota_is_reported_then_raised(adapter, consent, gc, sleeps):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    remaining = [adapter.fetch_transactions(consent, main.external_id, None, None)
                 .rate_limit.remaining for _ in range(4)]
    assert remaining == [3, 2, 1, 0]
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, None, None)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED and error.code == "RateLimitError"
    assert 86000 < error.retry_after <= 86400 and sleeps.waits == []
    assert calls(gc, TXNS) == 5
    assert adapter.get_balances(consent, main.external_id)  # another scope: its own quota
    gc.advance_days(1)  # rolling 24 h window
    assert adapter.fetch_transactions(consent, main.external_id, None, None).rate_limit.remaining \
        == 3


def test_short_rate_limit_is_waited_out(adapter, consent, gc, sleeps):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault("rate_limit", path="/transactions", seconds=2)
    page = adapter.fetch_transactions(consent, main.external_id, None, None)
    assert page.added and sleeps.waits == [2.0] and calls(gc, TXNS) == 2
    assert page.rate_limit.remaining == 3  # the refused call did not count


# ------------------------------------------------------------------------------ transport faults
def test_timeout_is_network_and_retried(make_adapter, gc, sleeps):
    adapter = make_adapter(timeout=(1, 0.3))
    consent = connect(adapter)
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault("timeout", path="/balances", seconds=1)
    assert adapter.get_balances(consent, main.external_id)
    assert sleeps.waits == [0.5]
    stubborn = make_adapter(timeout=(1, 0.3), max_retries=0)
    gc.add_fault("timeout", path="/balances", seconds=1)
    with pytest.raises(ProviderError) as caught:
        stubborn.get_balances(consent, main.external_id)
    assert caught.value.category == ErrorCategory.NETWORK and caught.value.retryable


def test_malformed_json_is_provider_error_and_not_refetched(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.add_fault("malformed_json", path="/transactions")
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, None, None)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert calls(gc, TXNS) == 1
    assert gc.quota_remaining(main.external_id, "transactions") == 4


# ------------------------------------------------------------------------------ tokens and consent
def test_expired_access_token_is_refreshed_in_place(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    before = dict(consent.secrets)
    gc.advance_days(2)  # the 24 h access token is dead at GoCardless, not on our clock
    adapter.get_balances(consent, main.external_id)
    assert consent.secrets["access_token"] != before["access_token"]
    assert consent.secrets["refresh_token"] == before["refresh_token"]
    assert set(consent.secrets) == set(before)
    assert calls(gc, "POST /api/v2/token/refresh/") == 1
    assert calls(gc, "GET /api/v2/accounts/{id}/balances/") == 2  # 401, then the retry
    adapter.get_balances(consent, main.external_id)
    assert calls(gc, "POST /api/v2/token/refresh/") == 1


def test_token_known_to_be_expired_is_refreshed_first(adapter, consent, gc):
    consent.secrets["access_expires_at"] = "2000-01-01T00:00:00Z"
    old = consent.secrets["access_token"]
    adapter.list_accounts(consent)
    assert consent.secrets["access_token"] != old
    assert calls(gc, "POST /api/v2/token/refresh/") == 1
    assert calls(gc, "GET /api/v2/requisitions/{id}/") == 2  # callback + this one, no 401


def test_dead_refresh_token_buys_a_new_pair(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    before = dict(consent.secrets)
    gc.advance_days(31)  # the 30 d refresh token is dead too (the agreement lasts 90 d)
    assert adapter.get_balances(consent, main.external_id)
    assert consent.secrets["refresh_token"] != before["refresh_token"]
    assert consent.secrets["access_token"] != before["access_token"]
    assert calls(gc, "POST /api/v2/token/new/") == 2


def test_expired_agreement(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.advance_days(91)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, None, None)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "EUAExpired" and not caught.value.retryable
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "RequisitionExpired"


def test_requisition_expired_knob(adapter, consent, gc):
    gc.add_fault("requisition_expired", times=1, consent_id=consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.code == "RequisitionExpired"
    assert len(adapter.list_accounts(consent)) == 3  # a one-off
    gc.expire_requisition(consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED


def test_expired_account_status(adapter, consent, gc):
    gc.add_fault("requisition_expired", path="/accounts/", times=1)
    with pytest.raises(ProviderError) as caught:  # requisition still LN, the account EXPIRED
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "AccountExpired"


def test_access_revoked_at_the_bank(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    gc.revoke_at_bank(consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, main.external_id)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "AccessExpiredError"


def test_revoke_consent(adapter, consent, gc):
    main = by_iban(adapter, consent)[MAIN_IBAN]
    assert adapter.revoke_consent(consent) is True
    assert gc.requisitions() == []
    assert adapter.revoke_consent(consent) is False
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, main.external_id)
    assert caught.value.category == ErrorCategory.NOT_FOUND


def test_user_present_changes_nothing_gocardless_has_no_signal(make_adapter, gc):
    attended = make_adapter(user_present=True, psu_ip="192.0.2.7")
    consent = connect(attended)
    assert len(attended.list_accounts(consent)) == 3


def test_no_secret_in_any_log_line(make_adapter, gc, caplog):
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter()
    consent = connect(adapter)
    main = by_iban(adapter, consent)[MAIN_IBAN]
    adapter.get_balances(consent, main.external_id)
    gc.advance_days(2)
    adapter.fetch_transactions(consent, main.external_id, None, None)  # 401, refresh, retry
    gc.add_fault("http_503", path="/transactions")
    adapter.fetch_transactions(consent, main.external_id, None, None)
    gc.add_fault("rate_limit", path="/transactions", seconds=99999)
    with pytest.raises(ProviderError):
        adapter.fetch_transactions(consent, main.external_id, None, None)
    adapter.revoke_consent(consent)
    secrets_ = [DEFAULT_SECRET_KEY, DEFAULT_SECRET_ID, consent.secrets["access_token"],
                consent.secrets["refresh_token"]]
    secrets_ += [value for value in adapter._app_tokens.values() if isinstance(value, str)
                 and value.startswith("eyJ")]
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "gocardless" in text and "/token/refresh/" in text  # the flow was logged
    for secret in secrets_:
        assert secret not in text
        assert secret[:24] not in text
    assert "eyJ" not in text
