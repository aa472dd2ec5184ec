"""The Ponto Connect simulator answers as its README and the Ponto Connect OpenAPI document say
(raw HTTPS with the client certificate, no adapter)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import jsonschema
import pytest
import requests

from services.pkce import new_pkce_pair
from simulators.ponto import FAULT_KINDS, PontoServer, simulate_user
from simulators.ponto import data

REDIRECT = "http://127.0.0.1:8069/cb"
SPEC_PATH = "/work/shared/reference/specs/ponto-connect-openapi.json"
CURRENT, SAVINGS, USD = (spec["iban"] for spec in data.ACCOUNTS)
LONG_TTL = 86400 * 365  # access tokens that survive moving the simulated clock
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


class Client:
    """requests with the application's certificate, the simulator's CA and a bearer token."""

    def __init__(self, server, token=None, cert=True):
        self.server = server
        self.token = token
        self.cert = (server.tls["client_cert"], server.tls["client_key"]) if cert else None

    def __call__(self, method, path, token=None, headers=None, **kwargs):
        token = token or self.token
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("https://") else f"{self.server.url}{path}"
        return requests.request(method, url, cert=self.cert, verify=self.server.tls["ca"],
                                headers=headers, timeout=5, **kwargs)

    def get(self, path, **kwargs):
        return self("GET", path, **kwargs)

    def token_request(self, auth=None, **form):
        server = self.server
        return self("POST", "/oauth2/token", data=form,
                    auth=auth or (server.client_id, server.client_secret))


def authorize_url(server, **overrides):
    params = {"client_id": server.client_id, "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "ai name offline_access", "state": "st-1",
              "code_challenge": "x" * 43, "code_challenge_method": "S256"}
    params.update(overrides)
    params = {key: value for key, value in params.items() if value is not None}
    return f"{server.authorization_url}/oauth2/auth?{urlencode(params)}"


def authorize(server, accounts=None, scope="ai name offline_access"):
    """Allow on the authorization page and exchange the code: the token answer."""
    verifier, challenge = new_pkce_pair()
    callback = simulate_user(authorize_url(server, code_challenge=challenge, scope=scope),
                             accounts=accounts)
    assert callback["state"] == "st-1" and callback["scope"] == scope
    response = Client(server).token_request(grant_type="authorization_code",
                                            code=callback["code"], redirect_uri=REDIRECT,
                                            code_verifier=verifier, client_id=server.client_id)
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response):
    body = response.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1
    error = body["errors"][0]
    assert set(error) == {"code", "detail", "meta"} and error["meta"]["requestId"]
    return error["code"]


def walk(api, path, limit=100):
    items, after, pages = [], None, 0
    while True:
        params = {"page[limit]": limit, **({"page[after]": after} if after else {})}
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["data"])
        pages += 1
        if "next" not in body["links"]:
            assert body["meta"]["paging"]["after"] is None
            return items, pages, body
        after = body["meta"]["paging"]["after"]
        assert after == body["data"][-1]["id"]


def account_id(iban):
    return data.find_account(iban)["id"]


# ------------------------------------------------------------------------------ OpenAPI fidelity
def _relax(node):
    """The spec (generated) types nullable string attributes as "object" and never allows null,
    while its own examples carry strings and nulls there: accept string/null for leaf objects
    and null for every attribute."""
    if isinstance(node, dict):
        node = {key: _relax(value) for key, value in node.items()}
        if "properties" in node and isinstance(node["properties"], dict):
            attributes = node["properties"].get("attributes")
            if isinstance(attributes, dict) and isinstance(attributes.get("properties"), dict):
                for prop in attributes["properties"].values():
                    kind = prop.get("type")
                    if kind == "object" and "properties" not in prop:
                        prop["type"] = ["object", "string", "null"]
                    elif isinstance(kind, str):
                        prop["type"] = [kind, "null"]
        return node
    if isinstance(node, list):
        return [_relax(item) for item in node]
    return node


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH, encoding="utf-8") as handle:
        document = json.load(handle)
    document["components"] = _relax(document["components"])
    return document


def validate(spec, path, method, status, payload):
    """``payload`` against the response schema of ``method path`` (``$ref`` resolved)."""
    schema = spec["paths"][path][method]["responses"][str(status)]["content"][
        "application/json"]["schema"]
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": spec["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(payload)
    return payload


def test_relaxation_still_rejects_wrong_shapes(spec):
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "/accounts", "get", 200, {"data": [{"type": "account"}]})  # no id
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "/accounts/{accountId}/transactions", "get", 200, {"data": [{
            "type": "transaction", "id": "3e883ad5-9d60-4896-834b-70897a6f2236",
            "attributes": {"amount": "-12.30"}}]})  # a string amount
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "/accounts/{id}", "get", 200, {"data": {
            "type": "account", "id": "not-a-uuid", "attributes": {}}})


def test_responses_match_the_openapi_schemas(ponto, spec):
    tokens = authorize(ponto)
    api = Client(ponto, tokens["access_token"])
    institutions = validate(spec, "/financial-institutions", "get", 200,
                            api.get("/financial-institutions").json())
    first = institutions["data"][0]["id"]
    validate(spec, "/financial-institutions/{id}", "get", 200,
             api.get(f"/financial-institutions/{first}").json())
    validate(spec, "/userinfo", "get", 200, api.get("/userinfo").json())
    accounts = validate(spec, "/accounts", "get", 200, api.get("/accounts").json())
    assert len(accounts["data"]) == 3
    current = account_id(CURRENT)
    validate(spec, "/accounts/{id}", "get", 200, api.get(f"/accounts/{current}").json())
    listed = validate(spec, "/accounts/{accountId}/transactions", "get", 200,
                      api.get(f"/accounts/{current}/transactions").json())
    txn = listed["data"][0]["id"]
    validate(spec, "/accounts/{accountId}/transactions/{id}", "get", 200,
             api.get(f"/accounts/{current}/transactions/{txn}").json())
    # Pending transactions are absent from this copy of the spec; same attributes as booked ones.
    pending = api.get(f"/accounts/{current}/pending-transactions").json()
    validate(spec, "/accounts/{accountId}/transactions", "get", 200, pending)
    assert {item["type"] for item in pending["data"]} == {"pendingTransaction"}
    created = api("POST", "/synchronizations", json={"data": {
        "type": "synchronization", "attributes": {
            "resourceType": "account", "resourceId": current, "subtype": "accountTransactions",
            "customerIpAddress": "192.0.2.7"}}})
    assert created.status_code == 201
    sync_id = validate(spec, "/synchronizations", "post", 201, created.json())["data"]["id"]
    validate(spec, "/synchronizations/{id}", "get", 200,
             api.get(f"/synchronizations/{sync_id}").json())
    validate(spec, "/synchronizations/{synchronizationId}/updated-transactions", "get", 200,
             api.get(f"/synchronizations/{sync_id}/updated-transactions").json())
    reauthorization = api("POST", f"/accounts/{current}/reauthorization-requests", json={
        "data": {"type": "reauthorizationRequest", "attributes": {"redirectUri": REDIRECT}}})
    assert reauthorization.status_code == 201
    validate(spec, "/accounts/{accountId}/reauthorization-requests", "post", 201,
             reauthorization.json())
    revoked = api("DELETE", f"/accounts/{account_id(SAVINGS)}")
    validate(spec, "/accounts/{id}", "delete", 200, revoked.json())
    client_token = Client(ponto).token_request(grant_type="client_credentials").json()
    deleted = api("DELETE", f"/organizations/{data.ORGANIZATION_ID}/integration",
                  token=client_token["access_token"])
    validate(spec, "/organizations/{organizationId}/integration", "delete", 200, deleted.json())


def test_example_shapes_of_the_reference(ponto):
    """Attribute names and JSON types as in the spec's examples and the reference §4.8."""
    api = Client(ponto, authorize(ponto)["access_token"])
    account = api.get(f"/accounts/{account_id(CURRENT)}").json()["data"]
    spec_example = {"authorizationExpirationExpectedAt", "authorizedAt", "availableBalance",
                    "availableBalanceChangedAt", "availableBalanceReferenceDate",
                    "availableBalanceVariationObservedAt", "currency", "currentBalance",
                    "currentBalanceChangedAt", "currentBalanceReferenceDate",
                    "currentBalanceVariationObservedAt", "deprecated", "description",
                    "holderName", "internalReference", "product", "reference", "referenceType",
                    "subtype"}
    assert set(account["attributes"]) == spec_example
    assert isinstance(account["attributes"]["currentBalance"], float)
    assert account["relationships"]["financialInstitution"]["data"]["type"] == \
        "financialInstitution"
    assert account["meta"]["latestSynchronization"]["type"] == "synchronization"
    txn = api.get(f"/accounts/{account_id(CURRENT)}/transactions").json()["data"][0]
    assert set(txn["attributes"]) >= {
        "amount", "currency", "executionDate", "valueDate", "description",
        "remittanceInformation", "remittanceInformationType", "counterpartName",
        "counterpartReference", "bankTransactionCode", "endToEndId", "mandateId", "creditorId",
        "internalReference", "additionalInformation", "cardReference", "cardReferenceType",
        "fee", "digest", "createdAt", "updatedAt", "proprietaryBankTransactionCode",
        "purposeCode"}
    assert isinstance(txn["attributes"]["amount"], float)
    assert txn["attributes"]["executionDate"].endswith("T00:00:00.000Z")
    assert txn["relationships"]["account"]["data"] == {"type": "account",
                                                      "id": account_id(CURRENT)}


