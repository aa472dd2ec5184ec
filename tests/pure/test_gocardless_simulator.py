"""The GoCardless simulator answers like GoCardless Bank Account Data v2 (raw HTTP, no adapter)."""
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from simulators.gocardless import (DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, FAULT_KINDS,
                                   GoCardlessServer, simulate_user)
from simulators.gocardless import data

SANDBOX = "SANDBOXFINANCE_SFIN0000"
REDIRECT = "http://127.0.0.1:8069/cb?x=1"
TODAY = date(2024, 3, 1)
MAIN_IBAN = data.ACCOUNTS[SANDBOX][0]["iban"]


@pytest.fixture
def gc():
    server = GoCardlessServer(port=0, today=TODAY).start()
    try:
        yield server
    finally:
        server.stop()


def new_tokens(gc, secret_id=DEFAULT_SECRET_ID, secret_key=DEFAULT_SECRET_KEY, slash="/"):
    return requests.post(f"{gc.api_url}/token/new{slash}", timeout=5,
                         json={"secret_id": secret_id, "secret_key": secret_key})


@pytest.fixture
def token(gc):
    response = new_tokens(gc)
    assert response.status_code == 200
    return response.json()["access"]


def api(gc, token, path, method="GET", **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{gc.api_url}{path}", headers=headers, timeout=5, **kwargs)


def is_error_body(body, status):
    return set(body) == {"summary", "detail", "status_code"} and body["status_code"] == status


def link_accounts(gc, token, institution_id=SANDBOX, reference="ref-1", **agreement):
    """Agreement + requisition + "Allow access": (requisition id, {iban: account id})."""
    created = api(gc, token, "/agreements/enduser/", "POST",
                  json={"institution_id": institution_id, **agreement})
    assert created.status_code == 201, created.text
    requisition = api(gc, token, "/requisitions/", "POST", json={
        "redirect": REDIRECT, "institution_id": institution_id, "reference": reference,
        "agreement": created.json()["id"]}).json()
    assert simulate_user(requisition["link"]) == {"x": "1", "ref": reference}
    linked = api(gc, token, f"/requisitions/{requisition['id']}/").json()
    assert linked["status"] == "LN"
    ibans = {api(gc, token, f"/accounts/{account}/").json()["iban"]: account
             for account in linked["accounts"]}
    return requisition["id"], ibans


# ------------------------------------------------------------------------------ tokens
def test_token_new_and_refresh(gc):
    response = new_tokens(gc, slash="")  # with or without the trailing slash
    assert response.status_code == 200
    pair = response.json()
    assert set(pair) == {"access", "access_expires", "refresh", "refresh_expires"}
    assert pair["access_expires"] == 86400 and pair["refresh_expires"] == 2592000
    assert pair["access"].count(".") == 2 and pair["access"].startswith("eyJ")  # a JWT
    refreshed = requests.post(f"{gc.api_url}/token/refresh/", json={"refresh": pair["refresh"]},
                              timeout=5)
    assert refreshed.status_code == 200
    assert set(refreshed.json()) == {"access", "access_expires"}
    assert api(gc, refreshed.json()["access"], "/institutions/").status_code == 200
    wrong_kind = requests.post(f"{gc.api_url}/token/refresh/", json={"refresh": pair["access"]},
                               timeout=5)
    assert wrong_kind.status_code == 401 and is_error_body(wrong_kind.json(), 401)


def test_token_errors(gc):
    wrong = new_tokens(gc, secret_key="nope")
    assert wrong.status_code == 401 and is_error_body(wrong.json(), 401)
    assert "nope" not in wrong.text and DEFAULT_SECRET_KEY not in wrong.text
    missing = requests.post(f"{gc.api_url}/token/new/", json={"secret_id": "x"}, timeout=5)
    assert missing.status_code == 400
    assert is_error_body(missing.json()["secret_key"], 400)  # field-keyed


def test_tokens_expire_on_the_simulated_clock(gc, token):
    assert api(gc, token, "/institutions/").status_code == 200
    gc.advance_days(1)
    expired = api(gc, token, "/institutions/")
    assert expired.status_code == 401 and expired.json()["summary"] == "Invalid token"
    assert api(gc, None, "/institutions/").status_code == 401
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    gc.set_today(TODAY)
    assert api(gc, forged, "/institutions/").status_code == 401


# ------------------------------------------------------------------------------ institutions
def test_institutions(gc, token):
    response = api(gc, token, "/institutions/", params={"country": "be"})
    assert response.status_code == 200
    institutions = response.json()
    assert isinstance(institutions, list)  # a plain array
    assert [i["id"] for i in institutions] == [SANDBOX, "SIMBANK_SIMBBEBB"]
    simbank = institutions[1]
    assert simbank["transaction_total_days"] == "730"  # numbers of days are strings
    assert simbank["max_access_valid_for_days"] == "180"
    assert simbank["logo"].startswith(gc.url)
    assert [i["id"] for i in api(gc, token, "/institutions/?country=GB").json()] == [SANDBOX]
    assert api(gc, token, f"/institutions/{SANDBOX}/").json()["bic"] == "SFIN0000"
    missing = api(gc, token, "/institutions/NOPE/")
    assert missing.status_code == 404 and is_error_body(missing.json(), 404)
    assert requests.get(simbank["logo"], timeout=5).headers["Content-Type"] == "image/svg+xml"


# ------------------------------------------------------------------------------ requisitions
def test_agreement_defaults_and_validation(gc, token):
    created = api(gc, token, "/agreements/enduser/", "POST", json={"institution_id": SANDBOX})
    assert created.status_code == 201
    agreement = created.json()
    assert agreement["max_historical_days"] == 90 and agreement["access_valid_for_days"] == 90
    assert agreement["access_scope"] == ["balances", "details", "transactions"]
    assert agreement["accepted"] is None
    too_long = api(gc, token, "/agreements/enduser/", "POST",
                   json={"institution_id": SANDBOX, "max_historical_days": 91})
    assert too_long.status_code == 400 and "max_historical_days" in too_long.json()
    too_long = api(gc, token, "/agreements/enduser/", "POST",
                   json={"institution_id": "SIMBANK_SIMBBEBB", "access_valid_for_days": 181})
    assert too_long.status_code == 400 and "access_valid_for_days" in too_long.json()
    scope = api(gc, token, "/agreements/enduser/", "POST",
                json={"institution_id": SANDBOX, "access_scope": ["payments"]})
    assert scope.status_code == 400 and is_error_body(scope.json()["access_scope"], 400)
    assert api(gc, token, "/agreements/enduser/", "POST",
               json={"institution_id": "X"}).json()["institution_id"]["summary"] == \
        "Unknown Institution ID"


def test_requisition_flow_and_link(gc, token):
    created = api(gc, token, "/requisitions/", "POST", json={
        "redirect": REDIRECT, "institution_id": SANDBOX, "reference": "r-1",
        "user_language": "nl"})
    assert created.status_code == 201
    requisition = created.json()
    assert requisition["status"] == "CR" and requisition["accounts"] == []
    assert requisition["user_language"] == "NL" and requisition["reference"] == "r-1"
    default = api(gc, token, f"/agreements/enduser/{requisition['agreement']}/").json()
    assert default["access_valid_for_days"] == 90  # a default agreement was made
    duplicate = api(gc, token, "/requisitions/", "POST", json={
        "redirect": REDIRECT, "institution_id": SANDBOX, "reference": "r-1"})
    assert duplicate.status_code == 400 and "reference" in duplicate.json()

    page = requests.get(requisition["link"], timeout=5)
    assert page.status_code == 200 and 'value="approve"' in page.text and "Sandbox Finance" in \
        page.text
    assert api(gc, token, f"/requisitions/{requisition['id']}/").json()["status"] == "UA"
    callback = simulate_user(requisition["link"])
    assert callback == {"x": "1", "ref": "r-1"}
    linked = api(gc, token, f"/requisitions/{requisition['id']}/").json()
    assert linked["status"] == "LN" and len(linked["accounts"]) == 3
    accepted = api(gc, token, f"/agreements/enduser/{requisition['agreement']}/").json()
    assert accepted["accepted"] is not None
    reused = requests.get(requisition["link"], timeout=5)
    assert reused.status_code == 400 and "RequisitionLinkReused" in reused.text


def test_cancel_on_the_bank_page(gc, token):
    requisition = api(gc, token, "/requisitions/", "POST", json={
        "redirect": "http://127.0.0.1:8069/cb", "institution_id": SANDBOX,
        "reference": "r-2"}).json()
    callback = simulate_user(requisition["link"], "cancel")
    assert callback == {"ref": "r-2", "error": "UserCancelledSession",
                        "details": "User cancelled the session."}
    status = api(gc, token, f"/requisitions/{requisition['id']}/").json()["status"]
    assert status == "RJ"


def test_requisition_list_pages_and_delete(gc, token):
    ids = [api(gc, token, "/requisitions/", "POST", json={
        "redirect": REDIRECT, "institution_id": SANDBOX, "reference": f"p-{n}"}).json()["id"]
        for n in range(5)]
    first = api(gc, token, "/requisitions/?limit=2&offset=0").json()
    assert first["count"] == 5 and first["previous"] is None and len(first["results"]) == 2
    second = requests.get(first["next"], headers={"Authorization": f"Bearer {token}"},
                          timeout=5).json()
    assert parse_qs(urlsplit(first["next"]).query)["offset"] == ["2"]
    assert second["previous"] and [r["id"] for r in second["results"]] == ids[2:4]
    deleted = api(gc, token, f"/requisitions/{ids[0]}/", "DELETE")
    assert deleted.status_code == 200 and deleted.json()["summary"] == "Requisition deleted"
    assert api(gc, token, f"/requisitions/{ids[0]}/").status_code == 404
    assert api(gc, token, f"/requisitions/{ids[0]}/", "DELETE").status_code == 404


def test_deleted_requisition_takes_its_accounts(gc, token):
    requisition_id, accounts = link_accounts(gc, token)
    assert api(gc, token, f"/requisitions/{requisition_id}/", "DELETE").status_code == 200
    assert api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/balances/").status_code == 404


# ------------------------------------------------------------------------------ accounts
def test_account_endpoints(gc, token):
    _requisition, accounts = link_accounts(gc, token)
    assert set(accounts) == {spec["iban"] for spec in data.ACCOUNTS[SANDBOX]}
    assert all(data.is_valid_iban(iban) for iban in accounts)
    account = accounts[MAIN_IBAN]
    metadata = api(gc, token, f"/accounts/{account}").json()
    assert metadata["status"] == "READY" and metadata["institution_id"] == SANDBOX
    assert metadata["owner_name"] == "Simulated Demo Company"
    details = api(gc, token, f"/accounts/{account}/details/")
    assert details.status_code == 200
    assert details.json()["account"]["currency"] == "EUR"
    assert details.json()["account"]["cashAccountType"] == "CACC"
    gbp = api(gc, token, f"/accounts/{accounts[data.ACCOUNTS[SANDBOX][2]['iban']]}/details/")
    assert gbp.json()["account"]["currency"] == "GBP" and gbp.json()["account"]["bban"]
    balances = api(gc, token, f"/accounts/{account}/balances/").json()["balances"]
    kinds = {b["balanceType"]: b for b in balances}
    assert set(kinds) == {"closingBooked", "interimAvailable"}
    assert kinds["closingBooked"]["balanceAmount"]["amount"] == \
        str(gc.expected_balances(MAIN_IBAN)["closingBooked"])
    assert kinds["closingBooked"]["referenceDate"] == TODAY.isoformat()


def test_transactions_shape_and_content(gc, token):
    _requisition, accounts = link_accounts(gc, token)
    response = api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/transactions/",
                   params={"date_from": "2024-02-25", "date_to": "2024-03-01"})
    assert response.status_code == 200
    body = response.json()
    booked, pending = body["transactions"]["booked"], body["transactions"]["pending"]
    assert booked == gc.expected_booked(accounts[MAIN_IBAN], "2024-02-25", "2024-03-01")
    assert booked == gc.expected_booked(MAIN_IBAN, date(2024, 2, 25), TODAY)
    assert len(booked) == 6 * 3 and len(pending) == 3
    assert [b["bookingDate"] for b in booked] == sorted((b["bookingDate"] for b in booked),
                                                        reverse=True)
    for item in booked:
        amount = item["transactionAmount"]["amount"]
        assert isinstance(amount, str) and Decimal(amount) != 0
        assert item["entryReference"] and item["internalTransactionId"]
        assert item["transactionId"].endswith("-1")
        if Decimal(amount) > 0:
            assert "creditorName" not in item
        else:
            assert "debtorName" not in item
    assert all("bookingDate" not in item for item in pending)
    assert all(item["valueDate"] == TODAY.isoformat() for item in pending)
    assert "last_updated" in body


