"""Salt Edge Account Information API v6, simulated on 127.0.0.1 (see README.md).

Standard library plus ``cryptography`` (to verify the RSA request signatures). One
``SaltEdgeServer`` is one Salt Edge application: its customers, connections, consents, simulated
clock, configuration and fault knobs live in the object, guarded by a lock, and are reachable from
Python (``server.add_fault(...)``, ``server.set_today(...)``) and over HTTP (``/_sim/...``).
"""
import base64
import binascii
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
from decimal import Decimal
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from . import data
from .webhooks import SaltEdgeWebhooks

_logger = logging.getLogger(__name__)

API_PREFIX = "/api/v6"
DEFAULT_APP_ID = "saltedge-sim-app-id"
DEFAULT_SECRET = "saltedge-sim-secret"
DEFAULT_HISTORY_DAYS = 90
DEFAULT_TXNS_PER_DAY = {"EUR": 3, "USD": 1}
DEFAULT_FROM_DAYS = 90          # attempt.from_date when none is given
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 60
DOCUMENTATION_URL = "https://docs.saltedge.com/v6/#errors"
CONNECT_URL_TTL = timedelta(hours=1)
MAX_EXPIRES_AT_AHEAD = 3600     # Expires-at may be at most 1 hour ahead (✅ §3.1)

# ----------------------------------------------------------------------------------------------
# Details of v6 that the reference marks ⚠️/❓ (§3, §9). They all live here, to correct in one go.
# ----------------------------------------------------------------------------------------------
# HTTP status of each error class (❓ per-class statuses are unconfirmed; 406 for
# ConnectionCannotBeRefreshed is what Firefly III's importer expects).
ERROR_STATUS = {
    "AppIdNotProvided": 400, "SecretNotProvided": 400, "MissingExpiresAt": 400,
    "MissingSignature": 400, "ExpiresAtInvalid": 400, "ApiKeyNotFound": 401,
    "SignatureNotMatch": 401, "RequestExpired": 401,
    "WrongRequestFormat": 400, "JsonParseError": 400, "DateOutOfRange": 400,
    "InvalidFromDate": 400, "ReturnURLInvalid": 400, "InvalidAispConsentPeriod": 400,
    "AispConsentScopesInvalid": 400, "FetchScopesInvalid": 400, "ValueOutOfRange": 400,
    "IdentifierInvalid": 400,
    "CustomerNotFound": 404, "ConnectionNotFound": 404, "AccountNotFound": 404,
    "ProviderNotFound": 404, "RouteNotFound": 404,
    "DuplicatedCustomer": 409,
    "ConnectionCannotBeRefreshed": 406, "AispConsentExpired": 406, "AispConsentRevoked": 406,
    "InvalidCredentials": 406, "InteractiveAdapterTimeout": 406,
    "RateLimitExceeded": 429, "TooManyRequests": 429, "BackgroundFetchLimitExceeded": 429,
    "InternalServerError": 500, "ProviderError": 502, "ProviderUnavailable": 503,
    "FetchingTimeout": 504, "ExecutionTimeout": 504,
}
# Query parameters Salt Edge appends to attempt.return_to (⚠️ "when configured").
CALLBACK_CONNECTION_PARAM = "connection_id"
CALLBACK_ERROR_CLASS_PARAM = "error_class"
CALLBACK_ERROR_MESSAGE_PARAM = "error_message"
CANCEL_ERROR_CLASS = "ProviderAccessNotGranted"  # the v5 class for "the customer denied access"
# v6 lists pending transactions with ?pending=true (⚠️); without it only posted ones.
PENDING_PARAM = "pending"
DEFAULT_PER_PAGE = 1000        # ⚠️ v5 default and maximum
MAX_PER_PAGE = 1000
REFRESH_INTERVAL = timedelta(hours=1)   # next_refresh_possible_at after each fetch (❓ value)
BACKGROUND_FETCH_LIMIT = 4              # per connection per 24 h, regulated providers (PSD2 §0)
CONNECT_LIMIT_PER_MINUTE = 10           # connect/reconnect/refresh widgets per minute (❓)
# Whether reading stored data (accounts, transactions) of a connection whose consent expired or
# was revoked answers AispConsentExpired/Revoked (❓: v5 documented them for refreshes only).
CONSENT_GATES_DATA_READS = True
# A background refresh carrying attempt.customer_last_logged_at within this delay counts as
# attended ("user present"; ❓ v5 attempt field): no PSD2 4-a-day cap, no user_must_be_present.
USER_PRESENT_WINDOW = timedelta(minutes=5)

ERROR_FAULTS = {
    "http_500": ("InternalServerError", "An internal error has occurred (simulated)."),
    "consent_expired": ("AispConsentExpired", "The consent has expired."),
    "consent_revoked": ("AispConsentRevoked", "The consent has been revoked."),
    "user_must_be_present": (
        "InteractiveAdapterTimeout",
        "The provider asked for an interactive step the customer did not answer: "
        "refresh the connection while the customer is present."),
    "invalid_credentials": ("InvalidCredentials",
                            "The customer's credentials at the provider are no longer valid."),
    "provider_unavailable": ("ProviderUnavailable", "The provider is temporarily unavailable."),
    "provider_error": ("ProviderError", "There is an error on the provider's side."),
    "fetching_timeout": ("FetchingTimeout", "One of the fetching steps took too long."),
    "execution_timeout": ("ExecutionTimeout", "The whole fetching process took too long."),
    "too_many_requests": ("TooManyRequests",
                          "Too many connect requests from this IP address. Try again in "
                          "{seconds} seconds."),
    "background_fetch_limit": ("BackgroundFetchLimitExceeded",
                               "Background fetch limit (4 times in 24 hours) was exceeded. "
                               "Try again in {seconds} seconds."),
    "connection_cannot_be_refreshed": (
        "ConnectionCannotBeRefreshed",
        "Connection cannot be refreshed right now. Try again in {seconds} seconds."),
    "connection_not_found": ("ConnectionNotFound", "Connection was not found."),
    "wrong_request_format": ("WrongRequestFormat", "The JSON request is incorrectly formed."),
    "date_out_of_range": ("DateOutOfRange",
                          "from_date does not fit in the admissible range."),
}
FAULT_KINDS = ("delay", "timeout", "rate_limit", "malformed_json", "fetching") + tuple(ERROR_FAULTS)

_NO_ANSWER = object()


def _utcnow():
    return datetime.now(timezone.utc)


def _iso(moment):
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _as_day(value):
    return value if isinstance(value, date) and not isinstance(value, datetime) else \
        date.fromisoformat(str(value))


