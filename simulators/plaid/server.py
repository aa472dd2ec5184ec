"""A local Plaid: the POST-only JSON API of Plaid (API version 2020-09-14) on 127.0.0.1.

Standard library only (see README.md). One ``PlaidServer`` is one Plaid environment: its Link
tokens, Items, access tokens, simulated clock, configuration and fault knobs live in the object,
guarded by a lock, and are reachable from Python (``server.add_fault(...)``,
``server.set_today(...)``) and over HTTP (``/_sim/...``).

Facts marked unconfirmed in the reference (⚠️/❓) are kept in the constants of the section
"Unconfirmed behaviour" below, so that they are easy to correct.
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
import socket
import threading
import time
from collections import Counter, deque
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from . import data
from .webhooks import PlaidWebhooks

_logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "plaid-sim-client-id"
DEFAULT_SECRET = "plaid-sim-secret-0123456789"
API_VERSION = "2020-09-14"
DEFAULT_HISTORY_DAYS = 90
DEFAULT_TXNS_PER_DAY = {"EUR": 3, "GBP": 1, "USD": 2}
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 60
LINK_TOKEN_TTL = timedelta(hours=4)            # ✅ new-Item link_token
UPDATE_LINK_TOKEN_TTL = timedelta(minutes=30)  # ✅ update-mode link_token
HOSTED_LINK_TTL = timedelta(minutes=30)        # ✅ Hosted Link URL default (link_token too)
PUBLIC_TOKEN_TTL = timedelta(minutes=30)       # ✅
MAX_HOSTED_LINK_SECONDS = 21 * 24 * 3600       # ✅ url_lifetime_seconds <= 21 days
SUPPORTED_LANGUAGES = ("da", "de", "en", "es", "et", "fr", "hi", "it", "ja", "lt", "lv", "nl",
                       "no", "pl", "pt", "ro", "sv", "vi", "zh")
COUNTRY_CODES = ("US", "GB", "ES", "NL", "FR", "IE", "CA", "DE", "IT", "PL", "DK", "NO", "SE",
                 "EE", "LT", "LV", "PT", "BE", "AT", "FI")

# --------------------------------------------------------------------------- unconfirmed behaviour
# Per-minute limits (reference §1.7: accounts/get 15/Item, balance/get 5/Item, institutions/get
# 50/client, item/get 15/Item are documented ✅; the transactions limits and every error code
# except ACCOUNTS_LIMIT are ❓). path -> (requests per minute, scope "item"|"client", error_code)
RATE_LIMITS = {
    "/accounts/get": (15, "item", "ACCOUNTS_LIMIT"),
    "/accounts/balance/get": (5, "item", "BALANCE_LIMIT"),
    "/auth/get": (15, "item", "AUTH_LIMIT"),
    "/institutions/get": (50, "client", "RATE_LIMIT"),
    "/institutions/search": (50, "client", "RATE_LIMIT"),
    "/item/get": (15, "item", "ITEM_GET_LIMIT"),
    "/transactions/sync": (50, "item", "TRANSACTIONS_SYNC_LIMIT"),
    "/transactions/get": (30, "item", "TRANSACTIONS_LIMIT"),
}
RATE_WINDOW_SECONDS = 60.0
# ❓ Whether Plaid's 429 carries a Retry-After header; the simulator sends one (an adapter
# falls back to the per-minute window without it).
SEND_RETRY_AFTER = True
# ❓ What Hosted Link appends to completion_redirect_uri: nothing is documented, so nothing.
COMPLETION_REDIRECT_PARAMS = {}
# ❓ Error after /item/remove when the old access_token is used again.
REMOVED_ITEM_ERROR = "INVALID_ACCESS_TOKEN"
# ❓ Error for a /transactions/sync cursor that is not one we issued (for this Item/account).
INVALID_CURSOR_ERROR = "INVALID_FIELD"
# ❓ The answer of the user_must_be_present fault: the closest real "the user must act" code.
USER_MUST_BE_PRESENT_ERROR = "USER_SETUP_REQUIRED"
# ❓ Link exit status when the user cancels the consent page.
CANCEL_EXIT_STATUS = {True: "requires_oauth", False: "requires_credentials"}

# error_code -> (HTTP status, error_type, error_message). Statuses per reference §1.7.
ERRORS = {
    "ITEM_LOGIN_REQUIRED": (400, "ITEM_ERROR",
                            "the login details of this item have changed (credentials, MFA, or "
                            "required user action) and a user login is required to update this "
                            "information. use Link's update mode to restore the item to a good "
                            "state"),
    "ACCESS_NOT_GRANTED": (400, "ITEM_ERROR",
                           "the user did not grant the necessary permissions for their account"),
    "NO_ACCOUNTS": (400, "ITEM_ERROR", "no valid accounts were found for this item"),
    "USER_PERMISSION_REVOKED": (400, "ITEM_ERROR",
                                "the user has revoked access to their data for this item"),
    "USER_SETUP_REQUIRED": (400, "ITEM_ERROR",
                            "the user must log in directly to the financial institution and "
                            "take some action before Plaid can access their accounts"),
    "PRODUCT_NOT_READY": (400, "ITEM_ERROR",
                          "the requested product is not yet ready. please provide a webhook or "
                          "try the request again later"),
    "PRODUCTS_NOT_SUPPORTED": (400, "ITEM_ERROR",
                               "the requested products are not supported by this item"),
    "ITEM_NOT_FOUND": (400, "ITEM_ERROR", "the requested item was not found"),
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": (
        400, "TRANSACTIONS_ERROR",
        "underlying transaction data changed since last page was fetched. please restart "
        "pagination from last update"),
    "INSTITUTION_DOWN": (400, "INSTITUTION_ERROR",
                         "this institution is not currently responding to this request. please "
                         "try again soon"),
    "INSTITUTION_NOT_RESPONDING": (400, "INSTITUTION_ERROR",
                                   "this institution is not currently responding to this "
                                   "request. please try again soon"),
    "INSTITUTION_NOT_AVAILABLE": (400, "INSTITUTION_ERROR",
                                  "this institution is not currently available"),
    "INSTITUTION_NOT_FOUND": (400, "INSTITUTION_ERROR",
                              "this institution was not found"),
    "INSTITUTION_NOT_ENABLED_IN_ENVIRONMENT": (400, "INSTITUTION_ERROR",
                                               "this institution is not enabled in this "
                                               "environment"),
    "RATE_LIMIT_EXCEEDED": (429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded"),
    "RATE_LIMIT": (429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded for this client"),
    "ACCOUNTS_LIMIT": (429, "RATE_LIMIT_EXCEEDED",
                       "rate limit exceeded for attempts to access this item. please try again "
                       "later"),
    "BALANCE_LIMIT": (429, "RATE_LIMIT_EXCEEDED",
                      "rate limit exceeded for attempts to access real-time balance"),
    "AUTH_LIMIT": (429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded for /auth/get"),
    "ITEM_GET_LIMIT": (429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded for /item/get"),
    "TRANSACTIONS_LIMIT": (429, "RATE_LIMIT_EXCEEDED",
                           "rate limit exceeded for attempts to access transactions"),
    "TRANSACTIONS_SYNC_LIMIT": (429, "RATE_LIMIT_EXCEEDED",
                                "rate limit exceeded for /transactions/sync"),
    "INVALID_ACCESS_TOKEN": (400, "INVALID_INPUT", "provided access token is invalid"),
    "INVALID_API_KEYS": (400, "INVALID_INPUT", "invalid client_id or secret provided"),
    "INVALID_PUBLIC_TOKEN": (400, "INVALID_INPUT", "provided public token is expired or invalid"),
    "INVALID_LINK_TOKEN": (400, "INVALID_INPUT", "provided link token is expired or invalid"),
    "INVALID_ACCOUNT_ID": (400, "INVALID_INPUT",
                           "one or more of the account IDs is invalid for this item"),
    "MISSING_FIELDS": (400, "INVALID_REQUEST", "the following required fields are missing"),
    "INVALID_FIELD": (400, "INVALID_REQUEST", "a field has an invalid value"),
    "UNKNOWN_FIELDS": (400, "INVALID_REQUEST",
                       "the following fields are not recognized by this endpoint"),
    "INVALID_BODY": (400, "INVALID_REQUEST",
                     "body could not be parsed as JSON; check that the body is valid JSON"),
    "INVALID_HEADERS": (400, "INVALID_REQUEST", "a request header is invalid"),
    "NOT_FOUND": (404, "INVALID_REQUEST", "not found"),
    "INTERNAL_SERVER_ERROR": (500, "API_ERROR",
                              "an unexpected error occurred; please retry the request"),
    "PLANNED_MAINTENANCE": (503, "API_ERROR",
                            "the Plaid API is temporarily unavailable due to planned maintenance"),
}
DISPLAY_MESSAGES = {
    "ITEM_LOGIN_REQUIRED": "The login details of this connection have changed. Please "
                           "reconnect it.",
    "ACCESS_NOT_GRANTED": "You did not share the permissions this application needs.",
    "NO_ACCOUNTS": "No compatible accounts were found at this institution.",
    "USER_PERMISSION_REVOKED": "You revoked the access to this account.",
    "USER_SETUP_REQUIRED": "Please log in to your bank's website and complete the requested "
                           "action, then try again.",
    "INSTITUTION_DOWN": "This institution is not currently available. Please try again later.",
    "INSTITUTION_NOT_RESPONDING": "This institution is not responding. Please try again later.",
    "INSTITUTION_NOT_AVAILABLE": "This institution is not currently available.",
}
DOC_SECTIONS = {"ITEM_ERROR": "item", "INSTITUTION_ERROR": "institution",
                "RATE_LIMIT_EXCEEDED": "rate-limit-exceeded", "INVALID_INPUT": "invalid-input",
                "INVALID_REQUEST": "invalid-request", "API_ERROR": "api",
                "TRANSACTIONS_ERROR": "transactions"}

GENERIC_FAULTS = ("delay", "timeout", "http_500", "http_503", "rate_limit", "malformed_json",
                  "consent_expired", "user_must_be_present")
SPECIAL_FAULTS = ("transactions_sync_mutation_during_pagination", "transactions_not_ready",
                  "link_session_pending")
# Besides these, any error code of ERRORS is a fault kind: add_fault("INSTITUTION_DOWN").
FAULT_KINDS = GENERIC_FAULTS + SPECIAL_FAULTS + tuple(sorted(ERRORS))

_NO_ANSWER = object()
_CREDENTIALS = ("client_id", "secret")

# Top-level request fields each endpoint knows (from the OpenAPI request schemas).
FIELDS = {
    "/link/token/create": {
        "access_token", "access_tokens", "account_filters", "additional_consented_products",
        "android_package_name", "appearance_mode", "auth", "base_report", "card_switch",
        "cashflow_report", "client_name", "consumer_report_permissible_purpose",
        "country_codes", "cra_enabled", "cra_options", "credit_partner_insights", "employment",
        "enable_multi_item_link", "eu_config", "financekit_supported", "hosted_link",
        "identity", "identity_verification", "income_verification", "institution_data",
        "institution_id", "investments", "investments_auth", "language",
        "link_customization_name", "optional_products", "payment_configuration",
        "payment_initiation", "products", "redirect_uri", "required_if_supported_products",
        "statements", "third_party_user_token", "transactions", "transfer", "update", "user",
        "user_id", "user_token", "webhook"},
    "/link/token/get": {"link_token"},
    "/item/public_token/exchange": {"public_token"},
    "/sandbox/public_token/create": {"initial_products", "institution_id", "options",
                                     "user_id", "user_token"},
    "/sandbox/item/reset_login": {"access_token"},
    "/item/get": {"access_token"},
    "/item/remove": {"access_token", "reason_code", "reason_note"},
    "/accounts/get": {"access_token", "options"},
    "/accounts/balance/get": {"access_token", "options"},
    "/auth/get": {"access_token", "options"},
    "/institutions/get": {"count", "country_codes", "offset", "options"},
    "/institutions/get_by_id": {"country_codes", "institution_id", "options"},
    "/institutions/search": {"country_codes", "options", "products", "query"},
    "/transactions/sync": {"access_token", "count", "cursor", "options"},
    "/transactions/get": {"access_token", "end_date", "options", "start_date"},
    "/transactions/refresh": {"access_token"},
    "/webhook_verification_key/get": {"key_id"},
    "/sandbox/item/fire_webhook": {"access_token", "webhook_code", "webhook_type"},
}
REQUIRED = {
    "/link/token/create": ("client_name", "language", "country_codes"),
    "/link/token/get": ("link_token",),
    "/item/public_token/exchange": ("public_token",),
    "/sandbox/public_token/create": ("institution_id", "initial_products"),
    "/institutions/get": ("count", "offset", "country_codes"),
    "/institutions/get_by_id": ("institution_id", "country_codes"),
    "/institutions/search": ("query", "country_codes"),
    "/transactions/get": ("access_token", "start_date", "end_date"),
    "/webhook_verification_key/get": ("key_id",),
    "/sandbox/item/fire_webhook": ("access_token", "webhook_code"),
}
# Endpoints that read an Item's data (they fail while the Item is in an error state).
DATA_PATHS = frozenset({"/accounts/get", "/accounts/balance/get", "/auth/get",
                        "/transactions/sync", "/transactions/get", "/transactions/refresh"})


def _utcnow():
    return datetime.now(timezone.utc)


def _iso(moment):
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def _as_day(value):
    return value if isinstance(value, date) and not isinstance(value, datetime) else \
        date.fromisoformat(str(value))


def _new_uuid():
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _request_id():
    alphabet = data.BASE62
    return "".join(secrets.choice(alphabet) for _ in range(15))


class PlaidApiError(Exception):
    """An error answer in Plaid's shape (``ERRORS`` gives status, type and default message)."""

    def __init__(self, code, message=None, *, reason=None, headers=None, status=None,
                 display_message=None):
        default_status, error_type, default_message = ERRORS[code]
        super().__init__(message or default_message)
        self.code = code
        self.status = status or default_status
        self.error_type = error_type
        self.message = message or default_message
        self.reason = reason
        self.headers = dict(headers or {})
        self.display_message = display_message or DISPLAY_MESSAGES.get(code)

    def body(self, request_id):
        section = DOC_SECTIONS.get(self.error_type, "")
        return {
            "display_message": self.display_message,
            "documentation_url": f"https://plaid.com/docs/errors/{section}/#{self.code.lower()}",
            "error_code": self.code,
            "error_code_reason": self.reason,
            "error_message": self.message,
            "error_type": self.error_type,
            "request_id": request_id,
            "suggested_action": None,
        }


