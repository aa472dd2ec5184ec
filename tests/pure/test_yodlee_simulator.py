"""The Yodlee simulator answers as its README and the Yodlee swagger say (raw HTTP, no adapter)."""
import copy
import os
import re
import time
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import yaml
from jsonschema import Draft4Validator

from simulators.yodlee import ERRORS, FAULT_KINDS, YodleeServer, simulate_user
from simulators.yodlee import data
from simulators.yodlee.server import ROUTES, STATUS_FAULTS

SPEC_PATH = "/work/shared/reference/specs/yodlee-core-swagger.yaml"
CLIENT = {"clientId": "yodlee-sim-client", "secret": "yodlee-sim-secret"}
CALLBACK = "http://127.0.0.1:8069/cb"
VERSION = {"Api-Version": "1.1"}


@pytest.fixture
def sim():
    server = YodleeServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


def token_for(sim, login_name="user-one"):
    response = requests.post(f"{sim.api_url}/auth/token", data=CLIENT, timeout=5,
                             headers={**VERSION, "loginName": login_name})
    assert response.status_code == 201, response.text
    return response.json()["token"]["accessToken"]


def api(sim, path, token=None, method="GET", headers=None, **kwargs):
    all_headers = dict(VERSION)
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    return requests.request(method, f"{sim.api_url}{path}", headers=all_headers, timeout=5,
                            **kwargs)


def error_of(response):
    body = response.json()
    assert set(body) <= {"errorCode", "errorMessage", "referenceCode"}
    assert body["referenceCode"]
    return body.get("errorCode")


def fastlink_url(sim, token, **extra):
    extra = {"providerId": 20001, "callback": CALLBACK, "state": "s1", **extra}
    extra = {key: value for key, value in extra.items() if value is not None}
    return f"{sim.fastlink_url}?" + urlencode({"accessToken": f"Bearer {token}",
                                               "extraParams": urlencode(extra)})


def link(sim, login_name="user-one", provider_id=20001):
    """A user token and a new providerAccount id (through FastLink)."""
    token = token_for(sim, login_name)
    callback = simulate_user(fastlink_url(sim, token, providerId=provider_id))
    assert callback["status"] == "SUCCESS" and callback["state"] == "s1"
    return token, int(callback["providerAccountId"])


def accounts_of(sim, token, pa_id, include=None):
    params = {"providerAccountId": pa_id}
    if include:
        params["include"] = include
    response = api(sim, "/accounts", token, params=params)
    assert response.status_code == 200
    return response.json()["account"]


def all_transactions(sim, token, account_id, top=500, **params):
    items, skip = [], 0
    for _page in range(50):
        response = api(sim, "/transactions", token, params={
            "accountId": account_id, "skip": skip, "top": top, **params})
        assert response.status_code == 200, response.text
        page = response.json().get("transaction", [])
        items.extend(page)
        if len(page) < top:
            return items
        skip += top
    raise AssertionError("no end")


