"""The Enable Banking adapter, through real HTTP to the simulator on 127.0.0.1."""
import logging
import re
import time
from datetime import date, timedelta
from decimal import Decimal

import jwt as pyjwt
import pytest
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import SleepRecorder
from services import errors
from services.errors import ErrorCategory, ProviderError
from services.providers import available_providers, get_adapter_class
from services.providers import enablebanking as eb_module
from services.providers.enablebanking import (EnableBankingAdapter, make_jwt, map_account,
                                              map_balance, map_transactions, parse_bank_date,
                                              signed_amount, split_institution_id)
from services.proxy import ProxyClient
from services.types import ConsentStatus, SyncPage, TxnStatus
from simulators.enablebanking import EnableBankingServer, simulate_user, verify_jwt
from simulators.enablebanking import data

APP_ID = "3f6c1e2a-adapter-test-app"
REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
DEMO = "Demo Bank|BE"
NORDIC = "Nordic Demo Bank|FI"
MAIN_IBAN = data.ACCOUNTS[("Demo Bank", "BE")][0]["iban"]
MAIN_HASH = data.ACCOUNTS[("Demo Bank", "BE")][0]["identification_hash"]


def _pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def key_pair():
    """(private key object, its PEM, another key's PEM), generated once for the module."""
    key = rsa.generate_private_key(65537, 2048, default_backend())
    other = rsa.generate_private_key(65537, 2048, default_backend())
    return key, _pem(key), _pem(other)


@pytest.fixture
def eb(key_pair):
    server = EnableBankingServer(public_key=key_pair[0].public_key(), application_id=APP_ID,
                                 redirect_urls=[REDIRECT_URI]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def eb_sleeps():
    return SleepRecorder()


@pytest.fixture
def make(eb, key_pair, eb_sleeps):
    """``make(config_overrides, **options)``: an adapter for the simulator, retries not slept."""

    def build(config=None, **options):
        options.setdefault("sleep", eb_sleeps)
        options.setdefault("timeout", (1, 5))
        return EnableBankingAdapter({"base_url": eb.url, "application_id": APP_ID,
                                     "private_key": key_pair[1], "environment": "sandbox",
                                     **(config or {})}, **options)

    return build


@pytest.fixture
def adapter(make):
    return make()


def connect(adapter, institution=DEMO, valid_days=None, consent=None, state="state-eb"):
    start = adapter.start_consent(institution, REDIRECT_URI, state, valid_days=valid_days,
                                  consent=consent)
    callback = simulate_user(start.redirect_url, "approve")
    assert callback["state"] == state
    return adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)


@pytest.fixture
def consent(adapter):
    return connect(adapter)


def main_account(adapter, consent):
    return next(a for a in adapter.list_accounts(consent) if a.iban == MAIN_IBAN)


# ------------------------------------------------------------------------------ registry, JWT
def test_adapter_is_registered():
    assert get_adapter_class("enablebanking") is EnableBankingAdapter
    assert ("enablebanking", "Enable Banking") in available_providers()
    assert EnableBankingAdapter.uses_pkce is False and EnableBankingAdapter.max_history_days is None
    assert EnableBankingAdapter({}).base_url == "https://api.enablebanking.com"


def test_jwt_claims_and_both_signers(key_pair):
    key = key_pair[0]
    now = int(time.time())
    for use_pyjwt in (True, False):
        token, exp = make_jwt(APP_ID, key, now=now, ttl=999999, use_pyjwt=use_pyjwt)
        header = pyjwt.get_unverified_header(token)
        assert header["alg"] == "RS256" and header["kid"] == APP_ID and header["typ"] == "JWT"
        claims = pyjwt.decode(token, key.public_key(), algorithms=["RS256"],
                              audience="api.enablebanking.com", issuer="enablebanking.com")
        assert claims["iat"] == now and claims["exp"] == exp == now + 86400  # capped at 24 h
        assert verify_jwt(token, key.public_key(), APP_ID)["iss"] == "enablebanking.com"


def test_jwt_is_cached_and_renewed_before_expiry(adapter, monkeypatch):
    first = adapter._token()
    assert adapter._token() is first
    token, exp = adapter._jwt
    monkeypatch.setattr(eb_module.time, "time", lambda: exp - 60)  # inside the renewal margin
    assert adapter._token() != first


