"""The Sandbox Bank: a small, documented bank API served on 127.0.0.1 (see README.md).

Standard library only. One ``SandboxBankServer`` is one bank: its consents, tokens, simulated
clock, configuration and fault knobs live in the object, guarded by a lock, and are reachable both
over HTTP (``/_sim/...``) and from Python (``server.add_fault(...)``, ``server.set_today(...)``).
"""
import base64
import binascii
import hashlib
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
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from . import data

_logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
DEFAULT_HISTORY_DAYS = 90
DEFAULT_TXNS_PER_DAY = {"EUR": 3, "USD": 1}
DEFAULT_ACCESS_TOKEN_TTL = 3600
MAX_CONSENT_DAYS = 90
CODE_TTL = timedelta(minutes=10)
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 60
RATE_LIMIT = 4

FAULT_KINDS = ("delay", "timeout", "http_500", "http_503", "rate_limit", "malformed_json",
               "consent_expired", "user_must_be_present")

PSU_HEADER = "PSU-IP-Address"

LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect width="64" height="64" rx="12" fill="#f2c14e"/>
<path d="M12 26 L32 14 L52 26 Z" fill="#1d3557"/>
<rect x="16" y="28" width="6" height="18" fill="#1d3557"/>
<rect x="29" y="28" width="6" height="18" fill="#1d3557"/>
<rect x="42" y="28" width="6" height="18" fill="#1d3557"/>
<rect x="12" y="48" width="40" height="5" fill="#1d3557"/>
</svg>
"""

_NO_ANSWER = object()  # a handler result meaning "close the connection without answering"


def _utcnow():
    return datetime.now(timezone.utc)


def _iso(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_day(value, name):
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ApiError(400, "INVALID_REQUEST", f"{name} must be a date YYYY-MM-DD") from None


def _as_day(value):
    return value if isinstance(value, date) and not isinstance(value, datetime) else \
        date.fromisoformat(str(value))


class ApiError(Exception):
    """An error answer: ``{"error": {"code", "message", "request_id"}}``."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


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
        self.request_id = "req_" + secrets.token_hex(8)
        self.consent_id = None  # filled in when a bearer token is recognised

    def form(self):
        text = self.body.decode("utf-8", "replace")
        return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}

    def json(self):
        if not self.body:
            return {}
        try:
            payload = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "INVALID_REQUEST", "the body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "INVALID_REQUEST", "the body must be a JSON object")
        return payload

    def bearer(self):
        value = self.headers.get("Authorization") or ""
        if value[:7].lower() == "bearer ":
            return value[7:].strip()
        return None

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