# ------------------------------------------------------------------------------ mutual TLS
def test_api_refuses_a_client_without_certificate(ponto):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{ponto.url}/financial-institutions", verify=ponto.tls["ca"], timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{ponto.url}/financial-institutions", verify=ponto.tls["ca"], timeout=5,
                     cert=(ponto.tls["untrusted_cert"], ponto.tls["untrusted_key"]))
    assert ponto.stats()["total"] == 0  # refused before any HTTP
    with_cert = Client(ponto).get("/financial-institutions")
    assert with_cert.status_code == 200
    # The browser side needs no client certificate.
    page = requests.get(f"{ponto.authorization_url}/", verify=ponto.tls["ca"], timeout=5)
    assert page.status_code == 200 and "Ponto" in page.text


def test_server_certificate_is_only_trusted_through_the_simulators_ca(ponto):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{ponto.authorization_url}/", timeout=5,
                     verify=ponto.tls["untrusted_cert"])


def test_certificate_files_are_private_and_removed_at_stop():
    server = PontoServer().start()
    paths = dict(server.tls)
    try:
        for path in paths.values():
            assert os.stat(path).st_mode & 0o077 == 0
        with open(paths["client_key_encrypted"], encoding="ascii") as handle:
            assert "ENCRYPTED" in handle.read()
    finally:
        server.stop()
    assert not any(os.path.exists(path) for path in paths.values())