def test_refused_jwt_is_auth_invalid_and_never_leaks(make, key_pair, eb):
    wrong_key = make({"private_key": key_pair[2]})
    with pytest.raises(ProviderError) as caught:
        wrong_key.list_institutions()
    error = caught.value
    assert error.category == ErrorCategory.AUTH_INVALID and error.http_status == 401
    assert error.code == "UNAUTHORIZED_ACCESS" and not error.retryable
    assert wrong_key._jwt[0] not in str(error) and "PRIVATE" not in str(error)
    assert "PRIVATE" not in repr(error.raw)
    wrong_app = make({"application_id": "not-our-app"})
    with pytest.raises(ProviderError) as caught:
        wrong_app.list_institutions()
    assert caught.value.code == "UNAUTHORIZED_ACCESS"
    with pytest.raises(ProviderError) as caught:  # the header left out
        make()._request("GET", "/aspsps", auth=False)
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "AUTHORIZATION_NOT_PROVIDED"


def test_missing_or_broken_credentials(make, eb):
    for config, code in (({"private_key": ""}, "MISSING_CREDENTIALS"),
                         ({"application_id": ""}, "MISSING_CREDENTIALS"),
                         ({"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n"
                                          "-----END PRIVATE KEY-----"}, "INVALID_PRIVATE_KEY"),
                         ({"private_key": "", "private_key_path": "/nonexistent/key.pem"},
                          "INVALID_PRIVATE_KEY")):
        with pytest.raises(ProviderError) as caught:
            make(config).list_institutions()
        assert caught.value.category == ErrorCategory.AUTH_INVALID
        assert caught.value.code == code and "nope" not in str(caught.value)
    assert eb.stats()["total"] == 0  # refused before any HTTP call


def test_config_aliases_and_key_file(make, key_pair, tmp_path):
    path = tmp_path / "app.pem"
    path.write_text(key_pair[1])
    by_path = make({"application_id": None, "client_id": APP_ID, "private_key": None,
                    "private_key_path": str(path)})
    assert [i.external_id for i in by_path.list_institutions(country="BE")] == [DEMO]
    aliased = make({"application_id": None, "client_id": APP_ID, "private_key": None,
                    "client_secret": key_pair[1]})
    assert aliased.get_application()["kid"] == APP_ID


# ------------------------------------------------------------------------------ institutions
def test_list_institutions(adapter):
    everything = {i.external_id: i for i in adapter.list_institutions()}
    assert set(everything) == {DEMO, NORDIC}
    demo = everything[DEMO]
    assert demo.provider == "enablebanking" and demo.name == "Demo Bank"
    assert demo.countries == ["BE"] and demo.bic == "DEMOBEBB" and demo.max_consent_days == 180
    assert demo.logo_url.endswith("/static/logo.svg") and demo.beta is False
    assert everything[NORDIC].max_consent_days == 90 and everything[NORDIC].beta is True
    assert everything[NORDIC].raw["required_psu_headers"] == ["psu-ip-address", "psu-user-agent"]
    assert [i.external_id for i in adapter.list_institutions(country="fi")] == [NORDIC]
    assert [i.external_id for i in adapter.list_institutions(query="nordic")] == [NORDIC]
    assert adapter.list_institutions(country="JP") == []
    assert split_institution_id("A|B|be") == ("A|B", "BE")
    with pytest.raises(ValueError):
        split_institution_id("Demo Bank")


# ------------------------------------------------------------------------------ consent
def test_consent_flow(adapter, eb):
    start = adapter.start_consent(DEMO, REDIRECT_URI, "st-1", language="fr_BE")
    assert start.redirect_url.startswith(f"{eb.url}/welcome?sessionid=")
    assert start.code_verifier is None and start.state == "st-1"
    assert start.pending_data["aspsp"] == {"name": "Demo Bank", "country": "BE"}
    callback = simulate_user(start.redirect_url)
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.provider == "enablebanking" and consent.status == ConsentStatus.ACTIVE
    assert consent.institution_id == DEMO
    assert consent.secrets == {"session_id": consent.external_id}
    assert [s["session_id"] for s in eb.sessions()] == [consent.external_id]
    assert consent.valid_until.tzinfo is not None
    assert consent.valid_until.utcoffset() == timedelta(0)
    # The longest validity the ASPSP allows (180 days), less the safety margin.
    left = consent.valid_until - eb.now()
    assert timedelta(days=180) - timedelta(minutes=11) < left <= timedelta(days=180)
    assert len(consent.raw["accounts"]) == 3


