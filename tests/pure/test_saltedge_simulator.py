"""The Salt Edge v6 simulator, spoken to over real HTTP on 127.0.0.1 (signed requests)."""
import base64
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from simulators.saltedge import FAULT_KINDS, SaltEdgeServer, simulate_user
from simulators.saltedge import data as se_data

APP_ID = "sim-test-app"
SECRET = "sim-test-secret-7f3a"
RETURN_TO = "http://127.0.0.1:8069/online_sync/callback?state=abc"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def se(key):
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    server = SaltEdgeServer(app_id=APP_ID, secret=SECRET, public_key=public).start()
    try:
        yield server
    finally:
        server.stop()


class Client:
    """A minimal signed Salt Edge client (requests + cryptography), for poking the server."""

    def __init__(self, server, key, app_id=APP_ID, secret=SECRET):
        self.server, self.key, self.app_id, self.secret = server, key, app_id, secret

    def headers(self, method, url, body, expires_at=None, sign=True, **overrides):
        headers = {"App-id": self.app_id, "Secret": self.secret,
                   "Content-Type": "application/json", "Accept": "application/json"}
        if sign:
            expires_at = str(int(time.time()) + 60) if expires_at is None else expires_at
            message = f"{expires_at}|{method}|{url}|{body}".encode()
            signature = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
            headers["Expires-at"] = expires_at
            headers["Signature"] = base64.b64encode(signature).decode()
        for name, value in overrides.items():
            name = name.replace("_", "-")
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return headers

    def call(self, method, path, body=None, *, raw_body=None, **header_options):
        url = self.server.api_url + path
        text = raw_body if raw_body is not None else (
            json.dumps({"data": body}) if body is not None else "")
        headers = self.headers(method, url, text, **header_options)
        return requests.request(method, url, data=text.encode() if text else None,
                                headers=headers, timeout=5)

    def connect(self, provider_code="fakebank_simple_xf", identifier="company-1", **consent):
        customer = self.call("POST", "/customers", {"identifier": identifier}).json()["data"]
        answer = self.call("POST", "/connections/connect", {
            "customer_id": customer["customer_id"],
            "consent": {"scopes": ["accounts", "transactions"], **consent},
            "attempt": {"fetch_scopes": ["accounts", "balance", "transactions"],
                        "return_to": RETURN_TO},
            "provider": {"code": provider_code}})
        assert answer.status_code == 200, answer.text
        callback = simulate_user(answer.json()["data"]["connect_url"])
        assert callback["state"] == "abc"
        return customer["customer_id"], callback["connection_id"]


@pytest.fixture
def client(se, key):
    return Client(se, key)


def error_of(response):
    body = response.json()
    assert set(body["error"]) == {"class", "message", "documentation_url"}
    return body["error"]["class"]


# ------------------------------------------------------------------------------ lifecycle
def test_lifecycle_and_context_manager(key):
    with SaltEdgeServer() as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        assert server.api_url == server.url + "/api/v6"
        assert not server.require_signature
        answer = requests.get(server.api_url + "/countries",
                              headers={"App-id": server.app_id, "Secret": "saltedge-sim-secret"},
                              timeout=5)
        assert answer.status_code == 200
        assert [c["code"] for c in answer.json()["data"]] == ["BE", "XF"]
    server.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(server.api_url + "/countries", timeout=1)


def test_cli_runs_until_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "simulators.saltedge", "--port", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "Salt Edge simulator: API http://127.0.0.1:" in line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


# ------------------------------------------------------------------------------ authentication
@pytest.mark.parametrize("options, status, error_class", [
    ({"App_id": None}, 400, "AppIdNotProvided"),
    ({"Secret": None}, 400, "SecretNotProvided"),
    ({"Secret": "wrong-secret"}, 401, "ApiKeyNotFound"),
    ({"Expires_at": None}, 400, "MissingExpiresAt"),
    ({"Expires_at": "soon"}, 400, "ExpiresAtInvalid"),
    ({"expires_at": str(int(time.time()) + 7200)}, 400, "ExpiresAtInvalid"),
    ({"expires_at": str(int(time.time()) - 5)}, 401, "RequestExpired"),
    ({"Signature": None}, 400, "MissingSignature"),
    ({"Signature": base64.b64encode(b"x" * 256).decode()}, 401, "SignatureNotMatch"),
    ({"Signature": "%%% not base64"}, 401, "SignatureNotMatch"),
])
def test_authentication_errors(client, options, status, error_class):
    answer = client.call("GET", "/providers?include_sandboxes=true", **options)
    assert answer.status_code == status and error_of(answer) == error_class
    assert SECRET not in answer.text


