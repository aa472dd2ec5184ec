"""The Ponto adapter, through real HTTPS (mutual TLS) to the Ponto simulator on 127.0.0.1."""
import gc
import logging
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from conftest import SleepRecorder
from services import errors
from services.errors import ErrorCategory, ProviderError
from services.pkce import code_challenge, new_pkce_pair
from services.providers import available_providers, get_adapter_class
from services.providers import ponto as ponto_module
from services.providers.ponto import (PontoAdapter, decode_cursor, map_account, map_balances,
                                      map_transaction, parse_amount, parse_bank_date)
from services.proxy import ProxyClient
from services.types import ConsentStatus, SyncPage, TxnStatus
from simulators.ponto import PontoServer, simulate_user
from simulators.ponto import data

REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
CURRENT, SAVINGS, USD = (spec["iban"] for spec in data.ACCOUNTS)
SABLON = data.ACCOUNTS[0]["institution_id"]
KEMPEN = data.ACCOUNTS[2]["institution_id"]


@pytest.fixture(scope="module")
def ponto_server():
    """One simulator per module (certificates and listeners are slow-ish to make)."""
    server = PontoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ponto(ponto_server):
    """The module's simulator, back to a new server's state (clock, data, tokens, faults)."""
    ponto_server.reset()
    return ponto_server


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def make_adapter(ponto, sleeps):
    """``make_adapter(config=None, **options)``: an adapter for ``ponto`` that never really
    sleeps (retries and synchronization polls are recorded instead)."""

    def make(config=None, **options):
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", (1, 5))
        return PontoAdapter({**ponto.adapter_config(), **(config or {})}, **options)

    return make


@pytest.fixture
def adapter(make_adapter):
    return make_adapter()


@pytest.fixture
def connect():
    """``connect(adapter, accounts=None)``: Ponto's authorization page, "Allow", code exchange
    with the caller's PKCE pair -> an active ``Consent``."""

    def do_connect(adapter, accounts=None, institution_id=SABLON):
        verifier, challenge = new_pkce_pair()
        start = adapter.start_consent(institution_id, REDIRECT_URI, "state-123",
                                      code_challenge=challenge)
        callback = simulate_user(start.redirect_url, "approve", accounts=accounts)
        assert callback["state"] == "state-123"
        return adapter.complete_consent(callback, REDIRECT_URI, code_verifier=verifier,
                                        pending_data=start.pending_data)

    return do_connect


@pytest.fixture
def consent(adapter, connect):
    return connect(adapter)


def by_iban(adapter, consent):
    return {account.iban: account for account in adapter.list_accounts(consent)}


def requests_of(ponto, key):
    return ponto.stats()["requests"].get(key, 0)


TXNS = "GET /ponto-connect/accounts/{id}/transactions"
TOKEN = "POST /ponto-connect/oauth2/token"


# ------------------------------------------------------------------------------ registry, config
def test_adapter_is_registered_with_its_facts():
    assert get_adapter_class("ponto") is PontoAdapter
    assert ("ponto", "Ponto") in available_providers()
    assert PontoAdapter.uses_pkce is True and PontoAdapter.max_history_days is None
    assert PontoAdapter({}).base_url == "https://api.ibanity.com/ponto-connect"
    assert PontoAdapter({}).authorization_url == "https://sandbox-authorization.myponto.com"
    assert PontoAdapter({"environment": "production"}).authorization_url == \
        "https://authorization.myponto.com"
    assert PontoAdapter({"authorization_url": "https://x.test/"}).authorization_url == \
        "https://x.test"


def test_start_consent_builds_the_authorization_url(adapter, ponto):
    start = adapter.start_consent(SABLON, REDIRECT_URI, "st", code_challenge="abc",
                                  language="fr", valid_days=500)
    assert start.redirect_url.startswith(f"{ponto.authorization_url}/oauth2/auth?")
    for part in ("client_id=ponto-sim-client", "response_type=code", "state=st",
                 "scope=ai+name+offline_access", "code_challenge=abc",
                 "code_challenge_method=S256", "redirect_uri=http%3A%2F%2F127.0.0.1%3A8069"):
        assert part in start.redirect_url
    assert "valid_days" not in start.redirect_url and "fr" not in start.redirect_url
    assert start.state == "st" and start.code_verifier is None
    assert start.pending_data == {"flow": "authorization", "institution_id": SABLON}
    assert ponto.stats()["total"] == 0  # no HTTP call
    own = adapter.start_consent(SABLON, REDIRECT_URI, "st2")
    assert f"code_challenge={code_challenge(own.code_verifier)}" in own.redirect_url


# ------------------------------------------------------------------------------ mutual TLS
def test_without_client_certificate_the_handshake_is_refused(make_adapter, ponto, sleeps):
    adapter = make_adapter({"certificate": None, "private_key": None})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    error = caught.value
    assert error.category == ErrorCategory.AUTH_INVALID and error.code == "TLS_HANDSHAKE_REFUSED"
    assert not error.retryable and sleeps.waits == []  # not retried as a network error
    foreign = make_adapter({"certificate": ponto.tls["untrusted_cert"],
                            "private_key": ponto.tls["untrusted_key"]})
    with pytest.raises(ProviderError) as caught:
        foreign.list_institutions()
    assert caught.value.code == "TLS_HANDSHAKE_REFUSED"
    assert ponto.stats()["total"] == 0