def test_consent_validity_is_capped_by_the_aspsp(adapter, eb):
    short = connect(adapter, valid_days=30)
    assert timedelta(days=29, hours=23) < short.valid_until - eb.now() <= timedelta(days=30)
    nordic = connect(adapter, NORDIC, valid_days=365)
    assert timedelta(days=89) < nordic.valid_until - eb.now() <= timedelta(days=90)


def test_cancelled_consent(adapter, eb):
    start = adapter.start_consent(DEMO, REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url, "cancel")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED
    assert error.code == "access_denied" and error.user_message
    assert not error.requires_user_presence
    assert eb.sessions() == [] and eb.stats()["requests"].get("POST /sessions") is None
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"state": "st"}, REDIRECT_URI)
    assert caught.value.category == ErrorCategory.BAD_REQUEST


def test_callback_state_must_match(adapter):
    start = adapter.start_consent(DEMO, REDIRECT_URI, "mine")
    callback = dict(simulate_user(start.redirect_url), state="forged")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.code == "STATE_MISMATCH"


def test_authorization_code_errors_and_no_retry(adapter, eb):
    start = adapter.start_consent(DEMO, REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url)
    eb.add_fault("http_500", path="/sessions")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert eb.stats()["requests"]["POST /sessions"] == 1  # the single-use code: never retried
    adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "WRONG_AUTHORIZATION_CODE"
    late = adapter.start_consent(DEMO, REDIRECT_URI, "st")
    late_callback = simulate_user(late.redirect_url)
    eb.advance_days(1)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(late_callback, REDIRECT_URI, pending_data=late.pending_data)
    assert caught.value.code == "EXPIRED_AUTHORIZATION_CODE"


def test_consent_start_errors(adapter):
    with pytest.raises(ProviderError) as caught:
        adapter.start_consent(DEMO, "http://127.0.0.1:9999/not-registered", "st")
    assert caught.value.category == ErrorCategory.AUTH_INVALID  # our configuration (§8)
    assert caught.value.code == "REDIRECT_URI_NOT_ALLOWED"
    with pytest.raises(ProviderError) as caught:
        adapter.start_consent("Unknown Bank|BE", REDIRECT_URI, "st")
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "WRONG_ASPSP_PROVIDED"
    with pytest.raises(ProviderError) as caught:
        adapter.start_consent("no-country", REDIRECT_URI, "st")
    assert caught.value.code == "INVALID_INSTITUTION"


# ------------------------------------------------------------------------------ accounts, balances
def test_list_accounts(adapter, consent, eb):
    accounts = {a.iban: a for a in adapter.list_accounts(consent)}
    assert len(accounts) == 3 and all(data.is_valid_iban(iban) for iban in accounts)
    main = accounts[MAIN_IBAN]
    assert main.provider == "enablebanking" and main.consent_external_id == consent.external_id
    assert main.stable_key == MAIN_HASH and main.external_id in eb.sessions()[0]["accounts"]
    assert main.name == "Business Current Account" and main.holder_name == "Demo Company BV"
    assert main.currency == "EUR" and main.kind == "checking"
    assert main.account_number_masked == f"{MAIN_IBAN[:4]} **** {MAIN_IBAN[-4:]}"
    assert {a.kind for a in accounts.values()} == {"checking", "savings"}
    assert {a.currency for a in accounts.values()} == {"EUR", "USD"}


def test_renewal_gets_new_uids_matched_by_stable_key(adapter, consent, eb):
    before = {a.stable_key: a.external_id for a in adapter.list_accounts(consent)}
    start = adapter.start_consent(None, REDIRECT_URI, "renew", consent=consent)
    assert start.pending_data["renews"] == consent.external_id
    renewed = adapter.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                       pending_data=start.pending_data)
    assert renewed.external_id != consent.external_id and renewed.institution_id == DEMO
    after = {a.stable_key: a.external_id for a in adapter.list_accounts(renewed)}
    assert set(after) == set(before)
    assert not set(after.values()) & set(before.values())


