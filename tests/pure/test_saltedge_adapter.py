"""The Salt Edge v6 adapter, through real HTTP (signed requests) to the simulator on 127.0.0.1."""
import base64
import logging
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from conftest import SleepRecorder

import services.providers.saltedge as saltedge_module
from services import errors
from services.errors import ErrorCategory, ProviderError
from services.providers import available_providers, get_adapter_class
from services.providers.saltedge import (ERROR_CATEGORIES, SaltEdgeAdapter,
                                         find_structured_reference, fingerprint, is_iban,
                                         map_account, map_transaction, parse_amount,
                                         retry_after_from_message, sign, signature_message)
from services.types import ConsentStatus, SyncPage, TxnStatus
from simulators.saltedge import SaltEdgeServer, simulate_user

APP_ID = "odoo-test-app"
SECRET = "se-secret-2b9d41c7"
REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
MAIN_IBAN = "BE71096123456769"


@pytest.fixture(scope="module")
def keys():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, private, public


@pytest.fixture
def se(keys):
    server = SaltEdgeServer(app_id=APP_ID, secret=SECRET, public_key=keys[2]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def make_adapter(se, keys, sleeps):
    def make(config=None, **options):
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", (1, 5))
        return SaltEdgeAdapter({"base_url": se.api_url, "app_id": APP_ID, "secret": SECRET,
                                "private_key": keys[1], "environment": "production",
                                **(config or {})}, **options)
    return make


@pytest.fixture
def adapter(make_adapter):
    return make_adapter()


def connect(adapter, provider="fakebank_simple_xf", valid_days=None, consent=None):
    start = adapter.start_consent(provider, REDIRECT_URI, "state-42", valid_days=valid_days,
                                  consent=consent)
    callback = simulate_user(start.redirect_url)
    assert callback["state"] == "state-42"
    return adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)


@pytest.fixture
def consent(adapter):
    return connect(adapter)


def by_currency(adapter, consent):
    return {account.currency: account for account in adapter.list_accounts(consent)}


# ------------------------------------------------------------------------------ registry, signing
def test_adapter_is_registered():
    assert get_adapter_class("saltedge") is SaltEdgeAdapter
    assert ("saltedge", "Salt Edge") in available_providers()
    assert SaltEdgeAdapter.uses_pkce is False and SaltEdgeAdapter.max_history_days == 90
    assert SaltEdgeAdapter({}).base_url == "https://www.saltedge.com/api/v6"


