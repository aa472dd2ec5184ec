"""What every statement-file parser returns, and the small helpers they share.

Nothing here imports odoo. Messages (warnings and errors) are English templates with
``%(name)s`` placeholders plus their parameters; the Odoo layer translates the template
(``MESSAGES`` lists them all) and then fills in the parameters.
"""
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from ..types import Transaction, TxnStatus

PROVIDER = "file"

# ----------------------------------------------------------------------------------- messages
#: code -> English template. Warnings and errors use the same table.
MESSAGES = {
    # generic errors
    "empty_file": "The file is empty.",
    "unknown_format": (
        "The file %(filename)s is not a bank statement this importer can read. Supported formats "
        "are CAMT.053 (XML), OFX/QFX, QIF, CODA and CSV; export the statement again in one of "
        "them."),
    "unknown_forced_format": "Unknown statement format %(format)s; use one of %(formats)s.",
    "bad_encoding": (
        "The file cannot be decoded with the encoding %(encoding)s; choose another encoding or "
        "export the file again as UTF-8."),
    "no_statement": "The file contains no bank statement (%(detail)s).",
    "parse_failed": (
        "The %(format)s file could not be read (%(detail)s). Check that it is a complete "
        "statement export; if it is, report the problem with the file attached."),
    "zip_too_large": "The ZIP archive holds too many or too large files (%(count)s files).",
    "zip_invalid": (
        "The ZIP archive cannot be opened (%(detail)s). Extract the statement file from it and "
        "import that file instead."),
    "zip_mixed_formats": (
        "The ZIP archive mixes %(first)s and %(other)s files; import them "
        "separately."),
    # generic warnings
    "balance_mismatch": (
        "Statement %(statement)s: the opening balance %(opening)s plus the lines (%(total)s) "
        "gives %(computed)s, but the closing balance in the file is %(closing)s (difference "
        "%(difference)s). Check that no line is missing."),
    "amounts_rounded": (
        "%(count)s amounts had more decimals than %(currency)s allows and were rounded."),
    "dates_read_with_hint": (
        "The dates can be read in several ways; they were read as %(format)s (the date format "
        "of your language or of the file layout). Check the dates of the lines."),
    "duplicate_ids": (
        "%(count)s lines share a bank reference with another line of the file; a suffix was "
        "added to keep them apart."),
    # OFX
    "ofx_invalid": "The OFX file could not be read: %(detail)s. Export the statement again.",
    "ofx_missing_amount": (
        "Transaction %(number)s of the file (FITID %(fitid)s) has no amount (TRNAMT): the OFX "
        "file is incomplete or damaged. Export the statement again."),
    "ofx_bad_amount": "Transaction %(number)s of the file: the amount %(value)s is not a number.",
    "ofx_missing_date": (
        "Transaction %(number)s of the file (FITID %(fitid)s) has no posting date (DTPOSTED): "
        "the OFX file is incomplete or damaged. Export the statement again."),
    "ofx_no_statement": (
        "The OFX file contains no bank or credit-card statement (investment statements are "
        "not supported)."),
    "ofx_pending_ignored": (
        "%(count)s pending transactions were ignored; only booked ones are "
        "imported."),
    "ofx_no_balance": (
        "Account %(account)s: the file gives no usable ledger balance, so the statement has no "
        "opening or closing balance."),
    "ofx_balance_before_last_line": (
        "Account %(account)s: the ledger balance is dated %(balance_date)s, before the last "
        "line (%(last_date)s); the opening balance was not computed."),
    "ofx_no_fitid": (
        "%(count)s transactions have no FITID; they were identified by their date, amount and "
        "text instead."),
    "ofx_missing_currency": "Account %(account)s: the file does not say in which currency it is.",
    "ofx_missing_account": "A statement in the file does not say which account it belongs to.",
    # QIF
    "qif_no_transactions": (
        "The QIF file contains no bank transactions (only %(sections)s sections, which are not "
        "bank statements)."),
    "qif_bad_date": "Line %(line)s: %(value)s is not a date in the format %(format)s.",
    "qif_no_date": "Line %(line)s: the transaction has no date (D line).",
    "qif_no_amount": "Line %(line)s: the transaction has no amount (T line).",
    "qif_bad_amount": "Line %(line)s: the amount %(value)s is not a number.",
    "qif_ambiguous_dates": (
        "The dates in this file can be read in several ways (%(candidates)s; e.g. %(example)s). "
        "Choose the date format in the import options and import the file again."),
    "qif_unknown_dates": (
        "The dates of this file (e.g. %(example)s) match no known date format; choose the date "
        "format in the import options."),
    "qif_skipped_sections": "%(count)s records of non-bank sections (%(sections)s) were skipped.",
    "qif_opening_balance": (
        "The 'Opening Balance' record (%(amount)s) was used as the opening "
        "balance, not imported as a line."),
    # CAMT
    "camt_invalid_xml": "The XML file could not be read: %(detail)s.",
    "camt_not_statement": (
        "This XML file is a %(kind)s message, not a CAMT.053 bank statement. Export the "
        "statement (camt.053) instead."),
    "camt_no_statement": "The CAMT.053 file contains no statement (no Stmt element).",
    "camt_bad_amount": (
        "Statement %(statement)s, entry %(entry)s: the amount %(value)s is not "
        "a number."),
    "camt_bad_date": "Statement %(statement)s: %(value)s is not a valid date.",
    "camt_no_amount": "Statement %(statement)s, entry %(entry)s has no amount.",
    "camt_skipped_status": (
        "Statement %(statement)s: %(count)s entries with status %(status)s were ignored; only "
        "booked entries are imported."),
    "camt_balance_currency": (
        "Statement %(statement)s: the %(kind)s balance is in %(balance_currency)s, not in the "
        "statement currency %(currency)s."),
    "camt_missing_indicator": (
        "Statement %(statement)s: %(count)s amounts have no credit/debit indicator and were "
        "read as credits."),
    "camt_no_date": (
        "Statement %(statement)s, entry %(entry)s has no booking or value "
        "date; the statement date was used."),
    # CODA
    "coda_bad_version": (
        "This CODA file has version %(version)s; only CODA version 2 is supported. Ask the bank "
        "for CODA 2.x files."),
    "coda_bad_record": "Line %(line)s: %(detail)s.",
    "coda_bad_amount": "Line %(line)s: the amount %(value)s is not a number.",
    "coda_bad_date": "Line %(line)s: %(value)s is not a date (DDMMYY).",
    "coda_no_header": (
        "The CODA file must start with a header record (0); line %(line)s "
        "starts with %(value)s."),
    "coda_account_mismatch": (
        "Statement %(statement)s: the new-balance record names account %(other)s, the "
        "old-balance record %(account)s; %(account)s was used."),
    "coda_trailer_count": (
        "Statement %(statement)s: the trailer announces %(expected)s records, the file has "
        "%(found)s."),
    "coda_trailer_sums": (
        "Statement %(statement)s: the trailer totals (debit %(debit)s, credit %(credit)s) do "
        "not match the movements (debit %(found_debit)s, credit %(found_credit)s)."),
    "coda_unclosed_globalisation": (
        "Statement %(statement)s: a globalisation opened by movement %(sequence)s is never "
        "closed; its lines were imported as ordinary movements."),
    "coda_bad_ogm": (
        "Movement %(sequence)s: the structured communication %(value)s has a "
        "wrong check digit."),
    "coda_no_trailer": "The CODA file ends without a trailer record (9); it may be truncated.",
    # CSV
    "csv_no_rows": "The CSV file contains no transaction rows.",
    "csv_bad_row": "Line %(line)s cannot be read as CSV (%(detail)s).",
    "csv_no_mapping": (
        "The columns of this CSV file were not recognised. Columns found: %(columns)s. Set up "
        "a column mapping for this journal (date, amount or debit/credit, label) and import "
        "again."),
    "csv_missing_column": (
        "The column %(column)s of the mapping is not in the file. Columns found: %(columns)s."),
    "csv_bad_date": "Line %(line)s: %(value)s is not a date in the format %(format)s.",
    "csv_bad_amount": "Line %(line)s: the amount %(value)s is not a number.",
    "csv_no_amount": "Line %(line)s has no amount.",
    "csv_ambiguous_dates": (
        "The dates of column %(column)s can be read in several ways (%(candidates)s; e.g. "
        "%(example)s). Choose the date format in the column mapping and import again."),
    "csv_unknown_dates": (
        "The values of column %(column)s (e.g. %(example)s) match no known date format; set the "
        "date format in the column mapping."),
    "csv_profile": "The file was read with the built-in layout %(profile)s.",
    "csv_guessed_mapping": (
        "The columns were guessed from their names (date: %(date)s, amount: %(amount)s); check "
        "the lines before posting them."),
    "csv_skipped_rows": "%(count)s rows were skipped (%(reason)s).",
    "csv_balance_chain": (
        "The running balances of the file do not follow from the amounts (line %(line)s); the "
        "statement balances were not taken from them."),
    "csv_bad_direction": (
        "Line %(line)s: %(value)s is neither a debit nor a credit marker "
        "(%(markers)s)."),
}


