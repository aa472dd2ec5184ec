"""GoCardless Bank Account Data (ex-Nordigen) API v2, simulated on 127.0.0.1 (see README.md).

Standard library only. One ``GoCardlessServer`` is one GoCardless "company": its secrets, tokens,
End-User Agreements, requisitions, linked accounts, per-account quotas, simulated clock,
configuration and fault knobs live in the object, guarded by a lock, reachable over HTTP
(``/_sim/...``) and from Python (``server.add_fault(...)``, ``server.set_today(...)``).

Facts followed: reference/providers.md §6. Behaviour the reference marks unconfirmed (⚠️/❓) is
kept in the module-level constants and ``_error_*`` helpers below, each marked, so it is easy to
correct.
"""
import base64
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
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from . import data

_logger = logging.getLogger(__name__)

API = "/api/v2"
DEFAULT_SECRET_ID = "5d1c0a7e-8f3b-4c2d-9e6f-1a2b3c4d5e6f"
DEFAULT_SECRET_KEY = hashlib.sha512(b"gocardless-simulator-secret-key").hexdigest()
ACCESS_TTL = 86400  # ✅ 24 h
REFRESH_TTL = 2592000  # ✅ 30 d
DEFAULT_HISTORY_DAYS = 90
DEFAULT_TXNS_PER_DAY = {"EUR": 3, "GBP": 1}
DEFAULT_EUA_DAYS = 90  # ✅ agreement defaults (max_historical_days, access_valid_for_days)
ACCESS_SCOPES = ("balances", "details", "transactions")
ACCOUNT_SUCCESS_LIMIT = 4  # ✅ successful requests per 24 h per account per scope, rolling
ACCOUNT_WINDOW = timedelta(hours=24)
SUSPEND_AFTER_FAILURES = 10  # ✅ consecutive failed accesses before SUSPENDED
# ❓ the general API limit's numbers are not published; headers are X-RateLimit-Limit etc.
DEFAULT_API_REQUESTS_PER_MINUTE = 600
# ⚠️ "dates outside the EUA's max_historical_days are silently clipped or rejected": "clip" or
# "reject" (400 field-keyed on date_from).
OUT_OF_RANGE_POLICY = "clip"
# ❓ status a requisition takes when the user cancels on the bank's page (the redirect carries
# error=UserCancelledSession either way).
CANCELLED_REQUISITION_STATUS = "RJ"
# ✅ (Zendesk "end user authentication errors") redirect parameters on cancel.
CANCEL_ERROR = "UserCancelledSession"
CANCEL_DETAILS = "User cancelled the session."
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0
DEFAULT_RATE_LIMIT_FAULT_SECONDS = 3600
LIST_LIMIT = 100

FAULT_KINDS = (
    "delay", "timeout", "http_500", "http_503", "rate_limit", "malformed_json", "consent_expired",
    "user_must_be_present", "access_expired", "account_inactive", "account_suspended",
    "account_processing", "requisition_expired", "access_denied", "invalid_token",
    "changing_ids", "repeated_ids",
)
# Faults that change the answer of the transactions call instead of replacing it.
MODIFIER_KINDS = ("changing_ids", "repeated_ids")
# Faults that only concern an account's data endpoints (details, balances, transactions).
ACCOUNT_DATA_KINDS = ("consent_expired", "access_expired", "account_inactive",
                      "account_suspended", "account_processing", "access_denied",
                      "user_must_be_present")

LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect width="64" height="64" rx="12" fill="#1c1b4b"/><circle cx="32" cy="32" r="16" fill="#f1f252"/>
</svg>
"""

_NO_ANSWER = object()


def _utcnow():
    return datetime.now(timezone.utc)


def _iso(moment):
    """GoCardless timestamps: ISO 8601 UTC with microseconds and ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_day(value):
    return value if isinstance(value, date) and not isinstance(value, datetime) else \
        date.fromisoformat(str(value))


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


# --------------------------------------------------------------------------- error bodies
def _body(summary, detail, status):
    return {"summary": summary, "detail": detail, "status_code": status}


class ApiError(Exception):
    """An error answer with a GoCardless body (``{summary, detail, status_code}`` or
    field-keyed ``{field: {summary, detail, status_code}}``)."""

    def __init__(self, status, body, headers=None, *, failure=False):
        super().__init__(json.dumps(body))
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.failure = failure  # counts towards the account's suspension


def field_error(field, summary, detail=None):
    """✅ shape of GoCardless validation errors: keyed by the offending field."""
    return ApiError(400, {field: _body(summary, detail or summary, 400)})


def _error_auth_failed():  # ❓ wording (Django REST framework SimpleJWT style)
    return ApiError(401, _body("Authentication failed",
                               "No active account found with the given credentials", 401))


def _error_invalid_token():  # ❓ wording
    return ApiError(401, _body("Invalid token", "Token is invalid or expired", 401))


def _error_not_authenticated():  # ❓ wording
    return ApiError(401, _body("Authentication credentials were not provided.",
                               "Authentication credentials were not provided.", 401))


def _error_not_found():  # ❓ wording
    return ApiError(404, _body("Not found.", "Not found.", 404))


def _error_eua_expired(agreement, expired_at):  # ✅ summary/detail start as documented
    return ApiError(401, _body(
        f"End User Agreement (EUA) {agreement['id']} has expired",
        f"EUA was valid for {agreement['access_valid_for_days']} days and it expired at "
        f"{_iso(expired_at)}. The end user must reconnect the account to restore access.", 401))


def _error_access_expired():  # ✅ type/status/detail (Zendesk); ❓ summary
    return ApiError(401, _body("Access expired", "Access has expired or it has been revoked",
                               401), failure=True)


def _error_account_inactive():  # ✅ type/status; ❓ summary and detail (cut in the source)
    return ApiError(401, _body("Account inactive",
                               "Account has been deactivated or it no longer exists", 401))


def _error_suspended():  # ✅ summary/detail; ⚠️ status 409
    return ApiError(409, _body(
        "Account suspended",
        "This account or its requisition was suspended due to numerous errors that occurred "
        "while accessing it.", 409))


def _error_processing(account_id):  # ❓ the whole answer
    return ApiError(409, _body("Account is being processed",
                               f"Account {account_id} is being processed by the institution. "
                               "Please try again later.", 409))


def _error_access_denied(scope):  # ✅ status 403; ❓ wording
    return ApiError(403, _body("Access denied",
                               f"The End User Agreement does not grant the '{scope}' scope.",
                               403))


def _error_unknown_request():  # ✅ type/status/detail; ❓ summary
    return ApiError(500, _body("Unknown request error",
                               "Request to Institution returned an error", 500), failure=True)


def _error_service():  # ✅ type/status/detail; ❓ summary
    return ApiError(503, _body("Service unavailable", "Institution service unavailable", 503))


