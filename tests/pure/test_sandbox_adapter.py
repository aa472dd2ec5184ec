"""The Sandbox Bank adapter, through real HTTP to the simulator on 127.0.0.1."""
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services import errors
from services.errors import ErrorCategory, ProviderError
from services.pkce import code_challenge, new_pkce_pair
from services.providers import available_providers, get_adapter_class
from services.providers.sandbox import (SandboxBankAdapter, map_account, map_transaction,
                                        parse_amount)
from services.proxy import ProxyClient
from services.types import ConsentStatus, SyncPage, TxnStatus
from simulators.sandbox_bank import simulate_user

REDIRECT_URI = "http://127.0.0.1:8069/online_sync/callback"
MAIN_IBAN = "BE14063123456783"


def accounts_by_currency(adapter, consent):
    return {account.currency: account for account in adapter.list_accounts(consent)}


# ------------------------------------------------------------------------------ registry
def test_adapter_is_registered():
    assert get_adapter_class("sandbox") is SandboxBankAdapter
    assert ("sandbox", "Sandbox Bank") in available_providers()
    assert SandboxBankAdapter.max_history_days == 90 and SandboxBankAdapter.uses_pkce is True
    assert SandboxBankAdapter({}).base_url == "http://127.0.0.1:8079"


def test_pkce_pair():
    verifier, challenge = new_pkce_pair()
    assert 43 <= len(verifier) <= 128 and challenge == code_challenge(verifier)
    # RFC 7636 appendix B
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert new_pkce_pair()[0] != verifier


# ------------------------------------------------------------------------------ institutions
def test_list_institutions(adapter):
    everything = adapter.list_institutions()
    assert [i.external_id for i in everything] == ["SANDBOX_BANK", "SANDBOX_BANK_MFA"]
    main = everything[0]
    assert main.provider == "sandbox" and main.name == "Sandbox Bank" and main.bic == "SNDBBEB1"
    assert "BE" in main.countries and main.max_history_days == 90 and main.beta is False
    assert main.logo_url.endswith("/static/sandbox-bank.svg")
    assert main.raw["requires_user_presence"] is False
    assert [i.external_id for i in adapter.list_institutions(country="BE", query="mfa")] == [
        "SANDBOX_BANK_MFA"]
    assert adapter.list_institutions(country="JP") == []


def test_wrong_client_secret_is_auth_invalid(make_adapter):
    adapter = make_adapter({"client_secret": "not-the-secret-42"})
    with pytest.raises(ProviderError) as caught:
        adapter.list_institutions()
    assert caught.value.category == ErrorCategory.AUTH_INVALID
    assert caught.value.code == "INVALID_CLIENT" and caught.value.http_status == 401
    assert "not-the-secret-42" not in str(caught.value)


# ------------------------------------------------------------------------------ consent
def test_start_consent_builds_the_consent_url(adapter, bank):
    start = adapter.start_consent("SANDBOX_BANK", REDIRECT_URI, "st", code_challenge="abc",
                                  language="fr", valid_days=500)
    assert start.redirect_url.startswith(f"{bank.url}/consent?")
    for part in ("client_id=sandbox-client", "state=st", "institution_id=SANDBOX_BANK",
                 "code_challenge=abc", "code_challenge_method=S256", "valid_days=90", "lang=fr"):
        assert part in start.redirect_url
    assert start.state == "st" and start.code_verifier is None
    assert bank.stats()["total"] == 0  # no HTTP call


