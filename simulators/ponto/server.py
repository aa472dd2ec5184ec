"""Ponto Connect simulator: the Ibanity Ponto Connect API and Ponto's authorization pages, served
on 127.0.0.1 over TLS (see README.md).

Two listeners share one state:

* the **API** (``url`` = ``https://127.0.0.1:<port>/ponto-connect``) requires a client certificate
  signed by the simulator's CA (mutual TLS, like ``api.ibanity.com``); a client without one is
  refused during the TLS handshake;
* the **authorization host** (``authorization_url`` = ``https://127.0.0.1:<port2>``) serves what a
  browser sees: the OAuth2 consent page ``/oauth2/auth`` and the reauthorization pages, plus the
  simulator's own admin endpoints ``/_sim/...``. No client certificate there.

The state (organization, integrations, tokens, synchronizations, simulated clock, faults) lives in
the ``PontoServer`` object under a lock and is reachable from Python (``server.add_fault(...)``).
Standard library plus ``cryptography`` (for the throw-away certificates); nothing imports odoo.

Facts follow /work/shared/reference/providers.md §4 and the Ponto Connect OpenAPI document. What
the reference could not confirm is kept in the constants right below, marked ⚠️ (partly
confirmed) or ❓ (not confirmed), so it is easy to correct.
"""
import base64
import binascii
import hashlib
import hmac
import html
import http.client
import json
import logging
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from datetime import date, datetime, time as dtime, timedelta, timezone
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from . import data
from .tls import make_pki
from .webhooks import KEYS_PATH as WEBHOOK_KEYS_PATH, PontoWebhooks

_logger = logging.getLogger(__name__)

API_PREFIX = "/ponto-connect"  # ✅ https://api.ibanity.com/ponto-connect
DEFAULT_CLIENT_ID = "ponto-sim-client"
DEFAULT_CLIENT_SECRET = "ponto-sim-secret"
DEFAULT_KEY_PASSPHRASE = "ponto-sim-passphrase"
DEFAULT_HISTORY_DAYS = 90
DEFAULT_TXNS_PER_DAY = {"EUR": 3, "USD": 1}

# --------------------------------------------------------------------------- facts to keep easy to fix
ACCESS_TOKEN_TTL = 1799                      # ⚠️ fixtures say expires_in 1799; spec text says 15 min
CODE_TTL = timedelta(minutes=10)             # ❓ lifetime of an authorization code
AUTHORIZATION_VALIDITY = timedelta(days=90)  # ⚠️ authorizationExpirationExpectedAt = +90 d observed
ROTATE_REFRESH_TOKENS = True                 # ⚠️ a refresh answers a new refresh token, old one dies
SYNC_COOLDOWN = timedelta(minutes=30)        # ❓ minimum interval before accountRecentlySynchronized
SYNC_SUBTYPES = ("accountDetails", "accountTransactions")  # ✅
DEFAULT_SYNC_POLLS = 1                       # GETs that still see "running" before the outcome
DEFAULT_RATE_LIMIT = 600                     # ❓ requests per RATE_WINDOW per client (429 beyond)
RATE_WINDOW = 60.0                           # ❓ seconds
SEND_RETRY_AFTER = True                      # ❓ whether a 429 carries Retry-After
DEFAULT_RETRY_AFTER = 60
PAGE_DEFAULT_LIMIT, PAGE_MAX_LIMIT = 10, 100  # ✅ page[limit] 1..100, default 10
REAUTHORIZE_WHOLE_INSTITUTION = True         # ⚠️ a reauthorization renews every shared account of
#                                              the same financial institution (one SCA at the bank)
SCOPES = ("ai", "pi", "name", "offline_access")  # ✅
JSONAPI = "application/vnd.api+json"          # ⚠️ content type of JSON:API answers
# The "user pressed Cancel" answers: OAuth standard ✅ for /oauth2/auth; ❓ for reauthorization.
DENIED = ("access_denied", "The resource owner denied the request")

# code -> (HTTP status, detail) of the JSON:API error answers {"errors": [{code, detail, meta}]}.
ERRORS = {
    "resourceNotFound": (404, "The requested resource was not found."),                     # ✅
    "accountRecentlySynchronized": (400, "This type of synchronization was already created "
                                         "recently for the account. Try again later or on the "
                                         "Dashboard."),                                      # ✅
    "tooManyRequests": (429, "Too many requests, please slow down."),        # ✅ code, ❓ detail
    "authorizationInvalid": (403, "The authorization is invalid, you should ask the customer "
                                  "to reauthorize the account"),            # ✅ detail, ❓ status
    "authorizationExpired": (403, "The authorization has expired, you should ask the customer "
                                  "to reauthorize the account"),            # ⚠️ detail, ❓ status
    "unauthorized": (401, "The access token is missing, invalid or expired."),              # ❓
    "validationError": (400, "The request is invalid."),                                    # ❓
    "clientIdInvalid": (401, "The client id is invalid."),                                  # ❓
    "credentialsInvalid": (401, "The credentials are invalid."),                            # ❓
    "authorizationCodeInvalid": (400, "The authorization code is invalid."),                # ❓
    "onboardingIncomplete": (403, "The organization has not completed its onboarding in "
                                  "Ponto; the user has to finish it in the Ponto dashboard."),  # ❓
    "internalServerError": (500, "An unexpected error occurred."),                          # ❓
    "serviceUnavailable": (503, "The service is temporarily unavailable."),                 # ❓
}
# Error of a synchronization that the bank answered with a 5xx (❓ code; ✅ meta shape).
BANK_DOWN_CODE = "financialInstitutionUnavailable"

FAULT_KINDS = (
    # the common ones
    "delay", "timeout", "http_500", "http_503", "rate_limit", "malformed_json", "consent_expired",
    "user_must_be_present",
    # Ponto's own
    "access_token_invalid", "authorization_invalid", "account_recently_synchronized",
    "sync_pending", "sync_error", "resource_not_found", "validation_error", "invalid_grant",
    "invalid_client", "client_id_invalid", "credentials_invalid", "authorization_code_invalid",
)
# Faults that only concern one endpoint when armed without a path.
_FAULT_DEFAULT_SCOPE = {
    "sync_pending": ("POST", "/synchronizations"),
    "sync_error": ("POST", "/synchronizations"),
    "account_recently_synchronized": ("POST", "/synchronizations"),
    "invalid_grant": ("POST", "/oauth2/token"),
    "invalid_client": ("POST", "/oauth2/token"),
    "authorization_code_invalid": ("POST", "/oauth2/token"),
}
# Faults that, on POST /synchronizations, make the synchronization itself end that way.
_SYNC_OUTCOME_FAULTS = {"sync_pending", "sync_error", "authorization_invalid", "consent_expired"}
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0

_NO_ANSWER = object()
_RUNNING = {}  # authorization port -> CA path, for simulate_user()
_RUNNING_LOCK = threading.Lock()

LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect width="64" height="64" rx="14" fill="{color}"/>
<text x="32" y="42" font-family="sans-serif" font-size="28" text-anchor="middle" fill="#fff">{letter}</text>
</svg>
"""


def _utcnow():
    return datetime.now(timezone.utc)


def _iso(moment):
    """``2024-05-20T09:30:00.123Z`` (milliseconds, like Ibanity)."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _as_day(value):
    return value if isinstance(value, date) and not isinstance(value, datetime) else \
        date.fromisoformat(str(value))


def _new_uuid():
    return str(uuid.uuid4())


def _new_token():
    """Opaque token shaped like Ponto's (two base64url halves joined by a dot)."""
    return f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}"


class ApiError(Exception):
    """An error answer: JSON:API ``{"errors": [...]}`` or, with ``oauth``, ``{error, ...}``."""

    def __init__(self, code, detail=None, *, status=None, headers=None, oauth=False, meta=None):
        known_status, known_detail = ERRORS.get(code, (400, "The request is invalid."))
        super().__init__(detail or known_detail)
        self.code = code
        self.detail = detail or known_detail
        self.status = status or (known_status if not oauth else 400)
        self.headers = headers or {}
        self.oauth = oauth
        self.meta = meta or {}


def _oauth_error(code, description, status=400, headers=None):
    return ApiError(code, description, status=status, headers=headers, oauth=True)


class Response:
    def __init__(self, status, body=b"", content_type=None, headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status, payload, headers=None, content_type=JSONAPI):
        return cls(status, json.dumps(payload).encode(), content_type, headers)

    @classmethod
    def html(cls, status, text):
        return cls(status, text.encode(), "text/html; charset=utf-8")