def test_missing_certificate_file_is_auth_invalid(make_adapter, ponto, tmp_path):
    adapter = make_adapter({"certificate": str(tmp_path / "nowhere.pem")})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "CERTIFICATE_UNREADABLE" and ponto.stats()["total"] == 0


def test_unknown_server_ca_is_refused(make_adapter, ponto):
    adapter = make_adapter({"ca_bundle": ponto.tls["untrusted_cert"]})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID


def test_pem_text_and_encrypted_key(make_adapter, ponto, connect):
    def text(path):
        with open(path, encoding="ascii") as handle:
            return handle.read()

    adapter = make_adapter({"certificate": text(ponto.tls["client_cert"]),
                            "private_key": text(ponto.tls["client_key_encrypted"]),
                            "private_key_passphrase": ponto.key_passphrase,
                            "ca_bundle": text(ponto.tls["ca"])})
    assert len(adapter.list_institutions()) == 7
    directory = adapter._tmpdir
    assert os.stat(directory).st_mode & 0o077 == 0
    for name in os.listdir(directory):
        assert os.stat(os.path.join(directory, name)).st_mode & 0o077 == 0
    del adapter
    gc.collect()
    assert not os.path.exists(directory)  # the decrypted key does not outlive the adapter
    encrypted = make_adapter(ponto.adapter_config(encrypted_key=True))
    assert len(connect(encrypted).secrets) == 3
    wrong = make_adapter({"private_key": ponto.tls["client_key_encrypted"],
                          "private_key_passphrase": "not-the-passphrase"})
    with pytest.raises(ProviderError) as caught:
        wrong.list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "PRIVATE_KEY_INVALID"
    assert "not-the-passphrase" not in str(caught.value)


# ------------------------------------------------------------------------------ institutions
def test_list_institutions(adapter, ponto, monkeypatch):
    monkeypatch.setattr(ponto_module, "PAGE_LIMIT", 2)
    everything = adapter.list_institutions()
    assert len(everything) == 7 and requests_of(ponto, "GET /ponto-connect/financial-institutions") == 4
    sablon = next(i for i in everything if i.external_id == SABLON)
    assert sablon.provider == "ponto" and sablon.name == "Banque du Sablon"
    assert sablon.countries == ["BE"] and sablon.bic == "SABLBEB1" and sablon.beta is False
    assert sablon.logo_url.endswith("/static/institutions/sablon.svg")
    assert [i.name for i in adapter.list_institutions(country="be")] == [
        "Banque du Sablon", "Kempense Spaarbank", "Crédit de la Meuse"]
    meuse = adapter.list_institutions(query="meuse")
    assert len(meuse) == 1 and meuse[0].beta is True
    assert [i.name for i in adapter.list_institutions(query="kempen groep")] == [
        "Kempense Spaarbank"]  # the shared brand name
    international = adapter.list_institutions(query="super sandbox")[0]
    assert international.countries == []
    assert adapter.list_institutions(country="JP") == []
    assert requests_of(ponto, TOKEN) == 1  # the application token is cached


def test_wrong_client_secret_is_auth_invalid(make_adapter):
    adapter = make_adapter({"client_secret": "not-the-secret-42"})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    error = caught.value
    assert error.category == ErrorCategory.AUTH_INVALID and error.code == "invalid_client"
    assert error.http_status == 401 and "not-the-secret-42" not in str(error)


# ------------------------------------------------------------------------------ consent
def test_consent_flow(adapter, ponto, connect):
    consent = connect(adapter)
    assert consent.provider == "ponto" and consent.status == ConsentStatus.ACTIVE
    assert consent.external_id == data.ORGANIZATION_ID and consent.institution_id == SABLON
    expiries = {datetime.fromisoformat(a["expires_at"].replace("Z", "+00:00"))
                for a in ponto.authorizations().values()}
    assert consent.valid_until == min(expiries)
    assert consent.valid_until.utcoffset() == timedelta(0)
    assert timedelta(days=89) < consent.valid_until - datetime.now(timezone.utc) \
        <= timedelta(days=90)
    assert set(consent.secrets) == {"access_token", "refresh_token", "access_expires_at"}
    expires = datetime.fromisoformat(consent.secrets["access_expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=28) < expires - datetime.now(timezone.utc) <= timedelta(minutes=30)
    assert consent.raw["organization_name"] == "Ponto Demo Company SRL"
    assert len(consent.raw["account_ids"]) == 3
    for secret in consent.secrets.values():
        assert secret not in repr(consent.raw)
    assert ponto.integrations()[0]["organization_id"] == consent.external_id


def test_consent_with_the_accounts_the_user_picked(adapter, connect):
    consent = connect(adapter, accounts=[USD])
    assert list(by_iban(adapter, consent)) == [USD]


def test_cancelled_consent(adapter, ponto):
    start = adapter.start_consent(SABLON, REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url, "cancel")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier,
                                 pending_data=start.pending_data)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED and error.code == "access_denied"
    assert error.user_message == "The resource owner denied the request"
    assert not error.requires_user_presence and ponto.integrations() == []
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"state": "st"}, REDIRECT_URI)
    assert caught.value.category == ErrorCategory.BAD_REQUEST