def test_consent_flow_with_callers_pkce(adapter, bank, connect):
    consent = connect(adapter)
    assert consent.provider == "sandbox" and consent.status == ConsentStatus.ACTIVE
    assert consent.institution_id == "SANDBOX_BANK"
    assert [c["id"] for c in bank.consents()] == [consent.external_id]
    assert consent.valid_until.tzinfo is not None and consent.valid_until.utcoffset() == timedelta(0)
    assert consent.valid_until - consent.created_at == timedelta(days=90)
    assert set(consent.secrets) == {"access_token", "refresh_token", "access_expires_at"}
    expires = datetime.fromisoformat(consent.secrets["access_expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < expires - datetime.now(timezone.utc) <= timedelta(hours=1)
    assert consent.secrets["access_token"] not in repr(consent.raw)


def test_consent_flow_with_adapter_made_verifier(adapter):
    start = adapter.start_consent("SANDBOX_BANK", REDIRECT_URI, "st2", valid_days=10)
    assert start.code_verifier and f"code_challenge={code_challenge(start.code_verifier)}" in \
        start.redirect_url
    callback = simulate_user(start.redirect_url)
    consent = adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    assert consent.valid_until - consent.created_at == timedelta(days=10)
    with pytest.raises(ProviderError) as caught:  # the code is single-use
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "invalid_grant"


def test_wrong_verifier_is_refused(adapter):
    verifier, challenge = new_pkce_pair()
    start = adapter.start_consent("SANDBOX_BANK", REDIRECT_URI, "st", code_challenge=challenge)
    callback = simulate_user(start.redirect_url)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=new_pkce_pair()[0])
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "invalid_grant" and caught.value.http_status == 400


def test_cancelled_consent(adapter, bank):
    start = adapter.start_consent("SANDBOX_BANK", REDIRECT_URI, "st")
    callback = simulate_user(start.redirect_url, "cancel")
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED
    assert error.code == "access_denied" and error.user_message == "The user cancelled"
    assert not error.requires_user_presence
    assert bank.consents() == []
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent({"state": "st"}, REDIRECT_URI)
    assert caught.value.category == ErrorCategory.BAD_REQUEST


# ------------------------------------------------------------------------------ accounts, balances
def test_list_accounts_and_stable_keys(adapter, consent, connect):
    accounts = accounts_by_currency(adapter, consent)
    eur, usd = accounts["EUR"], accounts["USD"]
    assert eur.provider == "sandbox" and eur.consent_external_id == consent.external_id
    assert eur.iban == MAIN_IBAN and eur.stable_key == MAIN_IBAN
    assert eur.account_number_masked == "BE14 **** 6783" and eur.kind == "checking"
    assert eur.name == "Sandbox Current Account" and eur.holder_name == "Sandbox Demo Company"
    assert usd.iban is None and usd.stable_key == usd.raw["stable_id"]
    assert usd.account_number_masked == "****5678"
    renewed = accounts_by_currency(adapter, connect(adapter))
    assert {a.stable_key for a in renewed.values()} == {eur.stable_key, usd.stable_key}
    assert renewed["EUR"].external_id != eur.external_id


def test_get_balances(adapter, consent, bank):
    eur = accounts_by_currency(adapter, consent)["EUR"]
    balances = {b.kind: b for b in adapter.get_balances(consent, eur.external_id)}
    expected = bank.expected_balances(MAIN_IBAN)
    assert balances["booked"].amount == expected["booked"]
    assert balances["available"].amount == expected["available"]
    assert isinstance(balances["booked"].amount, Decimal)
    assert balances["booked"].currency == "EUR" and balances["booked"].reference_date == bank.today
    assert balances["booked"].account_external_id == eur.external_id


def test_unknown_account_is_not_found(adapter, consent):
    with pytest.raises(ProviderError) as caught:
        adapter.get_balances(consent, "acc_unknown")
    assert caught.value.category == ErrorCategory.NOT_FOUND
    assert caught.value.code == "ACCOUNT_NOT_FOUND"


# ------------------------------------------------------------------------------ transactions
def test_fetch_transactions_returns_exactly_the_banks_transactions(adapter, bank, connect):
    bank.set_today("2024-03-01")
    consent = connect(adapter)
    eur = accounts_by_currency(adapter, consent)["EUR"]
    page = adapter.fetch_transactions(consent, eur.external_id, date(2024, 2, 1),
                                      date(2024, 3, 1))
    assert isinstance(page, SyncPage) and page.next_cursor is None
    booked = [t for t in page.added if t.status == TxnStatus.BOOKED]
    pending = [t for t in page.added if t.status == TxnStatus.PENDING]
    expected = bank.expected_booked(MAIN_IBAN, date(2024, 2, 1), date(2024, 3, 1))
    assert [t.external_id for t in booked] == [t["id"] for t in expected]
    assert [t.amount for t in booked] == [Decimal(t["amount"]) for t in expected]
    assert {t.external_id for t in pending} == {t["id"] for t in bank.expected_pending(MAIN_IBAN)}
    assert all(t.account_external_id == eur.external_id for t in page.added)


def test_fetch_transactions_follows_every_page(make_adapter, bank, connect):
    bank.set_today("2024-03-01")
    bank.configure(txns_per_day={"EUR": 20})
    adapter = make_adapter()
    consent = connect(adapter)
    eur = accounts_by_currency(adapter, consent)["EUR"]
    calls = bank.stats()["requests"].get("GET /api/v1/accounts/{id}/transactions", 0)
    page = adapter.fetch_transactions(consent, eur.external_id, None, None)
    assert len(page.added) == 91 * 20 + 20
    assert len({t.external_id for t in page.added}) == len(page.added)
    after = bank.stats()["requests"]["GET /api/v1/accounts/{id}/transactions"]
    assert after - calls == 4  # 1840 transactions, 500 a page


def test_fetch_transactions_page_bound(make_adapter, bank, connect, monkeypatch):
    import services.providers.sandbox as sandbox_module
    bank.configure(txns_per_day={"EUR": 20})
    adapter = make_adapter()
    consent = connect(adapter)
    eur = accounts_by_currency(adapter, consent)["EUR"]
    monkeypatch.setattr(sandbox_module, "MAX_PAGES", 2)
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, eur.external_id, None, None)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR


