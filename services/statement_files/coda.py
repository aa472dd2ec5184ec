"""CODA 2.x (Belgian "coded statement of account", Febelfin) files.

Fixed-width records of 128 characters (positions below are 1-based, as in the Febelfin
specification; Python slices are written ``[start - 1:end]``):

* 0 header (version code in 128; only version 2 is accepted);
* 1 old balance (account structure in 2, account/currency, signed balance, date);
* 2.1 / 2.2 / 2.3 movement and its continuations (communication, counterparty, references);
* 3.1 / 3.2 / 3.3 information attached to a movement (added to its narration);
* 4 free communication; 8 new balance; 9 trailer (record count, debit and credit totals).

Several statements (0/1...8/9 blocks) may follow each other in one file. Amounts are 15 digits
with 3 implied decimals and a sign digit (0 credit, 1 debit).

Globalisation: a movement with detail number 0000 is what the bank booked; its details
(detail number > 0000: the items of a globalised total, or a breakdown) are kept in ``raw``.
By default one line is made per 0000 movement (what the balance moves by). With
``options["coda_book_details"]`` the details are booked instead of their total when they add
up to it. A globalisation opened but never closed is treated as ordinary movements (warning).
Trailer totals, record counts, account mismatch between records 1 and 8 and balances that do
not reconcile are reported as warnings, not errors.
"""
import re
from datetime import date
from decimal import Decimal

from .model import (ParseResult, Statement, StatementFileError, check_balances, clean,
                    decode_bytes, ensure_unique_ids, join_text, make_transaction,
                    normalize_account, round_statement_amounts)

FORMAT = "coda"
RECORD_LENGTH = 128


def detect(content, filename=None):
    head = content.lstrip(b"\xef\xbb\xbf\r\n ")[:400]
    if re.match(rb"0000\d{6}\d{3}05", head) and re.search(rb"[\r\n]1[0-3]\d{3}", head):
        return 0.95
    if re.match(rb"0000\d{6}", head) and len(head.split(b"\n")[0].rstrip(b"\r")) in (128, 129):
        return 0.8
    if (filename or "").lower().endswith((".cod", ".coda")):
        return 0.5
    return 0.0


# ------------------------------------------------------------------------------- fields
def _field(line, start, end):
    """Characters ``start``..``end`` (1-based, inclusive), stripped."""
    return line[start - 1:end].strip()


def _unsigned(line, start, end, number):
    """15 digits with 3 implied decimals."""
    digits = line[start - 1:end]
    if not digits.isdigit():
        raise StatementFileError("coda_bad_amount", line=number, value=digits.strip())
    return Decimal(int(digits)).scaleb(-3)


def _amount(line, sign_pos, start, end, number):
    value = _unsigned(line, start, end, number)
    sign = line[sign_pos - 1]
    if sign not in "01":
        raise StatementFileError("coda_bad_record", line=number,
                                 detail=f"the sign code {sign!r} must be 0 (credit) or 1 (debit)")
    return -value if sign == "1" else value


def _date(line, start, number):
    text = line[start - 1:start + 5]
    if text.strip() in ("", "000000"):
        return None
    if not text.isdigit():
        raise StatementFileError("coda_bad_date", line=number, value=text)
    day, month, year = int(text[:2]), int(text[2:4]), int(text[4:])
    year += 1900 if year >= 70 else 2000
    try:
        return date(year, month, day)
    except ValueError:
        raise StatementFileError("coda_bad_date", line=number, value=text) from None


def bban_to_iban(bban):
    """Belgian 12-digit account number -> BE IBAN."""
    digits = re.sub(r"\D", "", bban or "")
    if len(digits) != 12:
        return None
    check = 98 - int(digits + "111400") % 97
    return f"BE{check:02d}{digits}"


def format_ogm(digits):
    """'+++123/4567/89012+++' and whether the check digits are right."""
    digits = re.sub(r"\D", "", digits or "")
    if len(digits) != 12:
        return None, False
    expected = int(digits[:10]) % 97 or 97
    return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++", expected == int(digits[10:])


def _account(line, structure, start):
    """(account, currency, bban) from the 37-character account zone starting at ``start``."""
    zone = line[start - 1:start + 36]
    if structure == "0":
        bban = zone[:12].strip()
        return bban_to_iban(bban) or bban, zone[13:16].strip() or None, bban
    if structure == "2":
        return normalize_account(zone[:16]), zone[34:37].strip() or None, None
    return normalize_account(zone[:34]), zone[34:37].strip() or None, None