def render(code, params, translate=None):
    """The message of ``code`` with ``params`` filled in. ``translate`` (e.g. Odoo's ``_``)
    is applied to the English template first."""
    template = MESSAGES.get(code, code)
    if translate is not None:
        template = translate(template)
    try:
        return template % {k: _display(v) for k, v in params.items()}
    except (KeyError, TypeError, ValueError):
        return f"{template} {params}"


def _display(value):
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_display(v) for v in value)
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


@dataclass
class ParseMessage:
    """A warning: ``code`` is the key of its English template in ``MESSAGES``."""
    code: str
    params: dict = field(default_factory=dict)

    @property
    def template(self):
        return MESSAGES.get(self.code, self.code)

    @property
    def message(self):
        return render(self.code, self.params)

    def translated(self, translate):
        return render(self.code, self.params, translate)

    def __str__(self):
        return self.message


class StatementFileError(Exception):
    """The file cannot be imported; ``str(error)`` says what is wrong and what to do."""

    def __init__(self, code, **params):
        self.code = code
        self.params = params
        super().__init__(render(code, params))

    @property
    def template(self):
        return MESSAGES.get(self.code, self.code)

    @property
    def message(self):
        return str(self)

    def translated(self, translate):
        return render(self.code, self.params, translate)


# ---------------------------------------------------------------------------------- results
@dataclass
class Statement:
    """One account statement read from the file; amounts signed (+ money in)."""
    account_number: str | None = None      # IBAN or bank account number, as in the file
    currency: str | None = None
    bank_id: str | None = None             # BIC, routing number or bank code
    statement_id: str | None = None
    name: str | None = None
    account_holder: str | None = None
    account_kind: str | None = None        # "bank", "card", ...
    opening_balance: Decimal | None = None
    opening_date: date | None = None
    closing_balance: Decimal | None = None
    closing_date: date | None = None
    opening_balance_computed: bool = False  # derived from the lines, not read from the file
    closing_balance_computed: bool = False
    transactions: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @property
    def total(self):
        return sum((t.amount for t in self.transactions), Decimal(0))

    @property
    def date_from(self):
        dates = [t.date for t in self.transactions if t.date]
        return min(dates) if dates else self.opening_date

    @property
    def date_to(self):
        dates = [t.date for t in self.transactions if t.date]
        return max(dates) if dates else self.closing_date

    @property
    def balance_difference(self):
        """closing - (opening + lines); None when a balance is unknown."""
        if self.opening_balance is None or self.closing_balance is None:
            return None
        return self.closing_balance - (self.opening_balance + self.total)

    @property
    def label(self):
        name = self.statement_id or self.name
        if name and self.account_number and self.account_number not in name:
            return f"{name} ({self.account_number})"
        if name or self.account_number:
            return name or self.account_number
        if self.date_from:
            return f"{self.date_from} - {self.date_to}"
        return "?"