def test_signature_is_rsa_sha256_over_the_documented_string(keys):
    key, private, _public = keys
    loaded = serialization.load_pem_private_key(private.encode(), password=None)
    url = "https://www.saltedge.com/api/v6/accounts?connection_id=1"
    message = signature_message("1700000060", "get", url, "")
    assert message == f"1700000060|GET|{url}|"
    signature = base64.b64decode(sign(loaded, "1700000060", "GET", url, ""))
    key.public_key().verify(signature, message.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(Exception):
        key.public_key().verify(signature, message.replace("=1", "=2").encode(),
                                padding.PKCS1v15(), hashes.SHA256())


def test_production_needs_a_private_key(make_adapter, se):
    with pytest.raises(ProviderError) as caught:
        make_adapter({"private_key": None}).list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "MissingPrivateKey" and se.stats()["total"] == 0
    with pytest.raises(ProviderError) as caught:
        make_adapter({"private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key\n"
                                     "-----END PRIVATE KEY-----"}).list_institutions()
    assert caught.value.code == "InvalidPrivateKey" and "not-a-key" not in str(caught.value)
    with pytest.raises(ProviderError) as caught:
        make_adapter({"app_id": ""}).list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID and se.stats()["total"] == 0


def test_unsigned_sandbox_calls_are_refused_by_a_signing_server(make_adapter):
    with pytest.raises(ProviderError) as caught:
        make_adapter({"private_key": None, "environment": "sandbox"}).list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "MissingExpiresAt" and caught.value.http_status == 400


@pytest.mark.parametrize("change, code", [
    ({"secret": "wrong-secret-123456"}, "ApiKeyNotFound"),
    ({"app_id": "someone-else"}, "ApiKeyNotFound"),
    ({"private_key": "other"}, "SignatureNotMatch"),
])
def test_bad_credentials_are_auth_invalid(make_adapter, change, code):
    if change.get("private_key") == "other":
        other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        change = {"private_key": other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()}
    with pytest.raises(ProviderError) as caught:
        make_adapter(change).list_institutions()
    error = caught.value
    assert error.category == ErrorCategory.AUTH_INVALID and error.code == code
    assert not error.retryable and error.http_status == 401
    assert "wrong-secret-123456" not in str(error) and SECRET not in str(error)


# ------------------------------------------------------------------------------ institutions
def test_list_institutions(make_adapter):
    sandbox = make_adapter({"environment": "sandbox"})
    codes = [i.external_id for i in sandbox.list_institutions()]
    assert codes == ["fakebank_simple_xf", "fakebank_oauth_client_xf", "demobank_be"]
    fake = sandbox.list_institutions(country="xf", query="oauth")
    assert [i.external_id for i in fake] == ["fakebank_oauth_client_xf"]
    assert fake[0].countries == ["XF"] and fake[0].max_consent_days == 180
    assert fake[0].max_history_days == 365 and fake[0].logo_url.endswith(".svg")
    live = make_adapter().list_institutions()  # production: no fake providers
    assert [i.external_id for i in live] == ["demobank_be"]


# ------------------------------------------------------------------------------ consent
def test_consent_flow(adapter, se):
    start = adapter.start_consent("fakebank_simple_xf", REDIRECT_URI, "st-1", language="fr")
    assert start.redirect_url.startswith(f"{se.url}/connect?token=")
    assert start.code_verifier is None and start.state == "st-1"
    assert start.pending_data["flow"] == "connect"
    customer_id = start.pending_data["customer_id"]
    assert [c["customer_id"] for c in se.customers()] == [customer_id]
    callback = simulate_user(start.redirect_url)
    assert callback == {"state": "st-1", "connection_id": callback["connection_id"]}
    consent = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.provider == "saltedge" and consent.status == ConsentStatus.ACTIVE
    assert consent.external_id == callback["connection_id"]
    assert consent.institution_id == "fakebank_simple_xf"
    assert consent.valid_until.utcoffset() == timedelta(0)
    assert consent.valid_until - consent.created_at == timedelta(days=90)
    assert consent.secrets == {"customer_id": customer_id,
                               "consent_id": se.consents(consent.external_id)[0]["id"]}
    assert consent.next_refresh_possible_at > consent.created_at


def test_consent_period_and_provider_maximum(adapter, se):
    assert connect(adapter, valid_days=30).valid_until - datetime.now(timezone.utc) <= \
        timedelta(days=30)
    # 120 days is more than this provider's 90: the provider's maximum applies
    consent = connect(adapter, valid_days=120)
    assert consent.valid_until - consent.created_at == timedelta(days=90)
    assert se.stats()["requests"]["POST /connections/connect"] == 3


def test_customer_reuse_and_duplicates(make_adapter, se):
    first = make_adapter({"customer_identifier": "company-7"})
    customer_id = first.start_consent(None, REDIRECT_URI, "s").pending_data["customer_id"]
    with pytest.raises(ProviderError) as caught:
        first.start_consent(None, REDIRECT_URI, "s")
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "DuplicatedCustomer" and caught.value.http_status == 409
    reuse = make_adapter({"customer_id": customer_id, "environment": "sandbox"})
    start = reuse.start_consent(None, REDIRECT_URI, "s2")
    assert start.pending_data["customer_id"] == customer_id
    assert se.stats()["requests"]["POST /customers"] == 2
    callback = simulate_user(start.redirect_url, provider_code="fakebank_oauth_client_xf")
    consent = reuse.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert consent.institution_id == "fakebank_oauth_client_xf"
    assert consent.valid_until - consent.created_at == timedelta(days=180)


def test_cancelled_consent(adapter, se):
    start = adapter.start_consent("fakebank_simple_xf", REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url, "cancel")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED
    assert error.code == "ProviderAccessNotGranted"
    assert error.user_message == "The customer denied access to the data."
    assert not error.requires_user_presence and se.connections() == []


def test_callback_checks(adapter, make_adapter, se):
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"state": "x"}, REDIRECT_URI, pending_data={"flow": "connect"})
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    mine = connect(adapter)
    other = make_adapter().start_consent("fakebank_simple_xf", REDIRECT_URI, "s")
    with pytest.raises(ProviderError) as caught:  # a connection of another customer
        adapter.complete_consent({"connection_id": mine.external_id}, REDIRECT_URI,
                                 pending_data=other.pending_data)
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"connection_id": "1469999999999999"}, REDIRECT_URI)
    assert caught.value.category == ErrorCategory.NOT_FOUND
    assert caught.value.code == "ConnectionNotFound" and caught.value.http_status == 404