def test_code_is_single_use_and_pkce_is_checked(adapter):
    start = adapter.start_consent(SABLON, REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url)
    adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "invalid_grant" and caught.value.http_status == 400
    start = adapter.start_consent(SABLON, REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=new_pkce_pair()[0])
    assert caught.value.code == "invalid_grant"


def test_code_exchange_is_never_retried(adapter, ponto):
    start = adapter.start_consent(SABLON, REDIRECT_URI, "once")
    callback = simulate_user(start.redirect_url)
    ponto.add_fault("http_500", path="/oauth2/token")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert requests_of(ponto, TOKEN) == 1


@pytest.mark.parametrize("kind, category, code", [
    ("invalid_client", ErrorCategory.AUTH_INVALID, "invalid_client"),
    ("authorization_code_invalid", ErrorCategory.AUTH_EXPIRED, "authorizationCodeInvalid"),
    ("invalid_grant", ErrorCategory.AUTH_EXPIRED, "invalid_grant"),
])
def test_token_endpoint_errors_at_the_code_exchange(adapter, ponto, kind, category, code):
    start = adapter.start_consent(SABLON, REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url)
    ponto.add_fault(kind)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    assert (caught.value.category, caught.value.code) == (category, code)


# ------------------------------------------------------------------------------ accounts, balances
def test_list_accounts_and_stable_keys(adapter, consent, connect):
    accounts = by_iban(adapter, consent)
    current, savings, usd = accounts[CURRENT], accounts[SAVINGS], accounts[USD]
    assert current.provider == "ponto" and current.consent_external_id == consent.external_id
    assert current.external_id == data.find_account(CURRENT)["id"]
    assert current.stable_key == CURRENT and current.account_number_masked == "BE64 **** 2352"
    assert current.name == "Compte courant" and current.holder_name == "Ponto Demo Company SRL"
    assert current.currency == "EUR" and current.kind == "checking"
    assert savings.kind == "savings" and usd.currency == "USD"
    again = by_iban(adapter, connect(adapter))
    assert {a.stable_key for a in again.values()} == {CURRENT, SAVINGS, USD}


def test_map_account_without_iban():
    raw = {"id": "acc-1", "attributes": {"reference": "5368****1234", "referenceType": "MASKEDPAN",
                                         "subtype": "card", "currency": "EUR",
                                         "holderName": None, "product": "Visa Business"}}
    account = map_account(raw, "org")
    assert account.iban is None and account.stable_key == "MASKEDPAN:5368****1234"
    assert account.account_number_masked == "5368****1234" and account.kind == "card"
    assert account.name == "Visa Business" and account.holder_name is None
    other = map_account({"id": "acc-2", "attributes": {"subtype": "securities"}}, "org")
    assert other.kind == "other" and other.stable_key == "acc-2"


def test_get_balances(adapter, consent, ponto):
    current = by_iban(adapter, consent)[CURRENT]
    balances = {b.kind: b for b in adapter.get_balances(consent, current.external_id)}
    expected = ponto.expected_balances(CURRENT)
    assert balances["booked"].amount == expected["current"]
    assert balances["available"].amount == expected["available"]
    assert isinstance(balances["booked"].amount, Decimal)
    assert balances["booked"].currency == "EUR" and balances["booked"].reference_date == ponto.today
    assert balances["booked"].account_external_id == current.external_id
    assert requests_of(ponto, "POST /ponto-connect/synchronizations") == 0  # unattended


def test_map_balances_keeps_the_bank_date():
    raw = {"attributes": {"currency": "EUR", "currentBalance": -527.34,
                          "currentBalanceReferenceDate": "2022-09-23T00:00:00+02:00",
                          "availableBalance": None}}
    (booked,) = map_balances(raw, "acc")
    assert booked.amount == Decimal("-527.34") and booked.reference_date == date(2022, 9, 23)


def test_unknown_account_is_not_found(adapter, consent):
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, data.make_uuid("not shared"))
    assert caught.value.category == ErrorCategory.NOT_FOUND
    assert caught.value.code == "resourceNotFound" and caught.value.http_status == 404


# ------------------------------------------------------------------------------ transactions
def test_fetch_returns_exactly_the_banks_transactions(adapter, ponto, connect):
    ponto.set_today("2024-03-01")
    consent = connect(adapter)
    current = by_iban(adapter, consent)[CURRENT]
    page = adapter.fetch_transactions(consent, current.external_id, date(2024, 2, 1),
                                      date(2024, 3, 1))
    assert isinstance(page, SyncPage) and page.next_cursor
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    pending = [t for t in page.added if t.status == TxnStatus.PENDING]
    expected = ponto.expected_booked(CURRENT, date(2024, 2, 1), date(2024, 3, 1))
    assert [t.external_id for t in booked] == [t["id"] for t in expected]
    assert [t.amount for t in booked] == [Decimal(str(t["attributes"]["amount"]))
                                          for t in expected]
    assert [t.external_id for t in pending] == [t["id"] for t in ponto.expected_pending(CURRENT)]
    assert all(t.account_external_id == current.external_id for t in page.added)
    assert all(not t.id_is_synthetic for t in page.added)


