"""CSV exports of bank apps.

There is no standard layout, so a ``CsvMapping`` says which column holds what (the Odoo side
saves one per journal, see ``CsvMapping.to_dict`` / ``from_dict``). Without a mapping the file
is matched against the built-in ``PROFILES`` (recognised by their header row, or by the shape
of the rows for the header-less ASN export), then against column names (``SYNONYMS``); when
nothing fits, the error lists the columns found.

Detected per file unless the mapping says otherwise: encoding (UTF-8, else cp1252), delimiter
(, ; tab |), the header row (metadata lines before it are skipped), the date order of the date
column (read once for the whole column) and the decimal separator of the amount columns.

Amount models: one signed column; an amount plus a direction column (Af/Bij, D/C,
debit/credit); separate debit and credit columns (debits made negative whatever their sign).
A running balance column (after, or before the row: ``balance_is_before``) gives the opening
and closing balances when the balances chain in file order, reversed order or date order;
'Balance at start/end of period' lines around the table do too. Rows with a pending or
cancelled status are skipped. Lines without an id column get a synthetic id.
"""
import csv as _csv
import io
import re
from dataclasses import asdict, dataclass, fields as dataclass_fields
from decimal import Decimal

from .model import (ORDER_LABELS, ParseResult, Statement, StatementFileError, assign_synthetic_ids,
                    check_balances, clean, decode_bytes, guess_decimal_separator,
                    infer_date_order, join_text, make_transaction, normalize_account,
                    parse_date, parse_decimal, round_statement_amounts)

FORMAT = "csv"
DELIMITERS = (",", ";", "\t", "|")
DEBIT_MARKERS = ("D", "DB", "DR", "DBIT", "DEBIT", "DEBET", "AF", "S", "SOLL", "-", "OUT",
                 "WITHDRAWAL", "DÉBIT", "BELASTING")
CREDIT_MARKERS = ("C", "CR", "CRDT", "CREDIT", "BIJ", "H", "HABEN", "+", "IN", "DEPOSIT",
                  "CRÉDIT")
SKIP_STATUSES = ("PENDING", "CANCELLED", "CANCELED", "DECLINED", "REVERTED", "FAILED",
                 "REJECTED", "IN BEHANDELING")


