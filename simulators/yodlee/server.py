"""A local Envestnet | Yodlee API v1.1 (the subset a bank-statement sync needs) on 127.0.0.1.

Standard library only. One ``YodleeServer`` is one Yodlee environment: its users, tokens,
provider accounts, simulated clock, configuration and fault knobs live in the object, guarded by
a lock, reachable over HTTP (``/_sim/...``) and from Python (``server.add_fault(...)``). See
README.md for what it serves.
"""
import hashlib
import html
import http.client
import json
import logging
import math
import re
import secrets
import socket
import threading
from collections import Counter, deque
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from . import data

_logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "yodlee-sim-client"
DEFAULT_CLIENT_SECRET = "yodlee-sim-secret"
DEFAULT_ADMIN_LOGIN = "yodlee-sim-admin"
API_VERSION = "1.1"
API_PREFIX = "/ysl"
FASTLINK_PATH = "/authenticate/restserver/fastlink"
DEFAULT_HISTORY_DAYS = 90
DEFAULT_TXNS_PER_DAY = {"EUR": 3, "USD": 1, "GBP": 1}
DEFAULT_ACCESS_TOKEN_TTL = 1800          # seconds: Yodlee's 30 minutes
DEFAULT_TRANSACTIONS_WINDOW_DAYS = 30    # GET /transactions without fromDate: last 30 days
MAX_TOP = 500
FASTLINK_SESSION_TTL = timedelta(minutes=30)
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 60
# ❓ Yodlee's rate limits are not documented in the reference: we answer HTTP 429 once a user
# (or, for POST /auth/token, the client) made more than this many requests in 60 seconds.
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
RATE_WINDOW = timedelta(seconds=60)
LOGIN_NAME_PATTERN = re.compile(r"[A-Za-z0-9._@+\-]+\Z")

# Error codes: (HTTP status, errorMessage). ✅ from the Yodlee error-code page and the swagger,
# ⚠️ Y902's status. Used by the handlers and by the ``api_error`` fault.
ERRORS = {
    "Y001": (401, "loginName and password required"),
    "Y002": (401, "Invalid loginName/password"),
    "Y003": (401, "Account is locked, contact Yodlee Customer Service"),
    "Y004": (400, "Inactive user"),
    "Y005": (401, "Suspended user"),
    "Y006": (401, "Unregistered user"),
    "Y007": (401, "Authorization header missing"),
    "Y008": (401, "Invalid token in authorization header"),
    "Y009": (401, "Session tokens missing"),
    "Y010": (401, "Invalid session"),
    "Y011": (401, "Invalid cobrand or incorrectly configured cobrand"),
    "Y015": (401, "Unauthorized User"),
    "Y016": (401, "Api-Version header missing"),
    "Y020": (401, "Invalid token in authorization header"),
    "Y023": (401, "Token has expired"),
    "Y301": (400, "Invalid clientId or secret"),
    "Y303": (400, "clientId or secret is missing"),
    "Y305": (400, "Access token can be issued only for pre-registered users"),
    "Y800": (400, "Invalid value for fromDate"),
    "Y801": (400, "Invalid length for loginName"),
    "Y802": (400, "future fromDate not allowed"),
    "Y803": (400, "providerId required"),
    "Y804": (400, "Permitted values of top between 1 - 500"),
    "Y805": (400, "Multiple containers not supported"),
    "Y806": (400, "Invalid input"),
    "Y807": (400, "Resource not found"),
    "Y809": (400, "Invalid date range"),
    "Y824": (400, "The maximum number of accountIds permitted is 100"),
    "Y868": (400, "No action is allowed, as the data is being migrated to the Open Banking "
                  "provider"),
    "Y901": (400, "Service not supported"),
    "Y902": (500, "Oops some issue at our end"),
}

# ❓ Yodlee's 429 body is not confirmed: we send a YodleeError without an errorCode, the wait in
# the text and in Retry-After. Waits of an hour or more look like Yodlee's daily threshold
# message, without a Retry-After header.
RATE_LIMIT_MESSAGE = "Too many requests. Please try again in {seconds} seconds."
DAILY_LIMIT_MESSAGE = "Maximum Thresholds for the day have reached. Please try after {hours} hours."

# What FastLink sends back to the callback URL. ⚠️ FastLink 4 really reports through a JS
# postMessage; our shape (query parameters on the callback) keeps its field names.
CALLBACK_SUCCESS_STATUS = "SUCCESS"
CALLBACK_CANCEL = {"status": "USER_CLOSE_ACTION", "reason": "USER_CLOSED_ACCOUNT_ADDITION",
                   "message": "The user closed FastLink before linking an account."}

# Faults that change the dataset status shown by GET /providerAccounts and GET /accounts:
# kind -> (providerAccount status, dataset additionalStatus, updateEligibility).
STATUS_FAULTS = {
    "consent_expired": ("FAILED", "CONSENT_EXPIRED", "DISALLOW_UPDATE"),
    "consent_revoked": ("FAILED", "CONSENT_REVOKED", "DISALLOW_UPDATE"),
    "user_must_be_present": ("USER_INPUT_REQUIRED", "ADDL_AUTHENTICATION_REQUIRED",
                             "ALLOW_UPDATE_WITH_CREDENTIALS"),
    "addl_authentication_required": ("USER_INPUT_REQUIRED", "ADDL_AUTHENTICATION_REQUIRED",
                                     "ALLOW_UPDATE_WITH_CREDENTIALS"),
    "credentials_update_needed": ("FAILED", "CREDENTIALS_UPDATE_NEEDED",
                                  "ALLOW_UPDATE_WITH_CREDENTIALS"),
    "user_action_needed_at_site": ("FAILED", "USER_ACTION_NEEDED_AT_SITE",
                                   "ALLOW_UPDATE_WITH_CREDENTIALS"),
    "incorrect_credentials": ("FAILED", "INCORRECT_CREDENTIALS", "ALLOW_UPDATE_WITH_CREDENTIALS"),
    "site_unavailable": ("FAILED", "SITE_UNAVAILABLE", "ALLOW_UPDATE"),
    "site_blocking_error": ("FAILED", "SITE_BLOCKING_ERROR", "ALLOW_UPDATE"),
    "unexpected_site_error": ("FAILED", "UNEXPECTED_SITE_ERROR", "ALLOW_UPDATE"),
    "tech_error": ("FAILED", "TECH_ERROR", "ALLOW_UPDATE"),
    "request_time_out": ("FAILED", "REQUEST_TIME_OUT", "ALLOW_UPDATE"),
    "in_progress": ("IN_PROGRESS", "DATA_RETRIEVAL_IN_PROGRESS", "DISALLOW_UPDATE"),
}
IN_PROGRESS_STATUSES = {"LOGIN_IN_PROGRESS", "DATA_RETRIEVAL_IN_PROGRESS", "ACCT_SUMMARY_RECEIVED",
                        "MIGRATION_IN_PROGRESS"}
DATASET_STATUSES = (
    "LOGIN_IN_PROGRESS", "DATA_RETRIEVAL_IN_PROGRESS", "ACCT_SUMMARY_RECEIVED",
    "AVAILABLE_DATA_RETRIEVED", "PARTIAL_DATA_RETRIEVED", "DATA_RETRIEVAL_FAILED",
    "DATA_NOT_AVAILABLE", "ACCOUNT_LOCKED", "ADDL_AUTHENTICATION_REQUIRED",
    "BETA_SITE_DEV_IN_PROGRESS", "CREDENTIALS_UPDATE_NEEDED", "INCORRECT_CREDENTIALS",
    "PROPERTY_VALUE_NOT_AVAILABLE", "INVALID_ADDL_INFO_PROVIDED", "REQUEST_TIME_OUT",
    "SITE_BLOCKING_ERROR", "UNEXPECTED_SITE_ERROR", "SITE_NOT_SUPPORTED", "SITE_UNAVAILABLE",
    "TECH_ERROR", "USER_ACTION_NEEDED_AT_SITE", "SITE_SESSION_INVALIDATED",
    "NEW_AUTHENTICATION_REQUIRED", "DATASET_NOT_SUPPORTED", "ENROLLMENT_REQUIRED_FOR_DATASET",
    "CONSENT_REQUIRED", "CONSENT_EXPIRED", "CONSENT_REVOKED", "INCORRECT_OAUTH_TOKEN",
    "MIGRATION_IN_PROGRESS")