def test_fetch_follows_every_page(make_adapter, ponto, connect):
    ponto.set_today("2024-03-01")
    ponto.configure(txns_per_day={"EUR": 12})
    adapter = make_adapter()
    consent = connect(adapter)
    current = by_iban(adapter, consent)[CURRENT]
    page = adapter.fetch_transactions(consent, current.external_id, None, None)
    assert len(page.added) == 91 * 12 + 12
    assert len({t.external_id for t in page.added}) == len(page.added)
    assert requests_of(ponto, TXNS) == 11  # 1092 booked, 100 a page
    assert requests_of(ponto, "GET /ponto-connect/accounts/{id}/pending-transactions") == 1


def test_fetch_stops_walking_past_the_window(make_adapter, ponto, connect):
    ponto.set_today("2024-03-01")
    ponto.configure(history_days=30, txns_per_day={"EUR": 20})  # the 12 days walked: 3 pages
    adapter = make_adapter()
    consent = connect(adapter)
    current = by_iban(adapter, consent)[CURRENT]
    window = (date(2024, 2, 25), date(2024, 2, 28))
    page = adapter.fetch_transactions(consent, current.external_id, *window)
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    assert [t.external_id for t in booked] == [
        t["id"] for t in ponto.expected_booked(CURRENT, *window)]
    assert requests_of(ponto, TXNS) == 3  # 2024-02-18 (7 days of slack) is on the third page


def test_fetch_page_bound(adapter, ponto, consent, monkeypatch):
    current = by_iban(adapter, consent)[CURRENT]
    monkeypatch.setattr(ponto_module, "MAX_PAGES", 2)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, current.external_id, None, None)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR and not caught.value.retryable


def test_cursor_fetch_reads_only_what_is_new_and_links_posted_pending(adapter, ponto, connect):
    ponto.set_today("2024-04-10")
    ponto.configure(access_token_ttl=86400 * 30)  # no 401 + refresh in the request count
    consent = connect(adapter)
    current = by_iban(adapter, consent)[CURRENT]
    first = adapter.fetch_transactions(consent, current.external_id, None, None)
    pending_ids = {t.external_id for t in first.added if t.status == TxnStatus.PENDING}
    newest, remembered = decode_cursor(first.next_cursor)
    assert newest == first.added[0].external_id
    assert {entry[0] for entry in remembered} == pending_ids and len(pending_ids) == 3
    ponto.advance_days(1)
    calls = requests_of(ponto, TXNS)
    second = adapter.fetch_transactions(consent, current.external_id, None, None,
                                        cursor=first.next_cursor)
    assert requests_of(ponto, TXNS) - calls == 1  # stopped at the newest id of the last fetch
    booked = [t for t in second.added if t.status == TxnStatus.BOOKED]
    assert {t.booking_date for t in booked} == {date(2024, 4, 11)} and len(booked) == 3
    assert {t.replaces_external_id for t in booked} == pending_ids  # posted under new ids
    assert not pending_ids & {t.external_id for t in second.added}
    assert all(t.alt_ids["pending_id"] == t.replaces_external_id for t in booked)
    assert decode_cursor(second.next_cursor)[0] == booked[0].external_id


def test_pending_link_also_works_with_a_date_window(adapter, ponto, connect):
    ponto.set_today("2024-04-10")
    consent = connect(adapter)
    current = by_iban(adapter, consent)[CURRENT]
    first = adapter.fetch_transactions(consent, current.external_id, date(2024, 4, 7), None)
    pending = [t for t in first.added if t.status == TxnStatus.PENDING]
    assert all(t.booking_date is None and t.transaction_date == date(2024, 4, 10)
               and t.date == date(2024, 4, 10) for t in pending)
    ponto.advance_days(1)
    second = adapter.fetch_transactions(consent, current.external_id, date(2024, 4, 8), None,
                                        cursor=first.next_cursor)
    linked = [t for t in second.added if t.replaces_external_id]
    assert {t.replaces_external_id for t in linked} == {t.external_id for t in pending}
    assert all(t.booking_date == date(2024, 4, 11) for t in linked)
    assert all(t.replaces_external_id is None for t in second.added
               if t.booking_date and t.booking_date < date(2024, 4, 11))