def test_date_out_of_range_at_connect(make_adapter):
    adapter = make_adapter({"history_days": 400})  # the provider fetches at most 365 days
    with pytest.raises(ProviderError) as caught:
        adapter.start_consent("fakebank_simple_xf", REDIRECT_URI, "s")
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "DateOutOfRange" and not caught.value.retryable


# ------------------------------------------------------------------------------ accounts, balances
def test_accounts_and_balances(adapter, consent, se):
    accounts = by_currency(adapter, consent)
    eur, usd = accounts["EUR"], accounts["USD"]
    assert eur.iban == MAIN_IBAN and eur.stable_key == MAIN_IBAN and eur.kind == "checking"
    assert eur.account_number_masked == "BE71 **** 6769"
    assert eur.holder_name == "Demo Company SRL" and eur.consent_external_id == consent.external_id
    assert usd.iban is None and usd.stable_key == "number:4401-2288"
    assert usd.account_number_masked == "****2288"
    balances = {b.kind: b for b in adapter.get_balances(consent, eur.external_id)}
    booked, available = se.expected_balance(eur.external_id)
    assert balances["booked"].amount == booked and balances["available"].amount == available
    assert isinstance(booked, Decimal) and balances["booked"].currency == "EUR"
    assert balances["booked"].reference_date == se.today
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, "1")
    assert caught.value.category == ErrorCategory.NOT_FOUND


def test_accounts_are_rematched_after_a_new_connection(adapter, consent):
    first = by_currency(adapter, consent)
    second = by_currency(adapter, connect(adapter))
    assert {a.stable_key for a in second.values()} == {a.stable_key for a in first.values()}
    assert second["EUR"].external_id != first["EUR"].external_id


# ------------------------------------------------------------------------------ transactions
def test_fetch_returns_exactly_the_banks_transactions(adapter, se):
    se.set_today("2024-03-10")
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    page = adapter.fetch_transactions(consent, eur.external_id, date(2024, 2, 1),
                                      date(2024, 3, 10))
    assert isinstance(page, SyncPage) and page.next_cursor is None
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    pending = [t for t in page.added if t.status == TxnStatus.PENDING]
    expected = se.expected_booked(MAIN_IBAN, date(2024, 2, 1), date(2024, 3, 10))
    assert [t.external_id for t in booked] == [t["id"] for t in expected]
    assert [t.amount for t in booked] == [Decimal(str(t["amount"])) for t in expected]
    assert {t.external_id for t in pending} == {t["id"] for t in se.expected_pending(MAIN_IBAN)}
    assert all(t.account_external_id == eur.external_id for t in page.added)
    assert min(t.booking_date for t in booked) == date(2024, 2, 1)


def test_cursor_of_an_empty_field_or_another_format_is_ignored(adapter, se):
    # The core passes the account's stored cursor back: False when the field is empty (Salt Edge
    # never returns one), or a value it does not understand. Neither may reach ``from_id``.
    se.set_today("2024-03-10")
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    window = (date(2024, 2, 1), date(2024, 3, 10))
    whole = adapter.fetch_transactions(consent, eur.external_id, *window)
    for cursor in (False, "", "   ", "not-an-id", "12ab", "-5", "\u00b2"):
        page = adapter.fetch_transactions(consent, eur.external_id, *window, cursor=cursor)
        assert [t.external_id for t in page.added] == [t.external_id for t in whole.added]
        assert page.next_cursor is None
    assert saltedge_module.transaction_cursor(None) is None
    assert saltedge_module.transaction_cursor(False) is None
    assert saltedge_module.transaction_cursor(True) is None
    assert saltedge_module.transaction_cursor(" 1460000000000123 ") == "1460000000000123"
    assert saltedge_module.transaction_cursor(42) == "42"


def test_cursor_that_is_a_transaction_id_starts_there(adapter, se):
    se.set_today("2024-03-10")
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    posted = se.expected_booked(MAIN_IBAN, date(2024, 2, 1), date(2024, 3, 10))
    middle = posted[len(posted) // 2]["id"]
    page = adapter.fetch_transactions(consent, eur.external_id, None, None, cursor=middle)
    booked = [t.external_id for t in page.added if t.status == TxnStatus.BOOKED]
    assert booked and min(booked, key=int) == middle
    assert all(int(i) >= int(middle) for i in booked)


def test_fetch_follows_every_page(make_adapter, se, monkeypatch):
    se.set_today("2024-03-10")
    se.configure(txns_per_day={"EUR": 10})
    adapter = make_adapter()
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    monkeypatch.setattr(saltedge_module, "PER_PAGE", 250)
    before = se.stats()["requests"].get("GET /transactions", 0)
    page = adapter.fetch_transactions(consent, eur.external_id, None, None)
    assert len(page.added) == 91 * 10 + 10
    assert len({t.external_id for t in page.added}) == len(page.added)
    assert se.stats()["requests"]["GET /transactions"] - before == 4 + 1  # 910 posted, pending
    monkeypatch.setattr(saltedge_module, "MAX_PAGES", 2)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, eur.external_id, None, None)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR and not caught.value.retryable