# ------------------------------------------------------------------------------ schema fidelity
@pytest.fixture(scope="module")
def spec():
    if not os.path.exists(SPEC_PATH):
        pytest.skip("the Yodlee swagger is not available")
    with open(SPEC_PATH, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _close(schema):
    """Forbid properties the spec does not define (our answers may not invent fields)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and isinstance(schema.get("properties"), dict):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _close(value)
    elif isinstance(schema, list):
        for value in schema:
            _close(value)


@pytest.fixture(scope="module")
def validate(spec):
    definitions = copy.deepcopy(spec["definitions"])
    _close(definitions)

    def check(instance, name):
        Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": definitions}).validate(
            instance)
        return instance

    return check


def test_every_served_api_route_exists_in_the_swagger(spec):
    def shape(path):
        return re.sub(r"\{[^}]+\}", "{}", path)

    paths = {shape(path): methods for path, methods in spec["paths"].items()}
    for method, _pattern, template, _handler, is_api in ROUTES:
        if is_api:
            assert method.lower() in paths[shape(template)], (method, template)


def test_answers_validate_against_the_swagger(sim, validate):
    response = requests.post(f"{sim.api_url}/auth/token", data=CLIENT, timeout=5,
                             headers={**VERSION, "loginName": "schema-user"})
    validate(response.json(), "ClientCredentialTokenResponse")
    token = response.json()["token"]["accessToken"]
    callback = simulate_user(fastlink_url(sim, token))
    pa_id = callback["providerAccountId"]
    validate(api(sim, "/providers", token).json(), "ProviderResponse")
    validate(api(sim, f"/providerAccounts/{pa_id}", token).json(),
             "ProviderAccountDetailResponse")
    validate(api(sim, "/providerAccounts", token).json(), "ProviderAccountResponse")
    accounts = validate(api(sim, "/accounts", token, params={
        "providerAccountId": pa_id, "include": "fullAccountNumberList,holder"}).json(),
        "AccountResponse")["account"]
    validate(api(sim, f"/accounts/{accounts[0]['id']}", token).json(), "AccountResponse")
    transactions = validate(api(sim, "/transactions", token, params={
        "accountId": accounts[0]["id"], "fromDate": (sim.today - timedelta(days=40)).isoformat(),
    }).json(), "TransactionResponse")["transaction"]
    assert {t["status"] for t in transactions} == {"POSTED", "PENDING"}
    assert any("convertedAmount" in t["amount"] for t in transactions)  # foreign ones validate
    assert any("merchant" in t for t in transactions)
    validate(api(sim, "/transactions/count", token, params={"accountId": accounts[0]["id"]})
             .json(), "TransactionCountResponse")
    validate(api(sim, "/consents", token, params={"providerAccountIds": pa_id}).json(),
             "ConsentResponse")
    validate(api(sim, "/transactions", token, params={"top": 0}).json(), "YodleeError")
    sim.add_fault("consent_expired", path="/providerAccounts")
    validate(api(sim, f"/providerAccounts/{pa_id}", token).json(),
             "ProviderAccountDetailResponse")


# ------------------------------------------------------------------------------ auth
def test_token_answer_and_credential_checks(sim):
    response = requests.post(f"{sim.api_url}/auth/token", data=CLIENT, timeout=5,
                             headers={**VERSION, "loginName": "alice"})
    assert response.status_code == 201
    token = response.json()["token"]
    assert token["expiresIn"] == 1800 and token["issuedAt"].endswith("Z") and token["accessToken"]

    def ask(form, headers):
        return requests.post(f"{sim.url}/auth/token", data=form, headers=headers, timeout=5)

    assert error_of(ask({"clientId": "yodlee-sim-client"}, {**VERSION, "loginName": "a1b"})) \
        == "Y303"
    wrong = ask({**CLIENT, "secret": "nope-nope"}, {**VERSION, "loginName": "alice"})
    assert wrong.status_code == 400 and error_of(wrong) == "Y301"
    no_login = ask(CLIENT, VERSION)
    assert no_login.status_code == 401 and error_of(no_login) == "Y016"
    no_version = ask(CLIENT, {"loginName": "alice"})
    assert no_version.status_code == 401 and error_of(no_version) == "Y016"
    assert error_of(ask(CLIENT, {"Api-Version": "1.0", "loginName": "alice"})) == "Y800"
    assert error_of(ask(CLIENT, {**VERSION, "loginName": "ab"})) == "Y801"
    assert error_of(ask(CLIENT, {**VERSION, "loginName": "a b c"})) == "Y800"
    sim.configure(auto_register=False)
    refused = ask(CLIENT, {**VERSION, "loginName": "stranger"})
    assert refused.status_code == 400 and error_of(refused) == "Y305"
    assert ask(CLIENT, {**VERSION, "loginName": "alice"}).status_code == 201  # known user


def test_bearer_token_checks_and_revocation(sim):
    token = token_for(sim)
    assert api(sim, "/providers", token).status_code == 200
    missing = api(sim, "/providers")
    assert missing.status_code == 401 and error_of(missing) == "Y007"
    unknown = api(sim, "/providers", "not-a-token")
    assert unknown.status_code == 401 and error_of(unknown) == "Y008"
    assert error_of(api(sim, "/auth/token", "not-a-token", method="DELETE")) == "Y020"
    assert api(sim, "/auth/token", token, method="DELETE").status_code == 204
    assert error_of(api(sim, "/providers", token)) == "Y008"
    later = token_for(sim)
    sim.advance_days(1)  # 30-minute tokens, on the simulated clock
    assert error_of(api(sim, "/providers", later)) == "Y008"
    assert error_of(api(sim, "/auth/token", later, method="DELETE")) == "Y023"


# ------------------------------------------------------------------------------ providers
def test_providers_search_and_paging(sim):
    token = token_for(sim)
    everything = api(sim, "/providers", token).json()["provider"]
    assert [p["id"] for p in everything] == list(data.PROVIDER_IDS)
    assert {p["countryISOCode"] for p in everything} == {"BE", "NL", "GB", "DE", "FR"}
    assert [p["name"] for p in api(sim, "/providers", token, params={"name": "UK"}).json()[
        "provider"]] == ["Yodlee Sim Bank UK"]
    page = api(sim, "/providers", token, params={"skip": 2, "top": 2}).json()["provider"]
    assert [p["id"] for p in page] == list(data.PROVIDER_IDS[2:4])
    assert api(sim, "/providers", token, params={"name": "zzz"}).json() == {}
    assert error_of(api(sim, "/providers", token, params={"top": 501})) == "Y804"
    assert error_of(api(sim, "/providers", token, params={"name": ""})) == "Y801"
    assert error_of(api(sim, "/providers", token, params={"priority": "x"})) == "Y800"
    logo = requests.get(everything[0]["logo"], timeout=5)
    assert logo.status_code == 200 and logo.headers["Content-Type"] == "image/svg+xml"


# ------------------------------------------------------------------------------ FastLink
def test_fastlink_links_a_bank_and_cancel(sim):
    token = token_for(sim)
    page = requests.get(fastlink_url(sim, token), timeout=5)
    assert page.status_code == 200 and "Yodlee Sim Bank Belgium" in page.text
    assert token not in page.text  # the token is not echoed in the page
    callback = simulate_user(fastlink_url(sim, token, state="abc"))
    assert callback["status"] == "SUCCESS" and callback["providerId"] == "20001"
    assert callback["state"] == "abc" and callback["requestId"]
    cancelled = simulate_user(fastlink_url(sim, token, state="xyz"), "cancel")
    assert cancelled == {"status": "USER_CLOSE_ACTION", "reason": "USER_CLOSED_ACCOUNT_ADDITION",
                         "message": cancelled["message"], "state": "xyz"}
    assert len(sim.consents()) == 1  # cancelling created nothing


def test_fastlink_refuses_bad_launches(sim):
    token = token_for(sim)
    assert requests.get(fastlink_url(sim, "bad-token"), timeout=5).status_code == 401
    assert requests.get(fastlink_url(sim, token, callback=None), timeout=5).status_code == 400
    assert requests.get(fastlink_url(sim, token, providerId=1), timeout=5).status_code == 400
    assert requests.get(fastlink_url(sim, token, flow="refresh", providerAccountId=999),
                        timeout=5).status_code == 400
    page = requests.get(fastlink_url(sim, token), timeout=5).text
    session = page.split('name="session" value="')[1].split('"')[0]
    decide = f"{sim.fastlink_url}/decision"
    first = requests.post(decide, data={"session": session, "decision": "approve"},
                          allow_redirects=False, timeout=5)
    assert first.status_code == 302 and first.headers["Location"].startswith(CALLBACK + "?")
    again = requests.post(decide, data={"session": session, "decision": "approve"},
                          allow_redirects=False, timeout=5)
    assert again.status_code == 400  # a session is single-use


def test_fastlink_launch_by_post_and_callback_with_query(sim):
    token = token_for(sim)
    extra = urlencode({"providerId": 20002, "callback": CALLBACK + "?x=1", "state": "p"})
    page = requests.post(sim.fastlink_url, data={"accessToken": f"Bearer {token}",
                                                 "extraParams": extra}, timeout=5)
    assert page.status_code == 200 and "Nederland" in page.text
    session = page.text.split('name="session" value="')[1].split('"')[0]
    answer = requests.post(f"{sim.fastlink_url}/decision", data={
        "session": session, "decision": "approve"}, allow_redirects=False, timeout=5)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["x"] == ["1"] and query["providerId"] == ["20002"] and query["state"] == ["p"]


def test_refresh_flow_renews_the_consent_and_keeps_the_ids(sim):
    token, pa_id = link(sim)
    ids = [a["id"] for a in accounts_of(sim, token, pa_id)]
    sim.expire_consent(pa_id)
    status = api(sim, f"/providerAccounts/{pa_id}", token).json()["providerAccount"][0]
    assert status["dataset"][0]["additionalStatus"] == "CONSENT_EXPIRED"
    assert api(sim, "/consents", token).json()["consent"][0]["consentStatus"] == "EXPIRED"
    callback = simulate_user(fastlink_url(sim, token, flow="refresh", providerAccountId=pa_id,
                                          providerId=None))
    assert callback["providerAccountId"] == str(pa_id)
    assert [a["id"] for a in accounts_of(sim, token, pa_id)] == ids
    consent = api(sim, "/consents", token).json()["consent"][0]
    assert consent["consentStatus"] == "ACTIVE"
    assert consent["expirationDate"] > sim.now().isoformat()[:10]
    other_token, other_pa = link(sim, "user-two")
    assert other_pa != pa_id
    assert not {a["id"] for a in accounts_of(sim, other_token, other_pa)} & set(ids)


# ------------------------------------------------------------------------------ links, accounts
def test_provider_accounts_belong_to_their_user(sim):
    token, pa_id = link(sim)
    other = token_for(sim, "someone-else")
    detail = api(sim, f"/providerAccounts/{pa_id}", token).json()["providerAccount"][0]
    assert detail["status"] == "SUCCESS" and detail["consentId"] > 0
    assert detail["dataset"][0]["additionalStatus"] == "AVAILABLE_DATA_RETRIEVED"
    foreign = api(sim, f"/providerAccounts/{pa_id}", other)
    assert foreign.status_code == 400 and error_of(foreign) == "Y800"
    assert "providerAccountId" in foreign.json()["errorMessage"]
    assert api(sim, "/accounts", other).json() == {}
    assert error_of(api(sim, "/accounts", other, params={"providerAccountId": pa_id})) == "Y800"
    account_id = accounts_of(sim, token, pa_id)[0]["id"]
    assert error_of(api(sim, f"/accounts/{account_id}", other)) == "Y807"
    assert api(sim, f"/providerAccounts/{pa_id}", token, method="DELETE").status_code == 204
    assert error_of(api(sim, f"/providerAccounts/{pa_id}", token)) == "Y800"
    assert api(sim, "/accounts", token).json() == {}


def test_accounts_numbers_and_balances(sim):
    token, pa_id = link(sim)
    plain = accounts_of(sim, token, pa_id)
    assert all("fullAccountNumberList" not in a for a in plain)
    accounts = accounts_of(sim, token, pa_id, include="fullAccountNumberList")
    by_name = {a["accountName"]: a for a in accounts}
    current = by_name["Business Current Account"]
    iban = current["fullAccountNumberList"]["paymentAccountNumber"]
    assert data.is_valid_iban(iban) and iban.startswith("BE")
    assert current["accountNumber"] == "xxxx" + iban[-4:]
    assert "paymentAccountNumber" not in by_name["Dollar Account"]["fullAccountNumberList"]
    assert by_name["Business Savings Account"]["accountType"] == "SAVINGS"
    expected = sim.expected_balances(iban)
    assert Decimal(repr(current["currentBalance"]["amount"])) == expected["current"]
    assert Decimal(repr(current["availableBalance"]["amount"])) == expected["available"]
    booked = sim.expected_booked(iban, sim.config()["first_day"], sim.today)
    signed = sum(Decimal(repr(t["amount"].get("convertedAmount", t["amount"]["amount"])))
                 * (1 if t["baseType"] == "CREDIT" else -1) for t in booked)
    assert expected["current"] == Decimal("5200.00") + signed
    assert error_of(api(sim, "/accounts", token, params={"include": "secrets"})) == "Y800"
    too_many = ",".join(str(i) for i in range(1, 102))
    assert error_of(api(sim, "/transactions", token, params={"accountId": too_many})) == "Y824"


# ------------------------------------------------------------------------------ transactions
def test_transactions_paging_count_and_order(sim):
    sim.configure(txns_per_day={"EUR": 12})
    token, pa_id = link(sim)
    account_id = accounts_of(sim, token, pa_id)[0]["id"]
    since = (sim.today - timedelta(days=60)).isoformat()
    count = api(sim, "/transactions/count", token, params={
        "accountId": account_id, "fromDate": since}).json()["transaction"]["TOTAL"]["count"]
    assert count == 12 * 61 + 12
    first = api(sim, "/transactions", token, params={"accountId": account_id, "fromDate": since,
                                                    "top": 300})
    assert 'rel="next"' in first.headers["Link"] and "skip=300" in first.headers["Link"]
    items = all_transactions(sim, token, account_id, top=300, fromDate=since)
    assert len(items) == count == len({t["id"] for t in items})
    keys = [(t["date"], t["id"]) for t in items]
    assert keys == sorted(keys, reverse=True)  # newest first
    default = api(sim, "/transactions", token, params={"accountId": account_id}).json()
    assert min(t["date"] for t in default["transaction"]) == (
        sim.today - timedelta(days=30)).isoformat()
    credits = api(sim, "/transactions", token, params={
        "accountId": account_id, "fromDate": since, "baseType": "CREDIT"}).json()["transaction"]
    assert credits and {t["baseType"] for t in credits} == {"CREDIT"}
    assert all(t["amount"]["amount"] > 0 for t in items)
    rent = api(sim, "/transactions", token, params={
        "accountId": account_id, "fromDate": since, "keyword": "immo louise"}).json()
    assert all("IMMO LOUISE" in t["description"]["original"] for t in rent["transaction"])


@pytest.mark.parametrize("params, code", [
    ({"top": 0}, "Y804"), ({"top": 501}, "Y804"), ({"skip": -1}, "Y800"),
    ({"fromDate": "2024-13-01"}, "Y800"), ({"toDate": "yesterday"}, "Y800"),
    ({"fromDate": "2024-05-10", "toDate": "2024-05-01"}, "Y809"),
    ({"container": "bank,loan"}, "Y805"), ({"baseType": "BOTH"}, "Y800"),
])
def test_transaction_validation_errors(sim, params, code):
    token = token_for(sim)
    response = api(sim, "/transactions", token, params=params)
    assert response.status_code == 400 and error_of(response) == code


def test_future_from_date_and_empty_answers(sim):
    token, pa_id = link(sim)
    account_id = accounts_of(sim, token, pa_id)[0]["id"]
    future = (sim.today + timedelta(days=2)).isoformat()
    assert error_of(api(sim, "/transactions", token, params={"fromDate": future})) == "Y802"
    old = {"accountId": account_id, "fromDate": "2001-01-01", "toDate": "2001-01-31"}
    assert api(sim, "/transactions", token, params=old).json() == {}
    assert api(sim, "/transactions/count", token, params=old).json() == {
        "transaction": {"TOTAL": {"count": 0}}}


def test_pending_posts_under_a_new_id(sim):
    token, pa_id = link(sim)
    account_id = accounts_of(sim, token, pa_id)[0]["id"]
    today = sim.today.isoformat()
    pending = [t for t in all_transactions(sim, token, account_id, fromDate=today)
               if t["status"] == "PENDING"]
    assert len(pending) == 3 and all("postDate" not in t for t in pending)
    assert all(t["date"] == t["transactionDate"] == today for t in pending)
    sim.advance_days(1)
    token = token_for(sim)  # a day later the 30-minute token has expired
    after = all_transactions(sim, token, account_id, fromDate=today)
    posted = [t for t in after if t["status"] == "POSTED" and t["transactionDate"] == today]
    assert len(posted) == 3
    assert not {t["id"] for t in pending} & {t["id"] for t in after}
    assert sorted(t["amount"]["amount"] for t in posted) == sorted(
        t["amount"]["amount"] for t in pending)
    assert all(t["postDate"] == t["date"] == sim.today.isoformat() for t in posted)


def test_data_is_deterministic_and_valid():
    with YodleeServer(port=0) as one, YodleeServer(port=0) as two:
        iban = data.ACCOUNTS[20001][0]["iban"]
        first = one.expected_booked(iban, one.today - timedelta(days=20), one.today)
        second = two.expected_booked(iban, two.today - timedelta(days=20), two.today)
        strip = [{k: v for k, v in t.items() if k != "lastUpdated"} for t in first]
        assert strip == [{k: v for k, v in t.items() if k != "lastUpdated"} for t in second]
    for specs in data.ACCOUNTS.values():
        for spec in specs:
            assert spec["iban"] is None or data.is_valid_iban(spec["iban"])
    references = [ref for t in first for ref in t["description"]["original"].split()
                  if ref.startswith("+++")]
    assert references
    for ref in references:
        digits = ref.strip("+").replace("/", "")
        assert (int(digits[:10]) % 97 or 97) == int(digits[10:])
    assert data.rf_reference("INV202400123").startswith("RF")


def test_expired_and_revoked_links_freeze_their_data(sim):
    token, pa_id = link(sim)
    account_id = accounts_of(sim, token, pa_id)[0]["id"]
    assert sim.revoke_consent(pa_id)
    dataset = api(sim, f"/providerAccounts/{pa_id}", token).json()[
        "providerAccount"][0]["dataset"][0]
    assert dataset["additionalStatus"] == "CONSENT_REVOKED"
    assert dataset["updateEligibility"] == "DISALLOW_UPDATE"
    before = all_transactions(sim, token, account_id, fromDate=sim.today.isoformat())
    sim.advance_days(2)
    token = token_for(sim)
    later = all_transactions(sim, token, account_id,
                             fromDate=(sim.today - timedelta(days=2)).isoformat())
    assert {t["id"] for t in later} == {t["id"] for t in before}  # nothing new after revocation
    assert api(sim, "/consents", token).json()["consent"][0]["consentStatus"] == "REVOKED"
    assert api(sim, "/consents", token).json()["consent"][0]["revokeDate"]


def test_consent_expires_with_the_clock(sim):
    token, pa_id = link(sim, provider_id=20002)  # 90-day consent
    sim.advance_days(91)
    token = token_for(sim)
    detail = api(sim, f"/providerAccounts/{pa_id}", token).json()["providerAccount"][0]
    assert detail["status"] == "FAILED"
    assert detail["dataset"][0]["additionalStatus"] == "CONSENT_EXPIRED"


# ------------------------------------------------------------------------------ faults, limits
@pytest.mark.parametrize("kind, options, status, code", [
    ("http_500", {}, 500, "Y902"),
    ("http_503", {"seconds": 7}, 503, "Y902"),
    ("token_expired", {}, 401, "Y008"),
    ("api_error", {"code": "Y807"}, 400, "Y807"),
    ("api_error", {"code": "Y003"}, 401, "Y003"),
])
def test_error_faults(sim, kind, options, status, code):
    token = token_for(sim)
    sim.add_fault(kind, path="/providers", **options)
    response = api(sim, "/providers", token)
    assert response.status_code == status and error_of(response) == code
    assert response.json()["errorMessage"] == ERRORS[code][1]
    if kind == "http_503":
        assert response.headers["Retry-After"] == "7"
    assert api(sim, "/providers", token).status_code == 200  # times=1


def test_rate_limit_fault_and_enforced_limit(sim):
    token = token_for(sim)
    sim.add_fault("rate_limit", seconds=12)
    limited = api(sim, "/providers", token)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "12"
    assert "errorCode" not in limited.json() and "12 seconds" in limited.json()["errorMessage"]
    sim.add_fault("rate_limit", seconds=86400)
    daily = api(sim, "/providers", token)
    assert daily.status_code == 429 and "Retry-After" not in daily.headers
    assert "try after 24 hours" in daily.json()["errorMessage"]
    sim.configure(rate_limit_per_minute=3)
    answers = [api(sim, "/providers", token).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    other = token_for(sim, "another-user")  # the limit is per user
    assert api(sim, "/providers", other).status_code == 200
    sim.advance_days(1)  # the window has passed
    assert api(sim, "/providers", token_for(sim)).status_code == 200


def test_delay_timeout_and_malformed_json(sim):
    token = token_for(sim)
    sim.add_fault("delay", seconds=0.2, path="/providers")
    started = time.monotonic()
    assert api(sim, "/providers", token).status_code == 200
    assert time.monotonic() - started >= 0.2
    sim.add_fault("timeout", seconds=2, path="/providers")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{sim.api_url}/providers", timeout=(1, 0.3), headers={
            **VERSION, "Authorization": f"Bearer {token}"})
    sim.add_fault("malformed_json", path="/providers")
    broken = api(sim, "/providers", token)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()


@pytest.mark.parametrize("kind", sorted(STATUS_FAULTS))
def test_status_faults_show_in_the_datasets(sim, kind):
    token, pa_id = link(sim)
    account_id = accounts_of(sim, token, pa_id)[0]["id"]
    sim.add_fault(kind, times=None)
    assert api(sim, "/providers", token).status_code == 200  # does not match: no dataset
    status, additional, eligibility = STATUS_FAULTS[kind]
    detail = api(sim, f"/providerAccounts/{pa_id}", token).json()["providerAccount"][0]
    assert (detail["status"], detail["dataset"][0]["additionalStatus"],
            detail["dataset"][0]["updateEligibility"]) == (status, additional, eligibility)
    account = api(sim, f"/accounts/{account_id}", token).json()["account"][0]
    assert account["dataset"][0]["additionalStatus"] == additional
    sim.clear_faults()
    detail = api(sim, f"/providerAccounts/{pa_id}", token).json()["providerAccount"][0]
    assert detail["status"] == "SUCCESS"


def test_fault_filters_skip_consent_and_validation(sim):
    token, pa_id = link(sim)
    other_token, other_pa = link(sim, "user-two")
    sim.add_fault("dataset_status", code="TECH_ERROR", consent_id=other_pa, times=None)
    mine = api(sim, f"/providerAccounts/{pa_id}", token).json()["providerAccount"][0]
    theirs = api(sim, f"/providerAccounts/{other_pa}", other_token).json()["providerAccount"][0]
    assert mine["status"] == "SUCCESS" and theirs["dataset"][0]["additionalStatus"] == "TECH_ERROR"
    sim.clear_faults()
    sim.add_fault("http_500", skip=1, times=2, path="/providers")
    codes = [api(sim, "/providers", token).status_code for _ in range(4)]
    assert codes == [200, 500, 500, 200]
    assert sim.faults()[0]["hits"] == 2 and sim.stats()["faults_triggered"] == 3
    with pytest.raises(ValueError):
        sim.add_fault("earthquake")
    with pytest.raises(ValueError):
        sim.add_fault("api_error", code="Y999")
    with pytest.raises(ValueError):
        sim.add_fault("dataset_status", code="ALL_GOOD")
    assert set(FAULT_KINDS) >= {"delay", "timeout", "http_500", "rate_limit", "malformed_json",
                                "consent_expired", "user_must_be_present"}


def test_admin_http_api_and_stats(sim):
    base = sim.url
    assert requests.post(f"{base}/_sim/faults", json={"kind": "http_500", "path": "/providers"},
                         timeout=5).status_code == 201
    assert requests.get(f"{base}/_sim/faults", timeout=5).json()["faults"][0]["kind"] == "http_500"
    assert requests.post(f"{base}/_sim/faults", json={"kind": "x"}, timeout=5).status_code == 400
    assert requests.delete(f"{base}/_sim/faults", timeout=5).status_code == 204
    assert sim.faults() == []
    clock = requests.post(f"{base}/_sim/clock", json={"advance_days": 2}, timeout=5).json()
    assert clock["today"] == sim.today.isoformat()
    config = requests.post(f"{base}/_sim/config", json={"txns_per_day": {"USD": 4}},
                           timeout=5).json()["config"]
    assert config["txns_per_day"]["USD"] == 4 and sim.config()["txns_per_day"]["USD"] == 4
    token, pa_id = link(sim)
    assert requests.get(f"{base}/_sim/consents", timeout=5).json()["consents"][0]["id"] == \
        str(pa_id)
    revoked = requests.post(f"{base}/_sim/consents/{pa_id}/revoke", timeout=5).json()
    assert revoked["consent"]["revoked"] is True
    stats = requests.get(f"{base}/_sim/stats", timeout=5).json()
    assert stats["requests"]["POST /auth/token"] == 1 and not any(
        key.startswith(("GET /_sim", "POST /_sim")) for key in stats["requests"])
    assert requests.post(f"{base}/_sim/reset", timeout=5).status_code == 204
    assert sim.consents() == [] and sim.stats()["total"] == 0
    assert sim.config()["txns_per_day"]["USD"] == 1


def test_expected_helpers_match_the_api(sim):
    token, pa_id = link(sim)
    accounts = accounts_of(sim, token, pa_id, include="fullAccountNumberList")
    current = accounts[0]
    iban = current["fullAccountNumberList"]["paymentAccountNumber"]
    since = sim.today - timedelta(days=10)
    api_booked = [t for t in all_transactions(sim, token, current["id"],
                                              fromDate=since.isoformat())
                  if t["status"] == "POSTED"]
    by_iban = sim.expected_booked(iban, since, sim.today)
    by_id = sim.expected_booked(current["id"], since, sim.today)
    assert [t["id"] for t in by_iban] == [t["id"] for t in by_id] == [t["id"] for t in api_booked]
    assert by_id[0]["accountId"] == current["id"]
    assert {t["id"] for t in sim.expected_pending(iban)} == {
        t["id"] for t in all_transactions(sim, token, current["id"],
                                          fromDate=sim.today.isoformat())
        if t["status"] == "PENDING"}
    with pytest.raises(KeyError):
        sim.expected_booked("XX00NOPE", since, sim.today)


def test_stop_is_idempotent_and_ends_a_sleeping_timeout():
    server = YodleeServer(port=0).start()
    token = token_for(server)
    server.add_fault("timeout", seconds=30, path="/providers")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{server.api_url}/providers", timeout=(1, 0.3), headers={
            **VERSION, "Authorization": f"Bearer {token}"})
    server.stop()
    server.stop()
    assert not server.running and time.monotonic() - started < 5