def test_transaction_mapping_through_the_api(adapter, ponto, connect):
    ponto.set_today("2024-04-10")
    consent = connect(adapter)
    current = by_iban(adapter, consent)[CURRENT]
    txns = adapter.fetch_transactions(consent, current.external_id, date(2024, 1, 20),
                                      date(2024, 4, 10)).added
    booked = next(t for t in txns if t.status == TxnStatus.BOOKED)
    assert isinstance(booked.booking_date, date) and booked.value_date == booked.booking_date
    assert booked.date == booked.booking_date and booked.transaction_date is None
    with_ref = [t for t in txns if t.structured_reference]
    assert with_ref and all(data.is_valid_structured_communication(t.structured_reference)
                            for t in with_ref)
    assert any(t.counterparty_iban for t in txns) and any(t.counterparty_name for t in txns)
    assert any(t.mandate_id for t in txns) and any(t.merchant_name for t in txns)
    assert any(t.amount > 0 for t in txns) and any(t.amount < 0 for t in txns)
    assert all(t.original_amount is None for t in txns)  # Ponto has no such field
    assert all(t.alt_ids.get("digest") for t in txns)


def test_map_transaction_sign_dates_and_fields():
    raw = {"type": "transaction", "id": "9b1f0c2e-5d3a-4a7e-8c61-2f0f4d9e7a11", "attributes": {
        "amount": -121.0, "currency": "EUR", "executionDate": "2025-03-14T00:00:00.000Z",
        "valueDate": "2025-03-13T00:00:00.000Z", "description": "Europese overschrijving",
        "remittanceInformationType": "structured", "remittanceInformation": "+++090/9337/55493+++",
        "counterpartName": "Water NV", "counterpartReference": "BE68539007547034",
        "endToEndId": "NOTPROVIDED", "bankTransactionCode": "PMNT-ICDT-ESCT",
        "mandateId": None, "internalReference": "2025031412345", "digest": "d2f1",
        "cardReference": None}}
    txn = map_transaction(raw, "acc-1")
    assert txn.amount == Decimal("-121.0") and txn.amount < 0  # money out stays negative
    assert txn.booking_date == date(2025, 3, 14) and txn.value_date == date(2025, 3, 13)
    assert txn.structured_reference == "+++090/9337/55493+++"
    assert txn.description == "+++090/9337/55493+++"
    assert txn.counterparty_iban == "BE68539007547034" and txn.end_to_end_id is None
    assert txn.bank_transaction_code == "PMNT-ICDT-ESCT" and txn.merchant_name is None
    assert txn.alt_ids == {"internal_reference": "2025031412345", "digest": "d2f1"}
    assert txn.external_id == raw["id"] and not txn.id_is_synthetic
    # Money in, a bank date written with an offset: the literal date, not its UTC conversion.
    income = dict(raw, attributes=dict(raw["attributes"], amount=2500.5,
                                       executionDate="2025-03-01T00:30:00+02:00",
                                       remittanceInformationType="unstructured",
                                       remittanceInformation="Invoice 42",
                                       counterpartReference="12345"))
    txn = map_transaction(income, "acc-1")
    assert txn.amount == Decimal("2500.5") and txn.booking_date == date(2025, 3, 1)
    assert txn.structured_reference is None and txn.description == "Invoice 42"
    assert txn.counterparty_iban is None  # not an IBAN
    assert parse_bank_date("2024-02-29T23:30:00-05:00") == date(2024, 2, 29)
    assert parse_amount(-527.34) == Decimal("-527.34") and parse_amount(0.1) == Decimal("0.1")
    for bad in (True, None, "abc", float("nan")):
        with pytest.raises((ValueError, ArithmeticError)):
            parse_amount(bad)
    anonymous = map_transaction(dict(raw, id=None), "acc-1")
    assert anonymous.id_is_synthetic and anonymous.external_id.startswith("sha256:")
    assert anonymous.external_id == map_transaction(dict(raw, id=None), "acc-1").external_id
    pending = map_transaction(raw, "acc-1", TxnStatus.PENDING)
    assert pending.booking_date is None and pending.transaction_date == date(2025, 3, 14)