FAULT_KINDS = ("delay", "timeout", "http_500", "http_503", "rate_limit", "malformed_json",
               "token_expired", "api_error", "dataset_status") + tuple(STATUS_FAULTS)
STATUS_ROUTES = {"/providerAccounts", "/providerAccounts/{id}", "/accounts", "/accounts/{id}"}
INCLUDES = {"profile", "holder", "fullAccountNumber", "fullAccountNumberList", "paymentProfile",
            "autoRefresh"}
CONTAINERS = {"bank", "creditCard", "investment", "insurance", "loan", "reward", "realEstate",
              "otherAssets", "otherLiabilities"}

LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect width="64" height="64" rx="12" fill="#3a0ca3"/>
<path d="M14 18 L32 40 L50 18" stroke="#fff" stroke-width="7" fill="none"/>
<rect x="28" y="38" width="8" height="12" fill="#fff"/>
</svg>
"""

_NO_ANSWER = object()  # a handler result meaning "close the connection without answering"


def _utcnow():
    return datetime.now(timezone.utc)


def _iso(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def _as_day(value):
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


class ApiError(Exception):
    """A Yodlee error answer ``{"errorCode", "errorMessage", "referenceCode"}``."""

    def __init__(self, code, message=None, status=None, headers=None):
        default_status, default_message = ERRORS.get(code, (400, "Invalid input"))
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.status = status or default_status
        self.headers = headers or {}


class Response:
    def __init__(self, status, body=b"", content_type=None, headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status, payload, headers=None):
        return cls(status, json.dumps(payload).encode(), "application/json;charset=UTF-8",
                   headers)

    @classmethod
    def html(cls, status, text):
        return cls(status, text.encode(), "text/html; charset=utf-8")


class Request:
    def __init__(self, method, target, headers, body):
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path or "/"
        self.raw_query = parts.query
        self.query = {key: values[0] for key, values in
                      parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers = headers
        self.body = body
        self.user = None            # login name behind a valid bearer token
        self.consent_ids = set()    # providerAccount ids (str) of that user
        self.status_override = None
        self.template = None

    @property
    def api_path(self):
        """The path without the ``/ysl`` prefix (the simulator serves both forms)."""
        if self.path == API_PREFIX or self.path.startswith(API_PREFIX + "/"):
            return self.path[len(API_PREFIX):] or "/"
        return self.path

    def form(self):
        text = self.body.decode("utf-8", "replace")
        return {key: values[0] for key, values in
                parse_qs(text, keep_blank_values=True).items()}

    def bearer(self):
        value = self.headers.get("Authorization")
        if value is None:
            return None
        if value[:7].lower() == "bearer ":
            return value[7:].strip()
        return ""


def _route(method, pattern, template, handler, api=True):
    return method, re.compile(pattern + r"\Z"), template, handler, api


ROUTES = (
    _route("GET", r"/", "/", "_root", api=False),
    _route("GET", r"/static/yodlee-sim\.svg", "/static/yodlee-sim.svg", "_logo", api=False),
    _route("GET", FASTLINK_PATH, FASTLINK_PATH, "_fastlink_page", api=False),
    _route("POST", FASTLINK_PATH, FASTLINK_PATH, "_fastlink_page", api=False),
    _route("POST", FASTLINK_PATH + "/decision", FASTLINK_PATH + "/decision", "_fastlink_decision",
           api=False),
    _route("POST", r"/auth/token", "/auth/token", "_token"),
    _route("DELETE", r"/auth/token", "/auth/token", "_token_delete"),
    _route("GET", r"/providers", "/providers", "_providers"),
    _route("GET", r"/providerAccounts", "/providerAccounts", "_pa_list"),
    _route("GET", r"/providerAccounts/(?P<item_id>[^/]+)", "/providerAccounts/{id}",
           "_pa_get"),
    _route("DELETE", r"/providerAccounts/(?P<item_id>[^/]+)", "/providerAccounts/{id}",
           "_pa_delete"),
    _route("GET", r"/accounts", "/accounts", "_accounts"),
    _route("GET", r"/accounts/(?P<item_id>[^/]+)", "/accounts/{id}", "_account"),
    _route("GET", r"/transactions", "/transactions", "_transactions"),
    _route("GET", r"/transactions/count", "/transactions/count", "_transactions_count"),
    _route("GET", r"/consents", "/consents", "_consents"),
    _route("GET", r"/_sim/faults", "/_sim/faults", "_sim_faults_list", api=False),
    _route("POST", r"/_sim/faults", "/_sim/faults", "_sim_faults_add", api=False),
    _route("DELETE", r"/_sim/faults", "/_sim/faults", "_sim_faults_clear", api=False),
    _route("GET", r"/_sim/clock", "/_sim/clock", "_sim_clock_get", api=False),
    _route("POST", r"/_sim/clock", "/_sim/clock", "_sim_clock_set", api=False),
    _route("GET", r"/_sim/config", "/_sim/config", "_sim_config_get", api=False),
    _route("POST", r"/_sim/config", "/_sim/config", "_sim_config_set", api=False),
    _route("POST", r"/_sim/reset", "/_sim/reset", "_sim_reset", api=False),
    _route("GET", r"/_sim/stats", "/_sim/stats", "_sim_stats", api=False),
    _route("GET", r"/_sim/consents", "/_sim/consents", "_sim_consents", api=False),
    _route("POST", r"/_sim/consents/(?P<item_id>[^/]+)/revoke", "/_sim/consents/{id}/revoke",
           "_sim_revoke", api=False),
)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "YodleeSim/1.1"
    sys_version = ""
    timeout = 60

    def setup(self):
        super().setup()
        # Headers and body are written separately: without TCP_NODELAY, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every answer on a kept-alive connection.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover
            pass
        self.server.sim._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, False)

    def log_request(self, code="-", size="-"):
        # The path only: query strings (FastLink's accessToken) and headers are never logged.
        self.log_message("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        if self.server.sim.verbose:
            _logger.info("yodlee sim: " + format, *args)

    def _handle(self, method):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 1_000_000:
            self.close_connection = True
            self._write(Response.json(400, {"errorCode": "Y806", "errorMessage": "Invalid input",
                                            "referenceCode": "bad-length"}))
            return
        body = self.rfile.read(length) if length else b""
        response = self.server.sim.handle(Request(method, self.path, self.headers, body))
        if response is _NO_ANSWER:
            self.close_connection = True
            return
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
            if self.command != "HEAD":
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


class YodleeServer:
    """A Yodlee environment on ``http://host:port`` (port 0: any free port), in a daemon thread.

    The API answers under ``/ysl`` (like ``https://sandbox.api.yodlee.com/ysl``; the bare paths
    work too), FastLink under ``/authenticate/restserver/fastlink``. ``today`` is the real UTC
    date unless the simulated clock is moved. Usable as a context manager.
    """

    def __init__(self, host="127.0.0.1", port=0, client_id=DEFAULT_CLIENT_ID,
                 client_secret=DEFAULT_CLIENT_SECRET, *, admin_login_name=DEFAULT_ADMIN_LOGIN,
                 history_days=DEFAULT_HISTORY_DAYS, txns_per_day=None, today=None,
                 auto_register=True, verbose=False):
        self.host = host
        self.port = port
        self.client_id = client_id
        self._client_secret = client_secret
        self.admin_login_name = admin_login_name
        self.verbose = verbose
        self._initial = {"history_days": history_days, "txns_per_day": txns_per_day,
                         "today": today, "auto_register": auto_register}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections = set()
        self._httpd = None
        self._thread = None
        self._reset_state()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the Yodlee simulator is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.sim = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name=f"yodlee-sim-{self.port}", daemon=True)
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

    @property
    def api_url(self):
        """Base URL of the API, like ``https://sandbox.api.yodlee.com/ysl``."""
        return self.url + API_PREFIX

    @property
    def fastlink_url(self):
        return self.url + FASTLINK_PATH

    @property
    def running(self):
        return self._httpd is not None

    def _track(self, connection, alive):
        with self._lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # ------------------------------------------------------------------ state
    def _reset_state(self):
        with self._lock:
            self._offset = timedelta(0)
            self._config = {"history_days": DEFAULT_HISTORY_DAYS,
                            "txns_per_day": dict(DEFAULT_TXNS_PER_DAY),
                            "access_token_ttl": DEFAULT_ACCESS_TOKEN_TTL,
                            "rate_limit_per_minute": DEFAULT_RATE_LIMIT_PER_MINUTE,
                            "auto_register": bool(self._initial["auto_register"])}
            if self._initial["today"]:
                self.set_today(self._initial["today"])
            self._configure(history_days=self._initial["history_days"],
                            txns_per_day=self._initial["txns_per_day"])
            self._origin = self.today - timedelta(days=self._config["history_days"])
            self._users = {self.admin_login_name: {"login_name": self.admin_login_name,
                                                   "admin": True}}
            self._tokens = {}
            self._provider_accounts = {}
            self._sessions = {}
            self._faults = []
            self._fault_seq = 0
            self._faults_triggered = 0
            self._stats = Counter()
            self._rate = {}
            self._next_ids = {"providerAccount": 10_000_001, "account": 20_000_001,
                              "consent": 30_001, "user": 1}

    def reset(self):
        """Back to a new server's state: clock, config, users, tokens, links, faults, stats."""
        self._reset_state()

    def now(self):
        """Simulated time: the real UTC time of day, shifted by whole days."""
        with self._lock:
            return _utcnow() + self._offset

    @property
    def today(self):
        return self.now().date()

    def set_today(self, day):
        day = _as_day(day)
        with self._lock:
            self._offset = timedelta(days=(day - _utcnow().date()).days)
            self._move_origin()
            return self.today

    def advance_days(self, days=1):
        with self._lock:
            self._offset += timedelta(days=int(days))
            self._move_origin()
            return self.today

    def _move_origin(self):
        origin = getattr(self, "_origin", None)
        if origin is not None:
            self._origin = min(origin, self.today - timedelta(days=self._config["history_days"]))

    def configure(self, history_days=None, txns_per_day=None, access_token_ttl=None,
                  rate_limit_per_minute=None, auto_register=None):
        """Change the bank's behaviour; returns the new configuration (see ``config()``)."""
        with self._lock:
            self._configure(history_days, txns_per_day, access_token_ttl, rate_limit_per_minute,
                            auto_register)
            self._move_origin()
            return self.config()

    def _configure(self, history_days=None, txns_per_day=None, access_token_ttl=None,
                   rate_limit_per_minute=None, auto_register=None):
        def integer(value, name, low, high):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer between {low} and {high}")
            return value

        if history_days is not None:
            self._config["history_days"] = integer(history_days, "history_days", 1, 3650)
        if txns_per_day is not None:
            if not isinstance(txns_per_day, dict):
                raise ValueError('txns_per_day must be a dict like {"EUR": 3, "USD": 1}')
            merged = dict(self._config["txns_per_day"])
            for currency, count in txns_per_day.items():
                if currency not in DEFAULT_TXNS_PER_DAY:
                    raise ValueError(f"unknown currency {currency!r}")
                merged[currency] = integer(count, "transactions per day", 0, 1000)
            self._config["txns_per_day"] = merged
        if access_token_ttl is not None:
            self._config["access_token_ttl"] = integer(access_token_ttl, "access_token_ttl", 1,
                                                       86400)
        if rate_limit_per_minute is not None:
            self._config["rate_limit_per_minute"] = integer(
                rate_limit_per_minute, "rate_limit_per_minute", 0, 1_000_000)
        if auto_register is not None:
            self._config["auto_register"] = bool(auto_register)

    def config(self):
        with self._lock:
            return {"history_days": self._config["history_days"],
                    "txns_per_day": dict(self._config["txns_per_day"]),
                    "access_token_ttl": self._config["access_token_ttl"],
                    "rate_limit_per_minute": self._config["rate_limit_per_minute"],
                    "auto_register": self._config["auto_register"],
                    "today": self.today.isoformat(), "first_day": self._origin.isoformat()}

    # ------------------------------------------------------------------ faults
    def add_fault(self, kind, *, times=1, skip=0, path=None, consent_id=None, seconds=None,
                  code=None):
        """Arm a fault; returns its description (with an ``id``). See README.md for the kinds.

        ``consent_id`` is a providerAccountId: only requests made with a token of its user (or
        naming it) match. ``code`` is the Yodlee errorCode of ``api_error`` or the dataset
        additionalStatus of ``dataset_status``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)
                                  or times < 1):
            raise ValueError("times must be a positive integer or None")
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise ValueError("skip must be a non-negative integer")
        if path is not None and not isinstance(path, str):
            raise ValueError("path must be a string or None")
        if consent_id is not None:
            consent_id = str(consent_id)
        if seconds is not None and (isinstance(seconds, bool)
                                    or not isinstance(seconds, (int, float)) or seconds < 0):
            raise ValueError("seconds must be a non-negative number or None")
        if kind == "api_error" and code not in ERRORS:
            raise ValueError(f"api_error needs a code among {', '.join(sorted(ERRORS))}")
        if kind == "dataset_status" and code not in DATASET_STATUSES:
            raise ValueError("dataset_status needs a dataset additionalStatus as code")
        with self._lock:
            self._fault_seq += 1
            fault = {"id": self._fault_seq, "kind": kind, "times": times, "skip": skip,
                     "path": path, "consent_id": consent_id, "seconds": seconds, "code": code,
                     "remaining": times, "skip_left": skip, "hits": 0}
            self._faults.append(fault)
            return dict(fault)

    def faults(self):
        with self._lock:
            return [dict(fault) for fault in self._faults]

    def clear_faults(self):
        """Disarm every fault; returns how many there were."""
        with self._lock:
            count = len(self._faults)
            self._faults = []
            return count

    def _take_fault(self, request):
        with self._lock:
            for fault in self._faults:
                if fault["remaining"] == 0:
                    continue
                if fault["path"] is not None and fault["path"] not in request.path:
                    continue
                if fault["consent_id"] is not None and fault["consent_id"] not in (
                        request.consent_ids | self._named_ids(request)):
                    continue
                status_kind = fault["kind"] in STATUS_FAULTS or fault["kind"] == "dataset_status"
                if status_kind and (request.template not in STATUS_ROUTES
                                    or request.method != "GET"):
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

    @staticmethod
    def _named_ids(request):
        """providerAccount ids a request names in its path or query."""
        names = set(re.findall(r"/providerAccounts/(\d+)", request.api_path))
        names.update(filter(None, request.query.get("providerAccountId", "").split(",")))
        return names

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
            raise ApiError("Y902")
        if kind == "http_503":
            headers = {"Retry-After": str(math.ceil(seconds))} if seconds is not None else {}
            raise ApiError("Y902", status=503, headers=headers)
        if kind == "rate_limit":
            raise self._rate_limit_error(DEFAULT_RETRY_AFTER if seconds is None else seconds)
        if kind == "malformed_json":
            return Response(200, b'{"transaction": [{"CONTAINER": "bank", "id": 1',
                            "application/json;charset=UTF-8")
        if kind == "token_expired":
            raise ApiError("Y008")
        if kind == "api_error":
            raise ApiError(fault["code"])
        if kind == "dataset_status":
            code = fault["code"]
            status = "IN_PROGRESS" if code in IN_PROGRESS_STATUSES else (
                "SUCCESS" if code in ("AVAILABLE_DATA_RETRIEVED",) else "FAILED")
            request.status_override = (status, code, "ALLOW_UPDATE")
            return None
        request.status_override = STATUS_FAULTS[kind]
        return None

    @staticmethod
    def _rate_limit_error(seconds):
        wait = max(1, math.ceil(seconds))
        if wait >= 3600:
            return ApiError(None, DAILY_LIMIT_MESSAGE.format(hours=math.ceil(wait / 3600)),
                            status=429)
        return ApiError(None, RATE_LIMIT_MESSAGE.format(seconds=wait), status=429,
                        headers={"Retry-After": str(wait)})

    def _check_rate(self, key):
        limit = self._config["rate_limit_per_minute"]
        if not limit:
            return
        with self._lock:
            now = self.now()
            window = self._rate.setdefault(key, deque())
            while window and now - window[0] >= RATE_WINDOW:
                window.popleft()
            if len(window) >= limit:
                wait = (window[0] + RATE_WINDOW - now).total_seconds()
                raise self._rate_limit_error(wait)
            window.append(now)

    # ------------------------------------------------------------------ introspection
    def stats(self):
        """Requests per ``METHOD /path/template`` (admin ``/_sim`` calls not counted)."""
        with self._lock:
            return {"requests": dict(self._stats), "total": sum(self._stats.values()),
                    "faults_triggered": self._faults_triggered}

    def consents(self):
        """Every providerAccount (a link and its open-banking consent)."""
        with self._lock:
            return [self._consent_view(pa) for pa in self._provider_accounts.values()]

    def _consent_view(self, pa):
        return {"id": str(pa["id"]), "provider_account_id": pa["id"],
                "consent_id": pa["consent_id"], "login_name": pa["login_name"],
                "provider_id": pa["provider_id"], "created_at": _iso(pa["created"]),
                "valid_until": _iso(pa["consent_expires"]),
                "revoked": pa["revoked_at"] is not None, "deleted": pa["deleted"],
                "accounts": sorted(pa["accounts"])}

    def revoke_consent(self, provider_account_id):
        """Revoke a link's consent as if the user did it at the bank; False if unknown."""
        with self._lock:
            pa = self._provider_accounts.get(_int_or_none(provider_account_id))
            if pa is None or pa["deleted"]:
                return False
            pa["revoked_at"] = self.now()
            return True

    def expire_consent(self, provider_account_id):
        """Make a link's consent expire now; False if unknown."""
        with self._lock:
            pa = self._provider_accounts.get(_int_or_none(provider_account_id))
            if pa is None or pa["deleted"]:
                return False
            pa["consent_expires"] = self.now() - timedelta(seconds=1)
            return True

    def issued_tokens(self):
        """Every access token issued so far (tests check that none leaks into a log line)."""
        with self._lock:
            return list(self._tokens)

    def providers(self):
        """The institutions (``GET /providers`` objects)."""
        return [self._provider_payload(provider, self.url) for provider in data.PROVIDERS]

    def accounts(self, provider_id=None):
        """The bank accounts a user holds (IBAN, number, name, currency), without Yodlee ids."""
        specs = data.ACCOUNTS.get(int(provider_id), ()) if provider_id else [
            spec for specs in data.ACCOUNTS.values() for spec in specs]
        return [{"iban": spec["iban"], "number": spec["number"], "name": spec["name"],
                 "currency": spec["currency"], "provider_id": spec["provider_id"],
                 "kind": spec["kind"]} for spec in specs]

    def _resolve_account(self, account):
        """(spec, Yodlee account id or None) for an IBAN, account number or Yodlee account id."""
        key = str(account).strip()
        if key.isdigit():
            with self._lock:
                for pa in self._provider_accounts.values():
                    if int(key) in pa["accounts"]:
                        return data.find_account_spec(pa["accounts"][int(key)]), int(key)
        spec = data.find_account_spec(key)
        if spec is None:
            raise KeyError(f"unknown account {account!r}")
        with self._lock:
            for pa in self._provider_accounts.values():
                if pa["deleted"]:
                    continue
                for account_id, seed in pa["accounts"].items():
                    if seed == spec["seed"]:
                        return spec, account_id
        return spec, None

    def expected_booked(self, account, date_from, date_to):
        """The POSTED transactions (API dicts) the bank holds for ``account`` (IBAN, account
        number or Yodlee account id) with a postDate in [date_from, date_to], in API order
        (newest first). Not limited by any consent or default window."""
        spec, account_id = self._resolve_account(account)
        date_from, date_to = _as_day(date_from), _as_day(date_to)
        with self._lock:
            start, end = max(date_from, self._origin), min(date_to, self.today)
            per_day = self._config["txns_per_day"].get(spec["currency"], 0)
            now_iso = _iso(self.now())
        items = []
        day = start
        while day <= end:
            items.extend(txn.as_api(account_id, False, now_iso)
                         for txn in data.transactions_posting_on(spec, day, per_day))
            day += timedelta(days=1)
        return _api_order(items)

    def expected_pending(self, account):
        """The PENDING transactions (API dicts) of ``account`` today."""
        spec, account_id = self._resolve_account(account)
        with self._lock:
            today = self.today
            per_day = self._config["txns_per_day"].get(spec["currency"], 0)
            now_iso = _iso(self.now())
        return _api_order([txn.as_api(account_id, True, now_iso) for txn in
                           data.transactions_posting_on(spec, today + timedelta(days=1), per_day)])

    def expected_balances(self, account):
        """``{"current": Decimal, "available": Decimal}`` of ``account`` today."""
        spec, _account_id = self._resolve_account(account)
        current, available = self._balances_of(spec, self.today)
        return {"current": current, "available": available}

    def _balances_of(self, spec, today):
        with self._lock:
            origin = self._origin
            per_day = self._config["txns_per_day"].get(spec["currency"], 0)
        current = spec["opening_balance"]
        day = origin
        while day <= today:
            current += data.day_total(spec, day, per_day)
            day += timedelta(days=1)
        pending = data.day_total(spec, today + timedelta(days=1), per_day)
        return current, current + pending

    # ------------------------------------------------------------------ dispatch
    def handle(self, request):
        """Answer one request: a ``Response`` or ``_NO_ANSWER``."""
        route, params, allowed = self._match(request)
        if route is None:
            if allowed:
                return self._error_response(ApiError("Y806", f"{request.method} not allowed",
                                                     status=405,
                                                     headers={"Allow": ", ".join(sorted(allowed))}))
            return self._error_response(ApiError("Y807", status=404))
        template, handler, is_api = route
        request.template = template
        if not request.path.startswith("/_sim/"):
            with self._lock:
                self._stats[f"{request.method} {template}"] += 1
        try:
            if is_api:
                self._identify(request)
                fault = self._take_fault(request)
                if fault is not None:
                    outcome = self._apply_fault(fault, request)
                    if outcome is not None:
                        return outcome
                    if self._stopping.is_set():
                        return _NO_ANSWER
                self._check_api_version(request)
                self._check_rate(request.user or ("client", template))
            return getattr(self, handler)(request, **params)
        except ApiError as error:
            return self._error_response(error)
        except Exception:  # pragma: no cover - a bug of the simulator itself
            _logger.exception("yodlee sim: %s %s failed", request.method, request.path)
            return self._error_response(ApiError("Y902"))

    @staticmethod
    def _match(request):
        allowed = set()
        for method, pattern, template, handler, is_api in ROUTES:
            path = request.api_path if is_api else request.path
            match = pattern.match(path)
            if match:
                if method == request.method:
                    return (template, handler, is_api), match.groupdict(), allowed
                allowed.add(method)
        return None, {}, allowed

    @staticmethod
    def _error_response(error):
        body = {"errorMessage": error.message,
                "referenceCode": "y" + secrets.token_hex(10)}
        if error.code:
            body = {"errorCode": error.code, **body}
        return Response.json(error.status, body, error.headers)

    # ------------------------------------------------------------------ auth helpers
    def _identify(self, request):
        """Note the user behind a valid bearer token (for faults and rate limits)."""
        token = request.bearer()
        if not token:
            return
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None or entry["revoked"]:
                return
            request.user = entry["login_name"]
            request.consent_ids = {str(pa_id) for pa_id, pa in self._provider_accounts.items()
                                   if pa["login_name"] == request.user and not pa["deleted"]}

    @staticmethod
    def _check_api_version(request):
        version = request.headers.get("Api-Version")
        if version is None:
            raise ApiError("Y016", "Api-Version header missing")
        if version.strip() != API_VERSION:
            raise ApiError("Y800", "Invalid value for Api-Version")

    def _authenticate(self, request, codes=("Y007", "Y008", "Y008")):
        """The login name behind the request's bearer token, or an ApiError."""
        missing, invalid, expired = codes
        token = request.bearer()
        if token is None:
            raise ApiError(missing)
        with self._lock:
            entry = self._tokens.get(token) if token else None
            if entry is None or entry["revoked"]:
                raise ApiError(invalid)
            if self.now() >= entry["expires_at"]:
                raise ApiError(expired)
            return entry["login_name"]

    def _user_pa(self, login_name, raw_id, name="providerAccountId"):
        """The live providerAccount ``raw_id`` of ``login_name`` (lock held), else Y800."""
        pa_id = _int_or_none(raw_id)
        pa = self._provider_accounts.get(pa_id) if pa_id is not None else None
        if pa is None or pa["deleted"] or pa["login_name"] != login_name:
            raise ApiError("Y800", f"Invalid value for {name}")
        return pa

    def _user_accounts(self, login_name):
        """[(account id, spec, providerAccount)] of a user's live links (lock held)."""
        result = []
        for pa in self._provider_accounts.values():
            if pa["login_name"] != login_name or pa["deleted"]:
                continue
            for account_id, seed in sorted(pa["accounts"].items()):
                result.append((account_id, data.find_account_spec(seed), pa))
        return result

    # ------------------------------------------------------------------ link state
    def _data_now(self, pa):
        """Until when the link's data is refreshed: now, or when its consent ended."""
        now = self.now()
        ends = [now, pa["consent_expires"]]
        if pa["revoked_at"] is not None:
            ends.append(pa["revoked_at"])
        return min(ends)

    def _pa_state(self, pa, override=None):
        """(status, additionalStatus, updateEligibility) of a providerAccount."""
        if override is not None:
            return override
        if pa["revoked_at"] is not None:
            return STATUS_FAULTS["consent_revoked"]
        if self.now() >= pa["consent_expires"]:
            return STATUS_FAULTS["consent_expired"]
        return ("SUCCESS", "AVAILABLE_DATA_RETRIEVED", "ALLOW_UPDATE")

    def _dataset(self, pa, override=None):
        status, additional, eligibility = self._pa_state(pa, override)
        refreshed = self._data_now(pa)
        entry = {"name": "BASIC_AGG_DATA", "additionalStatus": additional,
                 "updateEligibility": eligibility, "lastUpdated": _iso(refreshed),
                 "lastUpdateAttempt": _iso(self.now())}
        if status not in ("FAILED",) and eligibility != "DISALLOW_UPDATE":
            entry["nextUpdateScheduled"] = _iso(refreshed + timedelta(days=1))
        return status, [entry]

    def _pa_payload(self, pa, override=None):
        status, dataset = self._dataset(pa, override)
        return {"id": pa["id"], "aggregationSource": "USER", "providerId": pa["provider_id"],
                "requestId": pa["request_id"], "status": status, "dataset": dataset,
                "isManual": False, "createdDate": _iso(pa["created"]),
                "lastUpdated": _iso(self._data_now(pa)), "consentId": pa["consent_id"],
                "preferences": {"isDataExtractsEnabled": False, "isAutoRefreshEnabled": True}}

    def _account_payload(self, account_id, spec, pa, includes, override=None):
        _status, dataset = self._dataset(pa, override)
        day = self._data_now(pa).date()
        current, available = self._balances_of(spec, day)
        currency = spec["currency"]
        provider = data.find_provider(spec["provider_id"])
        payload = {
            "CONTAINER": "bank",
            "id": account_id,
            "providerAccountId": pa["id"],
            "providerId": str(spec["provider_id"]),
            "providerName": provider["name"],
            "accountName": spec["name"],
            "displayedName": spec["holder"],
            "accountNumber": spec["masked"],
            "accountType": "SAVINGS" if spec["kind"] == "savings" else "CHECKING",
            "accountStatus": "ACTIVE",
            "aggregationSource": "USER",
            "classification": "SMALL_BUSINESS",
            "isAsset": True,
            "isManual": False,
            "includeInNetWorth": True,
            "balance": {"amount": float(available), "currency": currency},
            "currentBalance": {"amount": float(current), "currency": currency},
            "availableBalance": {"amount": float(available), "currency": currency},
            "createdDate": _iso(pa["created"]),
            "lastUpdated": _iso(self._data_now(pa)),
            "dataset": dataset,
        }
        if "fullAccountNumberList" in includes:
            numbers = {"unmaskedAccountNumber": spec["number"].replace(" ", "")}
            if spec["iban"]:
                numbers["paymentAccountNumber"] = spec["iban"]
            payload["fullAccountNumberList"] = numbers
        if "holder" in includes:
            payload["holder"] = [{"name": {"fullName": spec["holder"]}, "ownership": "PRIMARY"}]
        return payload

    def _new_id(self, kind):
        value = self._next_ids[kind]
        self._next_ids[kind] += 1
        return value

    def _link(self, login_name, provider_id):
        """A new providerAccount with new account ids (lock held)."""
        provider = data.find_provider(provider_id)
        now = self.now()
        pa_id = self._new_id("providerAccount")
        pa = {"id": pa_id, "login_name": login_name, "provider_id": provider["id"],
              "created": now, "consent_id": self._new_id("consent"), "consent_start": now,
              "consent_expires": now + timedelta(days=provider["consent_days"]),
              "revoked_at": None, "deleted": False,
              "request_id": hashlib.sha256(f"{pa_id}|{now}".encode()).hexdigest()[:24],
              "accounts": {self._new_id("account"): spec["seed"]
                           for spec in data.ACCOUNTS[provider["id"]]}}
        self._provider_accounts[pa_id] = pa
        return pa

    def _renew(self, pa):
        """FastLink's refresh flow: a new consent period for the same link and account ids."""
        provider = data.find_provider(pa["provider_id"])
        now = self.now()
        pa["consent_start"] = now
        pa["consent_expires"] = now + timedelta(days=provider["consent_days"])
        pa["revoked_at"] = None
        pa["request_id"] = hashlib.sha256(f"{pa['id']}|{now}|renew".encode()).hexdigest()[:24]
        return pa

    # ------------------------------------------------------------------ API: auth
    def _token(self, request):
        form = request.form()
        client_id, client_secret = form.get("clientId"), form.get("secret")
        if not client_id or not client_secret:
            raise ApiError("Y303")
        if not (secrets.compare_digest(client_id, self.client_id)
                and secrets.compare_digest(client_secret, self._client_secret)):
            raise ApiError("Y301")
        login_name = request.headers.get("loginName")
        if login_name is None:
            raise ApiError("Y016", "loginName header missing")
        if not 3 <= len(login_name) <= 150:
            raise ApiError("Y801", "Invalid length for loginName")
        if not LOGIN_NAME_PATTERN.match(login_name):
            raise ApiError("Y800", "Invalid value for loginName")
        with self._lock:
            if login_name not in self._users:
                if not self._config["auto_register"]:
                    raise ApiError("Y305")
                self._users[login_name] = {"login_name": login_name, "admin": False,
                                           "id": self._new_id("user")}
            ttl = self._config["access_token_ttl"]
            now = self.now()
            token = secrets.token_urlsafe(21)
            self._tokens[token] = {"login_name": login_name, "revoked": False,
                                   "expires_at": now + timedelta(seconds=ttl)}
        return Response.json(201, {"token": {"accessToken": token, "issuedAt": _iso(now),
                                             "expiresIn": ttl}})

    def _token_delete(self, request):
        # The swagger's codes for this endpoint: Y007 missing, Y020 invalid, Y023 expired.
        self._authenticate(request, codes=("Y007", "Y020", "Y023"))
        with self._lock:
            self._tokens[request.bearer()]["revoked"] = True
        return Response(204)

    # ------------------------------------------------------------------ API: providers
    @staticmethod
    def _provider_payload(provider, base):
        return {
            "id": provider["id"], "name": provider["name"],
            "loginUrl": provider["baseUrl"] + "/login", "baseUrl": provider["baseUrl"],
            "favicon": f"{base}/static/yodlee-sim.svg", "logo": f"{base}/static/yodlee-sim.svg",
            "status": provider["status"], "countryISOCode": provider["countryISOCode"],
            "primaryLanguageISOCode": "en", "languageISOCode": "en",
            "authType": "OAUTH", "authParameter": ["authorizationCode"],
            "isConsentRequired": True, "isAutoRefreshEnabled": True, "PRIORITY": "COBRAND",
            "lastModified": "2024-01-15T08:00:00Z",
            "dataset": [{"name": "BASIC_AGG_DATA", "attribute": [
                {"name": "BASIC_ACCOUNT_INFO", "container": ["bank"]},
                {"name": "TRANSACTIONS", "container": ["bank"]},
                {"name": "ACCOUNT_DETAILS", "container": ["bank"]}]}],
        }

    def _providers(self, request):
        self._authenticate(request)
        query = request.query
        name = query.get("name")
        if name is not None and not name.strip():
            raise ApiError("Y801", "Invalid length for a site search. The search string must "
                                   "have atleast 1 character")
        priority = query.get("priority")
        if priority is not None and priority.lower() not in ("cobrand", "popular", "suggested",
                                                              "search", "all"):
            raise ApiError("Y800", "Invalid value for priority")
        skip = _int_param(query, "skip", 0)
        top = _int_param(query, "top", MAX_TOP)
        if skip < 0:
            raise ApiError("Y800", "Invalid value for skip")
        if not 1 <= top <= MAX_TOP:
            raise ApiError("Y804")
        wanted_ids = None
        if query.get("providerId"):
            wanted_ids = [part.strip() for part in query["providerId"].split(",")]
            if len(wanted_ids) > 5 or not all(part.isdigit() for part in wanted_ids):
                raise ApiError("Y800", "Invalid value for providerId")
        host = request.headers.get("Host")
        base = f"http://{host}" if host else self.url
        found = [provider for provider in data.PROVIDERS
                 if (not name or name.strip().casefold() in provider["name"].casefold())
                 and (wanted_ids is None or str(provider["id"]) in wanted_ids)]
        if not name:  # skip and top do not apply to a name search
            found = found[skip:skip + top]
        if not found:
            return Response.json(200, {})
        return Response.json(200, {"provider": [self._provider_payload(p, base) for p in found]})

    # ------------------------------------------------------------------ API: provider accounts
    def _pa_list(self, request):
        login_name = self._authenticate(request)
        with self._lock:
            items = [self._pa_payload(pa, request.status_override)
                     for pa in self._provider_accounts.values()
                     if pa["login_name"] == login_name and not pa["deleted"]]
        return Response.json(200, {"providerAccount": items} if items else {})

    def _pa_get(self, request, item_id):
        login_name = self._authenticate(request)
        with self._lock:
            pa = self._user_pa(login_name, item_id)
            return Response.json(200, {"providerAccount": [
                self._pa_payload(pa, request.status_override)]})

    def _pa_delete(self, request, item_id):
        login_name = self._authenticate(request)
        with self._lock:
            pa = self._user_pa(login_name, item_id)
            pa["deleted"] = True
        return Response(204)

    # ------------------------------------------------------------------ API: accounts
    @staticmethod
    def _includes(query):
        includes = {part.strip() for part in (query.get("include") or "").split(",")
                    if part.strip()}
        if includes - INCLUDES:
            raise ApiError("Y800", "Invalid value for include")
        return includes

    def _accounts(self, request):
        login_name = self._authenticate(request)
        query = request.query
        includes = self._includes(query)
        container = query.get("container")
        if container is not None and container not in CONTAINERS:
            raise ApiError("Y800", "Invalid value for container")
        status = query.get("status")
        if status is not None and not set(status.split(",")) <= {
                "ACTIVE", "INACTIVE", "TO_BE_CLOSED", "CLOSED"}:
            raise ApiError("Y800", "Invalid value for status")
        account_ids = _id_list(query.get("accountId"), "accountId")
        with self._lock:
            pa_ids = None
            if query.get("providerAccountId") is not None:
                pa_ids = {self._user_pa(login_name, raw)["id"]
                          for raw in query["providerAccountId"].split(",")}
            items = [self._account_payload(account_id, spec, pa, includes,
                                           request.status_override)
                     for account_id, spec, pa in self._user_accounts(login_name)
                     if (pa_ids is None or pa["id"] in pa_ids)
                     and (account_ids is None or account_id in account_ids)
                     and container in (None, "bank")
                     and (status is None or "ACTIVE" in status.split(","))]
        return Response.json(200, {"account": items} if items else {})

    def _account(self, request, item_id):
        login_name = self._authenticate(request)
        includes = self._includes(request.query)
        account_id = _int_or_none(item_id)
        if account_id is None:
            raise ApiError("Y800", "Invalid value for accountId")
        with self._lock:
            for known_id, spec, pa in self._user_accounts(login_name):
                if known_id == account_id:
                    return Response.json(200, {"account": [self._account_payload(
                        known_id, spec, pa, includes, request.status_override)]})
        raise ApiError("Y807")

    # ------------------------------------------------------------------ API: transactions
    def _transaction_filter(self, request):
        """(login name, selected transactions in API order) of a /transactions query."""
        login_name = self._authenticate(request)
        query = request.query
        today = self.today
        date_from = _date_param(query, "fromDate")
        date_to = _date_param(query, "toDate")
        if date_from is None:
            date_from = today - timedelta(days=DEFAULT_TRANSACTIONS_WINDOW_DAYS)
        if date_from > today:
            raise ApiError("Y802", "future fromDate not allowed")
        if date_to is not None and date_from > date_to:
            raise ApiError("Y809")
        container = query.get("container")
        if container is not None:
            if "," in container:
                raise ApiError("Y805")
            if container not in CONTAINERS:
                raise ApiError("Y800", "Invalid value for container")
        base_type = query.get("baseType")
        if base_type is not None and base_type not in ("DEBIT", "CREDIT"):
            raise ApiError("Y800", "Invalid value for baseType")
        account_ids = _id_list(query.get("accountId"), "accountId")
        keyword = (query.get("keyword") or "").casefold()
        with self._lock:
            selected = [(account_id, spec, pa) for account_id, spec, pa
                        in self._user_accounts(login_name)
                        if account_ids is None or account_id in account_ids]
            states = [(account_id, spec, self._data_now(pa).date(), _iso(self._data_now(pa)),
                       self._config["txns_per_day"].get(spec["currency"], 0))
                      for account_id, spec, pa in selected]
            origin = self._origin
        items = []
        if container in (None, "bank"):
            for account_id, spec, data_today, stamp, per_day in states:
                items.extend(self._window(spec, account_id, data_today, stamp, per_day,
                                          max(date_from, origin), date_to))
        if base_type:
            items = [item for item in items if item["baseType"] == base_type]
        if keyword:
            items = [item for item in items if keyword in " ".join(
                filter(None, item["description"].values())).casefold()]
        return login_name, _api_order(items)

    @staticmethod
    def _window(spec, account_id, data_today, stamp, per_day, date_from, date_to):
        """API dicts of one account whose ``date`` is in [date_from, date_to]."""
        last = data_today if date_to is None else min(date_to, data_today)
        items = []
        day = date_from
        while day <= last:
            items.extend(txn.as_api(account_id, False, stamp)
                         for txn in data.transactions_posting_on(spec, day, per_day))
            day += timedelta(days=1)
        if date_from <= data_today and (date_to is None or data_today <= date_to):
            items.extend(txn.as_api(account_id, True, stamp) for txn in
                         data.transactions_posting_on(spec, data_today + timedelta(days=1),
                                                      per_day))
        return items

    def _transactions(self, request):
        _login_name, items = self._transaction_filter(request)
        query = request.query
        skip = _int_param(query, "skip", 0)
        top = _int_param(query, "top", MAX_TOP)
        if skip < 0:
            raise ApiError("Y800", "Invalid value for skip")
        if not 1 <= top <= MAX_TOP:
            raise ApiError("Y804")
        page = items[skip:skip + top]
        headers = {}
        links = []
        base = {key: value for key, value in request.query.items() if key not in ("skip", "top")}

        def page_link(start, rel):
            return f'<{request.path}?{urlencode({**base, "skip": start, "top": top})}>; rel="{rel}"'

        if skip + top < len(items):
            links.append(page_link(skip + top, "next"))
        if skip > 0:
            links.append(page_link(max(0, skip - top), "prev"))
        if links:
            headers["Link"] = ", ".join(links)
        return Response.json(200, {"transaction": page} if page else {}, headers)

    def _transactions_count(self, request):
        _login_name, items = self._transaction_filter(request)
        return Response.json(200, {"transaction": {"TOTAL": {"count": len(items)}}})

    # ------------------------------------------------------------------ API: consents
    def _consent_payload(self, pa):
        provider = data.find_provider(pa["provider_id"])
        if pa["revoked_at"] is not None:
            status = "REVOKED"
        elif self.now() >= pa["consent_expires"]:
            status = "EXPIRED"
        else:
            status = "ACTIVE"
        days = (pa["consent_expires"] - pa["consent_start"]).days
        return {
            "consentId": pa["consent_id"], "providerId": pa["provider_id"],
            "providerAccountId": pa["id"], "consentStatus": status,
            "startDate": _iso(pa["consent_start"]), "expirationDate": _iso(pa["consent_expires"]),
            "revokeDate": _iso(pa["revoked_at"]) if pa["revoked_at"] else "",
            "title": f"Share your {provider['name']} data",
            "titleBody": "Account details and transactions, for bank reconciliation.",
            "applicationDisplayName": "Odoo Online Bank Synchronization",
            "clientADR": "", "clientTrustedAdvisor": [], "dataAccessFrequency": "RECURRING",
            "preferences": [{"id": 1, "title": "Sharing duration", "type": "DURATION",
                             "value": str(days)}],
            "scope": [{"scopeId": "ACCOUNT_DETAILS", "title": "Account details",
                       "titleBody": ["Name, number and balance"]},
                      {"scopeId": "TRANSACTION_DETAILS", "title": "Transactions",
                       "titleBody": ["Amounts, dates and descriptions"]}],
            "renewal": {"defaultRenewalDuration": provider["consent_days"],
                        "isReauthorizationRequired": True},
        }

    def _consents(self, request):
        login_name = self._authenticate(request)
        consent_ids = _id_list(request.query.get("consentIds"), "consentIds")
        pa_ids = _id_list(request.query.get("providerAccountIds"), "providerAccountIds")
        with self._lock:
            items = [self._consent_payload(pa) for pa in self._provider_accounts.values()
                     if pa["login_name"] == login_name and not pa["deleted"]
                     and (consent_ids is None or pa["consent_id"] in consent_ids)
                     and (pa_ids is None or pa["id"] in pa_ids)]
        return Response.json(200, {"consent": items} if items else {})

    # ------------------------------------------------------------------ public pages
    def _root(self, request):
        return Response.json(200, {"name": "Yodlee simulator", "api": API_PREFIX,
                                   "fastlink": FASTLINK_PATH, "today": self.today.isoformat()})

    def _logo(self, request):
        return Response(200, LOGO_SVG.encode(), "image/svg+xml",
                        {"Cache-Control": "public, max-age=86400"})

    @staticmethod
    def _page(title, body, lang="en", status=200):
        text = (f'<!DOCTYPE html>\n<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title>"
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                "<style>body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}"
                "button{font-size:1em;padding:.5em 1.2em;margin-right:.5em}</style></head>"
                '<body><h1><img src="/static/yodlee-sim.svg" alt="" width="32" height="32"> '
                f"FastLink</h1>{body}</body></html>\n")
        return Response.html(status, text)

    def _error_page(self, message, status=400):
        return self._page("FastLink – Error",
                          f"<p><strong>Invalid request.</strong> {html.escape(message)}</p>",
                          status=status)

    def _fastlink_params(self, request):
        """(user, params) of a FastLink launch, or (None, message)."""
        fields = request.form() if request.method == "POST" else {}
        fields = {**request.query, **fields}
        raw_token = (fields.get("accessToken") or "").strip()
        token = raw_token[7:].strip() if raw_token[:7].lower() == "bearer " else raw_token
        with self._lock:
            entry = self._tokens.get(token) if token else None
            if entry is None or entry["revoked"] or self.now() >= entry["expires_at"]:
                return None, "Y008: Invalid token in authorization header."
            login_name = entry["login_name"]
        extra = {key: values[0] for key, values in
                 parse_qs(fields.get("extraParams") or "", keep_blank_values=True).items()}
        callback = extra.get("callback") or ""
        parts = urlsplit(callback)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return None, "A callback URL (http or https, no fragment) is required."
        flow = extra.get("flow") or "add"
        params = {"login_name": login_name, "callback": callback, "state": extra.get("state"),
                  "flow": flow, "locale": extra.get("locale") or "en",
                  "config_name": extra.get("configName") or "Aggregation"}
        with self._lock:
            if flow in ("refresh", "edit"):
                pa_id = _int_or_none(extra.get("providerAccountId"))
                pa = self._provider_accounts.get(pa_id) if pa_id else None
                if pa is None or pa["deleted"] or pa["login_name"] != login_name:
                    return None, "Unknown providerAccountId for this user."
                params["provider_account_id"] = pa_id
                params["provider_id"] = pa["provider_id"]
            elif flow == "add":
                provider = data.find_provider(extra.get("providerId"))
                if provider is None:
                    return None, "Unknown providerId."
                params["provider_id"] = provider["id"]
            else:
                return None, "flow must be add, refresh or edit."
        return login_name, params

    def _fastlink_page(self, request):
        login_name, params = self._fastlink_params(request)
        if login_name is None:
            return self._error_page(params, status=401 if params.startswith("Y008") else 400)
        session = secrets.token_urlsafe(18)
        with self._lock:
            self._sessions = {key: value for key, value in self._sessions.items()
                              if value["expires_at"] > self.now()}
            self._sessions[session] = {**params, "expires_at": self.now() + FASTLINK_SESSION_TTL}
        provider = data.find_provider(params["provider_id"])
        accounts = "".join(
            f"<li>{html.escape(spec['name'])} – {html.escape(spec['masked'])} "
            f"({html.escape(spec['currency'])})</li>" for spec in data.ACCOUNTS[provider["id"]])
        action = "renew your consent for" if params["flow"] != "add" else "link"
        body = (f"<h2>{html.escape(provider['name'])}</h2>"
                f"<p>Odoo asks to {action} your accounts at this bank (balances and "
                f"transactions, {provider['consent_days']} days):</p><ul>{accounts}</ul>"
                f'<form method="post" action="{FASTLINK_PATH}/decision">'
                f'<input type="hidden" name="session" value="{html.escape(session)}">'
                '<button type="submit" name="decision" value="approve">Allow</button>'
                '<button type="submit" name="decision" value="cancel">Cancel</button></form>')
        lang = params["locale"].split("_")[0] if params["locale"] else "en"
        return self._page("FastLink – " + provider["name"], body, lang)

    def _fastlink_decision(self, request):
        form = request.form()
        with self._lock:
            params = self._sessions.pop(form.get("session") or "", None)
            if params is None or params["expires_at"] <= self.now():
                return self._error_page("This FastLink session is unknown or has expired.")
            decision = form.get("decision")
            if decision == "approve":
                if params["flow"] == "add":
                    pa = self._link(params["login_name"], params["provider_id"])
                else:
                    pa = self._renew(self._provider_accounts[params["provider_account_id"]])
                provider = data.find_provider(pa["provider_id"])
                answer = {"status": CALLBACK_SUCCESS_STATUS, "providerAccountId": pa["id"],
                          "providerId": pa["provider_id"], "providerName": provider["name"],
                          "requestId": pa["request_id"]}
            elif decision == "cancel":
                answer = dict(CALLBACK_CANCEL)
            else:
                return self._error_page("decision must be approve or cancel.")
        if params.get("state"):
            answer["state"] = params["state"]
        callback = params["callback"]
        separator = "&" if urlsplit(callback).query else ("" if callback.endswith("?") else "?")
        return Response(302, b"", None, {"Location": callback + separator + urlencode(answer),
                                         "Cache-Control": "no-store"})

    # ------------------------------------------------------------------ admin API
    @staticmethod
    def _admin(call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise ApiError("Y806", str(exc)) from None

    @staticmethod
    def _json_body(request):
        if not request.body:
            return {}
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise ApiError("Y806", "the body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ApiError("Y806", "the body must be a JSON object")
        return payload

    def _sim_faults_list(self, request):
        return Response.json(200, {"faults": self.faults()})

    def _sim_faults_add(self, request):
        body = self._json_body(request)
        allowed = {"kind", "times", "skip", "path", "consent_id", "seconds", "code"}
        if set(body) - allowed:
            raise ApiError("Y806", "unknown fields: " + ", ".join(sorted(set(body) - allowed)))
        options = {key: body[key] for key in allowed - {"kind"} if key in body}
        if options.get("skip", 0) is None:
            options["skip"] = 0
        return Response.json(201, {"fault": self._admin(self.add_fault, body.get("kind"),
                                                        **options)})

    def _sim_faults_clear(self, request):
        self.clear_faults()
        return Response(204)

    def _sim_clock_get(self, request):
        return Response.json(200, {"today": self.today.isoformat(), "now": _iso(self.now())})

    def _sim_clock_set(self, request):
        body = self._json_body(request)
        if "today" in body:
            self._admin(self.set_today, body["today"])
        elif "advance_days" in body and isinstance(body["advance_days"], int) \
                and not isinstance(body["advance_days"], bool):
            self.advance_days(body["advance_days"])
        else:
            raise ApiError("Y806", "give today or an integer advance_days")
        return self._sim_clock_get(request)

    def _sim_config_get(self, request):
        return Response.json(200, {"config": self.config()})

    def _sim_config_set(self, request):
        body = self._json_body(request)
        allowed = {"history_days", "txns_per_day", "access_token_ttl", "rate_limit_per_minute",
                   "auto_register"}
        if set(body) - allowed:
            raise ApiError("Y806", "unknown fields: " + ", ".join(sorted(set(body) - allowed)))
        return Response.json(200, {"config": self._admin(self.configure, **body)})

    def _sim_reset(self, request):
        self.reset()
        return Response(204)

    def _sim_stats(self, request):
        return Response.json(200, self.stats())

    def _sim_consents(self, request):
        return Response.json(200, {"consents": self.consents()})

    def _sim_revoke(self, request, item_id):
        if not self.revoke_consent(item_id):
            raise ApiError("Y807")
        return Response.json(200, {"consent": next(
            c for c in self.consents() if c["id"] == str(item_id))})


# ---------------------------------------------------------------------------- helpers
def _int_or_none(value):
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() and len(text) < 19 else None


def _int_param(query, name, default):
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        if name == "top":
            raise ApiError("Y804") from None
        raise ApiError("Y800", f"Invalid value for {name}") from None


def _date_param(query, name):
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError("Y800", f"Invalid value for {name}") from None


def _id_list(raw, name):
    if raw is None:
        return None
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if len(parts) > 100:
        raise ApiError("Y824", f"The maximum number of {name} permitted is 100")
    ids = set()
    for part in parts:
        value = _int_or_none(part)
        if value is None:
            raise ApiError("Y800", f"Invalid value for {name}")
        ids.add(value)
    return ids


def _api_order(items):
    """Newest first (by ``date``), then by id, descending: Yodlee's order."""
    return sorted(items, key=lambda item: (item["date"], item["id"]), reverse=True)


# ---------------------------------------------------------------------------- the user's browser
class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}
        self.decisions = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action")
        elif tag == "input" and attrs.get("type") == "hidden":
            self.fields[attrs.get("name")] = attrs.get("value") or ""
        elif tag == "button" and attrs.get("name") == "decision":
            self.decisions.add(attrs.get("value"))


def simulate_user(consent_url, decision="approve", timeout=10):
    """Play the user in a browser: open FastLink at ``consent_url``, press "Allow" (``approve``)
    or "Cancel" (``cancel``) and return the query parameters FastLink redirects back with.

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
        raise RuntimeError(f"FastLink answered HTTP {status}")
    form = _FormParser()
    form.feed(page.decode("utf-8"))
    if decision not in form.decisions or not form.action:
        raise RuntimeError("the FastLink page has no such decision button")
    body = urlencode({**form.fields, "decision": decision})
    status, headers, _ = call("POST", urljoin(parts.path, form.action), body,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    location = headers.get("Location")
    if status != 302 or not location:
        raise RuntimeError(f"the FastLink decision answered HTTP {status}")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


__all__ = ["YodleeServer", "simulate_user", "FAULT_KINDS", "ERRORS"]
