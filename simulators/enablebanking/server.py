"""A local Enable Banking API (AIS part) on 127.0.0.1, for tests and demos (see README.md).

Standard library plus ``cryptography`` (to verify the RS256 JWT every call carries). One
``EnableBankingServer`` is one Enable Banking application with its ASPSPs: authorizations,
sessions, simulated clock, configuration, quotas and fault knobs live in the object, guarded by a
lock, reachable over HTTP (``/_sim/...``) and from Python (``server.add_fault(...)``).

Facts marked ⚠️ in the reference (unconfirmed HTTP statuses, bodies, codes) are kept in the
``ERRORS`` table and the few constants below, so they are easy to correct.
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
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import data

_logger = logging.getLogger(__name__)

DEFAULT_APPLICATION_ID = "00000000-0000-4000-8000-0000000000eb"
JWT_ISSUER = "enablebanking.com"
JWT_AUDIENCE = "api.enablebanking.com"
JWT_MAX_TTL = 86400  # seconds between iat and exp
JWT_CLOCK_SKEW = 60  # seconds of tolerance on iat / exp

DEFAULT_HISTORY_DAYS = 90
DEFAULT_TXNS_PER_DAY = {"EUR": 3, "USD": 1, "SEK": 1}
# ⚠️ The page size is the ASPSP's; 50 gives several pages with the default data.
DEFAULT_PAGE_SIZE = 50
# PSD2 RTS art. 36(5): 4 unattended accesses per account per 24 h (✅); counted here per account
# and simulated calendar day (⚠️), on balances and on the first page of transactions (⚠️:
# continuation pages are not counted).
DEFAULT_UNATTENDED_DAILY_LIMIT = 4
ENTRY_REFERENCE_MODES = ("stable", "changing", "repeating", "missing")
REPEATED_ENTRY_REFERENCE = "NONREF"
CODE_TTL = timedelta(minutes=10)
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 60
PSU_IP_HEADER = "Psu-Ip-Address"
PSU_USER_AGENT_HEADER = "Psu-User-Agent"

# Error code -> (HTTP status, message). Body: {"code": status, "message", "error": code, "detail"}.
ERRORS = {
    "AUTHORIZATION_NOT_PROVIDED": (401, "Authorization header is not provided"),
    "UNAUTHORIZED_ACCESS": (401, "The JWT is not valid for this application"),  # ⚠️ code
    "REDIRECT_URI_NOT_ALLOWED": (400, "Redirect URI is not allowed"),  # ⚠️ status
    "WRONG_ASPSP_PROVIDED": (400, "Wrong ASPSP name or country provided"),  # ⚠️
    "WRONG_REQUEST_PARAMETERS": (422, "Wrong request parameters provided"),  # ⚠️ status
    "WRONG_AUTHORIZATION_CODE": (400, "Wrong authorization code provided"),  # ⚠️
    "EXPIRED_AUTHORIZATION_CODE": (400, "Authorization code has expired"),  # ⚠️
    "EXPIRED_SESSION": (401, "Session has expired"),
    "CLOSED_SESSION": (401, "Session is closed"),  # ⚠️ status
    "REVOKED_SESSION": (401, "Session has been revoked"),  # ⚠️ status
    "SESSION_DOES_NOT_EXIST": (404, "Session does not exist"),  # ⚠️ status
    "ACCOUNT_DOES_NOT_EXIST": (404, "Account does not exist"),  # ❓ code
    "WRONG_TRANSACTIONS_PERIOD": (422, "Wrong transactions period requested"),
    "ASPSP_RATE_LIMIT_EXCEEDED": (429, "ASPSP rate limit exceeded"),
    "ASPSP_PSU_ACTION_REQUIRED": (403, "ASPSP requires an action from the PSU"),  # ⚠️ status
    "PSU_HEADER_NOT_PROVIDED": (400, "Required PSU header is not provided"),  # ⚠️
    "ASPSP_ERROR": (502, "Error interacting with ASPSP"),  # ⚠️ status
    "ASPSP_TIMEOUT": (504, "Timeout interacting with ASPSP"),  # ⚠️ status
    "INTERNAL_SERVER_ERROR": (500, "Internal server error"),  # ❓ code
    "NOT_FOUND": (404, "Not found"),
    "METHOD_NOT_ALLOWED": (405, "Method not allowed"),
}

FAULT_KINDS = ("delay", "timeout", "http_500", "rate_limit", "malformed_json", "consent_expired",
               "user_must_be_present", "closed_session", "revoked_session",
               "session_does_not_exist", "psu_action_required", "aspsp_error", "aspsp_timeout",
               "wrong_transactions_period", "unauthorized", "continuation_loop")
# Faults that answer with an error code of ERRORS.
_FAULT_ERRORS = {
    "http_500": "INTERNAL_SERVER_ERROR",
    "consent_expired": "EXPIRED_SESSION",
    "user_must_be_present": "PSU_HEADER_NOT_PROVIDED",
    "closed_session": "CLOSED_SESSION",
    "revoked_session": "REVOKED_SESSION",
    "session_does_not_exist": "SESSION_DOES_NOT_EXIST",
    "psu_action_required": "ASPSP_PSU_ACTION_REQUIRED",
    "aspsp_error": "ASPSP_ERROR",
    "aspsp_timeout": "ASPSP_TIMEOUT",
    "wrong_transactions_period": "WRONG_TRANSACTIONS_PERIOD",
    "unauthorized": "UNAUTHORIZED_ACCESS",
}
# Session status -> error code of a data call made with one of its account uids.
_SESSION_STATE_ERRORS = {"CLOSED": "CLOSED_SESSION", "REVOKED": "REVOKED_SESSION",
                         "EXPIRED": "EXPIRED_SESSION"}

LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect width="64" height="64" rx="12" fill="#0b3d91"/><circle cx="32" cy="32" r="14" fill="#fff"/>
</svg>
"""