def test_pending_books_the_next_day_and_history_grows(gc, token):
    gc.configure(txns_per_day={"EUR": 12})
    _requisition, accounts = link_accounts(gc, token)
    path = f"/accounts/{accounts[MAIN_IBAN]}/transactions/"
    before = api(gc, token, path).json()["transactions"]
    card_ids = {p["transactionId"] for p in before["pending"] if "transactionId" in p}
    assert card_ids and any("transactionId" not in p for p in before["pending"])
    gc.advance_days(1)
    token = new_tokens(gc).json()["access"]  # the 24 h access token died with the day
    after = api(gc, token, path).json()["transactions"]
    newest = [b for b in after["booked"] if b["bookingDate"] == "2024-03-02"]
    assert len(newest) == len(before["pending"]) == 12
    assert card_ids <= {b["transactionId"] for b in newest}
    assert sorted(Decimal(b["transactionAmount"]["amount"]) for b in newest) == \
        sorted(Decimal(p["transactionAmount"]["amount"]) for p in before["pending"])
    assert len(after["booked"]) == len(before["booked"])  # the 90-day window slid by a day
    assert after["booked"][-1]["bookingDate"] == (TODAY - timedelta(days=89)).isoformat()


def test_transactions_date_checks(gc, token):
    _requisition, accounts = link_accounts(gc, token)
    path = f"/accounts/{accounts[MAIN_IBAN]}/transactions/"
    reversed_range = api(gc, token, path, params={"date_from": "2024-03-01",
                                                   "date_to": "2024-02-01"})
    assert reversed_range.status_code == 400
    assert reversed_range.json()["date_from"]["summary"] == "Incorrect date range"
    bad = api(gc, token, path, params={"date_from": "01/02/2024"})
    assert bad.status_code == 400 and is_error_body(bad.json()["date_from"], 400)
    clipped = api(gc, token, path, params={"date_from": "2023-01-01"}).json()
    oldest = min(b["bookingDate"] for b in clipped["transactions"]["booked"])
    assert oldest == (TODAY - timedelta(days=90)).isoformat()
    # the refused calls did not consume the quota: 1 success so far
    assert gc.quota_remaining(accounts[MAIN_IBAN], "transactions") == 3