def test_account_without_hash_falls_back_to_iban():
    raw = {"uid": "u1", "account_id": {"iban": None},
           "all_account_ids": [{"identification": MAIN_IBAN, "scheme_name": "IBAN"}],
           "cash_account_type": "XXXX", "name": "Holder", "currency": "EUR"}
    account = map_account(raw, "s1")
    assert account.stable_key == MAIN_IBAN and account.iban == MAIN_IBAN
    assert account.kind == "other" and account.name == "Holder"


def test_get_balances(adapter, consent, eb):
    main = main_account(adapter, consent)
    balances = {b.kind: b for b in adapter.get_balances(consent, main.external_id)}
    expected = eb.expected_balances(MAIN_IBAN)
    assert balances["booked"].amount == expected["booked"]
    assert balances["available"].amount == expected["available"]
    assert isinstance(balances["booked"].amount, Decimal)
    assert balances["booked"].currency == "EUR" and balances["booked"].reference_date == eb.today
    assert balances["booked"].account_external_id == main.external_id
    itbd = {"balance_amount": {"currency": "EUR", "amount": "-10.50"}, "balance_type": "ITBD"}
    assert map_balance(itbd, "u").kind == "booked" and map_balance(itbd, "u").amount < 0
    assert map_balance(itbd, "u", {"CLBD", "ITBD"}).kind == "interim"


# ------------------------------------------------------------------------------ transactions
def test_fetch_transactions_returns_exactly_the_banks_transactions(make, eb):
    eb.set_today("2024-03-01")
    adapter = make()
    consent = connect(adapter)
    main = main_account(adapter, consent)
    page = adapter.fetch_transactions(consent, main.external_id, date(2024, 1, 1),
                                      date(2024, 3, 1))
    assert isinstance(page, SyncPage) and page.next_cursor is None
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    pending = [t for t in page.added if t.status == TxnStatus.PENDING]
    expected = eb.expected_booked(MAIN_IBAN, date(2024, 1, 1), date(2024, 3, 1))
    assert [t.external_id for t in booked] == [t["entry_reference"] for t in expected]
    assert not any(t.id_is_synthetic for t in booked)
    assert [t.amount for t in booked] == [
        Decimal(t["transaction_amount"]["amount"]) * (1 if t["credit_debit_indicator"] == "CRDT"
                                                      else -1) for t in expected]
    assert [t.booking_date for t in booked] == [date.fromisoformat(t["booking_date"])
                                                for t in expected]
    assert len(pending) == len(eb.expected_pending(MAIN_IBAN)) == 3
    assert all(t.id_is_synthetic and t.external_id.startswith("eb-") for t in pending)
    assert all(t.alt_ids["transaction_id"].startswith("PD") for t in pending)
    # 61 days x 3 + 3 pending = 186 lines, 50 a page: 4 pages.
    assert eb.stats()["requests"]["GET /accounts/{uid}/transactions"] == 4


def test_fetch_follows_many_pages_and_is_bounded(make, eb, monkeypatch):
    eb.configure(txns_per_day={"EUR": 10}, page_size=40)
    adapter = make(user_present=True)
    consent = connect(adapter)
    main = main_account(adapter, consent)
    page = adapter.fetch_transactions(consent, main.external_id, None, None)
    assert len(page.added) == 91 * 10 + 10
    assert len({t.external_id for t in page.added}) == len(page.added)
    assert eb.stats()["requests"]["GET /accounts/{uid}/transactions"] == 23
    monkeypatch.setattr(eb_module, "MAX_PAGES", 3)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, None, None)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert caught.value.code == "TOO_MANY_PAGES"


def test_continuation_key_loop_is_detected(adapter, consent, eb):
    main = main_account(adapter, consent)
    eb.add_fault("continuation_loop", times=None)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, None, None)
    assert caught.value.code == "CONTINUATION_LOOP"
    assert eb.stats()["requests"]["GET /accounts/{uid}/transactions"] == 2


