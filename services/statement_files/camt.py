"""CAMT.053 (ISO 20022 BankToCustomerStatement), any message version (001.02 ... 001.13).

Elements are found by local name, so the namespace (and thus the version) does not matter;
version differences handled: ``Sts`` as text (v02-v06) or ``Sts/Cd`` (v07+), party names as
``Dbtr/Nm`` or ``Dbtr/Pty/Nm`` (both are read in every version), BIC or BICFI, transaction
amounts in ``TxDtls/Amt`` (v03+) or ``TxDtls/AmtDtls/TxAmt/Amt``.

Rules:
* only booked entries (``Sts`` BOOK, or no status) are imported; others are counted;
* opening balance = OPBD, else PRCD, else the first ITBD; closing = CLBD, else the last ITBD;
  a missing one is computed from the other and the lines;
* a batch entry (several TxDtls) is split into one line per TxDtls when all of them carry an
  amount and the amounts add up to the entry amount; otherwise it stays one line;
* a date-time with a zone is converted to the bank's local date (``options["timezone"]``, else
  the time zone of the account's country when known);
* line id: the bank's AcctSvcrRef (of the TxDtls for split lines), else NtryRef, else a
  synthetic fingerprint.
"""
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from .model import (ParseResult, Statement, StatementFileError, assign_synthetic_ids,
                    check_balances, checked_amount, clean, ensure_unique_ids, join_text,
                    make_transaction, round_statement_amounts)

FORMAT = "camt053"

#: time zone of the account's country (first two letters of the IBAN) for UTC date-times
COUNTRY_TIMEZONES = {
    "AT": "Europe/Vienna", "BE": "Europe/Brussels", "BG": "Europe/Sofia", "CH": "Europe/Zurich",
    "CY": "Asia/Nicosia", "CZ": "Europe/Prague", "DE": "Europe/Berlin", "DK": "Europe/Copenhagen",
    "EE": "Europe/Tallinn", "ES": "Europe/Madrid", "FI": "Europe/Helsinki", "FR": "Europe/Paris",
    "GB": "Europe/London", "GR": "Europe/Athens", "HR": "Europe/Zagreb", "HU": "Europe/Budapest",
    "IE": "Europe/Dublin", "IS": "Atlantic/Reykjavik", "IT": "Europe/Rome",
    "LI": "Europe/Vaduz", "LT": "Europe/Vilnius", "LU": "Europe/Luxembourg",
    "LV": "Europe/Riga", "MC": "Europe/Monaco", "MT": "Europe/Malta", "NL": "Europe/Amsterdam",
    "NO": "Europe/Oslo", "PL": "Europe/Warsaw", "PT": "Europe/Lisbon", "RO": "Europe/Bucharest",
    "SE": "Europe/Stockholm", "SI": "Europe/Ljubljana", "SK": "Europe/Bratislava",
}

_OTHER_MESSAGES = {"BkToCstmrAcctRpt": "camt.052 account report",
                   "BkToCstmrDbtCdtNtfctn": "camt.054 debit/credit notification"}


def detect(content, filename=None):
    head = content[:4096]
    if b"camt.053" in head or b"BkToCstmrStmt" in head:
        return 1.0
    if b"<Document" in head and (b"BkToCstmr" in content[:65536] or b"camt." in head):
        return 0.8
    return 0.0


# ------------------------------------------------------------------------------- navigation
def _local(element):
    tag = element.tag
    if not isinstance(tag, str):
        return None
    return tag.rsplit("}", 1)[-1]


def _children(element, name):
    if element is None:
        return []
    return [c for c in element if _local(c) == name]


def _find(element, path):
    """First element along ``path`` ('Acct/Id/IBAN'), children only, any namespace."""
    for name in path.split("/"):
        found = _children(element, name)
        if not found:
            return None
        element = found[0]
    return element


def _findall(element, path):
    *parents, last = path.split("/")
    nodes = [element]
    for name in parents:
        nodes = [c for n in nodes for c in _children(n, name)]
    return [c for n in nodes for c in _children(n, last)]