def _error_institution_limit():  # ✅ type/status/detail; ❓ summary, no reset headers
    return ApiError(429, _body("Rate limit exceeded",
                               "Daily request limit set by the Institution has been exceeded",
                               429))


def _error_account_limit(limit, reset_seconds):  # ✅ body and headers
    return ApiError(429, _body(
        "Rate limit exceeded",
        f"The rate limit for this resource is {limit}/day. Please try again in "
        f"{reset_seconds} seconds", 429), {
        "X-RateLimit-Account-Success-Limit": str(limit),
        "X-RateLimit-Account-Success-Remaining": "0",
        "X-RateLimit-Account-Success-Reset": str(reset_seconds)})


# --------------------------------------------------------------------------- HTTP plumbing
class Response:
    def __init__(self, status, body=b"", content_type=None, headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status, payload, headers=None):
        return cls(status, json.dumps(payload).encode(), "application/json", headers)

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
        self.consent_id = None  # the requisition the request is about, when known
        self.account_id = None
        self.modifiers = set()

    def json(self):
        if not self.body:
            return {}
        try:
            payload = json.loads(self.body)
        except ValueError:
            raise ApiError(400, _body("Invalid request", "JSON parse error", 400)) from None
        if not isinstance(payload, dict):
            raise ApiError(400, _body("Invalid request", "The body must be a JSON object", 400))
        return payload

    def form(self):
        text = self.body.decode("utf-8", "replace")
        return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}

    def bearer(self):
        value = self.headers.get("Authorization") or ""
        return value[7:].strip() if value[:7].lower() == "bearer " else None


def _route(method, pattern, template, handler, kind="api"):
    return method, re.compile(pattern + r"\Z"), template, handler, kind