def test_sign_dates_parties_and_foreign_currency(make, eb):
    eb.set_today("2024-04-10")
    adapter = make()
    consent = connect(adapter)
    main = main_account(adapter, consent)
    txns = adapter.fetch_transactions(consent, main.external_id, date(2024, 2, 1), None).added
    for txn in txns:
        raw = txn.raw
        sign = 1 if raw["credit_debit_indicator"] == "CRDT" else -1
        assert txn.amount == sign * Decimal(raw["transaction_amount"]["amount"]) != 0
        assert isinstance(txn.transaction_date, date) and txn.currency == "EUR"
        assert txn.counterparty_iban != MAIN_IBAN  # our own side is never the counterparty
        assert txn.description
    credits = [t for t in txns if t.amount > 0]
    debits = [t for t in txns if t.amount < 0]
    assert credits and debits
    assert all(t.counterparty_name == t.raw["debtor"]["name"] for t in credits)
    assert all(t.counterparty_name == t.raw["creditor"]["name"] for t in debits
               if t.raw["creditor"])
    assert any(t.counterparty_iban and data.is_valid_iban(t.counterparty_iban) for t in txns)
    with_ref = [t for t in txns if t.structured_reference]
    assert with_ref and all(data.is_valid_rf_reference(t.structured_reference) for t in with_ref)
    foreign = [t for t in txns if t.original_currency]
    assert foreign and all(t.original_currency in ("USD", "GBP") and t.original_amount < 0
                           for t in foreign)
    assert all(t.mcc and t.merchant_name == t.counterparty_name for t in foreign)
    booked = next(t for t in txns if t.status == TxnStatus.BOOKED)
    assert booked.value_date == booked.booking_date
    assert booked.transaction_date == booked.booking_date - timedelta(days=1)
    assert booked.date == booked.booking_date
    pending = next(t for t in txns if t.status == TxnStatus.PENDING)
    assert pending.booking_date is None and pending.date == date(2024, 4, 10)


def test_pure_mapping_rules():
    assert signed_amount("12.30", "DBIT") == Decimal("-12.30")
    assert signed_amount("-12.30", "DBIT") == Decimal("-12.30")  # an already signed bank
    assert signed_amount("12.30", "CRDT") == Decimal("12.30")
    assert signed_amount("-5.00", None) == Decimal("-5.00")
    for bad in (12.3, "", "NaN", "Infinity", None):
        with pytest.raises((ValueError, ArithmeticError)):
            signed_amount(bad, "CRDT")
    # The bank's calendar day, never shifted through UTC.
    assert parse_bank_date("2024-03-01T00:30:00+02:00") == date(2024, 3, 1)
    assert parse_bank_date("2024-02-29") == date(2024, 2, 29) and parse_bank_date(None) is None
    raw = {"entry_reference": None, "transaction_id": "T1", "status": "BOOK",
           "transaction_amount": {"currency": "EUR", "amount": "10.00"},
           "credit_debit_indicator": "DBIT", "booking_date": "2024-03-01",
           "remittance_information": "single line", "creditor": {"name": "Shop"}}
    twin = dict(raw, transaction_id="T2")
    info = dict(raw, status="INFO")
    mapped = map_transactions([raw, twin, info], "acc")
    assert len(mapped) == 2  # INFO lines are skipped
    assert mapped[0].external_id != mapped[1].external_id  # identical lines stay distinct
    assert all(t.id_is_synthetic for t in mapped) and mapped[0].description == "single line"
    assert map_transactions([twin, raw], "acc")[0].external_id == mapped[0].external_id


def test_pending_posts_under_a_new_id(make, eb):
    eb.set_today("2024-04-10")
    adapter = make()
    consent = connect(adapter)
    main = main_account(adapter, consent)
    first = adapter.fetch_transactions(consent, main.external_id, date(2024, 4, 8), None).added
    pending_ids = {t.external_id for t in first if t.status == TxnStatus.PENDING}
    assert len(pending_ids) == 3
    eb.advance_days(1)
    second = adapter.fetch_transactions(consent, main.external_id, date(2024, 4, 8), None).added
    posted = [t for t in second if t.booking_date == date(2024, 4, 11)]
    assert {t.replaces_external_id for t in posted} == pending_ids
    assert not pending_ids & {t.external_id for t in second}
    assert all(not t.id_is_synthetic and t.alt_ids["entry_reference"] == t.external_id
               for t in posted)