@dataclass
class ParseResult:
    format: str                            # "camt053", "ofx", "qif", "coda", "csv"
    statements: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    version: str | None = None             # e.g. "camt.053.001.08", "OFX 100/102", "CODA 2"
    encoding: str | None = None
    raw: dict = field(default_factory=dict)

    @property
    def transactions(self):
        return [t for s in self.statements for t in s.transactions]

    def warn(self, code, **params):
        self.warnings.append(ParseMessage(code, params))

    def warning_codes(self):
        return [w.code for w in self.warnings]


# ---------------------------------------------------------------------------------- helpers
def make_transaction(*, account, external_id, amount, currency, booking_date,
                     description="", id_is_synthetic=False, **fields):
    """A booked ``Transaction`` from a file (provider "file")."""
    fields.setdefault("value_date", None)
    fields.setdefault("transaction_date", None)
    fields.setdefault("structured_reference", None)
    fields.setdefault("counterparty_name", None)
    fields.setdefault("counterparty_iban", None)
    return Transaction(provider=PROVIDER, account_external_id=account or "",
                       external_id=external_id, id_is_synthetic=id_is_synthetic,
                       alt_ids=fields.pop("alt_ids", {}), status=TxnStatus.BOOKED,
                       amount=amount, currency=currency or "", booking_date=booking_date,
                       description=description or "", **fields)


def clean(text):
    """Collapse whitespace; None for empty."""
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text or None


