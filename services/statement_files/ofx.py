"""OFX / QFX (1.x SGML and 2.x XML) bank and credit-card statements.

Parsing itself is done by ``ofxparse`` (pinned by Odoo 18); this module puts a tolerant
pre-processing step in front of it, because real files break ofxparse in many ways:

* BOM, blank lines before the header, a header on one line or glued to ``<OFX>``, no header;
* encodings that lie (CHARSET:1252 with UTF-8 bytes, ``CHARSET:8859-1``, XML saying utf-16);
* empty elements (``<BALAMT></BALAMT>``, empty CURDEF/NAME/FITID), comments, CDATA;
* decimal commas and explicit plus signs; time-zone suffixes on dates;
* pending transactions (``BANKTRANLISTP``), which are never imported.

Dates are the date written in the file (the bank's local date); the time-zone suffix is not
used to shift it to UTC. OFX has no opening balance: it is computed from LEDGERBAL when that
balance is dated on or after the last line.
"""
import html
import io
import re
import warnings
from datetime import date
from decimal import Decimal

from .model import (ParseResult, Statement, StatementFileError, assign_synthetic_ids, clean,
                    decode_bytes, ensure_unique_ids, join_text, make_transaction, parse_decimal,
                    round_statement_amounts)

FORMAT = "ofx"

_HEADER_KEYS = ("OFXHEADER", "DATA", "VERSION", "SECURITY", "ENCODING", "CHARSET",
                "COMPRESSION", "OLDFILEUID", "NEWFILEUID")
_CHARSETS = {"1252": "cp1252", "8859-1": "latin-1", "ISO-8859-1": "latin-1", "LATIN1": "latin-1",
             "ISO8859-1": "latin-1", "UTF-8": "utf-8", "UTF8": "utf-8"}
_FITID_MARK = "|"
#: aggregates are never "empty leaves", even when a broken file leaves one unclosed
_AGGREGATES = {"OFX", "SIGNONMSGSRSV1", "SONRS", "STATUS", "FI", "BANKMSGSRSV1", "STMTTRNRS",
               "STMTRS", "BANKACCTFROM", "BANKACCTTO", "CCACCTFROM", "CCACCTTO", "BANKTRANLIST",
               "STMTTRN", "LEDGERBAL", "AVAILBAL", "CREDITCARDMSGSRSV1", "CCSTMTTRNRS",
               "CCSTMTRS", "PAYEE", "CURRENCY", "ORIGCURRENCY", "BALLIST", "BAL"}


def detect(content, filename=None):
    """Confidence 0..1 that ``content`` is an OFX file."""
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:4096].upper()
    if head.startswith(b"OFXHEADER") or b"<?OFX" in head:
        return 1.0
    if b"<OFX>" in head or b"<OFX " in head:
        return 0.9
    return 0.0


# ---------------------------------------------------------------------------- pre-processing
def _split_header(text):
    """(header dict, version label, body starting at <OFX>)."""
    start = re.search(r"<OFX[\s>]", text, re.IGNORECASE)
    if not start:
        raise StatementFileError("ofx_invalid", detail="there is no <OFX> element")
    head, body = text[:start.start()], text[start.start():]
    header = {}
    xml_header = re.search(r"<\?OFX\s+([^?]*)\?>", head, re.IGNORECASE)
    if xml_header:
        for key, value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', xml_header.group(1)):
            header[key.upper()] = value
        declaration = re.search(r'<\?xml[^>]*encoding\s*=\s*"([^"]+)"', head, re.IGNORECASE)
        if declaration:
            header["XML_ENCODING"] = declaration.group(1)
    else:
        # SGML header: KEY:VALUE pairs, one per line, or all on one line
        for key, value in re.findall(r"([A-Z]+)\s*:\s*([^\s<]*)", head, re.IGNORECASE):
            if key.upper() in _HEADER_KEYS:
                header[key.upper()] = value
    version = "OFX %s/%s" % (header.get("OFXHEADER") or "?", header.get("VERSION") or "?")
    return header, version, body