def test_signature_covers_the_query_and_the_body(client, se, key):
    query = "/providers?country_code=XF&include_sandboxes=true"
    assert client.call("GET", query).status_code == 200
    url = se.api_url + "/providers?country_code=XF&include_sandboxes=true"
    headers = client.headers("GET", url, "")
    tampered = requests.get(url.replace("XF", "BE"), headers=headers, timeout=5)
    assert error_of(tampered) == "SignatureNotMatch"
    body = json.dumps({"data": {"identifier": "x1"}})
    headers = client.headers("POST", se.api_url + "/customers", body)
    other = requests.post(se.api_url + "/customers", headers=headers, timeout=5,
                          data=json.dumps({"data": {"identifier": "x2"}}))
    assert error_of(other) == "SignatureNotMatch"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert error_of(Client(se, stranger).call("GET", "/countries")) == "SignatureNotMatch"


def test_unsigned_calls_are_accepted_without_a_public_key():
    with SaltEdgeServer(app_id=APP_ID, secret=SECRET) as server:
        answer = requests.get(server.api_url + "/providers",
                              headers={"App-id": APP_ID, "Secret": SECRET}, timeout=5)
        assert answer.status_code == 200
        assert [p["code"] for p in answer.json()["data"]] == ["demobank_be"]  # no sandboxes
    with pytest.raises(ValueError):
        SaltEdgeServer(require_signature=True)


# ------------------------------------------------------------------------------ data
def test_accounts_have_valid_ibans_and_transactions_are_deterministic():
    for accounts in se_data.ACCOUNTS.values():
        for spec in accounts:
            assert spec["iban"] is None or se_data.is_valid_iban(spec["iban"])
    assert not se_data.is_valid_iban("BE71096123456768")
    spec = se_data.find_account("BE71 0961 2345 6769")
    first = se_data.transactions_posting_on(spec, date(2024, 3, 1), 5)
    again = [se_data._make(spec, date(2024, 3, 1), i) for i in range(5)]
    assert first == again
    assert first[0].amount == -1850 and first[0].description.startswith("SEPA credit transfer")
    assert all(len(t.posted_id) == 16 and t.posted_id != t.pending_id for t in first)
    assert all(t.pending_id < t.posted_id for t in first)  # ids grow with creation day
    for txn in first:
        extra = dict(txn.extra)
        if "account_number" in extra:
            assert se_data.is_valid_iban(extra["account_number"])


def test_providers_listing_and_paging(client):
    everything = client.call("GET", "/providers?include_sandboxes=true").json()
    assert [p["code"] for p in everything["data"]] == list(se_data.PROVIDER_CODES)
    assert everything["meta"] == {"next_id": None, "next_page": None}
    assert {"max_consent_days", "country_code", "mode", "regulated", "logo_url"} <= \
        set(everything["data"][0])
    first = client.call("GET", "/providers?include_sandboxes=true&per_page=2").json()
    assert len(first["data"]) == 2 and first["meta"]["next_id"] == everything["data"][2]["id"]
    assert first["meta"]["next_page"].startswith("/api/v6/providers?")
    rest = client.call("GET", f"/providers?include_sandboxes=true&per_page=2"
                              f"&from_id={first['meta']['next_id']}").json()
    assert [p["code"] for p in rest["data"]] == ["demobank_be"] and rest["meta"]["next_id"] is None
    assert [p["code"] for p in client.call("GET", "/providers?country_code=BE").json()["data"]] \
        == ["demobank_be"]
    assert error_of(client.call("GET", "/providers?per_page=0")) == "ValueOutOfRange"


def test_request_envelope_is_checked(client):
    assert error_of(client.call("POST", "/customers", raw_body='{"identifier": "x"}')) == \
        "WrongRequestFormat"
    assert error_of(client.call("POST", "/customers", raw_body="{not json")) == "JsonParseError"
    assert client.call("POST", "/customers", {"identifier": "same"}).status_code == 200
    duplicate = client.call("POST", "/customers", {"identifier": "same"})
    assert duplicate.status_code == 409 and error_of(duplicate) == "DuplicatedCustomer"
    missing = client.call("GET", "/connections/999")
    assert missing.status_code == 404 and error_of(missing) == "ConnectionNotFound"
    assert error_of(client.call("GET", "/nothing/here")) == "RouteNotFound"