def test_transaction_mapping_through_the_api(adapter, se):
    se.set_today("2024-04-10")
    se.configure(txns_per_day={"EUR": 8})
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    txns = adapter.fetch_transactions(consent, eur.external_id, None, None).added
    booked = [t for t in txns if t.status == TxnStatus.BOOKED]
    for txn in booked:
        assert isinstance(txn.booking_date, date) and not isinstance(txn.booking_date, datetime)
        assert txn.booking_date == date.fromisoformat(txn.raw["extra"]["posting_date"])
        assert txn.value_date == txn.transaction_date == txn.booking_date - timedelta(days=1)
        assert not txn.id_is_synthetic and txn.replaces_external_id is None
        assert txn.amount == Decimal(str(txn.raw["amount"]))
        assert (txn.amount < 0) == (txn.raw["amount"] < 0)
    outgoing = [t for t in booked if t.raw["extra"].get("payee")]
    incoming = [t for t in booked if t.raw["extra"].get("payer")]
    assert outgoing and all(t.amount < 0 and t.counterparty_name == t.raw["extra"]["payee"]
                            for t in outgoing)
    assert incoming and all(t.amount > 0 and t.counterparty_name == t.raw["extra"]["payer"]
                            for t in incoming)
    with_iban = [t for t in booked if t.counterparty_iban]
    assert with_iban and all(is_iban(t.counterparty_iban) for t in with_iban)
    with_ref = [t for t in booked if t.structured_reference]
    assert with_ref and all(t.structured_reference.startswith("+++") for t in with_ref)
    foreign = [t for t in booked if t.original_currency]
    assert foreign and all(t.original_currency != "EUR" and t.original_amount < 0
                           and isinstance(t.original_amount, Decimal) for t in foreign)
    cards = [t for t in booked if t.mcc]
    assert cards and all(t.merchant_name for t in cards)
    rent = [t for t in booked if t.booking_date.day == 1 and t.amount == Decimal("-1850")]
    assert len(rent) == 3 and all(t.end_to_end_id.startswith("RENT-") for t in rent)
    pending = [t for t in txns if t.status == TxnStatus.PENDING]
    assert len(pending) == 8 and all(t.booking_date is None for t in pending)
    assert all(t.date == date(2024, 4, 10) for t in pending)


def test_pending_posts_under_a_new_id(adapter, se):
    se.set_today("2024-04-10")
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    first = adapter.fetch_transactions(consent, eur.external_id, date(2024, 4, 8), None).added
    pending = [t for t in first if t.status == TxnStatus.PENDING]
    assert len(pending) == 3
    se.advance_days(1)
    second = adapter.fetch_transactions(consent, eur.external_id, date(2024, 4, 8), None).added
    posted = [t for t in second if t.booking_date == date(2024, 4, 11)]
    assert len(posted) == 3
    assert not {t.external_id for t in pending} & {t.external_id for t in second}
    assert {t.alt_ids["fingerprint"] for t in posted} == \
        {t.alt_ids["fingerprint"] for t in pending}
    assert sorted(t.amount for t in posted) == sorted(t.amount for t in pending)


def test_date_window_is_applied_locally(adapter, se):
    se.set_today("2024-04-10")
    consent = connect(adapter)
    usd = by_currency(adapter, consent)["USD"]
    page = adapter.fetch_transactions(consent, usd.external_id, date(2024, 4, 1),
                                      date(2024, 4, 5))
    assert sorted(t.booking_date for t in page.added) == [date(2024, 4, d) for d in range(1, 6)]
    assert all(t.status == TxnStatus.BOOKED for t in page.added)