def _decode(content, options):
    """Decode the bytes: UTF-8 when the bytes are valid UTF-8 (banks that declare 1252 but
    send UTF-8 exist), else the declared charset, else cp1252."""
    encoding = options.get("encoding")
    if encoding:
        return decode_bytes(content, encoding)
    head = content[:2048].decode("latin-1")
    charset = re.search(r"CHARSET\s*:\s*([\w-]+)", head, re.IGNORECASE)
    declared = None
    if charset:
        declared = _CHARSETS.get(charset.group(1).upper())
        if declared is None and charset.group(1).isdigit():
            declared = "cp" + charset.group(1)
    fallbacks = tuple(e for e in (declared, "cp1252", "latin-1") if e)
    try:
        return decode_bytes(content, fallbacks=fallbacks)
    except LookupError:
        return decode_bytes(content)


def _amount_text(value):
    value = value.strip()
    if "," in value and "." in value:
        sep = None                      # the last separator is the decimal one
    elif "," in value:
        sep = ","                       # OFX allows a decimal comma; no thousands separators
    else:
        sep = "."
    return str(parse_decimal(value, sep))


def _block(name):
    """``(<NAME>)(content)(</NAME>)`` where the content holds neither tag: an unclosed element
    is then skipped at once instead of being searched to the end of the file for every
    occurrence (quadratic on large damaged files)."""
    return re.compile(r"(<%s>)([^<]*(?:<(?!/?%s>)[^<]*)*)(</%s>)" % (name, name, name),
                      re.IGNORECASE)


_STMTTRN_BLOCK = _block("STMTTRN")
_PENDING_BLOCK = _block("BANKTRANLISTP")
_SONRS_BLOCK = _block("SONRS")
#: a ``<`` that starts no tag, comment or declaration (html.parser would take it for one)
_STRAY_LT = re.compile(r"<(?![A-Za-z!?]|/[A-Za-z])")
#: aggregates ofxparse reads but the import does not use; a damaged one breaks ofxparse
#: (``int()`` of the status code), so their tags are removed (their leaves stay, unread)
_UNUSED_AGGREGATES = re.compile(r"</?(?:SONRS|STATUS)>", re.IGNORECASE)
_DATE_VALUE = re.compile(r"(<(DT[A-Z]+)>)([^<]*)(</\2>)?", re.IGNORECASE)


def _ofx_day(value):
    """The ``date`` of an OFX date-time value (YYYYMMDD then anything), or None."""
    digits = re.match(r"\s*(\d{4})(\d{2})(\d{2})", value)
    if not digits:
        return None
    try:
        return date(*(int(d) for d in digits.groups()))
    except ValueError:
        return None


def _institution(body):
    """ORG of the sign-on response (the financial institution), or None."""
    sonrs = _SONRS_BLOCK.search(body)
    org = re.search(r"<ORG>([^<]*)", sonrs.group(2) if sonrs else body[:4096], re.IGNORECASE)
    return clean(html.unescape(org.group(1))) if org else None