_NO_ANSWER = object()


def _utcnow():
    return datetime.now(timezone.utc)


def _iso(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def _as_day(value):
    return value if isinstance(value, date) and not isinstance(value, datetime) else \
        date.fromisoformat(str(value))


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_public_key(key):
    """An RSA public key from a key object, PEM text/bytes of a public key, or of a private key."""
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        return key.public_key()
    pem = key.encode() if isinstance(key, str) else bytes(key)
    if b"PRIVATE KEY" in pem:
        return serialization.load_pem_private_key(pem, None, default_backend()).public_key()
    loaded = serialization.load_pem_public_key(pem, default_backend())
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise ValueError("the application key must be an RSA key")
    return loaded


class ApiError(Exception):
    """An error answer ``{"code": <status>, "message", "error": <CODE>, "detail"}``."""

    def __init__(self, code, message=None, detail=None, headers=None):
        status, default_message = ERRORS[code]
        super().__init__(message or default_message)
        self.status = status
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.headers = headers or {}


def verify_jwt(token, public_key, application_id, now=None):
    """Check an application JWT as Enable Banking does; returns its claims or raises ApiError.

    RS256 signature with the application's key, ``kid`` = application id, ``iss``, ``aud``,
    ``iat`` not in the future, ``exp`` in the future and at most 24 h after ``iat`` (real clock).
    Messages never echo the token.
    """
    now = (now or _utcnow()).timestamp()
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(payload_b64))
        signature = _b64url_decode(signature_b64)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT is malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT is malformed")
    if header.get("alg") != "RS256":
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT must be signed with RS256")
    if header.get("kid") != application_id:
        raise ApiError("UNAUTHORIZED_ACCESS", "Unknown application (kid)")
    try:
        public_key.verify(signature, f"{header_b64}.{payload_b64}".encode("ascii"),
                          padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, UnicodeEncodeError):
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT signature is not valid") from None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != JWT_ISSUER:
        raise ApiError("UNAUTHORIZED_ACCESS", "Wrong JWT issuer")
    if JWT_AUDIENCE not in audiences:
        raise ApiError("UNAUTHORIZED_ACCESS", "Wrong JWT audience")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)) \
            or isinstance(iat, bool) or isinstance(exp, bool):
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT needs iat and exp")
    if iat > now + JWT_CLOCK_SKEW:
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT is issued in the future")
    if exp <= now - JWT_CLOCK_SKEW:
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT has expired")
    if exp - iat > JWT_MAX_TTL:
        raise ApiError("UNAUTHORIZED_ACCESS", "The JWT is valid for more than 24 hours")
    return claims


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
        self.session_id = None  # the session the request concerns, for fault matching
        self.loop_continuation = False

    def json(self):
        try:
            payload = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError("WRONG_REQUEST_PARAMETERS", "The body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ApiError("WRONG_REQUEST_PARAMETERS", "The body must be a JSON object")
        return payload

    def form(self):
        text = self.body.decode("utf-8", "replace")
        return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}

    def header(self, name):
        return (self.headers.get(name) or "").strip()

    @property
    def attended(self):
        """The PSU is present: the call carries the PSU's IP address."""
        return bool(self.header(PSU_IP_HEADER))


def _route(method, pattern, template, handler, api=True):
    return method, re.compile(pattern + r"\Z"), template, handler, api