class Response:
    def __init__(self, status, body=b"", content_type=None, headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status, payload, headers=None):
        return cls(status, json.dumps(payload).encode(), "application/json; charset=utf-8",
                   headers)

    @classmethod
    def html(cls, status, text):
        return cls(status, text.encode(), "text/html; charset=utf-8")


class Request:
    def __init__(self, method, target, headers, body):
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path or "/"
        self.query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body
        self.request_id = _request_id()
        self.item_id = None      # filled in when the body's access_token is known
        self.payload = None      # the decoded JSON body of an API call

    def form(self):
        text = self.body.decode("utf-8", "replace")
        return {key: values for key, values in parse_qs(text, keep_blank_values=True).items()}

    def json_body(self):
        if not self.body:
            return {}
        try:
            payload = json.loads(self.body)
        except ValueError:
            raise PlaidApiError("INVALID_BODY") from None
        if not isinstance(payload, dict):
            raise PlaidApiError("INVALID_BODY", "the request body must be a JSON object")
        return payload


API_ROUTES = tuple(FIELDS)
PAGE_ROUTES = (
    ("GET", re.compile(r"/\Z"), "/", "_root"),
    ("GET", re.compile(r"/hl/(?P<code>[A-Za-z0-9_\-]+)\Z"), "/hl/{code}", "_hosted_page"),
    ("POST", re.compile(r"/hl/(?P<code>[A-Za-z0-9_\-]+)/decision\Z"), "/hl/{code}/decision",
     "_hosted_decision"),
    ("GET", re.compile(r"/_sim/faults\Z"), None, "_sim_faults_list"),
    ("POST", re.compile(r"/_sim/faults\Z"), None, "_sim_faults_add"),
    ("DELETE", re.compile(r"/_sim/faults\Z"), None, "_sim_faults_clear"),
    ("POST", re.compile(r"/_sim/clock\Z"), None, "_sim_clock"),
    ("POST", re.compile(r"/_sim/config\Z"), None, "_sim_config"),
    ("POST", re.compile(r"/_sim/reset\Z"), None, "_sim_reset"),
    ("GET", re.compile(r"/_sim/stats\Z"), None, "_sim_stats"),
    ("POST", re.compile(r"/_sim/webhook\Z"), None, "_sim_webhook"),
)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PlaidSimulator/1.0"
    sys_version = ""
    timeout = 60

    def setup(self):
        super().setup()
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms on every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.plaid._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.plaid._track(self.connection, False)

    def log_request(self, code="-", size="-"):
        # The path only: bodies (tokens, secrets) and query strings are never logged.
        self.log_message("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format, *args):  # noqa: A002
        if self.server.plaid.verbose:
            _logger.info("plaid simulator: " + format, *args)

    def _handle(self, method):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 1_000_000:
            self.close_connection = True
            error = PlaidApiError("INVALID_BODY", "bad Content-Length")
            self._write(Response.json(400, error.body(_request_id())))
            return
        body = self.rfile.read(length) if length else b""
        request = Request(method, self.path, self.headers, body)
        response = self.server.plaid.handle(request)
        if response is _NO_ANSWER:
            self.close_connection = True
            return
        response.headers.setdefault("X-Request-Id", request.request_id)
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
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")


class PlaidServer:
    """A Plaid environment on ``http://host:port`` (port 0: any free port), in a daemon thread.

    ``environment`` ("sandbox" or "production") only changes the token prefixes
    (``access-sandbox-…``). Usable as a context manager: ``with PlaidServer() as plaid: ...``.
    """

    def __init__(self, host="127.0.0.1", port=0, client_id=DEFAULT_CLIENT_ID,
                 secret=DEFAULT_SECRET, *, environment="sandbox",
                 history_days=DEFAULT_HISTORY_DAYS, txns_per_day=None, today=None,
                 verbose=False):
        if environment not in ("sandbox", "production"):
            raise ValueError("environment must be sandbox or production")
        self.host = host
        self.port = port
        self.client_id = client_id
        self._secret = secret
        self.environment = environment
        self.verbose = verbose
        self._initial = {"history_days": history_days, "txns_per_day": txns_per_day,
                         "today": today}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections = set()
        self._httpd = None
        self._thread = None
        self._cursor_key = secrets.token_bytes(16)
        self.webhooks = PlaidWebhooks(self)  # signed webhooks (webhooks.py)
        self._reset_state()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        if self._httpd is not None:
            raise RuntimeError("the Plaid simulator is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.plaid = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name=f"plaid-sim-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving; sleeping faults wake up, open connections are closed. Idempotent."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self):
        host = self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"http://{host}:{self.port}"

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
                            "consent_days": None,
                            "rate_limits": {path: limit for path, (limit, _s, _c)
                                            in RATE_LIMITS.items()}}
            self._link_tokens = {}
            self._hosted = {}
            self._public_tokens = {}
            self._items = {}
            self._access_tokens = {}
            self._removed = set()
            self._modified = {}
            self._generation = 0
            self._faults = []
            self._fault_seq = 0
            self._stats = Counter()
            self._faults_triggered = 0
            self._rate_windows = {}
            initial = self._initial
            if initial["today"] is not None:
                self._offset_days = (_as_day(initial["today"]) - _utcnow().date()).days
            self._configure(history_days=initial["history_days"],
                            txns_per_day=initial["txns_per_day"])
            self._origin = self.today - timedelta(days=self._config["history_days"])

    def reset(self):
        """Back to the state of a new server: clock, configuration, Items, faults, stats."""
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

    def configure(self, history_days=None, txns_per_day=None, consent_days=None,
                  rate_limits=None):
        """Change the data parameters; returns the configuration.

        ``rate_limits``: {path: requests per minute, or None for no limit}.
        ``consent_days``: consent length of new/renewed EU/UK Items (default: the institution's).
        """
        with self._lock:
            self._configure(history_days, txns_per_day, consent_days, rate_limits)
            self._extend_origin()
            self._generation += 1
            return self.config()

    def _configure(self, history_days=None, txns_per_day=None, consent_days=None,
                   rate_limits=None):
        if history_days is not None:
            if not isinstance(history_days, int) or isinstance(history_days, bool) \
                    or not 1 <= history_days <= 730:
                raise ValueError("history_days must be an integer between 1 and 730")
            self._config["history_days"] = history_days
        if txns_per_day is not None:
            if not isinstance(txns_per_day, dict):
                raise ValueError("txns_per_day must be a dict like {\"EUR\": 3}")
            merged = dict(self._config["txns_per_day"])
            for currency, count in txns_per_day.items():
                if currency not in DEFAULT_TXNS_PER_DAY:
                    raise ValueError(f"unknown currency {currency!r}")
                if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 500:
                    raise ValueError("transactions per day must be an integer between 0 and 500")
                merged[currency] = count
            self._config["txns_per_day"] = merged
        if consent_days is not None:
            if not isinstance(consent_days, int) or consent_days < 1:
                raise ValueError("consent_days must be a positive integer")
            self._config["consent_days"] = consent_days
        if rate_limits is not None:
            for path, limit in rate_limits.items():
                if path not in RATE_LIMITS:
                    raise ValueError(f"no rate limit on {path!r}")
                if limit is not None and (not isinstance(limit, int) or limit < 1):
                    raise ValueError("a rate limit must be a positive integer or None")
                self._config["rate_limits"][path] = limit

    def config(self):
        with self._lock:
            return {"history_days": self._config["history_days"],
                    "txns_per_day": dict(self._config["txns_per_day"]),
                    "consent_days": self._config["consent_days"],
                    "rate_limits": dict(self._config["rate_limits"]),
                    "today": self.today.isoformat(), "first_day": self._origin.isoformat()}

    # ------------------------------------------------------------------ faults
    def add_fault(self, kind, *, times=1, skip=0, path=None, consent_id=None, seconds=None):
        """Arm a fault (see README.md); ``consent_id`` is an ``item_id``. Returns the fault."""
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

    def _take_fault(self, request, kinds):
        """The first armed fault of one of ``kinds`` that matches ``request`` (consumed)."""
        with self._lock:
            for fault in self._faults:
                if fault["remaining"] == 0 or fault["kind"] not in kinds:
                    continue
                if fault["path"] is not None and fault["path"] not in request.path:
                    continue
                if fault["consent_id"] is not None and fault["consent_id"] != request.item_id:
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
        """A Response, ``_NO_ANSWER``, or None to answer normally (after a delay)."""
        kind, seconds = fault["kind"], fault["seconds"]
        if kind == "delay":
            self._stopping.wait(1.0 if seconds is None else seconds)
            return None
        if kind == "timeout":
            self._stopping.wait(DEFAULT_TIMEOUT_FAULT_SECONDS if seconds is None else seconds)
            return _NO_ANSWER
        if kind == "http_500":
            raise PlaidApiError("INTERNAL_SERVER_ERROR")
        if kind == "http_503":
            headers = {"Retry-After": str(int(-(-seconds // 1)))} if seconds is not None else {}
            raise PlaidApiError("PLANNED_MAINTENANCE", headers=headers)
        if kind == "rate_limit":
            wait = int(-(-(DEFAULT_RETRY_AFTER if seconds is None else seconds) // 1))
            code = RATE_LIMITS.get(request.path, (None, None, "RATE_LIMIT"))[2]
            raise PlaidApiError(code, headers=self._rate_headers(wait))
        if kind == "malformed_json":
            return Response(200, b'{"accounts": [{"account_id": "', "application/json")
        if kind == "consent_expired":
            raise PlaidApiError("ITEM_LOGIN_REQUIRED", reason="OAUTH_CONSENT_EXPIRED")
        if kind == "user_must_be_present":
            raise PlaidApiError(USER_MUST_BE_PRESENT_ERROR)
        raise PlaidApiError(kind)  # an error code of ERRORS

    @staticmethod
    def _rate_headers(wait):
        return {"Retry-After": str(int(wait))} if SEND_RETRY_AFTER else {}

    # ------------------------------------------------------------------ introspection
    def stats(self):
        """Requests per ``METHOD /path`` (admin ``/_sim`` calls not counted)."""
        with self._lock:
            return {"requests": dict(self._stats), "total": sum(self._stats.values()),
                    "faults_triggered": self._faults_triggered}

    def items(self):
        """The Items (consents), without tokens."""
        with self._lock:
            return [self._item_view(item) for item in self._items.values()]

    def _item_view(self, item):
        return {"item_id": item["item_id"], "institution_id": item["institution_id"],
                "created_at": _iso(item["created_at"]),
                "consent_expiration_time": _iso(item["consent_expires"]),
                "error": item["error"], "revoked": item["revoked"], "removed": item["removed"],
                "accounts": {account_id: spec["key"]
                             for account_id, spec in item["accounts"].items()}}

    consents = items  # the name the other simulators use

    def link_token_info(self, link_token):
        """What ``/link/token/create`` was asked (no secret): to check what an adapter sends."""
        with self._lock:
            record = self._link_tokens[link_token]
            return {key: (list(value) if isinstance(value, list) else value)
                    for key, value in record.items()
                    if key not in ("sessions", "link_token", "hosted_code")} | {
                "update_mode": record["update_item_id"] is not None,
                "sessions": len(record["sessions"]),
                "expires_at": _iso(record["expires_at"]), "created_at": _iso(record["created_at"])}

    def _item(self, item_id):
        item = self._items.get(item_id)
        if item is None:
            raise KeyError(f"unknown item {item_id!r}")
        return item

    def revoke_consent(self, item_id):
        """The user revokes the access (e.g. in the Plaid portal): USER_PERMISSION_REVOKED."""
        with self._lock:
            item = self._items.get(item_id)
            if item is None:
                return False
            item["revoked"] = True
            return True

    def expire_consent(self, item_id):
        """Make the Item's EU/UK consent expire now: ITEM_LOGIN_REQUIRED/OAUTH_CONSENT_EXPIRED."""
        with self._lock:
            item = self._item(item_id)
            item["consent_expires"] = self.now() - timedelta(seconds=1)

    def reset_login(self, item_id):
        """Force ITEM_LOGIN_REQUIRED (like /sandbox/item/reset_login)."""
        with self._lock:
            self._item(item_id)["error"] = "ITEM_LOGIN_REQUIRED"

    def remove_transaction(self, transaction_id):
        """The bank drops a transaction: the next /transactions/sync reports it in removed."""
        with self._lock:
            self._removed.add(transaction_id)
            self._generation += 1

    def modify_transaction(self, transaction_id, **changes):
        """The bank changes a transaction (e.g. ``name=...``): reported in modified."""
        with self._lock:
            self._modified.setdefault(transaction_id, {}).update(changes)
            self._generation += 1

    def accounts(self, institution_id="ins_sim_eu_1"):
        """Account specs of an institution (template data, no Item-specific ids)."""
        return [{key: spec[key] for key in ("key", "name", "official_name", "type", "subtype",
                                            "currency", "iban", "mask")}
                for spec in data.accounts_of(institution_id)]

    def _resolve_account(self, account):
        """(spec, item, account_id) for an account_id, IBAN or template key."""
        with self._lock:
            for item in sorted(self._items.values(), key=lambda i: i["created_at"], reverse=True):
                if account in item["accounts"]:
                    return item["accounts"][account], item, account
            spec = data.find_account_spec(account)
            if spec is None:
                raise KeyError(f"unknown account {account!r}")
            for item in sorted(self._items.values(), key=lambda i: i["created_at"], reverse=True):
                for account_id, candidate in item["accounts"].items():
                    if candidate is spec:
                        return spec, item, account_id
            return spec, None, None

    def expected_booked(self, account, date_from, date_to):
        """The posted transactions (API dicts) Plaid holds for ``account`` (account_id, IBAN or
        template key) dated in [date_from, date_to], oldest first. With an IBAN, the ids are
        those of the most recent Item that holds the account."""
        spec, item, account_id = self._resolve_account(account)
        date_from, date_to = _as_day(date_from), _as_day(date_to)
        with self._lock:
            origin = item["origin"] if item else self._origin
            count = self._config["txns_per_day"].get(spec["currency"], 0)
            removed, modified = set(self._removed), dict(self._modified)
            today = self.today
        item_id = item["item_id"] if item else ""
        result = []
        day = max(date_from, origin)
        while day <= min(date_to, today):
            for txn in data.transactions_posting_on(spec, day, count):
                api = data.to_api(txn, item_id, account_id, pending=False)
                if api["transaction_id"] in removed:
                    continue
                api.update(modified.get(api["transaction_id"], {}))
                result.append(api)
            day += timedelta(days=1)
        return result

    def expected_pending(self, account):
        """The pending transactions (API dicts) of ``account`` today."""
        spec, item, account_id = self._resolve_account(account)
        with self._lock:
            count = self._config["txns_per_day"].get(spec["currency"], 0)
            today = self.today
        item_id = item["item_id"] if item else ""
        return [data.to_api(txn, item_id, account_id, pending=True)
                for txn in data.transactions_posting_on(spec, today + timedelta(days=1), count)
                if txn.has_pending]

    def expected_balances(self, account):
        """{"current": Decimal, "available": Decimal} as bank-statement signed amounts."""
        spec, _item, _account_id = self._resolve_account(account)
        booked, available = self._balances_of(spec)
        return {"current": booked, "available": available}

    def _balances_of(self, spec):
        with self._lock:
            today, origin = self.today, self._origin
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        booked = data.Decimal(spec["opening"])
        day = origin
        while day <= today:
            booked += data.day_total(spec, day, count)
            day += timedelta(days=1)
        return booked, booked + data.pending_total(spec, today, count)

    # ------------------------------------------------------------------ dispatch
    def handle(self, request):
        """Answer one request: a ``Response`` or ``_NO_ANSWER``."""
        try:
            if request.path in FIELDS:
                if request.method != "POST":
                    raise PlaidApiError("NOT_FOUND", f"{request.method} is not supported; "
                                        "every Plaid endpoint is POST", status=405)
                with self._lock:
                    self._stats[f"POST {request.path}"] += 1
                return self._api(request)
            for method, pattern, template, handler in PAGE_ROUTES:
                match = pattern.match(request.path)
                if match and method == request.method:
                    if template:
                        with self._lock:
                            self._stats[f"{method} {template}"] += 1
                    return getattr(self, handler)(request, **match.groupdict())
            raise PlaidApiError("NOT_FOUND", f"no such endpoint: {request.path}")
        except PlaidApiError as error:
            return self._error_response(request, error)
        except Exception:  # pragma: no cover - a bug of the simulator itself
            _logger.exception("plaid simulator: %s %s failed", request.method, request.path)
            return self._error_response(request, PlaidApiError("INTERNAL_SERVER_ERROR"))

    @staticmethod
    def _error_response(request, error):
        return Response.json(error.status, error.body(request.request_id), error.headers)

    def _api(self, request):
        payload = request.json_body()
        request.payload = payload
        token = payload.get("access_token")
        if isinstance(token, str):
            with self._lock:
                request.item_id = self._access_tokens.get(token)
        fault = self._take_fault(request, GENERIC_FAULTS + tuple(ERRORS))
        if fault is not None:
            outcome = self._apply_fault(fault, request)
            if outcome is not None:
                return outcome
            if self._stopping.is_set():
                return _NO_ANSWER
        self._check_credentials(request, payload)
        version = request.headers.get("Plaid-Version")
        if version is not None and version != API_VERSION:
            raise PlaidApiError("INVALID_HEADERS",
                                f"Plaid-Version {version!r} is not supported by this server")
        known = FIELDS[request.path] | set(_CREDENTIALS)
        unknown = sorted(set(payload) - known)
        if unknown:
            raise PlaidApiError("UNKNOWN_FIELDS", "the following fields are not recognized by "
                                "this endpoint: " + ", ".join(unknown))
        required = REQUIRED.get(request.path) or (
            ("access_token",) if "access_token" in FIELDS[request.path] else ())
        missing = [name for name in required if payload.get(name) in (None, "", [])]
        if missing:
            raise PlaidApiError("MISSING_FIELDS", "the following required fields are missing: "
                                + ", ".join(missing))
        handler = "_" + request.path.strip("/").replace("/", "_")
        result = getattr(self, handler)(request, payload)
        if isinstance(result, Response):
            return result
        result["request_id"] = request.request_id
        return Response.json(200, result)

    def _check_credentials(self, request, payload):
        client_id = payload.get("client_id") or request.headers.get("PLAID-CLIENT-ID")
        secret = payload.get("secret") or request.headers.get("PLAID-SECRET")
        missing = [name for name, value in (("client_id", client_id), ("secret", secret))
                   if not value]
        if missing:
            raise PlaidApiError("MISSING_FIELDS", "the following required fields are missing: "
                                + ", ".join(missing))
        if not (isinstance(client_id, str) and isinstance(secret, str)
                and hmac.compare_digest(client_id.encode(), self.client_id.encode())
                and hmac.compare_digest(secret.encode(), self._secret.encode())):
            raise PlaidApiError("INVALID_API_KEYS")

    def _check_rate(self, path, scope_key):
        limit = self._config["rate_limits"].get(path)
        if not limit:
            return
        now = time.monotonic()
        with self._lock:
            window = self._rate_windows.setdefault((path, scope_key), deque())
            while window and now - window[0] >= RATE_WINDOW_SECONDS:
                window.popleft()
            if len(window) >= limit:
                wait = max(1, int(-(-(RATE_WINDOW_SECONDS - (now - window[0])) // 1)))
                raise PlaidApiError(RATE_LIMITS[path][2], headers=self._rate_headers(wait))
            window.append(now)

    def _token(self, kind):
        return f"{kind}-{self.environment}-{_new_uuid()}"

    # ------------------------------------------------------------------ field helpers
    @staticmethod
    def _field(payload, name, kind, default=None):
        value = payload.get(name, default)
        if value is None:
            return default
        valid = {"str": lambda v: isinstance(v, str),
                 "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
                 "bool": lambda v: isinstance(v, bool),
                 "list": lambda v: isinstance(v, list),
                 "dict": lambda v: isinstance(v, dict)}[kind](value)
        if not valid:
            raise PlaidApiError("INVALID_FIELD", f"{name} must be of type {kind}")
        return value

    def _country_codes(self, payload, required=True):
        codes = self._field(payload, "country_codes", "list", [])
        if required and not codes:
            raise PlaidApiError("INVALID_FIELD", "country_codes must contain at least one code")
        for code in codes:
            if code not in COUNTRY_CODES:
                raise PlaidApiError("INVALID_FIELD", f"{code!r} is not a supported country code")
        return codes

    def _options(self, payload):
        return self._field(payload, "options", "dict", {}) or {}

    # ------------------------------------------------------------------ Items
    def _item_for(self, request, payload, data_call=True):
        """The Item behind the body's access_token (lock held by the caller or not)."""
        token = self._field(payload, "access_token", "str")
        if not token or not re.fullmatch(rf"access-{self.environment}-[0-9a-f\-]{{36}}", token):
            raise PlaidApiError("INVALID_ACCESS_TOKEN", "provided access token is in an invalid "
                                f"format. expected format: access-{self.environment}-<identifier>")
        with self._lock:
            item_id = self._access_tokens.get(token)
            item = self._items.get(item_id) if item_id else None
            if item is None:
                raise PlaidApiError("INVALID_ACCESS_TOKEN", "provided access token is invalid")
            if item["removed"]:
                raise PlaidApiError(REMOVED_ITEM_ERROR, "the Item of this access token was "
                                    "removed")
            if data_call:
                error = self._item_error(item)
                if error is not None:
                    raise error
        return item

    def _item_error(self, item):
        if item["revoked"]:
            return PlaidApiError("USER_PERMISSION_REVOKED")
        if item["consent_expires"] is not None and self.now() >= item["consent_expires"]:
            return PlaidApiError("ITEM_LOGIN_REQUIRED", reason="OAUTH_CONSENT_EXPIRED")
        if item["error"]:
            return PlaidApiError(item["error"])
        return None

    def _item_error_body(self, item):
        error = self._item_error(item)
        if error is None:
            return None
        body = error.body(None)
        body.pop("request_id")
        return body

    def _new_item(self, institution_id, products, days_requested, webhook=None):
        """Create an Item (lock held)."""
        institution = data.INSTITUTIONS_BY_ID[institution_id]
        item_id = data.plaid_id("item", secrets.token_hex(16))
        now = self.now()
        history = min(days_requested, self._config["history_days"])
        item = {"item_id": item_id, "institution_id": institution_id, "created_at": now,
                "origin": now.date() - timedelta(days=history), "days_requested": days_requested,
                "consent_expires": self._consent_end(institution, now),
                "products": sorted(set(products)), "webhook": webhook, "error": None,
                "revoked": False, "removed": False, "access_token": None,
                "accounts": {data.plaid_id("account", item_id, spec["key"]): spec
                             for spec in data.accounts_of(institution_id)},
                "versions": [{}], "signature": None,
                "last_update": now}
        self._items[item_id] = item
        return item

    def _consent_end(self, institution, now):
        days = institution.get("consent_days")
        if days is None:
            return None
        return now + timedelta(days=self._config["consent_days"] or days)

    def _item_payload(self, item, with_status=False):
        institution = data.INSTITUTIONS_BY_ID[item["institution_id"]]
        payload = {
            "item_id": item["item_id"],
            "institution_id": item["institution_id"],
            "institution_name": institution["name"],
            "webhook": item["webhook"],
            "error": self._item_error_body(item),
            "available_products": sorted(set(institution["products"]) - set(item["products"])
                                         - {"assets"}),
            "billed_products": list(item["products"]),
            "products": list(item["products"]),
            "consented_products": list(item["products"]),
            "consent_expiration_time": _iso(item["consent_expires"]),
            "update_type": "background",
        }
        if with_status:
            payload["created_at"] = _iso(item["created_at"])
        return payload

    def _account_payload(self, account_id, spec, realtime=False):
        booked, available = self._balances_of(spec)
        if spec["type"] == "credit":
            current = -booked  # owed
            limit = float(spec["limit"])
            balances = {"available": float(data.Decimal(spec["limit"]) + available),
                        "current": float(current), "limit": limit}
        else:
            balances = {"available": float(available), "current": float(booked), "limit": None}
        balances.update(iso_currency_code=spec["currency"], unofficial_currency_code=None,
                        last_updated_datetime=_iso(self.now()) if realtime else None)
        result = {"account_id": account_id, "balances": balances, "mask": spec["mask"],
                  "name": spec["name"], "official_name": spec["official_name"],
                  "type": spec["type"], "subtype": spec["subtype"],
                  "holder_category": "business"}
        if spec.get("persistent_account_id"):
            result["persistent_account_id"] = spec["persistent_account_id"]
        return result

    def _selected_accounts(self, item, options, name="account_ids"):
        wanted = options.get(name)
        if wanted is None:
            return list(item["accounts"].items())
        if not isinstance(wanted, list) or any(a not in item["accounts"] for a in wanted):
            raise PlaidApiError("INVALID_ACCOUNT_ID")
        return [(account_id, item["accounts"][account_id]) for account_id in wanted]

    # ------------------------------------------------------------------ Link
    def _link_token_create(self, request, payload):
        self._field(payload, "client_name", "str")
        language = self._field(payload, "language", "str")
        if language not in SUPPORTED_LANGUAGES:
            raise PlaidApiError("INVALID_FIELD", f"language {language!r} is not supported")
        countries = self._country_codes(payload)
        user = self._field(payload, "user", "dict")
        if not (user and user.get("client_user_id")) and not payload.get("user_token") \
                and not payload.get("user_id"):
            raise PlaidApiError("MISSING_FIELDS", "the following required fields are missing: "
                                "user.client_user_id")
        products = self._field(payload, "products", "list") or []
        access_token = self._field(payload, "access_token", "str")
        update_item = None
        if access_token:
            update_item = self._item_for(request, payload, data_call=False)
        elif not products:
            raise PlaidApiError("INVALID_FIELD", "products must contain at least one product "
                                "unless access_token is set (update mode)")
        optional = self._field(payload, "optional_products", "list") or []
        hosted = self._field(payload, "hosted_link", "dict")
        transactions = self._field(payload, "transactions", "dict") or {}
        days_requested = transactions.get("days_requested", 90)
        if not isinstance(days_requested, int) or not 1 <= days_requested <= 730:
            raise PlaidApiError("INVALID_FIELD", "transactions.days_requested must be between "
                                "1 and 730")
        institution_id = self._field(payload, "institution_id", "str")
        now = self.now()
        if hosted is not None:
            lifetime = hosted.get("url_lifetime_seconds")
            if lifetime is not None and (not isinstance(lifetime, int)
                                         or not 0 < lifetime <= MAX_HOSTED_LINK_SECONDS):
                raise PlaidApiError("INVALID_FIELD", "hosted_link.url_lifetime_seconds must be "
                                    "positive and at most 21 days")
            ttl = timedelta(seconds=lifetime) if lifetime else HOSTED_LINK_TTL
        else:
            ttl = UPDATE_LINK_TOKEN_TTL if update_item else LINK_TOKEN_TTL
        token = self._token("link")
        record = {"link_token": token, "created_at": now, "expires_at": now + ttl,
                  "client_name": payload["client_name"], "language": language,
                  "country_codes": list(countries), "products": list(products),
                  "optional_products": list(optional),
                  "update_item_id": update_item["item_id"] if update_item else None,
                  "institution_id": institution_id, "days_requested": days_requested,
                  "webhook": payload.get("webhook"), "redirect_uri": payload.get("redirect_uri"),
                  "completion_redirect_uri": (hosted or {}).get("completion_redirect_uri"),
                  "sessions": [], "hosted_code": None}
        answer = {"link_token": token, "expiration": _iso(record["expires_at"])}
        if hosted is not None:
            code = secrets.token_urlsafe(18)
            record["hosted_code"] = code
            host = request.headers.get("Host")
            base = f"http://{host}" if host else self.url
            answer["hosted_link_url"] = f"{base}/hl/{code}"
        with self._lock:
            self._link_tokens[token] = record
            if record["hosted_code"]:
                self._hosted[record["hosted_code"]] = token
        return answer

    def _link_token_get(self, request, payload):
        token = self._field(payload, "link_token", "str")
        with self._lock:
            record = self._link_tokens.get(token)
            if record is None:
                raise PlaidApiError("INVALID_LINK_TOKEN")
            sessions = [dict(session) for session in record["sessions"]]
        if sessions and self._take_fault(request, ("link_session_pending",)):
            last = dict(sessions[-1], finished_at=None)
            last.pop("results", None)
            last.pop("exit", None)
            sessions[-1] = last
        return {"link_token": token, "created_at": _iso(record["created_at"]),
                "expiration": _iso(record["expires_at"]),
                "link_sessions": sessions,
                "metadata": {"initial_products": list(record["products"]),
                             "webhook": record["webhook"],
                             "country_codes": list(record["country_codes"]),
                             "language": record["language"],
                             "redirect_uri": record["redirect_uri"],
                             "client_name": record["client_name"]}}

    def _item_public_token_exchange(self, request, payload):
        token = self._field(payload, "public_token", "str")
        with self._lock:
            grant = self._public_tokens.pop(token, None)
            if grant is None or self.now() >= grant["expires_at"]:
                raise PlaidApiError("INVALID_PUBLIC_TOKEN")
            item = self._items[grant["item_id"]]
            if item["access_token"] is None:
                item["access_token"] = self._token("access")
                self._access_tokens[item["access_token"]] = item["item_id"]
            return {"access_token": item["access_token"], "item_id": item["item_id"]}

    def _sandbox_public_token_create(self, request, payload):
        institution_id = self._field(payload, "institution_id", "str")
        if institution_id not in data.INSTITUTIONS_BY_ID:
            raise PlaidApiError("INSTITUTION_NOT_FOUND")
        products = self._field(payload, "initial_products", "list")
        options = self._options(payload)
        transactions = options.get("transactions") or {}
        days = transactions.get("days_requested", 90) if isinstance(transactions, dict) else 90
        with self._lock:
            item = self._new_item(institution_id, products, days, options.get("webhook"))
            return {"public_token": self._issue_public_token(item)}

    def _issue_public_token(self, item):
        token = self._token("public")
        self._public_tokens[token] = {"item_id": item["item_id"],
                                      "expires_at": self.now() + PUBLIC_TOKEN_TTL}
        return token

    def _sandbox_item_reset_login(self, request, payload):
        item = self._item_for(request, payload, data_call=False)
        with self._lock:
            item["error"] = "ITEM_LOGIN_REQUIRED"
        return {"reset_login": True}

    def _webhook_verification_key_get(self, request, payload):
        key = self.webhooks.verification_key(payload["key_id"])
        if key is None:
            raise PlaidApiError("INVALID_FIELD", "key_id is not a valid webhook verification key")
        return {"key": key}

    def _sandbox_item_fire_webhook(self, request, payload):
        item = self._item_for(request, payload, data_call=False)
        self.webhooks.send(item["item_id"], payload["webhook_code"], payload.get("webhook_type"))
        return {"webhook_fired": True}

    # ------------------------------------------------------------------ Items and accounts
    def _item_get(self, request, payload):
        item = self._item_for(request, payload, data_call=False)
        self._check_rate(request.path, item["item_id"])
        with self._lock:
            return {"item": self._item_payload(item, with_status=True),
                    "status": {"transactions": {
                        "last_successful_update": _iso(item["last_update"]),
                        "last_failed_update": None}, "last_webhook": None}}

    def _item_remove(self, request, payload):
        item = self._item_for(request, payload, data_call=False)
        with self._lock:
            item["removed"] = True
        return {}

    def _accounts_get(self, request, payload, realtime=False):
        item = self._item_for(request, payload)
        self._check_rate(request.path, item["item_id"])
        selected = self._selected_accounts(item, self._options(payload))
        with self._lock:
            return {"accounts": [self._account_payload(account_id, spec, realtime)
                                 for account_id, spec in selected],
                    "item": self._item_payload(item)}

    def _accounts_balance_get(self, request, payload):
        return self._accounts_get(request, payload, realtime=True)

    def _auth_get(self, request, payload):
        item = self._item_for(request, payload)
        self._check_rate(request.path, item["item_id"])
        institution = data.INSTITUTIONS_BY_ID[item["institution_id"]]
        if "auth" not in institution["products"]:
            raise PlaidApiError("PRODUCTS_NOT_SUPPORTED")
        selected = self._selected_accounts(item, self._options(payload))
        numbers = {"ach": [], "eft": [], "international": [], "bacs": []}
        for account_id, spec in selected:
            if spec.get("iban"):
                numbers["international"].append({"account_id": account_id, "iban": spec["iban"],
                                                  "bic": spec["bic"]})
            if spec.get("sort_code"):
                numbers["bacs"].append({"account_id": account_id,
                                        "account": spec["account_number"],
                                        "sort_code": spec["sort_code"]})
            if spec.get("routing"):
                numbers["ach"].append({"account_id": account_id,
                                       "account": spec["account_number"],
                                       "routing": spec["routing"], "wire_routing": None})
        with self._lock:
            return {"accounts": [self._account_payload(account_id, spec)
                                 for account_id, spec in selected],
                    "numbers": numbers, "item": self._item_payload(item)}

    # ------------------------------------------------------------------ institutions
    def _institutions_get(self, request, payload):
        count = self._field(payload, "count", "int")
        offset = self._field(payload, "offset", "int")
        if not 1 <= count <= 500:
            raise PlaidApiError("INVALID_FIELD", "count must be between 1 and 500")
        if offset < 0:
            raise PlaidApiError("INVALID_FIELD", "offset must be at least 0")
        countries = self._country_codes(payload)
        self._check_rate(request.path, "client")
        options = self._options(payload)
        matching = self._filter_institutions(countries, options.get("products"),
                                             options.get("oauth"))
        page = matching[offset:offset + count]
        metadata = bool(options.get("include_optional_metadata"))
        return {"institutions": [data.public_institution(inst, metadata) for inst in page],
                "total": len(matching)}

    @staticmethod
    def _filter_institutions(countries, products=None, oauth=None):
        result = []
        for inst in data.INSTITUTIONS:
            if not set(countries) & set(inst["country_codes"]):
                continue
            if products and not set(products) <= set(inst["products"]):
                continue
            if oauth is not None and inst["oauth"] != oauth:
                continue
            result.append(inst)
        return result

    def _institutions_get_by_id(self, request, payload):
        institution_id = self._field(payload, "institution_id", "str")
        countries = self._country_codes(payload)
        inst = data.INSTITUTIONS_BY_ID.get(institution_id)
        if inst is None or not set(countries) & set(inst["country_codes"]):
            raise PlaidApiError("INSTITUTION_NOT_FOUND")
        options = self._options(payload)
        return {"institution": data.public_institution(
            inst, bool(options.get("include_optional_metadata")))}

    def _institutions_search(self, request, payload):
        query = self._field(payload, "query", "str").casefold()
        countries = self._country_codes(payload)
        self._check_rate(request.path, "client")
        options = self._options(payload)
        words = query.split()
        matching = [inst for inst in self._filter_institutions(
            countries, self._field(payload, "products", "list"), options.get("oauth"))
            if all(word in inst["name"].casefold() for word in words)]
        metadata = bool(options.get("include_optional_metadata"))
        return {"institutions": [data.public_institution(inst, metadata)
                                 for inst in matching[:10]]}

    # ------------------------------------------------------------------ transactions
    def _state(self, item):
        """{transaction_id: API dict} of every transaction the Item holds now (lock held)."""
        today = self.today
        state = {}
        for account_id, spec in item["accounts"].items():
            count = self._config["txns_per_day"].get(spec["currency"], 0)
            day = item["origin"]
            while day <= today:
                for txn in data.transactions_posting_on(spec, day, count):
                    api = data.to_api(txn, item["item_id"], account_id, pending=False)
                    state[api["transaction_id"]] = api
                day += timedelta(days=1)
            for txn in data.transactions_posting_on(spec, today + timedelta(days=1), count):
                if txn.has_pending:
                    api = data.to_api(txn, item["item_id"], account_id, pending=True)
                    state[api["transaction_id"]] = api
        for transaction_id in self._removed & state.keys():
            del state[transaction_id]
        for transaction_id, changes in self._modified.items():
            if transaction_id in state:
                state[transaction_id] = dict(state[transaction_id], **changes)
        return state

    def _head(self, item):
        """The Item's newest transactions version (a new one if the data changed)."""
        with self._lock:
            signature = (self.today, self._generation)
            if item["signature"] != signature:
                state = self._state(item)
                if state != item["versions"][-1]:
                    item["versions"].append(state)
                    item["last_update"] = self.now()
                item["signature"] = signature
            return len(item["versions"]) - 1

    def _changes(self, item, old, new, account_id):
        before, after = item["versions"][old], item["versions"][new]

        def keep(txn):
            return account_id is None or txn["account_id"] == account_id

        def order(txn):
            return txn["date"], txn["transaction_id"]

        added = sorted((t for i, t in after.items() if i not in before and keep(t)), key=order)
        modified = sorted((t for i, t in after.items()
                           if i in before and before[i] != t and keep(t)), key=order)
        removed = sorted(({"account_id": t["account_id"], "transaction_id": i}
                          for i, t in before.items() if i not in after and keep(t)),
                         key=lambda r: r["transaction_id"])
        return ([("added", t) for t in added] + [("modified", t) for t in modified]
                + [("removed", r) for r in removed])

    def _encode_cursor(self, item_id, account_id, start, target, offset):
        raw = json.dumps({"i": item_id, "a": account_id or "", "f": start, "t": target,
                          "o": offset}, separators=(",", ":")).encode()
        mac = hmac.new(self._cursor_key, raw, hashlib.sha256).digest()[:12]
        return base64.b64encode(raw + mac).decode()

    def _decode_cursor(self, cursor, item_id, account_id):
        try:
            blob = base64.b64decode(cursor, validate=True)
            raw, mac = blob[:-12], blob[-12:]
            valid = hmac.compare_digest(
                mac, hmac.new(self._cursor_key, raw, hashlib.sha256).digest()[:12])
            payload = json.loads(raw) if valid else None
        except (ValueError, binascii.Error):
            payload = None
        if not payload or payload["i"] != item_id or payload["a"] != (account_id or ""):
            raise PlaidApiError(INVALID_CURSOR_ERROR, "cursor is not valid for this Item "
                                "and account")
        return payload["f"], payload["t"], payload["o"]

    def _transactions_sync(self, request, payload):
        item = self._item_for(request, payload)
        self._check_rate(request.path, item["item_id"])
        count = self._field(payload, "count", "int", 100)
        if not 1 <= count <= 500:
            raise PlaidApiError("INVALID_FIELD", "count must be between 1 and 500")
        options = self._options(payload)
        account_id = options.get("account_id")
        if account_id is not None and account_id not in item["accounts"]:
            raise PlaidApiError("INVALID_ACCOUNT_ID")
        cursor = self._field(payload, "cursor", "str", "")
        accounts = [(a, s) for a, s in item["accounts"].items()
                    if account_id is None or a == account_id]
        with self._lock:
            account_payloads = [self._account_payload(a, s) for a, s in accounts]
        if self._take_fault(request, ("transactions_not_ready",)):
            return {"added": [], "modified": [], "removed": [], "accounts": account_payloads,
                    "next_cursor": cursor, "has_more": False,
                    "transactions_update_status": "NOT_READY"}
        head = self._head(item)
        if cursor == "now":
            start, target, offset = head, None, 0
        elif cursor:
            start, target, offset = self._decode_cursor(cursor, item["item_id"], account_id)
        else:
            start, target, offset = 0, None, 0
        if target is not None:  # in the middle of a pagination
            if target != head or self._take_fault(
                    request, ("transactions_sync_mutation_during_pagination",)):
                raise PlaidApiError("TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION")
        else:
            target = head
        with self._lock:
            changes = self._changes(item, start, target, account_id)
        page = changes[offset:offset + count]
        has_more = offset + count < len(changes)
        next_cursor = (self._encode_cursor(item["item_id"], account_id, start, target,
                                           offset + count) if has_more else
                       self._encode_cursor(item["item_id"], account_id, target, None, 0))
        include_original = bool(options.get("include_original_description"))

        def shown(txn):
            return dict(txn, original_description=txn["name"]) if include_original else txn

        return {"added": [shown(t) for kind, t in page if kind == "added"],
                "modified": [shown(t) for kind, t in page if kind == "modified"],
                "removed": [r for kind, r in page if kind == "removed"],
                "accounts": account_payloads, "next_cursor": next_cursor,
                "has_more": has_more,
                "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE"}

    def _transactions_get(self, request, payload):
        item = self._item_for(request, payload)
        self._check_rate(request.path, item["item_id"])
        try:
            start = date.fromisoformat(self._field(payload, "start_date", "str"))
            end = date.fromisoformat(self._field(payload, "end_date", "str"))
        except ValueError:
            raise PlaidApiError("INVALID_FIELD", "start_date and end_date must be YYYY-MM-DD") \
                from None
        if start > end:
            raise PlaidApiError("INVALID_FIELD", "start_date must be on or before end_date")
        options = self._options(payload)
        count = options.get("count", 100)
        offset = options.get("offset", 0)
        if not isinstance(count, int) or not 1 <= count <= 500 or not isinstance(offset, int) \
                or offset < 0:
            raise PlaidApiError("INVALID_FIELD", "options.count must be 1..500, offset >= 0")
        selected = dict(self._selected_accounts(item, options))
        self._head(item)
        with self._lock:
            state = item["versions"][-1]
            txns = [t for t in state.values() if t["account_id"] in selected
                    and start.isoformat() <= t["date"] <= end.isoformat()]
            accounts = [self._account_payload(a, s) for a, s in selected.items()]
        txns.sort(key=lambda t: (t["date"], t["transaction_id"]), reverse=True)
        return {"accounts": accounts, "transactions": txns[offset:offset + count],
                "total_transactions": len(txns), "item": self._item_payload(item)}

    def _transactions_refresh(self, request, payload):
        item = self._item_for(request, payload)
        self._head(item)
        return {}

    # ------------------------------------------------------------------ pages
    def _root(self, request):
        return Response.json(200, {"name": "Plaid simulator", "environment": self.environment,
                                   "today": self.today.isoformat()})

    @staticmethod
    def _page(title, body, lang="en", status=200):
        text = (f'<!DOCTYPE html>\n<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title>"
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                "<style>body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}"
                "button{font-size:1em;padding:.5em 1.2em;margin-right:.5em}</style></head>"
                f"<body><h1>Plaid Link (simulator)</h1>{body}</body></html>\n")
        return Response.html(status, text)

    def _link_record(self, code):
        """The link token record of a Hosted Link code, or an error page."""
        with self._lock:
            token = self._hosted.get(code)
            record = self._link_tokens.get(token) if token else None
        if record is None:
            return None, self._page("Plaid Link", "<p>This link is not valid.</p>", status=404)
        if self.now() >= record["expires_at"]:
            return None, self._page("Plaid Link", "<p>This link has expired.</p>", status=410)
        return record, None

    def _hosted_page(self, request, code):
        record, problem = self._link_record(code)
        if problem:
            return problem
        if record["update_item_id"]:
            with self._lock:
                item = self._items[record["update_item_id"]]
            choices = [data.INSTITUTIONS_BY_ID[item["institution_id"]]]
            intro = "Reconnect your account to keep sharing it with"
        else:
            choices = [inst for inst in self._filter_institutions(record["country_codes"])
                       if not inst.get("filler")]
            if record["institution_id"] in data.INSTITUTIONS_BY_ID and \
                    record["institution_id"] not in [c["institution_id"] for c in choices]:
                choices.insert(0, data.INSTITUTIONS_BY_ID[record["institution_id"]])
            intro = "Connect your bank account to"
        selected = record["institution_id"] if record["institution_id"] in [
            c["institution_id"] for c in choices] else (choices[0]["institution_id"]
                                                        if choices else None)
        options = "".join(
            f'<option value="{html.escape(inst["institution_id"])}"'
            f'{" selected" if inst["institution_id"] == selected else ""}>'
            f'{html.escape(inst["name"])}</option>' for inst in choices)
        accounts = ""
        if selected:
            accounts = "".join(
                f"<li>{html.escape(spec['name'])} ••{html.escape(spec['mask'])} "
                f"({html.escape(spec['currency'])})</li>"
                for spec in data.accounts_of(selected))
        body = (f"<p>{html.escape(intro)} <strong>{html.escape(record['client_name'])}"
                "</strong>. It will read your balances and transactions.</p>"
                f'<form method="post" action="/hl/{html.escape(code)}/decision">'
                f'<p><label>Institution <select name="institution_id">{options}</select>'
                f"</label></p><ul>{accounts}</ul>"
                '<button type="submit" name="decision" value="approve">Continue</button>'
                '<button type="submit" name="decision" value="cancel">Exit</button></form>')
        return self._page("Plaid Link", body, record["language"])

    def _hosted_decision(self, request, code):
        record, problem = self._link_record(code)
        if problem:
            return problem
        form = {key: values[0] for key, values in request.form().items()}
        decision = form.get("decision")
        now = self.now()
        session_id = _new_uuid()
        with self._lock:
            if record["update_item_id"]:
                item = self._items[record["update_item_id"]]
                institution_id = item["institution_id"]
            else:
                item = None
                institution_id = form.get("institution_id") or record["institution_id"]
                if institution_id not in data.INSTITUTIONS_BY_ID:
                    return self._page("Plaid Link", "<p>Unknown institution.</p>", status=400)
            institution = data.INSTITUTIONS_BY_ID[institution_id]
            session = {"link_session_id": session_id, "started_at": _iso(now),
                       "finished_at": _iso(now)}
            if decision == "approve":
                if item is None:
                    products = record["products"] + [
                        p for p in record["optional_products"] if p in institution["products"]]
                    item = self._new_item(institution_id, products, record["days_requested"],
                                          record["webhook"])
                else:  # update mode repairs the Item and renews its consent
                    item["error"] = None
                    item["revoked"] = False
                    item["consent_expires"] = self._consent_end(institution, now)
                public_token = self._issue_public_token(item)
                session["results"] = {
                    "item_add_results": [{
                        "public_token": public_token,
                        "accounts": [{"id": account_id, "name": spec["name"],
                                      "mask": spec["mask"], "type": spec["type"],
                                      "subtype": spec["subtype"],
                                      "verification_status": None, "class_type": None}
                                     for account_id, spec in item["accounts"].items()],
                        "institution": {"name": institution["name"],
                                        "institution_id": institution_id}}],
                    "cra_item_add_results": [], "cra_update_results": [],
                    "bank_income_results": [], "payroll_income_results": [],
                    "document_income_results": None}
            elif decision == "cancel":
                session["exit"] = {"error": None, "metadata": {
                    "institution": {"name": institution["name"],
                                    "institution_id": institution_id},
                    "status": CANCEL_EXIT_STATUS[institution["oauth"]],
                    "link_session_id": session_id, "request_id": request.request_id}}
            else:
                return self._page("Plaid Link", "<p>decision must be approve or cancel.</p>",
                                  status=400)
            record["sessions"].append(session)
        target = record["completion_redirect_uri"]
        if not target:
            return self._page("Plaid Link", "<p>All done. You may close this window.</p>")
        if COMPLETION_REDIRECT_PARAMS:  # pragma: no cover - nothing documented
            separator = "&" if urlsplit(target).query else "?"
            target += separator + urlencode(COMPLETION_REDIRECT_PARAMS)
        return Response(303, b"", None, {"Location": target, "Cache-Control": "no-store"})

    # ------------------------------------------------------------------ admin over HTTP
    @staticmethod
    def _admin_json(request):
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            raise PlaidApiError("INVALID_BODY") from None
        if not isinstance(payload, dict):
            raise PlaidApiError("INVALID_BODY")
        return payload

    @staticmethod
    def _admin(call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise PlaidApiError("INVALID_FIELD", str(exc)) from None

    def _sim_faults_list(self, request):
        return Response.json(200, {"faults": self.faults()})

    def _sim_faults_add(self, request):
        body = self._admin_json(request)
        kind = body.pop("kind", None)
        return Response.json(201, {"fault": self._admin(self.add_fault, kind, **body)})

    def _sim_faults_clear(self, request):
        self.clear_faults()
        return Response(204)

    def _sim_clock(self, request):
        body = self._admin_json(request)
        if "today" in body:
            self._admin(self.set_today, body["today"])
        elif isinstance(body.get("advance_days"), int):
            self.advance_days(body["advance_days"])
        else:
            raise PlaidApiError("INVALID_FIELD", "give today or advance_days")
        return Response.json(200, {"today": self.today.isoformat()})

    def _sim_config(self, request):
        return Response.json(200, {"config": self._admin(self.configure,
                                                         **self._admin_json(request))})

    def _sim_reset(self, request):
        self.reset()
        return Response(204)

    def _sim_stats(self, request):
        return Response.json(200, self.stats())

    def _sim_webhook(self, request):
        return Response.json(*self._admin(self.webhooks.admin, self._admin_json(request)))


# ---------------------------------------------------------------------------- the user's browser
class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}
        self.decisions = set()
        self._select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action")
        elif tag == "input" and attrs.get("type") == "hidden":
            self.fields[attrs.get("name")] = attrs.get("value") or ""
        elif tag == "select":
            self._select = attrs.get("name")
        elif tag == "option" and self._select:
            if "selected" in attrs or self._select not in self.fields:
                self.fields[self._select] = attrs.get("value") or ""
        elif tag == "button" and attrs.get("name") == "decision":
            self.decisions.add(attrs.get("value"))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def simulate_user(consent_url, decision="approve", timeout=10):
    """Play the user in a browser on the Hosted Link page: pick the preselected institution,
    click "Continue" (``approve``) or "Exit" (``cancel``) and return the query parameters of the
    completion redirect (Hosted Link's ``completion_redirect_uri``) as a dict.

    Raises ``RuntimeError`` if the page does not answer as documented.
    """
    parts = urlsplit(consent_url)

    def call(method, target, body=None, headers=None):
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            connection.request(method, target, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    status, _headers, page = call("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
    if status != 200:
        raise RuntimeError(f"the Link page answered HTTP {status}: {page[:200]!r}")
    form = _FormParser()
    form.feed(page.decode("utf-8"))
    if decision not in form.decisions or not form.action:
        raise RuntimeError("the Link page has no such decision button")
    body = urlencode({**form.fields, "decision": decision})
    status, headers, _ = call("POST", urljoin(parts.path, form.action), body,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    location = headers.get("Location")
    if status not in (302, 303) or not location:
        raise RuntimeError(f"the Link decision answered HTTP {status} without a redirect")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


__all__ = ["PlaidServer", "simulate_user", "FAULT_KINDS", "ERRORS"]