def join_text(*parts, sep=" "):
    seen = []
    for part in parts:
        part = clean(part)
        if part and part not in seen:
            seen.append(part)
    return sep.join(seen)


def normalize_account(number):
    """Account number as used for matching: no spaces, upper case (IBANs)."""
    if not number:
        return None
    number = re.sub(r"\s+", "", str(number)).upper()
    return number or None


def looks_like_iban(text):
    text = normalize_account(text) or ""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", text):
        return False
    digits = "".join(str(int(c, 36)) for c in text[4:] + text[:4])
    return int(digits) % 97 == 1


# amounts ------------------------------------------------------------------------------------
_ZERO_DECIMALS = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                  "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
_THREE_DECIMALS = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_FOUR_DECIMALS = {"CLF", "UYW"}


def currency_decimals(currency):
    code = (currency or "").upper()
    if code in _ZERO_DECIMALS:
        return 0
    if code in _THREE_DECIMALS:
        return 3
    if code in _FOUR_DECIMALS:
        return 4
    return 2


def round_amount(amount, currency):
    """(rounded amount, True when it changed)."""
    if amount is None:
        return None, False
    quantum = Decimal(1).scaleb(-currency_decimals(currency))
    rounded = amount.quantize(quantum)
    return rounded, rounded != amount


#: amounts have at most this many digits before the decimal point (a quadrillion and more is
#: a damaged file, and larger values would overflow the 28-digit decimal arithmetic)
MAX_AMOUNT_DIGITS = 15


def checked_amount(number):
    """``number`` (a Decimal) when it is a finite amount of at most ``MAX_AMOUNT_DIGITS``
    integer digits; raises ValueError otherwise (NaN, Infinity, 1E+40...)."""
    if not number.is_finite() or (number and number.adjusted() >= MAX_AMOUNT_DIGITS):
        raise ValueError(str(number))
    return number


_CURRENCY_CODES = ("EUR|USD|GBP|CHF|CAD|AUD|NZD|JPY|SEK|NOK|DKK|ISK|PLN|CZK|HUF|RON|BGN|HRK|"
                   "TRY|ZAR|BRL|MXN|INR|CNY|HKD|SGD|RUB|UAH|ILS|AED|SAR")
_NUMBER_JUNK = re.compile(r"[\s\u00a0\u202f$€£¥]|(?<=\d)'(?=\d)|^(?:%s)|(?:%s)$"
                          % (_CURRENCY_CODES, _CURRENCY_CODES))


def parse_decimal(text, decimal_sep=None):
    """Decimal from a human-written amount: '1,234.56', '1.234,56', "11'373.94", '$1,036.47',
    '(12.00)', '12.50-', '+100'. ``decimal_sep`` forces the decimal separator.
    Raises ValueError when the text is not a number."""
    if text is None:
        raise ValueError("empty")
    raw = str(text).strip()
    if not raw:
        raise ValueError("empty")
    value = _NUMBER_JUNK.sub("", raw)
    negative = False
    if value.startswith("(") and value.endswith(")"):
        negative, value = True, value[1:-1]
    if value.endswith("-") and not value.startswith("-"):
        negative, value = True, value[:-1]
    elif value.endswith("+"):
        value = value[:-1]
    if value.startswith("-"):
        negative, value = not negative, value[1:]
    elif value.startswith("+"):
        value = value[1:]
    if decimal_sep is None:
        decimal_sep = guess_decimal_separator([value])
    if decimal_sep == ",":
        value = value.replace(".", "").replace(",", ".")
    else:
        value = value.replace(",", "")
    if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", value):
        raise ValueError(raw)
    try:
        number = checked_amount(Decimal(value))
    except (InvalidOperation, ValueError):
        raise ValueError(raw) from None
    return -number if negative else number


def guess_decimal_separator(values, default="."):
    """',' or '.' from a set of amounts written the same way; ``default`` when nothing tells."""
    comma = dot = 0
    for value in values:
        value = (value or "").strip()
        if not value:
            continue
        last_comma, last_dot = value.rfind(","), value.rfind(".")
        if last_comma >= 0 and last_dot >= 0:
            if last_comma > last_dot:
                comma += 10
            else:
                dot += 10
            continue
        if last_comma >= 0:
            tail = re.sub(r"\D.*$", "", value[last_comma + 1:])
            if value.count(",") > 1 or len(tail) == 3:
                dot += 1            # thousands separator, e.g. '1,000' or '1,000,000'
            else:
                comma += 10
        elif last_dot >= 0:
            tail = re.sub(r"\D.*$", "", value[last_dot + 1:])
            if value.count(".") > 1 or len(tail) == 3:
                comma += 1          # '1.000' is ambiguous, slightly in favour of thousands
            else:
                dot += 10
    if comma > dot:
        return ","
    if dot > comma:
        return "."
    return default