def test_pure_mapping():
    raw = {"id": "1450112233445566", "account_id": "9", "made_on": "2025-03-03", "amount": -49.9,
           "currency_code": "EUR", "description": "SEPA DD Telco SA", "category": "telephone",
           "mode": "normal", "status": "posted", "duplicated": False,
           "extra": {"posting_date": "2025-03-04", "payee": "Telco SA",
                     "account_number": "FR7630006000011234567890189",
                     "end_to_end_id": "INV-2025-03",
                     "additional": "Invoice 2025-03 RF18539007547034",
                     "original_amount": -49.9, "original_currency_code": "EUR",
                     "account_balance_snapshot": 1200.1}}
    txn = map_transaction(raw, "9")
    assert txn.amount == Decimal("-49.9") and str(txn.amount) == "-49.9"
    assert txn.booking_date == date(2025, 3, 4) and txn.value_date == date(2025, 3, 3)
    assert txn.counterparty_name == "Telco SA"
    assert txn.counterparty_iban == "FR7630006000011234567890189"
    assert txn.structured_reference == "RF18539007547034"
    assert txn.description == "SEPA DD Telco SA - Invoice 2025-03 RF18539007547034"
    assert txn.balance_after == Decimal("1200.1") and txn.original_amount == Decimal("-49.9")
    assert txn.alt_ids["end_to_end_id"] == "INV-2025-03"
    assert txn.alt_ids["fingerprint"] == fingerprint(date(2025, 3, 3), Decimal("-49.90"), "EUR",
                                                     "sepa  dd telco sa")
    assert map_transaction(dict(raw, extra={}, amount=12), "9").counterparty_iban is None
    with pytest.raises(ValueError):
        map_transaction(dict(raw, status="duplicated"), "9")
    assert parse_amount(0.1) == Decimal("0.1") and parse_amount("-3.20") == Decimal("-3.20")
    for bad in (True, None, float("nan"), [1]):
        with pytest.raises(ValueError):
            parse_amount(bad)
    assert find_structured_reference("pay +++090/9337/55493+++ now") == "+++090/9337/55493+++"
    assert find_structured_reference("***090/9337/55493***") == "+++090/9337/55493+++"
    assert find_structured_reference("+++090/9337/55494+++", "RF00123") is None
    account = map_account({"id": 5, "name": "Card", "nature": "credit_card",
                           "currency_code": "EUR", "extra": {}}, "c")
    assert account.kind == "card" and account.stable_key.startswith("name:")
    assert map_account({"id": 6, "nature": "ewallet", "extra": {}}, "c").kind == "other"


def test_retry_after_from_message():
    now = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
    assert retry_after_from_message("Try again in 42 seconds.") == 42.0
    assert retry_after_from_message("retry in 2 minutes") == 120.0
    assert retry_after_from_message("Next refresh is possible at 2025-03-04T11:00:00Z",
                                    now) == 3600.0
    assert retry_after_from_message("no hint") is None


# ------------------------------------------------------------------------------ errors
# Every class the reference lists for Salt Edge (§3.6, §8) and the category it must land in.
REFERENCE_CLASSES = {
    "AccountNotFound": ErrorCategory.NOT_FOUND, "ActionNotAllowed": ErrorCategory.AUTH_INVALID,
    "ApiKeyNotFound": ErrorCategory.AUTH_INVALID, "AppIdNotProvided": ErrorCategory.AUTH_INVALID,
    "BackgroundFetchLimitExceeded": ErrorCategory.RATE_LIMITED,
    "ClientDisabled": ErrorCategory.AUTH_INVALID, "ClientPending": ErrorCategory.AUTH_INVALID,
    "ClientRestricted": ErrorCategory.AUTH_INVALID,
    "ConnectionCannotBeRefreshed": ErrorCategory.RATE_LIMITED,
    "ConnectionDisabled": ErrorCategory.AUTH_EXPIRED,
    "ConnectionNotFound": ErrorCategory.NOT_FOUND,
    "ConnectionLimitReached": ErrorCategory.BAD_REQUEST,
    "CustomerNotFound": ErrorCategory.NOT_FOUND, "CustomerLocked": ErrorCategory.AUTH_INVALID,
    "DateOutOfRange": ErrorCategory.BAD_REQUEST, "DuplicatedCustomer": ErrorCategory.BAD_REQUEST,
    "ExecutionTimeout": ErrorCategory.INSTITUTION_DOWN,
    "ExpiresAtInvalid": ErrorCategory.AUTH_INVALID,
    "FetchingTimeout": ErrorCategory.INSTITUTION_DOWN,
    "InternalServerError": ErrorCategory.PROVIDER_ERROR,
    "InvalidCredentials": ErrorCategory.AUTH_EXPIRED,
    "InvalidFromDate": ErrorCategory.BAD_REQUEST, "InvalidToDate": ErrorCategory.BAD_REQUEST,
    "JsonParseError": ErrorCategory.BAD_REQUEST, "MissingExpiresAt": ErrorCategory.AUTH_INVALID,
    "MissingSignature": ErrorCategory.AUTH_INVALID,
    "ProviderUnavailable": ErrorCategory.INSTITUTION_DOWN,
    "ProviderError": ErrorCategory.INSTITUTION_DOWN,
    "ProviderDisabled": ErrorCategory.INSTITUTION_DOWN,
    "ProviderInactive": ErrorCategory.INSTITUTION_DOWN,
    "RateLimitExceeded": ErrorCategory.RATE_LIMITED,
    "RequestExpired": ErrorCategory.AUTH_INVALID,
    "SignatureNotMatch": ErrorCategory.AUTH_INVALID,
    "SecretNotProvided": ErrorCategory.AUTH_INVALID, "TooManyRequests": ErrorCategory.RATE_LIMITED,
    "TransactionNotFound": ErrorCategory.NOT_FOUND,
    "WrongRequestFormat": ErrorCategory.BAD_REQUEST,
    "AispConsentExpired": ErrorCategory.AUTH_EXPIRED,
    "AispConsentRevoked": ErrorCategory.AUTH_EXPIRED,
    "AispConsentNotFound": ErrorCategory.AUTH_EXPIRED,
    "DateOutOfAispConsentRange": ErrorCategory.BAD_REQUEST,
}