def _text(element, path):
    """Stripped text, None when empty or the placeholder NOTPROVIDED."""
    found = _find(element, path) if path else element
    if found is None or found.text is None:
        return None
    value = clean(found.text)
    if value and value.upper() in ("NOTPROVIDED", "NOT PROVIDED"):
        return None
    return value


def _first_text(element, *paths):
    for path in paths:
        value = _text(element, path)
        if value:
            return value
    return None


# ------------------------------------------------------------------------------------ values
class _Context:
    def __init__(self, result, options, statement_label, tzname):
        self.result = result
        self.options = options
        self.label = statement_label
        self.tzname = tzname
        self.missing_indicator = 0


def _amount(element, ctx, entry="-"):
    """(signed Decimal, currency) of an ``Amt`` + sibling ``CdtDbtInd``; None if no amount."""
    amt = _find(element, "Amt")
    if amt is None or not (amt.text or "").strip():
        return None, None
    try:
        value = checked_amount(Decimal(amt.text.strip()))
    except (InvalidOperation, ValueError):
        raise StatementFileError("camt_bad_amount", statement=ctx.label, entry=entry,
                                 value=amt.text.strip()) from None
    indicator = _text(element, "CdtDbtInd")
    if indicator is None:
        ctx.missing_indicator += 1
    elif indicator.upper() == "DBIT":
        value = -value
    return value, (amt.get("Ccy") or "").upper() or None


def _plain_amount(element):
    """(Decimal, currency) of an element holding ``Amt`` (no indicator)."""
    amt = _find(element, "Amt") if element is not None else None
    if amt is None or not (amt.text or "").strip():
        return None, None
    try:
        return checked_amount(Decimal(amt.text.strip())), (amt.get("Ccy") or "").upper() or None
    except (InvalidOperation, ValueError):
        return None, None


def _to_date(text, ctx):
    """A ``date`` from 'YYYY-MM-DD', 'YYYY-MM-DD+02:00' or a date-time (zone converted)."""
    if not text:
        return None
    value = text.strip()
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:?\d{2})?", value)
    try:
        if match:
            return date.fromisoformat(match.group(1))
        match = re.fullmatch(
            r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:?\d{2})?", value)
        if not match:
            raise ValueError(value)
        fraction = (match.group(2) or "")[:7]
        zone = match.group(3)
        moment = datetime.fromisoformat(match.group(1) + fraction + (
            "+00:00" if zone == "Z" else (zone or "")))
    except ValueError:
        raise StatementFileError("camt_bad_date", statement=ctx.label, value=value) from None
    if moment.tzinfo is not None and ctx.tzname:
        try:
            from zoneinfo import ZoneInfo
            moment = moment.astimezone(ZoneInfo(ctx.tzname))
        except Exception:  # unknown zone / no tz database: keep the date as written
            pass
    return moment.date()


def _date_of(element, ctx):
    """Date of a ``BookgDt`` / ``ValDt`` / ``Bal/Dt`` choice (Dt or DtTm, even nested)."""
    if element is None:
        return None
    text = _first_text(element, "Dt", "DtTm", "Dt/DtTm", "Dt/Dt")
    if text is None and element.text and element.text.strip():
        text = element.text.strip()
    return _to_date(text, ctx)


def _account_id(element):
    """IBAN or other account id below an ``...Acct`` element."""
    return _first_text(element, "Id/IBAN", "Id/Othr/Id", "Id/BBAN", "Id/UPIC", "Id/PrtryAcct/Id")


def _party_name(element):
    return _first_text(element, "Nm", "Pty/Nm", "Agt/FinInstnId/Nm")


def _bic(element):
    return _first_text(element, "FinInstnId/BICFI", "FinInstnId/BIC")


def _status(entry):
    return (_first_text(entry, "Sts/Cd", "Sts/Prtry", "Sts") or "BOOK").upper()