# dates --------------------------------------------------------------------------------------
ORDERS = ("MDY", "DMY", "YMD")
ORDER_LABELS = {"MDY": "month/day/year", "DMY": "day/month/year", "YMD": "year/month/day"}


def normalize_date_order(value):
    """'MDY' / 'DMY' / 'YMD' from an order or a strptime-like pattern ('%d/%m/%Y', 'dd.mm.yy').
    Raises ValueError for anything else."""
    if not value:
        return None
    text = str(value).upper()
    if text in ORDERS:
        return text
    letters = [c for c in text.replace("%", "") if c in "DMY"]
    order = "".join(dict.fromkeys(letters))
    if order in ORDERS:
        return order
    raise ValueError(f"unknown date format {value!r}; use one of {', '.join(ORDERS)}")


_TIME_TAIL = re.compile(r"^(\S+?)(?:[T\s]+\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*"
                        r"(?:[AaPp][Mm])?\s*(?:Z|[+-]\d{2}:?\d{2}|[A-Z]{2,5})?)$")


def parse_date(value, order):
    """The ``date`` written as ``value`` in ``order`` ('MDY', 'DMY', 'YMD'), or None.

    Accepts any of / . - ' as separators, space padding ('1/ 1/10'), Quicken apostrophe years
    ("2/10'2020", "1/ 1'00" = 2000), compact 'YYYYMMDD' / 'DDMMYYYY' and a trailing time.
    A year has 2 or 4 digits; 2-digit years are 1969-2068 (apostrophe years are 20xx)."""
    if not value:
        return None
    text = value.strip()
    if len(text) > 40:          # no date is this long; keeps _TIME_TAIL linear on junk
        return None
    timed = _TIME_TAIL.match(text)
    if timed and re.search(r"\d[-/.']", timed.group(1)):
        text = timed.group(1)
    apostrophe = "'" in text
    text = text.replace("'", "/").replace(" ", "")
    if re.fullmatch(r"\d{8}", text):
        parts = [text[:4], text[4:6], text[6:]] if order == "YMD" else [text[:2], text[2:4],
                                                                         text[4:]]
    else:
        parts = re.split(r"[/.\-]", text)
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    fields = dict(zip(order, parts))
    year_text, month_text, day_text = fields["Y"], fields["M"], fields["D"]
    if len(year_text) == 4:
        year = int(year_text)
    elif len(year_text) == 2:
        year = int(year_text)
        year += 2000 if apostrophe or year < 69 else 1900
    else:
        return None
    if len(month_text) > 2 or len(day_text) > 2:
        return None
    try:
        return date(year, int(month_text), int(day_text))
    except ValueError:
        return None


def infer_date_order(values, forced=None, hint=None, *, ambiguous="qif_ambiguous_dates",
                     unknown="qif_unknown_dates", **params):
    """(order, hint_used) for all the date strings of one file (or column).

    ``forced`` wins. Otherwise the orders that read EVERY value are kept; when several remain
    and give different dates, ``hint`` (e.g. the user's language) decides if it is one of them,
    else StatementFileError(``ambiguous``); when none remains, StatementFileError(``unknown``).
    """
    try:
        forced = normalize_date_order(forced)
        hint = normalize_date_order(hint)
    except ValueError as error:
        raise StatementFileError(unknown, example=str(error), **params) from None
    if forced:
        return forced, False
    values = [v for v in values if v and v.strip()]
    if not values:
        return hint or "DMY", False
    readings = {}
    for order in ORDERS:
        dates = [parse_date(v, order) for v in values]
        if all(dates):
            readings[order] = dates
    if not readings:
        # some values are wrong in every order: keep the orders reading most of them, so the
        # caller reports the wrong values with their line
        counts = {o: sum(1 for v in values if parse_date(v, o)) for o in ORDERS}
        best = max(counts.values())
        if not best:
            raise StatementFileError(unknown, example=values[0].strip(), **params)
        orders = [o for o in ORDERS if counts[o] == best]
        readable = [v for v in values if all(parse_date(v, o) for o in orders)]
        readings = {o: [parse_date(v, o) for v in readable] for o in orders}
        values = readable
    if len(readings) == 1 or len({tuple(d) for d in readings.values()}) == 1:
        return next(iter(readings)), False
    if hint in readings:
        return hint, True
    example = next(v for i, v in enumerate(values) if len({r[i] for r in readings.values()}) > 1)
    raise StatementFileError(ambiguous, candidates=[ORDER_LABELS[o] for o in readings],
                             example=example.strip(), **params)