@pytest.mark.parametrize("error_class", sorted(REFERENCE_CLASSES))
def test_every_reference_class_is_mapped(error_class):
    assert ERROR_CATEGORIES[error_class] == REFERENCE_CLASSES[error_class]
    adapter = SaltEdgeAdapter({"app_id": "a", "secret": "s"})
    error = adapter._map_error(400, {"error": {"class": error_class, "message": "m"}}, None)
    assert error.category == REFERENCE_CLASSES[error_class] and error.code == error_class
    assert error.retryable == (error.category in errors.TRANSIENT_CATEGORIES
                               and error_class not in ("ProviderDisabled", "ProviderInactive"))


def test_unknown_classes_fall_back():
    adapter = SaltEdgeAdapter({"app_id": "a", "secret": "s"})
    assert adapter._map_error(404, {"error": {"class": "LeadNotFound"}}, None).category == \
        ErrorCategory.NOT_FOUND
    assert adapter._map_error(503, {"error": {"class": "Brand new"}}, None).category == \
        ErrorCategory.PROVIDER_ERROR
    assert adapter._map_error(429, {}, None).category == ErrorCategory.RATE_LIMITED


@pytest.mark.parametrize("kind, category, code", [
    ("http_500", ErrorCategory.PROVIDER_ERROR, "InternalServerError"),
    ("provider_unavailable", ErrorCategory.INSTITUTION_DOWN, "ProviderUnavailable"),
    ("provider_error", ErrorCategory.INSTITUTION_DOWN, "ProviderError"),
    ("fetching_timeout", ErrorCategory.INSTITUTION_DOWN, "FetchingTimeout"),
    ("execution_timeout", ErrorCategory.INSTITUTION_DOWN, "ExecutionTimeout"),
    ("invalid_credentials", ErrorCategory.AUTH_EXPIRED, "InvalidCredentials"),
    ("consent_expired", ErrorCategory.AUTH_EXPIRED, "AispConsentExpired"),
    ("consent_revoked", ErrorCategory.AUTH_EXPIRED, "AispConsentRevoked"),
    ("user_must_be_present", ErrorCategory.USER_ACTION_REQUIRED, errors.USER_MUST_BE_PRESENT),
    ("rate_limit", ErrorCategory.RATE_LIMITED, "RateLimitExceeded"),
    ("too_many_requests", ErrorCategory.RATE_LIMITED, "TooManyRequests"),
    ("background_fetch_limit", ErrorCategory.RATE_LIMITED, "BackgroundFetchLimitExceeded"),
    ("connection_cannot_be_refreshed", ErrorCategory.RATE_LIMITED, "ConnectionCannotBeRefreshed"),
    ("connection_not_found", ErrorCategory.NOT_FOUND, "ConnectionNotFound"),
    ("wrong_request_format", ErrorCategory.BAD_REQUEST, "WrongRequestFormat"),
    ("date_out_of_range", ErrorCategory.BAD_REQUEST, "DateOutOfRange"),
])
def test_error_mapping_through_the_api(make_adapter, se, kind, category, code):
    adapter = make_adapter(max_retries=0)
    consent = connect(adapter)
    se.add_fault(kind, seconds=90)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == category and error.code == code and error.provider == "saltedge"
    assert error.http_status >= 400 and error.reference.startswith("OS-")
    assert error.retryable == (category in errors.TRANSIENT_CATEGORIES)
    assert SECRET not in str(error) and SECRET not in repr(error.raw)
    if category == ErrorCategory.RATE_LIMITED:
        assert error.retry_after == 90.0
    if code == errors.USER_MUST_BE_PRESENT:
        assert error.requires_user_presence and "InteractiveAdapterTimeout" in error.message