# ---------------------------------------------------------------------------------- parsing
def parse(content, filename=None, options=None):
    from lxml import etree

    options = options or {}
    if not content or not content.strip():
        raise StatementFileError("empty_file")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(content.lstrip(), parser)
    except etree.XMLSyntaxError as error:
        detail = str(error)
        if "encoding" in detail.lower() or "utf-16" in detail.lower():
            try:  # a declaration that lies about the encoding: let lxml sniff the bytes
                root = etree.fromstring(re.sub(rb"encoding=[\"'][^\"']+[\"']", b"",
                                               content.lstrip(), count=1), parser)
            except etree.XMLSyntaxError:
                raise StatementFileError("camt_invalid_xml", detail=detail) from None
        else:
            raise StatementFileError("camt_invalid_xml", detail=detail) from None
    namespace = etree.QName(root).namespace or ""
    version = re.search(r"camt\.\d{3}\.\d{3}\.\d{2}", namespace)
    message = root if _local(root) != "Document" else next(
        (c for c in root if isinstance(c.tag, str)), None)
    kind = _local(message) if message is not None else None
    if kind in _OTHER_MESSAGES or (version and not version.group(0).startswith("camt.053")):
        raise StatementFileError("camt_not_statement",
                                 kind=_OTHER_MESSAGES.get(kind) or version.group(0))
    if kind != "BkToCstmrStmt":
        raise StatementFileError("camt_invalid_xml",
                                 detail=f"the root element is {kind or _local(root)!r}, "
                                        "not a BkToCstmrStmt message")
    result = ParseResult(format=FORMAT, version=version.group(0) if version else "camt.053",
                         encoding=root.getroottree().docinfo.encoding)
    header = _find(message, "GrpHdr")
    result.raw["message_id"] = _text(header, "MsgId")
    statements = _children(message, "Stmt")
    if not statements:
        raise StatementFileError("camt_no_statement")
    for stmt in statements:
        result.statements.append(_statement(stmt, result, options))
    return result


def _statement(stmt, result, options):
    account = _find(stmt, "Acct")
    number = _account_id(account)
    statement = Statement(
        account_number=number,
        statement_id=_text(stmt, "Id"),
        currency=(_text(account, "Ccy") or "").upper() or None,
        bank_id=_bic(_find(account, "Svcr")) if account is not None else None,
        account_holder=_first_text(account, "Ownr/Nm", "Ownr/Pty/Nm", "Nm"),
        account_kind="bank",
    )
    label = statement.statement_id or number or "?"
    country = (number or "")[:2].upper()
    tzname = options.get("timezone") or COUNTRY_TIMEZONES.get(country)
    ctx = _Context(result, options, label, tzname)
    statement.name = statement.statement_id
    statement.raw.update({
        "electronic_sequence": _text(stmt, "ElctrncSeqNb"),
        "legal_sequence": _text(stmt, "LglSeqNb"),
        "created": _text(stmt, "CreDtTm"),
        "from": _first_text(stmt, "FrToDt/FrDtTm", "FrToDt/FrDt"),
        "to": _first_text(stmt, "FrToDt/ToDtTm", "FrToDt/ToDt"),
        "copy_duplicate": _text(stmt, "CpyDplctInd"),
        "info": _text(stmt, "AddtlStmtInf"),
    })
    statement_date = _to_date(statement.raw["to"] or statement.raw["created"], ctx)

    # balances
    balances = []
    for bal in _children(stmt, "Bal"):
        code = (_first_text(bal, "Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry") or "").upper()
        amount, currency = _amount(bal, ctx, entry="balance")
        if amount is None:
            continue
        balances.append((code, amount, currency, _date_of(_find(bal, "Dt"), ctx)))
    statement.raw["balances"] = [(c, str(a), cur, d) for c, a, cur, d in balances]
    if not statement.currency:
        statement.currency = next((cur for c, _, cur, _ in balances
                                   if c in ("OPBD", "PRCD", "CLBD") and cur), None)

    def pick(codes, last=False):
        for code in codes:
            found = [b for b in balances if b[0] == code]
            if found:
                return found[-1] if last else found[0]
        return None

    opening = pick(("OPBD", "PRCD")) or pick(("ITBD",))
    closing = pick(("CLBD",)) or pick(("ITBD",), last=True)
    if opening is not None and opening is closing:
        closing = None                      # a single interim balance: use it once

    # entries
    skipped = {}
    entries = _children(stmt, "Ntry")
    for number_in_stmt, entry in enumerate(entries, start=1):
        status = _status(entry)
        if status != "BOOK":
            skipped[status] = skipped.get(status, 0) + 1
            continue
        for txn in _entry_lines(entry, number_in_stmt, statement, ctx, statement_date):
            statement.transactions.append(txn)
    statement.raw["entries"] = len(entries)
    statement.raw["booked_entries"] = len(entries) - sum(skipped.values())
    for status, count in sorted(skipped.items()):
        result.warn("camt_skipped_status", statement=label, count=count, status=status)
    if not statement.currency:
        statement.currency = next((t.currency for t in statement.transactions if t.currency),
                                  None)

    for kind, balance in (("opening", opening), ("closing", closing)):
        if balance and balance[2] and statement.currency and balance[2] != statement.currency:
            result.warn("camt_balance_currency", statement=label, kind=kind,
                        balance_currency=balance[2], currency=statement.currency)
    if opening:
        statement.opening_balance, statement.opening_date = opening[1], opening[3]
        statement.raw["opening_type"] = opening[0]
    if closing:
        statement.closing_balance, statement.closing_date = closing[1], closing[3]
        statement.raw["closing_type"] = closing[0]

    assign_synthetic_ids(statement.transactions, lambda t: (
        statement.account_number, t.booking_date, t.value_date, t.amount, t.end_to_end_id,
        t.counterparty_iban, t.description))
    ensure_unique_ids(statement.transactions, result)
    round_statement_amounts(statement, result)
    if opening and not closing:
        statement.closing_balance = statement.opening_balance + statement.total
        statement.closing_balance_computed = True
        statement.closing_date = max(d for d in (statement.date_to, statement.opening_date,
                                                 date.min) if d) if statement.date_to or \
            statement.opening_date else None
    elif closing and not opening:
        statement.opening_balance = statement.closing_balance - statement.total
        statement.opening_balance_computed = True
    else:
        check_balances(statement, result)
    if ctx.missing_indicator:
        result.warn("camt_missing_indicator", statement=label, count=ctx.missing_indicator)
    return statement