# identifiers --------------------------------------------------------------------------------
def fingerprint(*parts):
    """sha256 of the immutable fields of a line (and its occurrence index)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def assign_synthetic_ids(transactions, key):
    """Give every transaction without an id a fingerprint of ``key(txn)`` plus its occurrence
    index among lines with the same key, so two identical lines stay two lines and importing
    the same file twice gives the same ids."""
    seen = {}
    for txn in transactions:
        if txn.external_id:
            continue
        base = tuple("" if p is None else str(p) for p in key(txn))
        index = seen.get(base, 0)
        seen[base] = index + 1
        txn.external_id = fingerprint(*base, index)
        txn.id_is_synthetic = True


def ensure_unique_ids(transactions, result=None):
    """A bank id that repeats inside one file gets '#2', '#3'... so lines are not lost."""
    counts = {}
    clashes = 0
    for txn in transactions:
        n = counts.get(txn.external_id, 0) + 1
        counts[txn.external_id] = n
        if n > 1:
            clashes += 1
            txn.alt_ids.setdefault("file_id", txn.external_id)
            txn.external_id = f"{txn.external_id}#{n}"
    if clashes and result is not None:
        result.warn("duplicate_ids", count=clashes)


def round_statement_amounts(statement, result):
    """Round line amounts and balances to the currency (OFX files with 13 decimals...)."""
    currency = statement.currency
    changed = 0
    for txn in statement.transactions:
        amount, did = round_amount(txn.amount, txn.currency or currency)
        if did:
            txn.raw.setdefault("unrounded_amount", str(txn.amount))
            changed += 1
        txn.amount = amount
        if txn.balance_after is not None:
            txn.balance_after = round_amount(txn.balance_after, txn.currency or currency)[0]
    for attr in ("opening_balance", "closing_balance"):
        value = getattr(statement, attr)
        if value is not None:
            amount, did = round_amount(value, currency)
            if did:
                statement.raw.setdefault(f"unrounded_{attr}", str(value))
                changed += 1
            setattr(statement, attr, amount)
    if changed:
        result.warn("amounts_rounded", count=changed, currency=currency or "?")


def check_balances(statement, result):
    """Warn when opening + lines != closing (both read from the file)."""
    difference = statement.balance_difference
    if difference is None or difference == 0:
        return True
    result.warn("balance_mismatch", statement=statement.label,
                opening=statement.opening_balance, total=statement.total,
                computed=statement.opening_balance + statement.total,
                closing=statement.closing_balance, difference=difference)
    return False


# text ---------------------------------------------------------------------------------------
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def strip_bom(content):
    """(content without BOM, encoding the BOM announces or None)."""
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            return content[len(bom):], encoding
    return content, None


def looks_utf16(content):
    """UTF-16 without BOM: every other byte of ASCII text is NUL."""
    head = content[:200]
    if len(head) < 4:
        return None
    if head[1::2].count(0) > len(head) // 4 and head[0::2].count(0) == 0:
        return "utf-16-le"
    if head[0::2].count(0) > len(head) // 4 and head[1::2].count(0) == 0:
        return "utf-16-be"
    return None


def decode_bytes(content, encoding=None, fallbacks=("cp1252", "latin-1")):
    """(text, encoding) for a text file of unknown encoding.

    Order: the caller's encoding (an explicit choice: errors are reported), a BOM, UTF-16
    without BOM, strict UTF-8, then the fallbacks (cp1252 first: Western bank exports).
    """
    if isinstance(content, str):
        return content, None
    body, bom_encoding = strip_bom(content)
    if encoding:
        try:
            return body.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError):
            raise StatementFileError("bad_encoding", encoding=encoding) from None
    if bom_encoding:
        try:
            return body.decode(bom_encoding), bom_encoding
        except UnicodeDecodeError:
            pass
    utf16 = looks_utf16(body)
    if utf16:
        try:
            return body.decode(utf16), utf16
        except UnicodeDecodeError:
            pass
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    for fallback in fallbacks:
        try:
            return body.decode(fallback), fallback
        except UnicodeDecodeError:
            continue
    return body.decode("latin-1"), "latin-1"