def _ceil(seconds):
    return int(-(-seconds // 1))


def _money(amount):
    return float(Decimal(amount).quantize(data.CENT))


class ApiError(Exception):
    """A Salt Edge error answer ``{"error": {"class", "message", "documentation_url"}}``."""

    def __init__(self, error_class, message, headers=None, status=None):
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.headers = headers or {}
        self.status = status or ERROR_STATUS.get(error_class, 400)


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
        self.target = target
        self.path = parts.path or "/"
        self.query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body
        self._json = None

    def form(self):
        text = self.body.decode("utf-8", "replace")
        return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}

    def json_data(self, required=True):
        """The ``data`` object of a Salt Edge request body."""
        if self._json is None:
            if not self.body:
                payload = {}
            else:
                try:
                    payload = json.loads(self.body)
                except ValueError:
                    raise ApiError("JsonParseError",
                                   "The request body is not valid JSON.") from None
            self._json = payload
        payload = self._json
        if not isinstance(payload, dict) or not isinstance(payload.get("data", {}), dict):
            raise ApiError("WrongRequestFormat", "The request body must be {\"data\": {...}}.")
        if required and "data" not in payload:
            raise ApiError("WrongRequestFormat", "The request body must be {\"data\": {...}}.")
        return payload.get("data") or {}

    def attempt_presence(self):
        """``attempt.customer_last_logged_at`` of the body, if any (never raises)."""
        try:
            payload = json.loads(self.body) if self.body else {}
            value = payload["data"]["attempt"]["customer_last_logged_at"]
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _route(method, pattern, template, handler):
    return method, re.compile(pattern + r"\Z"), template, handler


_ID = r"(?P<item_id>[0-9]+)"
ROUTES = (
    _route("GET", r"/connect", "/connect", "_connect_page"),
    _route("POST", r"/connect/decision", "/connect/decision", "_connect_decision"),
    _route("GET", API_PREFIX + r"/countries", "/countries", "_countries"),
    _route("GET", API_PREFIX + r"/providers", "/providers", "_providers"),
    _route("POST", API_PREFIX + r"/customers", "/customers", "_customer_create"),
    _route("GET", API_PREFIX + r"/customers/" + _ID, "/customers/{id}", "_customer_show"),
    _route("POST", API_PREFIX + r"/connections/connect", "/connections/connect", "_connect"),
    _route("GET", API_PREFIX + r"/connections", "/connections", "_connections_list"),
    _route("GET", API_PREFIX + r"/connections/" + _ID, "/connections/{id}", "_connection_show"),
    _route("DELETE", API_PREFIX + r"/connections/" + _ID, "/connections/{id}",
           "_connection_remove"),
    _route("POST", API_PREFIX + r"/connections/" + _ID + r"/reconnect",
           "/connections/{id}/reconnect", "_reconnect"),
    _route("POST", API_PREFIX + r"/connections/" + _ID + r"/refresh",
           "/connections/{id}/refresh", "_refresh"),
    _route("POST", API_PREFIX + r"/connections/" + _ID + r"/background_refresh",
           "/connections/{id}/background_refresh", "_background_refresh"),
    _route("GET", API_PREFIX + r"/consents", "/consents", "_consents_list"),
    _route("GET", API_PREFIX + r"/accounts", "/accounts", "_accounts"),
    _route("GET", API_PREFIX + r"/transactions", "/transactions", "_transactions"),
    _route("GET", r"/_sim/stats", "/_sim/stats", "_sim_stats"),
    _route("POST", r"/_sim/faults", "/_sim/faults", "_sim_fault_add"),
    _route("DELETE", r"/_sim/faults", "/_sim/faults", "_sim_faults_clear"),
    _route("POST", r"/_sim/clock", "/_sim/clock", "_sim_clock"),
    _route("POST", r"/_sim/config", "/_sim/config", "_sim_config"),
    _route("POST", r"/_sim/reset", "/_sim/reset", "_sim_reset"),
    _route("POST", r"/_sim/webhook", "/_sim/webhook", "_sim_webhook"),
)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SaltEdgeSimulator/1.0"
    sys_version = ""
    timeout = 60

    def setup(self):
        super().setup()
        # Headers and body leave in one write, and without Nagle: otherwise each answer waits
        # for the client's delayed ACK (~40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.bank._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.bank._track(self.connection, False)

    def log_request(self, code="-", size="-"):
        # Method, path and status only: never the query string or the headers (App-id, Secret,
        # Signature).
        self.log_message("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format, *args):  # noqa: A002
        if self.server.bank.verbose:
            _logger.info("saltedge simulator: " + format, *args)

    def _handle(self, method):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 1_000_000:
            self.close_connection = True
            self._write(Response.json(400, {"error": {
                "class": "WrongRequestFormat", "message": "Bad Content-Length.",
                "documentation_url": DOCUMENTATION_URL}, "request": {}}))
            return
        body = self.rfile.read(length) if length else b""
        request = Request(method, self.path, self.headers, body)
        response = self.server.bank.handle(request)
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
            self._headers_buffer.append(b"\r\n")
            payload = b"".join(self._headers_buffer) + response.body
            self._headers_buffer = []
            self.wfile.write(payload)
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


def _load_public_key(public_key):
    if public_key is None:
        return None
    if hasattr(public_key, "verify"):
        return public_key
    if isinstance(public_key, str):
        public_key = public_key.encode()
    return serialization.load_pem_public_key(public_key)


class SaltEdgeServer:
    """A Salt Edge application on ``http://host:port`` (port 0: any free port).

    ``public_key`` (PEM of the application's RSA key) makes every API call need a valid
    ``Expires-at`` + ``Signature``, as for live clients; without it signatures are not checked
    (test/pending clients ⚠️). ``api_url`` is the base URL of the API (``.../api/v6``).
    """

    def __init__(self, host="127.0.0.1", port=0, app_id=DEFAULT_APP_ID, secret=DEFAULT_SECRET,
                 public_key=None, *, require_signature=None, history_days=DEFAULT_HISTORY_DAYS,
                 txns_per_day=None, today=None, verbose=False):
        self.host = host
        self.port = port
        self.app_id = app_id
        self._secret = secret
        self._public_key = _load_public_key(public_key)
        self.webhooks = SaltEdgeWebhooks(self)  # signed callbacks (webhooks.py)
        self.require_signature = (self._public_key is not None if require_signature is None
                                  else bool(require_signature))
        if self.require_signature and self._public_key is None:
            raise ValueError("require_signature needs the application's public key")
        self.verbose = verbose
        self._initial = {"history_days": history_days, "txns_per_day": txns_per_day,
                         "today": today}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections_open = set()
        self._httpd = None
        self._thread = None
        self._reset_state()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        if self._httpd is not None:
            raise RuntimeError("the Salt Edge simulator is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.bank = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name=f"saltedge-sim-{self.port}", daemon=True)
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
            sockets = list(self._connections_open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
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
        return self.url + API_PREFIX

    def _track(self, sock, alive):
        with self._lock:
            (self._connections_open.add if alive else self._connections_open.discard)(sock)

    # ------------------------------------------------------------------ state
    def _reset_state(self):
        with self._lock:
            self._offset = timedelta(0)
            self._config = {"history_days": DEFAULT_HISTORY_DAYS,
                            "txns_per_day": dict(DEFAULT_TXNS_PER_DAY)}
            self._customers = {}
            self._sessions = {}
            self._connections = {}
            self._consents = {}
            self._account_ids = {}      # account id -> (connection id, account key)
            self._seq = Counter()
            self._faults = []
            self._fault_seq = 0
            self._stats = Counter()
            self._connect_times = deque()
            initial = self._initial
            if initial["today"] is not None:
                self._offset = timedelta(days=(_as_day(initial["today"]) - _utcnow().date()).days)
            self._configure(initial["history_days"], initial["txns_per_day"])
            self._origin = self.today - timedelta(days=self._config["history_days"])

    def reset(self):
        """Back to the state of a new server: clock, configuration, data, faults, stats."""
        self._reset_state()

    def now(self):
        with self._lock:
            return _utcnow() + self._offset

    @property
    def today(self):
        return self.now().date()

    def set_today(self, day):
        """Move the simulated clock to ``day`` (a date or ``YYYY-MM-DD``), keeping the time of
        day; returns it."""
        day = _as_day(day)
        with self._lock:
            self._offset = timedelta(days=(day - _utcnow().date()).days)
            self._extend_origin()
            return self.today

    def advance_days(self, days=1):
        """Move the simulated clock ``days`` days forward (negative: back); returns today."""
        with self._lock:
            self._offset += timedelta(days=int(days))
            self._extend_origin()
            return self.today

    def advance_seconds(self, seconds):
        """Move the simulated clock by ``seconds`` (refresh intervals are hours); returns now."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            self._extend_origin()
            return self.now()

    def _extend_origin(self):
        oldest = self.today - timedelta(days=self._config["history_days"])
        if oldest < self._origin:
            self._origin = oldest

    def configure(self, history_days=None, txns_per_day=None):
        """Change the data parameters; returns the configuration."""
        with self._lock:
            self._configure(history_days, txns_per_day)
            self._extend_origin()
            return self.config()

    def _configure(self, history_days=None, txns_per_day=None):
        if history_days is not None:
            if not isinstance(history_days, int) or isinstance(history_days, bool) \
                    or not 1 <= history_days <= 3650:
                raise ValueError("history_days must be an integer between 1 and 3650")
            self._config["history_days"] = history_days
        if txns_per_day is not None:
            if not isinstance(txns_per_day, dict):
                raise ValueError("txns_per_day must be a dict like {'EUR': 3, 'USD': 1}")
            merged = dict(self._config["txns_per_day"])
            for currency, count in txns_per_day.items():
                if currency not in DEFAULT_TXNS_PER_DAY:
                    raise ValueError(f"unknown currency {currency!r}")
                if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
                    raise ValueError("transactions per day must be an integer 0..1000")
                merged[currency] = count
            self._config["txns_per_day"] = merged

    def config(self):
        with self._lock:
            return {"history_days": self._config["history_days"],
                    "txns_per_day": dict(self._config["txns_per_day"]),
                    "today": self.today.isoformat(), "first_day": self._origin.isoformat()}

    def _next_id(self, kind):
        bases = {"customer": 1440000000000000, "connection": 1460000000000000,
                 "consent": 1470000000000000, "account": 1480000000000000,
                 "attempt": 1490000000000000}
        self._seq[kind] += 1
        return str(bases[kind] + self._seq[kind])

    # ------------------------------------------------------------------ faults
    def add_fault(self, kind, *, times=1, skip=0, path=None, consent_id=None, seconds=None):
        """Arm a fault (see README.md). ``consent_id`` restricts it to one connection id."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool)
                                  or times < 1):
            raise ValueError("times must be a positive integer or None")
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise ValueError("skip must be a non-negative integer")
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

    def clear_faults(self):
        with self._lock:
            count = len(self._faults)
            self._faults = []
            return count

    def faults(self):
        with self._lock:
            return [dict(fault) for fault in self._faults]

    @staticmethod
    def _request_connection_id(request, params):
        return params.get("item_id") if "/connections/" in request.path else \
            request.query.get("connection_id")

    def _take_fault(self, request, params, kinds=None):
        with self._lock:
            for fault in self._faults:
                if fault["remaining"] == 0:
                    continue
                if (kinds is None) == (fault["kind"] == "fetching"):
                    continue  # "fetching" is only taken by the connection view
                if kinds is not None and fault["kind"] not in kinds:
                    continue
                if fault["path"] is None:
                    if not request.path.startswith(API_PREFIX + "/"):
                        continue
                elif fault["path"] not in request.path:
                    continue
                if fault["consent_id"] is not None and \
                        fault["consent_id"] != self._request_connection_id(request, params):
                    continue
                if fault["kind"] == "user_must_be_present" and self._present(request):
                    continue
                if fault["skip_left"] > 0:
                    fault["skip_left"] -= 1
                    continue
                if fault["remaining"] is not None:
                    fault["remaining"] -= 1
                fault["hits"] += 1
                return dict(fault)
        return None

    @staticmethod
    def _present(request):
        # The client stamps customer_last_logged_at with its real clock, not the simulated one.
        moment = request.attempt_presence()
        return moment is not None and abs(_utcnow() - moment) <= USER_PRESENT_WINDOW

    def _apply_fault(self, fault):
        kind, seconds = fault["kind"], fault["seconds"]
        if kind == "delay":
            self._stopping.wait(1.0 if seconds is None else seconds)
            return None
        if kind == "timeout":
            self._stopping.wait(DEFAULT_TIMEOUT_FAULT_SECONDS if seconds is None else seconds)
            return _NO_ANSWER
        if kind == "malformed_json":
            return Response(200, b'{"data": [{"id": "1450', "application/json")
        wait = _ceil(DEFAULT_RETRY_AFTER if seconds is None else seconds)
        if kind == "rate_limit":
            raise ApiError("RateLimitExceeded",
                           f"Too many requests are being processed. Try again in {wait} seconds.",
                           {"Retry-After": str(wait)})
        error_class, message = ERROR_FAULTS[kind]
        headers = {"Retry-After": str(wait)} if seconds is not None and \
            ERROR_STATUS.get(error_class) in (429, 503) else {}
        raise ApiError(error_class, message.format(seconds=wait), headers)

    # ------------------------------------------------------------------ introspection
    def stats(self):
        """Requests per ``METHOD /template`` (``/_sim`` calls not counted)."""
        with self._lock:
            return {"requests": dict(self._stats), "total": sum(self._stats.values())}

    def customers(self):
        with self._lock:
            return [dict(customer) for customer in self._customers.values()]

    def connections(self):
        with self._lock:
            return [self._connection_view(conn) for conn in self._connections.values()]

    def consents(self, connection_id=None):
        with self._lock:
            return [self._consent_view(consent) for consent in self._consents.values()
                    if connection_id is None or consent["connection_id"] == connection_id]

    def revoke_consent(self, connection_id):
        """The customer revokes the connection's consent at the bank; False if unknown."""
        with self._lock:
            conn = self._connections.get(str(connection_id))
            if conn is None:
                return False
            consent = self._consents[conn["last_consent_id"]]
            consent["revoked_at"] = self.now()
            return True

    def expected_booked(self, account, date_from, date_to):
        """The posted transactions (API dicts) the bank holds for ``account`` (IBAN, account
        number or a connection's account id) with a posting date in [date_from, date_to]."""
        spec, account_id = self._resolve_account(account)
        date_from, date_to = _as_day(date_from), _as_day(date_to)
        with self._lock:
            start, end = max(date_from, self._origin), min(date_to, self.today)
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        result = []
        day = start
        while day <= end:
            result.extend(txn.as_posted(account_id)
                          for txn in data.transactions_posting_on(spec, day, count))
            day += timedelta(days=1)
        result.sort(key=lambda item: item["id"])
        return result

    def expected_pending(self, account):
        """The pending transactions (API dicts) of ``account`` today."""
        spec, account_id = self._resolve_account(account)
        with self._lock:
            count = self._config["txns_per_day"].get(spec["currency"], 0)
            today = self.today
        return sorted((txn.as_pending(account_id) for txn in
                       data.transactions_posting_on(spec, today + timedelta(days=1), count)),
                      key=lambda item: item["id"])

    def expected_balance(self, account):
        """``(balance, available_amount)`` of ``account`` today, as Decimals."""
        spec, _account_id = self._resolve_account(account)
        with self._lock:
            return self._balances(spec, self.today)

    def _resolve_account(self, account):
        with self._lock:
            entry = self._account_ids.get(str(account))
            if entry is not None:
                return data.find_account(entry[1]), str(account)
            spec = data.find_account(account)
            if spec is None:
                raise KeyError(f"unknown account {account!r}")
            ids = [aid for aid, (_cid, key) in self._account_ids.items() if key == spec["key"]]
            return spec, (max(ids, key=int) if ids else None)

    # ------------------------------------------------------------------ dispatch
    def handle(self, request):
        route, params, allowed = self._match(request)
        if route is None:
            if allowed:
                return self._error_response(request, ApiError(
                    "RouteNotFound", f"{request.method} is not allowed here", status=405))
            return self._error_response(request, ApiError("RouteNotFound",
                                                          "The action does not exist."))
        template, handler = route
        is_api = request.path.startswith(API_PREFIX + "/")
        if not request.path.startswith("/_sim/"):
            with self._lock:
                self._stats[f"{request.method} {template}"] += 1
        try:
            if is_api:
                self._authenticate(request)
                fault = self._take_fault(request, params)
                if fault is not None:
                    outcome = self._apply_fault(fault)
                    if outcome is not None:
                        return outcome
                    if self._stopping.is_set():
                        return _NO_ANSWER
            return getattr(self, handler)(request, **params)
        except ApiError as error:
            return self._error_response(request, error)
        except Exception:  # pragma: no cover - a bug of the simulator itself
            _logger.exception("saltedge simulator: %s %s failed", request.method, request.path)
            return self._error_response(request, ApiError("InternalServerError",
                                                          "An internal error has occurred."))

    @staticmethod
    def _match(request):
        allowed = set()
        for method, pattern, template, handler in ROUTES:
            match = pattern.match(request.path)
            if match:
                if method == request.method:
                    return (template, handler), match.groupdict(), allowed
                allowed.add(method)
        return None, {}, allowed

    @staticmethod
    def _error_response(request, error):
        return Response.json(error.status, {
            "error": {"class": error.error_class, "message": error.message,
                      "documentation_url": DOCUMENTATION_URL},
            "request": {"method": request.method, "path": request.path}}, error.headers)

    # ------------------------------------------------------------------ authentication
    def _authenticate(self, request):
        """App-id + Secret, then (when required) Expires-at + RSA-SHA256 Signature."""
        headers = request.headers
        app_id, secret = headers.get("App-id"), headers.get("Secret")
        if not app_id:
            raise ApiError("AppIdNotProvided", "The App-id header was not provided.")
        if not secret:
            raise ApiError("SecretNotProvided", "The Secret header was not provided.")
        if not (secrets.compare_digest(app_id.encode(), self.app_id.encode())
                and secrets.compare_digest(secret.encode(), self._secret.encode())):
            raise ApiError("ApiKeyNotFound",
                           "An API key with the provided App-id and Secret does not exist.")
        if not self.require_signature:
            return
        expires_at = headers.get("Expires-at")
        if not expires_at:
            raise ApiError("MissingExpiresAt", "The Expires-at header is missing.")
        try:
            expires = int(expires_at)
        except ValueError:
            raise ApiError("ExpiresAtInvalid", "The Expires-at header is invalid.") from None
        real_now = time.time()  # signatures follow the real clock, not the simulated one
        if expires > real_now + MAX_EXPIRES_AT_AHEAD:
            raise ApiError("ExpiresAtInvalid",
                           "The Expires-at header is more than 1 hour from now.")
        if expires < real_now:
            raise ApiError("RequestExpired", "The request has expired (Expires-at is past).")
        signature = headers.get("Signature")
        if not signature:
            raise ApiError("MissingSignature", "The Signature header is missing.")
        url = f"http://{headers.get('Host') or f'{self.host}:{self.port}'}{request.target}"
        message = f"{expires_at}|{request.method}|{url}|{request.body.decode('utf-8', 'replace')}"
        try:
            self._public_key.verify(base64.b64decode(signature, validate=True), message.encode(),
                                    padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, binascii.Error, ValueError):
            raise ApiError("SignatureNotMatch",
                           "The Signature header does not match the request.") from None

    # ------------------------------------------------------------------ views
    def _provider_view(self, provider, index):
        return {"id": str(100 + index), "code": provider["code"], "name": provider["name"],
                "country_code": provider["country_code"], "mode": provider["mode"],
                "status": "active", "regulated": provider["regulated"],
                "automatic_fetch": True, "interactive": provider["interactive"],
                "max_consent_days": provider["max_consent_days"],
                "max_fetch_interval": provider["max_fetch_interval"],
                "supported_fetch_scopes": list(data.FETCH_SCOPES),
                "supported_account_natures": ["account", "checking", "card"],
                "timezone": "Europe/Brussels",
                "home_url": f"https://{provider['code'].replace('_', '-')}.example",
                "logo_url": f"{self.url}/logos/{provider['code']}.svg"}

    def _consent_state(self, consent):
        if consent["revoked_at"] is not None:
            return "revoked"
        if consent["expires_at"] is not None and self.now() >= consent["expires_at"]:
            return "expired"
        return "given"

    def _consent_view(self, consent):
        return {"id": consent["id"], "connection_id": consent["connection_id"],
                "customer_id": consent["customer_id"], "status": self._consent_state(consent),
                "scopes": list(consent["scopes"]), "period_days": consent["period_days"],
                "from_date": consent["from_date"].isoformat(),
                "to_date": None, "expires_at": _iso(consent["expires_at"]),
                "created_at": _iso(consent["created_at"]),
                "updated_at": _iso(consent["revoked_at"] or consent["created_at"]),
                "revoked_at": _iso(consent["revoked_at"]), "collected_by": "client"}

    def _connection_status(self, conn):
        if conn["removed"]:
            return "disabled"
        state = self._consent_state(self._consents[conn["last_consent_id"]])
        return "active" if state == "given" else "inactive"

    def _connection_view(self, conn, fetching=False):
        attempt = dict(conn["last_attempt"])
        if fetching:
            attempt.update(finished=False, finished_recent=False, stage="fetching",
                           success_at=None)
        provider = data.find_provider(conn["provider_code"])
        return {"id": conn["id"], "customer_id": conn["customer_id"],
                "customer_identifier": self._customers[conn["customer_id"]]["identifier"],
                "provider_code": provider["code"], "provider_name": provider["name"],
                "country_code": provider["country_code"],
                "status": self._connection_status(conn),
                "automatic_refresh": conn["automatic_refresh"],
                "daily_refresh": conn["automatic_refresh"],
                "categorization": "business",
                "created_at": _iso(conn["created_at"]), "updated_at": _iso(conn["updated_at"]),
                "last_success_at": _iso(conn["last_success_at"]),
                "next_refresh_possible_at": _iso(conn["next_refresh_possible_at"]),
                "last_consent_id": conn["last_consent_id"], "last_attempt": attempt}

    def _account_view(self, account_id, conn, spec):
        today = self._visible_until(conn)
        count = self._config["txns_per_day"].get(spec["currency"], 0)
        balance, available = self._balances(spec, today)
        start = self._visible_from(conn)
        posted = count * max(0, (today - start).days + 1)
        extra = {"client_name": spec["client_name"], "account_name": spec["name"],
                 "available_amount": _money(available), "status": "active",
                 "transactions_count": {"posted": posted, "pending": count}}
        if spec["iban"]:
            extra["iban"] = spec["iban"]
        if spec["swift"]:
            extra["swift"] = spec["swift"]
        if spec["account_number"]:
            extra["account_number"] = spec["account_number"]
        return {"id": account_id, "connection_id": conn["id"], "name": spec["name"],
                "nature": spec["nature"], "balance": _money(balance),
                "currency_code": spec["currency"], "extra": extra,
                "created_at": _iso(conn["created_at"]), "updated_at": _iso(conn["updated_at"])}

    def _balances(self, spec, until):
        count = self._config["txns_per_day"].get(spec["currency"], 0)
        balance = spec["opening_balance"]
        day = self._origin
        while day <= until:
            balance += data.day_total(spec, day, count)
            day += timedelta(days=1)
        return balance, balance + data.day_total(spec, until + timedelta(days=1), count)

    # ------------------------------------------------------------------ helpers
    def _customer(self, customer_id):
        customer = self._customers.get(str(customer_id or ""))
        if customer is None:
            raise ApiError("CustomerNotFound",
                           f"Customer with id: '{customer_id}' was not found.")
        return customer

    def _connection(self, connection_id):
        conn = self._connections.get(str(connection_id or ""))
        if conn is None or conn["removed"]:
            raise ApiError("ConnectionNotFound",
                           f"Connection with id: '{connection_id}' was not found.")
        return conn

    def _check_consent(self, conn):
        state = self._consent_state(self._consents[conn["last_consent_id"]])
        if state == "revoked":
            raise ApiError("AispConsentRevoked", "The consent has been revoked.")
        if state == "expired":
            raise ApiError("AispConsentExpired", "The consent has expired.")

    def _visible_until(self, conn):
        """Last posting day the connection's stored data holds."""
        last = self.today if conn["automatic_refresh"] else conn["last_fetch_day"]
        expires_at = self._consents[conn["last_consent_id"]]["expires_at"]
        if expires_at is not None:
            last = min(last, (expires_at - timedelta(seconds=1)).date())
        return max(last, conn["last_fetch_day"])

    def _visible_from(self, conn):
        return max(conn["from_date"], self._origin)

    def _paginate(self, request, items, path):
        try:
            per_page = int(request.query.get("per_page") or DEFAULT_PER_PAGE)
            from_id = int(request.query["from_id"]) if request.query.get("from_id") else None
        except ValueError:
            raise ApiError("ValueOutOfRange", "per_page and from_id must be integers.") from None
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ApiError("ValueOutOfRange", f"per_page must be between 1 and {MAX_PER_PAGE}.")
        if from_id is not None:
            items = [item for item in items if int(item["id"]) >= from_id]
        page, rest = items[:per_page], items[per_page:]
        meta = {"next_id": None, "next_page": None}
        if rest:
            query = dict(request.query, from_id=rest[0]["id"])
            meta = {"next_id": rest[0]["id"], "next_page": f"{API_PREFIX}{path}?{urlencode(query)}"}
        return Response.json(200, {"data": page, "meta": meta})

    def _check_return_to(self, value):
        parts = urlsplit(value or "")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment \
                or len(value) > 2040:
            raise ApiError("ReturnURLInvalid", "The return_to URL is invalid.")
        return value

    def _check_from_date(self, value, provider):
        if value in (None, ""):
            return self.today - timedelta(days=DEFAULT_FROM_DAYS)
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            raise ApiError("InvalidFromDate", "from_date must be a date YYYY-MM-DD.") from None
        oldest = self.today - timedelta(days=provider["max_fetch_interval"])
        if day < oldest or day > self.today:
            raise ApiError("DateOutOfRange",
                           f"from_date must be between {oldest.isoformat()} and "
                           f"{self.today.isoformat()}.")
        return day

    def _consent_params(self, body, provider):
        consent = body.get("consent")
        if not isinstance(consent, dict):
            raise ApiError("WrongRequestFormat", "consent is required.")
        scopes = consent.get("scopes")
        if not isinstance(scopes, list) or not scopes or \
                any(scope not in data.SUPPORTED_SCOPES for scope in scopes):
            raise ApiError("AispConsentScopesInvalid",
                           f"consent.scopes must be a subset of {list(data.SUPPORTED_SCOPES)}.")
        period = consent.get("period_days")
        if period is not None and (not isinstance(period, int) or isinstance(period, bool)
                                   or not 1 <= period <= provider["max_consent_days"]):
            raise ApiError("InvalidAispConsentPeriod",
                           f"consent.period_days must be between 1 and "
                           f"{provider['max_consent_days']} for this provider.")
        return {"scopes": list(scopes),
                "period_days": period or provider["max_consent_days"],
                "from_date": self._check_from_date(consent.get("from_date"), provider)}

    def _attempt_params(self, body, provider, return_to_required=True):
        attempt = body.get("attempt") or {}
        if not isinstance(attempt, dict):
            raise ApiError("WrongRequestFormat", "attempt must be an object.")
        scopes = attempt.get("fetch_scopes") or list(data.FETCH_SCOPES[:3])
        if not isinstance(scopes, list) or any(s not in data.FETCH_SCOPES for s in scopes):
            raise ApiError("FetchScopesInvalid", "attempt.fetch_scopes is invalid.")
        return_to = attempt.get("return_to")
        if return_to_required or return_to:
            self._check_return_to(return_to)
        return {"fetch_scopes": scopes, "return_to": return_to,
                "from_date": self._check_from_date(attempt.get("from_date"), provider),
                "custom_fields": attempt.get("custom_fields") or {}}

    def _count_connect(self):
        now = time.monotonic()
        while self._connect_times and now - self._connect_times[0] > 60:
            self._connect_times.popleft()
        if len(self._connect_times) >= CONNECT_LIMIT_PER_MINUTE:
            wait = _ceil(60 - (now - self._connect_times[0]))
            raise ApiError("TooManyRequests",
                           f"Too many connect requests from this IP address. "
                           f"Try again in {wait} seconds.", {"Retry-After": str(wait)})
        self._connect_times.append(now)

    def _new_session(self, kind, customer_id, provider_code, include_sandboxes, consent, attempt,
                     connection_id=None, automatic_refresh=True):
        token = secrets.token_urlsafe(24)
        expires_at = self.now() + CONNECT_URL_TTL
        self._sessions[token] = {
            "kind": kind, "customer_id": customer_id, "provider_code": provider_code,
            "include_sandboxes": include_sandboxes, "consent": consent, "attempt": attempt,
            "connection_id": connection_id, "automatic_refresh": automatic_refresh,
            "expires_at": expires_at, "used": False}
        return Response.json(200, {"data": {
            "connect_url": f"{self.url}/connect?{urlencode({'token': token})}",
            "expires_at": _iso(expires_at), "customer_id": customer_id}})

    def _new_attempt(self, attempt, consent_id, present=None, success=True, fail=None):
        now = self.now()
        return {"id": self._next_id("attempt"), "consent_id": consent_id,
                "automatic_fetch": present is None, "fetch_scopes": attempt["fetch_scopes"],
                "from_date": attempt["from_date"].isoformat(),
                "customer_last_logged_at": _iso(present), "created_at": _iso(now),
                "finished": True, "finished_recent": True, "interactive": False,
                "stage": "finish", "success_at": _iso(now) if success else None,
                "fail_at": None if success else _iso(now),
                "fail_error_class": fail[0] if fail else None,
                "fail_message": fail[1] if fail else None}

    def _fetched(self, conn, attempt, present=None):
        now = self.now()
        conn["last_fetch_day"] = self.today
        conn["last_success_at"] = now
        conn["updated_at"] = now
        conn["next_refresh_possible_at"] = now + REFRESH_INTERVAL
        conn["last_attempt"] = self._new_attempt(attempt, conn["last_consent_id"], present)

    def _check_refreshable(self, conn):
        self._check_consent(conn)
        now = self.now()
        if conn["next_refresh_possible_at"] and now < conn["next_refresh_possible_at"]:
            wait = _ceil((conn["next_refresh_possible_at"] - now).total_seconds())
            raise ApiError("ConnectionCannotBeRefreshed",
                           "Connection cannot be refreshed right now. Next refresh is possible "
                           f"at {_iso(conn['next_refresh_possible_at'])}. "
                           f"Try again in {wait} seconds.")

    # ------------------------------------------------------------------ API handlers
    def _countries(self, request):
        codes = sorted({p["country_code"] for p in data.PROVIDERS})
        return Response.json(200, {"data": [{"code": code, "name": code, "refresh_start_time": 2}
                                            for code in codes]})

    def _providers(self, request):
        country = request.query.get("country_code")
        sandboxes = request.query.get("include_sandboxes") == "true"
        items = [self._provider_view(p, i) for i, p in enumerate(data.PROVIDERS)
                 if (sandboxes or not p["sandbox"])
                 and (not country or p["country_code"] == country.upper())]
        return self._paginate(request, items, "/providers")

    def _customer_create(self, request):
        body = request.json_data()
        identifier = body.get("identifier")
        if not isinstance(identifier, str) or not identifier.strip() or len(identifier) > 255:
            raise ApiError("IdentifierInvalid", "identifier must be a non-empty string.")
        with self._lock:
            if any(c["identifier"] == identifier for c in self._customers.values()):
                raise ApiError("DuplicatedCustomer",
                               "The customer you are trying to create already exists.")
            now = _iso(self.now())
            customer = {"customer_id": self._next_id("customer"), "identifier": identifier,
                        "blocked_at": None, "created_at": now, "updated_at": now}
            self._customers[customer["customer_id"]] = customer
            return Response.json(200, {"data": dict(customer)})

    def _customer_show(self, request, item_id):
        with self._lock:
            return Response.json(200, {"data": dict(self._customer(item_id))})

    def _connect(self, request):
        body = request.json_data()
        with self._lock:
            customer = self._customer(body.get("customer_id"))
            provider_spec = body.get("provider") or {}
            if not isinstance(provider_spec, dict):
                raise ApiError("WrongRequestFormat", "provider must be an object.")
            code = provider_spec.get("code")
            include_sandboxes = bool(provider_spec.get("include_sandboxes"))
            if code is not None:
                provider = data.find_provider(code)
                if provider is None:
                    raise ApiError("ProviderNotFound", f"Provider with code '{code}' not found.")
            else:  # the customer picks the provider in the widget; validate with the laxest one
                provider = {"max_consent_days": 180, "max_fetch_interval": 365}
            consent = self._consent_params(body, provider)
            attempt = self._attempt_params(body, provider)
            self._count_connect()
            automatic = body.get("automatic_refresh", True) is not False
            return self._new_session("connect", customer["customer_id"], code, include_sandboxes,
                                     consent, attempt, automatic_refresh=automatic)

    def _connections_list(self, request):
        with self._lock:
            customer = self._customer(request.query.get("customer_id"))
            items = [self._connection_view(conn) for conn in self._connections.values()
                     if conn["customer_id"] == customer["customer_id"] and not conn["removed"]]
        return self._paginate(request, items, "/connections")

    def _connection_show(self, request, item_id):
        fault = self._take_fault(request, {"item_id": item_id}, kinds={"fetching"})
        with self._lock:
            conn = self._connection(item_id)
            return Response.json(200, {"data": self._connection_view(conn, fetching=bool(fault))})

    def _connection_remove(self, request, item_id):
        with self._lock:
            conn = self._connection(item_id)
            conn["removed"] = True
            consent = self._consents[conn["last_consent_id"]]
            if consent["revoked_at"] is None:
                consent["revoked_at"] = self.now()
            return Response.json(200, {"data": {"id": conn["id"], "removed": True}})

    def _reconnect(self, request, item_id):
        body = request.json_data()
        with self._lock:
            conn = self._connection(item_id)
            provider = data.find_provider(conn["provider_code"])
            consent = self._consent_params(body, provider)
            attempt = self._attempt_params(body, provider)
            self._count_connect()
            return self._new_session("reconnect", conn["customer_id"], conn["provider_code"],
                                     False, consent, attempt, connection_id=conn["id"])

    def _refresh(self, request, item_id):
        body = request.json_data(required=False)
        with self._lock:
            conn = self._connection(item_id)
            provider = data.find_provider(conn["provider_code"])
            attempt = self._attempt_params(body, provider)
            attempt["from_date"] = conn["from_date"]
            self._check_refreshable(conn)
            self._count_connect()
            return self._new_session("refresh", conn["customer_id"], conn["provider_code"],
                                     False, None, attempt, connection_id=conn["id"])

    def _background_refresh(self, request, item_id):
        body = request.json_data(required=False)
        present = request.attempt_presence() if self._present(request) else None
        with self._lock:
            conn = self._connection(item_id)
            provider = data.find_provider(conn["provider_code"])
            attempt = self._attempt_params(body, provider, return_to_required=False)
            attempt["from_date"] = conn["from_date"]
            self._check_refreshable(conn)
            now = self.now()
            history = conn["background_refreshes"]
            while history and now - history[0] >= timedelta(hours=24):
                history.popleft()
            if provider["regulated"] and present is None and \
                    len(history) >= BACKGROUND_FETCH_LIMIT:
                wait = _ceil((history[0] + timedelta(hours=24) - now).total_seconds())
                raise ApiError("BackgroundFetchLimitExceeded",
                               f"Background fetch limit ({BACKGROUND_FETCH_LIMIT} times in a "
                               f"24 hour period) was exceeded. Try again in {wait} seconds.")
            if present is None:
                history.append(now)
            self._fetched(conn, attempt, present)
        fetching = self._take_fault(request, {"item_id": item_id}, kinds={"fetching"})
        with self._lock:
            return Response.json(200, {"data": self._connection_view(conn,
                                                                     fetching=bool(fetching))})

    def _consents_list(self, request):
        with self._lock:
            conn = self._connection(request.query.get("connection_id"))
            items = [self._consent_view(c) for c in self._consents.values()
                     if c["connection_id"] == conn["id"]]
        return self._paginate(request, items, "/consents")

    def _readable_connection(self, request):
        conn = self._connection(request.query.get("connection_id"))
        if CONSENT_GATES_DATA_READS:
            self._check_consent(conn)
        return conn

    def _accounts(self, request):
        with self._lock:
            conn = self._readable_connection(request)
            items = [self._account_view(aid, conn, data.find_account(key))
                     for aid, key in conn["accounts"].items()]
        return self._paginate(request, items, "/accounts")

    def _transactions(self, request):
        query = request.query
        pending = query.get(PENDING_PARAM) == "true"
        with self._lock:
            conn = self._readable_connection(request)
            account_id = query.get("account_id")
            if account_id is not None and account_id not in conn["accounts"]:
                raise ApiError("AccountNotFound",
                               f"Account with id: '{account_id}' was not found.")
            wanted = [account_id] if account_id else list(conn["accounts"])
            start, until = self._visible_from(conn), self._visible_until(conn)
            counts = dict(self._config["txns_per_day"])
        items = []
        for aid in wanted:
            spec = data.find_account(conn["accounts"][aid])
            count = counts.get(spec["currency"], 0)
            if pending:
                if until + timedelta(days=1) > start:
                    items.extend(txn.as_pending(aid) for txn in data.transactions_posting_on(
                        spec, until + timedelta(days=1), count))
                continue
            day = start
            while day <= until:
                items.extend(txn.as_posted(aid)
                             for txn in data.transactions_posting_on(spec, day, count))
                day += timedelta(days=1)
        items.sort(key=lambda item: item["id"])
        return self._paginate(request, items, "/transactions")

    # ------------------------------------------------------------------ hosted widget
    @staticmethod
    def _page(title, body, status=200):
        return Response.html(status, (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:36em;margin:2em auto}"
            "button{padding:.5em 1.2em;margin-right:.5em}</style></head>"
            f"<body><h1>Salt Edge Connect (simulator)</h1>{body}</body></html>\n"))

    def _session(self, token):
        session = self._sessions.get(token or "")
        if session is None or session["used"] or self.now() >= session["expires_at"]:
            return None
        return session

    def _connect_page(self, request):
        token = request.query.get("token")
        with self._lock:
            session = self._session(token)
            if session is None:
                return self._page("Salt Edge Connect – Error",
                                  "<p>This connect session is invalid or has expired.</p>", 400)
            if session["provider_code"]:
                choices = [data.find_provider(session["provider_code"])]
            else:
                choices = [p for p in data.PROVIDERS
                           if session["include_sandboxes"] or not p["sandbox"]]
        options = "".join(f'<option value="{html.escape(p["code"])}">{html.escape(p["name"])}'
                          f" ({html.escape(p['country_code'])})</option>" for p in choices)
        what = {"connect": "connect", "reconnect": "renew the consent of",
                "refresh": "refresh"}[session["kind"]]
        body = (f"<p>An application asks to {what} your bank connection: it will read your "
                "accounts, balances and transactions.</p>"
                '<form method="post" action="/connect/decision">'
                f'<input type="hidden" name="token" value="{html.escape(token)}">'
                f'<label>Bank <select name="provider_code">{options}</select></label>'
                '<p><button type="submit" name="decision" value="approve">I give my consent'
                '</button><button type="submit" name="decision" value="cancel">Cancel</button>'
                "</p></form>")
        return self._page("Salt Edge Connect", body)

    def _connect_decision(self, request):
        form = request.form()
        with self._lock:
            session = self._session(form.get("token"))
            if session is None:
                return self._page("Salt Edge Connect – Error",
                                  "<p>This connect session is invalid or has expired.</p>", 400)
            code = session["provider_code"] or form.get("provider_code")
            provider = data.find_provider(code)
            if provider is None or (provider["sandbox"] and not session["include_sandboxes"]
                                    and not session["provider_code"]):
                return self._page("Salt Edge Connect – Error", "<p>Unknown provider.</p>", 400)
            session["used"] = True
            return_to = session["attempt"]["return_to"]
            if form.get("decision") != "approve":
                params = {CALLBACK_ERROR_CLASS_PARAM: CANCEL_ERROR_CLASS,
                          CALLBACK_ERROR_MESSAGE_PARAM: "The customer denied access to the data."}
                if session["connection_id"]:
                    params = {CALLBACK_CONNECTION_PARAM: session["connection_id"], **params}
                return Response(302, headers={"Location": _append_query(return_to, params)})
            if session["kind"] == "connect":
                conn = self._create_connection(session, provider)
            else:
                conn = self._connections[session["connection_id"]]
                if session["kind"] == "reconnect":
                    self._give_consent(conn, session["consent"])
                    conn["from_date"] = min(conn["from_date"], session["consent"]["from_date"],
                                            session["attempt"]["from_date"])
                    conn["background_refreshes"].clear()
                self._fetched(conn, session["attempt"], self.now())
            location = _append_query(return_to, {CALLBACK_CONNECTION_PARAM: conn["id"]})
            return Response(302, headers={"Location": location})

    def _give_consent(self, conn, params):
        now = self.now()
        consent = {"id": self._next_id("consent"), "connection_id": conn["id"],
                   "customer_id": conn["customer_id"], "scopes": params["scopes"],
                   "period_days": params["period_days"], "from_date": params["from_date"],
                   "expires_at": now + timedelta(days=params["period_days"]),
                   "created_at": now, "revoked_at": None}
        self._consents[consent["id"]] = consent
        conn["last_consent_id"] = consent["id"]
        return consent

    def _create_connection(self, session, provider):
        now = self.now()
        conn = {"id": self._next_id("connection"), "customer_id": session["customer_id"],
                "provider_code": provider["code"], "created_at": now, "updated_at": now,
                "automatic_refresh": session["automatic_refresh"],
                "from_date": min(session["attempt"]["from_date"],
                                 session["consent"]["from_date"]),
                "last_fetch_day": self.today, "last_success_at": None,
                "next_refresh_possible_at": None, "removed": False,
                "last_consent_id": None, "last_attempt": {}, "accounts": {},
                "background_refreshes": deque()}
        self._connections[conn["id"]] = conn
        self._give_consent(conn, session["consent"])
        for spec in data.ACCOUNTS[provider["code"]]:
            account_id = self._next_id("account")
            conn["accounts"][account_id] = spec["key"]
            self._account_ids[account_id] = (conn["id"], spec["key"])
        self._fetched(conn, session["attempt"], now)
        return conn

    # ------------------------------------------------------------------ HTTP admin
    def _sim_stats(self, request):
        return Response.json(200, self.stats())

    def _sim_fault_add(self, request):
        try:
            body = json.loads(request.body or b"{}")
            options = {key: body[key] for key in ("times", "skip", "path", "consent_id", "seconds")
                       if key in body}
            fault = self.add_fault(body.get("kind"), **options)
        except (ValueError, TypeError, AttributeError) as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(201, {"fault": fault})

    def _sim_faults_clear(self, request):
        self.clear_faults()
        return Response(204)

    def _sim_clock(self, request):
        try:
            body = json.loads(request.body or b"{}")
            if "today" in body:
                self.set_today(body["today"])
            elif "advance_days" in body:
                self.advance_days(int(body["advance_days"]))
        except (ValueError, TypeError, AttributeError) as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(200, {"today": self.today.isoformat()})

    def _sim_config(self, request):
        try:
            body = json.loads(request.body or b"{}")
            return Response.json(200, {"config": self.configure(**body)})
        except (ValueError, TypeError, AttributeError) as exc:
            return Response.json(400, {"error": str(exc)})

    def _sim_reset(self, request):
        self.reset()
        return Response(204)

    def _sim_webhook(self, request):
        try:
            return Response.json(*self.webhooks.admin(json.loads(request.body or b"{}")))
        except (ValueError, TypeError) as exc:
            return Response.json(400, {"error": str(exc)})


def _append_query(url, params):
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


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
        elif tag == "option" and self._select and self._select not in self.fields:
            self.fields[self._select] = attrs.get("value") or ""
        elif tag == "button" and attrs.get("name") == "decision":
            self.decisions.add(attrs.get("value"))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def simulate_user(consent_url, decision="approve", provider_code=None, timeout=10):
    """Play the customer in the Connect widget: open ``consent_url``, pick the bank
    (``provider_code``, else the first offered), click "I give my consent" (``approve``) or
    "Cancel" (``cancel``) and return the query parameters of the redirect to ``return_to``."""
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
        raise RuntimeError(f"the connect page answered HTTP {status}")
    form = _FormParser()
    form.feed(page.decode("utf-8"))
    if decision not in form.decisions or not form.action:
        raise RuntimeError("the connect page has no such decision button")
    fields = dict(form.fields, decision=decision)
    if provider_code:
        fields["provider_code"] = provider_code
    status, headers, _ = call("POST", urljoin(parts.path, form.action), urlencode(fields),
                              {"Content-Type": "application/x-www-form-urlencoded"})
    location = headers.get("Location")
    if status != 302 or not location:
        raise RuntimeError(f"the connect decision answered HTTP {status}")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


__all__ = ["SaltEdgeServer", "simulate_user", "FAULT_KINDS", "DEFAULT_APP_ID", "DEFAULT_SECRET"]