def test_transaction_mapping_through_the_api(adapter, bank, connect):
    bank.set_today("2024-04-10")
    consent = connect(adapter)
    eur = accounts_by_currency(adapter, consent)["EUR"]
    txns = adapter.fetch_transactions(consent, eur.external_id, date(2024, 1, 20),
                                      date(2024, 4, 10)).added
    booked = next(t for t in txns if t.status == TxnStatus.BOOKED)
    assert isinstance(booked.booking_date, date) and booked.value_date == booked.booking_date
    assert booked.transaction_date == booked.booking_date - timedelta(days=1)
    assert booked.replaces_external_id == booked.alt_ids["pending_id"]
    assert booked.replaces_external_id.startswith("pdg_") and not booked.id_is_synthetic
    assert booked.date == booked.booking_date
    with_ref = [t for t in txns if t.structured_reference]
    assert with_ref and all(t.structured_reference.startswith("+++") for t in with_ref)
    assert any(t.counterparty_iban for t in txns) and any(t.counterparty_name for t in txns)
    pending = next(t for t in txns if t.status == TxnStatus.PENDING)
    assert pending.booking_date is None and pending.date == date(2024, 4, 10)
    assert pending.replaces_external_id is None and pending.alt_ids == {}


def test_pending_transaction_reappears_booked(adapter, bank, connect):
    bank.set_today("2024-04-10")
    consent = connect(adapter)
    eur = accounts_by_currency(adapter, consent)["EUR"]
    first = adapter.fetch_transactions(consent, eur.external_id, date(2024, 4, 8), None).added
    pending_ids = {t.external_id for t in first if t.status == TxnStatus.PENDING}
    bank.advance_days(1)
    second = adapter.fetch_transactions(consent, eur.external_id, date(2024, 4, 8), None).added
    newly_booked = [t for t in second if t.booking_date == date(2024, 4, 11)]
    assert {t.replaces_external_id for t in newly_booked} == pending_ids
    assert not pending_ids & {t.external_id for t in second}


