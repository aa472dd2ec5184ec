"""QIF (Quicken Interchange Format) files.

One field per line (a letter code then the value), ``^`` ends a record, ``!Type:...`` and
``!Account`` start sections. Only the statement-like sections (Bank, CCard, Cash, Oth A/L) give
lines; category, class, investment, security... sections are skipped. Split lines (S/E/$) never
become statement lines: the transaction amount is T (or U).

QIF dates are undeclared and locale-dependent ('8/12/13', '12/8/13', '13/08/12', "2/10'2020",
'1/ 1/10'). The date order is inferred ONCE for the whole file from all the D values: the orders
(month/day/year, day/month/year, year/month/day) that read every value are kept; when several
remain and they give different dates, the caller's hint (``date_order_hint``, e.g. from the
user's language) decides, otherwise the import is refused with a clear message. The order can
be forced with ``options["date_format"]``.

QIF has no account number, currency, balance or transaction id: lines get a synthetic id (a
fingerprint of date, amount, payee, number and memo plus an occurrence index).
"""
import re

from .model import (ORDER_LABELS, ParseResult, Statement, StatementFileError,
                    assign_synthetic_ids, clean, decode_bytes, guess_decimal_separator,
                    infer_date_order, join_text, make_transaction, parse_date, parse_decimal)

FORMAT = "qif"

BANK_TYPES = {"bank", "ccard", "cash", "oth a", "oth l"}


def detect(content, filename=None):
    head = content[:4096].lstrip(b"\xef\xbb\xbf").decode("latin-1")
    if re.search(r"^\s*!(Type|Account|Option|Clear)\b", head, re.IGNORECASE | re.MULTILINE):
        return 0.95
    return 0.0


# ------------------------------------------------------------------------------------ parsing
class _Record:
    def __init__(self, line):
        self.line = line
        self.fields = {}
        self.splits = 0
        self.address = []
        self.extra = {}


def _records(text):
    """Yield (section, account, record) for every record of the file."""
    section = None
    account = None
    record = None
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip()
        if not line.strip():
            continue
        if line.startswith("!"):
            header = line[1:].strip()
            key = header.lower()
            record = None                               # an unterminated record is dropped
            if key.startswith("type:"):
                section = re.sub(r"\s+", " ", header[5:].strip()).lower()
            elif key == "account":
                section = "!account"
            elif key.startswith("option") or key.startswith("clear"):
                continue
            else:
                section = key
            continue
        code, value = line[0], line[1:]
        if code == "^":
            if record is not None:
                if section == "!account":
                    account = clean(record.fields.get("N")) or account
                yield section, account, record
            record = None
            continue
        if record is None:
            record = _Record(number)
        if code in "S":
            record.splits += 1
        elif code in "E$%" and record.splits:
            continue                                    # split memo / amount
        elif code == "D" and "D" in record.fields:
            continue                                    # a date inside a split
        elif code == "A":
            record.address.append(value.strip())
        elif code in "DTUCNPML":
            record.fields.setdefault(code, value)
        else:
            record.extra.setdefault(code, value.strip())
    if record is not None and record.fields and section in BANK_TYPES:
        yield section, account, record                  # last record without '^'


def parse(content, filename=None, options=None):
    options = options or {}
    if not content or not content.strip():
        raise StatementFileError("empty_file")
    text, encoding = decode_bytes(content, options.get("encoding"))
    result = ParseResult(format=FORMAT, version="QIF", encoding=encoding)

    bank = []
    skipped = {}
    account_types = {}
    for section, account, record in _records(text):
        if section == "!account":
            account_types[clean(record.fields.get("N"))] = clean(record.fields.get("T"))
            continue
        if section in BANK_TYPES:
            bank.append((section, account, record))
        else:
            skipped[section or "?"] = skipped.get(section or "?", 0) + 1
    if not bank:
        raise StatementFileError("qif_no_transactions",
                                 sections=sorted(skipped) or ["no"])
    if skipped:
        result.warn("qif_skipped_sections", count=sum(skipped.values()), sections=sorted(skipped))

    for _, _, record in bank:
        if not clean(record.fields.get("D")):
            raise StatementFileError("qif_no_date", line=record.line)
        if not clean(record.fields.get("T") or record.fields.get("U")):
            raise StatementFileError("qif_no_amount", line=record.line)
    order, hint_used = infer_date_order([r.fields["D"] for _, _, r in bank],
                                        forced=options.get("date_format"),
                                        hint=options.get("date_order_hint"),
                                        ambiguous="qif_ambiguous_dates",
                                        unknown="qif_unknown_dates")
    if hint_used:
        result.warn("dates_read_with_hint", format=ORDER_LABELS[order])
    result.raw["date_order"] = order
    amounts = [clean(r.fields.get("T") or r.fields.get("U")) for _, _, r in bank]
    decimal_sep = options.get("decimal_separator") or guess_decimal_separator(amounts)
    sign = -1 if options.get("invert_sign") else 1
    keep_opening_line = options.get("qif_opening_balance") == "line"

    statements = {}
    for section, account, record in bank:
        statement = statements.get(account)
        if statement is None:
            statement = statements[account] = Statement(
                name=account, account_kind="card" if section == "ccard" else "bank",
                currency=options.get("currency"))
            statement.raw["account_type"] = account_types.get(account) or section
        fields = record.fields
        day = parse_date(fields["D"], order)
        if day is None:
            raise StatementFileError("qif_bad_date", line=record.line, value=fields["D"].strip(),
                                     format=ORDER_LABELS[order])
        amount_text = clean(fields.get("T") or fields.get("U"))
        try:
            amount = parse_decimal(amount_text, decimal_sep) * sign
        except ValueError:
            raise StatementFileError("qif_bad_amount", line=record.line,
                                     value=amount_text) from None
        payee, memo = clean(fields.get("P")), clean(fields.get("M"))
        number, category = clean(fields.get("N")), clean(fields.get("L"))
        if (not keep_opening_line and not statement.transactions
                and statement.opening_balance is None and (payee or "").lower() ==
                "opening balance" and (category or "").startswith("[")):
            statement.opening_balance, statement.opening_date = amount, day
            result.warn("qif_opening_balance", amount=amount)
            continue
        txn = make_transaction(
            account=account, external_id="", amount=amount, currency=statement.currency,
            booking_date=day, description=join_text(payee, memo) or number or category or "",
            counterparty_name=payee,
            category=category if category and not category.startswith("[") else None,
            raw={"line": record.line, "cleared": clean(fields.get("C")), "number": number,
                 "memo": memo, "category": category, "splits": record.splits,
                 "address": [a for a in record.address if a] or None, **record.extra},
        )
        if number:
            txn.alt_ids["reference"] = number
        statement.transactions.append(txn)

    for account, statement in statements.items():
        assign_synthetic_ids(statement.transactions, lambda t: (
            account, t.date, t.amount, t.counterparty_name, t.raw.get("number"),
            t.raw.get("memo")))
        if statement.opening_balance is not None:
            statement.closing_balance = statement.opening_balance + statement.total
            statement.closing_balance_computed = True
            statement.closing_date = statement.date_to
        result.statements.append(statement)
    return result