def test_repeating_and_missing_entry_references(make, eb):
    eb.set_today("2024-03-01")
    adapter = make(user_present=True)
    consent = connect(adapter)
    main = main_account(adapter, consent)
    expected = len(eb.expected_booked(MAIN_IBAN, date(2024, 2, 1), date(2024, 3, 1)))
    for mode in ("repeating", "missing"):
        eb.configure(entry_reference=mode)
        booked = [t for t in adapter.fetch_transactions(
            consent, main.external_id, date(2024, 2, 1), date(2024, 3, 1)).added
            if t.status == TxnStatus.BOOKED]
        assert len(booked) == expected
        assert len({t.external_id for t in booked}) == expected  # no line is lost as a duplicate
        assert all(t.id_is_synthetic for t in booked)
        if mode == "repeating":
            assert all(t.alt_ids["entry_reference"] == "NONREF" for t in booked)


def test_changing_entry_references_need_the_fingerprint_strategy(make, eb):
    eb.set_today("2024-03-01")
    eb.configure(entry_reference="changing")
    window = (date(2024, 2, 20), date(2024, 3, 1))
    by_reference = make(user_present=True)
    consent = connect(by_reference)
    uid = main_account(by_reference, consent).external_id

    def ids(adapter):
        return [t.external_id for t in adapter.fetch_transactions(consent, uid, *window).added
                if t.status == TxnStatus.BOOKED]

    assert ids(by_reference) != ids(by_reference)
    by_content = make({"transaction_id_strategy": "fingerprint"}, user_present=True)
    assert ids(by_content) == ids(by_content)
    eb.configure(entry_reference="stable")
    assert ids(by_content) == ids(by_content)


def test_wrong_transactions_period(adapter, consent, eb):
    main = main_account(adapter, consent)
    oldest = eb.today - timedelta(days=90)
    page = adapter.fetch_transactions(consent, main.external_id, eb.today - timedelta(days=200),
                                      eb.today)  # refused, then asked with strategy=longest
    assert min(t.booking_date for t in page.added if t.booking_date) == oldest
    eb.add_fault("wrong_transactions_period", times=2, path="/transactions")
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, main.external_id, eb.today, eb.today)
    error = caught.value
    assert error.category == ErrorCategory.BAD_REQUEST and error.http_status == 422
    assert error.code == "WRONG_TRANSACTIONS_PERIOD" and not error.retryable


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kind, category, code", [
    ("consent_expired", ErrorCategory.AUTH_EXPIRED, "EXPIRED_SESSION"),
    ("closed_session", ErrorCategory.AUTH_EXPIRED, "CLOSED_SESSION"),
    ("revoked_session", ErrorCategory.AUTH_EXPIRED, "REVOKED_SESSION"),
    ("session_does_not_exist", ErrorCategory.AUTH_EXPIRED, "SESSION_DOES_NOT_EXIST"),
    ("psu_action_required", ErrorCategory.USER_ACTION_REQUIRED, "ASPSP_PSU_ACTION_REQUIRED"),
    ("user_must_be_present", ErrorCategory.USER_ACTION_REQUIRED, errors.USER_MUST_BE_PRESENT),
    ("aspsp_error", ErrorCategory.INSTITUTION_DOWN, "ASPSP_ERROR"),
    ("aspsp_timeout", ErrorCategory.INSTITUTION_DOWN, "ASPSP_TIMEOUT"),
    ("rate_limit", ErrorCategory.RATE_LIMITED, "ASPSP_RATE_LIMIT_EXCEEDED"),
    ("unauthorized", ErrorCategory.AUTH_INVALID, "UNAUTHORIZED_ACCESS"),
    ("http_500", ErrorCategory.PROVIDER_ERROR, "INTERNAL_SERVER_ERROR"),
])
def test_error_mapping(make, eb, kind, category, code):
    adapter = make(max_retries=0)
    consent = connect(adapter)
    uid = main_account(adapter, consent).external_id
    eb.add_fault(kind, path="/balances", seconds=90 if kind == "rate_limit" else None)
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, uid)
    error = caught.value
    assert error.category == category and error.code == code
    assert error.provider == "enablebanking" and error.reference.startswith("OS-")
    assert error.retryable == (category in errors.TRANSIENT_CATEGORIES)
    assert error.raw["error"] in error.message and adapter._jwt[0] not in str(error)
    assert error.requires_user_presence == (kind == "user_must_be_present")
    if kind == "rate_limit":
        assert error.retry_after == 90.0 and error.http_status == 429