def _entry_lines(entry, index, statement, ctx, statement_date):
    amount, currency = _amount(entry, ctx, entry=index)
    if amount is None:
        raise StatementFileError("camt_no_amount", statement=ctx.label, entry=index)
    currency = currency or statement.currency
    booking = _date_of(_find(entry, "BookgDt"), ctx)
    value = _date_of(_find(entry, "ValDt"), ctx)
    if not booking and not value:
        booking = statement_date
        ctx.result.warn("camt_no_date", statement=ctx.label, entry=index)
    reversal = (_text(entry, "RvslInd") or "").lower() in ("true", "1")
    entry_ref = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
    code = _bank_code(entry)
    entry_info = _text(entry, "AddtlNtryInf")
    details = [tx for d in _children(entry, "NtryDtls") for tx in _children(d, "TxDtls")]
    batch = _find(entry, "NtryDtls/Btch")
    common = {
        "entry": index, "entry_ref": _text(entry, "NtryRef"),
        "entry_acct_svcr_ref": _text(entry, "AcctSvcrRef"), "reversal": reversal or None,
        "entry_info": entry_info, "batch_count": _text(batch, "NbOfTxs"),
        "batch_payment_id": _text(batch, "PmtInfId"), "entries_in_line": 1,
    }

    amounts = [_detail_amount(tx, ctx, currency, amount) for tx in details]
    split = (len(details) > 1 and all(a is not None for a in amounts)
             and sum(amounts) == amount)
    lines = []
    if split:
        own_refs = [_text(tx, "Refs/AcctSvcrRef") for tx in details]
        unique = (all(own_refs) and len(set(own_refs)) == len(own_refs)
                  and entry_ref not in own_refs)
        for i, (tx, tx_amount) in enumerate(zip(details, amounts), start=1):
            ref = own_refs[i - 1] if unique else (f"{entry_ref}/{i}" if entry_ref else "")
            lines.append(_line(statement, tx, tx_amount, currency, booking, value, ref, code,
                               dict(common, detail=i, details=len(details)), entry_info))
    else:
        tx = details[0] if len(details) == 1 else None
        ref = entry_ref or (_text(tx, "Refs/AcctSvcrRef") if tx is not None else None) or ""
        info = dict(common, details=len(details))
        lines.append(_line(statement, tx, amount, currency, booking, value, ref, code, info,
                           entry_info))
    return lines