def test_malformed_json_is_provider_error(make_adapter, consent, ponto, sleeps):
    adapter = make_adapter(max_retries=1)
    ponto.add_fault("malformed_json", times=None, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert sleeps.waits == [0.5]  # retried once, then given up


def test_timeout_is_a_network_error(make_adapter, consent, ponto, sleeps):
    adapter = make_adapter(timeout=(1, 0.3), max_retries=1)
    ponto.add_fault("timeout", times=None, seconds=5, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.NETWORK and caught.value.retryable
    assert sleeps.waits == [0.5]


# ------------------------------------------------------------------------------ tokens
def test_expired_access_token_is_refreshed_and_the_refresh_token_rotates(adapter, consent,
                                                                         ponto, make_adapter):
    before = dict(consent.secrets)
    ponto.advance_days(1)  # the access token (1799 s) is expired at Ponto
    assert len(adapter.list_accounts(consent)) == 3
    assert consent.secrets["access_token"] != before["access_token"]
    assert consent.secrets["refresh_token"] != before["refresh_token"]  # rotated, in place
    assert set(consent.secrets) == set(before)
    assert requests_of(ponto, "GET /ponto-connect/accounts") == 3  # connect, 401, retry
    assert requests_of(ponto, TOKEN) == 2  # code exchange + one refresh
    adapter.list_accounts(consent)
    assert requests_of(ponto, TOKEN) == 2  # the new token is kept
    stale = ProxyClient.consent("ponto", consent.external_id, before)
    with pytest.raises(ProviderError) as caught:
        make_adapter().list_accounts(stale)  # the old refresh token died with the rotation
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "invalid_grant"


def test_access_token_known_to_be_expired_is_refreshed_first(adapter, consent, ponto):
    old = consent.secrets["access_token"]
    consent.secrets["access_expires_at"] = "2000-01-01T00:00:00Z"
    adapter.list_accounts(consent)
    assert consent.secrets["access_token"] != old
    assert requests_of(ponto, "GET /ponto-connect/accounts") == 2  # connect + this one


def test_refused_access_token_is_refreshed_once(make_adapter, consent, ponto):
    adapter = make_adapter(max_retries=0)
    ponto.add_fault("access_token_invalid", path="/accounts")
    assert len(adapter.list_accounts(consent)) == 3
    ponto.add_fault("access_token_invalid", times=None, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "unauthorized"
    assert requests_of(ponto, TOKEN) == 3  # one refresh per call, never a loop


def test_without_refresh_token_an_expired_access_is_auth_expired(adapter, consent, ponto):
    del consent.secrets["refresh_token"]
    ponto.advance_days(1)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED


# ------------------------------------------------------------------------------ error mapping
@pytest.mark.parametrize("kind, options, category, code, status", [
    ("consent_expired", {}, ErrorCategory.AUTH_EXPIRED, "authorizationExpired", 403),
    ("authorization_invalid", {}, ErrorCategory.AUTH_EXPIRED, "authorizationInvalid", 403),
    ("user_must_be_present", {}, ErrorCategory.USER_ACTION_REQUIRED, "onboardingIncomplete", 403),
    ("resource_not_found", {}, ErrorCategory.NOT_FOUND, "resourceNotFound", 404),
    ("validation_error", {}, ErrorCategory.BAD_REQUEST, "validationError", 400),
    ("client_id_invalid", {}, ErrorCategory.AUTH_INVALID, "clientIdInvalid", 401),
    ("credentials_invalid", {}, ErrorCategory.AUTH_INVALID, "credentialsInvalid", 401),
    ("http_500", {}, ErrorCategory.PROVIDER_ERROR, "internalServerError", 500),
    ("http_503", {}, ErrorCategory.PROVIDER_ERROR, "serviceUnavailable", 503),
    ("rate_limit", {"seconds": 90}, ErrorCategory.RATE_LIMITED, "tooManyRequests", 429),
])
def test_error_mapping(make_adapter, ponto, connect, kind, options, category, code, status):
    adapter = make_adapter(max_retries=0)
    consent = connect(adapter)
    tokens_before = requests_of(ponto, TOKEN)
    ponto.add_fault(kind, path="/accounts", **options)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert (error.category, error.code, error.http_status) == (category, code, status)
    assert error.provider == "ponto" and error.reference.startswith("OS-")
    assert code in error.message and "requestId" not in error.message
    for secret in consent.secrets.values():
        assert secret not in error.message
    assert error.retryable == (category in errors.TRANSIENT_CATEGORIES)
    assert requests_of(ponto, TOKEN) == tokens_before  # no refresh for these
    if kind == "rate_limit":
        assert error.retry_after == 90.0


def test_account_recently_synchronized_maps_to_rate_limited(adapter, consent, ponto):
    ponto.add_fault("account_recently_synchronized")
    with pytest.raises(ProviderError) as caught:
        adapter._call(consent, "POST", "/synchronizations", json={"data": {
            "type": "synchronization", "attributes": {
                "resourceType": "account", "resourceId": data.ACCOUNTS[0]["id"],
                "subtype": "accountDetails", "customerIpAddress": "192.0.2.7"}}})
    assert (caught.value.category, caught.value.code, caught.value.http_status) == (
        ErrorCategory.RATE_LIMITED, "accountRecentlySynchronized", 400)
    assert not caught.value.retryable
    error = adapter._error("accountRecentlySynchronized", "Try again in 120 seconds.", {}, 400)
    assert error.category == ErrorCategory.RATE_LIMITED and error.retry_after == 120.0
    bank_down = adapter._error("somethingElse", "", {"financialInstitutionResponse": {
        "statusCode": 502}}, None)
    assert bank_down.category == ErrorCategory.INSTITUTION_DOWN
    expired = adapter._error("authorizationExpired", "", {"financialInstitutionResponse": {
        "statusCode": 500}}, None)
    assert expired.category == ErrorCategory.AUTH_EXPIRED


def test_short_rate_limit_is_waited_out_long_one_raised(adapter, consent, ponto, sleeps):
    ponto.add_fault("rate_limit", seconds=2, path="/accounts")
    assert len(adapter.list_accounts(consent)) == 3
    assert sleeps.waits == [2.0]
    ponto.add_fault("rate_limit", seconds=600, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.RATE_LIMITED
    assert caught.value.retry_after == 600.0 and sleeps.waits == [2.0]


def test_rate_limit_enforced_by_ponto(adapter, consent, ponto):
    ponto.configure(rate_limit=4)  # the consent flow made 3 requests in this minute
    adapter.list_accounts(consent)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.RATE_LIMITED and error.code == "tooManyRequests"
    assert 30 < error.retry_after <= 60  # longer than max_retry_wait: not waited


# ------------------------------------------------------------------------------ synchronizations
@pytest.fixture
def attended(make_adapter):
    return make_adapter(user_present=True, psu_ip="192.0.2.7")


def test_user_present_asks_ponto_for_a_fresh_synchronization(attended, make_adapter, ponto,
                                                             connect, sleeps):
    consent = connect(attended)
    current = by_iban(attended, consent)[CURRENT]
    page = attended.fetch_transactions(consent, current.external_id, ponto.today, ponto.today)
    assert page.added
    (sync,) = ponto.synchronizations()
    assert sync["customer_ip_address"] == "192.0.2.7" and sync["status"] == "success"
    assert sync["subtype"] == "accountTransactions" and sync["account_id"] == current.external_id
    assert sleeps.waits == [1.0, 1.0]  # polled: running, then success
    attended.get_balances(consent, current.external_id)
    assert [s["subtype"] for s in ponto.synchronizations()] == ["accountTransactions",
                                                                "accountDetails"]
    # Again within the cooldown: Ponto refuses (accountRecentlySynchronized), the data is read.
    again = attended.fetch_transactions(consent, current.external_id, ponto.today, ponto.today)
    assert [t.external_id for t in again.added] == [t.external_id for t in page.added]
    assert requests_of(ponto, "POST /ponto-connect/synchronizations") == 3
    assert len(ponto.synchronizations()) == 2
    unattended = make_adapter(user_present=False)
    unattended.fetch_transactions(consent, current.external_id, ponto.today, ponto.today)
    no_ip = make_adapter(user_present=True, psu_ip=None)
    no_ip.fetch_transactions(consent, current.external_id, ponto.today, ponto.today)
    assert requests_of(ponto, "POST /ponto-connect/synchronizations") == 3


def test_synchronization_still_running_is_not_ready(attended, ponto, connect, sleeps):
    consent = connect(attended)
    current = by_iban(attended, consent)[CURRENT]
    ponto.add_fault("sync_pending")
    with pytest.raises(ProviderError) as caught:
        attended.fetch_transactions(consent, current.external_id, None, None)
    error = caught.value
    assert error.category == ErrorCategory.NOT_READY and error.code == "synchronizationPending"
    assert error.retry_after == 60.0 and not error.retryable
    assert sleeps.waits == [1.0] * ponto_module.SYNC_MAX_POLLS
    assert requests_of(ponto, TXNS) == 0


@pytest.mark.parametrize("kind, category, code", [
    ("sync_error", ErrorCategory.INSTITUTION_DOWN, "financialInstitutionUnavailable"),
    ("authorization_invalid", ErrorCategory.AUTH_EXPIRED, "authorizationInvalid"),
    ("consent_expired", ErrorCategory.AUTH_EXPIRED, "authorizationExpired"),
])
def test_failed_synchronization(attended, ponto, connect, kind, category, code):
    consent = connect(attended)
    current = by_iban(attended, consent)[CURRENT]
    ponto.add_fault(kind, path="/synchronizations")
    with pytest.raises(ProviderError) as caught:
        attended.get_balances(consent, current.external_id)
    assert (caught.value.category, caught.value.code) == (category, code)
    assert caught.value.message.startswith("synchronization ")


# ------------------------------------------------------------------------------ expiry, renewal, revocation
def test_expired_bank_authorization(adapter, attended, ponto, connect):
    ponto.set_today("2024-01-10")
    consent = connect(adapter)
    current = by_iban(adapter, consent)[CURRENT]
    ponto.advance_days(95)
    # Ponto still serves what it has: nothing after the expiry day, no pending transactions.
    page = adapter.fetch_transactions(consent, current.external_id, date(2024, 4, 1), None)
    assert max(t.booking_date for t in page.added) == consent.valid_until.date()
    assert all(t.status == TxnStatus.BOOKED for t in page.added)
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, current.external_id)  # its daily sync failed
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "authorizationExpired"
    with pytest.raises(ProviderError) as caught:
        attended.get_balances(consent, current.external_id)  # a fresh sync fails too
    assert caught.value.code == "authorizationExpired"


def test_renewal_through_reauthorization_requests(adapter, ponto, connect):
    ponto.set_today("2024-01-10")
    consent = connect(adapter)
    old_expiry = consent.valid_until
    ponto.advance_days(95)
    # First renewal: the consent's bank (its two accounts expire first, with the USD one).
    start = adapter.start_consent(SABLON, REDIRECT_URI, "renew-1", code_challenge="unused",
                                  consent=consent)
    assert start.pending_data["flow"] == "reauthorization"
    assert start.pending_data["institution_id"] == SABLON
    assert start.redirect_url.startswith(f"{ponto.authorization_url}/organizations/")
    callback = simulate_user(start.redirect_url)
    assert callback == {"state": "renew-1"}  # the caller finds its pending consent again
    renewed = adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert renewed.external_id == consent.external_id and renewed.status == ConsentStatus.ACTIVE
    assert renewed.valid_until == old_expiry  # the other bank's account still bounds it
    assert renewed.secrets["refresh_token"] == consent.secrets["refresh_token"]
    # Second renewal: the other bank.
    start = adapter.start_consent(SABLON, REDIRECT_URI, "renew-2", consent=renewed)
    assert start.pending_data["institution_id"] == KEMPEN
    second = adapter.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                      pending_data=start.pending_data)
    assert second.valid_until > ponto.now() + timedelta(days=89)
    for account in adapter.list_accounts(second):
        adapter.get_balances(second, account.external_id)  # all good again
    assert [a.stable_key for a in adapter.list_accounts(second)] == [CURRENT, SAVINGS, USD]


def test_renewal_cancelled_or_not_done(adapter, consent, ponto):
    start = adapter.start_consent(SABLON, REDIRECT_URI, "renew", consent=consent)
    callback = simulate_user(start.redirect_url, "cancel")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, pending_data=start.pending_data)
    assert caught.value.category == ErrorCategory.USER_ACTION_REQUIRED
    assert caught.value.code == "access_denied"
    start = adapter.start_consent(SABLON, REDIRECT_URI, "renew", consent=consent)
    with pytest.raises(ProviderError) as caught:  # back without having reauthorized
        adapter.complete_consent({"state": "renew"}, REDIRECT_URI,
                                 pending_data=start.pending_data)
    assert caught.value.code == "NOT_REAUTHORIZED"


def test_renewal_without_shared_accounts_is_a_new_authorization(adapter, consent, ponto):
    for account in adapter.list_accounts(consent):
        adapter._call(consent, "DELETE", f"/accounts/{account.external_id}", parse=False)
    start = adapter.start_consent(SABLON, REDIRECT_URI, "again", consent=consent)
    assert start.redirect_url.startswith(f"{ponto.authorization_url}/oauth2/auth?")
    assert start.pending_data["renews"] == consent.external_id


def test_consent_revoked_by_the_user_in_ponto(adapter, consent, ponto):
    ponto.revoke_integration()
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.AUTH_EXPIRED and error.code == "invalid_grant"
    for secret in (consent.secrets["access_token"], consent.secrets["refresh_token"]):
        assert secret not in str(error)


def test_revoke_consent(adapter, consent, ponto):
    assert adapter.revoke_consent(consent) is True
    assert ponto.integrations()[0]["revoked"] is True
    assert requests_of(ponto, "POST /ponto-connect/oauth2/revoke") == 1
    assert adapter.revoke_consent(consent) is False  # already gone
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED


def test_proxy_client_end_to_end(ponto):
    client = ProxyClient("ponto", ponto.adapter_config(), sleep=lambda seconds: None)
    assert client.uses_pkce and client.max_history_days is None
    start = client.start_consent(SABLON, REDIRECT_URI, "px")
    consent = client.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                      code_verifier=start.code_verifier,
                                      pending_data=start.pending_data)
    rebuilt = ProxyClient.consent("ponto", consent.external_id, consent.secrets,
                                  institution_id=consent.institution_id)
    accounts = {a.iban: a for a in client.accounts(rebuilt)}
    page = client.transactions(rebuilt, accounts[USD].external_id,
                               ponto.today - timedelta(days=3), ponto.today)
    assert len(page.added) == 4 * 1 + 1  # USD: one a day, plus today's pending one
    assert client.revoke(rebuilt) is True