def test_transient_errors_are_retried_with_backoff(make_adapter, se, sleeps):
    adapter = make_adapter()
    consent = connect(adapter)
    se.add_fault("provider_unavailable", times=2)
    assert len(adapter.list_accounts(consent)) == 2
    assert sleeps.waits == [0.5, 1.0]


# ------------------------------------------------------------------------------ rate limits
def test_short_rate_limit_is_waited_out(adapter, consent, se, sleeps):
    se.add_fault("rate_limit", seconds=5, path="/accounts")
    assert len(adapter.list_accounts(consent)) == 2
    assert sleeps.waits == [5.0]
    assert se.stats()["requests"]["GET /accounts"] == 2


def test_long_rate_limit_is_raised(adapter, consent, se, sleeps):
    se.add_fault("rate_limit", seconds=120, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.RATE_LIMITED
    assert caught.value.retry_after == 120.0 and sleeps.waits == []


# ------------------------------------------------------------------------------ refresh
def test_refresh_connection_updates_the_consent_in_place(make_adapter, se):
    adapter = make_adapter({"automatic_refresh": False})
    se.set_today("2024-04-10")
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    before = adapter.fetch_transactions(consent, eur.external_id, None, None).added
    se.advance_days(1)
    assert len(adapter.fetch_transactions(consent, eur.external_id, None, None).added) == \
        len(before)  # Salt Edge's store is not refreshed yet
    old_next = consent.next_refresh_possible_at
    assert adapter.refresh_connection(consent) is consent
    assert consent.next_refresh_possible_at > old_next + timedelta(hours=23)
    assert consent.raw["connection"]["last_attempt"]["finished"] is True
    after = adapter.fetch_transactions(consent, eur.external_id, None, None).added
    assert len([t for t in after if t.status == TxnStatus.BOOKED]) == \
        len([t for t in before if t.status == TxnStatus.BOOKED]) + 3
    with pytest.raises(ProviderError) as caught:
        adapter.refresh_connection(consent)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED
    assert error.code == "ConnectionCannotBeRefreshed"
    assert 3590 <= error.retry_after <= 3600 and error.http_status == 406


def test_background_fetch_limit(make_adapter, se):
    adapter = make_adapter()
    consent = connect(adapter, provider="fakebank_oauth_client_xf")
    for _ in range(4):
        se.advance_seconds(3601)
        adapter.refresh_connection(consent)
    se.advance_seconds(3601)
    with pytest.raises(ProviderError) as caught:
        adapter.refresh_connection(consent)
    assert caught.value.category == ErrorCategory.RATE_LIMITED
    assert caught.value.code == "BackgroundFetchLimitExceeded"
    assert 4 * 3601 - 5 <= 86400 - caught.value.retry_after <= 4 * 3601 + 5
    attended = make_adapter(user_present=True)
    assert attended.refresh_connection(consent) is consent  # no PSD2 cap with the user present
    attempt = se.connections()[0]["last_attempt"]
    assert attempt["customer_last_logged_at"] and attempt["automatic_fetch"] is False


def test_refresh_waits_while_salt_edge_is_fetching(adapter, consent, se, sleeps, monkeypatch):
    se.advance_seconds(3601)
    se.add_fault("fetching", times=2)
    adapter.refresh_connection(consent)
    assert sleeps.waits == [2.0, 2.0]
    se.advance_seconds(3601)
    se.add_fault("fetching", times=None)
    monkeypatch.setattr(saltedge_module, "REFRESH_POLLS", 3)
    with pytest.raises(ProviderError) as caught:
        adapter.refresh_connection(consent)
    assert caught.value.category == ErrorCategory.NOT_READY and caught.value.code == "fetching"
    assert sleeps.waits == [2.0] * 5


def test_user_present_fetch_refreshes_first(make_adapter, se):
    unattended = make_adapter({"automatic_refresh": False})
    se.set_today("2024-04-10")
    consent = connect(unattended)
    eur = by_currency(unattended, consent)["EUR"]
    se.advance_days(1)
    se.add_fault("user_must_be_present", times=None, path="/background_refresh")
    with pytest.raises(ProviderError) as caught:
        unattended.refresh_connection(consent)
    assert caught.value.requires_user_presence
    attended = make_adapter(user_present=True)
    txns = attended.fetch_transactions(consent, eur.external_id, date(2024, 4, 11), None).added
    assert {t.booking_date for t in txns if t.status == TxnStatus.BOOKED} == {date(2024, 4, 11)}
    usd = by_currency(attended, consent)["USD"]
    attended.fetch_transactions(consent, usd.external_id, None, None)  # no second refresh
    assert se.stats()["requests"]["POST /connections/{id}/background_refresh"] == 2
    # a refresh that is too early does not stop the reading of the stored data
    late = make_adapter(user_present=True)
    assert late.fetch_transactions(consent, eur.external_id, date(2024, 4, 11), None).added
    assert se.stats()["requests"]["POST /connections/{id}/background_refresh"] == 3


# ------------------------------------------------------------------------------ transport faults
def test_timeout_is_a_network_error(make_adapter, se):
    adapter = make_adapter(timeout=(1, 0.3), max_retries=0)
    consent = connect(adapter)
    se.add_fault("timeout", seconds=5, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.NETWORK and caught.value.retryable
    se.add_fault("timeout", seconds=5, path="/accounts")
    retrying = make_adapter(timeout=(1, 0.3), max_retries=1)
    assert len(retrying.list_accounts(consent)) == 2


def test_malformed_json(make_adapter, se, sleeps):
    adapter = make_adapter(max_retries=0)
    consent = connect(adapter)
    se.add_fault("malformed_json", path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    se.add_fault("malformed_json", path="/accounts")
    assert len(make_adapter().list_accounts(consent)) == 2 and sleeps.waits == [0.5]


# ------------------------------------------------------------------------------ consent lifecycle
def test_expired_consent_and_renewal(adapter, consent, se):
    se.advance_days(91)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "AispConsentExpired" and not caught.value.retryable
    old_secrets = dict(consent.secrets)
    start = adapter.start_consent(None, REDIRECT_URI, "renew", consent=consent, valid_days=60)
    assert start.pending_data["flow"] == "reconnect"
    assert start.pending_data["connection_id"] == consent.external_id
    callback = simulate_user(start.redirect_url)
    renewed = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert renewed.external_id == consent.external_id
    assert renewed.secrets["customer_id"] == old_secrets["customer_id"]
    assert renewed.secrets["consent_id"] != old_secrets["consent_id"]
    assert renewed.valid_until - se.now() > timedelta(days=59)
    assert [a.external_id for a in adapter.list_accounts(renewed)] == \
        [a.external_id for a in adapter.list_accounts(renewed)]
    assert len(adapter.list_accounts(renewed)) == 2


def test_interactive_refresh_flow(adapter, consent, se):
    se.advance_seconds(3601)
    start = adapter.start_refresh(consent, REDIRECT_URI, "refresh-1")
    callback = simulate_user(start.redirect_url)
    assert callback["state"] == "refresh-1"
    refreshed = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert refreshed.external_id == consent.external_id
    assert refreshed.secrets == consent.secrets


def test_revoked_consent_and_revoke(adapter, consent, se):
    se.revoke_consent(consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, "1", None, None)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "AispConsentRevoked"
    other = connect(adapter)
    assert adapter.revoke_consent(other) is True
    assert adapter.revoke_consent(other) is False
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(other)
    assert caught.value.category == ErrorCategory.NOT_FOUND


# ------------------------------------------------------------------------------ secrets
class RecordingSession(requests.Session):
    """A real session that remembers the signatures it sent (to look for them in the logs)."""

    def __init__(self):
        super().__init__()
        self.signatures = []

    def request(self, method, url, **kwargs):
        signature = (kwargs.get("headers") or {}).get("Signature")
        if signature:
            self.signatures.append(signature)
        return super().request(method, url, **kwargs)


def test_no_secret_in_any_log_line(make_adapter, se, keys, caplog):
    caplog.set_level(logging.DEBUG)
    session = RecordingSession()
    adapter = make_adapter({"automatic_refresh": False}, session=session, user_present=True)
    consent = connect(adapter)
    eur = by_currency(adapter, consent)["EUR"]
    adapter.get_balances(consent, eur.external_id)
    adapter.fetch_transactions(consent, eur.external_id, None, None)
    se.add_fault("http_500", times=1, path="/accounts")
    adapter.list_accounts(consent)
    se.add_fault("rate_limit", seconds=3600, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    adapter.revoke_consent(consent)
    assert session.signatures and caplog.records
    text = "\n".join(record.getMessage() for record in caplog.records) + str(caught.value)
    key_lines = [line for line in keys[1].splitlines() if "-----" not in line]
    forbidden = [SECRET, *session.signatures, *key_lines]
    assert not [item for item in forbidden if item in text]
    assert SECRET not in repr(adapter)