# ------------------------------------------------------------------------------ authorization page
def test_authorization_page_lists_accounts_and_buttons(ponto):
    page = requests.get(authorize_url(ponto), verify=ponto.tls["ca"], timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for spec in data.ACCOUNTS:
        assert f'value="{spec["id"]}" checked' in page.text and spec["iban"] in page.text
    assert 'value="approve"' in page.text and 'value="cancel"' in page.text
    assert ponto.stats()["requests"] == {"GET /oauth2/auth": 1}


@pytest.mark.parametrize("overrides, status", [
    ({"client_id": "someone-else"}, 400),
    ({"redirect_uri": "ftp://example/cb"}, 400),
    ({"redirect_uri": None}, 400),
])
def test_authorization_page_refuses_bad_clients(ponto, overrides, status):
    page = requests.get(authorize_url(ponto, **overrides), verify=ponto.tls["ca"], timeout=5,
                        allow_redirects=False)
    assert page.status_code == status and "Invalid request" in page.text


@pytest.mark.parametrize("overrides, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "pi"}, "invalid_scope"),
    ({"scope": "ai admin"}, "invalid_scope"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"state": None}, "invalid_request"),
])
def test_authorization_errors_go_back_to_the_redirect_uri(ponto, overrides, error):
    callback = simulate_user(authorize_url(ponto, **overrides))
    assert callback["error"] == error and callback["error_description"]
    assert "code" not in callback


def test_registered_redirect_uris_and_escaping():
    with PontoServer(redirect_uris=[REDIRECT]) as server:
        other = requests.get(authorize_url(server, redirect_uri="http://127.0.0.1:9/evil"),
                             verify=server.tls["ca"], timeout=5)
        assert other.status_code == 400 and "not registered" in other.text
        page = requests.get(authorize_url(server, state='"><script>x</script>'),
                            verify=server.tls["ca"], timeout=5)
        assert page.status_code == 200 and "<script>x" not in page.text


def test_cancel_and_account_selection(ponto):
    cancelled = simulate_user(authorize_url(ponto), "cancel")
    assert cancelled == {"error": "access_denied",
                         "error_description": "The resource owner denied the request",
                         "state": "st-1"}
    assert ponto.integrations() == [] and ponto.authorizations() == {}
    with pytest.raises(RuntimeError):
        simulate_user(authorize_url(ponto), accounts=[])  # nothing selected: refused page
    tokens = authorize(ponto, accounts=[USD])
    listed = Client(ponto, tokens["access_token"]).get("/accounts").json()["data"]
    assert [item["attributes"]["reference"] for item in listed] == [USD]
    assert list(ponto.authorizations()) == [account_id(USD)]


# ------------------------------------------------------------------------------ tokens
def test_token_endpoint_checks_the_client(ponto):
    client = Client(ponto)
    wrong = client.token_request(auth=(ponto.client_id, "nope"), grant_type="client_credentials")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    assert "nope" not in wrong.text
    anonymous = client("POST", "/oauth2/token", data={"grant_type": "client_credentials"})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    mismatch = client.token_request(grant_type="client_credentials", client_id="other")
    assert mismatch.status_code == 401
    grant = client.token_request(grant_type="password")
    assert grant.status_code == 400 and grant.json() == {
        "error": "unsupported_grant_type",
        "error_description": "The authorization grant type is not supported."}


def test_client_certificate_must_belong_to_the_client():
    with PontoServer(client_id="app-a") as server:
        client = Client(server)
        assert client.token_request(grant_type="client_credentials").status_code == 200
        server.client_id = "app-b"  # the certificate (CN app-a) is now another application's
        refused = client.token_request(grant_type="client_credentials")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert "certificate" in refused.json()["error_description"]