ROUTES = (
    _route("GET", r"/application", "/application", "_application"),
    _route("GET", r"/aspsps", "/aspsps", "_aspsps"),
    _route("POST", r"/auth", "/auth", "_auth"),
    _route("POST", r"/sessions", "/sessions", "_create_session"),
    _route("GET", r"/sessions/(?P<session_id>[^/]+)", "/sessions/{id}", "_get_session"),
    _route("DELETE", r"/sessions/(?P<session_id>[^/]+)", "/sessions/{id}", "_delete_session"),
    _route("GET", r"/accounts/(?P<uid>[^/]+)/details", "/accounts/{uid}/details", "_details"),
    _route("GET", r"/accounts/(?P<uid>[^/]+)/balances", "/accounts/{uid}/balances", "_balances"),
    _route("GET", r"/accounts/(?P<uid>[^/]+)/transactions", "/accounts/{uid}/transactions",
           "_transactions"),
    _route("GET", r"/welcome", "/welcome", "_consent_page", api=False),
    _route("POST", r"/welcome/decision", "/welcome/decision", "_consent_decision", api=False),
    _route("GET", r"/static/logo\.svg", "/static/logo.svg", "_logo", api=False),
    _route("GET", r"/_sim/faults", "/_sim/faults", "_sim_faults_list", api=False),
    _route("POST", r"/_sim/faults", "/_sim/faults", "_sim_faults_add", api=False),
    _route("DELETE", r"/_sim/faults", "/_sim/faults", "_sim_faults_clear", api=False),
    _route("GET", r"/_sim/clock", "/_sim/clock", "_sim_clock_get", api=False),
    _route("POST", r"/_sim/clock", "/_sim/clock", "_sim_clock_set", api=False),
    _route("GET", r"/_sim/config", "/_sim/config", "_sim_config_get", api=False),
    _route("POST", r"/_sim/config", "/_sim/config", "_sim_config_set", api=False),
    _route("POST", r"/_sim/reset", "/_sim/reset", "_sim_reset", api=False),
    _route("GET", r"/_sim/stats", "/_sim/stats", "_sim_stats", api=False),
    _route("GET", r"/_sim/sessions", "/_sim/sessions", "_sim_sessions", api=False),
    _route("POST", r"/_sim/sessions/(?P<session_id>[^/]+)/revoke", "/_sim/sessions/{id}/revoke",
           "_sim_revoke", api=False),
)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EnableBankingSimulator/1.0"
    sys_version = ""
    timeout = 60
    # Headers and body are written separately: without TCP_NODELAY every keep-alive answer
    # waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.server.bank._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.bank._track(self.connection, False)

    def log_request(self, code="-", size="-"):
        # The path only: query strings (continuation keys) and headers (JWTs) are never logged.
        self.log_message("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format, *args):  # noqa: A002
        if self.server.bank.verbose:
            _logger.info("enable banking simulator: " + format, *args)

    def _handle(self, method):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 1_000_000:
            self.close_connection = True
            self._write(Response.json(400, {"code": 400, "message": "Bad Content-Length",
                                            "error": "WRONG_REQUEST_PARAMETERS", "detail": None}))
            return
        body = self.rfile.read(length) if length else b""
        response = self.server.bank.handle(Request(method, self.path, self.headers, body))
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


class EnableBankingServer:
    """Enable Banking on ``http://host:port`` (port 0: a free port), run in a daemon thread.

    ``public_key``: the application's RSA public key (PEM text/bytes or key object; a private key
    is accepted too and its public half used). Without it a demo key pair is made and
    ``client_config()`` hands its private key out. ``redirect_urls``: the application's registered
    redirect URLs (None: any http(s) URL is allowed). ``today`` is the real UTC date unless the
    simulated clock is moved; JWTs are always checked against the real clock.
    """

    def __init__(self, host="127.0.0.1", port=0, *, public_key=None,
                 application_id=DEFAULT_APPLICATION_ID, redirect_urls=None,
                 history_days=DEFAULT_HISTORY_DAYS, txns_per_day=None, today=None, verbose=False):
        self.host = host
        self.port = port
        self.application_id = application_id
        self.demo_private_key_pem = None
        if public_key is None:
            # No application key given: make a demo one and hand its private half to clients
            # (``client_config()``); a real application keeps its private key to itself.
            demo = rsa.generate_private_key(65537, 2048, default_backend())
            self.demo_private_key_pem = demo.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode("ascii")
            public_key = demo.public_key()
        self._public_key = load_public_key(public_key)
        self.redirect_urls = list(redirect_urls) if redirect_urls is not None else None
        self.verbose = verbose
        self._initial = {"history_days": history_days, "txns_per_day": txns_per_day,
                         "today": today}
        self._key_secret = secrets.token_bytes(32)  # signs continuation keys
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections = set()
        self._httpd = None
        self._thread = None
        self._reset_state()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        if self._httpd is not None:
            raise RuntimeError("the simulator is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.bank = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name=f"enablebanking-sim-{self.port}", daemon=True)
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

    def client_config(self):
        """Adapter config for this simulator (the private key only with a demo key)."""
        config = {"base_url": self.url, "application_id": self.application_id,
                  "environment": "sandbox"}
        if self.demo_private_key_pem:
            config["private_key"] = self.demo_private_key_pem
        return config

    def _track(self, connection, alive):
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(connection)

    # ------------------------------------------------------------------ state
    def _reset_state(self):
        with self._lock:
            self._offset_days = 0
            self._config = {
                "history_days": DEFAULT_HISTORY_DAYS,
                "txns_per_day": dict(DEFAULT_TXNS_PER_DAY),
                "page_size": DEFAULT_PAGE_SIZE,
                "entry_reference": "stable",
                "unattended_daily_limit": DEFAULT_UNATTENDED_DAILY_LIMIT,
            }
            self._authorizations = {}
            self._codes = {}
            self._sessions = {}
            self._uids = {}
            self._quota = Counter()
            self._faults = []
            self._fault_seq = 0
            self._stats = Counter()
            self._faults_triggered = 0
            self._retrievals = 0
            initial = self._initial
            if initial["today"] is not None:
                self._offset_days = (_as_day(initial["today"]) - _utcnow().date()).days
            self._configure(history_days=initial["history_days"],
                            txns_per_day=initial["txns_per_day"])
            self._origin = self.today - timedelta(days=self._config["history_days"])

    def reset(self):
        """Back to a new server's state: clock, configuration, sessions, quotas, faults, stats."""
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

    def _to_simulated(self, moment):
        """A timestamp of the client (real clock) on the simulated clock."""
        return moment + timedelta(days=self._offset_days)

    def configure(self, history_days=None, txns_per_day=None, page_size=None,
                  entry_reference=None, unattended_daily_limit=False):
        """Change the data parameters (any subset); returns the configuration.

        ``history_days`` is how far back the bank's data goes: its history starts again at
        today − ``history_days`` (the first day ``expected_booked`` and the balances count from
        is the first day the API can serve), longer or shorter than before.
        ``unattended_daily_limit=None`` disables the quota (the default argument leaves it).
        """
        with self._lock:
            self._configure(history_days, txns_per_day, page_size, entry_reference,
                            unattended_daily_limit)
            if history_days is not None:
                self._origin = self.today - timedelta(days=self._config["history_days"])
            self._extend_origin()
            return self.config()

    def _configure(self, history_days=None, txns_per_day=None, page_size=None,
                   entry_reference=None, unattended_daily_limit=False):
        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        if history_days is not None:
            if not is_int(history_days) or not 1 <= history_days <= 3650:
                raise ValueError("history_days must be an integer between 1 and 3650")
            self._config["history_days"] = history_days
        if txns_per_day is not None:
            if not isinstance(txns_per_day, dict):
                raise ValueError('txns_per_day must be a dict like {"EUR": 3, "USD": 1}')
            merged = dict(self._config["txns_per_day"])
            for currency, count in txns_per_day.items():
                if currency not in data.CURRENCIES:
                    raise ValueError(f"unknown currency {currency!r}")
                if not is_int(count) or not 0 <= count <= 500:
                    raise ValueError("transactions per day must be an integer between 0 and 500")
                merged[currency] = count
            self._config["txns_per_day"] = merged
        if page_size is not None:
            if not is_int(page_size) or not 1 <= page_size <= 1000:
                raise ValueError("page_size must be an integer between 1 and 1000")
            self._config["page_size"] = page_size
        if entry_reference is not None:
            if entry_reference not in ENTRY_REFERENCE_MODES:
                raise ValueError("entry_reference must be one of "
                                 + ", ".join(ENTRY_REFERENCE_MODES))
            self._config["entry_reference"] = entry_reference
        if unattended_daily_limit is not False:
            if unattended_daily_limit is not None and (
                    not is_int(unattended_daily_limit) or unattended_daily_limit < 0):
                raise ValueError("unattended_daily_limit must be a non-negative integer or None")
            self._config["unattended_daily_limit"] = unattended_daily_limit

    def config(self):
        with self._lock:
            return {**{key: (dict(value) if isinstance(value, dict) else value)
                       for key, value in self._config.items()},
                    "today": self.today.isoformat(), "first_day": self._origin.isoformat()}

    # ------------------------------------------------------------------ faults
    def add_fault(self, kind, *, times=1, skip=0, path=None, consent_id=None, seconds=None):
        """Arm a fault (see README.md); ``consent_id`` is a session id. Returns its description."""
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
                if fault["path"] is not None and fault["path"] not in request.path:
                    continue
                if fault["consent_id"] is not None and fault["consent_id"] != request.session_id:
                    continue
                if fault["kind"] == "user_must_be_present" and request.attended:
                    continue
                if fault["kind"] == "continuation_loop" and not request.path.endswith(
                        "/transactions"):
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
        """A Response, ``_NO_ANSWER``, or None to answer normally."""
        kind, seconds = fault["kind"], fault["seconds"]
        if kind == "delay":
            self._stopping.wait(1.0 if seconds is None else seconds)
            return None
        if kind == "timeout":
            self._stopping.wait(DEFAULT_TIMEOUT_FAULT_SECONDS if seconds is None else seconds)
            return _NO_ANSWER
        if kind == "rate_limit":
            wait = int(-(-(DEFAULT_RETRY_AFTER if seconds is None else seconds) // 1))
            raise ApiError("ASPSP_RATE_LIMIT_EXCEEDED", headers={"Retry-After": str(wait)})
        if kind == "malformed_json":
            return Response(200, b'{"transactions": [{"entry_reference": "2024', "application/json")
        if kind == "continuation_loop":
            request.loop_continuation = True
            return None
        raise ApiError(_FAULT_ERRORS[kind])

    # ------------------------------------------------------------------ introspection
    def stats(self):
        """Requests per ``METHOD /path/template`` (admin and browser pages not counted)."""
        with self._lock:
            return {"requests": dict(self._stats), "total": sum(self._stats.values()),
                    "faults_triggered": self._faults_triggered}

    def sessions(self):
        with self._lock:
            return [self._session_view(session) for session in self._sessions.values()]

    def _session_status(self, session):
        if session["status"] == "AUTHORIZED" and self.now() >= session["valid_until"]:
            return "EXPIRED"
        return session["status"]

    def _session_view(self, session):
        return {"session_id": session["id"], "status": self._session_status(session),
                "aspsp": dict(session["aspsp"]), "psu_type": session["psu_type"],
                "created": _iso(session["created"]), "valid_until": _iso(session["valid_until"]),
                "accounts": list(session["accounts"])}

    def revoke_session(self, session_id):
        """Revoke a session as if the user did it at the bank; False if unknown."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return False
            session["status"] = "REVOKED"
            return True

    # Alias matching the Sandbox Bank's admin API.
    revoke_consent = revoke_session

    def accounts(self, aspsp=("Demo Bank", "BE")):
        """The accounts an ASPSP shares (without session uids)."""
        return [self._account_payload(None, spec) for spec in data.ACCOUNTS[tuple(aspsp)]]

    def _account_spec(self, account):
        """Spec by IBAN, other identification, identification hash or a session's uid."""
        with self._lock:
            entry = self._uids.get(account)
        spec = data.find_account(entry[1] if entry else account)
        if spec is None:
            raise KeyError(f"unknown account {account!r}")
        return spec

    def _entry_reference(self, txn, mode, retrieval):
        if mode == "stable":
            return txn.stable_entry_reference()
        if mode == "repeating":
            return REPEATED_ENTRY_REFERENCE
        if mode == "changing":
            return hashlib.sha256(f"{txn.seed}|{retrieval}".encode()).hexdigest()[:16].upper()
        return None

    def expected_booked(self, account, date_from, date_to):
        """The booked transactions (API dicts) the bank holds for ``account`` (IBAN, account uid,
        identification hash) booked in [date_from, date_to], in API order, not limited by the
        history window. In "changing" mode the entry references are the stable ones."""
        spec = self._account_spec(account)
        date_from, date_to = _as_day(date_from), _as_day(date_to)
        with self._lock:
            start, end = max(date_from, self._origin), min(date_to, self.today)
            count = self._config["txns_per_day"].get(spec["currency"], 0)
            mode = self._config["entry_reference"]
        mode = "stable" if mode == "changing" else mode
        result = []
        day = start
        while day <= end:
            result.extend(txn.booked(self._entry_reference(txn, mode, 0))
                          for txn in data.transactions_booking_on(spec, day, count))
            day += timedelta(days=1)
        return result

    def expected_pending(self, account):
        """The pending transactions (API dicts) of ``account`` today."""
        spec = self._account_spec(account)
        with self._lock:
            today = self.today
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        return [txn.pending() for txn in
                data.transactions_booking_on(spec, today + timedelta(days=1), count)]

    def expected_balances(self, account):
        """``{"booked": Decimal, "available": Decimal}`` of ``account`` today."""
        booked, available, _today = self._balances_of(self._account_spec(account))
        return {"booked": booked, "available": available}

    def _balances_of(self, spec):
        with self._lock:
            today, origin = self.today, self._origin
            count = self._config["txns_per_day"].get(spec["currency"], 0)
        booked = spec["opening_balance"]
        day = origin
        while day <= today:
            booked += data.day_total(spec, day, count)
            day += timedelta(days=1)
        pending = data.day_total(spec, today + timedelta(days=1), count)
        return booked, booked + pending, today

    # ------------------------------------------------------------------ dispatch
    def handle(self, request):
        route, params, allowed = self._match(request)
        if route is None:
            code = "METHOD_NOT_ALLOWED" if allowed else "NOT_FOUND"
            return self._error_response(ApiError(code))
        template, handler, is_api = route
        if is_api:
            with self._lock:
                self._stats[f"{request.method} {template}"] += 1
        try:
            if is_api:
                self._check_jwt(request)
                request.session_id = self._session_of(params)
                fault = self._take_fault(request)
                if fault is not None:
                    outcome = self._apply_fault(fault, request)
                    if outcome is not None:
                        return outcome
                    if self._stopping.is_set():
                        return _NO_ANSWER
            return getattr(self, handler)(request, **params)
        except ApiError as error:
            return self._error_response(error)
        except Exception:  # pragma: no cover - a bug of the simulator itself
            _logger.exception("enable banking simulator: %s %s failed", request.method,
                              request.path)
            return self._error_response(ApiError("INTERNAL_SERVER_ERROR"))

    @staticmethod
    def _match(request):
        allowed = set()
        for method, pattern, template, handler, is_api in ROUTES:
            match = pattern.match(request.path)
            if match:
                if method == request.method:
                    return (template, handler, is_api), match.groupdict(), allowed
                allowed.add(method)
        return None, {}, allowed

    @staticmethod
    def _error_response(error):
        return Response.json(error.status, {"code": error.status, "message": error.message,
                                            "error": error.code, "detail": error.detail},
                             error.headers)

    def _check_jwt(self, request):
        value = request.header("Authorization")
        if not value:
            raise ApiError("AUTHORIZATION_NOT_PROVIDED")
        if value[:7].lower() != "bearer " or not value[7:].strip():
            raise ApiError("UNAUTHORIZED_ACCESS", "Authorization must be a Bearer JWT")
        verify_jwt(value[7:].strip(), self._public_key, self.application_id)

    def _session_of(self, params):
        if "session_id" in params:
            return params["session_id"]
        if "uid" in params:
            with self._lock:
                entry = self._uids.get(params["uid"])
            return entry[0] if entry else None
        return None

    # ------------------------------------------------------------------ application, ASPSPs
    def _application(self, request):
        return Response.json(200, {
            "name": "Local simulator application", "description": None,
            "kid": self.application_id, "environment": "SANDBOX",
            "redirect_urls": list(self.redirect_urls or []), "active": True,
            "countries": sorted({aspsp["country"] for aspsp in data.ASPSPS}),
            "services": ["AIS"]})

    def _logo_url(self, request):
        host = request.header("Host")
        return f"http://{host}/static/logo.svg" if host else f"{self.url}/static/logo.svg"

    def _aspsp_payload(self, aspsp, request):
        return {**{key: (list(value) if isinstance(value, list) else value)
                   for key, value in aspsp.items()},
                "logo": self._logo_url(request)}

    def _aspsps(self, request):
        country = (request.query.get("country") or "").upper()
        psu_type = request.query.get("psu_type")
        return Response.json(200, {"aspsps": [
            self._aspsp_payload(aspsp, request) for aspsp in data.ASPSPS
            if (not country or aspsp["country"] == country)
            and (not psu_type or psu_type in aspsp["psu_types"])]})

    def _logo(self, request):
        return Response(200, LOGO_SVG.encode(), "image/svg+xml")

    # ------------------------------------------------------------------ authorization
    def _auth(self, request):
        body = request.json()
        aspsp_ref = body.get("aspsp") if isinstance(body.get("aspsp"), dict) else {}
        aspsp = data.find_aspsp(aspsp_ref.get("name"), aspsp_ref.get("country"))
        if aspsp is None:
            raise ApiError("WRONG_ASPSP_PROVIDED")
        redirect_url = body.get("redirect_url")
        parts = urlsplit(redirect_url if isinstance(redirect_url, str) else "")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment or (
                self.redirect_urls is not None and redirect_url not in self.redirect_urls):
            raise ApiError("REDIRECT_URI_NOT_ALLOWED")
        state = body.get("state")
        if not isinstance(state, str) or not state:
            raise ApiError("WRONG_REQUEST_PARAMETERS", detail="state is required")
        psu_type = body.get("psu_type", "personal")
        if psu_type not in aspsp["psu_types"]:
            raise ApiError("WRONG_REQUEST_PARAMETERS",
                           detail=f"psu_type must be one of {aspsp['psu_types']}")
        access = body.get("access") if isinstance(body.get("access"), dict) else {}
        try:
            valid_until = datetime.fromisoformat(
                str(access.get("valid_until")).replace("Z", "+00:00"))
        except ValueError:
            raise ApiError("WRONG_REQUEST_PARAMETERS",
                           detail="access.valid_until must be an RFC 3339 timestamp") from None
        if valid_until.tzinfo is None:
            raise ApiError("WRONG_REQUEST_PARAMETERS",
                           detail="access.valid_until needs a time zone")
        with self._lock:
            now = self.now()
            valid_until = self._to_simulated(valid_until.astimezone(timezone.utc))
            if valid_until <= now:
                raise ApiError("WRONG_REQUEST_PARAMETERS",
                               detail="access.valid_until must be in the future")
            if valid_until > now + timedelta(seconds=aspsp["maximum_consent_validity"]):
                raise ApiError("WRONG_REQUEST_PARAMETERS", detail=(
                    "access.valid_until exceeds the ASPSP's maximum_consent_validity of "
                    f"{aspsp['maximum_consent_validity']} seconds"))
            authorization_id = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
            self._authorizations[authorization_id] = {
                "id": authorization_id, "aspsp": (aspsp["name"], aspsp["country"]),
                "state": state, "redirect_url": redirect_url, "psu_type": psu_type,
                "valid_until": valid_until, "language": body.get("language") or "en",
                "decided": False}
        url = f"{self.url}/welcome?{urlencode({'sessionid': authorization_id})}"
        return Response.json(200, {"url": url, "authorization_id": authorization_id,
                                   "psu_id_hash": None})

    def _page(self, title, body, lang="en", status=200):
        text = (f'<!DOCTYPE html>\n<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title></head>"
                '<body style="font-family:sans-serif;max-width:36em;margin:2em auto">'
                f"<h1>Enable Banking (simulator)</h1>{body}</body></html>\n")
        return Response.html(status, text)

    def _consent_page(self, request):
        with self._lock:
            authorization = self._authorizations.get(request.query.get("sessionid") or "")
            authorization = dict(authorization) if authorization else None
        if authorization is None or authorization["decided"]:
            return self._page("Error", "<p>Unknown or finished authorization.</p>", status=400)
        name, country = authorization["aspsp"]
        accounts = "".join(
            f"<li>{html.escape(spec['product'])} – {html.escape(spec['iban'] or spec['other'])} "
            f"({html.escape(spec['currency'])})</li>"
            for spec in data.ACCOUNTS[authorization["aspsp"]])
        body = (f"<h2>{html.escape(name)} ({html.escape(country)})</h2>"
                "<p>Give access to the balances and transactions of these accounts until "
                f"{html.escape(_iso(authorization['valid_until']))}:</p><ul>{accounts}</ul>"
                '<form method="post" action="/welcome/decision">'
                '<input type="hidden" name="sessionid" '
                f'value="{html.escape(authorization["id"])}">'
                '<button type="submit" name="decision" value="approve">Allow</button>'
                '<button type="submit" name="decision" value="cancel">Cancel</button></form>')
        return self._page(f"{name} – Consent", body, authorization["language"])

    def _consent_decision(self, request):
        form = request.form()
        decision = form.get("decision")
        if decision not in ("approve", "cancel"):
            return self._page("Error", "<p>decision must be approve or cancel.</p>", status=400)
        with self._lock:
            authorization = self._authorizations.get(form.get("sessionid") or "")
            if authorization is None or authorization["decided"]:
                return self._page("Error", "<p>Unknown or finished authorization.</p>",
                                  status=400)
            authorization["decided"] = True
            if decision == "approve":
                code = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
                self._codes[code] = {"authorization_id": authorization["id"],
                                     "expires_at": self.now() + CODE_TTL}
                answer = {"code": code, "state": authorization["state"]}
            else:
                answer = {"state": authorization["state"], "error": "access_denied",
                          "error_description": "The user cancelled the authorization"}
            redirect_url = authorization["redirect_url"]
        separator = "&" if urlsplit(redirect_url).query else "?"
        return Response(302, b"", None, {"Location": redirect_url + separator + urlencode(answer),
                                         "Cache-Control": "no-store"})

    # ------------------------------------------------------------------ sessions
    def _account_payload(self, uid, spec):
        if spec["iban"]:
            account_id = {"iban": spec["iban"], "other": None}
            all_ids = [{"identification": spec["iban"], "scheme_name": "IBAN", "issuer": None}]
        else:
            other = {"identification": spec["other"], "scheme_name": "BBAN", "issuer": None}
            account_id = {"iban": None, "other": other}
            all_ids = [dict(other)]
        aspsp = data.find_aspsp(*spec["aspsp"])
        return {"uid": uid, "account_id": account_id, "all_account_ids": all_ids,
                "account_servicer": {"bic_fi": aspsp["bic"], "name": aspsp["name"]},
                "name": spec["holder"], "details": spec["product"], "usage": "ORGA",
                "cash_account_type": spec["cash_account_type"], "product": spec["product"],
                "currency": spec["currency"], "psu_status": "Account Holder",
                "credit_limit": None, "identification_hash": spec["identification_hash"],
                "identification_hashes": [spec["identification_hash"]]}

    def _create_session(self, request):
        code = request.json().get("code")
        with self._lock:
            grant = self._codes.pop(code, None) if isinstance(code, str) else None
            if grant is None:
                raise ApiError("WRONG_AUTHORIZATION_CODE")
            now = self.now()
            if now >= grant["expires_at"]:
                raise ApiError("EXPIRED_AUTHORIZATION_CODE")
            authorization = self._authorizations[grant["authorization_id"]]
            session_id = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
            accounts = {}
            for spec in data.ACCOUNTS[authorization["aspsp"]]:
                # A new session gets new account uids (they are session-scoped).
                uid = str(uuid.UUID(bytes=hashlib.sha256(
                    f"{session_id}|{spec['key']}".encode()).digest()[:16], version=4))
                accounts[uid] = spec["key"]
                self._uids[uid] = (session_id, spec["key"])
            session = {"id": session_id, "status": "AUTHORIZED",
                       "aspsp": {"name": authorization["aspsp"][0],
                                 "country": authorization["aspsp"][1]},
                       "psu_type": authorization["psu_type"], "created": now,
                       "valid_until": authorization["valid_until"], "accounts": accounts}
            self._sessions[session_id] = session
        return Response.json(200, {
            "session_id": session_id,
            "accounts": [self._account_payload(uid, data.find_account(key))
                         for uid, key in accounts.items()],
            "aspsp": dict(session["aspsp"]), "psu_type": session["psu_type"],
            "access": {"valid_until": _iso(session["valid_until"])}})

    def _get_session(self, request, session_id):
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise ApiError("SESSION_DOES_NOT_EXIST")
            view = self._session_view(session)
        return Response.json(200, {
            "status": view["status"], "accounts": view["accounts"],
            "accounts_data": [{"uid": uid, "identification_hash":
                               data.find_account(key)["identification_hash"]}
                              for uid, key in session["accounts"].items()],
            "aspsp": view["aspsp"], "psu_type": view["psu_type"],
            "access": {"valid_until": view["valid_until"]},
            "created": view["created"], "authorized": view["created"]})

    def _delete_session(self, request, session_id):
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise ApiError("SESSION_DOES_NOT_EXIST")
            status = self._session_status(session)
            if status in _SESSION_STATE_ERRORS:
                raise ApiError(_SESSION_STATE_ERRORS[status])
            session["status"] = "CLOSED"
        return Response.json(200, {"message": "OK"})

    # ------------------------------------------------------------------ account data
    def _account_of(self, request, uid, data_call=True):
        """The spec of ``uid`` after the session, PSU-header and quota checks."""
        with self._lock:
            entry = self._uids.get(uid)
            if entry is None:
                raise ApiError("ACCOUNT_DOES_NOT_EXIST")
            session = self._sessions[entry[0]]
            status = self._session_status(session)
            if status in _SESSION_STATE_ERRORS:
                raise ApiError(_SESSION_STATE_ERRORS[status])
        spec = data.find_account(entry[1])
        aspsp = data.find_aspsp(*spec["aspsp"])
        if data_call:
            missing = [name for name in aspsp["required_psu_headers"] if not request.header(name)]
            if missing:
                raise ApiError("PSU_HEADER_NOT_PROVIDED", detail={"missing_headers": missing})
        return spec

    def _count_unattended(self, request, spec):
        """PSD2 quota: the 5th unattended access of the day to an account is refused."""
        if request.attended:
            return
        with self._lock:
            limit = self._config["unattended_daily_limit"]
            if limit is None:
                return
            now = self.now()
            key = (spec["key"], now.date())
            if self._quota[key] >= limit:
                midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(),
                                            timezone.utc)
                wait = max(1, int((midnight - now).total_seconds()) + 1)
                # ⚠️ whether Enable Banking sends Retry-After on this 429 is not confirmed.
                raise ApiError("ASPSP_RATE_LIMIT_EXCEEDED", detail={
                    "reason": f"at most {limit} unattended accesses per account per day"},
                    headers={"Retry-After": str(wait)})
            self._quota[key] += 1

    def _details(self, request, uid):
        spec = self._account_of(request, uid, data_call=False)
        return Response.json(200, self._account_payload(uid, spec))

    def _balances(self, request, uid):
        spec = self._account_of(request, uid)
        self._count_unattended(request, spec)
        booked, available, today = self._balances_of(spec)
        changed = _iso(self.now())

        def balance(name, amount, kind):
            return {"name": name, "balance_amount": {"currency": spec["currency"],
                                                     "amount": str(amount)},
                    "balance_type": kind, "last_change_date_time": changed,
                    "reference_date": today.isoformat(), "last_committed_transaction": None}

        return Response.json(200, {"balances": [balance("Closing booked", booked, "CLBD"),
                                                balance("Interim available", available, "ITAV")]})

    def _transactions(self, request, uid):
        spec = self._account_of(request, uid)
        query = request.query
        with self._lock:
            today = self.today
            config = dict(self._config)
            count = config["txns_per_day"].get(spec["currency"], 0)
        oldest = today - timedelta(days=config["history_days"])
        try:
            date_from = date.fromisoformat(query["date_from"]) if query.get("date_from") \
                else oldest
            date_to = date.fromisoformat(query["date_to"]) if query.get("date_to") else today
        except ValueError:
            raise ApiError("WRONG_REQUEST_PARAMETERS",
                           detail="date_from and date_to are dates YYYY-MM-DD") from None
        status = query.get("transaction_status")
        if status not in (None, "BOOK", "PDNG"):
            raise ApiError("WRONG_REQUEST_PARAMETERS", detail="transaction_status is BOOK or PDNG")
        strategy = query.get("strategy") or "default"
        if strategy not in ("default", "longest"):
            raise ApiError("WRONG_REQUEST_PARAMETERS", detail="strategy is default or longest")
        if date_from > date_to:
            raise ApiError("WRONG_TRANSACTIONS_PERIOD", detail="date_from is after date_to")
        if date_from < oldest:
            if strategy != "longest":
                raise ApiError("WRONG_TRANSACTIONS_PERIOD", detail=(
                    f"the ASPSP serves transactions from {oldest.isoformat()} on; "
                    "ask a shorter period or use strategy=longest"))
            date_from = oldest
        fingerprint = hashlib.sha256("|".join((
            uid, date_from.isoformat(), date_to.isoformat(), status or "", strategy,
        )).encode()).hexdigest()[:16]
        key = query.get("continuation_key")
        offset = self._decode_key(key, fingerprint) if key else 0
        if not key:
            self._count_unattended(request, spec)
        with self._lock:
            self._retrievals += 1
            retrieval = self._retrievals
        mode = config["entry_reference"]
        items = []
        if status in (None, "BOOK"):
            day = date_from
            while day <= min(date_to, today):
                items.extend(txn.booked(self._entry_reference(txn, mode, retrieval))
                             for txn in data.transactions_booking_on(spec, day, count))
                day += timedelta(days=1)
        if status in (None, "PDNG") and date_from <= today <= date_to:
            items.extend(txn.pending() for txn in
                         data.transactions_booking_on(spec, today + timedelta(days=1), count))
        page = items[offset:offset + config["page_size"]]
        end = offset + len(page)
        if request.loop_continuation:
            next_key = self._encode_key(offset, fingerprint)  # the same page again, forever
        else:
            next_key = self._encode_key(end, fingerprint) if end < len(items) else None
        return Response.json(200, {"transactions": page, "continuation_key": next_key})

    def _encode_key(self, offset, fingerprint):
        payload = base64.urlsafe_b64encode(json.dumps(
            {"params": fingerprint, "offset": offset}, separators=(",", ":")).encode()).decode()
        signature = hmac.new(self._key_secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{signature}"

    def _decode_key(self, key, fingerprint):
        payload, _, signature = key.partition(".")
        expected = hmac.new(self._key_secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        try:
            decoded = json.loads(_b64url_decode(payload))
            valid = hmac.compare_digest(signature, expected) and \
                decoded["params"] == fingerprint and int(decoded["offset"]) >= 0
        except (ValueError, KeyError, TypeError, binascii.Error):
            valid = False
        if not valid:
            raise ApiError("WRONG_REQUEST_PARAMETERS",
                           detail="continuation_key does not belong to this query")
        return int(decoded["offset"])

    # ------------------------------------------------------------------ admin over HTTP
    @staticmethod
    def _admin(call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise ApiError("WRONG_REQUEST_PARAMETERS", str(exc)) from None

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
            raise ApiError("WRONG_REQUEST_PARAMETERS", "give today or advance_days")
        return self._sim_clock_get(request)

    def _sim_config_get(self, request):
        return Response.json(200, {"config": self.config()})

    def _sim_config_set(self, request):
        return Response.json(200, {"config": self._admin(self.configure, **request.json())})

    def _sim_reset(self, request):
        self.reset()
        return Response(204)

    def _sim_stats(self, request):
        return Response.json(200, self.stats())

    def _sim_sessions(self, request):
        return Response.json(200, {"sessions": self.sessions()})

    def _sim_revoke(self, request, session_id):
        if not self.revoke_session(session_id):
            raise ApiError("SESSION_DOES_NOT_EXIST")
        return Response(204)


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
    """Play the user: open the hosted consent page, press Allow (``approve``) or Cancel
    (``cancel``), and return the query parameters of the redirect back to the application."""
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
        raise RuntimeError(f"the consent page answered HTTP {status}")
    form = _FormParser()
    form.feed(page.decode("utf-8"))
    if decision not in form.decisions or not form.action:
        raise RuntimeError("the consent page has no such decision button")
    status, headers, _ = call("POST", urljoin(parts.path, form.action),
                              urlencode({**form.fields, "decision": decision}),
                              {"Content-Type": "application/x-www-form-urlencoded"})
    location = headers.get("Location")
    if status != 302 or not location:
        raise RuntimeError(f"the consent decision answered HTTP {status}")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def balance_total(items):
    """Signed sum of API transaction dicts (CRDT +, DBIT -)."""
    total = Decimal("0.00")
    for item in items:
        amount = Decimal(item["transaction_amount"]["amount"])
        total += amount if item["credit_debit_indicator"] == "CRDT" else -amount
    return total


__all__ = ["EnableBankingServer", "simulate_user", "verify_jwt", "FAULT_KINDS", "ERRORS"]