ROUTES = (
    _route("GET", r"/", "/", "_root"),
    _route("GET", r"/static/sandbox-bank\.svg", "/static/sandbox-bank.svg", "_logo"),
    _route("GET", r"/consent", "/consent", "_consent_page"),
    _route("POST", r"/consent/decision", "/consent/decision", "_consent_decision"),
    _route("GET", r"/api/v1/institutions", "/api/v1/institutions", "_institutions"),
    _route("POST", r"/api/v1/token", "/api/v1/token", "_token"),
    _route("GET", r"/api/v1/accounts", "/api/v1/accounts", "_accounts"),
    _route("GET", r"/api/v1/accounts/(?P<account_id>[^/]+)/balances",
           "/api/v1/accounts/{id}/balances", "_balances"),
    _route("GET", r"/api/v1/accounts/(?P<account_id>[^/]+)/transactions",
           "/api/v1/accounts/{id}/transactions", "_transactions"),
    _route("DELETE", r"/api/v1/consents/(?P<consent_id>[^/]+)", "/api/v1/consents/{id}",
           "_revoke"),
    _route("GET", r"/_sim/faults", "/_sim/faults", "_sim_faults_list"),
    _route("POST", r"/_sim/faults", "/_sim/faults", "_sim_faults_add"),
    _route("DELETE", r"/_sim/faults", "/_sim/faults", "_sim_faults_clear"),
    _route("GET", r"/_sim/clock", "/_sim/clock", "_sim_clock_get"),
    _route("POST", r"/_sim/clock", "/_sim/clock", "_sim_clock_set"),
    _route("GET", r"/_sim/config", "/_sim/config", "_sim_config_get"),
    _route("POST", r"/_sim/config", "/_sim/config", "_sim_config_set"),
    _route("POST", r"/_sim/reset", "/_sim/reset", "_sim_reset"),
    _route("GET", r"/_sim/stats", "/_sim/stats", "_sim_stats"),
    _route("GET", r"/_sim/consents", "/_sim/consents", "_sim_consents"),
    _route("POST", r"/_sim/consents/(?P<consent_id>[^/]+)/revoke",
           "/_sim/consents/{id}/revoke", "_sim_revoke"),
)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SandboxBank/1.0"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed after this many seconds

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, delayed ACKs add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.bank._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.bank._track(self.connection, False)

    def log_request(self, code="-", size="-"):
        # The path only: query strings and headers are never logged.
        self.log_message("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        if self.server.bank.verbose:
            _logger.info("sandbox bank: " + format, *args)

    def _handle(self, method):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 1_000_000:
            self.close_connection = True
            self._write(Response.json(400, {"error": {
                "code": "INVALID_REQUEST", "message": "bad Content-Length", "request_id": None}}))
            return
        body = self.rfile.read(length) if length else b""
        request = Request(method, self.path, self.headers, body)
        response = self.server.bank.handle(request)
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
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (its timeout)
            self.close_connection = True

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")


class SandboxBankServer:
    """The Sandbox Bank on ``http://host:port`` (port 0: any free port), run in a daemon thread.

    ``today`` is the real UTC date unless the simulated clock is moved (``set_today``,
    ``advance_days``). Usable as a context manager: ``with SandboxBankServer() as bank: ...``.
    """

    def __init__(self, host="127.0.0.1", port=0, client_id=DEFAULT_CLIENT_ID,
                 client_secret=DEFAULT_CLIENT_SECRET, *, history_days=DEFAULT_HISTORY_DAYS,
                 txns_per_day=None, today=None, verbose=False):
        self.host = host
        self.port = port
        self.client_id = client_id
        self._client_secret = client_secret
        self.verbose = verbose
        self._initial = {"history_days": history_days, "txns_per_day": txns_per_day,
                         "today": today}
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
            raise RuntimeError("the Sandbox Bank is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.bank = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name=f"sandbox-bank-{self.port}", daemon=True)
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
            self._offset_days = 0
            self._config = {
                "history_days": DEFAULT_HISTORY_DAYS,
                "txns_per_day": dict(DEFAULT_TXNS_PER_DAY),
                "access_token_ttl": DEFAULT_ACCESS_TOKEN_TTL,
            }
            self._codes = {}
            self._consents = {}
            self._access_tokens = {}
            self._refresh_tokens = {}
            self._faults = []
            self._fault_seq = 0
            self._stats = Counter()
            self._in_flight = 0
            self._max_in_flight = 0
            self._faults_triggered = 0
            initial = self._initial
            if initial["today"] is not None:
                self._offset_days = (_as_day(initial["today"]) - _utcnow().date()).days
            self._configure(history_days=initial["history_days"],
                            txns_per_day=initial["txns_per_day"])
            # The accounts opened on the first day of history; their opening balance is as of it.
            self._origin = self.today - timedelta(days=self._config["history_days"])

    def reset(self):
        """Back to the state of a new server: clock, configuration, consents, faults, stats."""
        self._reset_state()

    def now(self):
        """The simulated current time (aware UTC)."""
        with self._lock:
            return _utcnow() + timedelta(days=self._offset_days)

    @property
    def today(self):
        return self.now().date()

    def set_today(self, day):
        """Move the simulated clock to ``day`` (a date or ``YYYY-MM-DD``); returns it."""
        day = _as_day(day)
        with self._lock:
            self._offset_days = (day - _utcnow().date()).days
            self._extend_origin()
            return self.today

    def advance_days(self, days=1):
        """Move the simulated clock ``days`` days forward (negative: back); returns today."""
        with self._lock:
            self._offset_days += int(days)
            self._extend_origin()
            return self.today

    def _extend_origin(self):
        # Invariant: the bank holds every day it can serve (origin <= today - history_days).
        oldest = self.today - timedelta(days=self._config["history_days"])
        if getattr(self, "_origin", None) is None or oldest < self._origin:
            self._origin = oldest

    def configure(self, history_days=None, txns_per_day=None, access_token_ttl=None):
        """Change the data parameters; returns the configuration."""
        with self._lock:
            self._configure(history_days, txns_per_day, access_token_ttl)
            self._extend_origin()
            return self.config()

    def _configure(self, history_days=None, txns_per_day=None, access_token_ttl=None):
        if history_days is not None:
            if not isinstance(history_days, int) or isinstance(history_days, bool) \
                    or not 1 <= history_days <= 3650:
                raise ValueError("history_days must be an integer between 1 and 3650")
            self._config["history_days"] = history_days
        if txns_per_day is not None:
            if not isinstance(txns_per_day, dict):
                raise ValueError("txns_per_day must be an object like {\"EUR\": 3, \"USD\": 1}")
            merged = dict(self._config["txns_per_day"])
            for currency, count in txns_per_day.items():
                if currency not in DEFAULT_TXNS_PER_DAY:
                    raise ValueError(f"unknown currency {currency!r}")
                if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
                    raise ValueError("transactions per day must be an integer between 0 and 1000")
                merged[currency] = count
            self._config["txns_per_day"] = merged
        if access_token_ttl is not None:
            if not isinstance(access_token_ttl, int) or access_token_ttl < 1:
                raise ValueError("access_token_ttl must be a positive integer (seconds)")
            self._config["access_token_ttl"] = access_token_ttl

    def config(self):
        with self._lock:
            return {"history_days": self._config["history_days"],
                    "txns_per_day": dict(self._config["txns_per_day"]),
                    "access_token_ttl": self._config["access_token_ttl"],
                    "today": self.today.isoformat(),
                    "first_day": self._origin.isoformat()}

    # ------------------------------------------------------------------ faults
    def add_fault(self, kind, *, times=1, skip=0, path=None, consent_id=None, seconds=None):
        """Arm a fault; returns its description (with an ``id``). See README.md for the kinds."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool)
                                  or times < 1):
            raise ValueError("times must be a positive integer or null")
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise ValueError("skip must be a non-negative integer")
        if path is not None and not isinstance(path, str):
            raise ValueError("path must be a string or null")
        if consent_id is not None and not isinstance(consent_id, str):
            raise ValueError("consent_id must be a string or null")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or seconds < 0):
            raise ValueError("seconds must be a non-negative number or null")
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
                if fault["path"] is None:
                    if not request.path.startswith("/api/v1/"):
                        continue
                elif fault["path"] not in request.path:
                    continue
                if fault["consent_id"] is not None and fault["consent_id"] != request.consent_id:
                    continue
                if fault["kind"] == "user_must_be_present" and request.headers.get(PSU_HEADER):
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
            raise ApiError(500, "INTERNAL_ERROR", "internal error (simulated)")
        if kind == "http_503":
            headers = {"Retry-After": str(int(-(-seconds // 1)))} if seconds is not None else {}
            raise ApiError(503, "BANK_UNAVAILABLE", "the bank is temporarily unavailable",
                           headers)
        if kind == "rate_limit":
            wait = int(-(-(DEFAULT_RETRY_AFTER if seconds is None else seconds) // 1))
            reset_at = int(self.now().timestamp()) + wait
            raise ApiError(429, "RATE_LIMITED", f"too many requests, retry in {wait} seconds", {
                "Retry-After": str(wait), "X-RateLimit-Limit": str(RATE_LIMIT),
                "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_at)})
        if kind == "malformed_json":
            return Response(200, b'{"transactions": [{"id": "txn_', "application/json")
        if kind == "consent_expired":
            raise ApiError(401, "CONSENT_EXPIRED", "the consent has expired")
        if kind == "user_must_be_present":
            raise ApiError(403, "USER_MUST_BE_PRESENT",
                           "the bank only answers while the account holder is present")
        raise AssertionError(kind)  # pragma: no cover

    # ------------------------------------------------------------------ introspection
    def stats(self):
        """Requests per ``METHOD /path/template`` (admin ``/_sim`` calls not counted)."""
        with self._lock:
            return {"requests": dict(self._stats), "total": sum(self._stats.values()),
                    "faults_triggered": self._faults_triggered,
                    "max_in_flight": self._max_in_flight}

    def consents(self):
        with self._lock:
            return [self._consent_view(consent) for consent in self._consents.values()]

    @staticmethod
    def _consent_view(consent):
        return {"id": consent["id"], "institution_id": consent["institution_id"],
                "created_at": _iso(consent["created_at"]),
                "valid_until": _iso(consent["valid_until"]), "revoked": consent["revoked"]}

    def revoke_consent(self, consent_id):
        """Revoke a consent as if the user did it at the bank; returns False if unknown."""
        with self._lock:
            consent = self._consents.get(consent_id)
            if consent is None:
                return False
            consent["revoked"] = True
            return True

    def accounts(self, institution_id="SANDBOX_BANK"):
        """The accounts of an institution (without per-consent ids)."""
        return [self._public_account(spec) for spec in data.ACCOUNTS[institution_id]]

    @staticmethod
    def _public_account(spec):
        return {key: spec[key] for key in ("iban", "account_number", "masked_number", "name",
                                           "holder_name", "currency", "type", "stable_id")}

    def _account_spec(self, account):
        spec = data.find_account(account)
        if spec is None:
            raise KeyError(f"unknown Sandbox Bank account {account!r}")
        return spec

    def expected_booked(self, account, date_from, date_to):
        """The booked transactions (API dicts) the bank holds for ``account`` (stable id, IBAN or
        account number) with a booking date in [date_from, date_to], ordered like the API."""
        spec = self._account_spec(account)
        date_from, date_to = _as_day(date_from), _as_day(date_to)
        with self._lock:
            start = max(date_from, self._origin)
            end = min(date_to, self.today)
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        result = []
        day = start
        while day <= end:
            result.extend(self._bucket(spec, count, day, True, False))
            day += timedelta(days=1)
        return result

    def expected_pending(self, account):
        """The pending transactions (API dicts) of ``account`` today."""
        spec = self._account_spec(account)
        with self._lock:
            today = self.today
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        return self._bucket(spec, count, today, False, True, today=today)

    def expected_balances(self, account):
        """``{"booked": Decimal, "available": Decimal}`` of ``account`` today."""
        spec = self._account_spec(account)
        booked, available, _today = self._balances_of(spec)
        return {"booked": booked, "available": available}

    def _balances_of(self, spec):
        with self._lock:
            today, origin = self.today, self._origin
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        booked = spec["opening_balance"]
        day = origin
        while day <= today:
            booked += data.day_total(spec["stable_id"], spec["currency"], day, count)
            day += timedelta(days=1)
        pending = data.day_total(spec["stable_id"], spec["currency"],
                                 today + timedelta(days=1), count)
        return booked, booked + pending, today

    @staticmethod
    def _bucket(spec, count, day, booked, pending, today=None):
        """API dicts dated ``day`` (booked on it, or pending made on it), sorted by id."""
        items = []
        if booked:
            items.extend(txn.as_booked() for txn in data.transactions_booking_on(
                spec["stable_id"], spec["currency"], day, count))
        if pending and day == today:
            items.extend(txn.as_pending() for txn in data.transactions_booking_on(
                spec["stable_id"], spec["currency"], day + timedelta(days=1), count))
        items.sort(key=lambda item: item["id"])
        return items

    # ------------------------------------------------------------------ dispatch
    def handle(self, request):
        """Answer one request: a ``Response`` or ``_NO_ANSWER``."""
        route, params, allowed = self._match(request)
        if route is None:
            if allowed:
                return self._error_response(request, ApiError(
                    405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here",
                    {"Allow": ", ".join(sorted(allowed))}))
            return self._error_response(request, ApiError(404, "NOT_FOUND", "no such endpoint"))
        template, handler = route
        if request.path.startswith("/_sim/"):
            return self._dispatch(request, handler, params)
        with self._lock:
            self._stats[f"{request.method} {template}"] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._dispatch(request, handler, params)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _dispatch(self, request, handler, params):
        try:
            token = request.bearer()
            if token:
                with self._lock:
                    entry = self._access_tokens.get(token)
                    request.consent_id = entry["consent_id"] if entry else None
            if not request.path.startswith("/_sim/"):
                fault = self._take_fault(request)
                if fault is not None:
                    outcome = self._apply_fault(fault, request)
                    if outcome is not None:
                        return outcome
                    if self._stopping.is_set():
                        return _NO_ANSWER
            return getattr(self, handler)(request, **params)
        except ApiError as error:
            return self._error_response(request, error)
        except Exception:  # pragma: no cover - a bug of the simulator itself
            _logger.exception("sandbox bank: %s %s failed", request.method, request.path)
            return self._error_response(request, ApiError(500, "INTERNAL_ERROR",
                                                          "unexpected error"))

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
        headers = dict(error.headers)
        if error.status == 401 and error.code == "INVALID_CLIENT":
            headers.setdefault("WWW-Authenticate", 'Basic realm="Sandbox Bank"')
        return Response.json(error.status, {"error": {
            "code": error.code, "message": error.message, "request_id": request.request_id}},
            headers)

    # ------------------------------------------------------------------ auth helpers
    def _check_client(self, request):
        credentials = request.basic()
        if credentials is None or not (
                secrets.compare_digest(credentials[0], self.client_id)
                and secrets.compare_digest(credentials[1], self._client_secret)):
            raise ApiError(401, "INVALID_CLIENT", "unknown client or wrong client secret")

    def _consent_state_error(self, consent):
        if consent["revoked"]:
            return ApiError(401, "CONSENT_REVOKED", "the consent was revoked")
        if self.now() >= consent["valid_until"]:
            return ApiError(401, "CONSENT_EXPIRED", "the consent has expired")
        return None

    def _authenticate(self, request, data_call=True):
        """The consent (a copy) behind the request's bearer token, or an ApiError."""
        token = request.bearer()
        if not token:
            raise ApiError(401, "INVALID_TOKEN", "a bearer access token is required")
        with self._lock:
            entry = self._access_tokens.get(token)
            if entry is None:
                raise ApiError(401, "INVALID_TOKEN", "unknown access token")
            consent = self._consents[entry["consent_id"]]
            error = self._consent_state_error(consent)
            if error:
                raise error
            if self.now() >= entry["expires_at"]:
                raise ApiError(401, "TOKEN_EXPIRED", "the access token has expired")
            consent = dict(consent, accounts=dict(consent["accounts"]))
        if data_call and self._institution(consent["institution_id"])["requires_user_presence"] \
                and not request.headers.get(PSU_HEADER):
            raise ApiError(403, "USER_MUST_BE_PRESENT",
                           "this bank refuses unattended access: send PSU-IP-Address")
        return consent

    @staticmethod
    def _institution(institution_id):
        for institution in data.INSTITUTIONS:
            if institution["id"] == institution_id:
                return institution
        return None

    def _issue_tokens(self, consent, refresh_token=None):
        """Token answer for ``consent`` (lock held)."""
        ttl = self._config["access_token_ttl"]
        access_token = "sbx_at_" + secrets.token_urlsafe(24)
        self._access_tokens[access_token] = {"consent_id": consent["id"],
                                             "expires_at": self.now() + timedelta(seconds=ttl)}
        if refresh_token is None:
            refresh_token = "sbx_rt_" + secrets.token_urlsafe(32)
            self._refresh_tokens[refresh_token] = consent["id"]
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": ttl,
                "refresh_token": refresh_token,
                "consent": {"id": consent["id"], "institution_id": consent["institution_id"],
                            "created_at": _iso(consent["created_at"]),
                            "valid_until": _iso(consent["valid_until"])}}

    # ------------------------------------------------------------------ public pages
    def _root(self, request):
        return Response.json(200, {"name": "Sandbox Bank", "api": "/api/v1",
                                   "today": self.today.isoformat()})

    def _logo(self, request):
        return Response(200, LOGO_SVG.encode(), "image/svg+xml",
                        {"Cache-Control": "public, max-age=86400"})

    def _consent_params(self, params):
        """Validated authorization request parameters, or a message for a 400 page."""
        if params.get("client_id") != self.client_id:
            return None, "Unknown client_id."
        redirect_uri = params.get("redirect_uri") or ""
        parts = urlsplit(redirect_uri)
        if not redirect_uri or parts.scheme not in ("http", "https") or not parts.netloc \
                or parts.fragment:
            return None, "A valid redirect_uri (http or https, no fragment) is required."
        if not params.get("state"):
            return None, "The state parameter is required."
        institution_id = params.get("institution_id") or "SANDBOX_BANK"
        if self._institution(institution_id) is None:
            return None, "Unknown institution_id."
        challenge = params.get("code_challenge") or ""
        method = params.get("code_challenge_method") or "S256"
        if challenge and method != "S256":
            return None, "Only code_challenge_method=S256 is supported."
        try:
            valid_days = int(params.get("valid_days") or MAX_CONSENT_DAYS)
        except ValueError:
            return None, "valid_days must be a number of days."
        if valid_days < 1:
            return None, "valid_days must be at least 1."
        return {"client_id": self.client_id, "redirect_uri": redirect_uri,
                "state": params["state"], "institution_id": institution_id,
                "code_challenge": challenge, "code_challenge_method": "S256",
                "valid_days": min(valid_days, MAX_CONSENT_DAYS),
                "lang": params.get("lang") or "en"}, None

    @staticmethod
    def _page(title, body, lang="en", status=200):
        text = (f'<!DOCTYPE html>\n<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title>"
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                "<style>body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}"
                "button{font-size:1em;padding:.5em 1.2em;margin-right:.5em}"
                "li{margin:.3em 0}</style></head>"
                f'<body><h1><img src="/static/sandbox-bank.svg" alt="" width="32" height="32"> '
                f"Sandbox Bank</h1>{body}</body></html>\n")
        return Response.html(status, text)

    def _error_page(self, message):
        return self._page("Sandbox Bank – Error",
                          f"<p><strong>Invalid request.</strong> {html.escape(message)}</p>",
                          status=400)

    def _consent_page(self, request):
        params, problem = self._consent_params(request.query)
        if problem:
            return self._error_page(problem)
        institution = self._institution(params["institution_id"])
        accounts = "".join(
            f"<li>{html.escape(spec['name'])} – {html.escape(spec['masked_number'])} "
            f"({html.escape(spec['currency'])})</li>"
            for spec in data.ACCOUNTS[params["institution_id"]])
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(str(params[name]))}">'
            for name in ("client_id", "redirect_uri", "state", "institution_id",
                         "code_challenge", "code_challenge_method", "valid_days", "lang"))
        body = (f"<h2>{html.escape(institution['name'])}</h2>"
                "<p>An application asks to read the following accounts of "
                "<strong>Sandbox Demo Company</strong> (balances and transactions) for "
                f"{params['valid_days']} days:</p><ul>{accounts}</ul>"
                f'<form method="post" action="/consent/decision">{hidden}'
                '<button type="submit" name="decision" value="approve">Allow access</button>'
                '<button type="submit" name="decision" value="cancel">Cancel</button></form>')
        return self._page("Sandbox Bank – Consent", body, params["lang"])

    def _consent_decision(self, request):
        form = request.form()
        params, problem = self._consent_params(form)
        if problem:
            return self._error_page(problem)
        decision = form.get("decision")
        if decision == "approve":
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = {
                    "client_id": params["client_id"], "redirect_uri": params["redirect_uri"],
                    "institution_id": params["institution_id"],
                    "code_challenge": params["code_challenge"],
                    "valid_days": params["valid_days"],
                    "expires_at": self.now() + CODE_TTL}
            answer = {"code": code, "state": params["state"]}
        elif decision == "cancel":
            answer = {"error": "access_denied", "error_description": "The user cancelled",
                      "state": params["state"]}
        else:
            return self._error_page("decision must be approve or cancel.")
        separator = "&" if urlsplit(params["redirect_uri"]).query else (
            "" if params["redirect_uri"].endswith("?") else "?")
        location = params["redirect_uri"] + separator + urlencode(answer)
        return Response(302, b"", None, {"Location": location, "Cache-Control": "no-store"})

    # ------------------------------------------------------------------ API
    def _institutions(self, request):
        self._check_client(request)
        country = (request.query.get("country") or "").upper()
        query = (request.query.get("q") or "").casefold()
        host = request.headers.get("Host")
        base = f"http://{host}" if host else self.url
        result = []
        for institution in data.INSTITUTIONS:
            if country and country not in institution["countries"]:
                continue
            if query and query not in institution["name"].casefold():
                continue
            result.append({**institution, "countries": list(institution["countries"]),
                           "logo_url": f"{base}/static/sandbox-bank.svg"})
        return Response.json(200, {"institutions": result})

    def _token(self, request):
        self._check_client(request)
        form = request.form()
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._token_from_code(form)
        if grant_type == "refresh_token":
            return self._token_from_refresh(form)
        raise ApiError(400, "unsupported_grant_type",
                       "grant_type must be authorization_code or refresh_token")

    def _token_from_code(self, form):
        with self._lock:
            grant = self._codes.pop(form.get("code") or "", None)
            if grant is None:
                raise ApiError(400, "invalid_grant", "unknown or already used authorization code")
            if self.now() >= grant["expires_at"]:
                raise ApiError(400, "invalid_grant", "the authorization code has expired")
            if grant["redirect_uri"] != form.get("redirect_uri"):
                raise ApiError(400, "invalid_grant", "redirect_uri does not match")
            if grant["code_challenge"]:
                verifier = form.get("code_verifier") or ""
                computed = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if not verifier or not secrets.compare_digest(computed, grant["code_challenge"]):
                    raise ApiError(400, "invalid_grant", "code_verifier does not match")
            now = self.now()
            consent_id = "cns_" + secrets.token_hex(8)
            consent = {
                "id": consent_id, "institution_id": grant["institution_id"],
                "created_at": now, "valid_until": now + timedelta(days=grant["valid_days"]),
                "revoked": False,
                "accounts": {
                    "acc_" + hashlib.sha256(f"{consent_id}|{spec['stable_id']}".encode())
                    .hexdigest()[:16]: spec["stable_id"]
                    for spec in data.ACCOUNTS[grant["institution_id"]]},
            }
            self._consents[consent_id] = consent
            return Response.json(200, self._issue_tokens(consent),
                                 {"Cache-Control": "no-store"})

    def _token_from_refresh(self, form):
        with self._lock:
            refresh_token = form.get("refresh_token") or ""
            consent_id = self._refresh_tokens.get(refresh_token)
            if consent_id is None:
                raise ApiError(400, "invalid_grant", "unknown refresh token")
            consent = self._consents[consent_id]
            error = self._consent_state_error(consent)
            if error:
                raise error
            return Response.json(200, self._issue_tokens(consent, refresh_token),
                                 {"Cache-Control": "no-store"})

    def _account_payload(self, account_id, spec):
        return {"id": account_id, **self._public_account(spec)}

    def _consent_account(self, consent, account_id):
        stable_id = consent["accounts"].get(account_id)
        if stable_id is None:
            raise ApiError(404, "ACCOUNT_NOT_FOUND", "no such account in this consent")
        return data.find_account(stable_id)

    def _accounts(self, request):
        consent = self._authenticate(request)
        return Response.json(200, {"accounts": [
            self._account_payload(account_id, data.find_account(stable_id))
            for account_id, stable_id in consent["accounts"].items()]})

    def _balances(self, request, account_id):
        consent = self._authenticate(request)
        spec = self._consent_account(consent, account_id)
        booked, available, today = self._balances_of(spec)
        return Response.json(200, {"balances": [
            {"type": kind, "amount": str(amount), "currency": spec["currency"],
             "date": today.isoformat()}
            for kind, amount in (("booked", booked), ("available", available))]})

    def _transactions(self, request, account_id):
        consent = self._authenticate(request)
        spec = self._consent_account(consent, account_id)
        query = request.query
        with self._lock:
            today = self.today
            history_days = self._config["history_days"]
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        oldest = today - timedelta(days=history_days)
        date_to = _parse_day(query["date_to"], "date_to") if query.get("date_to") else today
        date_from = (_parse_day(query["date_from"], "date_from") if query.get("date_from")
                     else oldest)
        if date_from < oldest:
            raise ApiError(400, "DATE_OUT_OF_RANGE",
                           f"date_from must not be earlier than {oldest.isoformat()} "
                           f"({history_days} days of history)")
        if date_from > date_to:
            raise ApiError(400, "INVALID_REQUEST", "date_from is after date_to")
        status = query.get("status") or "all"
        if status not in ("booked", "pending", "all"):
            raise ApiError(400, "INVALID_REQUEST", "status must be booked, pending or all")
        try:
            limit = int(query.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            raise ApiError(400, "INVALID_REQUEST", "limit must be an integer") from None
        if limit < 1:
            raise ApiError(400, "INVALID_REQUEST", "limit must be at least 1")
        limit = min(limit, MAX_LIMIT)
        fingerprint = hashlib.sha256("|".join((
            account_id, query.get("date_from", ""), query.get("date_to", ""), status,
        )).encode()).hexdigest()[:12]
        offset = self._decode_cursor(query.get("cursor"), fingerprint)

        with_booked, with_pending = status in ("booked", "all"), status in ("pending", "all")
        pending_count = count if with_pending and date_from <= today <= date_to else 0
        last_day = min(date_to, today)
        total = (count * ((last_day - date_from).days + 1) if with_booked and last_day >= date_from
                 else 0) + pending_count
        page = []
        skip = offset
        day = date_from
        while day <= last_day and len(page) < limit:
            size = (count if with_booked else 0) + (pending_count if day == today else 0)
            if skip >= size:
                skip -= size
            else:
                bucket = self._bucket(spec, count, day, with_booked, with_pending, today=today)
                taken = bucket[skip:skip + limit - len(page)]
                page.extend(taken)
                skip = 0
            day += timedelta(days=1)
        end = offset + len(page)
        next_cursor = self._encode_cursor(end, fingerprint) if page and end < total else None
        return Response.json(200, {"transactions": page, "next_cursor": next_cursor})

    @staticmethod
    def _encode_cursor(offset, fingerprint):
        raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor, fingerprint):
        if not cursor:
            return 0
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            payload = json.loads(raw)
            offset = int(payload["o"])
            valid = payload["f"] == fingerprint and offset >= 0
        except (ValueError, KeyError, TypeError, binascii.Error):
            valid = False
        if not valid:
            raise ApiError(400, "INVALID_CURSOR",
                           "the cursor does not belong to this query (same account, dates, status)")
        return offset

    def _revoke(self, request, consent_id):
        consent = self._authenticate(request, data_call=False)
        if consent["id"] != consent_id:
            raise ApiError(404, "CONSENT_NOT_FOUND", "no such consent for this token")
        self.revoke_consent(consent_id)
        return Response(204)

    # ------------------------------------------------------------------ admin API
    @staticmethod
    def _admin(call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, "INVALID_REQUEST", str(exc)) from None

    def _sim_faults_list(self, request):
        return Response.json(200, {"faults": self.faults()})

    def _sim_faults_add(self, request):
        body = request.json()
        unknown = set(body) - {"kind", "times", "skip", "path", "consent_id", "seconds"}
        if unknown:
            raise ApiError(400, "INVALID_REQUEST", f"unknown fields: {', '.join(sorted(unknown))}")
        options = {key: body[key] for key in ("times", "skip", "path", "consent_id", "seconds")
                   if key in body}
        if "skip" in options and options["skip"] is None:
            options["skip"] = 0
        fault = self._admin(self.add_fault, body.get("kind"), **options)
        return Response.json(201, {"fault": fault})

    def _sim_faults_clear(self, request):
        self.clear_faults()
        return Response(204)

    def _sim_clock_get(self, request):
        return Response.json(200, {"today": self.today.isoformat(), "now": _iso(self.now())})

    def _sim_clock_set(self, request):
        body = request.json()
        if "today" in body:
            self._admin(self.set_today, body["today"])
        elif "advance_days" in body:
            if not isinstance(body["advance_days"], int) or isinstance(body["advance_days"], bool):
                raise ApiError(400, "INVALID_REQUEST", "advance_days must be an integer")
            self.advance_days(body["advance_days"])
        else:
            raise ApiError(400, "INVALID_REQUEST", "give today or advance_days")
        return self._sim_clock_get(request)

    def _sim_config_get(self, request):
        return Response.json(200, {"config": self.config()})

    def _sim_config_set(self, request):
        body = request.json()
        unknown = set(body) - {"history_days", "txns_per_day", "access_token_ttl"}
        if unknown:
            raise ApiError(400, "INVALID_REQUEST", f"unknown fields: {', '.join(sorted(unknown))}")
        return Response.json(200, {"config": self._admin(self.configure, **body)})

    def _sim_reset(self, request):
        self.reset()
        return Response(204)

    def _sim_stats(self, request):
        return Response.json(200, self.stats())

    def _sim_consents(self, request):
        return Response.json(200, {"consents": self.consents()})

    def _sim_revoke(self, request, consent_id):
        if not self.revoke_consent(consent_id):
            raise ApiError(404, "CONSENT_NOT_FOUND", "no such consent")
        return Response.json(200, {"consent": next(
            c for c in self.consents() if c["id"] == consent_id)})


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
    """Play the user in a browser: open the consent page, click "Allow access" (``approve``) or
    "Cancel" (``cancel``) and return the query parameters the bank redirects back with.

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
        raise RuntimeError(f"the consent page answered HTTP {status}: {page[:200]!r}")
    form = _FormParser()
    form.feed(page.decode("utf-8"))
    if decision not in form.decisions or not form.action:
        raise RuntimeError("the consent page has no such decision button")
    body = urlencode({**form.fields, "decision": decision})
    status, headers, _ = call("POST", urljoin(parts.path, form.action), body,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    location = headers.get("Location")
    if status != 302 or not location:
        raise RuntimeError(f"the consent decision answered HTTP {status}")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


__all__ = ["SandboxBankServer", "simulate_user", "FAULT_KINDS"]