def test_code_exchange_checks(ponto):
    client = Client(ponto)
    verifier, challenge = new_pkce_pair()

    def code():
        return simulate_user(authorize_url(ponto, code_challenge=challenge))["code"]

    def exchange(value, **overrides):
        form = {"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT,
                "code_verifier": verifier}
        form.update(overrides)
        return client.token_request(**{k: v for k, v in form.items() if v is not None})

    assert exchange(code(), code_verifier=new_pkce_pair()[0]).json()["error"] == "invalid_grant"
    assert exchange(code(), code_verifier=None).json()["error"] == "invalid_grant"
    assert exchange(code(), redirect_uri="http://127.0.0.1:8069/other").status_code == 400
    single = code()
    assert exchange(single).status_code == 200
    again = exchange(single)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    late = code()
    ponto.advance_days(1)  # the code lived 10 minutes
    assert exchange(late).json()["error"] == "invalid_grant"
    assert len(ponto.integrations()) == 1


def test_refresh_tokens_rotate_and_access_tokens_expire(ponto):
    tokens = authorize(ponto)
    assert tokens["expires_in"] == 1799 and tokens["token_type"] == "bearer"
    assert tokens["scope"] == "ai name offline_access"
    client = Client(ponto)
    assert client.get("/accounts", token=tokens["access_token"]).status_code == 200
    ponto.advance_days(1)
    expired = client.get("/accounts", token=tokens["access_token"])
    assert expired.status_code == 401 and error_of(expired) == "unauthorized"
    fresh = client.token_request(grant_type="refresh_token",
                                 refresh_token=tokens["refresh_token"]).json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert client.get("/accounts", token=fresh["access_token"]).status_code == 200
    reused = client.token_request(grant_type="refresh_token",
                                  refresh_token=tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert client.token_request(grant_type="refresh_token",
                                refresh_token=fresh["refresh_token"]).status_code == 200


def test_no_refresh_token_without_offline_access(ponto):
    tokens = authorize(ponto, scope="ai")
    assert "refresh_token" not in tokens
    info = Client(ponto, tokens["access_token"]).get("/userinfo").json()
    assert info["sub"] == data.ORGANIZATION_ID and "name" not in info


def test_revoking_a_refresh_token_ends_its_grant(ponto):
    tokens = authorize(ponto)
    client = Client(ponto)
    revoked = client("POST", "/oauth2/revoke", data={"token": tokens["refresh_token"]},
                     auth=(ponto.client_id, ponto.client_secret))
    assert revoked.status_code == 200 and revoked.content == b""
    assert client.get("/accounts", token=tokens["access_token"]).status_code == 401
    assert client.token_request(grant_type="refresh_token",
                                refresh_token=tokens["refresh_token"]).status_code == 400
    unknown = client("POST", "/oauth2/revoke", data={"token": "whatever"},
                     auth=(ponto.client_id, ponto.client_secret))
    assert unknown.status_code == 200
    assert client("POST", "/oauth2/revoke", data={"token": "x"}).status_code == 401


def test_integration_deletion_needs_the_application_token(ponto):
    tokens = authorize(ponto)
    client = Client(ponto)
    path = f"/organizations/{data.ORGANIZATION_ID}/integration"
    user = client("DELETE", path, token=tokens["access_token"])
    assert user.status_code == 401
    application = client.token_request(grant_type="client_credentials").json()["access_token"]
    assert client.get("/accounts", token=application).status_code == 401  # no user data
    assert client("DELETE", path, token=application).status_code == 200
    assert ponto.integrations()[0]["revoked"] is True
    assert client.get("/accounts", token=tokens["access_token"]).status_code == 401
    refused = client.token_request(grant_type="refresh_token",
                                   refresh_token=tokens["refresh_token"])
    assert refused.json()["error"] == "invalid_grant"
    again = client("DELETE", path, token=application)
    assert again.status_code == 404 and error_of(again) == "resourceNotFound"


def test_revoke_integration_from_python_and_reconnect(ponto):
    first = authorize(ponto)
    assert ponto.revoke_integration() is True and ponto.revoke_integration() is False
    assert Client(ponto).get("/accounts", token=first["access_token"]).status_code == 401
    second = authorize(ponto)
    listed = Client(ponto, second["access_token"]).get("/accounts").json()["data"]
    assert {item["id"] for item in listed} == {spec["id"] for spec in data.ACCOUNTS}
    assert [i["revoked"] for i in ponto.integrations()] == [True, False]


# ------------------------------------------------------------------------------ data
def test_institutions_paging_and_filters(ponto):
    client = Client(ponto)
    everything, pages, _body = walk(client, "/financial-institutions", limit=3)
    assert pages == 3 and len(everything) == len(data.INSTITUTIONS) == 7
    assert len({item["id"] for item in everything}) == 7
    international = next(i for i in everything if i["attributes"]["country"] is None)
    assert international["attributes"]["name"] == "Super Sandbox Bank"
    logo = requests.get(everything[0]["attributes"]["logoUrl"], verify=ponto.tls["ca"], timeout=5)
    assert logo.status_code == 200 and logo.headers["Content-Type"] == "image/svg+xml"
    belgian = client.get("/financial-institutions", params={"filter[country][eq]": "BE"})
    assert {i["attributes"]["country"] for i in belgian.json()["data"]} == {"BE"}
    bad_token = client.get("/financial-institutions", token="nope")
    assert bad_token.status_code == 401
    missing = client.get(f"/financial-institutions/{data.make_uuid('nothing')}")
    assert missing.status_code == 404 and error_of(missing) == "resourceNotFound"


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_page_limit_is_validated(ponto, limit):
    response = Client(ponto).get("/financial-institutions", params={"page[limit]": limit})
    assert response.status_code == 400 and error_of(response) == "validationError"


def test_paging_forward_and_back(ponto):
    api = Client(ponto, authorize(ponto)["access_token"])
    path = f"/accounts/{account_id(CURRENT)}/transactions"
    default = api.get(path).json()
    assert default["meta"]["paging"]["limit"] == 10 and len(default["data"]) == 10
    assert default["links"]["next"].startswith(f"{ponto.url}{path}?page[after]=")
    second = api.get(path, params={"page[after]": default["data"][-1]["id"]}).json()
    assert "prev" in second["links"] and second["meta"]["paging"]["before"] == \
        second["data"][0]["id"]
    back = api.get(path, params={"page[before]": second["data"][0]["id"]}).json()
    assert [item["id"] for item in back["data"]] == [item["id"] for item in default["data"]]
    unknown = api.get(path, params={"page[after]": data.make_uuid("nope")})
    assert unknown.status_code == 400 and error_of(unknown) == "validationError"


def test_transactions_newest_first_complete_and_growing(ponto):
    ponto.set_today("2024-03-01")
    ponto.configure(access_token_ttl=LONG_TTL)
    api = Client(ponto, authorize(ponto)["access_token"])
    path = f"/accounts/{account_id(CURRENT)}/transactions"
    items, pages, body = walk(api, path)
    assert len(items) == 91 * 3 and pages == 3
    dates = [item["attributes"]["executionDate"] for item in items]
    assert dates == sorted(dates, reverse=True) and dates[0].startswith("2024-03-01")
    assert items == ponto.expected_booked(CURRENT, date(2023, 1, 1), date(2024, 3, 1))
    assert body["meta"]["latestSynchronization"]["attributes"]["subtype"] == \
        "accountTransactions"
    ponto.advance_days(2)
    grown, _pages, _body = walk(api, path)
    assert len(grown) == 93 * 3 and grown[6:] == items  # old days stay, two new ones on top
    usd, _pages, _body = walk(api, f"/accounts/{account_id(USD)}/transactions")
    assert len(usd) == 93 and {i["attributes"]["currency"] for i in usd} == {"USD"}


def test_pending_transactions_book_the_next_day_under_a_new_id(ponto):
    ponto.set_today("2024-04-10")
    ponto.configure(access_token_ttl=LONG_TTL)
    api = Client(ponto, authorize(ponto)["access_token"])
    current = account_id(CURRENT)
    pending = api.get(f"/accounts/{current}/pending-transactions").json()["data"]
    assert len(pending) == 3 and pending == ponto.expected_pending(CURRENT)
    assert {p["attributes"]["executionDate"][:10] for p in pending} == {"2024-04-10"}
    ponto.advance_days(1)
    assert api.get(f"/accounts/{current}/pending-transactions").json()["data"] != pending
    booked = api.get(f"/accounts/{current}/transactions",
                     params={"page[limit]": 3}).json()["data"]
    assert {b["attributes"]["executionDate"][:10] for b in booked} == {"2024-04-11"}
    assert not {b["id"] for b in booked} & {p["id"] for p in pending}

    def same(item):
        attrs = item["attributes"]
        return (attrs["amount"], attrs["counterpartName"], attrs["remittanceInformation"])

    assert sorted(map(same, booked), key=str) == sorted(map(same, pending), key=str)


def test_data_is_deterministic_valid_and_varied():
    first, second = PontoServer(today="2024-05-01"), PontoServer(today="2024-05-01")
    window = (date(2024, 2, 1), date(2024, 5, 1))
    assert first.expected_booked(CURRENT, *window)[0]["id"] == \
        second.expected_booked(CURRENT, *window)[0]["id"]
    items = first.expected_booked(CURRENT, *window) + first.expected_booked(USD, *window)
    attrs = [item["attributes"] for item in items]
    assert all(data.is_valid_iban(spec["iban"]) for spec in data.ACCOUNTS)
    ibans = {a["counterpartReference"] for a in attrs if a["counterpartReference"]}
    assert ibans and all(data.is_valid_iban(iban) for iban in ibans)
    structured = [a["remittanceInformation"] for a in attrs
                  if a["remittanceInformationType"] == "structured"]
    assert structured and all(map(data.is_valid_structured_communication, structured))
    assert any(a["amount"] > 0 for a in attrs) and any(a["amount"] < 0 for a in attrs)
    assert any(a["mandateId"] for a in attrs) and any(a["cardReference"] for a in attrs)
    rent = [a for a in attrs if a["counterpartName"] == "Immo Sainte-Catherine SA"]
    assert len(rent) == 4 and all(a["amount"] == -2150.0 for a in rent)  # the 1st of each month
    assert all(round(a["amount"], 2) == a["amount"] for a in attrs)


def test_balances_follow_the_transactions(ponto):
    ponto.set_today("2024-03-01")
    api = Client(ponto, authorize(ponto)["access_token"])
    account = api.get(f"/accounts/{account_id(CURRENT)}").json()["data"]["attributes"]
    expected = ponto.expected_balances(CURRENT)
    assert Decimal(str(account["currentBalance"])) == expected["current"]
    pending = sum(Decimal(str(p["attributes"]["amount"])) for p in ponto.expected_pending(CURRENT))
    assert expected["available"] == expected["current"] + pending
    assert Decimal(str(account["availableBalance"])) == expected["available"]
    assert account["currentBalanceReferenceDate"] == "2024-03-01T00:00:00.000Z"
    booked = sum(Decimal(str(b["attributes"]["amount"]))
                 for b in ponto.expected_booked(CURRENT, date(2023, 1, 1), date(2024, 3, 1)))
    assert expected["current"] == data.find_account(CURRENT)["opening_balance"] + booked


# ------------------------------------------------------------------------------ synchronizations
def sync(api, account, subtype="accountTransactions", ip="192.0.2.7"):
    attributes = {"resourceType": "account", "resourceId": account, "subtype": subtype}
    if ip:
        attributes["customerIpAddress"] = ip
    return api("POST", "/synchronizations", json={"data": {"type": "synchronization",
                                                           "attributes": attributes}})


def test_synchronization_lifecycle_and_cooldown(ponto):
    ponto.configure(access_token_ttl=LONG_TTL)
    api = Client(ponto, authorize(ponto)["access_token"])
    current = account_id(CURRENT)
    missing_ip = sync(api, current, ip=None)
    assert missing_ip.status_code == 400 and error_of(missing_ip) == "validationError"
    assert missing_ip.json()["errors"][0]["meta"]["attribute"] == "customerIpAddress"
    assert sync(api, current, subtype="everything").status_code == 400
    created = sync(api, current).json()["data"]
    assert created["attributes"]["status"] == "pending"
    assert created["attributes"]["customerOnline"] is True
    path = f"/synchronizations/{created['id']}"
    assert api.get(path).json()["data"]["attributes"]["status"] == "running"
    done = api.get(path).json()["data"]
    assert done["attributes"]["status"] == "success" and done["attributes"]["errors"] == []
    meta = api.get(f"/accounts/{current}/transactions").json()["meta"]
    assert meta["latestSynchronization"]["id"] == created["id"]
    again = sync(api, current)
    assert again.status_code == 400 and error_of(again) == "accountRecentlySynchronized"
    assert sync(api, current, subtype="accountDetails").status_code == 201  # other subtype
    ponto.advance_days(1)
    assert sync(api, current).status_code == 201
    foreign = sync(api, data.make_uuid("someone else's account"))
    assert foreign.status_code == 404


def test_expired_authorization(ponto):
    ponto.set_today("2024-01-10")
    tokens = authorize(ponto)
    ponto.advance_days(95)
    refreshed = Client(ponto).token_request(grant_type="refresh_token",
                                            refresh_token=tokens["refresh_token"])
    api = Client(ponto, refreshed.json()["access_token"])
    current = account_id(CURRENT)
    account = api.get(f"/accounts/{current}").json()["data"]
    latest = account["meta"]["latestSynchronization"]["attributes"]
    assert latest["status"] == "error" and latest["errors"][0]["code"] == "authorizationExpired"
    # Ponto keeps the data it has: nothing after the expiry day, no pending ones.
    expiry = account["attributes"]["authorizationExpirationExpectedAt"][:10]
    newest = api.get(f"/accounts/{current}/transactions").json()["data"][0]
    assert newest["attributes"]["executionDate"][:10] == expiry < ponto.today.isoformat()
    assert api.get(f"/accounts/{current}/pending-transactions").json()["data"] == []
    created = sync(api, current).json()["data"]
    api.get(f"/synchronizations/{created['id']}")
    failed = api.get(f"/synchronizations/{created['id']}").json()["data"]["attributes"]
    assert failed["status"] == "error" and failed["errors"][0]["code"] == "authorizationExpired"


def test_reauthorization_renews_the_accounts_of_the_bank(ponto):
    ponto.set_today("2024-01-10")
    ponto.configure(access_token_ttl=LONG_TTL)
    api = Client(ponto, authorize(ponto)["access_token"])
    before = ponto.authorizations()
    ponto.advance_days(30)
    current = account_id(CURRENT)
    bad = api("POST", f"/accounts/{current}/reauthorization-requests",
              json={"data": {"type": "reauthorizationRequest", "attributes": {}}})
    assert bad.status_code == 400 and error_of(bad) == "validationError"
    created = api("POST", f"/accounts/{current}/reauthorization-requests",
                  json={"redirectUri": REDIRECT + "?state=abc"}).json()["data"]
    link = created["links"]["redirect"]
    assert link.startswith(f"{ponto.authorization_url}/organizations/{data.ORGANIZATION_ID}/")
    assert simulate_user(link) == {"state": "abc"}
    after = ponto.authorizations()
    for iban in (CURRENT, SAVINGS):  # same bank
        assert after[account_id(iban)]["expires_at"][:10] == "2024-05-09"
    assert after[account_id(USD)] == before[account_id(USD)]
    with pytest.raises(RuntimeError):
        simulate_user(link)  # used
    cancelled = api("POST", f"/accounts/{account_id(USD)}/reauthorization-requests",
                    json={"redirectUri": REDIRECT}).json()["data"]["links"]["redirect"]
    assert simulate_user(cancelled, "cancel")["error"] == "access_denied"
    assert ponto.authorizations()[account_id(USD)] == before[account_id(USD)]


def test_revoking_an_account(ponto):
    api = Client(ponto, authorize(ponto)["access_token"])
    savings = account_id(SAVINGS)
    assert api("DELETE", f"/accounts/{savings}").status_code == 200
    assert api.get(f"/accounts/{savings}").status_code == 404
    assert len(api.get("/accounts").json()["data"]) == 2


def test_onboarding_incomplete(ponto):
    api = Client(ponto, authorize(ponto)["access_token"])
    ponto.configure(onboarding_complete=False)
    assert api.get("/userinfo").json()["onboardingComplete"] is False
    refused = api.get("/accounts")
    assert refused.status_code == 403 and error_of(refused) == "onboardingIncomplete"


# ------------------------------------------------------------------------------ limits and faults
def test_rate_limit_is_enforced(ponto):
    ponto.configure(rate_limit=3)
    client = Client(ponto)
    assert [client.get("/financial-institutions").status_code for _ in range(3)] == [200] * 3
    limited = client.get("/financial-institutions")
    assert limited.status_code == 429 and error_of(limited) == "tooManyRequests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_fault_kinds_answer_like_ponto(ponto):
    tokens = authorize(ponto)
    api = Client(ponto, tokens["access_token"])
    expected = {"http_500": (500, "internalServerError"), "http_503": (503, "serviceUnavailable"),
                "rate_limit": (429, "tooManyRequests"),
                "consent_expired": (403, "authorizationExpired"),
                "authorization_invalid": (403, "authorizationInvalid"),
                "user_must_be_present": (403, "onboardingIncomplete"),
                "access_token_invalid": (401, "unauthorized"),
                "resource_not_found": (404, "resourceNotFound"),
                "validation_error": (400, "validationError"),
                "client_id_invalid": (401, "clientIdInvalid"),
                "credentials_invalid": (401, "credentialsInvalid")}
    for kind, (status, code) in expected.items():
        ponto.add_fault(kind, path="/accounts", seconds=7 if kind == "rate_limit" else None)
        response = api.get("/accounts")
        assert (response.status_code, error_of(response)) == (status, code), kind
        if kind == "rate_limit":
            assert response.headers["Retry-After"] == "7"
    assert api.get("/accounts").status_code == 200
    ponto.add_fault("account_recently_synchronized")
    assert api.get("/accounts").status_code == 200  # only concerns synchronizations
    assert error_of(sync(api, account_id(CURRENT))) == "accountRecentlySynchronized"
    for kind, status, error in (("invalid_grant", 400, "invalid_grant"),
                                ("invalid_client", 401, "invalid_client")):
        ponto.add_fault(kind)
        refused = Client(ponto).token_request(grant_type="client_credentials")
        assert refused.status_code == status and refused.json()["error"] == error
    ponto.add_fault("authorization_code_invalid")
    refused = Client(ponto).token_request(grant_type="client_credentials")
    assert refused.status_code == 400 and error_of(refused) == "authorizationCodeInvalid"
    ponto.add_fault("malformed_json", path="/userinfo")
    with pytest.raises(ValueError):
        api.get("/userinfo").json()
    assert set(FAULT_KINDS) >= set(expected) | {"sync_pending", "sync_error", "delay", "timeout"}
    with pytest.raises(ValueError):
        ponto.add_fault("meteor")


def test_synchronization_faults(ponto):
    api = Client(ponto, authorize(ponto)["access_token"])
    ponto.configure(sync_polls=0)
    outcomes = {}
    for kind, iban in (("sync_pending", CURRENT), ("sync_error", SAVINGS),
                       ("authorization_invalid", USD)):
        ponto.add_fault(kind)
        created = sync(api, account_id(iban)).json()["data"]
        for _ in range(3):
            attributes = api.get(f"/synchronizations/{created['id']}").json()["data"]["attributes"]
        outcomes[kind] = attributes
    assert outcomes["sync_pending"]["status"] == "running"
    bank_down = outcomes["sync_error"]
    assert bank_down["status"] == "error"
    assert bank_down["errors"][0]["meta"]["financialInstitutionResponse"]["statusCode"] == 503
    assert outcomes["authorization_invalid"]["errors"][0]["code"] == "authorizationInvalid"


def test_fault_filters_skip_times_and_consent(ponto):
    tokens = authorize(ponto)
    api = Client(ponto, tokens["access_token"])
    ponto.add_fault("http_500", skip=1, times=2, path="/userinfo",
                    consent_id=data.ORGANIZATION_ID)
    statuses = [api.get("/userinfo").status_code for _ in range(4)]
    assert statuses == [200, 500, 500, 200]
    ponto.add_fault("http_500", consent_id="another-organization")
    assert api.get("/userinfo").status_code == 200
    ponto.clear_faults()
    ponto.add_fault("http_503", times=None, path="/accounts")
    assert [api.get("/accounts").status_code for _ in range(3)] == [503] * 3
    assert ponto.faults()[0]["hits"] == 3 and ponto.clear_faults() == 1
    started = time.monotonic()
    ponto.add_fault("delay", seconds=0.3)
    assert api.get("/userinfo").status_code == 200 and time.monotonic() - started >= 0.3


def test_timeout_fault_wakes_up_when_the_server_stops():
    server = PontoServer().start()
    server.add_fault("timeout", seconds=30, path="/financial-institutions")
    outcome = {}

    def call():
        try:
            Client(server).get("/financial-institutions")
            outcome["result"] = "answered"
        except requests.RequestException as exc:
            outcome["result"] = type(exc).__name__

    thread = threading.Thread(target=call)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    server.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert outcome["result"] == "ConnectionError"


# ------------------------------------------------------------------------------ admin API
def test_admin_api_python_and_http(ponto):
    admin = f"{ponto.authorization_url}/_sim"
    kwargs = {"verify": ponto.tls["ca"], "timeout": 5}
    assert requests.post(f"{admin}/clock", json={"today": "2024-02-28"},
                         **kwargs).json()["today"] == "2024-02-28"
    assert requests.post(f"{admin}/clock", json={"advance_days": 2},
                         **kwargs).json()["today"] == "2024-03-01"
    assert ponto.today == date(2024, 3, 1)
    config = requests.post(f"{admin}/config", json={"history_days": 30,
                                                    "txns_per_day": {"EUR": 5}},
                           **kwargs).json()["config"]
    assert config["history_days"] == 30 and config["txns_per_day"] == {"EUR": 5, "USD": 1}
    assert requests.post(f"{admin}/config", json={"history_days": 0}, **kwargs).status_code == 400
    assert requests.post(f"{admin}/config", json={"colour": 1}, **kwargs).status_code == 400
    with pytest.raises(ValueError):
        ponto.configure(txns_per_day={"GBP": 1})
    fault = requests.post(f"{admin}/faults", json={"kind": "http_500", "path": "/userinfo"},
                          **kwargs)
    assert fault.status_code == 201 and fault.json()["fault"]["kind"] == "http_500"
    assert len(requests.get(f"{admin}/faults", **kwargs).json()["faults"]) == 1
    assert requests.delete(f"{admin}/faults", **kwargs).status_code == 204
    tokens = authorize(ponto)
    api = Client(ponto, tokens["access_token"])
    items, _pages, _body = walk(api, f"/accounts/{account_id(CURRENT)}/transactions")
    assert len(items) == 31 * 5
    stats = requests.get(f"{admin}/stats", **kwargs).json()
    assert stats["requests"]["POST /ponto-connect/oauth2/token"] == 1
    assert stats["requests"]["GET /ponto-connect/accounts/{id}/transactions"] == 2
    assert not any("/_sim" in key for key in stats["requests"])
    assert requests.get(f"{admin}/integrations", **kwargs).json()["integrations"][0][
        "organization_id"] == data.ORGANIZATION_ID
    assert requests.post(f"{admin}/reset", **kwargs).status_code == 204
    assert ponto.stats()["total"] == 0 and ponto.integrations() == []
    assert ponto.config()["history_days"] == 90
    assert ponto.today == datetime.now(timezone.utc).date()
    assert api.get("/accounts").status_code == 401
    missing = Client(ponto).get("/nothing")
    assert missing.status_code == 404 and error_of(missing) == "resourceNotFound"
    wrong = Client(ponto)("PUT", "/accounts")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"


def test_command_line_runs_and_stops():
    process = subprocess.Popen([sys.executable, "-m", "simulators.ponto", "--port", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        first = process.stdout.readline()
        config = json.loads(process.stdout.readline().split("Adapter config: ", 1)[1])
        assert "Ponto simulator: API https://127.0.0.1:" in first
        response = requests.get(f"{config['base_url']}/financial-institutions", timeout=5,
                                verify=config["ca_bundle"],
                                cert=(config["certificate"], config["private_key"]))
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, _err = process.communicate(timeout=10)
    assert process.returncode == 0 and "stopped" in out
    assert not os.path.exists(config["certificate"])


def test_url_shapes(ponto):
    assert urlsplit(ponto.url).path == "/ponto-connect"
    assert urlsplit(ponto.url).hostname == urlsplit(ponto.authorization_url).hostname == \
        "127.0.0.1"
    assert ponto.adapter_config(encrypted_key=True)["private_key_passphrase"] == \
        ponto.key_passphrase