def test_connect_validation(client, se):
    customer = client.call("POST", "/customers", {"identifier": "v"}).json()["data"]["customer_id"]
    base = {"customer_id": customer, "consent": {"scopes": ["accounts", "transactions"]},
            "attempt": {"return_to": RETURN_TO}, "provider": {"code": "fakebank_simple_xf"}}

    def connect(**changes):
        return error_of(client.call("POST", "/connections/connect", {**base, **changes}))

    assert connect(customer_id="1") == "CustomerNotFound"
    assert connect(provider={"code": "nope_xf"}) == "ProviderNotFound"
    assert connect(attempt={"return_to": "not a url"}) == "ReturnURLInvalid"
    assert connect(consent={"scopes": ["everything"]}) == "AispConsentScopesInvalid"
    assert connect(consent={"scopes": ["accounts"], "period_days": 180}) == \
        "InvalidAispConsentPeriod"  # this provider allows 90
    old = (se.today - timedelta(days=400)).isoformat()
    assert connect(attempt={"return_to": RETURN_TO, "from_date": old}) == "DateOutOfRange"
    assert connect(attempt={"return_to": RETURN_TO, "from_date": "yesterday"}) == \
        "InvalidFromDate"


def test_connect_widget_approve_and_cancel(client, se):
    customer_id, connection_id = client.connect()
    connection = client.call("GET", f"/connections/{connection_id}").json()["data"]
    assert connection["customer_id"] == customer_id and connection["status"] == "active"
    assert connection["provider_code"] == "fakebank_simple_xf"
    assert connection["last_attempt"]["finished"] is True
    consents = client.call("GET", f"/consents?connection_id={connection_id}").json()["data"]
    assert [c["status"] for c in consents] == ["given"] and consents[0]["period_days"] == 90
    answer = client.call("POST", "/connections/connect", {
        "customer_id": customer_id, "consent": {"scopes": ["accounts"]},
        "attempt": {"return_to": RETURN_TO}, "provider": {"include_sandboxes": True}})
    url = answer.json()["data"]["connect_url"]
    page = requests.get(url, timeout=5).text
    assert 'name="provider_code"' in page and "fakebank_oauth_client_xf" in page
    assert simulate_user(url, "cancel") == {
        "state": "abc", "error_class": "ProviderAccessNotGranted",
        "error_message": "The customer denied access to the data."}
    assert requests.get(url, timeout=5).status_code == 400  # a widget session is single-use
    assert len(se.connections()) == 1


def test_widget_provider_choice(client):
    customer = client.call("POST", "/customers", {"identifier": "w"}).json()["data"]["customer_id"]
    answer = client.call("POST", "/connections/connect", {
        "customer_id": customer, "consent": {"scopes": ["accounts", "transactions"]},
        "attempt": {"return_to": RETURN_TO}, "provider": {"include_sandboxes": True}})
    callback = simulate_user(answer.json()["data"]["connect_url"],
                             provider_code="fakebank_oauth_client_xf")
    connection = client.call("GET", f"/connections/{callback['connection_id']}").json()["data"]
    assert connection["provider_code"] == "fakebank_oauth_client_xf"


def test_transactions_paging_pending_and_growth(client, se):
    se.set_today("2024-03-10")
    se.configure(txns_per_day={"EUR": 5})
    _customer, connection_id = client.connect()
    accounts = client.call("GET", f"/accounts?connection_id={connection_id}").json()["data"]
    eur = next(a for a in accounts if a["currency_code"] == "EUR")
    assert eur["extra"]["iban"] == "BE71096123456769" and isinstance(eur["balance"], float)
    balance, available = se.expected_balance(eur["id"])
    assert eur["balance"] == float(balance) and eur["extra"]["available_amount"] == float(available)
    path = f"/transactions?connection_id={connection_id}&account_id={eur['id']}"
    collected, from_id, pages = [], None, 0
    while pages < 20:
        page = client.call("GET", path + "&per_page=100" + (f"&from_id={from_id}" if from_id
                                                              else "")).json()
        collected.extend(page["data"])
        pages += 1
        from_id = page["meta"]["next_id"]
        if not from_id:
            break
    expected = se.expected_booked("BE71096123456769", date(2023, 1, 1), date(2024, 3, 10))
    assert pages == 5 and len(collected) == 91 * 5
    assert [t["id"] for t in collected] == [t["id"] for t in expected]
    assert all(t["status"] == "posted" and t["extra"]["posting_date"] for t in collected)
    assert [t["id"] for t in collected] == sorted(t["id"] for t in collected)
    pending = client.call("GET", path + "&pending=true").json()["data"]
    assert {t["id"] for t in pending} == {t["id"] for t in se.expected_pending(eur["id"])}
    assert all(t["status"] == "pending" and "posting_date" not in t["extra"] for t in pending)
    assert all(t["made_on"] == "2024-03-10" for t in pending)

    se.advance_days(1)
    later = client.call("GET", path + "&from_id=" + collected[-1]["id"]).json()["data"]
    new = [t for t in later if t["id"] != collected[-1]["id"]]
    assert len(new) == 5 and all(t["extra"]["posting_date"] == "2024-03-11" for t in new)
    assert not {t["id"] for t in pending} & {t["id"] for t in new}  # posted under new ids
    assert sorted((t["made_on"], t["amount"]) for t in pending) == \
        sorted((t["made_on"], t["amount"]) for t in new)
    unknown = client.call("GET", f"/transactions?connection_id={connection_id}&account_id=1")
    assert unknown.status_code == 404 and error_of(unknown) == "AccountNotFound"