class Request:
    def __init__(self, method, target, headers, body, listener, peer_cn=None):
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path or "/"
        self.query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body
        self.listener = listener
        self.peer_cn = peer_cn
        self.request_id = _new_uuid()
        self.token = None            # the access-token entry behind the bearer, if any
        self.organization_id = None
        self.sync_fault = None

    @property
    def api_path(self):
        """The path without the ``/ponto-connect`` prefix (API listener)."""
        return self.path[len(API_PREFIX):] if self.path.startswith(API_PREFIX + "/") else None

    def form_lists(self):
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def form(self):
        return {key: values[0] for key, values in self.form_lists().items()}

    def json(self):
        if not self.body:
            return {}
        try:
            payload = json.loads(self.body)
        except ValueError:
            raise ApiError("validationError", "The body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise ApiError("validationError", "The body must be a JSON object.")
        return payload

    def bearer(self):
        value = self.headers.get("Authorization") or ""
        return value[7:].strip() if value[:7].lower() == "bearer " else None

    def basic(self):
        value = self.headers.get("Authorization") or ""
        if value[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, client_secret = decoded.partition(":")
        return (client_id, client_secret) if sep else None


def _route(method, pattern, template, handler):
    return method, re.compile(pattern + r"\Z"), template, handler


_UUID = r"(?P<{}>[^/]+)"
API_ROUTES = (
    _route("POST", r"/oauth2/token", "/oauth2/token", "_token"),
    _route("POST", r"/oauth2/revoke", "/oauth2/revoke", "_revoke_token"),
    _route("GET", r"/userinfo", "/userinfo", "_userinfo"),
    _route("GET", r"/financial-institutions", "/financial-institutions", "_institutions"),
    _route("GET", r"/financial-institutions/" + _UUID.format("institution_id"),
           "/financial-institutions/{id}", "_institution"),
    _route("GET", r"/accounts", "/accounts", "_accounts"),
    _route("GET", r"/accounts/" + _UUID.format("account_id"), "/accounts/{id}", "_account"),
    _route("DELETE", r"/accounts/" + _UUID.format("account_id"), "/accounts/{id}",
           "_revoke_account"),
    _route("GET", r"/accounts/" + _UUID.format("account_id") + r"/transactions",
           "/accounts/{id}/transactions", "_transactions"),
    _route("GET", r"/accounts/" + _UUID.format("account_id") + r"/transactions/"
           + _UUID.format("transaction_id"), "/accounts/{id}/transactions/{id}", "_transaction"),
    _route("GET", r"/accounts/" + _UUID.format("account_id") + r"/pending-transactions",
           "/accounts/{id}/pending-transactions", "_pending_transactions"),
    _route("POST", r"/accounts/" + _UUID.format("account_id") + r"/reauthorization-requests",
           "/accounts/{id}/reauthorization-requests", "_reauthorization_request"),
    _route("POST", r"/synchronizations", "/synchronizations", "_create_synchronization"),
    _route("GET", r"/synchronizations/" + _UUID.format("sync_id"), "/synchronizations/{id}",
           "_get_synchronization"),
    _route("GET", r"/synchronizations/" + _UUID.format("sync_id") + r"/updated-transactions",
           "/synchronizations/{id}/updated-transactions", "_updated_transactions"),
    _route("DELETE", r"/organizations/" + _UUID.format("organization_id") + r"/integration",
           "/organizations/{id}/integration", "_delete_integration"),
)
_REAUTH_PAGE = (r"/organizations/(?P<organization_id>[^/]+)/integrations/(?P<integration_id>[^/]+)"
                r"/accounts/(?P<account_id>[^/]+)/reauthorization-requests/(?P<request_id>[^/]+)")
PAGE_ROUTES = (
    _route("GET", r"/", "/", "_index"),
    _route("GET", r"/oauth2/auth", "/oauth2/auth", "_authorize_page"),
    _route("POST", r"/oauth2/auth/decision", "/oauth2/auth/decision", "_authorize_decision"),
    _route("GET", _REAUTH_PAGE, "/organizations/{id}/.../reauthorization-requests/{id}",
           "_reauthorize_page"),
    _route("POST", _REAUTH_PAGE + r"/decision",
           "/organizations/{id}/.../reauthorization-requests/{id}/decision",
           "_reauthorize_decision"),
    _route("GET", r"/static/institutions/(?P<key>[a-z]+)\.svg", "/static/institutions/{key}.svg",
           "_logo"),
    _route("GET", r"/_sim/clock", "/_sim/clock", "_sim_clock_get"),
    _route("POST", r"/_sim/clock", "/_sim/clock", "_sim_clock_set"),
    _route("GET", r"/_sim/config", "/_sim/config", "_sim_config_get"),
    _route("POST", r"/_sim/config", "/_sim/config", "_sim_config_set"),
    _route("GET", r"/_sim/faults", "/_sim/faults", "_sim_faults_list"),
    _route("POST", r"/_sim/faults", "/_sim/faults", "_sim_faults_add"),
    _route("DELETE", r"/_sim/faults", "/_sim/faults", "_sim_faults_clear"),
    _route("GET", r"/_sim/stats", "/_sim/stats", "_sim_stats"),
    _route("POST", r"/_sim/reset", "/_sim/reset", "_sim_reset"),
    _route("GET", r"/_sim/integrations", "/_sim/integrations", "_sim_integrations"),
    _route("POST", r"/_sim/webhook", "/_sim/webhook", "_sim_webhook"),
)


# ============================================================================ HTTP plumbing
class _TLSServer(ThreadingHTTPServer):
    """Accepts plain sockets; the TLS handshake happens in the handler thread."""
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler, context, bank, listener):
        self.context = context
        self.bank = bank
        self.listener = listener
        super().__init__(address, handler)

    def get_request(self):
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):
        # A refused handshake (no or untrusted client certificate) or a client gone away.
        if self.bank.verbose:
            _logger.info("ponto simulator: connection from %s dropped", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "PontoSimulator/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this many seconds

    def setup(self):
        self.server.bank._track(self.request, True)
        self.request.settimeout(10)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.server.bank._track(self.request, False)
            raise
        self.peer_cn = None
        certificate = self.request.getpeercert()
        if certificate:
            for rdn in certificate.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        self.peer_cn = value
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.bank._track(self.request, False)

    def log_request(self, code="-", size="-"):
        self.log_message("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format, *args):  # noqa: A002
        if self.server.bank.verbose:
            _logger.info("ponto simulator: " + format, *args)

    def _handle(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 1_000_000:
            self.close_connection = True
            self._write(Response.json(400, {"errors": [{
                "code": "validationError", "detail": "Bad Content-Length.", "meta": {}}]}))
            return
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, self.headers, body, self.server.listener,
                          self.peer_cn)
        response = self.server.bank.handle(request)
        if response is _NO_ANSWER:
            self.close_connection = True
            return
        response.headers.setdefault("ibanity-request-id", request.request_id)
        self._write(response)

    def _write(self, response):
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, str(value))
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            # Head and body in one write (one TLS record): no Nagle/delayed-ACK stall.
            self._headers_buffer.append(b"\r\n" + response.body)
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle


# ============================================================================ the simulator
class PontoServer:
    """Ponto Connect on two TLS listeners of 127.0.0.1 (port 0: any free port).

    ``today`` is the real UTC date unless the simulated clock is moved (``set_today``,
    ``advance_days``). Context manager: ``with PontoServer() as ponto: ...``. After ``start()``,
    ``adapter_config()`` gives the config of the ``ponto`` adapter (URLs, credentials, PEM paths).
    """

    def __init__(self, host="127.0.0.1", port=0, authorization_port=0, *,
                 client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                 redirect_uris=None, history_days=DEFAULT_HISTORY_DAYS, txns_per_day=None,
                 today=None, tls_dir=None, key_passphrase=DEFAULT_KEY_PASSPHRASE, verbose=False):
        self.host = host
        self.port = port
        self.authorization_port = authorization_port
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris) if redirect_uris else None
        self.key_passphrase = key_passphrase
        self.verbose = verbose
        self._tls_dir_option = tls_dir
        self._initial = {"history_days": history_days, "txns_per_day": txns_per_day,
                         "today": today}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections = set()
        self._servers = []
        self._threads = []
        self._tmp = None
        self.tls = {}
        self.webhooks = PontoWebhooks(self)  # signed webhooks (webhooks.py)
        self._reset_state()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        """Make the certificates, bind both listeners, serve in daemon threads; returns self."""
        if self._servers:
            raise RuntimeError("the Ponto simulator is already started")
        self._stopping.clear()
        if self._tls_dir_option:
            directory = self._tls_dir_option
        else:
            self._tmp = tempfile.mkdtemp(prefix="ponto-sim-")
            directory = self._tmp
        self.tls = make_pki(directory, self.client_id, self.key_passphrase)
        api_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        api_context.load_cert_chain(self.tls["server_cert"], self.tls["server_key"])
        api_context.load_verify_locations(self.tls["ca"])
        api_context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, like api.ibanity.com
        page_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        page_context.load_cert_chain(self.tls["server_cert"], self.tls["server_key"])
        for listener, port, context in (("api", self.port, api_context),
                                        ("pages", self.authorization_port, page_context)):
            server = _TLSServer((self.host, port), _Handler, context, self, listener)
            self._servers.append(server)
            thread = threading.Thread(target=server.serve_forever,
                                      kwargs={"poll_interval": 0.02},
                                      name=f"ponto-sim-{listener}", daemon=True)
            self._threads.append(thread)
        self.port = self._servers[0].server_address[1]
        self.authorization_port = self._servers[1].server_address[1]
        for thread in self._threads:
            thread.start()
        with _RUNNING_LOCK:
            _RUNNING[self.authorization_port] = self.tls["ca"]
        return self

    def stop(self):
        """Stop serving; sleeping faults wake up, open connections close. Idempotent."""
        self._stopping.set()
        servers, self._servers = self._servers, []
        threads, self._threads = self._threads, []
        for server in servers:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(timeout=5)
        with _RUNNING_LOCK:
            _RUNNING.pop(self.authorization_port, None)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def running(self):
        return bool(self._servers)

    @property
    def root_url(self):
        return f"https://{self._public_host()}:{self.port}"

    @property
    def url(self):
        """Base URL of the API (what the adapter calls ``base_url``)."""
        return self.root_url + API_PREFIX

    @property
    def authorization_url(self):
        """Base URL of the authorization host (consent and reauthorization pages, ``/_sim``)."""
        return f"https://{self._public_host()}:{self.authorization_port}"

    @property
    def client_secret(self):
        return self._client_secret

    def _public_host(self):
        return self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1"

    def adapter_config(self, *, encrypted_key=False):
        """Config dict for ``services.providers.ponto.PontoAdapter`` talking to this server."""
        config = {"base_url": self.url, "authorization_url": self.authorization_url,
                  "environment": "sandbox", "client_id": self.client_id,
                  "client_secret": self._client_secret, "certificate": self.tls["client_cert"],
                  "private_key": self.tls["client_key"], "ca_bundle": self.tls["ca"]}
        if encrypted_key:
            config.update(private_key=self.tls["client_key_encrypted"],
                          private_key_passphrase=self.key_passphrase)
        return config

    def _track(self, connection, alive):
        with self._lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # ------------------------------------------------------------------ state
    def _reset_state(self):
        with self._lock:
            self._offset_days = 0
            self._config = {"history_days": DEFAULT_HISTORY_DAYS,
                            "txns_per_day": dict(DEFAULT_TXNS_PER_DAY),
                            "access_token_ttl": ACCESS_TOKEN_TTL,
                            "sync_polls": DEFAULT_SYNC_POLLS,
                            "rate_limit": DEFAULT_RATE_LIMIT,
                            "onboarding_complete": True}
            self._codes = {}
            self._access_tokens = {}
            self._refresh_tokens = {}
            self._integrations = {}
            self._authorizations = {}    # account id -> {"authorized_at", "expires_at"}
            self._synchronizations = {}
            self._reauthorizations = {}
            self._faults = []
            self._fault_seq = 0
            self._faults_triggered = 0
            self._stats = Counter()
            self._rate = {}
            initial = self._initial
            if initial["today"] is not None:
                self._offset_days = (_as_day(initial["today"]) - _utcnow().date()).days
            self._configure(history_days=initial["history_days"],
                            txns_per_day=initial["txns_per_day"])
            self._origin = self.today - timedelta(days=self._config["history_days"])

    def reset(self):
        """Back to a new server's state: clock, configuration, integrations, tokens, faults, stats
        (the listeners and certificates stay)."""
        self._reset_state()

    def now(self):
        with self._lock:
            return _utcnow() + timedelta(days=self._offset_days)

    @property
    def today(self):
        return self.now().date()

    def set_today(self, day):
        day = _as_day(day)
        with self._lock:
            self._offset_days = (day - _utcnow().date()).days
            self._extend_origin()
            return self.today

    def advance_days(self, days=1):
        with self._lock:
            self._offset_days += int(days)
            self._extend_origin()
            return self.today

    def _extend_origin(self):
        oldest = self.today - timedelta(days=self._config["history_days"])
        if getattr(self, "_origin", None) is None or oldest < self._origin:
            self._origin = oldest

    def configure(self, history_days=None, txns_per_day=None, access_token_ttl=None,
                  sync_polls=None, rate_limit=None, onboarding_complete=None):
        """Change the data and behaviour parameters; returns the configuration."""
        with self._lock:
            self._configure(history_days, txns_per_day, access_token_ttl, sync_polls, rate_limit,
                            onboarding_complete)
            if history_days is not None:  # the bank now holds exactly that many days
                self._origin = self.today - timedelta(days=history_days)
            return self.config()

    def _configure(self, history_days=None, txns_per_day=None, access_token_ttl=None,
                   sync_polls=None, rate_limit=None, onboarding_complete=None):
        def integer(value, name, low, high):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer between {low} and {high}")
            return value

        if history_days is not None:
            self._config["history_days"] = integer(history_days, "history_days", 1, 3650)
        if txns_per_day is not None:
            if not isinstance(txns_per_day, dict):
                raise ValueError('txns_per_day must be an object like {"EUR": 3, "USD": 1}')
            merged = dict(self._config["txns_per_day"])
            for currency, count in txns_per_day.items():
                if currency not in DEFAULT_TXNS_PER_DAY:
                    raise ValueError(f"unknown currency {currency!r}")
                merged[currency] = integer(count, "transactions per day", 0, 1000)
            self._config["txns_per_day"] = merged
        if access_token_ttl is not None:
            self._config["access_token_ttl"] = integer(access_token_ttl, "access_token_ttl", 1,
                                                       86400 * 365)
        if sync_polls is not None:
            self._config["sync_polls"] = integer(sync_polls, "sync_polls", 0, 1000)
        if rate_limit is not None:
            self._config["rate_limit"] = integer(rate_limit, "rate_limit", 1, 10 ** 6)
        if onboarding_complete is not None:
            if not isinstance(onboarding_complete, bool):
                raise ValueError("onboarding_complete must be a boolean")
            self._config["onboarding_complete"] = onboarding_complete

    def config(self):
        with self._lock:
            return {**{key: (dict(value) if isinstance(value, dict) else value)
                       for key, value in self._config.items()},
                    "today": self.today.isoformat(), "first_day": self._origin.isoformat()}

    # ------------------------------------------------------------------ faults
    def add_fault(self, kind, *, times=1, skip=0, path=None, consent_id=None, seconds=None):
        """Arm a fault (see README.md for the kinds); returns its description with an ``id``.

        ``path``: substring of the request path (default: every API request, or the endpoint the
        kind concerns); ``consent_id``: only requests whose token belongs to that organization.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool)
                                  or times < 1):
            raise ValueError("times must be a positive integer or None")
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise ValueError("skip must be a non-negative integer")
        if path is not None and not isinstance(path, str):
            raise ValueError("path must be a string or None")
        if consent_id is not None and not isinstance(consent_id, str):
            raise ValueError("consent_id must be a string or None")
        if seconds is not None and (isinstance(seconds, bool)
                                    or not isinstance(seconds, (int, float)) or seconds < 0):
            raise ValueError("seconds must be a non-negative number or None")
        with self._lock:
            self._fault_seq += 1
            fault = {"id": self._fault_seq, "kind": kind, "times": times, "skip": skip,
                     "path": path, "consent_id": consent_id, "seconds": seconds,
                     "remaining": times, "skip_left": skip, "hits": 0}
            self._faults.append(fault)
            return dict(fault)

    def faults(self):
        with self._lock:
            return [dict(fault) for fault in self._faults]

    def clear_faults(self):
        with self._lock:
            count = len(self._faults)
            self._faults = []
            return count

    def _take_fault(self, request):
        with self._lock:
            for fault in self._faults:
                if fault["remaining"] == 0:
                    continue
                if fault["path"] is None:
                    scope = _FAULT_DEFAULT_SCOPE.get(fault["kind"])
                    if scope and (request.method, request.api_path) != scope:
                        continue
                elif fault["path"] not in request.path:
                    continue
                if fault["consent_id"] is not None \
                        and fault["consent_id"] != request.organization_id:
                    continue
                if fault["skip_left"] > 0:
                    fault["skip_left"] -= 1
                    continue
                if fault["remaining"] is not None:
                    fault["remaining"] -= 1
                fault["hits"] += 1
                self._faults_triggered += 1
                return dict(fault)
        return None

    def _apply_fault(self, fault, request):
        """A Response, ``_NO_ANSWER``, or None to go on (after a delay, or with a sync outcome)."""
        kind, seconds = fault["kind"], fault["seconds"]
        if kind == "delay":
            self._stopping.wait(1.0 if seconds is None else seconds)
            return None
        if kind == "timeout":
            self._stopping.wait(DEFAULT_TIMEOUT_FAULT_SECONDS if seconds is None else seconds)
            return _NO_ANSWER
        if kind in _SYNC_OUTCOME_FAULTS and (request.method, request.api_path) == (
                "POST", "/synchronizations"):
            request.sync_fault = kind
            return None
        if kind in ("sync_pending", "sync_error"):
            return None  # armed on another path: nothing to do there
        if kind == "http_500":
            raise ApiError("internalServerError")
        if kind == "http_503":
            headers = {"Retry-After": str(int(-(-seconds // 1)))} if seconds is not None else {}
            raise ApiError("serviceUnavailable", headers=headers)
        if kind == "rate_limit":
            raise self._too_many_requests(DEFAULT_RETRY_AFTER if seconds is None else seconds)
        if kind == "malformed_json":
            return Response(200, b'{"data": [{"type": "transaction", "id": "', JSONAPI)
        if kind == "invalid_grant":
            raise _oauth_error("invalid_grant", "The provided authorization grant or refresh "
                                                "token is invalid, expired or revoked.")
        if kind == "invalid_client":
            raise _oauth_error("invalid_client", "Client authentication failed.", 401,
                               {"WWW-Authenticate": 'Basic realm="ponto-connect"'})
        code = {"consent_expired": "authorizationExpired",
                "authorization_invalid": "authorizationInvalid",
                "access_token_invalid": "unauthorized",
                "user_must_be_present": "onboardingIncomplete",
                "account_recently_synchronized": "accountRecentlySynchronized",
                "resource_not_found": "resourceNotFound",
                "validation_error": "validationError",
                "client_id_invalid": "clientIdInvalid",
                "credentials_invalid": "credentialsInvalid",
                "authorization_code_invalid": "authorizationCodeInvalid"}[kind]
        raise ApiError(code)

    def _too_many_requests(self, seconds):
        wait = int(-(-seconds // 1))
        headers = {"Retry-After": str(wait)} if SEND_RETRY_AFTER else {}
        return ApiError("tooManyRequests", headers=headers)

    # ------------------------------------------------------------------ introspection (Python)
    def stats(self):
        """Requests per ``METHOD /path/template`` (``/_sim`` calls not counted)."""
        with self._lock:
            return {"requests": dict(self._stats), "total": sum(self._stats.values()),
                    "faults_triggered": self._faults_triggered}

    def integrations(self):
        with self._lock:
            return [self._integration_view(integration)
                    for integration in self._integrations.values()]

    @staticmethod
    def _integration_view(integration):
        return {"id": integration["id"], "organization_id": integration["organization_id"],
                "client_id": integration["client_id"], "accounts": sorted(integration["accounts"]),
                "created_at": _iso(integration["created_at"]), "revoked": integration["revoked"]}

    def revoke_integration(self, organization_id=data.ORGANIZATION_ID, client_id=None):
        """The user revokes the integration in the Ponto dashboard; False if there is none."""
        with self._lock:
            integration = self._active_integration(client_id or self.client_id, organization_id)
            if integration is None:
                return False
            self._revoke(integration)
            return True

    def synchronizations(self):
        """The synchronizations created through the API, oldest first."""
        with self._lock:
            return [{"id": sync["id"], "account_id": sync["account_id"],
                     "subtype": sync["subtype"], "status": sync["status"],
                     "customer_ip_address": sync["customer_ip_address"],
                     "created_at": _iso(sync["created_at"])}
                    for sync in sorted(self._synchronizations.values(),
                                       key=lambda sync: sync["created_at"])]

    def authorizations(self):
        """{account id: {"authorized_at", "expires_at"}} (ISO strings) of the organization."""
        with self._lock:
            return {account_id: {key: _iso(value) for key, value in auth.items()}
                    for account_id, auth in self._authorizations.items()}

    def expire_authorization(self, account):
        """The bank authorization of ``account`` (id or IBAN) ends now."""
        spec = self._spec(account)
        with self._lock:
            auth = self._authorizations.get(spec["id"])
            if auth is not None:
                auth["expires_at"] = self.now() - timedelta(seconds=1)

    @staticmethod
    def accounts():
        """The organization's accounts (bank view, without balances)."""
        return [{"id": spec["id"], "iban": spec["iban"], "currency": spec["currency"],
                 "description": spec["description"], "subtype": spec["subtype"],
                 "institution_id": spec["institution_id"]} for spec in data.ACCOUNTS]

    @staticmethod
    def _spec(account):
        spec = data.find_account(account)
        if spec is None:
            raise KeyError(f"unknown Ponto simulator account {account!r}")
        return spec

    def _count(self, spec):
        return self._config["txns_per_day"].get(spec["currency"], 0)

    def expected_booked(self, account, date_from, date_to):
        """The booked transactions (API resources) the bank holds for ``account`` (id or IBAN)
        with an execution date in [date_from, date_to], in API order (newest first)."""
        spec = self._spec(account)
        date_from, date_to = _as_day(date_from), _as_day(date_to)
        with self._lock:
            start, end, count = max(date_from, self._origin), min(date_to, self.today), \
                self._count(spec)
        result = []
        day = end
        while day >= start:
            result.extend(txn.as_booked(self.url) for txn in
                          reversed(data.transactions_booking_on(spec["id"], day, count)))
            day -= timedelta(days=1)
        return result

    def expected_pending(self, account):
        """The pending transactions (API resources) of ``account`` today, newest first."""
        spec = self._spec(account)
        with self._lock:
            today, count = self.today, self._count(spec)
        return [txn.as_pending(self.url) for txn in reversed(
            data.transactions_booking_on(spec["id"], today + timedelta(days=1), count))]

    def expected_balances(self, account):
        """``{"current": Decimal, "available": Decimal}`` of ``account`` today."""
        spec = self._spec(account)
        with self._lock:
            return self._balances(spec, self.today, pending=True)

    def _balances(self, spec, horizon, pending):
        count = self._count(spec)
        current = spec["opening_balance"]
        day = self._origin
        while day <= horizon:
            current += data.day_total(spec["id"], day, count)
            day += timedelta(days=1)
        available = current
        if pending:
            available += data.day_total(spec["id"], horizon + timedelta(days=1), count)
        return {"current": current, "available": available}

    # ------------------------------------------------------------------ dispatch
    def handle(self, request):
        if (request.listener, request.method, request.path) == ("api", "GET", WEBHOOK_KEYS_PATH):
            return Response.json(200, self.webhooks.jwks(), content_type="application/json")
        routes = API_ROUTES if request.listener == "api" else PAGE_ROUTES
        path = request.api_path if request.listener == "api" else request.path
        route, params, allowed = self._match(routes, request.method, path)
        try:
            if route is None:
                if allowed:
                    raise ApiError("validationError", f"{request.method} is not allowed here.",
                                   status=405, headers={"Allow": ", ".join(sorted(allowed))})
                raise ApiError("resourceNotFound", meta={"resource": "endpoint"})
            template, handler = route
            if not request.path.startswith("/_sim/"):
                prefix = API_PREFIX if request.listener == "api" else ""
                with self._lock:
                    self._stats[f"{request.method} {prefix}{template}"] += 1
            if request.listener == "api":
                self._identify(request)
                fault = self._take_fault(request)
                if fault is not None:
                    outcome = self._apply_fault(fault, request)
                    if outcome is not None:
                        return outcome
                    if self._stopping.is_set():
                        return _NO_ANSWER
                self._check_rate(request)
            return getattr(self, handler)(request, **params)
        except ApiError as error:
            return self._error_response(request, error)
        except Exception:  # pragma: no cover - a bug of the simulator itself
            _logger.exception("ponto simulator: %s %s failed", request.method, request.path)
            return self._error_response(request, ApiError("internalServerError"))

    @staticmethod
    def _match(routes, method, path):
        allowed = set()
        if path is None:
            return None, {}, allowed
        for route_method, pattern, template, handler in routes:
            match = pattern.match(path)
            if match:
                if route_method == method:
                    return (template, handler), match.groupdict(), allowed
                allowed.add(route_method)
        return None, {}, allowed

    @staticmethod
    def _error_response(request, error):
        if request.listener == "pages" and not request.path.startswith("/_sim/"):
            return PontoServer._page("Ponto – Error", f"<p>{html.escape(error.detail)}</p>",
                                     status=error.status)
        if error.oauth:
            return Response.json(error.status, {"error": error.code,
                                                "error_description": error.detail},
                                 error.headers, "application/json")
        return Response.json(error.status, {"errors": [{
            "code": error.code, "detail": error.detail,
            "meta": {"requestId": request.request_id, **error.meta}}]}, error.headers)

    def _identify(self, request):
        """Note whose token the request carries (for fault filters); no checks here."""
        token = request.bearer()
        if token:
            with self._lock:
                entry = self._access_tokens.get(token)
                if entry is not None:
                    request.token = entry
                    request.organization_id = entry.get("organization_id")

    def _check_rate(self, request):
        key = (request.token or {}).get("client_id") or (request.basic() or ("-",))[0]
        now = time.monotonic()
        with self._lock:
            window = self._rate.setdefault(key, deque())
            while window and window[0] <= now - RATE_WINDOW:
                window.popleft()
            if len(window) >= self._config["rate_limit"]:
                raise self._too_many_requests(max(1.0, window[0] + RATE_WINDOW - now))
            window.append(now)

    # ------------------------------------------------------------------ authentication
    def _check_client(self, request):
        """HTTP Basic client authentication of the token/revoke endpoints (OAuth errors)."""
        credentials = request.basic()
        if credentials is None or not (
                hmac.compare_digest(credentials[0], self.client_id)
                and hmac.compare_digest(credentials[1], self._client_secret)):
            raise _oauth_error("invalid_client", "Client authentication failed (unknown client, "
                                                 "no client authentication included, or "
                                                 "unsupported authentication method).", 401,
                               {"WWW-Authenticate": 'Basic realm="ponto-connect"'})
        if request.peer_cn != self.client_id:  # the certificate belongs to another application
            raise _oauth_error("invalid_client", "The client certificate does not belong to "
                                                 "this client.", 401)
        return credentials[0]

    def _bearer_entry(self, request, kinds):
        token = request.bearer()
        with self._lock:
            entry = self._access_tokens.get(token) if token else None
            if entry is None or entry["kind"] not in kinds or self.now() >= entry["expires_at"]:
                raise ApiError("unauthorized")
            if entry["kind"] == "user":
                integration = self._integrations[entry["integration_id"]]
                if integration["revoked"]:
                    raise ApiError("unauthorized")
            return entry

    def _user(self, request, data_call=True):
        """(token entry, integration) of a user access token."""
        entry = self._bearer_entry(request, ("user",))
        if data_call and not self._config["onboarding_complete"]:
            raise ApiError("onboardingIncomplete")
        return entry, self._integrations[entry["integration_id"]]

    def _active_integration(self, client_id, organization_id):
        for integration in self._integrations.values():
            if integration["client_id"] == client_id and \
                    integration["organization_id"] == organization_id and not integration["revoked"]:
                return integration
        return None

    def _revoke(self, integration):
        integration["revoked"] = True
        for store in (self._access_tokens, self._refresh_tokens):
            for token in [t for t, e in store.items()
                          if e.get("integration_id") == integration["id"]]:
                del store[token]

    def _shared_spec(self, integration, account_id):
        if account_id not in integration["accounts"]:
            raise ApiError("resourceNotFound", meta={"resource": "account"})
        return data.find_account(account_id)

    # ------------------------------------------------------------------ tokens
    def _issue(self, integration, scope, grant_id, with_refresh):
        ttl = self._config["access_token_ttl"]
        access_token = _new_token()
        self._access_tokens[access_token] = {
            "kind": "user", "client_id": integration["client_id"],
            "integration_id": integration["id"],
            "organization_id": integration["organization_id"], "scope": scope,
            "grant_id": grant_id, "expires_at": self.now() + timedelta(seconds=ttl)}
        answer = {"access_token": access_token, "expires_in": ttl, "scope": scope,
                  "token_type": "bearer"}
        if with_refresh:
            refresh_token = _new_token()
            self._refresh_tokens[refresh_token] = {
                "client_id": integration["client_id"], "integration_id": integration["id"],
                "scope": scope, "grant_id": grant_id}
            answer["refresh_token"] = refresh_token
        return answer

    def _token(self, request):
        client_id = self._check_client(request)
        form = request.form()
        if form.get("client_id") not in (None, client_id):
            raise _oauth_error("invalid_client", "client_id does not match the authenticated "
                                                 "client.", 401)
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                answer = self._grant_code(form, client_id)
            elif grant_type == "refresh_token":
                answer = self._grant_refresh(form, client_id)
            elif grant_type == "client_credentials":
                ttl = self._config["access_token_ttl"]
                token = _new_token()
                self._access_tokens[token] = {"kind": "client", "client_id": client_id,
                                              "expires_at": self.now() + timedelta(seconds=ttl)}
                answer = {"access_token": token, "expires_in": ttl, "scope": "",
                          "token_type": "bearer"}
            else:
                raise _oauth_error("unsupported_grant_type", "The authorization grant type is "
                                                             "not supported.")
        return Response.json(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"},
                             "application/json")

    def _grant_code(self, form, client_id):
        grant = self._codes.pop(form.get("code") or "", None)
        invalid = "The provided authorization grant is invalid, expired, revoked, does not " \
                  "match the redirection URI used in the authorization request, or was issued " \
                  "to another client."
        if grant is None or self.now() >= grant["expires_at"] or grant["client_id"] != client_id \
                or grant["redirect_uri"] != form.get("redirect_uri"):
            raise _oauth_error("invalid_grant", invalid)
        verifier = form.get("code_verifier") or ""
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
            .decode().rstrip("=")
        if not verifier or not hmac.compare_digest(computed, grant["code_challenge"]):
            raise _oauth_error("invalid_grant", "The PKCE code verifier does not match the "
                                                "code challenge.")
        integration = self._active_integration(client_id, grant["organization_id"])
        if integration is None:
            integration = {"id": _new_uuid(), "client_id": client_id,
                           "organization_id": grant["organization_id"], "accounts": set(),
                           "created_at": self.now(), "revoked": False}
            self._integrations[integration["id"]] = integration
        integration["accounts"] = set(grant["accounts"])  # ⚠️ the new selection replaces the old
        return self._issue(integration, grant["scope"], _new_uuid(),
                           "offline_access" in grant["scope"].split())

    def _grant_refresh(self, form, client_id):
        entry = self._refresh_tokens.get(form.get("refresh_token") or "")
        if entry is None or entry["client_id"] != client_id:
            raise _oauth_error("invalid_grant", "The provided authorization grant or refresh "
                                                "token is invalid, expired or revoked.")
        integration = self._integrations[entry["integration_id"]]
        if ROTATE_REFRESH_TOKENS:
            del self._refresh_tokens[form["refresh_token"]]
            return self._issue(integration, entry["scope"], entry["grant_id"], True)
        answer = self._issue(integration, entry["scope"], entry["grant_id"], False)
        return dict(answer, refresh_token=form["refresh_token"])

    def _revoke_token(self, request):
        """RFC 7009: 200 whatever the token; revoking a refresh token ends its whole grant."""
        client_id = self._check_client(request)
        token = request.form().get("token") or ""
        with self._lock:
            entry = self._refresh_tokens.get(token) or self._access_tokens.get(token)
            if entry is not None and entry.get("client_id") == client_id:
                grant_id = entry.get("grant_id")
                if token in self._refresh_tokens:
                    for store in (self._access_tokens, self._refresh_tokens):
                        for other in [t for t, e in store.items()
                                      if grant_id and e.get("grant_id") == grant_id]:
                            del store[other]
                self._refresh_tokens.pop(token, None)
                self._access_tokens.pop(token, None)
        return Response(200, b"", None, {"Cache-Control": "no-store"})

    def _userinfo(self, request):
        entry, _integration = self._user(request, data_call=False)
        answer = {"sub": entry["organization_id"],
                  "onboardingComplete": self._config["onboarding_complete"],
                  "paymentsActivated": False, "paymentsActivationRequested": False}
        if "name" in entry["scope"].split():
            answer["name"] = data.ORGANIZATION_NAME
        return Response.json(200, answer, content_type="application/json")

    # ------------------------------------------------------------------ resources
    def _institution_resource(self, institution):
        attributes = {
            "bic": institution["bic"], "bulkPaymentsEnabled": False,
            "bulkPaymentsProductTypes": [], "country": institution["country"],
            "deprecated": institution["deprecated"], "futureDatedPaymentsAllowed": False,
            "logoUrl": f"{self.authorization_url}/static/institutions/{institution['key']}.svg",
            "maintenanceFrom": None, "maintenanceTo": None, "maintenanceType": None,
            "name": institution["name"], "paymentsEnabled": False, "paymentsProductTypes": [],
            "periodicPaymentsEnabled": False, "periodicPaymentsProductTypes": [],
            "primaryColor": institution["primaryColor"],
            "secondaryColor": institution["secondaryColor"],
            "sharedBrandName": institution["sharedBrandName"],
            "sharedBrandReference": institution["sharedBrandReference"],
            "status": institution["status"],
        }
        return {"type": "financialInstitution", "id": institution["id"], "attributes": attributes}

    def _authorization_state(self, spec):
        """(valid now?, horizon day: the last day Ponto could read from the bank)."""
        auth = self._authorizations.get(spec["id"])
        now = self.now()
        if auth is None or now < auth["expires_at"]:
            return True, now.date()
        return False, min(now.date(), auth["expires_at"].date())

    def _auto_sync(self, spec, subtype):
        """Ponto's own scheduled synchronization of today (06:00 UTC), as the API shows it."""
        valid, horizon = self._authorization_state(spec)
        now = self.now()
        moment = datetime.combine(now.date(), dtime(6, 0), timezone.utc)
        if moment > now:
            moment -= timedelta(days=1)
        errors = [] if valid else [self._sync_error_body("authorizationExpired")]
        return {"id": data.make_uuid("auto-sync", spec["id"], subtype, moment.date()),
                "account_id": spec["id"], "subtype": subtype, "created_at": moment,
                "updated_at": moment + timedelta(seconds=2), "customer_online": False,
                "status": "success" if valid else "error", "errors": errors}

    def _latest_sync(self, spec, subtype):
        manual = [sync for sync in self._synchronizations.values()
                  if sync["account_id"] == spec["id"] and sync["subtype"] == subtype]
        latest = max(manual, key=lambda sync: sync["created_at"]) if manual else None
        auto = self._auto_sync(spec, subtype)
        return latest if latest and latest["created_at"] > auto["created_at"] else auto

    def _synchronized_at(self, spec, subtype):
        valid, _horizon = self._authorization_state(spec)
        successes = [sync["updated_at"] for sync in self._synchronizations.values()
                     if sync["account_id"] == spec["id"] and sync["subtype"] == subtype
                     and sync["status"] == "success"]
        auth = self._authorizations.get(spec["id"])
        auto = self._auto_sync(spec, subtype)["updated_at"] if valid else (
            auth["expires_at"] if auth else self.now())
        return max(successes + [auto])

    def _sync_resource(self, sync, relationships=False):
        resource = {"type": "synchronization", "id": sync["id"], "attributes": {
            "createdAt": _iso(sync["created_at"]), "customerOnline": sync["customer_online"],
            "errors": list(sync["errors"]), "resourceId": sync["account_id"],
            "resourceType": "account", "status": sync["status"], "subtype": sync["subtype"],
            "updatedAt": _iso(sync["updated_at"])}}
        if relationships and sync["subtype"] == "accountTransactions":
            resource["relationships"] = {"updatedTransactions": {"links": {
                "related": f"{self.url}/synchronizations/{sync['id']}/updated-transactions",
                "meta": {"type": "transaction"}}}}
        return resource

    def _account_resource(self, spec):
        valid, horizon = self._authorization_state(spec)
        balances = self._balances(spec, horizon, pending=valid)
        auth = self._authorizations.get(spec["id"])
        changed = _iso(self._synchronized_at(spec, "accountDetails"))
        attributes = {
            "authorizationExpirationExpectedAt": _iso(auth["expires_at"]) if auth else None,
            "authorizedAt": _iso(auth["authorized_at"]) if auth else None,
            "availableBalance": float(balances["available"]),
            "availableBalanceChangedAt": changed,
            "availableBalanceReferenceDate": data.midnight(horizon),
            "availableBalanceVariationObservedAt": changed,
            "currency": spec["currency"],
            "currentBalance": float(balances["current"]),
            "currentBalanceChangedAt": changed,
            "currentBalanceReferenceDate": data.midnight(horizon),
            "currentBalanceVariationObservedAt": changed,
            "deprecated": False,
            "description": spec["description"],
            "holderName": spec["holderName"],
            "internalReference": spec["internalReference"],
            "product": spec["product"],
            "reference": spec["iban"],
            "referenceType": "IBAN",
            "subtype": spec["subtype"],
        }
        return {
            "type": "account", "id": spec["id"], "attributes": attributes,
            "meta": {"availability": "available",
                     "latestSynchronization": self._sync_resource(
                         self._latest_sync(spec, "accountDetails")),
                     "synchronizedAt": changed},
            "relationships": {
                "financialInstitution": {
                    "data": {"type": "financialInstitution", "id": spec["institution_id"]},
                    "links": {"related":
                              f"{self.url}/financial-institutions/{spec['institution_id']}"}},
                "transactions": {"links": {
                    "related": f"{self.url}/accounts/{spec['id']}/transactions",
                    "meta": {"type": "transaction"}}}},
        }

    def _paginate(self, request, items, path, meta=None, render=None):
        """One page of ``items`` (dicts with an ``id``, or objects rendered by ``render``)."""
        raw_limit = request.query.get("page[limit]")
        try:
            limit = int(raw_limit) if raw_limit is not None else PAGE_DEFAULT_LIMIT
        except ValueError:
            limit = 0
        if not PAGE_MAX_LIMIT >= limit >= 1:
            raise ApiError("validationError", f"page[limit] must be between 1 and {PAGE_MAX_LIMIT}.",
                           meta={"attribute": "page[limit]"})
        after, before = request.query.get("page[after]"), request.query.get("page[before]")
        identify = render.identify if render is not None else (lambda item: item["id"])
        ids = [identify(item) for item in items]
        try:
            if after and before:
                raise ValueError
            if after:
                start = ids.index(after) + 1
                end = start + limit
            elif before:
                end = ids.index(before)
                start = max(0, end - limit)
            else:
                start, end = 0, limit
        except ValueError:
            raise ApiError("validationError", "page[after]/page[before] must be the id of a "
                                              "resource of this list (not both).",
                           meta={"attribute": "page"}) from None
        chunk = items[start:end]
        page = [render(item) if render else item for item in chunk]
        has_next, has_prev = start + len(chunk) < len(items), start > 0
        base = f"{self.root_url}{API_PREFIX}{path}"
        links = {"first": f"{base}?page[limit]={limit}"}
        if has_next and page:
            links["next"] = f"{base}?page[after]={page[-1]['id']}&page[limit]={limit}"
        if has_prev and page:
            links["prev"] = f"{base}?page[before]={page[0]['id']}&page[limit]={limit}"
        paging = {"limit": limit, "before": page[0]["id"] if has_prev and page else None,
                  "after": page[-1]["id"] if has_next and page else None}
        return Response.json(200, {"data": page, "meta": {"paging": paging, **(meta or {})},
                                   "links": links})

    # ------------------------------------------------------------------ API handlers
    def _institutions(self, request):
        if request.bearer():  # optional; when given it must be valid
            self._bearer_entry(request, ("user", "client"))
        items = [self._institution_resource(inst) for inst in data.INSTITUTIONS]
        # ⚠️ Ibanity-style filters; the adapter filters client-side and does not rely on them.
        for key, value in request.query.items():
            match = re.fullmatch(r"filter\[(\w+)\]\[(eq|contains|in)\]", key)
            if not match:
                continue
            field, operator = match.groups()
            def keep(item, field=field, operator=operator, value=value):
                actual = item["attributes"].get(field)
                if operator == "eq":
                    return str(actual).casefold() == value.casefold()
                if operator == "in":
                    return str(actual).casefold() in value.casefold().split(",")
                return value.casefold() in str(actual or "").casefold()
            items = [item for item in items if keep(item)]
        return self._paginate(request, items, "/financial-institutions")

    def _institution(self, request, institution_id):
        if request.bearer():
            self._bearer_entry(request, ("user", "client"))
        institution = data.find_institution(institution_id)
        if institution is None:
            raise ApiError("resourceNotFound", meta={"resource": "financialInstitution"})
        return Response.json(200, {"data": self._institution_resource(institution)})

    def _accounts(self, request):
        _entry, integration = self._user(request)
        with self._lock:
            items = [self._account_resource(spec) for spec in data.ACCOUNTS
                     if spec["id"] in integration["accounts"]]
        return self._paginate(request, items, "/accounts")

    def _account(self, request, account_id):
        _entry, integration = self._user(request)
        with self._lock:
            spec = self._shared_spec(integration, account_id)
            return Response.json(200, {"data": self._account_resource(spec)})

    def _revoke_account(self, request, account_id):
        _entry, integration = self._user(request)
        with self._lock:
            self._shared_spec(integration, account_id)
            integration["accounts"].discard(account_id)
        return Response.json(200, {"data": {"type": "account", "id": account_id}})

    def _booked_items(self, spec):
        """BankTransactions visible through the API, newest first."""
        valid, horizon = self._authorization_state(spec)
        count = self._count(spec)
        items = []
        day = horizon
        while day >= self._origin:
            items.extend(reversed(data.transactions_booking_on(spec["id"], day, count)))
            day -= timedelta(days=1)
        return items

    def _list_meta(self, spec, subtype):
        return {"synchronizedAt": _iso(self._synchronized_at(spec, subtype)),
                "latestSynchronization": self._sync_resource(self._latest_sync(spec, subtype))}

    def _transactions(self, request, account_id):
        _entry, integration = self._user(request)
        with self._lock:
            spec = self._shared_spec(integration, account_id)
            items = self._booked_items(spec)
            meta = self._list_meta(spec, "accountTransactions")
        render = _Renderer(lambda txn: txn.as_booked(self.url), lambda txn: txn.booked_id)
        return self._paginate(request, items, f"/accounts/{account_id}/transactions", meta,
                              render)

    def _transaction(self, request, account_id, transaction_id):
        _entry, integration = self._user(request)
        with self._lock:
            spec = self._shared_spec(integration, account_id)
            items = self._booked_items(spec)
        for txn in items:
            if txn.booked_id == transaction_id:
                return Response.json(200, {"data": txn.as_booked(self.url)})
        raise ApiError("resourceNotFound", meta={"resource": "transaction"})

    def _pending_transactions(self, request, account_id):
        _entry, integration = self._user(request)
        with self._lock:
            spec = self._shared_spec(integration, account_id)
            valid, horizon = self._authorization_state(spec)
            items = list(reversed(data.transactions_booking_on(
                spec["id"], horizon + timedelta(days=1), self._count(spec)))) if valid else []
            meta = self._list_meta(spec, "accountTransactions")
        render = _Renderer(lambda txn: txn.as_pending(self.url), lambda txn: txn.pending_id)
        return self._paginate(request, items, f"/accounts/{account_id}/pending-transactions",
                              meta, render)

    def _reauthorization_request(self, request, account_id):
        _entry, integration = self._user(request)
        body = request.json()
        resource = body.get("data") if isinstance(body.get("data"), dict) else None
        attributes = (resource or {}).get("attributes") if resource else body  # ⚠️ both shapes
        if resource is not None and resource.get("type") != "reauthorizationRequest":
            raise ApiError("validationError", "data.type must be reauthorizationRequest.",
                           meta={"attribute": "type"})
        redirect_uri = (attributes or {}).get("redirectUri") if isinstance(attributes, dict) \
            else None
        parts = urlsplit(redirect_uri or "")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ApiError("validationError", "redirectUri must be an absolute http(s) URI.",
                           meta={"attribute": "redirectUri"})
        with self._lock:
            self._shared_spec(integration, account_id)
            request_id = _new_uuid()
            self._reauthorizations[request_id] = {
                "id": request_id, "account_id": account_id, "integration_id": integration["id"],
                "organization_id": integration["organization_id"], "redirect_uri": redirect_uri,
                "status": "pending", "created_at": self.now()}
        link = (f"{self.authorization_url}/organizations/{integration['organization_id']}"
                f"/integrations/{integration['id']}/accounts/{account_id}"
                f"/reauthorization-requests/{request_id}")
        return Response.json(201, {"data": {"type": "reauthorizationRequest", "id": request_id,
                                            "attributes": {}, "links": {"redirect": link}}})

    @staticmethod
    def _sync_error_body(code):
        if code == BANK_DOWN_CODE:
            return {"code": code, "detail": "The financial institution is temporarily "
                                            "unavailable.",
                    "meta": {"financialInstitutionResponse": {
                        "statusCode": 503, "body": {"tppMessages": [{
                            "category": "ERROR", "code": "SERVICE_UNAVAILABLE",
                            "text": "Service temporarily unavailable"}]},
                        "requestId": _new_uuid(), "timestamp": _iso(_utcnow()),
                        "requestUri": "https://bank.example/psd2/v1/accounts"}}}
        _status, detail = ERRORS[code]
        meta = {}
        if code == "authorizationInvalid":  # shape of the ibanity fixtures
            meta = {"financialInstitutionResponse": {
                "statusCode": 401, "body": {"tppMessages": [{
                    "category": "ERROR", "code": "CONSENT_INVALID", "text": "Consent invalid"}]},
                "requestId": _new_uuid(), "timestamp": _iso(_utcnow()),
                "requestUri": "https://bank.example/psd2/v1/accounts"}}
        return {"code": code, "detail": detail, "meta": meta}

    def _create_synchronization(self, request):
        _entry, integration = self._user(request)
        body = request.json()
        resource = body.get("data")
        if not isinstance(resource, dict) or resource.get("type") != "synchronization":
            raise ApiError("validationError", "data.type must be synchronization.",
                           meta={"attribute": "type"})
        attributes = resource.get("attributes") or {}
        for name in ("resourceType", "resourceId", "subtype", "customerIpAddress"):  # ✅ required
            if not isinstance(attributes.get(name), str) or not attributes[name]:
                raise ApiError("validationError", f"{name} is required.",
                               meta={"attribute": name})
        if attributes["resourceType"] != "account":
            raise ApiError("validationError", "resourceType must be account.",
                           meta={"attribute": "resourceType"})
        if attributes["subtype"] not in SYNC_SUBTYPES:
            raise ApiError("validationError", f"subtype must be one of {', '.join(SYNC_SUBTYPES)}.",
                           meta={"attribute": "subtype"})
        with self._lock:
            spec = self._shared_spec(integration, attributes["resourceId"])
            now = self.now()
            for sync in self._synchronizations.values():
                if sync["account_id"] == spec["id"] and sync["subtype"] == attributes["subtype"] \
                        and sync["status"] != "error" and now - sync["created_at"] < SYNC_COOLDOWN:
                    raise ApiError("accountRecentlySynchronized")
            valid, _horizon = self._authorization_state(spec)
            outcome = {"sync_pending": "stuck", "sync_error": BANK_DOWN_CODE,
                       "authorization_invalid": "authorizationInvalid",
                       "consent_expired": "authorizationExpired"}.get(request.sync_fault)
            if outcome is None:
                outcome = "success" if valid else "authorizationExpired"
            sync = {"id": _new_uuid(), "account_id": spec["id"],
                    "subtype": attributes["subtype"], "created_at": now, "updated_at": now,
                    "customer_online": True, "status": "pending", "errors": [],
                    "customer_ip_address": attributes["customerIpAddress"],
                    "outcome": outcome, "polls_left": self._config["sync_polls"]}
            self._synchronizations[sync["id"]] = sync
            return Response.json(201, {"data": self._sync_resource(sync)})

    def _get_synchronization(self, request, sync_id):
        _entry, integration = self._user(request)
        with self._lock:
            sync = self._synchronizations.get(sync_id)
            if sync is None or sync["account_id"] not in integration["accounts"]:
                raise ApiError("resourceNotFound", meta={"resource": "synchronization"})
            if sync["status"] in ("pending", "running"):
                if sync["outcome"] == "stuck" or sync["polls_left"] > 0:
                    sync["polls_left"] -= 1
                    sync["status"] = "running"
                elif sync["outcome"] == "success":
                    sync["status"] = "success"
                else:
                    sync["status"] = "error"
                    sync["errors"] = [self._sync_error_body(sync["outcome"])]
                sync["updated_at"] = self.now()
            return Response.json(200, {"data": self._sync_resource(sync, relationships=True)})

    def _updated_transactions(self, request, sync_id):
        _entry, integration = self._user(request)
        with self._lock:
            sync = self._synchronizations.get(sync_id)
            if sync is None or sync["account_id"] not in integration["accounts"]:
                raise ApiError("resourceNotFound", meta={"resource": "synchronization"})
            spec = data.find_account(sync["account_id"])
            day = sync["created_at"].date()
            items = list(reversed(data.transactions_booking_on(spec["id"], day, self._count(spec)))) \
                if sync["status"] == "success" and sync["subtype"] == "accountTransactions" else []
        render = _Renderer(lambda txn: txn.as_booked(self.url), lambda txn: txn.booked_id)
        return self._paginate(request, items, f"/synchronizations/{sync_id}/updated-transactions",
                              render=render)

    def _delete_integration(self, request, organization_id):
        entry = self._bearer_entry(request, ("client",))  # ✅ client-credentials token
        with self._lock:
            integration = self._active_integration(entry["client_id"], organization_id)
            if integration is None:
                raise ApiError("resourceNotFound", meta={"resource": "integration"})
            self._revoke(integration)
        return Response.json(200, {"data": {
            "type": "integration", "id": integration["id"],
            "relationships": {"organization": {"data": {"type": "organization",
                                                        "id": organization_id}}}}})

    # ------------------------------------------------------------------ pages
    @staticmethod
    def _page(title, body, status=200):
        return Response.html(status, (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<style>body{font-family:sans-serif;max-width:38em;margin:2em auto;padding:0 1em}"
            "button{font-size:1em;padding:.5em 1.2em;margin-right:.5em}li{margin:.3em 0}</style>"
            f"</head><body><h1>Ponto (simulator)</h1>{body}</body></html>\n"))

    def _index(self, request):
        return self._page("Ponto simulator", "<p>Authorization host of the Ponto Connect "
                                             "simulator. The API is at "
                                             f"<code>{html.escape(self.url)}</code>.</p>")

    def _logo(self, request, key):
        institution = next((inst for inst in data.INSTITUTIONS if inst["key"] == key), None)
        if institution is None:
            raise ApiError("resourceNotFound")
        svg = LOGO_SVG.format(color=institution["primaryColor"],
                              letter=html.escape(institution["name"][0]))
        return Response(200, svg.encode(), "image/svg+xml", {"Cache-Control": "max-age=86400"})

    def _authorize_params(self, params):
        """(params, None, None), (None, message for an error page, None) or
        (None, None, redirect Response carrying an OAuth error back to the client)."""
        if params.get("client_id") != self.client_id:
            return None, "Unknown client_id.", None
        redirect_uri = params.get("redirect_uri") or ""
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return None, "A valid redirect_uri (absolute http(s), no fragment) is required.", None
        if self.redirect_uris is not None and redirect_uri not in self.redirect_uris:
            return None, "The redirect_uri is not registered for this client.", None
        state = params.get("state") or ""

        def back(error, description):
            return _redirect(redirect_uri, {"error": error, "error_description": description,
                                            "state": state})

        if params.get("response_type") != "code":
            return None, None, back("unsupported_response_type",
                                    "Only response_type=code is supported.")
        scopes = (params.get("scope") or "").split()
        if "ai" not in scopes or any(scope not in SCOPES for scope in scopes):
            return None, None, back("invalid_scope", "scope must contain ai and only ai, pi, "
                                                     "name, offline_access.")
        if not state:
            return None, None, back("invalid_request", "The state parameter is required.")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return None, None, back("invalid_request", "PKCE is required: code_challenge with "
                                                       "code_challenge_method=S256.")
        return {"client_id": self.client_id, "redirect_uri": redirect_uri, "state": state,
                "scope": " ".join(scopes), "response_type": "code",
                "code_challenge": params["code_challenge"],
                "code_challenge_method": "S256"}, None, None

    def _authorize_page(self, request):
        params, problem, redirect = self._authorize_params(request.query)
        if redirect is not None:
            return redirect
        if problem:
            return self._page("Ponto – Error", f"<p><strong>Invalid request.</strong> "
                                               f"{html.escape(problem)}</p>", status=400)
        with self._lock:
            rows = []
            for spec in data.ACCOUNTS:
                valid, _horizon = self._authorization_state(spec)
                bank = data.find_institution(spec["institution_id"])["name"]
                rows.append(
                    f'<li><label><input type="checkbox" name="account" value="{spec["id"]}" '
                    f'checked> {html.escape(spec["description"])} – {spec["iban"]} '
                    f'({spec["currency"]}, {html.escape(bank)})'
                    f'{"" if valid else " – authorization expired, will be renewed"}'
                    "</label></li>")
        hidden = "".join(f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
                         for name, value in params.items())
        body = (f"<h2>{html.escape(data.ORGANIZATION_NAME)}</h2>"
                "<p>An application asks to read the balances and transactions of the accounts "
                "you select below.</p>"
                f'<form method="post" action="/oauth2/auth/decision">{hidden}'
                f"<ul>{''.join(rows)}</ul>"
                '<button type="submit" name="decision" value="approve">Allow</button>'
                '<button type="submit" name="decision" value="cancel">Cancel</button></form>')
        return self._page("Ponto – Authorize", body)

    def _authorize_decision(self, request):
        lists = request.form_lists()
        form = {key: values[0] for key, values in lists.items()}
        params, problem, redirect = self._authorize_params(form)
        if redirect is not None:
            return redirect
        if problem:
            return self._page("Ponto – Error", f"<p>{html.escape(problem)}</p>", status=400)
        decision = form.get("decision")
        if decision == "cancel":
            return _redirect(params["redirect_uri"], {"error": DENIED[0],
                                                      "error_description": DENIED[1],
                                                      "state": params["state"]})
        if decision != "approve":
            return self._page("Ponto – Error", "<p>decision must be approve or cancel.</p>",
                              status=400)
        chosen = [account_id for account_id in lists.get("account", [])
                  if data.find_account(account_id)]
        if not chosen:
            return self._page("Ponto – Error", "<p>Select at least one account.</p>", status=400)
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = self.now()
            for account_id in chosen:  # the user authorizes the accounts at the bank (SCA)
                auth = self._authorizations.get(account_id)
                if auth is None or now >= auth["expires_at"]:
                    self._authorizations[account_id] = {
                        "authorized_at": now, "expires_at": now + AUTHORIZATION_VALIDITY}
            self._codes[code] = {"client_id": params["client_id"],
                                 "redirect_uri": params["redirect_uri"],
                                 "code_challenge": params["code_challenge"],
                                 "scope": params["scope"], "accounts": chosen,
                                 "organization_id": data.ORGANIZATION_ID,
                                 "expires_at": now + CODE_TTL}
        return _redirect(params["redirect_uri"], {"code": code, "scope": params["scope"],
                                                  "state": params["state"]})

    def _reauthorization(self, organization_id, integration_id, account_id, request_id):
        entry = self._reauthorizations.get(request_id)
        if entry is None or entry["status"] != "pending" or (
                entry["organization_id"], entry["integration_id"], entry["account_id"]) != (
                organization_id, integration_id, account_id):
            raise ApiError("resourceNotFound", "This reauthorization request is unknown or was "
                                               "already used.")
        return entry

    def _reauthorize_page(self, request, organization_id, integration_id, account_id,
                          request_id):
        with self._lock:
            self._reauthorization(organization_id, integration_id, account_id, request_id)
            spec = data.find_account(account_id)
            bank = data.find_institution(spec["institution_id"])["name"]
        body = (f"<h2>Reauthorize {html.escape(spec['description'])}</h2>"
                f"<p>{spec['iban']} at {html.escape(bank)}: renew the access of Ponto to this "
                "account (and the other accounts you share from the same bank).</p>"
                f'<form method="post" action="{html.escape(request.path)}/decision">'
                '<button type="submit" name="decision" value="approve">Reauthorize</button>'
                '<button type="submit" name="decision" value="cancel">Cancel</button></form>')
        return self._page("Ponto – Reauthorize", body)

    def _reauthorize_decision(self, request, organization_id, integration_id, account_id,
                              request_id):
        decision = request.form().get("decision")
        with self._lock:
            entry = self._reauthorization(organization_id, integration_id, account_id,
                                          request_id)
            if decision not in ("approve", "cancel"):
                return self._page("Ponto – Error", "<p>decision must be approve or cancel.</p>",
                                  status=400)
            entry["status"] = "approved" if decision == "approve" else "cancelled"
            if decision == "cancel":
                return _redirect(entry["redirect_uri"], {"error": DENIED[0],
                                                         "error_description": DENIED[1]})
            now = self.now()
            spec = data.find_account(account_id)
            integration = self._integrations[integration_id]
            renewed = [other["id"] for other in data.ACCOUNTS
                       if other["id"] == account_id or (
                           REAUTHORIZE_WHOLE_INSTITUTION
                           and other["institution_id"] == spec["institution_id"]
                           and other["id"] in integration["accounts"])]
            for other_id in renewed:
                self._authorizations[other_id] = {"authorized_at": now,
                                                  "expires_at": now + AUTHORIZATION_VALIDITY}
        return _redirect(entry["redirect_uri"], {})

    # ------------------------------------------------------------------ admin over HTTP (/_sim)
    @staticmethod
    def _admin(call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise ApiError("validationError", str(exc)) from None

    def _sim_clock_get(self, request):
        return Response.json(200, {"today": self.today.isoformat(), "now": _iso(self.now())},
                             content_type="application/json")

    def _sim_clock_set(self, request):
        body = request.json()
        if "today" in body:
            self._admin(self.set_today, body["today"])
        elif isinstance(body.get("advance_days"), int) and not isinstance(body["advance_days"],
                                                                         bool):
            self.advance_days(body["advance_days"])
        else:
            raise ApiError("validationError", "give today or an integer advance_days")
        return self._sim_clock_get(request)

    def _sim_config_get(self, request):
        return Response.json(200, {"config": self.config()}, content_type="application/json")

    def _sim_config_set(self, request):
        body = request.json()
        allowed = {"history_days", "txns_per_day", "access_token_ttl", "sync_polls",
                   "rate_limit", "onboarding_complete"}
        if set(body) - allowed:
            raise ApiError("validationError", f"unknown fields: {', '.join(sorted(set(body) - allowed))}")
        return Response.json(200, {"config": self._admin(self.configure, **body)},
                             content_type="application/json")

    def _sim_faults_list(self, request):
        return Response.json(200, {"faults": self.faults()}, content_type="application/json")

    def _sim_faults_add(self, request):
        body = request.json()
        options = {key: body[key] for key in ("times", "skip", "path", "consent_id", "seconds")
                   if key in body}
        if set(body) - set(options) - {"kind"}:
            raise ApiError("validationError", "unknown fields")
        fault = self._admin(self.add_fault, body.get("kind"), **options)
        return Response.json(201, {"fault": fault}, content_type="application/json")

    def _sim_faults_clear(self, request):
        self.clear_faults()
        return Response(204)

    def _sim_stats(self, request):
        return Response.json(200, self.stats(), content_type="application/json")

    def _sim_reset(self, request):
        self.reset()
        return Response(204)

    def _sim_webhook(self, request):
        return Response.json(*self._admin(self.webhooks.admin, request.json()),
                             content_type="application/json")

    def _sim_integrations(self, request):
        return Response.json(200, {"integrations": self.integrations()},
                             content_type="application/json")


class _Renderer:
    """Renders a BankTransaction as a resource; ``identify`` gives the id without rendering."""

    def __init__(self, render, identify):
        self.render = render
        self.identify = identify

    def __call__(self, item):
        return self.render(item)


def _redirect(uri, params):
    if params:
        separator = "&" if urlsplit(uri).query else ("" if uri.endswith("?") else "?")
        uri = uri + separator + urlencode(params)
    return Response(302, b"", None, {"Location": uri, "Cache-Control": "no-store"})


# ============================================================================ the user's browser
class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.hidden = []
        self.checkboxes = []  # (name, value, checked)
        self.decisions = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action")
        elif tag == "input" and attrs.get("type") == "hidden":
            self.hidden.append((attrs.get("name"), attrs.get("value") or ""))
        elif tag == "input" and attrs.get("type") == "checkbox":
            self.checkboxes.append((attrs.get("name"), attrs.get("value") or "",
                                    "checked" in attrs))
        elif tag == "button" and attrs.get("name") == "decision":
            self.decisions.add(attrs.get("value"))


def _browser_context(port):
    with _RUNNING_LOCK:
        ca = _RUNNING.get(port)
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    return context


def simulate_user(consent_url, decision="approve", accounts=None, timeout=10):
    """Play the user in a browser on a Ponto page (``/oauth2/auth`` or a reauthorization link):
    select ``accounts`` (ids or IBANs; default: the pre-checked ones), click Allow/Reauthorize
    (``approve``) or Cancel (``cancel``) and return the query parameters of the redirect back.

    Raises ``RuntimeError`` if the page does not answer as documented.
    """
    parts = urlsplit(consent_url)
    context = _browser_context(parts.port)

    def call(method, target, body=None, headers=None):
        connection = http.client.HTTPSConnection(parts.hostname, parts.port or 443,
                                                 timeout=timeout, context=context)
        try:
            connection.request(method, target, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    status, headers, page = call("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
    if status in (301, 302, 303) and headers.get("Location"):  # the page refused the request
        return _query_of(headers["Location"])
    if status != 200:
        raise RuntimeError(f"the Ponto page answered HTTP {status}: {page[:200]!r}")
    form = _FormParser()
    form.feed(page.decode("utf-8"))
    if decision not in form.decisions or not form.action:
        raise RuntimeError("the Ponto page has no such decision button")
    fields = list(form.hidden)
    if accounts is None:
        fields += [(name, value) for name, value, checked in form.checkboxes if checked]
    else:
        wanted = {(data.find_account(item) or {"id": item})["id"] for item in accounts}
        fields += [(name, value) for name, value, _checked in form.checkboxes if value in wanted]
    fields.append(("decision", decision))
    status, headers, _ = call("POST", urljoin(parts.path, form.action), urlencode(fields),
                              {"Content-Type": "application/x-www-form-urlencoded"})
    location = headers.get("Location")
    if status != 302 or not location:
        raise RuntimeError(f"the Ponto decision answered HTTP {status}")
    return _query_of(location)


def _query_of(location):
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


__all__ = ["PontoServer", "simulate_user", "FAULT_KINDS", "DEFAULT_CLIENT_ID",
           "DEFAULT_CLIENT_SECRET"]
