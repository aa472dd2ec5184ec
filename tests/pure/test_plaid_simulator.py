"""The Plaid simulator on its own: Plaid's paths, bodies, errors, Link pages and knobs."""
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from simulators.plaid import ERRORS, FAULT_KINDS, PlaidServer, simulate_user
from simulators.plaid import data

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO.parent / "shared" / "reference" / "specs" / "plaid-openapi-2020-09-14.yml"
COMPLETION = "http://127.0.0.1:8069/online_sync/callback?state=abc"


@pytest.fixture
def plaid():
    server = PlaidServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


class Client:
    """Plain HTTP to the simulator, credentials in the headers (or not)."""

    def __init__(self, server):
        self.server = server
        self.session = requests.Session()
        self.headers = {"PLAID-CLIENT-ID": server.client_id, "PLAID-SECRET": server._secret}

    def post(self, path, body=None, headers=None, expect=200, **kwargs):
        response = self.session.post(self.server.url + path, json=body or {},
                                     headers=headers if headers is not None else self.headers,
                                     timeout=kwargs.pop("timeout", 5), **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def link(self, country="BE", decision="approve", **extra):
        body = {"client_name": "Odoo", "language": "en", "country_codes": [country],
                "user": {"client_user_id": "u-1"}, "products": ["transactions"],
                "hosted_link": {"completion_redirect_uri": COMPLETION}, **extra}
        created = self.post("/link/token/create", body)
        callback = simulate_user(created["hosted_link_url"], decision)
        assert callback == {"state": "abc"}
        return created, self.post("/link/token/get", {"link_token": created["link_token"]})

    def item(self, country="BE"):
        """(access_token, item_id) of a new Item linked through Hosted Link."""
        _created, got = self.link(country)
        public = got["link_sessions"][-1]["results"]["item_add_results"][0]["public_token"]
        exchanged = self.post("/item/public_token/exchange", {"public_token": public})
        return exchanged["access_token"], exchanged["item_id"]

    def sync(self, token, account_id=None, cursor=None, count=500, expect=200):
        body = {"access_token": token, "count": count}
        if account_id:
            body["options"] = {"account_id": account_id}
        if cursor is not None:
            body["cursor"] = cursor
        return self.post("/transactions/sync", body, expect=expect)


@pytest.fixture
def client(plaid):
    return Client(plaid)


def error_of(response_json):
    assert set(response_json) >= {"error_type", "error_code", "error_message",
                                  "display_message", "request_id", "error_code_reason"}
    return response_json["error_code"]


# ------------------------------------------------------------------------------ data
def test_data_is_deterministic_with_valid_ibans():
    ibans = [spec["iban"] for template in data.ACCOUNT_TEMPLATES.values() for spec in template
             if spec["iban"]]
    assert len(ibans) == 4 and all(data.is_valid_iban(iban) for iban in ibans)
    assert not data.is_valid_iban("BE41063012345611")
    day = date(2025, 3, 1)
    first = data.bank_transaction("eu-checking", "EUR", "eu", day, 0)
    data.bank_transaction.cache_clear()
    assert data.bank_transaction("eu-checking", "EUR", "eu", day, 0) == first
    assert first.signed == -1850 and first.reference_number.startswith("+++")  # rent, 1st day
    assert data.counterparty_iban("Immo Louise SA", "BE") == first.counterparty_iban
    assert data.is_valid_iban(first.counterparty_iban)
    api = data.to_api(first, "item-1", "acc-1", pending=False)
    assert api["amount"] == 1850.0 and api["date"] == "2025-03-01"  # Plaid: + = money out
    assert api["authorized_date"] == "2025-02-28" and len(api["transaction_id"]) == 37
    pending = data.to_api(first, "item-1", "acc-1", pending=True)
    assert pending["transaction_id"] == api["pending_transaction_id"] != api["transaction_id"]
    assert pending["date"] == "2025-02-28" and pending["pending"] is True
    assert data.to_api(first, "item-2", "acc-1", pending=False)["transaction_id"] != \
        api["transaction_id"]  # ids belong to one Item


# ------------------------------------------------------------------------------ protocol
def test_credentials_in_headers_or_body(plaid, client):
    body = {"count": 1, "offset": 0, "country_codes": ["GB"]}
    assert client.post("/institutions/get", body)["total"] == 1
    assert client.post("/institutions/get", dict(body, client_id=plaid.client_id,
                                                 secret=plaid._secret), headers={})["total"] == 1
    missing = client.post("/institutions/get", body, headers={}, expect=400)
    assert error_of(missing) == "MISSING_FIELDS" and "client_id" in missing["error_message"]
    wrong = client.post("/institutions/get", body, expect=400,
                        headers={"PLAID-CLIENT-ID": plaid.client_id, "PLAID-SECRET": "nope"})
    assert error_of(wrong) == "INVALID_API_KEYS" and wrong["error_type"] == "INVALID_INPUT"


def test_request_validation(plaid, client):
    unknown = client.post("/institutions/get", {"count": 1, "offset": 0, "country_codes": ["US"],
                                                "colour": "red"}, expect=400)
    assert error_of(unknown) == "UNKNOWN_FIELDS" and "colour" in unknown["error_message"]
    missing = client.post("/institutions/get", {"count": 1}, expect=400)
    assert error_of(missing) == "MISSING_FIELDS" and "offset" in missing["error_message"]
    bad = client.post("/institutions/get", {"count": 501, "offset": 0, "country_codes": ["US"]},
                      expect=400)
    assert error_of(bad) == "INVALID_FIELD"
    assert error_of(client.post("/institutions/get", {"count": 1, "offset": 0,
                                                      "country_codes": ["JP"]},
                                expect=400)) == "INVALID_FIELD"
    response = requests.post(plaid.url + "/accounts/get", data=b"{not json", headers=dict(
        client.headers, **{"Content-Type": "application/json"}), timeout=5)
    assert response.status_code == 400 and error_of(response.json()) == "INVALID_BODY"
    response = requests.get(plaid.url + "/accounts/get", timeout=5)
    assert response.status_code == 405
    response = requests.post(plaid.url + "/no/such/endpoint", json={}, timeout=5)
    assert response.status_code == 404 and error_of(response.json()) == "NOT_FOUND"
    version = client.post("/institutions/get", {"count": 1, "offset": 0, "country_codes": ["GB"]},
                          headers=dict(client.headers, **{"Plaid-Version": "2018-05-22"}),
                          expect=400)
    assert error_of(version) == "INVALID_HEADERS"
    token = client.post("/accounts/get", {"access_token": "secret-sandbox-123"}, expect=400)
    assert error_of(token) == "INVALID_ACCESS_TOKEN" and "format" in token["error_message"]


def test_institutions(client):
    page = client.post("/institutions/get", {"count": 500, "offset": 600, "country_codes": ["US"],
                                             "options": {"include_optional_metadata": True}})
    assert page["total"] == 621 and len(page["institutions"]) == 21
    first = client.post("/institutions/get_by_id", {"institution_id": "ins_109508",
                                                    "country_codes": ["US"],
                                                    "options": {"include_optional_metadata":
                                                                True}})["institution"]
    assert first["name"] == "First Platypus Bank" and first["logo"] and first["oauth"] is False
    assert error_of(client.post("/institutions/get_by_id", {"institution_id": "ins_109508",
                                                            "country_codes": ["FR"]},
                                expect=400)) == "INSTITUTION_NOT_FOUND"
    found = client.post("/institutions/search", {"query": "platypus uk", "country_codes": ["GB"]})
    assert [i["institution_id"] for i in found["institutions"]] == ["ins_sim_gb_1"]


# ------------------------------------------------------------------------------ Link
def test_hosted_link_page_and_completion_redirect(plaid, client):
    created = client.post("/link/token/create", {
        "client_name": "Odoo", "language": "fr", "country_codes": ["BE"],
        "user": {"client_user_id": "u"}, "products": ["transactions"],
        "hosted_link": {"completion_redirect_uri": COMPLETION}})
    assert created["link_token"].startswith("link-sandbox-")
    url = urlsplit(created["hosted_link_url"])
    assert url.path.startswith("/hl/")
    page = requests.get(created["hosted_link_url"], timeout=5)
    assert page.status_code == 200 and 'lang="fr"' in page.text
    assert 'value="approve"' in page.text and 'value="cancel"' in page.text
    assert "Banque Platypus Europe" in page.text and "Odoo" in page.text
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    connection.request("POST", url.path + "/decision",
                       "institution_id=ins_sim_eu_1&decision=approve",
                       {"Content-Type": "application/x-www-form-urlencoded"})
    answer = connection.getresponse()
    assert answer.status == 303 and answer.getheader("Location") == COMPLETION
    connection.close()
    got = client.post("/link/token/get", {"link_token": created["link_token"]})
    session = got["link_sessions"][0]
    result = session["results"]["item_add_results"][0]
    assert result["public_token"].startswith("public-sandbox-")
    assert result["institution"]["institution_id"] == "ins_sim_eu_1"
    assert len(result["accounts"]) == 3 and session["finished_at"]
    assert got["metadata"]["language"] == "fr" and got["metadata"]["country_codes"] == ["BE"]

    plaid.advance_days(1)  # the Hosted Link URL lived 30 minutes
    assert requests.get(created["hosted_link_url"], timeout=5).status_code == 410
    assert requests.get(plaid.url + "/hl/unknown-code", timeout=5).status_code == 404
    assert error_of(client.post("/link/token/get", {"link_token": "link-sandbox-nope"},
                                expect=400)) == "INVALID_LINK_TOKEN"


def test_cancelled_link_has_an_exit(client, plaid):
    _created, got = client.link(decision="cancel")
    session = got["link_sessions"][0]
    assert "results" not in session and session["exit"]["error"] is None
    assert session["exit"]["metadata"]["status"] == "requires_oauth"
    assert plaid.items() == []


def test_public_token_is_single_use_and_expires(client, plaid):
    _created, got = client.link()
    public = got["link_sessions"][0]["results"]["item_add_results"][0]["public_token"]
    exchanged = client.post("/item/public_token/exchange", {"public_token": public})
    assert exchanged["access_token"].startswith("access-sandbox-")
    again = client.post("/item/public_token/exchange", {"public_token": public}, expect=400)
    assert error_of(again) == "INVALID_PUBLIC_TOKEN"
    late = client.post("/sandbox/public_token/create", {"institution_id": "ins_109508",
                                                        "initial_products": ["transactions"]})
    plaid.advance_days(1)
    assert error_of(client.post("/item/public_token/exchange",
                                {"public_token": late["public_token"]},
                                expect=400)) == "INVALID_PUBLIC_TOKEN"


def test_link_token_create_validation(client):
    base = {"client_name": "Odoo", "language": "en", "country_codes": ["BE"],
            "user": {"client_user_id": "u"}}
    assert error_of(client.post("/link/token/create", base, expect=400)) == "INVALID_FIELD"
    assert error_of(client.post("/link/token/create", dict(base, products=["transactions"],
                                                           language="tlh"),
                                expect=400)) == "INVALID_FIELD"
    no_user = dict(base, products=["transactions"])
    del no_user["user"]
    assert error_of(client.post("/link/token/create", no_user, expect=400)) == "MISSING_FIELDS"
    plain = client.post("/link/token/create", dict(base, products=["transactions"]))
    assert "hosted_link_url" not in plain  # Hosted Link only when asked


def test_items_accounts_auth_and_sandbox_endpoints(client, plaid):
    token, item_id = client.item()
    item = client.post("/item/get", {"access_token": token})
    assert item["item"]["item_id"] == item_id and item["item"]["error"] is None
    assert item["item"]["consent_expiration_time"].endswith("Z")
    accounts = client.post("/accounts/get", {"access_token": token})["accounts"]
    assert [a["balances"]["iso_currency_code"] for a in accounts] == ["EUR", "EUR", "GBP"]
    expected = plaid.expected_balances(accounts[0]["account_id"])
    assert str(accounts[0]["balances"]["current"]) == str(expected["current"])
    auth = client.post("/auth/get", {"access_token": token})
    assert [n["iban"] for n in auth["numbers"]["international"]] == [
        plaid.accounts()[i]["iban"] for i in range(3)]
    assert auth["numbers"]["bacs"] == [] and auth["numbers"]["ach"] == []

    assert client.post("/sandbox/item/reset_login", {"access_token": token})["reset_login"]
    failed = client.post("/accounts/get", {"access_token": token}, expect=400)
    assert error_of(failed) == "ITEM_LOGIN_REQUIRED" and failed["error_type"] == "ITEM_ERROR"
    assert client.post("/item/get", {"access_token": token})["item"]["error"][
        "error_code"] == "ITEM_LOGIN_REQUIRED"
    assert set(client.post("/item/remove", {"access_token": token})) == {"request_id"}
    assert error_of(client.post("/item/get", {"access_token": token},
                                expect=400)) == "INVALID_ACCESS_TOKEN"

    us = client.post("/sandbox/public_token/create", {"institution_id": "ins_109508",
                                                      "initial_products": ["transactions"]})
    us_token = client.post("/item/public_token/exchange",
                           {"public_token": us["public_token"]})["access_token"]
    us_accounts = client.post("/accounts/get", {"access_token": us_token})["accounts"]
    assert [a["type"] for a in us_accounts] == ["depository", "credit"]
    assert all(a["persistent_account_id"] for a in us_accounts)
    assert client.post("/auth/get", {"access_token": us_token})["numbers"]["ach"][0][
        "routing"] == "011401533"
    assert client.post("/item/get", {"access_token": us_token})["item"][
        "consent_expiration_time"] is None


# ------------------------------------------------------------------------------ transactions
def test_transactions_grow_with_the_clock_and_pending_posts(client, plaid):
    token, _item_id = client.item()
    account_id = client.post("/accounts/get", {"access_token": token})["accounts"][0]["account_id"]
    first = client.sync(token, account_id)
    assert first["has_more"] is False and first["transactions_update_status"] == \
        "HISTORICAL_UPDATE_COMPLETE"
    assert [a["account_id"] for a in first["accounts"]] == [account_id]
    pending = {t["transaction_id"] for t in first["added"] if t["pending"]}
    booked = [t for t in first["added"] if not t["pending"]]
    expected = plaid.expected_booked(account_id, plaid.today - timedelta(days=400), plaid.today)
    assert len(booked) == len(expected) == 3 * 91
    assert {t["transaction_id"] for t in booked} == {t["transaction_id"] for t in expected}
    assert pending == {t["transaction_id"] for t in plaid.expected_pending(account_id)}

    plaid.advance_days(2)
    second = client.sync(token, account_id, cursor=first["next_cursor"])
    assert pending <= {r["transaction_id"] for r in second["removed"]}
    posted = [t for t in second["added"] if t["pending_transaction_id"] in pending]
    assert {t["pending_transaction_id"] for t in posted} == pending
    assert all(not t["pending"] for t in posted)
    newly_booked = [t for t in second["added"] if not t["pending"]]
    assert len(newly_booked) == 3 * 2  # two more days, 3 a day
    assert len(plaid.expected_booked(account_id, date(2000, 1, 1), plaid.today)) == 3 * 93
    assert client.sync(token, account_id, cursor=second["next_cursor"])["added"] == []


def test_sync_paging_mutation_and_cursor_checks(client, plaid):
    token, _item_id = client.item()
    accounts = client.post("/accounts/get", {"access_token": token})["accounts"]
    first = client.sync(token, count=100)  # no account filter: the whole Item
    assert first["has_more"] is True and len(first["added"]) == 100
    assert {t["account_id"] for t in first["added"]} <= {a["account_id"] for a in accounts}
    second = client.sync(token, cursor=first["next_cursor"], count=100)
    assert not {t["transaction_id"] for t in first["added"]} & {
        t["transaction_id"] for t in second["added"]}
    plaid.advance_days(1)  # data changes in the middle of the pagination
    failed = client.sync(token, cursor=second["next_cursor"], count=100, expect=400)
    assert error_of(failed) == "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
    assert failed["error_type"] == "TRANSACTIONS_ERROR"
    restarted = client.sync(token, count=100)
    assert restarted["has_more"] is True

    assert error_of(client.sync(token, count=0, expect=400)) == "INVALID_FIELD"
    assert error_of(client.sync(token, cursor="bm90IGEgY3Vyc29y", expect=400)) == "INVALID_FIELD"
    mine = client.sync(token, accounts[0]["account_id"])["next_cursor"]
    assert error_of(client.sync(token, accounts[1]["account_id"], cursor=mine,
                                expect=400)) == "INVALID_FIELD"
    assert error_of(client.sync(token, "no-such-account", expect=400)) == "INVALID_ACCOUNT_ID"
    now = client.sync(token, cursor="now")
    assert now["added"] == [] and client.sync(token, cursor=now["next_cursor"])["added"] == []


def test_transactions_get_offset_paging(client):
    token, _item_id = client.item()
    body = {"access_token": token, "start_date": "2000-01-01", "end_date": "2100-01-01",
            "options": {"count": 200, "offset": 0}}
    first = client.post("/transactions/get", body)
    total = first["total_transactions"]
    assert total > 200 and len(first["transactions"]) == 200
    dates = [t["date"] for t in first["transactions"]]
    assert dates == sorted(dates, reverse=True)
    rest = client.post("/transactions/get", dict(body, options={"count": 500, "offset": 200}))
    assert len(rest["transactions"]) == total - 200
    assert client.post("/transactions/refresh", {"access_token": token})["request_id"]


def test_remove_and_modify_knobs(client, plaid):
    token, _item_id = client.item()
    account_id = client.post("/accounts/get", {"access_token": token})["accounts"][1]["account_id"]
    first = client.sync(token, account_id)
    assert first["has_more"] is False
    victim, changed = first["added"][0]["transaction_id"], first["added"][1]["transaction_id"]
    plaid.remove_transaction(victim)
    plaid.modify_transaction(changed, name="NEW NAME")
    second = client.sync(token, account_id, cursor=first["next_cursor"])
    assert [r["transaction_id"] for r in second["removed"]] == [victim]
    assert [(t["transaction_id"], t["name"]) for t in second["modified"]] == [
        (changed, "NEW NAME")]


# ------------------------------------------------------------------------------ limits, faults
def test_rate_limit_is_enforced(client, plaid):
    token, _item_id = client.item()
    for _ in range(5):
        client.post("/accounts/balance/get", {"access_token": token})
    limited = requests.post(plaid.url + "/accounts/balance/get", json={"access_token": token},
                            headers=client.headers, timeout=5)
    assert limited.status_code == 429 and error_of(limited.json()) == "BALANCE_LIMIT"
    assert limited.json()["error_type"] == "RATE_LIMIT_EXCEEDED"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert client.post("/accounts/get", {"access_token": token})  # another endpoint's budget
    plaid.configure(rate_limits={"/accounts/balance/get": None})
    assert client.post("/accounts/balance/get", {"access_token": token})


def test_faults(client, plaid):
    token, item_id = client.item()
    body = {"access_token": token}
    with pytest.raises(ValueError):
        plaid.add_fault("earthquake")
    assert set(ERRORS) < set(FAULT_KINDS)

    plaid.add_fault("http_500", skip=1, path="/accounts/get")
    client.post("/accounts/get", body)  # skipped
    assert error_of(client.post("/accounts/get", body, expect=500)) == "INTERNAL_SERVER_ERROR"
    client.post("/accounts/get", body)  # used up

    plaid.add_fault("http_503", seconds=3)
    response = requests.post(plaid.url + "/item/get", json=body, headers=client.headers,
                             timeout=5)
    assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    plaid.add_fault("rate_limit", seconds=7, path="/transactions/sync")
    response = requests.post(plaid.url + "/transactions/sync", json=body,
                             headers=client.headers, timeout=5)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert error_of(response.json()) == "TRANSACTIONS_SYNC_LIMIT"
    plaid.add_fault("malformed_json")
    with pytest.raises(ValueError):
        requests.post(plaid.url + "/accounts/get", json=body, headers=client.headers,
                      timeout=5).json()
    plaid.add_fault("consent_expired")
    expired = client.post("/accounts/get", body, expect=400)
    assert (error_of(expired), expired["error_code_reason"]) == (
        "ITEM_LOGIN_REQUIRED", "OAUTH_CONSENT_EXPIRED")
    plaid.add_fault("user_must_be_present")
    assert error_of(client.post("/accounts/get", body, expect=400)) == "USER_SETUP_REQUIRED"
    plaid.add_fault("INSTITUTION_DOWN", consent_id="another-item")
    client.post("/accounts/get", body)  # not this Item
    plaid.add_fault("INSTITUTION_DOWN", consent_id=item_id)
    assert error_of(client.post("/accounts/get", body, expect=400)) == "INSTITUTION_DOWN"
    assert [f["remaining"] for f in plaid.faults() if f["consent_id"] == "another-item"] == [1]
    assert plaid.clear_faults() == 8 and plaid.faults() == []

    plaid.add_fault("delay", seconds=0.3)
    started = time.monotonic()
    client.post("/item/get", body)
    assert time.monotonic() - started >= 0.3
    plaid.add_fault("timeout", seconds=2)
    with pytest.raises(requests.Timeout):
        client.post("/item/get", body, timeout=0.3)
    assert plaid.stats()["faults_triggered"] == 9


def test_clock_config_reset_and_stats(plaid, client):
    start = plaid.today
    assert plaid.advance_days(3) == start + timedelta(days=3)
    assert plaid.set_today("2025-06-30") == date(2025, 6, 30)
    config = plaid.configure(history_days=30, txns_per_day={"GBP": 4}, consent_days=90)
    assert config["txns_per_day"] == {"EUR": 3, "GBP": 4, "USD": 2}
    assert config["today"] == "2025-06-30" and config["consent_days"] == 90
    for bad in ({"history_days": 0}, {"txns_per_day": {"JPY": 1}},
                {"rate_limits": {"/nope": 1}}, {"txns_per_day": {"EUR": -1}}):
        with pytest.raises(ValueError):
            plaid.configure(**bad)
    client.item()
    assert plaid.items()[0]["consent_expiration_time"].startswith("2025-09-28")
    stats = plaid.stats()
    assert stats["requests"]["POST /link/token/create"] == 1 and stats["total"] == 5
    plaid.reset()
    assert plaid.items() == [] and plaid.stats()["total"] == 0 and plaid.today == start
    assert plaid.config()["history_days"] == 90


def test_http_admin_endpoints(plaid):
    url = plaid.url
    assert requests.post(url + "/_sim/faults", json={"kind": "http_500", "times": 2},
                         timeout=5).status_code == 201
    assert requests.get(url + "/_sim/faults", timeout=5).json()["faults"][0]["kind"] == "http_500"
    assert requests.post(url + "/_sim/faults", json={"kind": "nope"}, timeout=5).status_code == 400
    assert requests.delete(url + "/_sim/faults", timeout=5).status_code == 204
    assert requests.post(url + "/_sim/clock", json={"today": "2025-01-15"},
                         timeout=5).json() == {"today": "2025-01-15"}
    assert requests.post(url + "/_sim/config", json={"txns_per_day": {"EUR": 5}},
                         timeout=5).json()["config"]["txns_per_day"]["EUR"] == 5
    assert requests.get(url + "/_sim/stats", timeout=5).json()["total"] == 0
    assert requests.post(url + "/_sim/reset", timeout=5).status_code == 204
    assert plaid.config()["txns_per_day"]["EUR"] == 3


def test_command_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.plaid", "--port", "0", "--today", "2025-02-03"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "Plaid simulator listening on http://127.0.0.1:" in line and "2025-02-03" in line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert requests.get(url + "/", timeout=5).json()["today"] == "2025-02-03"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


# ------------------------------------------------------------------------------ fidelity
def test_official_client_deserializes_the_answers(plaid):
    """plaid-python (generated from Plaid's OpenAPI spec) reads our answers without error.

    It runs on a US Item: plaid-python 46 cannot deserialize a non-null
    ``counterparties[].account_numbers.international.iban`` (a composed nullable string), which
    EU transactions carry; those are checked against the spec's schemas below instead.
    """
    plaid_sdk = pytest.importorskip("plaid")
    from plaid.api import plaid_api
    from plaid.model.accounts_get_request import AccountsGetRequest
    from plaid.model.country_code import CountryCode
    from plaid.model.institutions_get_request import InstitutionsGetRequest
    from plaid.model.item_get_request import ItemGetRequest
    from plaid.model.item_public_token_exchange_request import ItemPublicTokenExchangeRequest
    from plaid.model.link_token_create_hosted_link import LinkTokenCreateHostedLink
    from plaid.model.link_token_create_request import LinkTokenCreateRequest
    from plaid.model.link_token_create_request_user import LinkTokenCreateRequestUser
    from plaid.model.link_token_get_request import LinkTokenGetRequest
    from plaid.model.products import Products
    from plaid.model.transactions_sync_request import TransactionsSyncRequest
    from plaid.model.transactions_sync_request_options import TransactionsSyncRequestOptions

    plaid.configure(txns_per_day={"USD": 1})  # the SDK's deserialization is slow
    configuration = plaid_sdk.Configuration(host=plaid.url, api_key={
        "clientId": plaid.client_id, "secret": plaid._secret, "plaidVersion": "2020-09-14"})
    api = plaid_api.PlaidApi(plaid_sdk.ApiClient(configuration))
    institutions = api.institutions_get(InstitutionsGetRequest(
        count=10, offset=0, country_codes=[CountryCode("US")]))
    assert institutions.total == 621
    created = api.link_token_create(LinkTokenCreateRequest(
        client_name="Odoo", language="en", country_codes=[CountryCode("US")],
        user=LinkTokenCreateRequestUser(client_user_id="u"), products=[Products("transactions")],
        hosted_link=LinkTokenCreateHostedLink(completion_redirect_uri=COMPLETION)))
    simulate_user(created.hosted_link_url)
    session = api.link_token_get(LinkTokenGetRequest(link_token=created.link_token))
    public = session.link_sessions[0].results.item_add_results[0].public_token
    token = api.item_public_token_exchange(
        ItemPublicTokenExchangeRequest(public_token=public)).access_token
    accounts = api.accounts_get(AccountsGetRequest(access_token=token)).accounts
    assert [str(a.type) for a in accounts] == ["depository", "credit"]
    assert api.item_get(ItemGetRequest(access_token=token)).item.institution_id == "ins_109508"
    cursor, added, pages = "", [], 0
    while True:
        page = api.transactions_sync(TransactionsSyncRequest(
            access_token=token, cursor=cursor, count=60,
            options=TransactionsSyncRequestOptions(account_id=accounts[0].account_id)))
        added.extend(page.added)
        cursor, pages = page.next_cursor, pages + 1
        if not page.has_more:
            break
    assert pages == 2 and len(added) == len({t.transaction_id for t in added}) > 60
    assert all(isinstance(t.amount, float) and isinstance(t.date, date) for t in added)
    with pytest.raises(plaid_sdk.ApiException) as caught:
        api.accounts_get(AccountsGetRequest(
            access_token="access-sandbox-00000000-0000-0000-0000-000000000000"))
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["error_code"] == "INVALID_ACCESS_TOKEN"


def load_spec(yaml):
    """The 3 MB YAML spec, parsed once per machine: a JSON copy is kept in the temp folder."""
    stat = SPEC.stat()
    cache = Path(tempfile.gettempdir()) / f"plaid-openapi-{stat.st_size}-{int(stat.st_mtime)}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    with SPEC.open() as handle:
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    partial = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        partial.write_text(json.dumps(spec))
        os.replace(partial, cache)
    except OSError:  # a read-only temp folder only costs the next run the parsing again
        pass
    return spec


@pytest.fixture(scope="module")
def spec_validator():
    if not SPEC.exists():
        pytest.skip(f"no Plaid OpenAPI spec at {SPEC}")
    yaml = pytest.importorskip("yaml")
    validator_module = pytest.importorskip("openapi_schema_validator")
    referencing = pytest.importorskip("referencing")
    from referencing.jsonschema import DRAFT4

    spec = load_spec(yaml)
    registry = referencing.Registry().with_resource(
        "urn:plaid", referencing.Resource.from_contents(spec, default_specification=DRAFT4))

    def errors(schema, payload):
        validator = validator_module.OAS30Validator(
            {"$ref": f"urn:plaid#/components/schemas/{schema}"}, registry=registry)
        return [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(payload)]

    return errors


def test_answers_match_the_openapi_schemas(client, plaid, spec_validator):
    plaid.configure(txns_per_day={"EUR": 1, "GBP": 1})
    token, _item_id = client.item("BE")
    created, cancelled = client.link(decision="cancel")
    institutions = client.post("/institutions/get", {"count": 3, "offset": 0,
                                                     "country_codes": ["BE", "US"]})
    plaid.advance_days(1)  # removed pending + posted with pending_transaction_id
    sync = client.sync(token)
    answers = {
        "LinkTokenCreateResponse": created,
        "LinkTokenGetResponse": cancelled,
        "AccountsGetResponse": client.post("/accounts/balance/get", {"access_token": token}),
        "AuthGetResponse": client.post("/auth/get", {"access_token": token}),
        "ItemGetResponse": client.post("/item/get", {"access_token": token}),
        "InstitutionsGetResponse": institutions,
        "TransactionsSyncResponse": sync,
        "TransactionsGetResponse": client.post("/transactions/get", {
            "access_token": token, "start_date": "2000-01-01", "end_date": "2100-01-01"}),
        "PlaidError": client.post("/accounts/get", {"access_token": "access-sandbox-x"},
                                  expect=400),
    }
    assert any(t["counterparties"] and t["counterparties"][0].get("account_numbers")
               for t in sync["added"])
    for schema, payload in answers.items():
        assert spec_validator(schema, payload) == [], schema
    broken = dict(sync, added=[{k: v for k, v in sync["added"][0].items() if k != "pending"}])
    assert spec_validator("TransactionsSyncResponse", broken)  # the check can fail