def _preprocess(body, result):
    """Body text ofxparse can swallow, plus per-transaction extras by index."""
    # comments, CDATA, pending lists
    body = re.sub(r"<!--.*?-->", "", body, flags=re.DOTALL)
    body = re.sub(r"<!\[CDATA\[(.*?)\]\]>",
                  lambda m: m.group(1).replace("&", "&amp;").replace("<", "&lt;"),
                  body, flags=re.DOTALL)
    body = _STRAY_LT.sub("&lt;", body)
    body = _UNUSED_AGGREGATES.sub("", body)
    pending = 0

    def drop_pending(match):
        nonlocal pending
        pending += len(re.findall(r"<STMTTRNP>", match.group(0), re.IGNORECASE))
        return ""

    body = _PENDING_BLOCK.sub(drop_pending, body)
    if pending:
        result.warn("ofx_pending_ignored", count=pending)
    # empty elements: <X></X> (XML style) and, for SGML leaves, <X> directly followed by a tag
    body = re.sub(r"<([A-Z0-9_.]+)>\s*</\1>", "", body, flags=re.IGNORECASE)
    closed = {t.upper() for t in re.findall(r"</([A-Z0-9_.]+)>", body, re.IGNORECASE)}

    def drop_empty_leaf(match):
        name = match.group(1).upper()
        return "" if name not in closed and name not in _AGGREGATES else match.group(0)

    body = re.sub(r"<([A-Z0-9_.]+)>\s*(?=<)", drop_empty_leaf, body, flags=re.IGNORECASE)
    body = re.sub(r"<([A-Z0-9_.]+)>\s*</\1>", "", body, flags=re.IGNORECASE)

    # dates: keep the local date written in the file (YYYYMMDD), drop time and zone. A
    # posting date that is no date is reported with its transaction below; any other
    # unreadable date (server time, period, balance date...) is dropped: ofxparse would fail
    def fix_date(match):
        day = _ofx_day(match.group(3))
        if day is not None:
            return f"{match.group(1)}{day:%Y%m%d}{match.group(4) or ''}"
        return match.group(0) if match.group(2).upper() == "DTPOSTED" else ""

    body = _DATE_VALUE.sub(fix_date, body)

    # amounts: canonical decimal text
    def fix_amount(match):
        tag, value = match.group(1), match.group(2)
        if not value.strip():
            return match.group(0)
        try:
            return f"{tag}{_amount_text(value)}"
        except ValueError:
            number = len(re.findall(r"<STMTTRN>", body[:match.start()], re.IGNORECASE))
            if tag.upper() != "<TRNAMT>" or not number:   # a balance, or outside any line
                raise StatementFileError(
                    "ofx_invalid", detail=f"the amount {value.strip()} of {tag.upper()} is "
                                          "not a number") from None
            raise StatementFileError("ofx_bad_amount", number=number,
                                     value=value.strip()) from None

    body = re.sub(r"(<(?:TRNAMT|BALAMT)>)([^<]*)", fix_amount, body, flags=re.IGNORECASE)

    # each STMTTRN: check the required fields, remember extras, tag FITID with its index
    extras = []

    def tag_transaction(match):
        block = match.group(2)
        index = len(extras)
        fields = {}
        for name in ("FITID", "TRNAMT", "DTPOSTED", "DTUSER", "DTAVAIL", "REFNUM", "CHECKNUM",
                     "CORRECTFITID", "CORRECTACTION", "SIC", "PAYEEID", "TRNTYPE", "CURSYM",
                     "CURRATE"):
            found = re.search(r"<%s>([^<]*)" % name, block, re.IGNORECASE)
            if found and found.group(1).strip():
                fields[name.lower()] = found.group(1).strip()
        to_account = re.search(r"<(?:BANKACCTTO|CCACCTTO)>(.*?)</(?:BANKACCTTO|CCACCTTO)>",
                               block, re.IGNORECASE | re.DOTALL)
        if to_account:
            acct = re.search(r"<ACCTID>([^<]*)", to_account.group(1), re.IGNORECASE)
            if acct and acct.group(1).strip():
                fields["to_account"] = acct.group(1).strip()
        fields["orig_currency"] = bool(re.search(r"<ORIGCURRENCY>", block, re.IGNORECASE))
        if "trnamt" not in fields:
            raise StatementFileError("ofx_missing_amount", number=index + 1,
                                     fitid=fields.get("fitid", "-"))
        if "dtposted" not in fields:
            raise StatementFileError("ofx_missing_date", number=index + 1,
                                     fitid=fields.get("fitid", "-"))
        if _ofx_day(fields["dtposted"]) is None:
            raise StatementFileError(
                "ofx_invalid", detail=f"the posting date {fields['dtposted']} of transaction "
                                      f"{index + 1} (FITID {fields.get('fitid', '-')}) is not "
                                      "a date written YYYYMMDD")
        extras.append(fields)
        block = re.sub(r"<FITID>[^<]*(</FITID>)?", "", block, flags=re.IGNORECASE)
        marker = f"{index}{_FITID_MARK}{fields.get('fitid', '')}"
        marker = marker.replace("&", "&amp;").replace("<", "&lt;")
        return f"{match.group(1)}<FITID>{marker}</FITID>{block}{match.group(3)}"

    body = _STMTTRN_BLOCK.sub(tag_transaction, body)
    if re.search(r"<STMTTRN>", body, re.IGNORECASE) and len(extras) < len(
            re.findall(r"<STMTTRN>", body, re.IGNORECASE)):
        raise StatementFileError("ofx_invalid", detail="a <STMTTRN> element is never closed")
    return _close_leaves(body), extras