# ------------------------------------------------------------------------------ limits
def test_account_success_limit_per_scope_rolling(gc, token):
    _requisition, accounts = link_accounts(gc, token)
    path = f"/accounts/{accounts[MAIN_IBAN]}/transactions/"
    remaining = []
    for _ in range(4):
        response = api(gc, token, path)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Account-Success-Limit"] == "4"
        remaining.append(response.headers["X-RateLimit-Account-Success-Remaining"])
    assert remaining == ["3", "2", "1", "0"]
    refused = api(gc, token, path)
    assert refused.status_code == 429 and is_error_body(refused.json(), 429)
    reset = int(refused.headers["X-RateLimit-Account-Success-Reset"])
    assert 86000 < reset <= 86400
    assert refused.json()["detail"] == ("The rate limit for this resource is 4/day. Please try "
                                        f"again in {reset} seconds")
    assert refused.headers["X-RateLimit-Account-Success-Remaining"] == "0"
    assert "X-RateLimit-Limit" in refused.headers  # the general API limit's headers too
    assert api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/balances/").status_code == 200
    other = accounts[data.ACCOUNTS[SANDBOX][1]["iban"]]
    assert api(gc, token, f"/accounts/{other}/transactions/").status_code == 200
    gc.advance_days(1)
    token = new_tokens(gc).json()["access"]
    assert api(gc, token, path).status_code == 200