def test_data_without_automatic_refresh_waits_for_a_refresh(client, se):
    customer = client.call("POST", "/customers", {"identifier": "m"}).json()["data"]["customer_id"]
    answer = client.call("POST", "/connections/connect", {
        "customer_id": customer, "consent": {"scopes": ["accounts", "transactions"]},
        "attempt": {"return_to": RETURN_TO}, "provider": {"code": "fakebank_simple_xf"},
        "automatic_refresh": False})
    connection_id = simulate_user(answer.json()["data"]["connect_url"])["connection_id"]
    path = f"/transactions?connection_id={connection_id}"
    before = len(client.call("GET", path).json()["data"])
    se.advance_days(2)
    assert len(client.call("GET", path).json()["data"]) == before
    refreshed = client.call("POST", f"/connections/{connection_id}/background_refresh", {})
    assert refreshed.status_code == 200
    assert len(client.call("GET", path).json()["data"]) == before + 2 * 4  # EUR 3 + USD 1 a day


def test_refresh_limits(client, se):
    _customer, connection_id = client.connect("fakebank_oauth_client_xf")
    path = f"/connections/{connection_id}/background_refresh"
    too_early = client.call("POST", path, {})
    assert too_early.status_code == 406 and error_of(too_early) == "ConnectionCannotBeRefreshed"
    assert "Try again in 3600 seconds" in too_early.json()["error"]["message"] or \
        "Try again in 3599 seconds" in too_early.json()["error"]["message"]
    for _ in range(4):
        se.advance_seconds(3601)
        assert client.call("POST", path, {}).status_code == 200
    se.advance_seconds(3601)
    capped = client.call("POST", path, {})
    assert capped.status_code == 429 and error_of(capped) == "BackgroundFetchLimitExceeded"
    present = {"attempt": {"customer_last_logged_at":
                           time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    attended = client.call("POST", path, present)
    assert attended.status_code == 200
    assert attended.json()["data"]["last_attempt"]["customer_last_logged_at"]
    interactive = client.call("POST", f"/connections/{connection_id}/refresh",
                              {"attempt": {"return_to": RETURN_TO}})
    assert error_of(interactive) == "ConnectionCannotBeRefreshed"
    se.advance_seconds(3601)
    interactive = client.call("POST", f"/connections/{connection_id}/refresh",
                              {"attempt": {"return_to": RETURN_TO}})
    callback = simulate_user(interactive.json()["data"]["connect_url"])
    assert callback["connection_id"] == connection_id


def test_too_many_connect_requests(client):
    customer = client.call("POST", "/customers", {"identifier": "t"}).json()["data"]["customer_id"]
    body = {"customer_id": customer, "consent": {"scopes": ["accounts"]},
            "attempt": {"return_to": RETURN_TO}, "provider": {"code": "fakebank_simple_xf"}}
    answers = [client.call("POST", "/connections/connect", body) for _ in range(11)]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert answers[10].status_code == 429 and error_of(answers[10]) == "TooManyRequests"
    assert int(answers[10].headers["Retry-After"]) > 0


def test_consent_expiry_revocation_reconnect_and_removal(client, se):
    _customer, connection_id = client.connect()
    accounts_path = f"/accounts?connection_id={connection_id}"
    se.advance_days(91)
    expired = client.call("GET", accounts_path)
    assert expired.status_code == 406 and error_of(expired) == "AispConsentExpired"
    assert client.call("GET", f"/connections/{connection_id}").json()["data"]["status"] == \
        "inactive"
    answer = client.call("POST", f"/connections/{connection_id}/reconnect", {
        "consent": {"scopes": ["accounts", "transactions"], "period_days": 30},
        "attempt": {"return_to": RETURN_TO}})
    assert simulate_user(answer.json()["data"]["connect_url"])["connection_id"] == connection_id
    assert client.call("GET", accounts_path).status_code == 200
    consents = se.consents(connection_id)
    assert [c["status"] for c in consents] == ["expired", "given"]
    assert se.revoke_consent(connection_id) is True
    assert error_of(client.call("GET", accounts_path)) == "AispConsentRevoked"
    removed = client.call("DELETE", f"/connections/{connection_id}")
    assert removed.json() == {"data": {"id": connection_id, "removed": True}}
    assert error_of(client.call("DELETE", f"/connections/{connection_id}")) == "ConnectionNotFound"


# ------------------------------------------------------------------------------ faults
@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS
                                  if k not in ("delay", "timeout", "malformed_json", "fetching")])