def test_date_out_of_range_is_bad_request(adapter, consent, bank):
    eur = accounts_by_currency(adapter, consent)["EUR"]
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_transactions(consent, eur.external_id, bank.today - timedelta(days=91),
                                   bank.today)
    assert caught.value.category == ErrorCategory.BAD_REQUEST
    assert caught.value.code == "DATE_OUT_OF_RANGE" and not caught.value.retryable


def test_map_transaction_pure():
    raw = {"id": "txn_1", "status": "booked", "booking_date": "2024-02-29",
           "value_date": "2024-02-29", "transaction_date": "2024-02-28", "amount": "-12.30",
           "currency": "EUR", "description": "", "counterparty": {"name": "Shop", "iban": None},
           "reference": "+++090/9337/55493+++", "pending_id": "pdg_1"}
    txn = map_transaction(raw, "acc_1")
    assert txn.amount == Decimal("-12.30") and txn.booking_date == date(2024, 2, 29)
    assert txn.description == "Shop"  # empty description: the counterparty's name
    assert txn.structured_reference == "+++090/9337/55493+++"
    assert txn.alt_ids == {"pending_id": "pdg_1"} and txn.replaces_external_id == "pdg_1"
    with pytest.raises(ValueError):
        parse_amount(12.3)
    with pytest.raises(ValueError):
        map_transaction(dict(raw, status="cancelled"), "acc_1")
    account = map_account({"id": "acc_1", "iban": None, "stable_id": "abc", "type": "loan"}, "c")
    assert account.stable_key == "abc" and account.kind == "loan"
    assert map_account({"id": "a", "type": "brokerage"}, "c").kind == "other"


def test_malformed_answer_shape_is_provider_error(adapter, consent, bank):
    bank.add_fault("malformed_json", times=None, path="/accounts")
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR


# ------------------------------------------------------------------------------ tokens and consent state
def test_expired_access_token_is_refreshed_transparently(adapter, consent, bank):
    before = dict(consent.secrets)
    bank.advance_days(1)  # the access token (1 hour) is now expired at the bank
    accounts = adapter.list_accounts(consent)
    assert len(accounts) == 2
    assert consent.secrets["access_token"] != before["access_token"]
    assert consent.secrets["refresh_token"] == before["refresh_token"]
    assert set(consent.secrets) == set(before)
    requests_made = bank.stats()["requests"]
    assert requests_made["GET /api/v1/accounts"] == 2  # 401 TOKEN_EXPIRED, then the retry
    assert requests_made["POST /api/v1/token"] == 2  # code exchange + one refresh
    adapter.list_accounts(consent)
    assert bank.stats()["requests"]["POST /api/v1/token"] == 2  # the new token is kept


def test_access_token_known_to_be_expired_is_refreshed_first(adapter, consent, bank):
    old = consent.secrets["access_token"]
    consent.secrets["access_expires_at"] = "2000-01-01T00:00:00Z"
    adapter.list_accounts(consent)
    assert consent.secrets["access_token"] != old
    expires = datetime.fromisoformat(consent.secrets["access_expires_at"].replace("Z", "+00:00"))
    assert expires > datetime.now(timezone.utc)
    assert bank.stats()["requests"]["GET /api/v1/accounts"] == 1


def test_expired_consent_needs_reconnection(adapter, consent, bank):
    bank.advance_days(91)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.AUTH_EXPIRED and error.code == "CONSENT_EXPIRED"
    assert not error.retryable
    for secret in consent.secrets.values():
        assert secret not in str(error) and secret not in error.message


def test_unknown_refresh_token_means_reconnect(adapter, consent, bank):
    consent.secrets["refresh_token"] = "sbx_rt_forgotten"
    bank.advance_days(1)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "invalid_grant"
    assert "sbx_rt_forgotten" not in str(caught.value)


def test_consent_revoked_at_the_bank(adapter, consent, bank):
    bank.revoke_consent(consent.external_id)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.category == ErrorCategory.AUTH_EXPIRED
    assert caught.value.code == "CONSENT_REVOKED"