_LEAF = re.compile(r"<([A-Z0-9_.]+)>([^<]*)", re.IGNORECASE)


def _close_leaves(body):
    """Close every SGML leaf (``<NAME>value`` -> ``<NAME>value</NAME>``).

    Same tree as ofxparse's own closing, which looks every tag up in the list of all closing
    tags of the file: for a leaf closed nowhere that lookup scans the whole list, so a file
    of 50,000 SGML transactions took minutes (quadratic); with every leaf closed the lookup
    stops at the first transaction."""
    def close(match):
        name, text = match.group(1), match.group(2)
        value = text.rstrip()
        if not value or name.upper() in _AGGREGATES:
            return match.group(0)
        end = match.end()
        if match.string[end:end + len(name) + 3].upper() == f"</{name.upper()}>":
            return match.group(0)
        return f"<{name}>{value}</{name}>{text[len(value):]}"

    return _LEAF.sub(close, body)


_CLEAN_HEADER = ("OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nSECURITY:NONE\nENCODING:UTF-8\n"
                 "CHARSET:NONE\nCOMPRESSION:NONE\nOLDFILEUID:NONE\nNEWFILEUID:NONE\n\n")


#: what ofxparse's own messages about a damaged element mean, for the user
_OFXPARSE_DETAILS = (
    (r"date|time data|unconverted|out of range", "a date is not written YYYYMMDD"),
    (r"amount|balance", "an amount is missing or not a number"),
    (r"fit ?id", "a transaction has no FITID"),
    (r"type|name|sic|mcc|check", "an element of a transaction is empty"),
)
_DAMAGED = "its structure is damaged (an element is missing, empty or in the wrong place)"