def test_error_faults_answer_the_real_error_body(client, se, kind):
    _customer, connection_id = client.connect()
    se.add_fault(kind, seconds=7)
    answer = client.call("GET", f"/accounts?connection_id={connection_id}")
    assert answer.status_code >= 400
    error_class = error_of(answer)
    assert error_class[0].isupper() and " " not in error_class
    if answer.status_code in (429, 503):
        assert answer.headers["Retry-After"] == "7"
    assert client.call("GET", f"/accounts?connection_id={connection_id}").status_code == 200


def test_fault_targeting_and_counting(client, se):
    _customer, connection_id = client.connect()
    path = f"/accounts?connection_id={connection_id}"
    se.add_fault("http_500", skip=1, times=2, path="/accounts", consent_id=connection_id)
    statuses = [client.call("GET", path).status_code for _ in range(4)]
    assert statuses == [200, 500, 500, 200]
    assert client.call("GET", "/providers").status_code == 200
    se.add_fault("rate_limit", times=None, path="/transactions")
    limited = client.call("GET", f"/transactions?connection_id={connection_id}")
    assert limited.status_code == 429 and error_of(limited) == "RateLimitExceeded"
    assert limited.headers["Retry-After"] == "60"
    assert se.clear_faults() == 2
    with pytest.raises(ValueError):
        se.add_fault("nope")
    stats = se.stats()
    assert stats["requests"]["GET /accounts"] == 4 and stats["total"] == sum(
        stats["requests"].values())


def test_user_must_be_present_fault_spares_attended_refreshes(client, se):
    _customer, connection_id = client.connect()
    se.advance_seconds(3601)
    se.add_fault("user_must_be_present", times=None, path="/background_refresh")
    path = f"/connections/{connection_id}/background_refresh"
    unattended = client.call("POST", path, {})
    assert error_of(unattended) == "InteractiveAdapterTimeout"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert client.call("POST", path, {"attempt": {"customer_last_logged_at": now}}).ok


def test_delay_timeout_malformed_and_fetching_faults(client, se):
    _customer, connection_id = client.connect()
    se.add_fault("delay", seconds=0.3)
    started = time.monotonic()
    assert client.call("GET", "/countries").status_code == 200
    assert time.monotonic() - started >= 0.3
    se.add_fault("malformed_json")
    with pytest.raises(ValueError):
        client.call("GET", "/countries").json()
    se.add_fault("fetching", times=1)
    view = client.call("GET", f"/connections/{connection_id}").json()["data"]
    assert view["last_attempt"]["finished"] is False and view["last_attempt"]["stage"] == "fetching"
    assert client.call("GET", f"/connections/{connection_id}").json()["data"]["last_attempt"][
        "finished"] is True
    se.add_fault("timeout", seconds=5)
    url = se.api_url + "/countries"
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, headers=client.headers("GET", url, ""), timeout=0.3)


def test_timeout_fault_ends_when_the_server_stops(key):
    server = SaltEdgeServer().start()
    server.add_fault("timeout", seconds=30)
    started = time.monotonic()
    outcome = []

    def call():
        try:
            requests.get(server.api_url + "/countries", timeout=10,
                         headers={"App-id": server.app_id, "Secret": "saltedge-sim-secret"})
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.2)
    server.stop()
    thread.join(timeout=5)
    assert outcome and time.monotonic() - started < 5


def test_reset_and_clock(client, se):
    client.connect()
    se.add_fault("http_500")
    se.set_today("2024-02-28")
    assert se.advance_days(2) == date(2024, 3, 1)
    se.reset()
    assert se.connections() == [] and se.faults() == [] and se.stats()["total"] == 0
    assert se.today == datetime.now(timezone.utc).date()