def test_failed_calls_do_not_consume_the_quota(gc, token):
    _requisition, accounts = link_accounts(gc, token)
    account = accounts[MAIN_IBAN]
    gc.add_fault("http_500", path="/balances", times=3)
    for _ in range(3):
        failed = api(gc, token, f"/accounts/{account}/balances/")
        assert failed.status_code == 500 and is_error_body(failed.json(), 500)
        assert failed.json()["detail"] == "Request to Institution returned an error"
    assert gc.quota_remaining(account, "balances") == 4


def test_general_api_limit(gc):
    gc.configure(api_requests_per_minute=3)
    token = new_tokens(gc).json()["access"]  # every API call counts, token calls too
    statuses = [api(gc, token, "/institutions/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = api(gc, token, "/institutions/")
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert "Please try again in" in refused.json()["detail"]


def test_suspension_after_ten_consecutive_failures(gc, token):
    _requisition, accounts = link_accounts(gc, token)
    account = accounts[MAIN_IBAN]
    gc.add_fault("http_500", path="/details", times=9)
    for _ in range(9):
        api(gc, token, f"/accounts/{account}/details/")
    assert api(gc, token, f"/accounts/{account}/details/").status_code == 200  # resets
    gc.add_fault("http_500", path="/details", times=10)
    for _ in range(10):
        api(gc, token, f"/accounts/{account}/details/")
    suspended = api(gc, token, f"/accounts/{account}/details/")
    assert suspended.status_code == 409 and suspended.json()["summary"] == "Account suspended"
    assert api(gc, token, f"/accounts/{account}/").json()["status"] == "SUSPENDED"


def test_agreement_expiry(gc, token):
    requisition_id, accounts = link_accounts(gc, token, access_valid_for_days=30)
    gc.advance_days(30)
    token = new_tokens(gc).json()["access"]
    expired = api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/transactions/")
    assert expired.status_code == 401
    assert expired.json()["summary"].startswith("End User Agreement (EUA)")
    assert expired.json()["detail"].startswith("EUA was valid for 30 days and it expired at ")
    assert api(gc, token, f"/requisitions/{requisition_id}/").json()["status"] == "EX"
    assert api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/").json()["status"] == "EXPIRED"


def test_scope_not_granted_is_403(gc, token):
    _requisition, accounts = link_accounts(gc, token, access_scope=["balances", "details"])
    refused = api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/transactions/")
    assert refused.status_code == 403 and is_error_body(refused.json(), 403)


def test_revoked_at_the_bank(gc, token):
    requisition_id, accounts = link_accounts(gc, token)
    gc.revoke_at_bank(requisition_id)
    refused = api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/balances/")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "Access has expired or it has been revoked"


# ------------------------------------------------------------------------------ faults, admin
@pytest.mark.parametrize("kind, status, summary", [
    ("http_503", 503, "Service unavailable"),
    ("consent_expired", 401, "End User Agreement"),
    ("access_expired", 401, "Access expired"),
    ("account_inactive", 401, "Account inactive"),
    ("account_suspended", 409, "Account suspended"),
    ("account_processing", 409, "Account is being processed"),
    ("access_denied", 403, "Access denied"),
    ("user_must_be_present", 429, "Rate limit exceeded"),
    ("invalid_token", 401, "Invalid token"),
])
def test_fault_answers(gc, token, kind, status, summary):
    requisition_id, accounts = link_accounts(gc, token)
    gc.add_fault(kind, consent_id=requisition_id)
    response = api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/balances/")
    assert response.status_code == status and is_error_body(response.json(), status)
    assert response.json()["summary"].startswith(summary)
    assert api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/balances/").status_code == 200


def test_fault_filters_and_modifiers(gc, token):
    requisition_id, accounts = link_accounts(gc, token)
    path = f"/accounts/{accounts[MAIN_IBAN]}/transactions/"
    gc.add_fault("account_suspended", consent_id="another-requisition")
    gc.add_fault("http_503", path="/balances", skip=1)
    assert api(gc, token, path).status_code == 200
    assert api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/balances/").status_code == 200
    assert api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/balances/").status_code == 503
    gc.clear_faults()
    gc.add_fault("changing_ids", times=2)
    first = api(gc, token, path).json()["transactions"]["booked"]
    second = api(gc, token, path).json()["transactions"]["booked"]
    assert all("entryReference" not in item for item in first)
    assert first[0]["transactionId"] != second[0]["transactionId"]
    assert first[0]["internalTransactionId"] == second[0]["internalTransactionId"]
    gc.add_fault("repeated_ids")
    repeated = api(gc, token, path).json()["transactions"]["booked"]
    same_day = [item for item in repeated if item["bookingDate"] == "2024-03-01"]
    assert {item["entryReference"] for item in same_day} == {"20240301"}
    assert all("internalTransactionId" not in item for item in repeated)
    with pytest.raises(ValueError):
        gc.add_fault("nope")
    assert set(FAULT_KINDS) >= {"delay", "timeout", "http_500", "rate_limit", "malformed_json",
                                "consent_expired", "user_must_be_present", "changing_ids",
                                "repeated_ids", "requisition_expired", "account_suspended"}


def test_rate_limit_and_malformed_faults(gc, token):
    _requisition, accounts = link_accounts(gc, token)
    gc.add_fault("rate_limit", seconds=120)
    limited = api(gc, token, "/institutions/")
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Account-Success-Reset"] == "120"
    assert limited.json()["detail"].endswith("Please try again in 120 seconds")
    gc.add_fault("malformed_json", path="/transactions")
    broken = api(gc, token, f"/accounts/{accounts[MAIN_IBAN]}/transactions/")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert gc.quota_remaining(accounts[MAIN_IBAN], "transactions") == 4


def test_timeout_fault_ends_when_the_server_stops():
    server = GoCardlessServer(port=0).start()
    server.add_fault("timeout", seconds=30)
    outcome = {}

    def call():
        started = time.monotonic()
        try:
            requests.get(f"{server.api_url}/institutions/", timeout=10)
        except requests.RequestException as exc:
            outcome["error"] = type(exc).__name__
        outcome["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)
    server.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and outcome["elapsed"] < 5 and "error" in outcome


def test_delay_fault(gc, token):
    gc.add_fault("delay", seconds=0.3, path="/institutions")
    started = time.monotonic()
    assert api(gc, token, "/institutions/").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_admin_api_and_reset(gc, token):
    link_accounts(gc, token)
    stats = gc.stats()
    assert stats["requests"]["POST /api/v2/requisitions/"] == 1 and stats["total"] >= 6
    assert gc.config()["txns_per_day"] == {"EUR": 3, "GBP": 1}
    with pytest.raises(ValueError):
        gc.configure(txns_per_day={"JPY": 1})
    assert gc.advance_days(2) == TODAY + timedelta(days=2) and gc.today == TODAY + \
        timedelta(days=2)
    clock = requests.post(f"{gc.url}/_sim/clock", json={"today": "2024-05-01"}, timeout=5)
    assert clock.json()["today"] == "2024-05-01"
    fault = requests.post(f"{gc.url}/_sim/faults", json={"kind": "http_503", "times": 2},
                          timeout=5)
    assert fault.status_code == 201 and gc.faults()[0]["remaining"] == 2
    gc.reset()
    assert gc.requisitions() == [] and gc.faults() == [] and gc.stats()["total"] == 0
    assert gc.today == TODAY
    assert api(gc, token, "/institutions/").status_code == 401  # tokens are gone too


def test_unknown_paths_and_methods(gc, token):
    missing = api(gc, token, "/nope/")
    assert missing.status_code == 404 and is_error_body(missing.json(), 404)
    wrong = api(gc, token, "/institutions/", "DELETE")
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]


def test_generated_data_is_deterministic_and_valid():
    first = data.transactions_booking_on("sfin-main", date(2024, 2, 10), 5)
    data.transactions_booking_on.cache_clear()
    again = data.transactions_booking_on("sfin-main", date(2024, 2, 10), 5)
    assert [t.as_booked() for t in first] == [t.as_booked() for t in again]
    for name, country in data.CUSTOMERS + data.SUPPLIERS:
        assert data.is_valid_iban(data.counterparty_iban(name, country))
    assert data.belgian_structured_reference("0909337554") == "+++090/9337/55493+++"
    assert data.creditor_reference("539007547034") == "RF18539007547034"


def test_cli_starts_and_stops():
    process = subprocess.Popen([sys.executable, "-m", "simulators.gocardless", "--port", "0",
                                "--today", "2024-03-01"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line and "2024-03-01" in line
        url = line.split("listening on ")[1].split(" ")[0]
        assert requests.post(f"{url}/token/new/", json={
            "secret_id": DEFAULT_SECRET_ID, "secret_key": DEFAULT_SECRET_KEY},
            timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert process.returncode == 0