def _run_ofxparse(body):
    """ofxparse's result; any failure of ofxparse (its own exception, or a Python error on
    markup it does not expect) becomes ``ofx_invalid`` with a sentence for the user. The
    technical cause stays chained (``__cause__``) for the server log."""
    from ofxparse import OfxParser
    from ofxparse.ofxparse import OfxParserException

    data = (_CLEAN_HEADER + body).encode("utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return OfxParser.parse(io.BytesIO(data), fail_fast=True)
        except RecursionError:
            raise StatementFileError("ofx_invalid", detail="its elements are nested too deeply") \
                from None
        except Exception as error:  # noqa: BLE001 - third-party parser on damaged input
            detail = _DAMAGED
            if isinstance(error, OfxParserException):
                message = str(error)
                detail = next((d for pattern, d in _OFXPARSE_DETAILS
                               if re.search(pattern, message, re.IGNORECASE)), _DAMAGED)
                if "empty" in message.lower() and "ofx file" in message.lower():
                    detail = "there is no <OFX> element"
            cause = error
    raise StatementFileError("ofx_invalid", detail=detail) from cause


# ---------------------------------------------------------------------------------- parsing
def parse(content, filename=None, options=None):
    options = options or {}
    result = ParseResult(format=FORMAT)
    if not content or not content.strip():
        raise StatementFileError("empty_file")
    text, encoding = _decode(content.lstrip(b" \t\r\n"), options)
    result.encoding = encoding
    header, version, body = _split_header(text.lstrip("\ufeff \t\r\n"))
    result.version = version
    result.raw["header"] = header
    institution = _institution(body)
    body, extras = _preprocess(body, result)
    ofx = _run_ofxparse(body)

    from ofxparse.ofxparse import AccountType
    accounts = [a for a in ofx.accounts
                if getattr(a, "type", None) in (AccountType.Bank, AccountType.CreditCard)]
    if not accounts:
        raise StatementFileError("ofx_no_statement")
    no_fitid = 0
    for account in accounts:
        statement = _statement(account, extras, result, institution)
        no_fitid += sum(1 for t in statement.transactions if not t.external_id)
        assign_synthetic_ids(statement.transactions, lambda t: (
            statement.account_number, t.date, t.amount, t.description, t.raw.get("refnum")))
        ensure_unique_ids(statement.transactions, result)
        round_statement_amounts(statement, result)
        _opening_balance(statement, result)
        result.statements.append(statement)
    if no_fitid:
        result.warn("ofx_no_fitid", count=no_fitid)
    return result


def _statement(account, extras, result, institution):
    from ofxparse.ofxparse import AccountType

    stmt = account.statement
    number = clean(getattr(account, "account_id", None)) or None
    currency = clean(getattr(stmt, "currency", None) or getattr(account, "curdef", None))
    currency = currency.upper() if currency else None
    if not number:
        result.warn("ofx_missing_account")
    if not currency:
        result.warn("ofx_missing_currency", account=number or "-")
    statement = Statement(
        account_number=number, currency=currency,
        bank_id=clean(getattr(account, "routing_number", None)) or None,
        account_kind="card" if account.type == AccountType.CreditCard else "bank",
        closing_balance=_decimal(getattr(stmt, "balance", None)),
        closing_date=_day(getattr(stmt, "balance_date", None)),
    )
    statement.raw.update({
        "branch_id": clean(getattr(account, "branch_id", None)),
        "account_type": clean(getattr(account, "account_type", None)),
        "institution": institution,
        "start_date": _day(getattr(stmt, "start_date", None)),
        "end_date": _day(getattr(stmt, "end_date", None)),
        "available_balance": _decimal(getattr(stmt, "available_balance", None)),
        "available_balance_date": _day(getattr(stmt, "available_balance_date", None)),
    })
    start, end = statement.raw["start_date"], statement.raw["end_date"]
    statement.name = join_text(number, f"{start or ''}..{end or ''}" if start or end else None)
    for item in stmt.transactions:
        index, _, fitid = (item.id or "").partition(_FITID_MARK)
        extra = extras[int(index)] if index.isdigit() and int(index) < len(extras) else {}
        payee, memo = clean(item.payee), clean(item.memo)
        reference = extra.get("checknum") or extra.get("refnum")
        txn = make_transaction(
            account=number, external_id=fitid or "", amount=Decimal(item.amount),
            currency=currency, booking_date=_day(item.date),
            transaction_date=_day(getattr(item, "user_date", None)),
            value_date=None,
            description=join_text(payee, memo) or reference or "",
            counterparty_name=payee,
            bank_transaction_code=(extra.get("trntype") or "").upper() or None,
            replaces_external_id=extra.get("correctfitid"),
            raw={k: v for k, v in extra.items() if v},
        )
        if extra.get("dtavail"):
            txn.raw["dtavail"] = extra["dtavail"]
        if extra.get("orig_currency") and extra.get("cursym") and extra["cursym"] != currency:
            txn.original_currency = extra["cursym"]
        if reference:
            txn.alt_ids["reference"] = reference
        if extra.get("correctaction"):
            txn.raw["correct_action"] = extra["correctaction"].upper()
        statement.transactions.append(txn)
    return statement


def _opening_balance(statement, result):
    """OFX gives only LEDGERBAL: opening = LEDGERBAL - lines when dated after the last line."""
    if statement.closing_balance is None:
        result.warn("ofx_no_balance", account=statement.account_number or "-")
        return
    last = max((t.date for t in statement.transactions if t.date), default=None)
    if last and statement.closing_date and statement.closing_date < last:
        result.warn("ofx_balance_before_last_line", account=statement.account_number or "-",
                    balance_date=str(statement.closing_date), last_date=str(last))
        return
    statement.opening_balance = statement.closing_balance - statement.total
    statement.opening_balance_computed = True
    statement.opening_date = statement.raw.get("start_date")


def _decimal(value):
    if value is None or value == "":
        return None
    return Decimal(value)


def _day(value):
    if value is None or value == "":
        return None
    return value.date() if hasattr(value, "date") else value