def test_unknown_account_is_not_found(adapter, consent):
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, "no-such-uid")
    assert caught.value.category == ErrorCategory.NOT_FOUND
    assert caught.value.code == "ACCOUNT_DOES_NOT_EXIST"


def test_transient_errors_are_retried_with_backoff(make, eb, eb_sleeps):
    adapter = make()
    consent = connect(adapter)
    uid = main_account(adapter, consent).external_id
    eb.add_fault("aspsp_timeout", path="/balances", times=2)
    assert adapter.get_balances(consent, uid)
    assert eb_sleeps.waits == [0.5, 1.0]


def test_rate_limits_short_waited_long_raised(make, eb, eb_sleeps):
    adapter = make(user_present=True)
    consent = connect(adapter)
    uid = main_account(adapter, consent).external_id
    eb.add_fault("rate_limit", seconds=2, path="/transactions")
    assert adapter.fetch_transactions(consent, uid, eb.today, eb.today).added
    assert eb_sleeps.waits == [2.0]
    eb.add_fault("rate_limit", seconds=3600, path="/transactions")
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, uid, eb.today, eb.today)
    assert caught.value.category == ErrorCategory.RATE_LIMITED
    assert caught.value.retry_after == 3600.0 and eb_sleeps.waits == [2.0]


def test_retry_hint_in_the_message(adapter):
    class Answer:
        headers = {}

    error = adapter._map_error(429, {"code": 429, "error": "ASPSP_RATE_LIMIT_EXCEEDED",
                                     "message": "Limit reached, try again in 45 seconds"},
                               Answer())
    assert error.category == ErrorCategory.RATE_LIMITED and error.retry_after == 45.0


def test_unattended_quota_and_user_presence(make, eb):
    unattended = make()
    consent = connect(unattended)
    uid = main_account(unattended, consent).external_id
    for _ in range(4):
        unattended.get_balances(consent, uid)
    with pytest.raises(ProviderError) as caught:
        unattended.get_balances(consent, uid)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED
    assert error.code == "ASPSP_RATE_LIMIT_EXCEEDED" and error.retry_after > 0
    attended = make(user_present=True, psu_ip="198.51.100.7")
    assert attended.get_balances(consent, uid)  # the PSU headers lift the quota


def test_bank_that_needs_the_user_present(make, eb):
    unattended = make()
    consent = connect(unattended, NORDIC)
    accounts = unattended.list_accounts(consent)  # details are not data calls
    assert {a.currency for a in accounts} == {"EUR", "SEK"}
    with pytest.raises(ProviderError) as caught:
        unattended.get_balances(consent, accounts[0].external_id)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED and error.requires_user_presence
    assert error.raw["error"] == "PSU_HEADER_NOT_PROVIDED"
    attended = make(user_present=True, psu_ip="198.51.100.7")
    assert attended.get_balances(consent, accounts[0].external_id)
    sek = next(a for a in accounts if a.currency == "SEK")
    assert sek.iban is None and sek.stable_key and sek.account_number_masked.startswith("SE-4")


def test_timeout_and_malformed_json(make, eb):
    adapter = make(max_retries=1, timeout=(1, 0.3))
    consent = connect(adapter)
    uid = main_account(adapter, consent).external_id
    eb.add_fault("timeout", path="/balances", times=None, seconds=5)
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, uid)
    assert caught.value.category == ErrorCategory.NETWORK and caught.value.retryable
    assert eb.stats()["requests"]["GET /accounts/{uid}/balances"] == 2  # one retry
    eb.clear_faults()
    eb.add_fault("malformed_json", path="/transactions", times=None)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, uid, None, None)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR


def test_answer_without_the_documented_shape(adapter, consent, monkeypatch):
    uid = main_account(adapter, consent).external_id
    monkeypatch.setattr(adapter, "_request", lambda *a, **k: {"transactions": "nope"})
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, uid, None, None)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR


def test_expired_session(adapter, consent, eb):
    uid = main_account(adapter, consent).external_id
    eb.advance_days(181)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "EXPIRED_SESSION" and not caught.value.retryable
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, uid)
    assert caught.value.code == "EXPIRED_SESSION" and caught.value.http_status == 401
    assert adapter.revoke_consent(consent) is False


def test_session_revoked_at_the_bank(adapter, consent, eb):
    uid = main_account(adapter, consent).external_id
    eb.revoke_session(consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, uid, None, None)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "REVOKED_SESSION"
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.code == "REVOKED_SESSION"


def test_revoke_consent(adapter, consent, eb):
    uid = main_account(adapter, consent).external_id
    assert adapter.revoke_consent(consent) is True
    assert eb.sessions()[0]["status"] == "CLOSED"
    assert adapter.revoke_consent(consent) is False
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, uid)
    assert caught.value.code == "CLOSED_SESSION"
    forgotten = ProxyClient.consent("enablebanking", "00000000-0000-4000-8000-000000000000",
                                    {"session_id": "00000000-0000-4000-8000-000000000000"})
    assert adapter.revoke_consent(forgotten) is False  # SESSION_DOES_NOT_EXIST


def test_proxy_client_with_a_rebuilt_consent(eb, key_pair):
    config = {"base_url": eb.url, "client_id": APP_ID, "client_secret": key_pair[1],
              "environment": "sandbox"}
    client = ProxyClient("enablebanking", config, sleep=lambda s: None, user_present=True)
    assert client.uses_pkce is False
    start = client.start_consent(DEMO, REDIRECT_URI, "px")
    consent = client.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                      pending_data=start.pending_data)
    rebuilt = ProxyClient.consent("enablebanking", consent.external_id, consent.secrets,
                                  valid_until=consent.valid_until, institution_id=DEMO)
    accounts = client.accounts(rebuilt)
    usd = next(a for a in accounts if a.currency == "USD")
    page = client.transactions(rebuilt, usd.external_id, eb.today - timedelta(days=3), eb.today)
    assert len(page.added) == 4 * 1 + 1  # USD: one a day, plus today's pending one
    assert client.revoke(rebuilt) is True


def test_no_secret_in_any_log_line(make, eb, key_pair, caplog):
    caplog.set_level(logging.DEBUG)
    adapter = make(user_present=True, psu_ip="198.51.100.7")
    adapter.list_institutions()
    start = adapter.start_consent(DEMO, REDIRECT_URI, "logs")
    callback = simulate_user(start.redirect_url)
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    uid = main_account(adapter, consent).external_id
    eb.add_fault("aspsp_error", path="/balances")
    adapter.get_balances(consent, uid)  # logs a retry
    eb.set_today(eb.today)  # no-op, keeps the clock
    adapter.fetch_transactions(consent, uid, eb.today - timedelta(days=200), eb.today)
    with pytest.raises(ProviderError):
        make({"private_key": key_pair[2]}).list_institutions()
    adapter.revoke_consent(consent)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "retrying" in text and "longest" in text  # the flow did log
    secrets = [adapter._jwt[0], callback["code"]]
    secrets += [line for line in key_pair[1].splitlines() if "PRIVATE" not in line]
    for secret in secrets:
        assert secret not in text
    # No JWT at all (a continuation key is base64 JSON too, but not header.payload.signature).
    assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", text)
    assert "PRIVATE KEY" not in text


def test_simulator_with_its_own_demo_key():
    with EnableBankingServer() as server:  # no key given: the simulator makes a demo pair
        config = server.client_config()
        assert "PRIVATE KEY" in config["private_key"]
        adapter = EnableBankingAdapter(config, sleep=lambda s: None, timeout=(1, 5))
        assert adapter.get_application()["kid"] == server.application_id
        consent = connect(adapter)
        assert len(adapter.list_accounts(consent)) == 3