def test_revoke_consent(adapter, consent, bank):
    assert adapter.revoke_consent(consent) is True
    assert bank.consents()[0]["revoked"] is True
    assert adapter.revoke_consent(consent) is False  # already gone: nothing to do
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    assert caught.value.code == "CONSENT_REVOKED"


def test_user_presence_required_by_mfa_bank(make_adapter, bank, connect):
    unattended = make_adapter()
    consent = connect(unattended, institution_id="SANDBOX_BANK_MFA")
    with pytest.raises(ProviderError) as caught:
        unattended.list_accounts(consent)
    error = caught.value
    assert error.category == ErrorCategory.USER_ACTION_REQUIRED
    assert error.code == errors.USER_MUST_BE_PRESENT and error.requires_user_presence
    assert error.http_status == 403
    attended = make_adapter(user_present=True, psu_ip="192.0.2.7")
    accounts = attended.list_accounts(consent)
    assert {a.name for a in accounts} == {"Sandbox MFA Current Account",
                                          "Sandbox MFA Dollar Account"}


@pytest.mark.parametrize("kind, options, category, code", [
    ("http_500", {}, ErrorCategory.PROVIDER_ERROR, "INTERNAL_ERROR"),
    ("http_503", {}, ErrorCategory.INSTITUTION_DOWN, "BANK_UNAVAILABLE"),
    ("consent_expired", {}, ErrorCategory.AUTH_EXPIRED, "CONSENT_EXPIRED"),
    ("user_must_be_present", {}, ErrorCategory.USER_ACTION_REQUIRED, "USER_MUST_BE_PRESENT"),
    ("rate_limit", {"seconds": 90}, ErrorCategory.RATE_LIMITED, "RATE_LIMITED"),
])
def test_error_mapping(make_adapter, bank, connect, kind, options, category, code):
    adapter = make_adapter(max_retries=0)
    consent = connect(adapter)
    bank.add_fault(kind, **options)
    with pytest.raises(ProviderError) as caught:
        adapter.list_accounts(consent)
    error = caught.value
    assert error.category == category and error.code == code
    assert error.provider == "sandbox" and error.reference.startswith("OS-")
    assert code in error.message and consent.secrets["access_token"] not in error.message
    assert error.retryable == (category in errors.TRANSIENT_CATEGORIES)
    if kind == "rate_limit":
        assert error.retry_after == 90.0 and error.http_status == 429


def test_proxy_client_end_to_end(bank):
    client = ProxyClient("sandbox", {"base_url": bank.url}, sleep=lambda s: None)
    assert client.max_history_days == 90 and client.uses_pkce
    start = client.start_consent("SANDBOX_BANK", REDIRECT_URI, "px")
    consent = client.complete_consent(simulate_user(start.redirect_url), REDIRECT_URI,
                                      code_verifier=start.code_verifier)
    rebuilt = ProxyClient.consent("sandbox", consent.external_id, consent.secrets,
                                  valid_until=consent.valid_until)
    accounts = client.accounts(rebuilt)
    page = client.transactions(rebuilt, accounts[1].external_id, bank.today - timedelta(days=3),
                               bank.today)
    assert len(page.added) == 4 * 1 + 1  # USD: one a day, plus today's pending one
    assert client.revoke(rebuilt) is True


def test_code_exchange_is_never_retried(adapter, bank):
    """The authorization code is single-use: a retry after a 500 could only fail."""
    start = adapter.start_consent("SANDBOX_BANK", REDIRECT_URI, "state-once")
    callback = simulate_user(start.redirect_url)
    bank.add_fault("http_500", path="/token", times=1)
    with pytest.raises(ProviderError) as caught:
        adapter.complete_consent(callback, REDIRECT_URI, code_verifier=start.code_verifier)
    assert caught.value.category == ErrorCategory.PROVIDER_ERROR
    assert bank.stats()["requests"].get("POST /api/v1/token") == 1
