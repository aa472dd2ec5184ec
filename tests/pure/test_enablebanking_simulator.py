"""The Enable Banking simulator answers as its README documents (raw HTTP, no adapter)."""
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from simulators.enablebanking import EnableBankingServer, simulate_user
from simulators.enablebanking import data
from simulators.enablebanking.server import balance_total

APP_ID = "b1d8a3f0-sim-test-app"
REDIRECT = "http://127.0.0.1:8069/online_sync/callback"
MAIN_IBAN = data.ACCOUNTS[("Demo Bank", "BE")][0]["iban"]
REPO = Path(__file__).resolve().parents[2]
ATTENDED = {"Psu-Ip-Address": "198.51.100.7", "Psu-User-Agent": "Mozilla/5.0"}


def _new_key():
    return rsa.generate_private_key(65537, 2048, default_backend())


@pytest.fixture(scope="module")
def keys():
    """(private key, other private key) generated once for the module."""
    return _new_key(), _new_key()


@pytest.fixture
def eb(keys):
    public = keys[0].public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    server = EnableBankingServer(public_key=public, application_id=APP_ID,
                                 redirect_urls=[REDIRECT]).start()
    try:
        yield server
    finally:
        server.stop()


def token(key, kid=APP_ID, **overrides):
    now = int(time.time())
    claims = {"iss": "enablebanking.com", "aud": "api.enablebanking.com", "iat": now,
              "exp": now + 3600}
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def call(eb, keys):
    """``call(method, path, **requests_kwargs)`` with a valid application JWT."""
    good = token(keys[0])

    def do(method, path, headers=None, **kwargs):
        kwargs.setdefault("timeout", 5)
        return requests.request(method, f"{eb.url}{path}", headers={
            "Authorization": f"Bearer {good}", **(headers or {})}, **kwargs)

    return do


def error_of(response):
    body = response.json()
    assert set(body) == {"code", "message", "error", "detail"}
    assert body["code"] == response.status_code
    return body["error"]


def auth_body(**overrides):
    in_30_days = datetime.now(timezone.utc) + timedelta(days=30)
    body = {"access": {"valid_until": in_30_days.isoformat()},
            "aspsp": {"name": "Demo Bank", "country": "BE"}, "state": "st-1",
            "redirect_url": REDIRECT, "psu_type": "business"}
    body.update(overrides)
    return body


def open_session(call, **overrides):
    response = call("POST", "/auth", json=auth_body(**overrides))
    assert response.status_code == 200, response.text
    callback = simulate_user(response.json()["url"])
    assert callback["state"] == overrides.get("state", "st-1")
    session = call("POST", "/sessions", json={"code": callback["code"]})
    assert session.status_code == 200, session.text
    return session.json()


def uid_of(session, iban=MAIN_IBAN):
    return next(a["uid"] for a in session["accounts"] if a["account_id"]["iban"] == iban)


def all_transactions(call, uid, headers=ATTENDED, **params):
    """Every page (attended by default: the unattended quota is tested on its own)."""
    items, key, pages = [], None, 0
    for _ in range(100):
        query = dict(params, **({"continuation_key": key} if key else {}))
        response = call("GET", f"/accounts/{uid}/transactions", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["transactions"])
        pages += 1
        key = body["continuation_key"]
        if not key:
            return items, pages
    raise AssertionError("continuation keys never ended")