_ID = r"(?P<{}>[^/]+)"
ROUTES = (
    _route("GET", r"/", "/", "_root", "page"),
    _route("GET", r"/static/logos/(?P<institution_id>[^/]+)\.svg", "/static/logos/{id}.svg",
           "_logo", "page"),
    _route("GET", rf"/ob-psd2/start/{_ID.format('requisition_id')}/"
                  rf"{_ID.format('institution_id')}/?", "/ob-psd2/start/{id}/{institution}/",
           "_link_page", "page"),
    _route("POST", r"/ob-psd2/decision/?", "/ob-psd2/decision/", "_link_decision", "page"),
    _route("POST", rf"{API}/token/new/?", f"{API}/token/new/", "_token_new", "token"),
    _route("POST", rf"{API}/token/refresh/?", f"{API}/token/refresh/", "_token_refresh",
           "token"),
    _route("GET", rf"{API}/institutions/?", f"{API}/institutions/", "_institutions"),
    _route("GET", rf"{API}/institutions/{_ID.format('institution_id')}/?",
           f"{API}/institutions/{{id}}/", "_institution"),
    _route("POST", rf"{API}/agreements/enduser/?", f"{API}/agreements/enduser/",
           "_agreement_create"),
    _route("GET", rf"{API}/agreements/enduser/?", f"{API}/agreements/enduser/",
           "_agreement_list"),
    _route("GET", rf"{API}/agreements/enduser/{_ID.format('agreement_id')}/?",
           f"{API}/agreements/enduser/{{id}}/", "_agreement_get"),
    _route("DELETE", rf"{API}/agreements/enduser/{_ID.format('agreement_id')}/?",
           f"{API}/agreements/enduser/{{id}}/", "_agreement_delete"),
    _route("POST", rf"{API}/requisitions/?", f"{API}/requisitions/", "_requisition_create"),
    _route("GET", rf"{API}/requisitions/?", f"{API}/requisitions/", "_requisition_list"),
    _route("GET", rf"{API}/requisitions/{_ID.format('requisition_id')}/?",
           f"{API}/requisitions/{{id}}/", "_requisition_get"),
    _route("DELETE", rf"{API}/requisitions/{_ID.format('requisition_id')}/?",
           f"{API}/requisitions/{{id}}/", "_requisition_delete"),
    _route("GET", rf"{API}/accounts/{_ID.format('account_id')}/?", f"{API}/accounts/{{id}}/",
           "_account_metadata"),
    _route("GET", rf"{API}/accounts/{_ID.format('account_id')}/details/?",
           f"{API}/accounts/{{id}}/details/", "_account_details", "data"),
    _route("GET", rf"{API}/accounts/{_ID.format('account_id')}/balances/?",
           f"{API}/accounts/{{id}}/balances/", "_account_balances", "data"),
    _route("GET", rf"{API}/accounts/{_ID.format('account_id')}/transactions/?",
           f"{API}/accounts/{{id}}/transactions/", "_account_transactions", "data"),
    _route("GET", r"/_sim/faults/?", "/_sim/faults", "_sim_faults_list", "admin"),
    _route("POST", r"/_sim/faults/?", "/_sim/faults", "_sim_faults_add", "admin"),
    _route("DELETE", r"/_sim/faults/?", "/_sim/faults", "_sim_faults_clear", "admin"),
    _route("GET", r"/_sim/clock/?", "/_sim/clock", "_sim_clock_get", "admin"),
    _route("POST", r"/_sim/clock/?", "/_sim/clock", "_sim_clock_set", "admin"),
    _route("POST", r"/_sim/config/?", "/_sim/config", "_sim_config_set", "admin"),
    _route("POST", r"/_sim/reset/?", "/_sim/reset", "_sim_reset", "admin"),
    _route("GET", r"/_sim/stats/?", "/_sim/stats", "_sim_stats", "admin"),
)
SCOPE_OF_HANDLER = {"_account_details": "details", "_account_balances": "balances",
                    "_account_transactions": "transactions"}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GoCardlessSimulator/1.0"
    sys_version = ""
    timeout = 60

    def setup(self):
        super().setup()
        # Headers and body leave in two writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.sim._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, False)

    def log_request(self, code="-", size="-"):
        # The path only: query strings, headers and bodies (secrets, tokens) are never logged.
        self.log_message("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format, *args):  # noqa: A002
        if self.server.sim.verbose:
            _logger.info("gocardless simulator: " + format, *args)

    def _handle(self, method):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 1_000_000:
            self.close_connection = True
            self._write(Response.json(400, _body("Invalid request", "bad Content-Length", 400)))
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


# --------------------------------------------------------------------------- the server
class GoCardlessServer:
    """GoCardless Bank Account Data on ``http://host:port`` (port 0: any free port), served in a
    daemon thread; usable as a context manager. ``today`` is the real UTC date unless the
    simulated clock is moved (``set_today``, ``advance_days``)."""

    def __init__(self, host="127.0.0.1", port=0, secret_id=DEFAULT_SECRET_ID,
                 secret_key=DEFAULT_SECRET_KEY, *, history_days=DEFAULT_HISTORY_DAYS,
                 txns_per_day=None, today=None, verbose=False):
        self.host = host
        self.port = port
        self.secret_id = secret_id
        self._secret_key = secret_key
        self.verbose = verbose
        self._initial = {"history_days": history_days, "txns_per_day": txns_per_day,
                         "today": today}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections = set()
        self._httpd = None
        self._thread = None
        self._jwt_key = secrets.token_bytes(32)
        self._reset_state()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        if self._httpd is not None:
            raise RuntimeError("the GoCardless simulator is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.sim = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name=f"gocardless-sim-{self.port}", daemon=True)
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
        """The base URL an adapter uses (``.../api/v2``)."""
        return self.url + API

    def _track(self, connection, alive):
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(connection)

    # ------------------------------------------------------------------ state
    def _reset_state(self):
        with self._lock:
            self._offset_days = 0
            self._config = {"history_days": DEFAULT_HISTORY_DAYS,
                            "txns_per_day": dict(DEFAULT_TXNS_PER_DAY),
                            "account_success_limit": ACCOUNT_SUCCESS_LIMIT,
                            "api_requests_per_minute": DEFAULT_API_REQUESTS_PER_MINUTE,
                            "access_ttl": ACCESS_TTL, "refresh_ttl": REFRESH_TTL}
            self._tokens = {}  # jti -> {"kind", "expires_at"}
            self._agreements = {}
            self._requisitions = {}
            self._accounts = {}
            self._quota = {}  # (account_id, scope) -> [success times]
            self._api_window = [None, 0]  # [window start, requests in it]
            self._seq = 0
            self._call_seq = 0
            self._faults = []
            self._fault_seq = 0
            self._stats = Counter()
            self._faults_triggered = 0
            initial = self._initial
            if initial["today"] is not None:
                self._offset_days = (_as_day(initial["today"]) - _utcnow().date()).days
            self._configure(history_days=initial["history_days"],
                            txns_per_day=initial["txns_per_day"])
            self._origin = self.today - timedelta(days=self._config["history_days"])

    def reset(self):
        """Back to a new server's state: clock, configuration, tokens, agreements,
        requisitions, quotas, faults, stats."""
        self._reset_state()

    def now(self):
        """The simulated current time (aware UTC)."""
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

    def configure(self, history_days=None, txns_per_day=None, account_success_limit=None,
                  api_requests_per_minute=None, access_ttl=None, refresh_ttl=None):
        """Change data and limit parameters (any subset); returns the configuration."""
        with self._lock:
            self._configure(history_days, txns_per_day, account_success_limit,
                            api_requests_per_minute, access_ttl, refresh_ttl)
            self._extend_origin()
            return self.config()

    @staticmethod
    def _positive_int(value, name, maximum=10 ** 9):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
            raise ValueError(f"{name} must be an integer between 1 and {maximum}")
        return value

    def _configure(self, history_days=None, txns_per_day=None, account_success_limit=None,
                   api_requests_per_minute=None, access_ttl=None, refresh_ttl=None):
        if history_days is not None:
            self._config["history_days"] = self._positive_int(history_days, "history_days",
                                                              3650)
        if txns_per_day is not None:
            if not isinstance(txns_per_day, dict):
                raise ValueError('txns_per_day must be a dict like {"EUR": 3, "GBP": 1}')
            merged = dict(self._config["txns_per_day"])
            for currency, count in txns_per_day.items():
                if currency not in DEFAULT_TXNS_PER_DAY:
                    raise ValueError(f"unknown currency {currency!r}")
                if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 500:
                    raise ValueError("transactions per day must be an integer between 0 and 500")
                merged[currency] = count
            self._config["txns_per_day"] = merged
        for name, value in (("account_success_limit", account_success_limit),
                            ("api_requests_per_minute", api_requests_per_minute),
                            ("access_ttl", access_ttl), ("refresh_ttl", refresh_ttl)):
            if value is not None:
                self._config[name] = self._positive_int(value, name)

    def config(self):
        with self._lock:
            return {**{key: (dict(value) if isinstance(value, dict) else value)
                       for key, value in self._config.items()},
                    "today": self.today.isoformat(), "first_day": self._origin.isoformat()}

    # ------------------------------------------------------------------ faults
    def add_fault(self, kind, *, times=1, skip=0, path=None, consent_id=None, seconds=None):
        """Arm a fault (see README.md); ``consent_id`` is a requisition id."""
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
            count, self._faults = len(self._faults), []
            return count

    def _fault_matches(self, fault, request, route_kind, handler):
        kind = fault["kind"]
        if fault["path"] is None:
            if not request.path.startswith(API + "/"):
                return False
        elif fault["path"] not in request.path:
            return False
        if fault["consent_id"] is not None and fault["consent_id"] != request.consent_id:
            return False
        if kind in ACCOUNT_DATA_KINDS and route_kind != "data":
            return False
        if kind in MODIFIER_KINDS and handler != "_account_transactions":
            return False
        if kind == "requisition_expired" and handler not in (
                "_requisition_get", "_account_details", "_account_balances",
                "_account_transactions", "_account_metadata"):
            return False
        if kind == "invalid_token" and route_kind == "token":
            return False
        return True

    def _take_faults(self, request, route_kind, handler):
        """The faults hitting this request: modifiers are all collected, the first replacing
        fault wins."""
        taken = []
        with self._lock:
            for fault in self._faults:
                if fault["remaining"] == 0:
                    continue
                if not self._fault_matches(fault, request, route_kind, handler):
                    continue
                if fault["skip_left"] > 0:
                    fault["skip_left"] -= 1
                    continue
                if fault["remaining"] is not None:
                    fault["remaining"] -= 1
                fault["hits"] += 1
                self._faults_triggered += 1
                taken.append(dict(fault))
                if fault["kind"] not in MODIFIER_KINDS + ("requisition_expired",):
                    break
        return taken

    def _apply_fault(self, fault, request):
        """A Response, ``_NO_ANSWER``, or None (answer normally)."""
        kind, seconds = fault["kind"], fault["seconds"]
        if kind == "delay":
            self._stopping.wait(1.0 if seconds is None else seconds)
            return _NO_ANSWER if self._stopping.is_set() else None
        if kind == "timeout":
            self._stopping.wait(DEFAULT_TIMEOUT_FAULT_SECONDS if seconds is None else seconds)
            return _NO_ANSWER
        if kind == "http_500":
            raise _error_unknown_request()
        if kind == "http_503":
            headers = {"Retry-After": str(int(-(-seconds // 1)))} if seconds is not None else {}
            error = _error_service()
            error.headers.update(headers)
            raise error
        if kind == "rate_limit":
            wait = int(-(-(DEFAULT_RATE_LIMIT_FAULT_SECONDS if seconds is None else seconds) // 1))
            raise _error_account_limit(self._config["account_success_limit"], wait)
        if kind == "malformed_json":
            return Response(200, b'{"transactions": {"booked": [{"transactionId": "',
                            "application/json")
        if kind == "invalid_token":
            raise _error_invalid_token()
        if kind == "consent_expired":
            with self._lock:
                agreement = self._agreement_of_account(request.account_id)
            if agreement is None:
                raise _error_access_expired()
            raise _error_eua_expired(agreement, self.now() - timedelta(minutes=1))
        if kind == "access_expired":
            raise _error_access_expired()
        if kind == "account_inactive":
            raise _error_account_inactive()
        if kind == "account_suspended":
            raise _error_suspended()
        if kind == "account_processing":
            raise _error_processing(request.account_id)
        if kind == "access_denied":
            raise _error_access_denied("transactions")
        if kind == "user_must_be_present":
            # GoCardless has no "user present" signal: the closest answer is the bank's own
            # unattended-access cap (PSD2: 4 a day without the user), RateLimitError.
            raise _error_institution_limit()
        raise AssertionError(kind)  # pragma: no cover

    # ------------------------------------------------------------------ admin helpers
    def stats(self):
        """Requests per ``METHOD /path/template`` (``/_sim`` and pages not counted)."""
        with self._lock:
            return {"requests": dict(self._stats), "total": sum(self._stats.values()),
                    "faults_triggered": self._faults_triggered}

    def requisitions(self):
        with self._lock:
            return [self._requisition_view(req) for req in self._requisitions.values()]

    def agreements(self):
        with self._lock:
            return [self._agreement_view(agr) for agr in self._agreements.values()]

    def linked_accounts(self, requisition_id=None):
        """``[{"id", "requisition_id", "iban", "currency", "status"}]`` of linked accounts."""
        with self._lock:
            return [{"id": acc["id"], "requisition_id": acc["requisition_id"],
                     "iban": data.find_account(acc["key"])["iban"],
                     "currency": data.find_account(acc["key"])["currency"],
                     "status": self._account_status(acc)}
                    for acc in self._accounts.values()
                    if requisition_id in (None, acc["requisition_id"])]

    def expire_requisition(self, requisition_id):
        """End the requisition's End-User Agreement now (status EX, data calls 401)."""
        with self._lock:
            requisition = self._requisitions[requisition_id]
            agreement = self._agreements[requisition["agreement"]]
            if agreement["accepted"] is None:
                agreement["accepted"] = self.now()
            agreement["accepted"] = min(agreement["accepted"], self.now() - timedelta(
                days=agreement["access_valid_for_days"], seconds=1))

    def revoke_at_bank(self, requisition_id):
        """The user revoked the access at the bank: data calls answer AccessExpiredError."""
        with self._lock:
            self._requisitions[requisition_id]["revoked"] = True

    def suspend_account(self, account_id):
        with self._lock:
            self._accounts[account_id]["suspended"] = True

    def quota_remaining(self, account_id, scope):
        with self._lock:
            return self._config["account_success_limit"] - len(
                self._live_quota(account_id, scope))

    def _account_key(self, account):
        """Account spec key from a linked account id, an IBAN or a key."""
        with self._lock:
            linked = self._accounts.get(account)
        spec = data.find_account(linked["key"] if linked else account)
        if spec is None:
            raise KeyError(f"unknown account {account!r}")
        return spec

    def expected_booked(self, account, date_from, date_to):
        """The booked transactions (API dicts) held for ``account`` (linked account id or IBAN)
        with a booking date in [date_from, date_to], ordered like the API (newest first)."""
        spec = self._account_key(account)
        return self._booked(spec, _as_day(date_from), _as_day(date_to))

    def expected_pending(self, account):
        spec = self._account_key(account)
        return self._pending(spec)

    def expected_balances(self, account):
        """``{"closingBooked": Decimal, "interimAvailable": Decimal}`` today."""
        spec = self._account_key(account)
        booked = self._balance_before(spec, self.today + timedelta(days=1))
        pending = sum((Decimal(item["transactionAmount"]["amount"])
                       for item in self._pending(spec)), Decimal("0.00"))
        return {"closingBooked": booked, "interimAvailable": booked + pending}

    # ------------------------------------------------------------------ data
    def _count(self, spec):
        with self._lock:
            return data.daily_count(spec, self._config["txns_per_day"])

    def _balance_before(self, spec, day):
        """Booked balance at the start of ``day``."""
        with self._lock:
            origin, today = self._origin, self.today
        count = self._count(spec)
        balance = spec["opening_balance"]
        current = origin
        while current < day and current <= today:
            balance += data.day_total(spec["key"], current, count)
            current += timedelta(days=1)
        return balance

    def _booked(self, spec, date_from, date_to):
        with self._lock:
            start, end = max(date_from, self._origin), min(date_to, self.today)
        count = self._count(spec)
        balance = self._balance_before(spec, start)
        days = []
        current = start
        while current <= end:
            items = []
            for txn in data.transactions_booking_on(spec["key"], current, count):
                balance += txn.amount
                items.append(txn.as_booked(balance))
            days.append(items)
            current += timedelta(days=1)
        result = []
        for items in reversed(days):  # newest first: the last entry carries the closing balance
            result.extend(reversed(items))
        return result

    def _pending(self, spec):
        tomorrow = self.today + timedelta(days=1)
        return [txn.as_pending() for txn in data.transactions_booking_on(
            spec["key"], tomorrow, self._count(spec))]

    # ------------------------------------------------------------------ dispatch
    def handle(self, request):
        route, params, allowed = self._match(request)
        if route is None:
            if allowed:
                return self._error_response(ApiError(405, _body(
                    "Method not allowed", f'Method "{request.method}" not allowed.', 405),
                    {"Allow": ", ".join(sorted(allowed))}))
            return self._error_response(_error_not_found())
        template, handler, route_kind = route
        if route_kind in ("api", "data", "token"):
            with self._lock:
                self._stats[f"{request.method} {template}"] += 1
        with self._lock:
            if "account_id" in params:
                request.account_id = params["account_id"]
                account = self._accounts.get(params["account_id"])
                request.consent_id = account["requisition_id"] if account else None
            elif "requisition_id" in params:
                request.consent_id = params["requisition_id"]
        headers = {}
        try:
            if route_kind in ("api", "data", "token"):
                headers.update(self._general_limit())
                for fault in self._take_faults(request, route_kind, handler):
                    if fault["kind"] in MODIFIER_KINDS + ("requisition_expired",):
                        request.modifiers.add(fault["kind"])
                        if fault["kind"] == "requisition_expired" and route_kind == "data":
                            raise self._expired_error(request.account_id)
                        continue
                    outcome = self._apply_fault(fault, request)
                    if outcome is not None:
                        return outcome
            response = getattr(self, handler)(request, **params)
            if route_kind == "data":
                self._note_result(request.account_id, ok=True)
        except ApiError as error:
            if route_kind == "data":
                self._note_result(request.account_id, ok=not error.failure)
            error.headers = {**headers, **error.headers}
            return self._error_response(error)
        except Exception:  # pragma: no cover - a bug of the simulator itself
            _logger.exception("gocardless simulator: %s %s failed", request.method, request.path)
            return self._error_response(ApiError(500, _body("Server error", "unexpected error",
                                                            500)))
        response.headers = {**headers, **response.headers}
        return response

    def _expired_error(self, account_id):
        with self._lock:
            agreement = self._agreement_of_account(account_id)
        if agreement is None:
            return _error_access_expired()
        return _error_eua_expired(agreement, self.now() - timedelta(seconds=1))

    @staticmethod
    def _match(request):
        allowed = set()
        for method, pattern, template, handler, kind in ROUTES:
            match = pattern.match(request.path)
            if match:
                if method == request.method:
                    return (template, handler, kind), match.groupdict(), allowed
                allowed.add(method)
        return None, {}, allowed

    @staticmethod
    def _error_response(error):
        return Response.json(error.status, error.body, error.headers)

    def _general_limit(self):
        """✅ X-RateLimit-Limit/Remaining/Reset of the general API limit (❓ numbers)."""
        with self._lock:
            now = self.now()
            start, count = self._api_window
            if start is None or now - start >= timedelta(minutes=1):
                start, count = now, 0
            limit = self._config["api_requests_per_minute"]
            reset = max(1, int(60 - (now - start).total_seconds()))
            if count >= limit:
                self._api_window = [start, count]
                raise ApiError(429, _body(
                    "Rate limit exceeded",
                    f"The rate limit for this resource is {limit}/minute. Please try again in "
                    f"{reset} seconds", 429), {"X-RateLimit-Limit": str(limit),
                                               "X-RateLimit-Remaining": "0",
                                               "X-RateLimit-Reset": str(reset)})
            self._api_window = [start, count + 1]
            return {"X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": str(limit - count - 1),
                    "X-RateLimit-Reset": str(reset)}

    def _note_result(self, account_id, ok):
        """Consecutive failed accesses suspend an account (✅ after 10)."""
        with self._lock:
            account = self._accounts.get(account_id)
            if account is None:
                return
            if ok:
                account["failures"] = 0
                return
            account["failures"] += 1
            if account["failures"] >= SUSPEND_AFTER_FAILURES:
                account["suspended"] = True

    # ------------------------------------------------------------------ tokens
    def _jwt(self, kind, ttl):
        now = self.now()
        jti = secrets.token_hex(16)
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({"token_type": kind, "exp": int(now.timestamp()) + ttl,
                                      "jti": jti, "id": 1}).encode())
        signature = _b64url(hmac.new(self._jwt_key, f"{header}.{payload}".encode(),
                                     hashlib.sha256).digest())
        self._tokens[jti] = {"kind": kind, "expires_at": now + timedelta(seconds=ttl)}
        return f"{header}.{payload}.{signature}"

    def _check_jwt(self, token, kind):
        """True if ``token`` is a live token of ``kind`` issued here."""
        parts = (token or "").split(".")
        if len(parts) != 3:
            return False
        expected = _b64url(hmac.new(self._jwt_key, f"{parts[0]}.{parts[1]}".encode(),
                                    hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return False
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return False
        with self._lock:
            entry = self._tokens.get(payload.get("jti"))
            return bool(entry and entry["kind"] == kind and self.now() < entry["expires_at"])

    def _authenticate(self, request):
        token = request.bearer()
        if not token:
            raise _error_not_authenticated()
        if not self._check_jwt(token, "access"):
            raise _error_invalid_token()

    def _token_new(self, request):
        body = request.json()
        for field in ("secret_id", "secret_key"):
            if not isinstance(body.get(field), str) or not body.get(field):
                raise field_error(field, "This field is required.")
        if not (hmac.compare_digest(body["secret_id"].encode(), self.secret_id.encode())
                and hmac.compare_digest(body["secret_key"].encode(), self._secret_key.encode())):
            raise _error_auth_failed()
        with self._lock:
            access_ttl, refresh_ttl = self._config["access_ttl"], self._config["refresh_ttl"]
            return Response.json(200, {
                "access": self._jwt("access", access_ttl), "access_expires": access_ttl,
                "refresh": self._jwt("refresh", refresh_ttl), "refresh_expires": refresh_ttl})

    def _token_refresh(self, request):
        body = request.json()
        if not isinstance(body.get("refresh"), str) or not body.get("refresh"):
            raise field_error("refresh", "This field is required.")
        if not self._check_jwt(body["refresh"], "refresh"):
            raise _error_invalid_token()
        with self._lock:
            access_ttl = self._config["access_ttl"]
            return Response.json(200, {"access": self._jwt("access", access_ttl),
                                       "access_expires": access_ttl})

    # ------------------------------------------------------------------ institutions
    def _institution_view(self, institution):
        return {**institution, "countries": list(institution["countries"]),
                "logo": f"{self.url}/static/logos/{institution['id']}.svg"}

    def _institutions(self, request):
        self._authenticate(request)
        country = (request.query.get("country") or "").upper()
        return Response.json(200, [self._institution_view(inst) for inst in data.INSTITUTIONS
                                   if not country or country in inst["countries"]])

    def _institution(self, request, institution_id):
        self._authenticate(request)
        institution = data.find_institution(institution_id)
        if institution is None:
            raise _error_not_found()
        return Response.json(200, self._institution_view(institution))

    # ------------------------------------------------------------------ agreements
    def _next_id(self, kind):
        with self._lock:
            self._seq += 1
            return data.uuid_from("gocardless-sim", kind, self._seq, id(self))

    @staticmethod
    def _agreement_view(agreement):
        return {"id": agreement["id"], "created": _iso(agreement["created"]),
                "institution_id": agreement["institution_id"],
                "max_historical_days": agreement["max_historical_days"],
                "access_valid_for_days": agreement["access_valid_for_days"],
                "access_scope": list(agreement["access_scope"]),
                "accepted": _iso(agreement["accepted"]) if agreement["accepted"] else None,
                "reconfirmation": agreement["reconfirmation"]}

    @staticmethod
    def _int_field(body, field, default, maximum):
        value = body.get(field, default)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise field_error(field, "A valid integer is required.")
        if value < 1 or value > maximum:
            raise field_error(field, f"Incorrect {field}",
                              f"{field} must be > 0 and <= {maximum}")
        return value

    def _create_agreement(self, institution, body):
        max_days = self._int_field(body, "max_historical_days", DEFAULT_EUA_DAYS,
                                   int(institution["transaction_total_days"]))
        valid_days = self._int_field(body, "access_valid_for_days", DEFAULT_EUA_DAYS,
                                     int(institution["max_access_valid_for_days"]))
        scope = body.get("access_scope", list(ACCESS_SCOPES))
        if not isinstance(scope, list) or not scope or any(s not in ACCESS_SCOPES
                                                           for s in scope):
            raise field_error("access_scope", "Unknown value in access_scope",
                              f"Choose from {', '.join(ACCESS_SCOPES)}")
        agreement = {"id": self._next_id("agreement"), "created": self.now(),
                     "institution_id": institution["id"], "max_historical_days": max_days,
                     "access_valid_for_days": valid_days, "access_scope": list(scope),
                     "accepted": None, "reconfirmation": bool(body.get("reconfirmation"))}
        with self._lock:
            self._agreements[agreement["id"]] = agreement
        return agreement

    def _agreement_create(self, request):
        self._authenticate(request)
        body = request.json()
        institution = data.find_institution(body.get("institution_id"))
        if institution is None:
            raise field_error("institution_id", "Unknown Institution ID",
                              f"Get Institution IDs from {API}/institutions/?country=XX")
        agreement = self._create_agreement(institution, body)
        return Response.json(201, self._agreement_view(agreement))

    def _paged(self, request, items, path):
        try:
            limit = int(request.query.get("limit") or LIST_LIMIT)
            offset = int(request.query.get("offset") or 0)
        except ValueError:
            raise field_error("limit", "A valid integer is required.") from None
        if limit < 1 or offset < 0:
            raise field_error("limit", "Invalid pagination")
        page = items[offset:offset + limit]

        def link(new_offset):
            return f"{self.url}{path}?{urlencode({'limit': limit, 'offset': new_offset})}"

        return {"count": len(items),
                "next": link(offset + limit) if offset + limit < len(items) else None,
                "previous": link(max(0, offset - limit)) if offset > 0 else None,
                "results": page}

    def _agreement_list(self, request):
        self._authenticate(request)
        with self._lock:
            items = [self._agreement_view(a) for a in self._agreements.values()]
        return Response.json(200, self._paged(request, items, f"{API}/agreements/enduser/"))

    def _agreement_get(self, request, agreement_id):
        self._authenticate(request)
        with self._lock:
            agreement = self._agreements.get(agreement_id)
            if agreement is None:
                raise _error_not_found()
            return Response.json(200, self._agreement_view(agreement))

    def _agreement_delete(self, request, agreement_id):
        self._authenticate(request)
        with self._lock:
            if self._agreements.pop(agreement_id, None) is None:
                raise _error_not_found()
        return Response.json(200, {"summary": "End User Agreement deleted",
                                   "detail": f"End User Agreement {agreement_id} deleted"})

    def _agreement_of_account(self, account_id):
        """The agreement behind a linked account (lock held), or None."""
        account = self._accounts.get(account_id)
        if account is None:
            return None
        requisition = self._requisitions.get(account["requisition_id"])
        return self._agreements.get(requisition["agreement"]) if requisition else None

    def _eua_end(self, agreement):
        if agreement is None or agreement["accepted"] is None:
            return None
        return agreement["accepted"] + timedelta(days=agreement["access_valid_for_days"])

    # ------------------------------------------------------------------ requisitions
    def _requisition_status(self, requisition, modifiers=()):
        status = requisition["status"]
        if status == "LN":
            end = self._eua_end(self._agreements.get(requisition["agreement"]))
            if requisition["revoked"] or "requisition_expired" in modifiers or (
                    end is not None and self.now() >= end):
                return "EX"
        return status

    def _requisition_view(self, requisition, modifiers=()):
        return {"id": requisition["id"], "created": _iso(requisition["created"]),
                "redirect": requisition["redirect"],
                "status": self._requisition_status(requisition, modifiers),
                "institution_id": requisition["institution_id"],
                "agreement": requisition["agreement"], "reference": requisition["reference"],
                "accounts": list(requisition["accounts"]),
                "user_language": requisition["user_language"], "link": requisition["link"],
                "ssn": None, "account_selection": False, "redirect_immediate": False}

    def _requisition_create(self, request):
        self._authenticate(request)
        body = request.json()
        redirect = body.get("redirect")
        parts = urlsplit(redirect) if isinstance(redirect, str) else None
        if not parts or parts.scheme not in ("http", "https") or not parts.netloc:
            raise field_error("redirect", "Enter a valid URL.")
        institution = data.find_institution(body.get("institution_id"))
        if institution is None:
            raise field_error("institution_id", "Unknown Institution ID")
        reference = body.get("reference")
        if not isinstance(reference, str) or not reference:
            raise field_error("reference", "This field is required.")
        language = body.get("user_language") or "EN"
        if not isinstance(language, str) or not re.fullmatch(r"[A-Za-z]{2}", language):
            raise field_error("user_language", "Incorrect user_language",
                              "user_language must be an ISO 639-1 code")
        with self._lock:
            if any(req["reference"] == reference for req in self._requisitions.values()):
                # ❓ wording
                raise field_error("reference", "Client reference must be unique",
                                  f"Client reference '{reference}' already exists")
            agreement_id = body.get("agreement")
            if agreement_id:
                agreement = self._agreements.get(agreement_id)
                if agreement is None:
                    raise field_error("agreement", "Unknown End User Agreement")
                if agreement["institution_id"] != institution["id"]:
                    raise field_error("agreement", "Incorrect Institution ID",
                                      "Provided Institution ID does not match the one in the "
                                      "End User Agreement")
                if any(req["agreement"] == agreement_id for req in self._requisitions.values()):
                    raise field_error("agreement", "This agreement is already used")
            else:  # ✅ without an agreement a default 90/90 EUA is made
                agreement = self._create_agreement(institution, {})
            requisition_id = self._next_id("requisition")
            requisition = {
                "id": requisition_id, "created": self.now(), "redirect": redirect,
                "status": "CR", "institution_id": institution["id"],
                "agreement": agreement["id"], "reference": reference, "accounts": [],
                "user_language": language.upper(), "revoked": False,
                "link": f"{self.url}/ob-psd2/start/{requisition_id}/{institution['id']}"}
            self._requisitions[requisition_id] = requisition
            return Response.json(201, self._requisition_view(requisition))

    def _requisition_list(self, request):
        self._authenticate(request)
        with self._lock:
            items = [self._requisition_view(r) for r in self._requisitions.values()]
        return Response.json(200, self._paged(request, items, f"{API}/requisitions/"))

    def _requisition_get(self, request, requisition_id):
        self._authenticate(request)
        with self._lock:
            requisition = self._requisitions.get(requisition_id)
            if requisition is None:
                raise _error_not_found()
            return Response.json(200, self._requisition_view(requisition, request.modifiers))

    def _requisition_delete(self, request, requisition_id):
        self._authenticate(request)
        with self._lock:
            requisition = self._requisitions.pop(requisition_id, None)
            if requisition is None:
                raise _error_not_found()
            for account_id in requisition["accounts"]:
                self._accounts.pop(account_id, None)
            self._agreements.pop(requisition["agreement"], None)
        return Response.json(200, {  # ❓ wording
            "summary": "Requisition deleted",
            "detail": f"Requisition {requisition_id} deleted with all its End User Agreements"})

    # ------------------------------------------------------------------ accounts
    def _account_status(self, account):
        if account["suspended"]:
            return "SUSPENDED"
        requisition = self._requisitions.get(account["requisition_id"])
        if requisition is None or self._requisition_status(requisition) == "EX":
            return "EXPIRED"
        return "READY"

    def _linked(self, account_id):
        account = self._accounts.get(account_id)
        if account is None:
            raise _error_not_found()
        return account

    def _account_metadata(self, request, account_id):
        self._authenticate(request)
        with self._lock:
            account = self._linked(account_id)
            spec = data.find_account(account["key"])
            status = self._account_status(account)
            if "requisition_expired" in request.modifiers:
                status = "EXPIRED"
            payload = {"id": account["id"], "created": _iso(account["created"]),
                       "last_accessed": _iso(account["last_accessed"])
                       if account["last_accessed"] else None,
                       "iban": spec["iban"], "institution_id": account["institution_id"],
                       "status": status, "owner_name": spec["owner_name"]}
        if spec["bban"]:
            payload["bban"] = spec["bban"]
        return Response.json(200, payload)

    def _live_quota(self, account_id, scope):
        """Success times of the rolling 24 h window (lock held); prunes older ones."""
        now = self.now()
        times = [t for t in self._quota.get((account_id, scope), []) if now - t < ACCOUNT_WINDOW]
        self._quota[(account_id, scope)] = times
        return times

    def _data_access(self, request, account_id, scope):
        """The checks of every data call, in order; returns (account spec, agreement copy)."""
        self._authenticate(request)
        with self._lock:
            account = self._linked(account_id)
            if account["suspended"]:
                raise _error_suspended()
            requisition = self._requisitions[account["requisition_id"]]
            agreement = self._agreements[requisition["agreement"]]
            if requisition["revoked"]:
                raise _error_access_expired()
            end = self._eua_end(agreement)
            if end is not None and self.now() >= end:
                raise _error_eua_expired(agreement, end)
            if scope not in agreement["access_scope"]:
                raise _error_access_denied(scope)
            limit = self._config["account_success_limit"]
            times = self._live_quota(account_id, scope)
            if len(times) >= limit:
                reset = int(-(-(times[0] + ACCOUNT_WINDOW - self.now()).total_seconds() // 1))
                raise _error_account_limit(limit, max(1, reset))
            return data.find_account(account["key"]), dict(agreement)

    def _consume(self, account_id, scope):
        """Count one successful call; the quota headers of the answer."""
        with self._lock:
            now = self.now()
            times = self._live_quota(account_id, scope)
            times.append(now)
            self._accounts[account_id]["last_accessed"] = now
            limit = self._config["account_success_limit"]
            reset = int(-(-(times[0] + ACCOUNT_WINDOW - now).total_seconds() // 1))
            return {"X-RateLimit-Account-Success-Limit": str(limit),
                    "X-RateLimit-Account-Success-Remaining": str(max(0, limit - len(times))),
                    "X-RateLimit-Account-Success-Reset": str(reset)}

    def _account_details(self, request, account_id):
        spec, _agreement = self._data_access(request, account_id, "details")
        account = {"resourceId": data.uuid_from("resource", spec["key"]), "iban": spec["iban"],
                   "currency": spec["currency"], "ownerName": spec["owner_name"],
                   "name": spec["name"], "product": spec["product"],
                   "cashAccountType": spec["cash_account_type"], "status": "enabled",
                   "usage": "ORGA"}
        if spec["bban"]:
            account["bban"] = spec["bban"]
        return Response.json(200, {"account": account}, self._consume(account_id, "details"))

    def _account_balances(self, request, account_id):
        spec, _agreement = self._data_access(request, account_id, "balances")
        balances = self.expected_balances(spec["key"])
        today = self.today.isoformat()
        payload = {"balances": [
            {"balanceAmount": {"amount": data.money(balances["closingBooked"]),
                               "currency": spec["currency"]},
             "balanceType": "closingBooked", "referenceDate": today},
            {"balanceAmount": {"amount": data.money(balances["interimAvailable"]),
                               "currency": spec["currency"]},
             "balanceType": "interimAvailable", "creditLimitIncluded": False,
             "referenceDate": today},
        ]}
        return Response.json(200, payload, self._consume(account_id, "balances"))

    @staticmethod
    def _parse_day(request, field):
        value = request.query.get(field)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise field_error(field, "Invalid date format",
                              f"'{value}' is not a valid date. Use the format YYYY-MM-DD.") \
                from None

    def _account_transactions(self, request, account_id):
        spec, agreement = self._data_access(request, account_id, "transactions")
        today = self.today
        earliest = today - timedelta(days=agreement["max_historical_days"])
        date_from = self._parse_day(request, "date_from") or earliest
        date_to = self._parse_day(request, "date_to") or today
        if date_from > date_to:
            raise field_error("date_from", "Incorrect date range",
                              f"Starting date '{date_from}' is greater than end date "
                              f"'{date_to}'. When specifying a date range, the starting date "
                              "must precede the end date.")
        if date_from < earliest:
            if OUT_OF_RANGE_POLICY == "reject":
                raise field_error("date_from", "Date too far in the past",
                                  f"date_from must not be earlier than {earliest} "
                                  f"(max_historical_days {agreement['max_historical_days']})")
            date_from = earliest
        booked = self._booked(spec, date_from, date_to)
        pending = self._pending(spec) if date_from <= today <= date_to else []
        if request.modifiers:
            with self._lock:
                self._call_seq += 1
                call = self._call_seq
            booked = [self._modify(item, request.modifiers, call) for item in booked]
            pending = [self._modify(item, request.modifiers, call) for item in pending]
        payload = {"transactions": {"booked": booked, "pending": pending},
                   "last_updated": _iso(self.now())}  # ⚠️ seen in one third-party source
        return Response.json(200, payload, self._consume(account_id, "transactions"))

    @staticmethod
    def _modify(item, modifiers, call):
        """Ids as some real banks serve them (lessons.md): new on every call, or repeated."""
        item = dict(item)
        if "changing_ids" in modifiers:
            item.pop("entryReference", None)
            if "transactionId" in item:
                item["transactionId"] = f"{item['transactionId']}.{call}"
        if "repeated_ids" in modifiers:
            day = (item.get("bookingDate") or item.get("valueDate") or "").replace("-", "")
            item.pop("internalTransactionId", None)
            if "entryReference" in item:
                item["entryReference"] = day
            if "transactionId" in item:
                item["transactionId"] = day
        return item

    # ------------------------------------------------------------------ hosted bank page
    def _root(self, request):
        return Response.json(200, {"name": "GoCardless Bank Account Data simulator",
                                   "api": API, "today": self.today.isoformat()})

    def _logo(self, request, institution_id):
        return Response(200, LOGO_SVG.encode(), "image/svg+xml")

    @staticmethod
    def _page(title, body, status=200, lang="en"):
        return Response.html(status, (
            f'<!DOCTYPE html>\n<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<style>body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}"
            "button{font-size:1em;padding:.5em 1.2em;margin-right:.5em}</style></head>"
            f"<body>{body}</body></html>\n"))

    def _error_page(self, code, message, status=400):
        return self._page("Bank Account Data – Error",
                          f"<h1>{html.escape(code)}</h1><p>{html.escape(message)}</p>", status)

    def _link_page(self, request, requisition_id, institution_id):
        with self._lock:
            requisition = self._requisitions.get(requisition_id)
            if requisition is None or requisition["institution_id"] != institution_id:
                return self._error_page("NotFound", "Unknown requisition.", 404)
            if requisition["status"] not in ("CR", "GC", "UA"):
                return self._error_page(
                    "RequisitionLinkReused",
                    "This link has already been used for authorization and is no longer valid.")
            requisition["status"] = "UA"
            agreement = self._agreements[requisition["agreement"]]
            language = requisition["user_language"].lower()
        institution = data.find_institution(institution_id)
        accounts = "".join(
            f"<li>{html.escape(spec['name'])} – {html.escape(spec['iban'][:4])} **** "
            f"{html.escape(spec['iban'][-4:])} ({html.escape(spec['currency'])})</li>"
            for spec in data.ACCOUNTS[institution_id])
        body = (f'<h1><img src="/static/logos/{html.escape(institution_id)}.svg" alt="" '
                f'width="32" height="32"> {html.escape(institution["name"])}</h1>'
                "<p>GoCardless Bank Account Data asks, for the application that sent you here, "
                f"to read {html.escape(', '.join(agreement['access_scope']))} of these accounts "
                f"({agreement['max_historical_days']} days of history) for "
                f"{agreement['access_valid_for_days']} days:</p><ul>{accounts}</ul>"
                '<form method="post" action="/ob-psd2/decision/">'
                f'<input type="hidden" name="requisition_id" value="{html.escape(requisition_id)}">'
                '<button type="submit" name="decision" value="approve">Allow access</button>'
                '<button type="submit" name="decision" value="cancel">Cancel</button></form>')
        return self._page(f"{institution['name']} – Consent", body, lang=language)

    def _link_decision(self, request):
        form = request.form()
        decision = form.get("decision")
        with self._lock:
            requisition = self._requisitions.get(form.get("requisition_id") or "")
            if requisition is None:
                return self._error_page("NotFound", "Unknown requisition.", 404)
            if requisition["status"] != "UA":
                return self._error_page(
                    "RequisitionLinkReused",
                    "This link has already been used for authorization and is no longer valid.")
            if decision == "approve":
                now = self.now()
                requisition["status"] = "LN"
                self._agreements[requisition["agreement"]]["accepted"] = now
                for spec in data.ACCOUNTS[requisition["institution_id"]]:
                    account_id = data.uuid_from("account", requisition["id"], spec["key"])
                    self._accounts[account_id] = {
                        "id": account_id, "key": spec["key"],
                        "requisition_id": requisition["id"],
                        "institution_id": requisition["institution_id"], "created": now,
                        "last_accessed": None, "suspended": False, "failures": 0}
                    requisition["accounts"].append(account_id)
                answer = {"ref": requisition["reference"]}
            elif decision == "cancel":
                requisition["status"] = CANCELLED_REQUISITION_STATUS
                answer = {"ref": requisition["reference"], "error": CANCEL_ERROR,
                          "details": CANCEL_DETAILS}
            else:
                return self._error_page("InvalidRequest", "decision must be approve or cancel.")
            redirect = requisition["redirect"]
        separator = "&" if urlsplit(redirect).query else ("" if redirect.endswith("?") else "?")
        return Response(302, b"", None, {"Location": redirect + separator + urlencode(answer),
                                         "Cache-Control": "no-store"})

    # ------------------------------------------------------------------ HTTP admin
    @staticmethod
    def _admin(call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise ApiError(400, _body("Invalid request", str(exc), 400)) from None

    def _sim_faults_list(self, request):
        return Response.json(200, {"faults": self.faults()})

    def _sim_faults_add(self, request):
        body = request.json()
        options = {key: body[key] for key in ("times", "skip", "path", "consent_id", "seconds")
                   if key in body}
        return Response.json(201, {"fault": self._admin(self.add_fault, body.get("kind"),
                                                        **options)})

    def _sim_faults_clear(self, request):
        self.clear_faults()
        return Response(204)

    def _sim_clock_get(self, request):
        return Response.json(200, {"today": self.today.isoformat(), "now": _iso(self.now())})

    def _sim_clock_set(self, request):
        body = request.json()
        if "today" in body:
            self._admin(self.set_today, body["today"])
        elif isinstance(body.get("advance_days"), int):
            self.advance_days(body["advance_days"])
        else:
            raise ApiError(400, _body("Invalid request", "give today or advance_days", 400))
        return self._sim_clock_get(request)

    def _sim_config_set(self, request):
        return Response.json(200, {"config": self._admin(self.configure, **request.json())})

    def _sim_reset(self, request):
        self.reset()
        return Response(204)

    def _sim_stats(self, request):
        return Response.json(200, self.stats())


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
    """Play the user's browser on the requisition ``link``: open the bank's page, press
    "Allow access" (``approve``) or "Cancel" (``cancel``), return the query parameters of the
    redirect to the application (``{"ref": ...}``, plus ``error``/``details`` on cancel).
    Raises ``RuntimeError`` if the page does not answer as documented."""
    parts = urlsplit(consent_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError("simulate_user only talks to a local simulator")

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
        raise RuntimeError(f"the bank page answered HTTP {status}: {page[:200]!r}")
    form = _FormParser()
    form.feed(page.decode("utf-8"))
    if decision not in form.decisions or not form.action:
        raise RuntimeError("the bank page has no such decision button")
    status, headers, _ = call("POST", urljoin(parts.path, form.action),
                              urlencode({**form.fields, "decision": decision}),
                              {"Content-Type": "application/x-www-form-urlencoded"})
    location = headers.get("Location")
    if status != 302 or not location:
        raise RuntimeError(f"the bank decision answered HTTP {status}")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


__all__ = ["GoCardlessServer", "simulate_user", "FAULT_KINDS", "DEFAULT_SECRET_ID",
           "DEFAULT_SECRET_KEY"]
