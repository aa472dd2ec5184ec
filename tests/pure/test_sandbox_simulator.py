"""The Sandbox Bank simulator answers as its README documents (raw HTTP, no adapter)."""
import threading
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from services.pkce import code_challenge, new_pkce_pair
from simulators.sandbox_bank import SandboxBankServer, simulate_user
from simulators.sandbox_bank import data

CLIENT = ("sandbox-client", "sandbox-secret")
REDIRECT = "http://127.0.0.1:8069/cb"
MAIN_IBAN = "BE14063123456783"


def consent_url(bank, **overrides):
    params = {"client_id": "sandbox-client", "redirect_uri": REDIRECT, "state": "s1",
              "institution_id": "SANDBOX_BANK"}
    params.update(overrides)
    params = {key: value for key, value in params.items() if value is not None}
    return f"{bank.url}/consent?{urlencode(params)}"


def authorize(bank, institution_id="SANDBOX_BANK", valid_days=None):
    """Approve on the consent page and exchange the code: the token answer."""
    verifier, challenge = new_pkce_pair()
    callback = simulate_user(consent_url(bank, institution_id=institution_id,
                                         code_challenge=challenge,
                                         code_challenge_method="S256", valid_days=valid_days))
    response = requests.post(f"{bank.url}/api/v1/token", auth=CLIENT, data={
        "grant_type": "authorization_code", "code": callback["code"], "redirect_uri": REDIRECT,
        "code_verifier": verifier}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def api(bank, path, token, method="GET", headers=None, **kwargs):
    return requests.request(method, f"{bank.url}{path}", timeout=5, headers={
        "Authorization": f"Bearer {token}", **(headers or {})}, **kwargs)


def error_code(response):
    body = response.json()
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"].startswith("req_")
    return body["error"]["code"]


def accounts_of(bank, token):
    response = api(bank, "/api/v1/accounts", token)
    assert response.status_code == 200
    return {account["currency"]: account for account in response.json()["accounts"]}


def all_transactions(bank, token, account_id, **params):
    items, cursor, pages = [], None, 0
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = api(bank, f"/api/v1/accounts/{account_id}/transactions", token, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["transactions"])
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return items, pages


# ------------------------------------------------------------------------------ institutions
def test_institutions_need_client_credentials(bank):
    response = requests.get(f"{bank.url}/api/v1/institutions", timeout=5)
    assert response.status_code == 401
    assert error_code(response) == "INVALID_CLIENT"
    wrong = requests.get(f"{bank.url}/api/v1/institutions", auth=("sandbox-client", "nope"),
                         timeout=5)
    assert wrong.status_code == 401 and error_code(wrong) == "INVALID_CLIENT"


def test_institutions_filters_and_logo(bank):
    def ids(**params):
        response = requests.get(f"{bank.url}/api/v1/institutions", auth=CLIENT, params=params,
                                timeout=5)
        assert response.status_code == 200
        return [inst["id"] for inst in response.json()["institutions"]]

    assert ids() == ["SANDBOX_BANK", "SANDBOX_BANK_MFA"]
    assert ids(country="VN") == ["SANDBOX_BANK", "SANDBOX_BANK_MFA"]
    assert ids(country="JP") == []
    assert ids(q="mFa") == ["SANDBOX_BANK_MFA"]
    assert ids(q="nowhere") == []
    institutions = requests.get(f"{bank.url}/api/v1/institutions", auth=CLIENT,
                                timeout=5).json()["institutions"]
    main, mfa = institutions
    assert main["bic"] == "SNDBBEB1" and main["requires_user_presence"] is False
    assert main["beta"] is False and main["max_history_days"] == 90
    assert mfa["requires_user_presence"] is True and mfa["beta"] is True
    assert main["logo_url"] == f"{bank.url}/static/sandbox-bank.svg"
    logo = requests.get(main["logo_url"], timeout=5)
    assert logo.status_code == 200
    assert logo.headers["Content-Type"] == "image/svg+xml" and b"<svg" in logo.content


# ------------------------------------------------------------------------------ consent page
def test_consent_page_lists_accounts_and_buttons(bank):
    response = requests.get(consent_url(bank, code_challenge="abc"), timeout=5)
    assert response.status_code == 200
    page = response.text
    assert "<title>Sandbox Bank – Consent</title>" in page
    assert 'action="/consent/decision"' in page
    assert '<button type="submit" name="decision" value="approve">Allow access</button>' in page
    assert '<button type="submit" name="decision" value="cancel">Cancel</button>' in page
    assert "Sandbox Current Account" in page and "Sandbox Dollar Account" in page
    assert 'name="state" value="s1"' in page


@pytest.mark.parametrize("overrides", [
    {"client_id": "someone-else"},
    {"redirect_uri": None},
    {"state": None},
    {"institution_id": "NO_SUCH_BANK"},
])
def test_consent_page_refuses_bad_requests(bank, overrides):
    response = requests.get(consent_url(bank, **overrides), timeout=5)
    assert response.status_code == 400
    assert "text/html" in response.headers["Content-Type"]


def test_consent_page_escapes_what_it_echoes(bank):
    response = requests.get(consent_url(bank, state='"><script>x</script>'), timeout=5)
    assert response.status_code == 200
    assert "<script>x</script>" not in response.text


def test_decision_redirects_with_code_or_error(bank):
    approved = simulate_user(consent_url(bank), "approve")
    assert approved["state"] == "s1" and len(approved["code"]) > 20
    cancelled = simulate_user(consent_url(bank), "cancel")
    assert cancelled == {"error": "access_denied", "error_description": "The user cancelled",
                         "state": "s1"}


def test_decision_appends_to_an_existing_query(bank):
    form = {"client_id": "sandbox-client", "redirect_uri": REDIRECT + "?db=demo", "state": "s2",
            "institution_id": "SANDBOX_BANK", "decision": "cancel"}
    response = requests.post(f"{bank.url}/consent/decision", data=form, allow_redirects=False,
                             timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"] == (
        REDIRECT + "?db=demo&error=access_denied&error_description=The+user+cancelled&state=s2")


# ------------------------------------------------------------------------------ token
def test_code_exchange_with_pkce(bank):
    verifier, challenge = new_pkce_pair()
    assert challenge == code_challenge(verifier) and "=" not in challenge
    callback = simulate_user(consent_url(bank, code_challenge=challenge,
                                         code_challenge_method="S256"))

    def exchange(**overrides):
        form = {"grant_type": "authorization_code", "code": callback["code"],
                "redirect_uri": REDIRECT, "code_verifier": verifier}
        form.update(overrides)
        return requests.post(f"{bank.url}/api/v1/token", auth=CLIENT, data=form, timeout=5)

    bad_client = requests.post(f"{bank.url}/api/v1/token", auth=("sandbox-client", "x"),
                               data={"grant_type": "authorization_code",
                                     "code": callback["code"]}, timeout=5)
    assert bad_client.status_code == 401 and error_code(bad_client) == "INVALID_CLIENT"
    wrong_verifier = exchange(code_verifier="x" * 50)
    assert wrong_verifier.status_code == 400 and error_code(wrong_verifier) == "invalid_grant"

    callback = simulate_user(consent_url(bank, code_challenge=challenge))
    mismatch = exchange(redirect_uri=REDIRECT + "/other")
    assert mismatch.status_code == 400 and error_code(mismatch) == "invalid_grant"

    callback = simulate_user(consent_url(bank, code_challenge=challenge))
    good = exchange()
    assert good.status_code == 200
    body = good.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"] and body["refresh_token"]
    info = body["consent"]
    assert info["id"].startswith("cns_") and info["institution_id"] == "SANDBOX_BANK"
    created = datetime.fromisoformat(info["created_at"].replace("Z", "+00:00"))
    valid_until = datetime.fromisoformat(info["valid_until"].replace("Z", "+00:00"))
    assert created.utcoffset() == timedelta(0)
    assert valid_until - created == timedelta(days=90)
    reused = exchange()
    assert reused.status_code == 400 and error_code(reused) == "invalid_grant"


def test_code_expires_after_ten_minutes_of_simulated_time(bank):
    callback = simulate_user(consent_url(bank))
    bank.advance_days(1)
    response = requests.post(f"{bank.url}/api/v1/token", auth=CLIENT, data={
        "grant_type": "authorization_code", "code": callback["code"], "redirect_uri": REDIRECT},
        timeout=5)
    assert response.status_code == 400 and error_code(response) == "invalid_grant"


def test_valid_days_is_honoured_and_capped(bank):
    def days(valid_days):
        info = authorize(bank, valid_days=valid_days)["consent"]
        created = datetime.fromisoformat(info["created_at"].replace("Z", "+00:00"))
        return (datetime.fromisoformat(info["valid_until"].replace("Z", "+00:00")) - created).days

    assert days(30) == 30
    assert days(365) == 90


def test_access_token_expiry_refresh_and_consent_expiry(bank):
    tokens = authorize(bank)
    assert api(bank, "/api/v1/accounts", tokens["access_token"]).status_code == 200
    unknown = api(bank, "/api/v1/accounts", "sbx_at_unknown")
    assert unknown.status_code == 401 and error_code(unknown) == "INVALID_TOKEN"

    bank.advance_days(1)
    expired = api(bank, "/api/v1/accounts", tokens["access_token"])
    assert expired.status_code == 401 and error_code(expired) == "TOKEN_EXPIRED"
    refreshed = requests.post(f"{bank.url}/api/v1/token", auth=CLIENT, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, timeout=5)
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["access_token"] != tokens["access_token"]
    assert new["consent"]["id"] == tokens["consent"]["id"]
    assert api(bank, "/api/v1/accounts", new["access_token"]).status_code == 200
    bad_refresh = requests.post(f"{bank.url}/api/v1/token", auth=CLIENT, data={
        "grant_type": "refresh_token", "refresh_token": "nope"}, timeout=5)
    assert bad_refresh.status_code == 400 and error_code(bad_refresh) == "invalid_grant"

    bank.advance_days(90)
    gone = api(bank, "/api/v1/accounts", new["access_token"])
    assert gone.status_code == 401 and error_code(gone) == "CONSENT_EXPIRED"
    refused = requests.post(f"{bank.url}/api/v1/token", auth=CLIENT, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, timeout=5)
    assert refused.status_code == 401 and error_code(refused) == "CONSENT_EXPIRED"


def test_revoked_consent(bank):
    tokens = authorize(bank)
    consent_id = tokens["consent"]["id"]
    other = authorize(bank)
    wrong = api(bank, f"/api/v1/consents/{other['consent']['id']}", tokens["access_token"],
                method="DELETE")
    assert wrong.status_code == 404
    response = api(bank, f"/api/v1/consents/{consent_id}", tokens["access_token"],
                   method="DELETE")
    assert response.status_code == 204 and response.content == b""
    after = api(bank, "/api/v1/accounts", tokens["access_token"])
    assert after.status_code == 401 and error_code(after) == "CONSENT_REVOKED"
    refresh = requests.post(f"{bank.url}/api/v1/token", auth=CLIENT, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, timeout=5)
    assert refresh.status_code == 401 and error_code(refresh) == "CONSENT_REVOKED"
    listed = requests.get(f"{bank.url}/_sim/consents", timeout=5).json()["consents"]
    states = {item["id"]: item["revoked"] for item in listed}
    assert states == {consent_id: True, other["consent"]["id"]: False}
    assert api(bank, "/api/v1/accounts", other["access_token"]).status_code == 200


def test_error_bodies_never_echo_tokens(bank):
    tokens = authorize(bank)
    bank.advance_days(1)
    response = api(bank, "/api/v1/accounts", tokens["access_token"])
    assert response.status_code == 401
    assert tokens["access_token"] not in response.text
    assert tokens["refresh_token"] not in response.text


# ------------------------------------------------------------------------------ accounts
def test_accounts_are_per_consent_with_stable_identifiers(bank):
    first = accounts_of(bank, authorize(bank)["access_token"])
    second = accounts_of(bank, authorize(bank)["access_token"])
    assert set(first) == {"EUR", "USD"}
    eur, usd = first["EUR"], first["USD"]
    assert eur["iban"] == MAIN_IBAN and data.is_valid_iban(eur["iban"])
    assert eur["masked_number"] == "BE14 **** 6783" and eur["holder_name"] == "Sandbox Demo Company"
    assert usd["iban"] is None and usd["account_number"] == "4000-1234-5678"
    assert usd["masked_number"] == "****5678" and usd["type"] == "checking"
    for currency in ("EUR", "USD"):
        assert first[currency]["id"].startswith("acc_")
        assert first[currency]["id"] != second[currency]["id"]
        assert first[currency]["stable_id"] == second[currency]["stable_id"]
        assert first[currency]["iban"] == second[currency]["iban"]
    assert first["EUR"]["stable_id"] != first["USD"]["stable_id"]


def test_iban_and_structured_reference_checks_are_real():
    assert data.is_valid_iban("BE71096123456769")
    assert not data.is_valid_iban("BE71096123456768")
    assert data.is_valid_structured_communication("+++090/9337/55493+++")
    assert not data.is_valid_structured_communication("+++090/9337/55494+++")


def test_unknown_account_is_404(bank):
    token = authorize(bank)["access_token"]
    response = api(bank, "/api/v1/accounts/acc_nope/balances", token)
    assert response.status_code == 404 and error_code(response) == "ACCOUNT_NOT_FOUND"


# ------------------------------------------------------------------------------ balances
def test_balances_follow_the_transactions(bank):
    bank.set_today("2024-03-10")
    token = authorize(bank)["access_token"]
    eur = accounts_of(bank, token)["EUR"]

    def balances():
        response = api(bank, f"/api/v1/accounts/{eur['id']}/balances", token)
        assert response.status_code == 200
        return {item["type"]: item for item in response.json()["balances"]}

    before = balances()
    assert before["booked"]["currency"] == "EUR" and before["booked"]["date"] == "2024-03-10"
    first_day = date(2024, 3, 10) - timedelta(days=90)
    booked_sum = sum(Decimal(t["amount"]) for t in
                     bank.expected_booked(MAIN_IBAN, first_day, date(2024, 3, 10)))
    assert Decimal(before["booked"]["amount"]) == Decimal("2500.00") + booked_sum
    pending_sum = sum(Decimal(t["amount"]) for t in bank.expected_pending(MAIN_IBAN))
    assert Decimal(before["available"]["amount"]) == Decimal(before["booked"]["amount"]) + pending_sum

    bank.advance_days(1)
    token = authorize(bank)["access_token"]
    eur = accounts_of(bank, token)["EUR"]
    after = balances()
    newly_booked = bank.expected_booked(MAIN_IBAN, date(2024, 3, 11), date(2024, 3, 11))
    assert len(newly_booked) == 3
    assert Decimal(after["booked"]["amount"]) - Decimal(before["booked"]["amount"]) == sum(
        Decimal(t["amount"]) for t in newly_booked)
    assert bank.expected_balances(MAIN_IBAN)["booked"] == Decimal(after["booked"]["amount"])


def test_usd_opening_balance(bank):
    bank.set_today("2024-01-31")
    usd = bank.accounts()[1]
    first_day = date(2024, 1, 31) - timedelta(days=90)
    total = sum(Decimal(t["amount"]) for t in
                bank.expected_booked(usd["stable_id"], first_day, date(2024, 1, 31)))
    assert bank.expected_balances(usd["account_number"])["booked"] == Decimal("1000.00") + total


# ------------------------------------------------------------------------------ transactions
def test_default_window_counts_and_order(bank):
    bank.set_today("2024-02-29")
    token = authorize(bank)["access_token"]
    accounts = accounts_of(bank, token)
    eur_items, pages = all_transactions(bank, token, accounts["EUR"]["id"])
    assert pages == 3  # default limit 100
    booked = [t for t in eur_items if t["status"] == "booked"]
    pending = [t for t in eur_items if t["status"] == "pending"]
    assert len(booked) == 91 * 3 and len(pending) == 3
    assert min(t["booking_date"] for t in booked) == "2023-12-01"
    assert max(t["booking_date"] for t in booked) == "2024-02-29"
    keys = [(t["booking_date"] or t["transaction_date"], t["id"]) for t in eur_items]
    assert keys == sorted(keys)
    assert len({t["id"] for t in eur_items}) == len(eur_items)
    assert [t["id"] for t in booked] == [
        t["id"] for t in bank.expected_booked(MAIN_IBAN, date(2023, 12, 1), date(2024, 2, 29))]
    usd_items, _ = all_transactions(bank, token, accounts["USD"]["id"], status="booked")
    assert len(usd_items) == 91 and {t["currency"] for t in usd_items} == {"USD"}


def test_transaction_shape(bank):
    bank.set_today("2024-05-15")
    token = authorize(bank)["access_token"]
    items, _ = all_transactions(bank, token, accounts_of(bank, token)["EUR"]["id"],
                                date_from="2024-05-14", date_to="2024-05-15")
    booked = next(t for t in items if t["status"] == "booked")
    pending = next(t for t in items if t["status"] == "pending")
    fields = {"id", "status", "booking_date", "value_date", "transaction_date", "amount",
              "currency", "description", "counterparty", "reference", "pending_id"}
    assert set(booked) == fields and set(pending) == fields
    assert booked["id"].startswith("txn_") and booked["pending_id"].startswith("pdg_")
    assert booked["value_date"] == booked["booking_date"]
    assert date.fromisoformat(booked["booking_date"]) - date.fromisoformat(
        booked["transaction_date"]) == timedelta(days=1)
    assert pending["id"].startswith("pdg_") and pending["pending_id"] is None
    assert pending["booking_date"] is None and pending["transaction_date"] == "2024-05-15"
    assert set(booked["counterparty"]) == {"name", "iban"}


def test_statuses_and_date_filters(bank):
    bank.set_today("2024-05-15")
    token = authorize(bank)["access_token"]
    account_id = accounts_of(bank, token)["EUR"]["id"]
    booked, _ = all_transactions(bank, token, account_id, status="booked",
                                 date_from="2024-05-01", date_to="2024-05-10")
    assert len(booked) == 30 and {t["status"] for t in booked} == {"booked"}
    assert all("2024-05-01" <= t["booking_date"] <= "2024-05-10" for t in booked)
    pending, _ = all_transactions(bank, token, account_id, status="pending")
    assert len(pending) == 3 and {t["transaction_date"] for t in pending} == {"2024-05-15"}
    none_pending, _ = all_transactions(bank, token, account_id, status="pending",
                                       date_to="2024-05-14")
    assert none_pending == []
    future, _ = all_transactions(bank, token, account_id, date_from="2024-05-14",
                                 date_to="2030-01-01")
    assert len(future) == 3 + 3 + 3
    too_old = api(bank, f"/api/v1/accounts/{account_id}/transactions", token,
                  params={"date_from": "2024-02-14"})  # 2024-05-15 - 90 days = 2024-02-15
    assert too_old.status_code == 400 and error_code(too_old) == "DATE_OUT_OF_RANGE"
    oldest_ok = api(bank, f"/api/v1/accounts/{account_id}/transactions", token,
                    params={"date_from": "2024-02-15", "limit": 3})
    assert oldest_ok.status_code == 200
    for params in ({"status": "weird"}, {"limit": "0"}, {"limit": "x"},
                   {"date_from": "2024-05-10", "date_to": "2024-05-01"}, {"date_to": "May 1"}):
        bad = api(bank, f"/api/v1/accounts/{account_id}/transactions", token, params=params)
        assert bad.status_code == 400 and error_code(bad) == "INVALID_REQUEST", params


def test_paging_limits_and_cursors(bank):
    bank.set_today("2024-05-15")
    bank.configure(txns_per_day={"EUR": 7})
    token = authorize(bank)["access_token"]
    account_id = accounts_of(bank, token)["EUR"]["id"]
    whole, _ = all_transactions(bank, token, account_id, limit=500)
    assert len(whole) == 91 * 7 + 7
    paged, pages = all_transactions(bank, token, account_id, limit=10)
    assert pages == 65 and [t["id"] for t in paged] == [t["id"] for t in whole]
    capped = api(bank, f"/api/v1/accounts/{account_id}/transactions", token,
                 params={"limit": 5000}).json()
    assert len(capped["transactions"]) == 500 and capped["next_cursor"]
    other = api(bank, f"/api/v1/accounts/{account_id}/transactions", token,
                params={"cursor": capped["next_cursor"], "status": "booked"})
    assert other.status_code == 400 and error_code(other) == "INVALID_CURSOR"
    garbage = api(bank, f"/api/v1/accounts/{account_id}/transactions", token,
                  params={"cursor": "!!!"})
    assert garbage.status_code == 400 and error_code(garbage) == "INVALID_CURSOR"


def test_pending_transactions_book_the_next_day_under_a_new_id(bank):
    bank.set_today("2024-06-03")
    pending = bank.expected_pending(MAIN_IBAN)
    assert len(pending) == 3 and all(t["id"].startswith("pdg_") for t in pending)
    bank.advance_days(1)
    booked = bank.expected_booked(MAIN_IBAN, date(2024, 6, 4), date(2024, 6, 4))
    assert sorted(t["pending_id"] for t in booked) == sorted(t["id"] for t in pending)
    by_pending = {t["pending_id"]: t for t in booked}
    for old in pending:
        new = by_pending[old["id"]]
        assert new["id"] != old["id"] and new["id"].startswith("txn_")
        assert (new["amount"], new["description"], new["transaction_date"]) == (
            old["amount"], old["description"], old["transaction_date"])
        assert new["booking_date"] == "2024-06-04"
    assert {t["id"] for t in bank.expected_pending(MAIN_IBAN)}.isdisjoint(
        t["id"] for t in pending)


def test_history_grows_and_old_days_leave_the_window(bank):
    bank.set_today("2024-04-01")
    token = authorize(bank)["access_token"]
    account_id = accounts_of(bank, token)["EUR"]["id"]
    before, _ = all_transactions(bank, token, account_id, status="booked")
    bank.advance_days(5)
    token = authorize(bank)["access_token"]
    account_id = accounts_of(bank, token)["EUR"]["id"]
    after, _ = all_transactions(bank, token, account_id, status="booked")
    assert len(after) == len(before)  # the window slides: 91 days both times
    assert {t["booking_date"] for t in after} - {t["booking_date"] for t in before} == {
        "2024-04-02", "2024-04-03", "2024-04-04", "2024-04-05", "2024-04-06"}
    common = {t["id"] for t in before} & {t["id"] for t in after}
    assert len(common) == len(before) - 5 * 3
    old = api(bank, f"/api/v1/accounts/{account_id}/transactions", token,
              params={"date_from": "2024-01-02"})
    assert old.status_code == 400 and error_code(old) == "DATE_OUT_OF_RANGE"
    kept = bank.expected_booked(MAIN_IBAN, date(2024, 1, 2), date(2024, 1, 2))
    assert [t["id"] for t in kept] == [t["id"] for t in before if t["booking_date"] == "2024-01-02"]


def test_data_is_deterministic_and_realistic():
    with SandboxBankServer(today="2024-03-31") as one, SandboxBankServer(today="2024-03-31") as two:
        a = one.expected_booked(MAIN_IBAN, date(2024, 1, 1), date(2024, 3, 31))
        b = two.expected_booked(MAIN_IBAN, date(2024, 1, 1), date(2024, 3, 31))
    assert a == b and len(a) == 91 * 3
    amounts = [Decimal(t["amount"]) for t in a]
    assert all(amount != 0 and amount == amount.quantize(Decimal("0.01")) for amount in amounts)
    assert any(amount > 0 for amount in amounts) and any(amount < 0 for amount in amounts)
    assert len({t["description"] for t in a}) > 100
    assert len({t["counterparty"]["name"] for t in a}) > 15
    references = [t["reference"] for t in a if t["reference"]]
    assert references and all(data.is_valid_structured_communication(r) for r in references)
    ibans = [t["counterparty"]["iban"] for t in a if t["counterparty"]["iban"]]
    assert all(data.is_valid_iban(iban) for iban in ibans)
    assert {iban[:2] for iban in ibans} - {"BE"}, "some foreign counterparties"
    rents = [t for t in a if t["booking_date"].endswith("-01") and "Rent" in t["description"]]
    assert len(rents) == 3 and {t["amount"] for t in rents} == {"-1850.00"}
    salaries = [t for t in a if t["description"].startswith("Salary")]
    assert len(salaries) == 3 and all(Decimal(t["amount"]) > 0 for t in salaries)


def test_mfa_institution_requires_user_presence(bank):
    token = authorize(bank, institution_id="SANDBOX_BANK_MFA")["access_token"]
    refused = api(bank, "/api/v1/accounts", token)
    assert refused.status_code == 403 and error_code(refused) == "USER_MUST_BE_PRESENT"
    allowed = api(bank, "/api/v1/accounts", token, headers={"PSU-IP-Address": "10.1.2.3"})
    assert allowed.status_code == 200
    ibans = {a["iban"] for a in allowed.json()["accounts"]}
    assert MAIN_IBAN not in ibans and all(data.is_valid_iban(i) for i in ibans if i)


# ------------------------------------------------------------------------------ faults over HTTP
def test_fault_api_http_503_with_skip_path_and_consent_filters(bank):
    tokens = authorize(bank)
    other = authorize(bank)
    token = tokens["access_token"]
    created = requests.post(f"{bank.url}/_sim/faults", json={
        "kind": "http_503", "times": 1, "skip": 1, "path": "/balances",
        "consent_id": tokens["consent"]["id"]}, timeout=5)
    assert created.status_code == 201 and created.json()["fault"]["kind"] == "http_503"
    account_id = accounts_of(bank, token)["EUR"]["id"]
    other_id = accounts_of(bank, other["access_token"])["EUR"]["id"]
    assert api(bank, f"/api/v1/accounts/{other_id}/balances", other["access_token"]).status_code == 200
    assert api(bank, f"/api/v1/accounts/{account_id}/balances", token).status_code == 200  # skip
    failed = api(bank, f"/api/v1/accounts/{account_id}/balances", token)
    assert failed.status_code == 503 and error_code(failed) == "BANK_UNAVAILABLE"
    assert api(bank, f"/api/v1/accounts/{account_id}/balances", token).status_code == 200
    listed = requests.get(f"{bank.url}/_sim/faults", timeout=5).json()["faults"]
    assert listed[0]["hits"] == 1 and listed[0]["remaining"] == 0
    assert requests.delete(f"{bank.url}/_sim/faults", timeout=5).status_code == 204
    assert requests.get(f"{bank.url}/_sim/faults", timeout=5).json()["faults"] == []
    assert requests.post(f"{bank.url}/_sim/faults", json={"kind": "meteor"},
                         timeout=5).status_code == 400


def test_fault_without_times_lasts_until_cleared(bank):
    token = authorize(bank)["access_token"]
    bank.add_fault("http_500", times=None)
    for _ in range(3):
        response = api(bank, "/api/v1/accounts", token)
        assert response.status_code == 500 and error_code(response) == "INTERNAL_ERROR"
    assert bank.clear_faults() == 1
    assert api(bank, "/api/v1/accounts", token).status_code == 200


def test_rate_limit_fault_headers(bank):
    token = authorize(bank)["access_token"]
    bank.add_fault("rate_limit", seconds=120)
    response = api(bank, "/api/v1/accounts", token)
    assert response.status_code == 429 and error_code(response) == "RATE_LIMITED"
    assert response.headers["Retry-After"] == "120"
    assert response.headers["X-RateLimit-Limit"] == "4"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    reset = int(response.headers["X-RateLimit-Reset"])
    assert abs(reset - (bank.now().timestamp() + 120)) < 5


def test_other_fault_kinds(bank):
    token = authorize(bank)["access_token"]
    bank.add_fault("malformed_json")
    broken = api(bank, "/api/v1/accounts", token)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    bank.add_fault("consent_expired")
    expired = api(bank, "/api/v1/accounts", token)
    assert expired.status_code == 401 and error_code(expired) == "CONSENT_EXPIRED"
    bank.add_fault("user_must_be_present")
    present = api(bank, "/api/v1/accounts", token, headers={"PSU-IP-Address": "127.0.0.1"})
    assert present.status_code == 200  # the fault ignores attended requests ...
    absent = api(bank, "/api/v1/accounts", token)
    assert absent.status_code == 403 and error_code(absent) == "USER_MUST_BE_PRESENT"  # ... once
    bank.add_fault("delay", seconds=0.3)
    started = time.monotonic()
    assert api(bank, "/api/v1/accounts", token).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_timeout_fault_wakes_up_when_the_server_stops():
    server = SandboxBankServer().start()
    server.add_fault("timeout", seconds=30, path="/api/v1/institutions")
    outcome = {}

    def call():
        try:
            requests.get(f"{server.url}/api/v1/institutions", auth=CLIENT, timeout=(1, 20))
            outcome["result"] = "answered"
        except requests.RequestException as exc:
            outcome["result"] = type(exc).__name__

    thread = threading.Thread(target=call)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    server.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert outcome["result"] == "ConnectionError"


# ------------------------------------------------------------------------------ admin API
def test_admin_clock_config_reset_stats(bank):
    clock = requests.post(f"{bank.url}/_sim/clock", json={"today": "2024-02-28"}, timeout=5)
    assert clock.json()["today"] == "2024-02-28" and bank.today == date(2024, 2, 28)
    clock = requests.post(f"{bank.url}/_sim/clock", json={"advance_days": 2}, timeout=5)
    assert clock.json()["today"] == "2024-03-01"
    config = requests.post(f"{bank.url}/_sim/config", json={
        "history_days": 30, "txns_per_day": {"EUR": 5, "USD": 2}}, timeout=5).json()["config"]
    assert config["history_days"] == 30 and config["txns_per_day"] == {"EUR": 5, "USD": 2}
    assert requests.post(f"{bank.url}/_sim/config", json={"history_days": -1},
                         timeout=5).status_code == 400
    assert requests.post(f"{bank.url}/_sim/config", json={"colour": "red"},
                         timeout=5).status_code == 400
    token = authorize(bank)["access_token"]
    account_id = accounts_of(bank, token)["EUR"]["id"]
    items, _ = all_transactions(bank, token, account_id, status="booked", limit=500)
    assert len(items) == 31 * 5
    stats = requests.get(f"{bank.url}/_sim/stats", timeout=5).json()
    assert stats["requests"]["GET /api/v1/accounts"] == 1
    assert stats["requests"]["GET /api/v1/accounts/{id}/transactions"] == 1
    assert stats["requests"]["POST /api/v1/token"] == 1
    assert not any(key.startswith(("GET /_sim", "POST /_sim")) for key in stats["requests"])
    assert requests.post(f"{bank.url}/_sim/reset", timeout=5).status_code == 204
    assert bank.stats()["total"] == 0 and bank.consents() == []
    assert bank.config()["history_days"] == 90 and bank.today == datetime.now(timezone.utc).date()
    assert api(bank, "/api/v1/accounts", token).status_code == 401


def test_unknown_route_and_wrong_method(bank):
    missing = requests.get(f"{bank.url}/api/v1/nothing", timeout=5)
    assert missing.status_code == 404 and error_code(missing) == "NOT_FOUND"
    wrong = requests.put(f"{bank.url}/api/v1/accounts", timeout=5)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"


def test_other_client_credentials():
    with SandboxBankServer(client_id="acme", client_secret="s3cret") as server:
        assert requests.get(f"{server.url}/api/v1/institutions", auth=CLIENT,
                            timeout=5).status_code == 401
        assert requests.get(f"{server.url}/api/v1/institutions", auth=("acme", "s3cret"),
                            timeout=5).status_code == 200
        page = requests.get(f"{server.url}/consent?" + urlencode({
            "client_id": "sandbox-client", "redirect_uri": REDIRECT, "state": "x"}), timeout=5)
        assert page.status_code == 400


def test_location_parsing_helper_matches_redirect(bank):
    url = consent_url(bank, redirect_uri="http://127.0.0.1:8069/cb?a=1&b=2")
    params = simulate_user(url)
    assert params["a"] == "1" and params["b"] == "2" and "code" in params
    assert parse_qs(urlsplit(url).query)["state"] == ["s1"]