# ------------------------------------------------------------------------------ JWT
def test_every_api_call_needs_a_valid_application_jwt(eb, keys):
    url = f"{eb.url}/aspsps"
    missing = requests.get(url, timeout=5)
    assert missing.status_code == 401 and error_of(missing) == "AUTHORIZATION_NOT_PROVIDED"
    good, other = keys
    now = int(time.time())
    refused = {
        "other key": token(other),
        "wrong kid": token(good, kid="someone-else"),
        "wrong audience": token(good, aud="api.example.com"),
        "wrong issuer": token(good, iss="example.com"),
        "expired": token(good, iat=now - 7200, exp=now - 3600),
        "longer than 24 h": token(good, exp=now + 86400 + 3600),
        "no exp": token(good, exp=None),
        "HS256": pyjwt.encode({"iss": "enablebanking.com", "aud": "api.enablebanking.com",
                               "iat": now, "exp": now + 60}, "s" * 32, algorithm="HS256",
                              headers={"kid": APP_ID}),
        "garbage": "not-a-jwt",
    }
    for label, bad in refused.items():
        response = requests.get(url, timeout=5, headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, label
        assert error_of(response) == "UNAUTHORIZED_ACCESS", label
        assert bad not in response.text
    ok = requests.get(url, timeout=5, headers={"Authorization": f"Bearer {token(good)}"})
    assert ok.status_code == 200
    # Browser pages and admin calls need no JWT.
    assert requests.get(f"{eb.url}/_sim/clock", timeout=5).status_code == 200


def test_application_and_aspsps(call, eb):
    app = call("GET", "/application").json()
    assert app["kid"] == APP_ID and app["redirect_urls"] == [REDIRECT]
    aspsps = call("GET", "/aspsps").json()["aspsps"]
    assert {(a["name"], a["country"]) for a in aspsps} == {("Demo Bank", "BE"),
                                                          ("Nordic Demo Bank", "FI")}
    finnish = call("GET", "/aspsps", params={"country": "fi"}).json()["aspsps"]
    assert [a["name"] for a in finnish] == ["Nordic Demo Bank"]
    assert finnish[0]["maximum_consent_validity"] == 90 * 86400
    assert finnish[0]["required_psu_headers"] == ["psu-ip-address", "psu-user-agent"]
    assert call("GET", "/aspsps", params={"country": "JP"}).json() == {"aspsps": []}
    logo = requests.get(aspsps[0]["logo"], timeout=5)
    assert logo.status_code == 200 and logo.headers["Content-Type"] == "image/svg+xml"


# ------------------------------------------------------------------------------ authorization
def test_auth_validates_the_request(call):
    too_long = (datetime.now(timezone.utc) + timedelta(days=181)).isoformat()
    cases = [
        (auth_body(access={"valid_until": too_long}), 422, "WRONG_REQUEST_PARAMETERS"),
        (auth_body(access={"valid_until": "2020-01-01T00:00:00Z"}), 422,
         "WRONG_REQUEST_PARAMETERS"),
        (auth_body(access={"valid_until": "tomorrow"}), 422, "WRONG_REQUEST_PARAMETERS"),
        (auth_body(aspsp={"name": "Demo Bank", "country": "FI"}), 400, "WRONG_ASPSP_PROVIDED"),
        (auth_body(redirect_url="http://127.0.0.1:9999/elsewhere"), 400,
         "REDIRECT_URI_NOT_ALLOWED"),
        (auth_body(state=""), 422, "WRONG_REQUEST_PARAMETERS"),
        (auth_body(psu_type="robot"), 422, "WRONG_REQUEST_PARAMETERS"),
    ]
    for body, status, code in cases:
        response = call("POST", "/auth", json=body)
        assert (response.status_code, error_of(response)) == (status, code), body
    # 90 days is the Nordic bank's maximum; 180 the Belgian one's.
    nordic = auth_body(aspsp={"name": "Nordic Demo Bank", "country": "FI"},
                       access={"valid_until": (datetime.now(timezone.utc)
                                               + timedelta(days=91)).isoformat()})
    assert call("POST", "/auth", json=nordic).status_code == 422
    ok = call("POST", "/auth", json=auth_body(access={"valid_until": (
        datetime.now(timezone.utc) + timedelta(days=179)).isoformat()}))
    assert ok.status_code == 200
    assert set(ok.json()) == {"url", "authorization_id", "psu_id_hash"}


def test_hosted_page_approve_and_cancel(call, eb):
    start = call("POST", "/auth", json=auth_body(state="xyz")).json()
    page = requests.get(start["url"], timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert 'value="approve"' in page.text and 'value="cancel"' in page.text
    assert "BE73 7350" in page.text or MAIN_IBAN in page.text
    callback = simulate_user(start["url"], "approve")
    assert set(callback) == {"code", "state"} and callback["state"] == "xyz"
    assert requests.get(start["url"], timeout=5).status_code == 400  # decided already
    with pytest.raises(RuntimeError):
        simulate_user(start["url"])
    cancelled = simulate_user(call("POST", "/auth", json=auth_body()).json()["url"], "cancel")
    assert cancelled["error"] == "access_denied" and cancelled["state"] == "st-1"
    assert "code" not in cancelled and cancelled["error_description"]


def test_sessions_get_new_uids_and_stable_hashes(call, eb):
    first, second = open_session(call), open_session(call)
    assert first["session_id"] != second["session_id"]
    assert first["aspsp"] == {"name": "Demo Bank", "country": "BE"}
    assert len(first["accounts"]) == 3
    uids = {a["uid"] for a in first["accounts"]}
    assert not uids & {a["uid"] for a in second["accounts"]}
    hashes = [a["identification_hash"] for a in first["accounts"]]
    assert hashes == [a["identification_hash"] for a in second["accounts"]]
    for account in first["accounts"]:
        iban = account["account_id"]["iban"]
        assert data.is_valid_iban(iban)
        assert account["all_account_ids"] == [{"identification": iban, "scheme_name": "IBAN",
                                               "issuer": None}]
    assert {a["currency"] for a in first["accounts"]} == {"EUR", "USD"}
    valid_until = datetime.fromisoformat(first["access"]["valid_until"])
    assert timedelta(days=29) < valid_until - eb.now() <= timedelta(days=30)
    detail = call("GET", f"/accounts/{uid_of(first)}/details").json()
    assert detail["identification_hash"] == hashes[0] and detail["uid"] == uid_of(first)


def test_authorization_code_is_single_use_and_expires(call, eb):
    callback = simulate_user(call("POST", "/auth", json=auth_body()).json()["url"])
    assert call("POST", "/sessions", json={"code": callback["code"]}).status_code == 200
    again = call("POST", "/sessions", json={"code": callback["code"]})
    assert again.status_code == 400 and error_of(again) == "WRONG_AUTHORIZATION_CODE"
    late = simulate_user(call("POST", "/auth", json=auth_body()).json()["url"])
    eb.advance_days(1)
    expired = call("POST", "/sessions", json={"code": late["code"]})
    assert error_of(expired) == "EXPIRED_AUTHORIZATION_CODE"


def test_session_lifecycle(call, eb):
    session = open_session(call)
    sid, uid = session["session_id"], uid_of(session)
    info = call("GET", f"/sessions/{sid}").json()
    assert info["status"] == "AUTHORIZED" and uid in info["accounts"]
    assert {d["uid"] for d in info["accounts_data"]} == set(info["accounts"])
    assert call("DELETE", f"/sessions/{sid}").status_code == 200
    assert call("GET", f"/sessions/{sid}").json()["status"] == "CLOSED"
    closed = call("GET", f"/accounts/{uid}/balances")
    assert closed.status_code == 401 and error_of(closed) == "CLOSED_SESSION"
    assert error_of(call("DELETE", f"/sessions/{sid}")) == "CLOSED_SESSION"
    missing = call("GET", "/sessions/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and error_of(missing) == "SESSION_DOES_NOT_EXIST"
    unknown = call("GET", "/accounts/not-a-uid/balances")
    assert unknown.status_code == 404 and error_of(unknown) == "ACCOUNT_DOES_NOT_EXIST"

    revoked = open_session(call)
    assert eb.revoke_session(revoked["session_id"]) is True
    assert error_of(call("GET", f"/accounts/{uid_of(revoked)}/transactions")) == "REVOKED_SESSION"

    short = open_session(call)  # valid 30 days
    eb.advance_days(31)
    assert error_of(call("GET", f"/accounts/{uid_of(short)}/balances")) == "EXPIRED_SESSION"
    assert call("GET", f"/sessions/{short['session_id']}").json()["status"] == "EXPIRED"


# ------------------------------------------------------------------------------ data
def test_transactions_page_to_the_end_and_match_the_bank(call, eb):
    eb.set_today("2024-03-01")
    session = open_session(call)
    uid = uid_of(session)
    items, pages = all_transactions(call, uid, date_from="2024-01-01", date_to="2024-03-01")
    booked = [t for t in items if t["status"] == "BOOK"]
    pending = [t for t in items if t["status"] == "PDNG"]
    expected = eb.expected_booked(MAIN_IBAN, date(2024, 1, 1), date(2024, 3, 1))
    assert booked == expected and len(booked) == 61 * 3
    assert pending == eb.expected_pending(MAIN_IBAN) and len(pending) == 3
    assert pages == -(-len(items) // 50) > 1
    assert all(date(2024, 1, 1) <= date.fromisoformat(t["booking_date"]) <= date(2024, 3, 1)
               for t in booked)
    assert len({t["entry_reference"] for t in booked}) == len(booked)
    for txn in items:
        assert not txn["transaction_amount"]["amount"].startswith("-")
        assert txn["credit_debit_indicator"] in ("CRDT", "DBIT")
        own_side = "debtor_account" if txn["credit_debit_indicator"] == "DBIT" \
            else "creditor_account"
        assert txn[own_side] == {"iban": MAIN_IBAN}
        other = txn["creditor_account" if own_side == "debtor_account" else "debtor_account"]
        if other:
            assert data.is_valid_iban(other["iban"])
        if txn["reference_number"]:
            assert data.is_valid_rf_reference(txn["reference_number"])
    assert all(t["entry_reference"] is None and t["booking_date"] is None for t in pending)
    assert any(t["exchange_rate"] for t in items)
    # The bank's balance agrees with its transactions.
    first_day = date.fromisoformat(eb.config()["first_day"])
    history = eb.expected_booked(MAIN_IBAN, first_day, eb.today)
    balances = eb.expected_balances(MAIN_IBAN)
    assert balances["booked"] == Decimal("5000.00") + balance_total(history)
    assert balances["available"] == balances["booked"] + balance_total(pending)
    served = {b["balance_type"]: b for b in call("GET", f"/accounts/{uid}/balances").json()[
        "balances"]}
    assert Decimal(served["CLBD"]["balance_amount"]["amount"]) == balances["booked"]
    assert Decimal(served["ITAV"]["balance_amount"]["amount"]) == balances["available"]


@pytest.mark.parametrize("history_days", [20, 200])
def test_configured_history_is_what_the_bank_holds_and_serves(call, eb, history_days):
    eb.set_today("2024-03-01")
    eb.configure(history_days=history_days)
    first_day = date(2024, 3, 1) - timedelta(days=history_days)
    assert eb.config()["first_day"] == first_day.isoformat()
    uid = uid_of(open_session(call))
    served, _ = all_transactions(call, uid)  # no date_from: from the first day it serves
    booked = [t for t in served if t["status"] == "BOOK"]
    held = eb.expected_booked(MAIN_IBAN, date(2020, 1, 1), eb.today)
    assert booked == held and len(held) == (history_days + 1) * 3
    assert min(t["booking_date"] for t in booked) == first_day.isoformat()
    balances = eb.expected_balances(MAIN_IBAN)
    assert balances["booked"] == Decimal("5000.00") + balance_total(held)
    # Days that leave the served window as the clock advances are still held.
    eb.advance_days(5)
    assert eb.config()["first_day"] == first_day.isoformat()
    assert len(eb.expected_booked(MAIN_IBAN, date(2020, 1, 1), eb.today)) == len(held) + 15


def test_data_is_deterministic_and_grows_with_the_clock(call, eb, keys):
    eb.set_today("2024-05-10")
    uid = uid_of(open_session(call))
    before, _ = all_transactions(call, uid, date_from="2024-05-01")
    public = keys[0].public_key()
    with EnableBankingServer(public_key=public, application_id=APP_ID, today="2024-05-10") as twin:
        assert twin.expected_booked(MAIN_IBAN, "2024-05-01", "2024-05-10") == \
            [t for t in before if t["status"] == "BOOK"]
    pending = [t for t in before if t["status"] == "PDNG"]
    eb.advance_days(1)
    after, _ = all_transactions(call, uid, date_from="2024-05-01")
    assert len([t for t in after if t["status"] == "BOOK"]) == \
        len([t for t in before if t["status"] == "BOOK"]) + 3
    posted = [t for t in after if t["booking_date"] == "2024-05-11"]
    # Yesterday's pending lines posted: same amounts and parties, a new transaction_id, an
    # entry_reference they did not have.
    assert [(t["transaction_amount"], t["remittance_information"]) for t in posted] == \
        [(t["transaction_amount"], t["remittance_information"]) for t in pending]
    assert not {t["transaction_id"] for t in posted} & {t["transaction_id"] for t in pending}
    assert all(t["entry_reference"] for t in posted)


def test_transactions_parameters(call, eb):
    eb.set_today("2024-03-01")
    uid = uid_of(open_session(call))
    old = call("GET", f"/accounts/{uid}/transactions", params={"date_from": "2023-10-01"})
    assert old.status_code == 422 and error_of(old) == "WRONG_TRANSACTIONS_PERIOD"
    longest, _ = all_transactions(call, uid, date_from="2023-10-01", strategy="longest")
    assert min(t["booking_date"] for t in longest if t["booking_date"]) == \
        (date(2024, 3, 1) - timedelta(days=90)).isoformat()
    only_pending, _ = all_transactions(call, uid, transaction_status="PDNG")
    assert {t["status"] for t in only_pending} == {"PDNG"}
    reversed_dates = call("GET", f"/accounts/{uid}/transactions",
                          params={"date_from": "2024-02-10", "date_to": "2024-02-01"})
    assert error_of(reversed_dates) == "WRONG_TRANSACTIONS_PERIOD"
    first = call("GET", f"/accounts/{uid}/transactions", params={"date_from": "2024-01-01"})
    key = first.json()["continuation_key"]
    assert key and "." in key
    other_query = call("GET", f"/accounts/{uid}/transactions",
                       params={"date_from": "2024-01-02", "continuation_key": key})
    assert other_query.status_code == 422 and error_of(other_query) == "WRONG_REQUEST_PARAMETERS"
    forged = call("GET", f"/accounts/{uid}/transactions",
                  params={"date_from": "2024-01-01", "continuation_key": key[:-2] + "00"})
    assert forged.status_code == 422


def test_entry_reference_modes(call, eb):
    eb.set_today("2024-03-01")
    uid = uid_of(open_session(call))

    def refs():
        items, _ = all_transactions(call, uid, date_from="2024-02-20", transaction_status="BOOK")
        return [t["entry_reference"] for t in items]

    stable = refs()
    assert stable == refs() and len(set(stable)) == len(stable)
    eb.configure(entry_reference="changing")
    changing_a, changing_b = refs(), refs()
    assert not set(changing_a) & set(changing_b) and len(changing_a) == len(stable)
    eb.configure(entry_reference="repeating")
    assert set(refs()) == {"NONREF"}
    eb.configure(entry_reference="missing")
    assert set(refs()) == {None}
    with pytest.raises(ValueError):
        eb.configure(entry_reference="sometimes")


# ------------------------------------------------------------------------------ PSD2 limits
def test_unattended_quota_four_a_day_per_account(call, eb):
    session = open_session(call)
    uid = uid_of(session)
    other = next(a["uid"] for a in session["accounts"] if a["uid"] != uid)
    for _ in range(4):
        assert call("GET", f"/accounts/{uid}/balances").status_code == 200
    refused = call("GET", f"/accounts/{uid}/transactions")
    assert refused.status_code == 429 and error_of(refused) == "ASPSP_RATE_LIMIT_EXCEEDED"
    assert 0 < int(refused.headers["Retry-After"]) <= 86401
    assert call("GET", f"/accounts/{other}/balances").status_code == 200  # per account
    for _ in range(3):
        assert call("GET", f"/accounts/{uid}/balances", headers=ATTENDED).status_code == 200
    eb.advance_days(1)
    assert call("GET", f"/accounts/{uid}/balances").status_code == 200  # a new day
    eb.configure(unattended_daily_limit=None)
    for _ in range(5):
        assert call("GET", f"/accounts/{uid}/balances").status_code == 200


def test_continuation_pages_do_not_count_against_the_quota(call, eb):
    eb.set_today("2024-03-01")
    uid = uid_of(open_session(call))
    for _ in range(4):
        _items, pages = all_transactions(call, uid, headers={}, date_from="2024-01-01")
        assert pages > 1
    assert call("GET", f"/accounts/{uid}/balances").status_code == 429


def test_bank_requiring_psu_headers(call):
    session = open_session(call, aspsp={"name": "Nordic Demo Bank", "country": "FI"})
    uid = session["accounts"][0]["uid"]
    refused = call("GET", f"/accounts/{uid}/balances")
    assert refused.status_code == 400 and error_of(refused) == "PSU_HEADER_NOT_PROVIDED"
    assert refused.json()["detail"] == {"missing_headers": ["psu-ip-address", "psu-user-agent"]}
    assert call("GET", f"/accounts/{uid}/details").status_code == 200
    ok = call("GET", f"/accounts/{uid}/balances", headers=ATTENDED)
    assert ok.status_code == 200
    assert {a["currency"] for a in session["accounts"]} == {"EUR", "SEK"}


# ------------------------------------------------------------------------------ faults
def test_fault_answers(call, eb):
    session = open_session(call)
    uid, sid = uid_of(session), session["session_id"]
    expectations = {
        "http_500": (500, "INTERNAL_SERVER_ERROR"), "consent_expired": (401, "EXPIRED_SESSION"),
        "closed_session": (401, "CLOSED_SESSION"), "revoked_session": (401, "REVOKED_SESSION"),
        "session_does_not_exist": (404, "SESSION_DOES_NOT_EXIST"),
        "psu_action_required": (403, "ASPSP_PSU_ACTION_REQUIRED"),
        "user_must_be_present": (400, "PSU_HEADER_NOT_PROVIDED"),
        "aspsp_error": (502, "ASPSP_ERROR"), "aspsp_timeout": (504, "ASPSP_TIMEOUT"),
        "wrong_transactions_period": (422, "WRONG_TRANSACTIONS_PERIOD"),
        "unauthorized": (401, "UNAUTHORIZED_ACCESS"),
    }
    eb.configure(unattended_daily_limit=None)
    for kind, (status, code) in expectations.items():
        eb.add_fault(kind, path="/balances")
        response = call("GET", f"/accounts/{uid}/balances")
        assert (response.status_code, error_of(response)) == (status, code), kind
        assert call("GET", f"/accounts/{uid}/balances").status_code == 200  # times=1
    eb.add_fault("rate_limit", seconds=7)
    limited = call("GET", "/aspsps")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert error_of(limited) == "ASPSP_RATE_LIMIT_EXCEEDED"
    eb.add_fault("malformed_json", path="/balances")
    with pytest.raises(ValueError):
        call("GET", f"/accounts/{uid}/balances").json()
    # user_must_be_present does not hit a call carrying the PSU headers.
    eb.add_fault("user_must_be_present")
    assert call("GET", "/aspsps", headers={"Psu-Ip-Address": "198.51.100.7"}).status_code == 200
    eb.clear_faults()
    # skip, times and the session filter.
    eb.add_fault("aspsp_error", skip=1, times=2, consent_id=sid)
    assert call("GET", "/aspsps").status_code == 200  # no session: not matched
    statuses = [call("GET", f"/accounts/{uid}/balances").status_code for _ in range(4)]
    assert statuses == [200, 502, 502, 200]
    assert eb.stats()["faults_triggered"] >= 2
    with pytest.raises(ValueError):
        eb.add_fault("meteor_strike")


def test_timeout_and_delay_faults_end_when_the_server_stops(eb, call):
    eb.add_fault("delay", seconds=0.2, path="/aspsps")
    started = time.monotonic()
    assert call("GET", "/aspsps").status_code == 200
    assert time.monotonic() - started >= 0.2
    eb.add_fault("timeout", seconds=30, path="/aspsps")
    with pytest.raises(requests.ReadTimeout):
        call("GET", "/aspsps", timeout=0.3)
    outcome = {}

    def slow_client():
        try:
            call("GET", "/aspsps", timeout=20)
        except requests.RequestException as exc:
            outcome["error"] = type(exc).__name__
        outcome["done"] = time.monotonic()

    eb.add_fault("timeout", seconds=30, path="/aspsps")
    thread = threading.Thread(target=slow_client)
    thread.start()
    time.sleep(0.2)
    stopped = time.monotonic()
    eb.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and outcome["done"] - stopped < 3
    assert "error" in outcome  # the connection was closed without an answer


def test_stats_and_admin_http_api(call, eb):
    call("GET", "/aspsps")
    call("GET", "/aspsps")
    assert eb.stats()["requests"] == {"GET /aspsps": 2} and eb.stats()["total"] == 2
    base = f"{eb.url}/_sim"
    assert requests.post(f"{base}/clock", json={"today": "2024-02-29"}, timeout=5).json()[
        "today"] == "2024-02-29"
    assert eb.today == date(2024, 2, 29)
    assert requests.post(f"{base}/clock", json={"advance_days": 1}, timeout=5).json()[
        "today"] == "2024-03-01"
    fault = requests.post(f"{base}/faults", json={"kind": "aspsp_timeout", "path": "/aspsps"},
                          timeout=5)
    assert fault.status_code == 201 and fault.json()["fault"]["kind"] == "aspsp_timeout"
    assert error_of(call("GET", "/aspsps")) == "ASPSP_TIMEOUT"
    assert requests.post(f"{base}/faults", json={"kind": "nope"}, timeout=5).status_code == 422
    config = requests.post(f"{base}/config", json={"page_size": 10}, timeout=5).json()["config"]
    assert config["page_size"] == 10
    session = open_session(call)
    listed = requests.get(f"{base}/sessions", timeout=5).json()["sessions"]
    assert [s["session_id"] for s in listed] == [session["session_id"]]
    assert requests.post(f"{base}/sessions/{session['session_id']}/revoke",
                         timeout=5).status_code == 204
    assert eb.sessions()[0]["status"] == "REVOKED"
    assert requests.post(f"{base}/reset", timeout=5).status_code == 204
    assert eb.stats()["total"] == 0 and eb.sessions() == [] and eb.config()["page_size"] == 50
    assert eb.today == datetime.now(timezone.utc).date()


def test_command_line_runs_and_stops(tmp_path):
    key_path = tmp_path / "app.pem"
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.enablebanking", "--port", "0",
         "--generate-key", str(key_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(2)]
        assert "Private key written" in lines[0]
        assert "listening on http://127.0.0.1:" in lines[1]
        url = lines[1].split("listening on ")[1].split()[0]
        assert requests.get(f"{url}/aspsps", timeout=5).status_code == 401
        assert key_path.stat().st_mode & 0o077 == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