def _detail_amount(tx, ctx, currency, entry_amount):
    """Signed amount of a TxDtls in the entry currency, or None."""
    sign = -1 if entry_amount < 0 else 1
    value, ccy = _amount(tx, ctx) if _find(tx, "Amt") is not None else (None, None)
    if value is not None and (ccy in (None, currency)):
        if _text(tx, "CdtDbtInd") is None:
            ctx.missing_indicator -= 1           # the entry's indicator applies
            value = abs(value) * sign
        return value
    value, ccy = _plain_amount(_find(tx, "AmtDtls/TxAmt"))
    if value is not None and ccy in (None, currency):
        return abs(value) * sign
    return None


def _bank_code(element):
    domain = _text(element, "BkTxCd/Domn/Cd")
    family = _text(element, "BkTxCd/Domn/Fmly/Cd")
    sub = _text(element, "BkTxCd/Domn/Fmly/SubFmlyCd")
    if domain:
        return "-".join(p for p in (domain, family, sub) if p)
    proprietary = _text(element, "BkTxCd/Prtry/Cd")
    return proprietary


def _line(statement, tx, amount, currency, booking, value, ref, code, info, entry_info):
    counterparty = {}
    remittance, structured, tx_info = [], None, None
    end_to_end = mandate = None
    original_amount = original_currency = None
    raw = {k: v for k, v in info.items() if v is not None}
    if tx is not None:
        side = "Dbtr" if amount >= 0 else "Cdtr"
        parties = _find(tx, "RltdPties")
        counterparty = {
            "name": (_party_name(_find(parties, side))
                     or _party_name(_find(parties, "Ultmt" + side))),
            "iban": _account_id(_find(parties, side + "Acct")),
            "bic": _bic(_find(tx, f"RltdAgts/{side}Agt")),
        }
        remittance = [_text(u, None) for u in _findall(tx, "RmtInf/Ustrd") if _text(u, None)]
        refs = [_text(s, "CdtrRefInf/Ref") for s in _findall(tx, "RmtInf/Strd")]
        structured = next((r for r in refs if r), None)
        end_to_end = _text(tx, "Refs/EndToEndId")
        mandate = _text(tx, "Refs/MndtId")
        tx_info = _text(tx, "AddtlTxInf")
        instructed, instructed_ccy = _plain_amount(_find(tx, "AmtDtls/InstdAmt"))
        if instructed is not None and instructed_ccy and instructed_ccy != currency:
            original_amount = instructed if amount >= 0 else -instructed
            original_currency = instructed_ccy
        raw.update({k: v for k, v in {
            "instruction_id": _text(tx, "Refs/InstrId"),
            "transaction_id": _text(tx, "Refs/TxId"),
            "tx_acct_svcr_ref": _text(tx, "Refs/AcctSvcrRef"),
            "return_reason": _text(tx, "RtrInf/Rsn/Cd") or _text(tx, "RtrInf/Rsn/Prtry"),
            "tx_info": tx_info,
            "tx_code": _bank_code(tx),
        }.items() if v})
    description = (" ".join(remittance) or structured or tx_info or entry_info
                   or counterparty.get("name") or code or "")
    narration = [entry_info, tx_info]
    if info.get("reversal"):
        narration.append("Reversal")
    if raw.get("return_reason"):
        narration.append(f"Return reason: {raw['return_reason']}")
    raw["narration"] = join_text(*narration, sep="\n") or None
    txn = make_transaction(
        account=statement.account_number, external_id=ref, amount=amount, currency=currency,
        booking_date=booking or value, value_date=value, description=clean(description) or "",
        structured_reference=structured, counterparty_name=counterparty.get("name"),
        counterparty_iban=counterparty.get("iban"), counterparty_bic=counterparty.get("bic"),
        end_to_end_id=end_to_end, mandate_id=mandate, bank_transaction_code=code,
        original_amount=original_amount, original_currency=original_currency, raw=raw)
    if end_to_end:
        txn.alt_ids["end_to_end_id"] = end_to_end
    return txn