# ------------------------------------------------------------------------------ records
def _lines(text):
    """(line number, 128-character record) for every non-empty line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n\x1a")
        if not line.strip():
            continue
        if len(line) > RECORD_LENGTH:
            if line[RECORD_LENGTH:].strip():
                raise StatementFileError(
                    "coda_bad_record", line=number,
                    detail=f"the record is {len(line)} characters long instead of 128")
            line = line[:RECORD_LENGTH]
        yield number, line.ljust(RECORD_LENGTH)


class _Movement:
    def __init__(self, line, number):
        self.number = number
        self.sequence = _field(line, 3, 6)
        self.detail = _field(line, 7, 10)
        self.bank_ref = _field(line, 11, 31)
        self.amount = _amount(line, 32, 33, 47, number)
        self.value_date = _date(line, 48, number)
        self.code = line[53:61]
        self.structured = line[61] == "1"
        self.communication = [line[62:115]]
        self.entry_date = _date(line, 116, number)
        self.paper_sequence = _field(line, 122, 124)
        self.globalisation = int(line[124]) if line[124].isdigit() else 0
        self.customer_ref = self.bic = self.r_type = self.reason = None
        self.purpose = self.category_purpose = None
        self.counterparty_account = self.counterparty_currency = self.counterparty_name = None
        self.info = []
        self.details = []

    @property
    def type_digit(self):
        return self.code[0]

    def add_22(self, line):
        self.communication.append(line[10:63])
        self.customer_ref = _field(line, 64, 98) or None
        self.bic = _field(line, 99, 109) or None
        self.r_type = _field(line, 113, 113) or None
        self.reason = _field(line, 114, 117) or None
        self.category_purpose = _field(line, 118, 121) or None
        self.purpose = _field(line, 122, 125) or None

    def add_23(self, line):
        zone = line[10:47]
        currency = re.search(r"\s([A-Z]{3})$", zone.rstrip())
        account = zone[:zone.rstrip().rfind(" ")] if currency else zone
        self.counterparty_account = normalize_account(account) or None
        self.counterparty_currency = currency.group(1) if currency else None
        self.counterparty_name = clean(line[47:82])
        self.communication.append(line[82:125])


def _communication(movement, result=None):
    """(description, structured reference).

    Structured communications: 101/102 are the Belgian OGM (+++123/4567/89012+++), which is
    both the description and the structured reference; the other types (SEPA direct-debit
    data, original amounts...) are coded fields, kept in ``raw`` but not used as text."""
    text = "".join(movement.communication)
    if movement.structured:
        kind, body = text[:3], text[3:]
        if kind in ("101", "102"):
            ogm, valid = format_ogm(body[:12])
            if ogm:
                if not valid and result is not None:
                    result.warn("coda_bad_ogm", sequence=movement.sequence, value=ogm)
                return ogm, ogm
        return "", None
    return clean(text) or "", None


# ------------------------------------------------------------------------------ parsing
class _StatementBuilder:
    def __init__(self, header):
        self.header = header
        self.statement = None
        self.movements = []
        self.records = 0                 # records 1, 2.x, 3.x, 8 (what the trailer counts)
        self.last_movement = {}
        self.new_balance_account = None
        self.free_text = []
        self.trailer = None
        self.current = None


def parse(content, filename=None, options=None):
    options = options or {}
    if not content or not content.strip():
        raise StatementFileError("empty_file")
    text, encoding = decode_bytes(content, options.get("encoding"),
                                  fallbacks=("cp1252", "latin-1"))
    result = ParseResult(format=FORMAT, version="CODA 2", encoding=encoding)
    builder = None
    first = True
    for number, line in _lines(text):
        kind = line[0]
        if first and kind != "0":
            raise StatementFileError("coda_no_header", line=number, value=line[:10].strip())
        first = False
        if kind == "0":
            if builder and builder.statement:
                _finish(builder, result, options, trailer_missing=True)
            version = line[127]
            if version != "2":
                raise StatementFileError("coda_bad_version", version=version.strip() or "?")
            builder = _StatementBuilder({
                "creation_date": _date(line, 6, number), "bank_id": _field(line, 12, 14),
                "duplicate": line[16] == "D", "file_reference": _field(line, 25, 34),
                "addressee": _field(line, 35, 60), "bic": _field(line, 61, 71),
                "company_number": _field(line, 72, 82),
            })
        elif kind == "1":
            if builder.statement is not None:        # a new statement without its own header
                _finish(builder, result, options, trailer_missing=True)
                builder = _StatementBuilder(builder.header)
            builder.records += 1
            structure = line[1]
            if structure not in "0123":
                raise StatementFileError("coda_bad_record", line=number,
                                         detail=f"unknown account structure {structure!r}")
            account, currency, bban = _account(line, structure, 6)
            statement = builder.statement = Statement(
                account_number=account, currency=currency,
                bank_id=builder.header["bic"] or None,
                account_holder=clean(line[64:90]), account_kind="bank",
                opening_balance=_amount(line, 43, 44, 58, number),
                opening_date=_date(line, 59, number))
            statement.raw.update({
                "structure": structure, "bban": bban, "paper_sequence": _field(line, 3, 5),
                "coda_sequence": _field(line, 126, 128), "description": clean(line[90:125]),
                "header": builder.header, "records_2_1": 0,
            })
        elif kind in "2348":
            if builder is None or builder.statement is None:
                raise StatementFileError(
                    "coda_bad_record", line=number,
                    detail="a movement comes before the old balance (record 1)")
            if kind != "4":
                builder.records += 1
            _record(builder, line, number)
        elif kind == "9":
            if builder is None or builder.statement is None:
                raise StatementFileError("coda_bad_record", line=number,
                                         detail="a trailer without a statement")
            builder.trailer = {
                "records": int(line[16:22]) if line[16:22].isdigit() else None,
                "debit": _unsigned(line, 23, 37, number),
                "credit": _unsigned(line, 38, 52, number),
                "multiple": line[127],
            }
            _finish(builder, result, options)
            builder = _StatementBuilder(builder.header)
        else:
            raise StatementFileError("coda_bad_record", line=number,
                                     detail=f"unknown record type {kind!r}")
    if builder is not None and builder.statement is not None:
        _finish(builder, result, options, trailer_missing=True)
    if not result.statements:
        raise StatementFileError("no_statement", detail="no old-balance record (1)")
    return result


def _record(builder, line, number):
    kind, article = line[0], line[1]
    statement = builder.statement
    if kind == "2":
        if article == "1":
            movement = _Movement(line, number)
            statement.raw["records_2_1"] += 1
            if movement.detail == "0000" or not builder.movements:
                builder.movements.append(movement)
            else:
                parent = next((m for m in reversed(builder.movements)
                               if m.sequence == movement.sequence), None)
                (parent.details if parent else builder.movements).append(movement)
            builder.last_movement[movement.sequence] = movement
            builder.current = movement
        elif article in "23":
            movement = builder.current
            if movement is None or movement.sequence != _field(line, 3, 6):
                raise StatementFileError("coda_bad_record", line=number,
                                         detail="a record 2.%s without its record 2.1" % article)
            (movement.add_22 if article == "2" else movement.add_23)(line)
        else:
            raise StatementFileError("coda_bad_record", line=number,
                                     detail=f"unknown movement record 2.{article}")
    elif kind == "3":
        if article not in "123":
            raise StatementFileError("coda_bad_record", line=number,
                                     detail=f"unknown information record 3.{article}")
        movement = builder.last_movement.get(_field(line, 3, 6))
        if movement is None:
            statement.raw.setdefault("orphan_information", []).append(line)
            return
        if article == "1":
            text = line[40:113]
            if line[39] == "1" and text[:3].isdigit():
                text = text[3:]
            movement.info.append(text)
        else:
            movement.info.append(line[10:115] if article == "2" else line[10:100])
    elif kind == "4":
        builder.free_text.append(line[32:112])
    elif kind == "8":
        account, currency, _ = _account(line, statement.raw["structure"], 5)
        builder.new_balance_account = account
        statement.closing_balance = _amount(line, 42, 43, 57, number)
        statement.closing_date = _date(line, 58, number)


def _finish(builder, result, options, trailer_missing=False):
    statement = builder.statement
    year = (statement.closing_date or statement.opening_date or date.min).year
    statement.statement_id = f"{year}/{statement.raw['paper_sequence']}"
    statement.name = statement.statement_id
    label = statement.label
    if builder.free_text:
        statement.raw["free_communication"] = clean("".join(builder.free_text))
    if trailer_missing:
        result.warn("coda_no_trailer")
    if (builder.new_balance_account and statement.account_number
            and builder.new_balance_account != statement.account_number):
        result.warn("coda_account_mismatch", statement=label, other=builder.new_balance_account,
                    account=statement.account_number)

    book_details = bool(options.get("coda_book_details"))
    debit = credit = Decimal(0)
    for movement in builder.movements:
        if movement.amount < 0:
            debit -= movement.amount
        else:
            credit += movement.amount
        if movement.globalisation and not any(
                d.globalisation == movement.globalisation for d in movement.details):
            result.warn("coda_unclosed_globalisation", statement=label,
                        sequence=movement.sequence)
        details = movement.details
        if book_details and details and sum(d.amount for d in details) == movement.amount:
            for detail in details:
                statement.transactions.append(_transaction(detail, statement, result, [],
                                                           parent=movement))
        else:
            statement.transactions.append(_transaction(movement, statement, result, details))

    if builder.trailer:
        trailer = builder.trailer
        if trailer["records"] is not None and trailer["records"] != builder.records:
            result.warn("coda_trailer_count", statement=label, expected=trailer["records"],
                        found=builder.records)
        if (trailer["debit"], trailer["credit"]) != (debit, credit):
            result.warn("coda_trailer_sums", statement=label, debit=trailer["debit"],
                        credit=trailer["credit"], found_debit=debit, found_credit=credit)
        statement.raw["trailer"] = {k: str(v) for k, v in trailer.items()}
    statement.raw["movements"] = len(builder.movements)
    ensure_unique_ids(statement.transactions, result)
    round_statement_amounts(statement, result)
    if statement.closing_balance is None:          # empty CODA: no record 8
        statement.closing_balance = statement.opening_balance + statement.total
        statement.closing_balance_computed = True
        statement.closing_date = statement.date_to or statement.opening_date
    else:
        check_balances(statement, result)
    result.statements.append(statement)


def _transaction(movement, statement, result, details, parent=None):
    description, structured = _communication(movement, result)
    source = parent or movement
    if not description and parent is not None:
        description, structured = _communication(parent)
    info = [clean(t) for t in movement.info if clean(t)]
    for detail in details:
        info.extend(clean(t) for t in detail.info if clean(t))
    booking = movement.entry_date or source.entry_date or movement.value_date
    raw = {
        "line": movement.number, "sequence": movement.sequence, "detail": movement.detail,
        "bank_reference": movement.bank_ref or None, "globalisation": movement.globalisation,
        "r_type": movement.r_type, "reason": movement.reason,
        "category_purpose": movement.category_purpose, "purpose": movement.purpose,
        "information": join_text(*info, sep="\n") or None,
        "structured_communication": clean("".join(movement.communication))
        if movement.structured else None,
        "details": [{"detail": d.detail, "amount": str(d.amount),
                     "communication": _communication(d)[0] or None, "code": d.code}
                    for d in details] or None,
        "narration": join_text(description, *info, sep="\n") or None,
    }
    opening_date = statement.opening_date.strftime("%Y%m%d") if statement.opening_date else ""
    external_id = "/".join((opening_date, statement.raw["paper_sequence"], movement.sequence,
                            movement.detail))
    counterparty = movement.counterparty_name or (parent.counterparty_name if parent else None)
    txn = make_transaction(
        account=statement.account_number, external_id=external_id, amount=movement.amount,
        currency=statement.currency, booking_date=booking, value_date=movement.value_date,
        description=description or join_text(*info) or counterparty or movement.code,
        structured_reference=structured, counterparty_name=counterparty,
        counterparty_iban=movement.counterparty_account or (
            parent.counterparty_account if parent else None),
        counterparty_bic=movement.bic or (parent.bic if parent else None),
        end_to_end_id=movement.customer_ref, bank_transaction_code=movement.code,
        raw={k: v for k, v in raw.items() if v not in (None, "")})
    if movement.bank_ref:
        txn.alt_ids["bank_reference"] = movement.bank_ref
    return txn