# ------------------------------------------------------------------------------ secrets
def test_no_secret_in_any_log_line(make_adapter, ponto, connect, caplog):
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter(ponto.adapter_config(encrypted_key=True), user_present=True,
                           psu_ip="192.0.2.7")
    consent = connect(adapter)
    seen = set(consent.secrets.values())
    accounts = adapter.list_accounts(consent)
    adapter.fetch_transactions(consent, accounts[0].external_id, None, None)
    adapter.get_balances(consent, accounts[0].external_id)
    ponto.advance_days(1)
    adapter.list_accounts(consent)  # refresh: new tokens
    seen |= set(consent.secrets.values())
    ponto.add_fault("rate_limit", seconds=1, path="/accounts")
    adapter.list_accounts(consent)
    ponto.add_fault("http_500", times=None, path="/userinfo")
    with pytest.raises(ProviderError):
        adapter._call(consent, "GET", "/userinfo")
    adapter.list_institutions()
    seen.add(adapter._client_token_cache[0])
    adapter.revoke_consent(consent)
    secrets = {value for value in seen if value and not value.endswith("Z")}
    with open(ponto.tls["client_key"], encoding="ascii") as handle:
        key_lines = [line for line in handle.read().splitlines() if "-----" not in line]
    secrets |= {ponto.client_secret, ponto.key_passphrase, *key_lines}
    assert len(caplog.records) > 20  # the flow did log
    text = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in secrets:
        assert secret not in text