@dataclass
class CsvMapping:
    """Which column holds what. A column is a header name (case and spaces ignored) or a
    0-based index (required when ``has_header`` is False)."""
    date_column: object = None
    amount_column: object = None
    debit_column: object = None
    credit_column: object = None
    direction_column: object = None            # 'Af Bij', 'D/C', 'Transaction Type'...
    debit_markers: tuple = DEBIT_MARKERS
    credit_markers: tuple = CREDIT_MARKERS
    description_columns: tuple = ()            # joined with spaces
    counterparty_column: object = None
    counterparty_account_column: object = None
    counterparty_bic_column: object = None
    reference_column: object = None
    end_to_end_column: object = None
    mandate_column: object = None
    balance_column: object = None
    balance_is_before: bool = False            # balance before the row (ASN) instead of after
    currency_column: object = None
    original_amount_column: object = None
    original_currency_column: object = None
    value_date_column: object = None
    transaction_date_column: object = None
    time_column: object = None                 # only used to order rows of the same day
    id_column: object = None                   # a unique transaction id given by the bank
    account_column: object = None              # own account (one statement per account)
    category_column: object = None
    status_column: object = None
    skip_statuses: tuple = SKIP_STATUSES
    date_format: str | None = None             # 'DMY', 'MDY', 'YMD' or '%d/%m/%Y'; None: infer
    default_date_order: str | None = None      # used only when the dates are ambiguous
    decimal_separator: str | None = None       # ',' or '.'; None: infer
    has_header: bool = True
    skip_lines: int | None = None              # non-empty lines before the header; None: find
    delimiter: str | None = None
    encoding: str | None = None
    invert_sign: bool = False
    currency: str | None = None                # when the file has no currency column
    name: str | None = None                    # profile name

    def to_dict(self):
        data = asdict(self)
        for key in ("debit_markers", "credit_markers", "description_columns", "skip_statuses"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclass_fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        for key in ("debit_markers", "credit_markers", "description_columns", "skip_statuses"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def columns(self):
        """{role: column} of the single-column roles in use."""
        roles = {}
        for f in dataclass_fields(self):
            if f.name.endswith("_column"):
                value = getattr(self, f.name)
                if value is not None and value != "":
                    roles[f.name] = value
        return roles


# ------------------------------------------------------------------------------- profiles
def _norm(name):
    return " ".join(str(name).replace("\ufeff", "").split()).lower()


@dataclass
class Profile:
    name: str
    label: str
    headers: tuple                  # required header names (normalised)
    mapping: dict
    match_rows: object = None       # for header-less layouts: function(rows) -> bool


def _p(name, label, headers, **mapping):
    return Profile(name, label, tuple(_norm(h) for h in headers), mapping)


def _asn_rows(rows):
    sample = rows[:5]
    return bool(sample) and all(
        len(r) == 19 and re.fullmatch(r"\d{2}-\d{2}-\d{4}", r[0].strip())
        and re.fullmatch(r"[A-Z]{3}", r[7].strip()) and re.fullmatch(r"[A-Z]{3}", r[9].strip())
        for r in sample)


#: Built-in layouts, most specific first. Optional columns of a mapping that are absent
#: from the file are dropped; the ``headers`` must all be present.
PROFILES = [
    _p("be_fintro_nl", "Fintro / BNP Paribas Fortis (NL)",
       ("Volgnummer", "Uitvoeringsdatum", "Valutadatum", "Bedrag", "Valuta rekening", "Details"),
       date_column="Uitvoeringsdatum", value_date_column="Valutadatum", amount_column="Bedrag",
       currency_column="Valuta rekening", description_columns=("Details",),
       reference_column="Volgnummer", account_column="Rekeningnummer", date_format="DMY",
       decimal_separator=","),
    _p("be_bnp_fr", "BNP Paribas Fortis / Fintro (FR)",
       ("Numéro de séquence", "Date d'exécution", "Date valeur", "Montant", "Devise du compte",
        "Détails"),
       date_column="Date d'exécution", value_date_column="Date valeur", amount_column="Montant",
       currency_column="Devise du compte", description_columns=("Détails",),
       reference_column="Numéro de séquence", account_column="Numéro de compte",
       date_format="DMY", decimal_separator=","),
    _p("nl_ing", "ING (NL)",
       ("Datum", "Naam / Omschrijving", "Rekening", "Tegenrekening", "Af Bij", "Mededelingen"),
       date_column="Datum", amount_column="Bedrag (EUR)", direction_column="Af Bij",
       description_columns=("Naam / Omschrijving", "Mededelingen"),
       counterparty_column="Naam / Omschrijving", counterparty_account_column="Tegenrekening",
       account_column="Rekening", category_column="MutatieSoort", date_format="YMD",
       decimal_separator=",", currency="EUR"),
    _p("de_gls", "GLS Bank (DE)",
       ("Kontonummer", "Buchungstag", "Wertstellung", "Auftraggeber/Empfänger", "Betrag",
        "Kontostand"),
       date_column="Buchungstag", value_date_column="Wertstellung", amount_column="Betrag",
       balance_column="Kontostand", currency_column="Währung",
       counterparty_column="Auftraggeber/Empfänger", account_column="Kontonummer",
       description_columns=("Buchungstext",) + tuple(f"VWZ{i}" for i in range(1, 15)),
       date_format="DMY", decimal_separator=","),
    _p("es_ing", "ING (ES)", ("date", "class", "subcategory", "desc", "amount", "balance"),
       date_column="date", amount_column="amount", balance_column="balance",
       description_columns=("desc", "notes"), category_column="subcategory",
       date_format="DMY", decimal_separator=".", currency="EUR"),
    _p("us_capital_one", "Capital One (US)",
       ("Transaction Date", "Posted Date", "Card No.", "Description", "Debit", "Credit"),
       date_column="Posted Date", transaction_date_column="Transaction Date",
       debit_column="Debit", credit_column="Credit", description_columns=("Description",),
       category_column="Category", account_column="Card No.", date_format="YMD",
       decimal_separator=".", currency="USD"),
    _p("us_credit_union", "US credit union",
       ("Check Number", "Date", "Description", "Amount", "Category", "Comments"),
       date_column="Date", amount_column="Amount", description_columns=("Description",
                                                                        "Comments"),
       reference_column="Check Number", category_column="Category", date_format="MDY",
       decimal_separator="."),
    _p("us_mint", "Mint",
       ("Date", "Description", "Original Description", "Amount", "Transaction Type",
        "Account Name"),
       date_column="Date", amount_column="Amount", direction_column="Transaction Type",
       description_columns=("Description",), category_column="Category",
       account_column="Account Name", date_format="MDY", decimal_separator="."),
    _p("n26", "N26", ("Booking Date", "Value Date", "Partner Name", "Partner Iban",
                      "Payment Reference", "Amount (EUR)"),
       date_column="Booking Date", value_date_column="Value Date", amount_column="Amount (EUR)",
       counterparty_column="Partner Name", counterparty_account_column="Partner Iban",
       description_columns=("Payment Reference",), original_amount_column="Original Amount",
       original_currency_column="Original Currency", date_format="YMD",
       decimal_separator=".", currency="EUR"),
    _p("n26_legacy", "N26 (older export)",
       ("Date", "Payee", "Account number", "Transaction type", "Payment reference",
        "Amount (EUR)"),
       date_column="Date", amount_column="Amount (EUR)", counterparty_column="Payee",
       counterparty_account_column="Account number", description_columns=("Payment reference",),
       original_amount_column="Amount (Foreign Currency)",
       original_currency_column="Type Foreign Currency", date_format="YMD",
       decimal_separator=".", currency="EUR"),
    _p("outbank", "Outbank", ("#", "Account", "Date", "Value Date", "Amount", "Currency", "Name",
                              "Number", "Bank", "Reason"),
       date_column="Date", value_date_column="Value Date", amount_column="Amount",
       currency_column="Currency", counterparty_column="Name",
       counterparty_account_column="Number", counterparty_bic_column="Bank",
       description_columns=("Reason",), end_to_end_column="SEPA Reference",
       mandate_column="Mandate Identification", category_column="Category",
       account_column="Account", date_format="MDY", decimal_separator=","),
    _p("payoneer", "Payoneer",
       ("Transaction Date", "Transaction ID", "Description", "Credit Amount", "Debit Amount",
        "Currency", "Status", "Running Balance"),
       date_column="Transaction Date", time_column="Transaction Time",
       debit_column="Debit Amount", credit_column="Credit Amount", currency_column="Currency",
       id_column="Transaction ID", status_column="Status", balance_column="Running Balance",
       description_columns=("Description", "Additional Description"),
       reference_column="Reference ID", default_date_order="MDY", decimal_separator="."),
    _p("pc_mastercard", "PC Financial Mastercard (CA)",
       ("Merchant Name", "Card Used For Transaction", "Date", "Time", "Amount"),
       date_column="Date", time_column="Time", amount_column="Amount",
       counterparty_column="Merchant Name", description_columns=("Merchant Name",),
       date_format="MDY", decimal_separator=".", invert_sign=True, currency="CAD"),
    _p("generic_debit_credit", "Date / Label / Debit / Credit with statement balances",
       ("Date", "Operation Number", "Label", "Debit", "Credit"),
       date_column="Date", debit_column="Debit", credit_column="Credit",
       description_columns=("Label", "Detail"), reference_column="Operation Number",
       date_format="DMY"),
    _p("generic_label", "Date / Label / Amount (Odoo-style sheet)", ("Date", "Label", "Amount"),
       date_column="Date", amount_column="Amount", direction_column="D/C",
       balance_column="Balance", description_columns=("Label",),
       counterparty_column="Partner Name", counterparty_account_column="Bank Account",
       original_amount_column="Amount Currency", original_currency_column="Currency",
       default_date_order="MDY"),
    Profile("nl_asn", "ASN Bank (NL, no header row)", (), dict(
        has_header=False, date_column=0, account_column=1, counterparty_account_column=2,
        counterparty_column=3, balance_column=8, balance_is_before=True, currency_column=9,
        amount_column=10, value_date_column=12, reference_column=16,
        description_columns=(17,), date_format="DMY", decimal_separator="."),
        match_rows=_asn_rows),
]

#: header names that identify a column when no profile matches (normalised, see _norm)
SYNONYMS = {
    "date_column": ("date", "booking date", "transaction date", "posted date", "posting date",
                    "datum", "boekdatum", "boekingsdatum", "buchungstag", "buchungsdatum",
                    "date opération", "date operation", "date comptable", "fecha",
                    "fecha operación", "data", "data operazione", "completed date",
                    "started date", "uitvoeringsdatum", "date d'exécution"),
    "amount_column": ("amount", "bedrag", "betrag", "montant", "importe", "importo", "valor",
                      "sum", "amount (eur)", "amount (usd)", "transaction amount",
                      "net", "net amount", "umsatz"),
    "debit_column": ("debit", "debit amount", "débit", "soll", "af", "withdrawal",
                     "withdrawals", "paid out", "money out", "out", "cargo", "uitgaven"),
    "credit_column": ("credit", "credit amount", "crédit", "haben", "bij", "deposit",
                      "deposits", "paid in", "money in", "in", "abono", "inkomsten"),
    "direction_column": ("d/c", "c/d", "debit/credit", "af bij", "af/bij", "soll/haben",
                         "credit/debit", "transaction type", "dc"),
    "balance_column": ("balance", "running balance", "saldo", "solde", "kontostand",
                       "saldo na mutatie", "balance after"),
    "currency_column": ("currency", "valuta", "währung", "devise", "moneda", "ccy"),
    "counterparty_column": ("payee", "partner name", "counterparty", "name", "beneficiary",
                            "tegenpartij", "naam tegenpartij", "auftraggeber/empfänger",
                            "empfänger", "bénéficiaire", "merchant", "merchant name"),
    "counterparty_account_column": ("counterparty iban", "partner iban", "iban",
                                    "tegenrekening", "counter account", "bank account"),
    "reference_column": ("reference", "ref", "referentie", "kenmerk", "référence",
                         "check number", "cheque number", "referencia"),
    "id_column": ("transaction id", "id"),
    "value_date_column": ("value date", "valutadatum", "wertstellung", "valuta",
                          "date valeur", "fecha valor"),
    "status_column": ("status", "state", "estado"),
}
DESCRIPTION_SYNONYMS = ("description", "label", "libellé", "libelle", "details", "détails",
                        "omschrijving", "mededelingen", "verwendungszweck", "memo",
                        "narrative", "concepto", "text", "buchungstext", "payment reference",
                        "communication", "note", "notes", "purpose")


# ------------------------------------------------------------------------------- reading
def detect(content, filename=None):
    name = (filename or "").lower()
    sample = content[:8192]
    if b"\x00" in sample and not sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return 0.0
    try:
        text, _ = decode_bytes(sample)
    except StatementFileError:
        return 0.0
    delimiter, count, consistent = _sniff(text)
    if name.endswith((".csv", ".txt", ".tsv")) and count >= 2:
        return 0.5
    if count >= 3 and consistent >= 2:
        return 0.3
    return 0.1 if name.endswith(".csv") else 0.0


def _read_rows(text, delimiter):
    reader = _csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if any(cells):
                rows.append((reader.line_num, cells))
    except _csv.Error as error:
        raise StatementFileError("csv_bad_row", line=reader.line_num, detail=str(error)) from None
    return rows


def _sniff(text):
    """(delimiter, modal field count, rows with that count) over the first lines."""
    head = "\n".join(text.splitlines()[:60])
    best = (",", 1, 0)
    for delimiter in DELIMITERS:
        counts = {}
        try:
            rows = list(_csv.reader(io.StringIO(head, newline=""), delimiter=delimiter))
        except _csv.Error:
            continue
        for row in rows:
            if any(c.strip() for c in row):
                counts[len(row)] = counts.get(len(row), 0) + 1
        if not counts:
            continue
        count, freq = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if count < 2:
            continue
        if (freq, count) > (best[2], best[1]):
            best = (delimiter, count, freq)
    return best


_DATE_LIKE = re.compile(r"^\d{1,4}\s?[-/.']\s?\d{1,2}\s?[-/.']\s?\d{2,4}(?:[T\s].*)?$|^\d{8}$")


def _is_date_like(cell):
    return bool(_DATE_LIKE.match(cell.strip()))


def _is_number(cell):
    try:
        parse_decimal(cell)
        return True
    except ValueError:
        return False


def _find_header(rows):
    """Index of the header row among the non-empty rows, or None (no header)."""
    for i, (_, row) in enumerate(rows[:40]):
        filled = [c for c in row if c]
        if len(filled) < 2 or any(_is_date_like(c) or _is_number(c) for c in filled):
            continue
        following = rows[i + 1:i + 4]
        if following and any(_is_date_like(c) for _, r in following[:1] for c in r):
            return i
    # no date under any label row: a first row of labels over rows of the same width is
    # still a header (so that an error can name the columns)
    if len(rows) > 1:
        first = [c for c in rows[0][1] if c]
        if len(first) >= 2 and len(rows[0][1]) == len(rows[1][1]) and not any(
                _is_date_like(c) or _is_number(c) for c in first):
            return 0
    return None


def _column_index(header, column, role, columns_found):
    if column is None or column == "":
        return None
    if isinstance(column, int) or (isinstance(column, str) and column.isdigit()
                                   and header is None):
        return int(column)
    if header is None:
        raise StatementFileError("csv_missing_column", column=str(column),
                                 columns=columns_found)
    wanted = _norm(column)
    for index, name in enumerate(header):
        if _norm(name) == wanted:
            return index
    raise StatementFileError("csv_missing_column", column=str(column), columns=columns_found)


def _profile_mapping(profile, header):
    """The profile's CsvMapping with optional columns absent from ``header`` removed."""
    data = dict(profile.mapping)
    data["name"] = profile.name
    if header is not None:
        present = {_norm(h) for h in header}
        for key, value in list(data.items()):
            if key.endswith("_column") and isinstance(value, str) and _norm(value) not in present:
                data[key] = None
        if "description_columns" in data:
            data["description_columns"] = tuple(c for c in data["description_columns"]
                                                if _norm(c) in present)
    return CsvMapping.from_dict(data)


def _match_profile(header, rows):
    if header is None:
        for profile in PROFILES:
            if profile.match_rows and profile.match_rows([r for _, r in rows]):
                return profile
        return None
    present = {_norm(h) for h in header}
    matches = [p for p in PROFILES if p.headers and set(p.headers) <= present]
    return max(matches, key=lambda p: len(p.headers)) if matches else None


def _guess_mapping(header):
    """A mapping from column names, or None when no date or amount column is recognised."""
    if header is None:
        return None
    names = [_norm(h) for h in header]
    roles = {}
    used = set()
    for role, synonyms in SYNONYMS.items():
        for synonym in synonyms:
            if synonym in names and names.index(synonym) not in used:
                roles[role] = header[names.index(synonym)]
                used.add(names.index(synonym))
                break
    description = tuple(header[i] for i, n in enumerate(names)
                        if n in DESCRIPTION_SYNONYMS and i not in used)
    has_amount = roles.get("amount_column") or (roles.get("debit_column")
                                               and roles.get("credit_column"))
    if not roles.get("date_column") or not has_amount:
        return None
    if roles.get("amount_column"):
        roles.pop("debit_column", None)
        roles.pop("credit_column", None)
    else:
        roles.pop("direction_column", None)
    return CsvMapping(name="guessed", description_columns=description, **roles)


def _coerce_mapping(value):
    if value is None or isinstance(value, CsvMapping):
        return value
    if isinstance(value, dict):
        return CsvMapping.from_dict(value)
    raise TypeError("options['csv_mapping'] must be a CsvMapping or a dict")


# ------------------------------------------------------------------------------- parsing
_BALANCE_LABEL = re.compile(r"balance|saldo|solde|kontostand|stand", re.IGNORECASE)
_OPENING_LABEL = re.compile(r"start|opening|begin|initial|anfang|alter|début|debut|ouverture|"
                            r"oud|vorig|previous|old|apertura|inicial", re.IGNORECASE)
_CLOSING_LABEL = re.compile(r"\bend\b|closing|final|ende|neuer|fin\b|clôture|cloture|nieuw|"
                            r"new|current|cierre", re.IGNORECASE)


def _statement_balances(rows, decimal_sep):
    """{'opening': Decimal, 'closing': Decimal} from 'Balance at start/end of period' lines."""
    found = {}
    for _, row in rows:
        label = " ".join(c for c in row if c and not _is_number(c))
        if not _BALANCE_LABEL.search(label):
            continue
        numbers = []
        for cell in row:
            try:
                numbers.append(parse_decimal(cell, decimal_sep))
            except ValueError:
                continue
        if not numbers:
            continue
        if _OPENING_LABEL.search(label):
            found.setdefault("opening", numbers[-1])
        elif _CLOSING_LABEL.search(label):
            found.setdefault("closing", numbers[-1])
    return found


def parse(content, filename=None, options=None):
    options = options or {}
    if not content or not content.strip():
        raise StatementFileError("empty_file")
    mapping = _coerce_mapping(options.get("csv_mapping"))
    forced_profile = options.get("csv_profile")
    if forced_profile and not mapping:
        profile = next((p for p in PROFILES if p.name == forced_profile), None)
        if profile is None:
            raise StatementFileError("unknown_forced_format", format=forced_profile,
                                     formats=[p.name for p in PROFILES])
    else:
        profile = None
    encoding = (mapping.encoding if mapping else None) or options.get("encoding")
    text, encoding = decode_bytes(content, encoding)
    delimiter = (mapping.delimiter if mapping else None) or options.get("delimiter")
    if not delimiter:
        delimiter = _sniff(text)[0]
    rows = _read_rows(text, delimiter)
    if not rows:
        raise StatementFileError("csv_no_rows")
    result = ParseResult(format=FORMAT, version="CSV", encoding=encoding)

    # header and mapping
    skip = 0
    if mapping is not None:
        if mapping.has_header:
            header_index = (mapping.skip_lines if mapping.skip_lines is not None
                            else _find_header(rows))
            if header_index is None:
                header_index = 0
        else:
            header_index = None
            skip = mapping.skip_lines or 0
    else:
        header_index = _find_header(rows)
    if (header_index or 0) >= len(rows) or skip >= len(rows):
        raise StatementFileError("csv_no_rows")
    header = rows[header_index][1] if header_index is not None else None
    columns_found = header if header is not None else [
        f"column {i + 1}" for i in range(max(len(r) for _, r in rows))]
    if mapping is None:
        if profile is None:
            data_rows = rows[header_index + 1:] if header_index is not None else rows
            profile = _match_profile(header, data_rows)
        if profile is not None:
            if not profile.headers:          # header-less profile
                header_index, header = None, None
            mapping = _profile_mapping(profile, header)
            result.warn("csv_profile", profile=profile.label)
        else:
            mapping = _guess_mapping(header)
            if mapping is None:
                raise StatementFileError("csv_no_mapping", columns=columns_found)
            result.warn("csv_guessed_mapping", date=str(mapping.date_column),
                        amount=str(mapping.amount_column or
                                   f"{mapping.debit_column} / {mapping.credit_column}"))
        skip = 0
    if header_index is not None:
        before, body = rows[:header_index], rows[header_index + 1:]
    else:
        before, body = rows[:skip], rows[skip:]

    index = {}
    for role, column in mapping.columns().items():
        index[role] = _column_index(header, column, role, columns_found)
    description_index = [_column_index(header, c, "description", columns_found)
                         for c in mapping.description_columns]
    if index.get("date_column") is None:
        raise StatementFileError("csv_no_mapping", columns=columns_found)
    if index.get("amount_column") is None and index.get("debit_column") is None \
            and index.get("credit_column") is None:
        raise StatementFileError("csv_no_mapping", columns=columns_found)

    def cell(row, role):
        position = index.get(role)
        if position is None or position >= len(row):
            return ""
        return row[position]

    # data rows: those whose date cell holds a date; text rows around the table are skipped
    data, after = [], []
    for line, row in body:
        value = cell(row, "date_column")
        if _is_date_like(value):
            data.append((line, row))
        elif data:
            after.append((line, row))
        else:
            before.append((line, row))
    if not data:
        raise StatementFileError("csv_no_rows")
    skipped_text = len(after)

    # statuses
    statuses_skipped = 0
    if index.get("status_column") is not None:
        skip_statuses = {s.upper() for s in mapping.skip_statuses}
        kept = []
        for line, row in data:
            if cell(row, "status_column").upper() in skip_statuses:
                statuses_skipped += 1
            else:
                kept.append((line, row))
        data = kept
    if statuses_skipped:
        result.warn("csv_skipped_rows", count=statuses_skipped, reason="pending or cancelled")
    if skipped_text:
        result.warn("csv_skipped_rows", count=skipped_text, reason="not a transaction row")
    if not data:
        raise StatementFileError("csv_no_rows")

    # date order and decimal separator, once for the whole column
    column_name = str(mapping.date_column)
    date_values = [cell(r, "date_column") for _, r in data]
    for role in ("value_date_column", "transaction_date_column"):
        if index.get(role) is not None:
            date_values += [cell(r, role) for _, r in data if cell(r, role)]
    order, hint_used = infer_date_order(
        date_values, forced=mapping.date_format or options.get("date_format"),
        hint=options.get("date_order_hint") or mapping.default_date_order,
        ambiguous="csv_ambiguous_dates", unknown="csv_unknown_dates", column=column_name)
    if hint_used:
        result.warn("dates_read_with_hint", format=ORDER_LABELS[order])
    amount_roles = ("amount_column", "debit_column", "credit_column", "balance_column",
                    "original_amount_column")
    decimal_sep = mapping.decimal_separator or options.get("decimal_separator") or \
        guess_decimal_separator([cell(r, role) for role in amount_roles
                                 for _, r in data if cell(r, role)])
    result.raw.update({"delimiter": delimiter, "header_row": header_index,
                       "profile": mapping.name, "date_order": order,
                       "decimal_separator": decimal_sep, "mapping": mapping})

    def number(line, value):
        try:
            return parse_decimal(value, decimal_sep)
        except ValueError:
            raise StatementFileError("csv_bad_amount", line=line, value=value) from None

    def day(line, value, role="date_column"):
        if not value:
            return None
        parsed = parse_date(value, order)
        if parsed is None:
            raise StatementFileError("csv_bad_date", line=line, value=value,
                                     format=ORDER_LABELS[order])
        return parsed

    debit_markers = {m.upper() for m in mapping.debit_markers}
    credit_markers = {m.upper() for m in mapping.credit_markers}
    invert = mapping.invert_sign or bool(options.get("invert_sign"))
    default_currency = mapping.currency or options.get("currency")

    statements = {}
    for position, (line, row) in enumerate(data):
        amount = None
        if index.get("amount_column") is not None and cell(row, "amount_column"):
            amount = number(line, cell(row, "amount_column"))
            marker = cell(row, "direction_column").upper()
            if marker:
                if marker in debit_markers:
                    amount = -abs(amount)
                elif marker in credit_markers:
                    amount = abs(amount)
                else:
                    raise StatementFileError(
                        "csv_bad_direction", line=line, value=cell(row, "direction_column"),
                        markers=sorted(debit_markers | credit_markers))
        else:
            debit, credit = cell(row, "debit_column"), cell(row, "credit_column")
            if debit or credit:
                amount = abs(number(line, credit)) if credit else Decimal(0)
                if debit:
                    amount -= abs(number(line, debit))
        if amount is None:
            raise StatementFileError("csv_no_amount", line=line)
        if invert:
            amount = -amount
        currency = (cell(row, "currency_column") or default_currency or "").upper() or None
        account = cell(row, "account_column") or options.get("account_number") or None
        balance = cell(row, "balance_column")
        balance = number(line, balance) if balance else None
        if balance is not None and mapping.balance_is_before:
            balance = balance + amount
        original = cell(row, "original_amount_column")
        original_amount = number(line, original) if original else None
        original_currency = cell(row, "original_currency_column").upper() or None
        if not original_amount or original_currency in (None, currency):
            original_amount = original_currency = None
        description = join_text(*(row[i] for i in description_index
                                   if i is not None and i < len(row)))
        counterparty = clean(cell(row, "counterparty_column"))
        reference = clean(cell(row, "reference_column"))
        if account and re.fullmatch(r"[A-Za-z]{2}\d{2}[A-Za-z0-9 ]{10,36}", account):
            account = normalize_account(account)
        txn = make_transaction(
            account=clean(account),
            external_id=clean(cell(row, "id_column")) or "",
            amount=amount, currency=currency, booking_date=day(line, cell(row, "date_column")),
            value_date=day(line, cell(row, "value_date_column")),
            transaction_date=day(line, cell(row, "transaction_date_column")),
            description=(description or counterparty or reference or "").strip("' "),
            counterparty_name=counterparty,
            counterparty_iban=normalize_account(cell(row, "counterparty_account_column")),
            counterparty_bic=clean(cell(row, "counterparty_bic_column")),
            end_to_end_id=clean(cell(row, "end_to_end_column")),
            mandate_id=clean(cell(row, "mandate_column")),
            category=clean(cell(row, "category_column")),
            original_amount=original_amount, original_currency=original_currency,
            balance_after=balance,
            raw={"line": line, "row": position, "reference": reference,
                 "time": clean(cell(row, "time_column"))},
        )
        if reference:
            txn.alt_ids["reference"] = reference
        key = (txn.account_external_id or None, currency)
        statement = statements.get(key)
        if statement is None:
            statement = statements[key] = Statement(
                account_number=key[0], currency=currency, account_kind="bank",
                name=join_text(key[0], currency))
        statement.transactions.append(txn)

    around = _statement_balances(before + after, decimal_sep)
    for statement in statements.values():
        assign_synthetic_ids(statement.transactions, lambda t: (
            statement.account_number, t.date, t.amount, t.description, t.balance_after,
            t.raw.get("reference"), t.counterparty_iban))
        _chain_balances(statement, result)
        if around and len(statements) == 1:
            if "opening" in around:
                statement.opening_balance = around["opening"]
                statement.opening_balance_computed = False
            if "closing" in around:
                statement.closing_balance = around["closing"]
                statement.closing_balance_computed = False
            if "opening" in around and "closing" not in around:
                statement.closing_balance = statement.opening_balance + statement.total
                statement.closing_balance_computed = True
            elif "closing" in around and "opening" not in around:
                statement.opening_balance = statement.closing_balance - statement.total
                statement.opening_balance_computed = True
        statement.opening_date = statement.date_from
        statement.closing_date = statement.date_to
        round_statement_amounts(statement, result)
        if around and len(statements) == 1 and len(around) == 2:
            check_balances(statement, result)
        result.statements.append(statement)
    return result


def _chain_balances(statement, result):
    """Opening/closing from a running balance column, if the balances chain in file order,
    reversed file order or date order; the lines are then put in that order."""
    lines = statement.transactions
    if not lines or any(t.balance_after is None for t in lines):
        return

    def chains(ordered):
        return all(ordered[i - 1].balance_after + ordered[i].amount == ordered[i].balance_after
                   for i in range(1, len(ordered)))

    by_date = sorted(lines, key=lambda t: (t.date, t.raw.get("time") or "", t.raw["row"]))
    by_date_reversed_rows = sorted(lines, key=lambda t: (t.date, t.raw.get("time") or "",
                                                         -t.raw["row"]))
    for ordered in (lines, list(reversed(lines)), by_date, by_date_reversed_rows):
        if chains(ordered):
            statement.transactions = list(ordered)
            first, last = ordered[0], ordered[-1]
            statement.opening_balance = first.balance_after - first.amount
            statement.closing_balance = last.balance_after
            return
    broken = next(i for i in range(1, len(lines)) if lines[i - 1].balance_after
                  + lines[i].amount != lines[i].balance_after)
    result.warn("csv_balance_chain", line=lines[broken].raw["line"])
