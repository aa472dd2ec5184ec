"""Property-based tests (hypothesis) of services/statement_files.

Robustness: whatever the bytes, ``parse_file`` either returns a usable ``ParseResult`` or raises
``StatementFileError`` whose message is a sentence for the user (no exception class name, no
traceback, no unfilled placeholder); it never raises anything else and never hangs. Inputs, for
each format: random bytes behind the format's magic, random text made of the format's own
tokens, and the real samples of /work/shared/samples mutated (byte flips, truncation,
deleted/duplicated/swapped lines, swapped fields, other encodings, decimal marks swapped,
garbled dates, junk inserted), with and without a file name and format/parsing options.

Round trips: a well-formed CSV, QIF, CAMT.053, OFX and CODA file written from random
transactions parses back to the same amounts, dates and balances.

Runs derandomized (the same examples every run, so CI is reproducible) and without a
hypothesis database. STATEMENT_FUZZ_SCALE=20 multiplies the number of examples for a long
local bug hunt.
"""
import builtins
import csv
import io
import os
import re
import signal
import string
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from services.statement_files import (MESSAGES, PARSERS, ParseResult, StatementFileError,
                                      detect_format, parse_file)
from services.statement_files.coda import bban_to_iban

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
FORMATS = tuple(PARSERS)                    # camt053, ofx, coda, qif, csv
SCALE = max(1, int(os.environ.get("STATEMENT_FUZZ_SCALE", "1") or 1))
HANG_SECONDS = 10                           # a parse of these small inputs takes milliseconds

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    # nothing written into the repository: no example database (database=None below), and
    # hypothesis' other caches (source constants, unicode tables) go to a temporary folder
    _STORAGE = tempfile.TemporaryDirectory(prefix="hypothesis-statement-files-")
    set_hypothesis_home_dir(_STORAGE.name)

needs_samples = pytest.mark.skipif(not (SAMPLES / "expected.json").exists(),
                                   reason="sample files not available")


def fuzz_settings(examples):
    return settings(max_examples=examples * SCALE, deadline=timedelta(seconds=3),
                    derandomize=True, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------ the oracle
class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` swallows it."""


@contextmanager
def time_limit(seconds):
    """Interrupt the block after ``seconds`` (POSIX main thread; elsewhere no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"parse_file did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_EXCEPTION_NAMES = sorted(
    {name for name, value in vars(builtins).items()
     if isinstance(value, type) and issubclass(value, BaseException)}
    | {"InvalidOperation", "DecimalException", "BadZipFile", "XMLSyntaxError",
       "OfxParserException", "ParserRejectedMarkup", "UnicodeError", "JSONDecodeError"},
    key=len, reverse=True)
_TECHNICAL = re.compile(
    r"\b(?:%s)\b|\b\w+\.error\b|Traceback \(most recent call last\)|File \"|<class '|"
    r"\bNoneType\b|object at 0x|\bError -\d+ while" % "|".join(_EXCEPTION_NAMES))


def assert_human_sentence(message):
    assert isinstance(message, str) and message.strip(), "an empty message"
    assert not _TECHNICAL.search(message), f"a technical message: {message!r}"
    assert "%(" not in message and not re.search(r"\{'[a-z_]+': ", message), \
        f"an unfilled template: {message!r}"
    assert message[0].isupper() or message[0].isdigit(), f"not a sentence: {message!r}"
    assert message.rstrip().endswith((".", "?", "!")), f"not a sentence: {message!r}"
    assert len(message.split()) >= 3, f"not a sentence: {message!r}"


def parse_outcome(content, filename=None, options=None):
    """``parse_file`` under the oracle: the ParseResult or the StatementFileError."""
    try:
        with time_limit(HANG_SECONDS):
            result = parse_file(content, filename, options=options)
    except StatementFileError as error:
        event(f"error {error.code}")           # pytest --hypothesis-show-statistics
        assert error.code in MESSAGES, error.code
        assert_human_sentence(str(error))
        assert error.translated(lambda template: template) == str(error)
        return error
    assert isinstance(result, ParseResult), type(result)
    assert result.format in PARSERS
    event(f"parsed as {result.format}")
    for statement in result.statements:
        for value in (statement.opening_balance, statement.closing_balance):
            assert value is None or (isinstance(value, Decimal) and value.is_finite())
        for txn in statement.transactions:
            assert isinstance(txn.amount, Decimal) and txn.amount.is_finite(), txn.amount
            assert txn.date is None or isinstance(txn.date, date)
            assert isinstance(txn.external_id, str) and txn.external_id
    for warning in result.warnings:
        assert warning.code in MESSAGES, warning.code
        assert_human_sentence(str(warning))
    return result


def check_detect(content, filename=None):
    with time_limit(HANG_SECONDS):
        assert detect_format(content, filename) in FORMATS + (None,)


# ----------------------------------------------------------------------------- the inputs
SAMPLE_DIRS = {"camt053": "camt053", "ofx": "ofx", "qif": "qif", "coda": "coda", "csv": "csv"}
EXTENSIONS = {"camt053": ".xml", "ofx": ".ofx", "qif": ".qif", "coda": ".cod", "csv": ".csv"}


@lru_cache(maxsize=None)
def sample_files(fmt):
    folder = SAMPLES / SAMPLE_DIRS[fmt]
    if not folder.is_dir():
        return (("missing" + EXTENSIONS[fmt], b""),)
    return tuple((p.name, p.read_bytes()) for p in sorted(folder.iterdir())
                 if p.is_file() and p.name != "SOURCES.txt")


def file_names(fmt, real=None):
    names = [None, "statement" + EXTENSIONS[fmt], "statement.csv", "statement.xml",
             "statement.txt", "STATEMENT.QIF", "archive.zip", "no_extension"]
    return st.sampled_from(names + ([real] if real else []))


CSV_MAPPINGS = (
    {"date_column": 0, "amount_column": 1, "has_header": False},
    {"date_column": "Date", "amount_column": "Amount", "description_columns": ["Label"]},
    {"date_column": 3, "debit_column": 5, "credit_column": 6, "has_header": False,
     "skip_lines": 2, "balance_column": 7},
    {"date_column": "Datum", "amount_column": "Bedrag", "direction_column": "Af Bij",
     "decimal_separator": ",", "date_format": "%Y%m%d"},
    {"date_column": 99, "amount_column": -1, "has_header": False},
    {"date_column": "nope", "amount_column": "nope", "skip_lines": 999},
)

#: (option, value) pairs; an input gets none, one or two of them
OPTION_CHOICES = [
    *(("encoding", e) for e in ("utf-8", "latin-1", "cp1252", "utf-16", "ascii",
                                "no-such-encoding")),
    *(("date_format", f) for f in ("DMY", "MDY", "YMD", "%d/%m/%Y", "%Y-%m-%d", "bogus")),
    *(("date_order_hint", h) for h in ("DMY", "MDY", "YMD", "dd.mm.yy", "?")),
    ("decimal_separator", ","), ("decimal_separator", "."), ("invert_sign", True),
    *(("currency", c) for c in ("EUR", "USD", "JPY", "KWD", "XXX", "")),
    ("qif_opening_balance", "balance"), ("qif_opening_balance", "line"),
    *(("timezone", z) for z in ("Europe/Brussels", "America/New_York", "UTC", "Nowhere/Land")),
    ("coda_book_details", True),
    *(("csv_profile", n) for n in ("nl_ing", "us_mint", "nl_asn", "generic_label", "nope")),
    *(("csv_mapping", m) for m in CSV_MAPPINGS),
    *(("delimiter", d) for d in (",", ";", "\t", "|")),
    ("account_number", "BE71096123456769"), ("account_number", "12345"),
]
OPTIONS = st.lists(st.sampled_from(OPTION_CHOICES), min_size=1, max_size=2).map(dict)


def with_format(fmt):
    """Options, each about as often: none; the right format forced; another format forced;
    parsing options (with or without the right format forced)."""
    others = [f for f in FORMATS if f != fmt]
    return st.one_of(
        st.none(),
        st.just({"format": fmt}),
        st.sampled_from(others).map(lambda other: {"format": other}),
        st.tuples(OPTIONS, st.booleans()).map(
            lambda pair: {**pair[0], "format": fmt} if pair[1] else pair[0]),
    )


MAGIC = {
    "camt053": (b'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:'
                b'20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'),
    "ofx": b"OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\n\n<OFX>",
    "coda": b"0000001082400005" + b" " * 111 + b"2\n1",
    "qif": b"!Type:Bank\n",
    "csv": b"Date;Amount;Label\n",
}

TOKENS = {
    "camt053": ["<Document>", "</Document>", "<BkToCstmrStmt>", "</BkToCstmrStmt>", "<GrpHdr>",
                "<MsgId>M1</MsgId>", "</GrpHdr>", "<Stmt>", "</Stmt>", "<Id>S1</Id>", "<Acct>",
                "</Acct>", "<Id><IBAN>BE71096123456769</IBAN></Id>", "<Ccy>EUR</Ccy>", "<Bal>",
                "</Bal>", "<Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp>",
                "<Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp>", "<Ntry>", "</Ntry>",
                '<Amt Ccy="EUR">', '<Amt Ccy="JPY">', "</Amt>", "12.50", "-0", "1E+40", "NaN",
                "<CdtDbtInd>DBIT</CdtDbtInd>", "<CdtDbtInd>CRDT</CdtDbtInd>",
                "<Sts>BOOK</Sts>", "<Sts><Cd>PDNG</Cd></Sts>", "<BookgDt><Dt>2024-01-31</Dt>"
                "</BookgDt>", "<ValDt><DtTm>2024-01-31T23:30:00Z</DtTm></ValDt>", "<Dt>",
                "</Dt>", "2024-02-30", "9999-12-31T23:59:59-12:00", "<NtryDtls>",
                "</NtryDtls>", "<TxDtls>", "</TxDtls>", "<AcctSvcrRef>R1</AcctSvcrRef>",
                "<RmtInf><Ustrd>x</Ustrd></RmtInf>", "<AmtDtls><TxAmt><Amt>1</Amt></TxAmt>"
                "</AmtDtls>", "&amp;", "&", "<", "\n", " "],
    "ofx": ["OFXHEADER:100\n", "CHARSET:1252\n", "ENCODING:UTF-8\n", '<?OFX VERSION="200"?>',
            "<OFX>", "</OFX>", "<SIGNONMSGSRSV1>", "<SONRS>", "</SONRS>", "<STATUS>",
            "</STATUS>", "<CODE>0", "<CODE>x", "<SEVERITY>INFO", "<DTSERVER>20240101",
            "<BANKMSGSRSV1>", "</BANKMSGSRSV1>", "<STMTTRNRS>", "</STMTTRNRS>", "<STMTRS>",
            "</STMTRS>", "<CCSTMTRS>", "<CURDEF>EUR", "<BANKACCTFROM>", "</BANKACCTFROM>",
            "<ACCTID>123", "<BANKTRANLIST>", "</BANKTRANLIST>", "<BANKTRANLISTP>",
            "<STMTTRN>", "</STMTTRN>", "<STMTTRNP>", "<TRNTYPE>DEBIT", "<DTPOSTED>",
            "20240131", "20240230120000[-5:EST]", "00000000", "<TRNAMT>", "-12,50", "1e5",
            "+3.00", "<FITID>", "F1", "<NAME>", "</NAME>", "<MEMO>", "<LEDGERBAL>",
            "</LEDGERBAL>", "<BALAMT>", "<DTASOF>", "<!-- c -->", "<![CDATA[x]]>", "<",
            "&amp;", "\n", " "],
    "coda": ["0000001082400005" + " " * 111 + "2", "0" * 128,
             "12001BE47435000000080                  EUR0000000000000000010717DUNDER MIFFLIN"
             "                                               001",
             "2100010000REF BANK             0000000000100000200717001010000COMMUNICATION"
             "                                        19071700100 0",
             "2200010000" + " " * 118, "2300010000BE68539007547034" + " " * 102,
             "3100010001" + " " * 118, "4 00010000" + " " * 118,
             "8001BE47435000000080                  EUR0000000000100000010817" + " " * 64,
             "9               000003000000000000000000000000100000" + " " * 75,
             "\n", "\r\n", "1", "2", "9", "x", "310717", "999999", " "],
    "qif": ["!Type:Bank\n", "!Type:CCard\n", "!Type:Cat\n", "!Account\n", "!Option:AutoSwitch\n",
            "D01/02/2024\n", "D2/10'2020\n", "D31/12/99\n", "D13/13/13\n", "D\n", "T-12.50\n",
            "T1,234.56\n", "T\n", "U12,5\n", "PPayee\n", "POpening Balance\n", "L[Cash]\n",
            "MMemo\n", "N1001\n", "Sx\n", "$1.00\n", "E\n", "A line\n", "CX\n", "^\n", "\n",
            "x"],
    "csv": ["Date", "Amount", "Label", "Debit", "Credit", "Balance", "Currency", "Status",
            "D/C", "Datum", "Bedrag", "Af Bij", "2024-01-31", "31/01/2024", "01/31/2024",
            "31.01.24", "20240131", "-12.50", "1.234,56", "(3.00)", "12.50-", "EUR", "D", "C",
            "PENDING", "Opening balance", "Closing balance", ",", ";", "\t", "|", '"', "\n",
            "\r\n", " "],
}

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "latin-1",
             "cp437", "mac_roman", "utf-32")


def encode(text, encoding):
    return text.encode(encoding, errors="replace")


def any_text(max_size):
    """Random text, ASCII-heavy, any code point but surrogates (cheaper for hypothesis than
    ``st.text()``, whose default alphabet is computed from the UTF-8 codec at first use)."""
    code_points = st.one_of(st.integers(0, 0x7F), st.integers(0x80, 0x10FFFF))
    return st.lists(code_points, max_size=max_size).map(
        lambda points: "".join(chr(p) for p in points if not 0xD800 <= p <= 0xDFFF))


def token_text(fmt):
    """Random text made of the format's tokens, some random text and random characters."""
    piece = st.one_of(st.sampled_from(TOKENS[fmt]), any_text(8))
    return st.tuples(st.lists(piece, max_size=60), st.sampled_from(ENCODINGS)).map(
        lambda pair: encode("".join(pair[0]), pair[1]))


# ------------------------------------------------------------------------------- mutations
_DATE_RE = re.compile(rb"\d{4}-\d{2}-\d{2}|\d{1,2}[/.'-]\s?\d{1,2}[/.'-]\d{2,4}|(?<!\d)\d{8}"
                      rb"(?!\d)|(?<!\d)\d{6}(?!\d)")
_GARBLED = (b"2024-13-45", b"31/02/2023", b"00000000", b"99999999", b"0000-00-00", b"1/1",
            b"20240230", b"320124", b"2024/01/31T25:61", b"yesterday", b"", b"01-01-0000",
            b"29/02/2023", b"12/31/1899")
_JUNK = (b"<", b"</", b">", b"&", b"&#0;", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"-", b"'",
         b'"', b"\r", b"\n", b"\n^\n", b"^", b"!", b"99999999999999999999999999999",
         b"1E+999", b"NaN", b"-Infinity", b"+", b",", b";", b"\t", b"<!--", b"<![CDATA[",
         b"]]>", b"<?xml version='1.0'?>", b"PK\x03\x04", b"\x1a", b"\xe9", b"\xc3",
         b"<STMTTRN>", b"</Ntry>", b"<Ntry>", b"!Type:Bank\n", b"1" * 130)
_FIELD_SEPARATORS = re.compile(rb"([,;\t|<>:/ ]+)")
_VALUES = (b"", b" ", b"NaN", b"-", b"1E+40", b"0", b"-0.00", b"12,345.678,9", b"2024-13-01",
           b"31/02/2024", b"DBIT", b"CRDT", b"PDNG", b"BOOK", b"XXX", b"EUR", b"&amp;", b"&",
           b"\xc3\xa9", b"\xe9", b"NOTPROVIDED", b"9" * 30, b"true", b"OPBD", b"CLBD",
           b"19700101", b"99991231", b"1", b"D", b"C")
_MARKUP_VALUE = re.compile(rb"(?<=>)[^<>]*(?=<)|(?<=>)[^<>\r\n]+")
_CELL = re.compile(rb"[^,;\t|\r\n]+")


def _at(index, size):
    return index % size if size else 0


def flip_byte(data, position, value):
    if not data:
        return bytes([value])
    position = _at(position, len(data))
    return data[:position] + bytes([value]) + data[position + 1:]


def truncate(data, position):
    return data[:_at(position, len(data) + 1)]


def delete_line(data, index):
    lines = data.split(b"\n")
    del lines[_at(index, len(lines))]
    return b"\n".join(lines)


def duplicate_line(data, index):
    lines = data.split(b"\n")
    index = _at(index, len(lines))
    lines.insert(index, lines[index])
    return b"\n".join(lines)


def swap_lines(data, first, second):
    lines = data.split(b"\n")
    first, second = _at(first, len(lines)), _at(second, len(lines))
    lines[first], lines[second] = lines[second], lines[first]
    return b"\n".join(lines)


def swap_fields(data, line, first, second):
    """Swap two fields (text between separators: CSV cells, tag names and values...) of a
    line; a line without separators has two 10-byte slices swapped (CODA fixed width)."""
    lines = data.split(b"\n")
    index = _at(line, len(lines))
    parts = _FIELD_SEPARATORS.split(lines[index])
    fields = list(range(0, len(parts), 2))
    if len(fields) >= 2:
        a, b = fields[_at(first, len(fields))], fields[_at(second, len(fields))]
        parts[a], parts[b] = parts[b], parts[a]
        lines[index] = b"".join(parts)
    else:
        chunks = [lines[index][i:i + 10] for i in range(0, len(lines[index]), 10)] or [b""]
        a, b = _at(first, len(chunks)), _at(second, len(chunks))
        chunks[a], chunks[b] = chunks[b], chunks[a]
        lines[index] = b"".join(chunks)
    return b"\n".join(lines)


def reencode(data, encoding):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return encode(text, encoding)


def swap_decimal_marks(data, every):
    """Swap '.' and ',' between digits (every ``every``-th occurrence)."""
    counter = iter(range(10 ** 9))

    def swap(match):
        if next(counter) % every:
            return match.group(0)
        mark = b"," if match.group(2) == b"." else b"."
        return match.group(1) + mark + match.group(3)

    return re.sub(rb"(\d)([.,])(\d)", swap, data)


def garble_dates(data, choice, every):
    """Replace every ``every``-th date-looking value by an impossible or malformed one."""
    counter = iter(range(10 ** 9))

    def garble(match):
        n = next(counter)
        if n % every:
            return match.group(0)
        return _GARBLED[(choice + n) % len(_GARBLED)]

    return _DATE_RE.sub(garble, data)


def replace_value(data, index, value):
    """Replace one element text (XML, OFX) or one cell / field (CSV, QIF, CODA)."""
    pattern = _MARKUP_VALUE if b"<" in data[:4096] else _CELL
    spans = [m.span() for m in pattern.finditer(data)]
    if not spans:
        return data
    start, end = spans[_at(index, len(spans))]
    return data[:start] + _VALUES[value] + data[end:]


def insert_junk(data, position, junk):
    position = _at(position, len(data) + 1)
    return data[:position] + _JUNK[junk] + data[position:]


def delete_span(data, position, length):
    position = _at(position, len(data) + 1)
    return data[:position] + data[position + length:]


_INDEX = st.integers(min_value=0, max_value=1 << 16)
MUTATIONS = st.one_of(
    st.tuples(st.just(flip_byte), _INDEX, st.integers(0, 255)),
    st.tuples(st.just(truncate), _INDEX),
    st.tuples(st.just(delete_line), _INDEX),
    st.tuples(st.just(duplicate_line), _INDEX),
    st.tuples(st.just(swap_lines), _INDEX, _INDEX),
    st.tuples(st.just(swap_fields), _INDEX, _INDEX, _INDEX),
    st.tuples(st.just(reencode), st.sampled_from(ENCODINGS)),
    st.tuples(st.just(swap_decimal_marks), st.integers(1, 3)),
    st.tuples(st.just(garble_dates), st.integers(0, len(_GARBLED) - 1), st.integers(1, 4)),
    st.tuples(st.just(insert_junk), _INDEX, st.integers(0, len(_JUNK) - 1)),
    st.tuples(st.just(replace_value), _INDEX, st.integers(0, len(_VALUES) - 1)),
    st.tuples(st.just(replace_value), _INDEX, st.integers(0, len(_VALUES) - 1)),
    st.tuples(st.just(delete_span), _INDEX, st.integers(1, 64)),
)


def mutate(data, mutations):
    for function, *args in mutations:
        data = function(data, *args)
    return data


@st.composite
def mutated_sample(draw, fmt):
    name, content = draw(st.sampled_from(sample_files(fmt)))
    mutations = draw(st.lists(MUTATIONS, min_size=1, max_size=4))
    return name, mutate(content, mutations)


# ---------------------------------------------------------------------- robustness properties
@pytest.mark.parametrize("fmt", FORMATS)
@fuzz_settings(25)
@given(data=st.data())
def test_random_bytes(fmt, data):
    body = data.draw(st.binary(max_size=1024), label="body")
    content = data.draw(st.sampled_from([body, MAGIC[fmt] + body]), label="content")
    filename = data.draw(file_names(fmt), label="filename")
    options = data.draw(with_format(fmt), label="options")
    check_detect(content, filename)
    parse_outcome(content, filename, options)


@pytest.mark.parametrize("fmt", FORMATS)
@fuzz_settings(30)
@given(data=st.data())
def test_random_text(fmt, data):
    text = data.draw(st.one_of(token_text(fmt), any_text(300).map(str.encode)),
                     label="content")
    content = data.draw(st.sampled_from([text, MAGIC[fmt] + text]), label="with magic")
    filename = data.draw(file_names(fmt), label="filename")
    options = data.draw(with_format(fmt), label="options")
    check_detect(content, filename)
    parse_outcome(content, filename, options)


@needs_samples
@pytest.mark.parametrize("fmt", FORMATS)
@fuzz_settings(60)
@given(data=st.data())
def test_mutated_samples(fmt, data):
    name, content = data.draw(mutated_sample(fmt), label="sample")
    filename = data.draw(file_names(fmt, real=name), label="filename")
    options = data.draw(with_format(fmt), label="options")
    check_detect(content, filename)
    parse_outcome(content, filename, options)


@needs_samples
@fuzz_settings(20)
@given(data=st.data())
def test_mutated_zip_archives(data):
    members = data.draw(st.lists(st.sampled_from(FORMATS), min_size=1, max_size=3),
                        label="formats")
    buffer = io.BytesIO()
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for i, fmt in enumerate(members):
            name, content = data.draw(st.sampled_from(sample_files(fmt)))
            archive.writestr(f"{i}-{name}", content)
    mutations = data.draw(st.lists(st.one_of(
        st.tuples(st.just(flip_byte), _INDEX, st.integers(0, 255)),
        st.tuples(st.just(truncate), _INDEX),
        st.tuples(st.just(delete_span), _INDEX, st.integers(1, 16))), max_size=3))
    content = buffer.getvalue()
    content = content[:4] + mutate(content[4:], mutations)       # keep the PK signature
    parse_outcome(content, data.draw(st.sampled_from([None, "statements.zip"])))


# ----------------------------------------------------------------------------- round trips
DATES = st.dates(min_value=date(1970, 1, 1), max_value=date(2068, 12, 31))
def words(alphabet, max_size):
    """Non-blank text over ``alphabet`` (built from a list: a string alphabet would make
    hypothesis compute its unicode tables, a second per run without a cache)."""
    return st.lists(st.sampled_from(alphabet), min_size=1, max_size=max_size).map(
        "".join).filter(str.strip)


WORDS = words(string.ascii_letters + string.digits + " ", 24)


def amounts(places=2, limit=10 ** 9):
    return st.decimals(min_value=-limit, max_value=limit, places=places, allow_nan=False,
                       allow_infinity=False)


def lines_of(amount_strategy, max_size=25):
    return st.lists(st.tuples(DATES, amount_strategy, WORDS), min_size=1, max_size=max_size)


def written(amount, decimal_mark=".", thousands=False):
    """'-1234.50' as a bank app writes it: decimal comma and thousands separators optional."""
    sign = "-" if amount < 0 else ""
    whole, _, fraction = f"{abs(amount):f}".partition(".")
    if thousands:
        group = "." if decimal_mark == "," else ","
        whole = f"{int(whole):,}".replace(",", group)
    return sign + whole + (decimal_mark + fraction if fraction else "")


def _padded(day):
    return f"{day.month:>2}/{day.day:>2}/{day.year}"


DATE_STYLES = {                    # (how a date is written, the date order to hint)
    "iso": (lambda d: d.isoformat(), "YMD"),
    "dmy_slash": (lambda d: d.strftime("%d/%m/%Y"), "DMY"),
    "mdy_slash": (lambda d: d.strftime("%m/%d/%Y"), "MDY"),
    "dmy_dots_short": (lambda d: d.strftime("%d.%m.%y"), "DMY"),
    "dmy_dash": (lambda d: d.strftime("%d-%m-%Y"), "DMY"),
    "compact": (lambda d: d.strftime("%Y%m%d"), "YMD"),
    "quicken_padded": (_padded, "MDY"),
    "quicken_apostrophe": (lambda d: f"{d.month}/{d.day}'{d.year}", "MDY"),
}

CSV_HEADERS = {
    "date": ("Date", "Booking Date", "Datum", "Buchungstag", "Fecha"),
    "amount": ("Amount", "Bedrag", "Betrag", "Montant", "Transaction Amount"),
    "description": ("Description", "Label", "Omschrijving", "Memo", "Verwendungszweck"),
}


@fuzz_settings(30)
@given(lines=lines_of(amounts()), delimiter=st.sampled_from([",", ";", "\t", "|"]),
       decimal_mark=st.sampled_from([".", ","]), thousands=st.booleans(),
       style=st.sampled_from(sorted(set(DATE_STYLES) - {"quicken_padded",
                                                        "quicken_apostrophe"})),
       headers=st.tuples(*(st.sampled_from(v) for v in CSV_HEADERS.values())),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
def test_csv_round_trip(lines, delimiter, decimal_mark, thousands, style, headers, encoding):
    write_date, order = DATE_STYLES[style]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(headers)
    for day, amount, text in lines:
        writer.writerow([write_date(day), written(amount, decimal_mark, thousands), text])
    result = parse_outcome(buffer.getvalue().encode(encoding), "export.csv",
                           {"date_order_hint": order})
    assert isinstance(result, ParseResult), str(result)
    assert result.format == "csv" and result.raw["delimiter"] == delimiter
    assert [(t.date, t.amount, t.description) for t in result.transactions] == \
        [(day, amount, " ".join(text.split())) for day, amount, text in lines]


@fuzz_settings(30)
@given(lines=lines_of(amounts()), decimal_mark=st.sampled_from([".", ","]),
       thousands=st.booleans(), style=st.sampled_from(sorted(DATE_STYLES)),
       section=st.sampled_from(["Bank", "CCard", "Cash", "Oth A"]),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_qif_round_trip(lines, decimal_mark, thousands, style, section, newline):
    write_date, order = DATE_STYLES[style]
    records = [f"!Type:{section}"]
    for number, (day, amount, payee) in enumerate(lines, start=1):
        records += [f"D{write_date(day)}", f"T{written(amount, decimal_mark, thousands)}",
                    f"P{payee}", f"N{number}", "^"]
    content = newline.join(records + [""]).encode("cp1252")
    result = parse_outcome(content, "export.qif", {"date_order_hint": order})
    assert isinstance(result, ParseResult), str(result)
    assert result.format == "qif"
    assert [(t.date, t.amount, t.counterparty_name) for t in result.transactions] == \
        [(day, amount, " ".join(payee.split())) for day, amount, payee in lines]
    assert [t.alt_ids["reference"] for t in result.transactions] == \
        [str(n) for n in range(1, len(lines) + 1)]


CAMT_VERSIONS = ("001.02", "001.04", "001.06", "001.08", "001.10")
FREE_TEXT = words(string.ascii_letters + " &<>'\"éü€", 30)


@fuzz_settings(20)
@given(entries=st.lists(st.tuples(DATES, amounts(limit=10 ** 7).filter(bool), FREE_TEXT,
                                  st.booleans()), min_size=1, max_size=20),
       version=st.sampled_from(CAMT_VERSIONS), opening=amounts(limit=10 ** 7),
       currency=st.sampled_from(["EUR", "USD", "CHF"]))
def test_camt053_round_trip(entries, version, opening, currency):
    booked = [(day, amount, text) for day, amount, text, is_booked in entries if is_booked]
    closing = opening + sum((amount for _, amount, _ in booked), Decimal(0))
    new_status = version >= "001.08"

    def status(code):
        return f"<Sts><Cd>{code}</Cd></Sts>" if new_status else f"<Sts>{code}</Sts>"

    def balance(code, amount, day):
        return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
                f'<Amt Ccy="{currency}">{abs(amount)}</Amt>'
                f"<CdtDbtInd>{'DBIT' if amount < 0 else 'CRDT'}</CdtDbtInd>"
                f"<Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>")

    first = min(day for day, *_ in entries)
    last = max(day for day, *_ in entries)
    xml = [f'<?xml version="1.0" encoding="UTF-8"?>'
           f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.{version}">'
           f"<BkToCstmrStmt><GrpHdr><MsgId>MSG-1</MsgId>"
           f"<CreDtTm>{last.isoformat()}T18:00:00</CreDtTm></GrpHdr>"
           f"<Stmt><Id>STMT-1</Id><CreDtTm>{last.isoformat()}T18:00:00</CreDtTm>"
           f"<Acct><Id><IBAN>BE71096123456769</IBAN></Id><Ccy>{currency}</Ccy></Acct>",
           balance("OPBD", opening, first), balance("CLBD", closing, last)]
    for number, (day, amount, text, is_booked) in enumerate(entries, start=1):
        xml.append(
            f'<Ntry><NtryRef>{number}</NtryRef><Amt Ccy="{currency}">{abs(amount)}</Amt>'
            f"<CdtDbtInd>{'DBIT' if amount < 0 else 'CRDT'}</CdtDbtInd>"
            f"{status('BOOK' if is_booked else 'PDNG')}"
            f"<BookgDt><Dt>{day.isoformat()}</Dt></BookgDt>"
            f"<ValDt><Dt>{(day + timedelta(days=number % 3)).isoformat()}</Dt></ValDt>"
            f"<AcctSvcrRef>REF-{number}</AcctSvcrRef>"
            f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd>"
            f"</Fmly></Domn></BkTxCd><AddtlNtryInf>{escape(text)}</AddtlNtryInf></Ntry>")
    xml.append("</Stmt></BkToCstmrStmt></Document>")
    result = parse_outcome("".join(xml).encode("utf-8"), "statement.xml")
    assert isinstance(result, ParseResult), str(result)
    assert result.format == "camt053" and result.version == f"camt.053.{version}"
    statement, = result.statements
    assert [(t.booking_date, t.amount, t.description, t.external_id)
            for t in statement.transactions] == \
        [(day, amount, " ".join(text.split()), f"REF-{n}")
         for n, (day, amount, text, is_booked) in enumerate(entries, start=1) if is_booked]
    assert (statement.opening_balance, statement.closing_balance) == (opening, closing)
    assert statement.currency == currency
    assert "balance_mismatch" not in result.warning_codes()
    assert ("camt_skipped_status" in result.warning_codes()) == (len(booked) < len(entries))


@fuzz_settings(15)
@given(lines=lines_of(amounts(limit=10 ** 7), max_size=15), xml=st.booleans(),
       time_suffix=st.sampled_from(["", "120000", "120000.000", "235959.123[-5:EST]",
                                    "000000[+1:CET]"]),
       balance=amounts(limit=10 ** 7), card=st.booleans())
def test_ofx_round_trip(lines, xml, time_suffix, balance, card):
    last = max(day for day, _, _ in lines)

    def leaf(name, value):
        return f"<{name}>{value}</{name}>" if xml else f"<{name}>{value}\n"

    transactions = "".join(
        "<STMTTRN>" + leaf("TRNTYPE", "DEBIT" if amount < 0 else "CREDIT")
        + leaf("DTPOSTED", day.strftime("%Y%m%d") + time_suffix) + leaf("TRNAMT", amount)
        + leaf("FITID", f"FIT-{n}") + leaf("NAME", escape(name)) + "</STMTTRN>\n"
        for n, (day, amount, name) in enumerate(lines, start=1))
    account = (leaf("ACCTID", "4111111111111111") if card else
               leaf("BANKID", "123456789") + leaf("ACCTID", "987654321")
               + leaf("ACCTTYPE", "CHECKING"))
    rs, acct, msgs, trnrs = (("CCSTMTRS", "CCACCTFROM", "CREDITCARDMSGSRSV1", "CCSTMTTRNRS")
                             if card else ("STMTRS", "BANKACCTFROM", "BANKMSGSRSV1",
                                           "STMTTRNRS"))
    header = ('<?xml version="1.0" encoding="UTF-8"?>\n<?OFX OFXHEADER="200" VERSION="220" '
              'SECURITY="NONE" OLDFILEUID="NONE" NEWFILEUID="NONE"?>\n' if xml else
              "OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nSECURITY:NONE\nENCODING:USASCII\n"
              "CHARSET:1252\nCOMPRESSION:NONE\nOLDFILEUID:NONE\nNEWFILEUID:NONE\n\n")
    body = (f"<OFX><SIGNONMSGSRSV1><SONRS><STATUS>{leaf('CODE', 0)}{leaf('SEVERITY', 'INFO')}"
            f"</STATUS>{leaf('DTSERVER', last.strftime('%Y%m%d'))}{leaf('LANGUAGE', 'ENG')}"
            f"<FI>{leaf('ORG', 'Bank &amp; Co')}</FI></SONRS></SIGNONMSGSRSV1><{msgs}><{trnrs}>"
            f"{leaf('TRNUID', 1)}<STATUS>{leaf('CODE', 0)}{leaf('SEVERITY', 'INFO')}</STATUS>"
            f"<{rs}>{leaf('CURDEF', 'USD')}<{acct}>{account}</{acct}><BANKTRANLIST>"
            f"{leaf('DTSTART', '19700101')}{leaf('DTEND', last.strftime('%Y%m%d'))}"
            f"{transactions}</BANKTRANLIST><LEDGERBAL>{leaf('BALAMT', balance)}"
            f"{leaf('DTASOF', last.strftime('%Y%m%d') + time_suffix)}</LEDGERBAL></{rs}>"
            f"</{trnrs}></{msgs}></OFX>")
    result = parse_outcome((header + body).encode("cp1252"), "statement.ofx")
    assert isinstance(result, ParseResult), str(result)
    assert result.format == "ofx"
    statement, = result.statements
    assert statement.account_kind == ("card" if card else "bank")
    assert [(t.date, t.amount, t.counterparty_name, t.external_id)
            for t in statement.transactions] == \
        [(day, amount, " ".join(name.split()), f"FIT-{n}")
         for n, (day, amount, name) in enumerate(lines, start=1)]
    total = sum((amount for _, amount, _ in lines), Decimal(0))
    assert statement.closing_balance == balance and statement.closing_date == last
    assert statement.opening_balance == balance - total
    assert statement.raw["institution"] == "Bank & Co"


def _coda_amount(amount):
    return ("1" if amount < 0 else "0") + f"{abs(amount) * 1000:015.0f}"


def _coda_date(day):
    return day.strftime("%d%m%y")


@fuzz_settings(15)
@given(lines=lines_of(amounts(limit=10 ** 9), max_size=15),
       opening=amounts(limit=10 ** 9), bban=st.integers(0, 10 ** 10 - 1))
def test_coda_round_trip(lines, opening, bban):
    """A CODA 2 file (records 0, 1, 2.1, 8, 9) written field by field from the positions of
    the Febelfin specification."""
    lines = [(day, amount, text) for day, amount, text in lines]
    number = f"{bban:010d}{bban % 97 or 97:02d}"
    account = bban_to_iban(number)
    closing = opening + sum((amount for _, amount, _ in lines), Decimal(0))
    first, last = min(d for d, _, _ in lines), max(d for d, _, _ in lines)

    def record(*fields):
        text = "".join(fields)
        assert len(text) == 128, (len(text), text)
        return text

    zone = f"{account:<34}EUR"                                           # structure 2: IBAN
    records = [
        record("0", "0000", _coda_date(last), "   ", "05", " ", " " * 7, " " * 10,
               f"{'FUZZ COMPANY':<26}", f"{'GEBABEBB':<11}", "0" * 11, " ", "00000",
               " " * 16, " " * 16, " " * 7, "2"),
        record("1", "2", "001", zone, _coda_amount(opening), _coda_date(first),
               f"{'HOLDER':<26}", f"{'ACCOUNT':<35}", "001"),
    ]
    debit = credit = Decimal(0)
    for sequence, (day, amount, text) in enumerate(lines, start=1):
        records.append(record(
            "2", "1", f"{sequence:04d}", "0000", f"{'BANKREF' + str(sequence):<21}",
            _coda_amount(amount), _coda_date(day), "00150000", "0", f"{text:<53}",
            _coda_date(day), "001", "0", " ", " ", "0"))
        if amount < 0:
            debit -= amount
        else:
            credit += amount
    records.append(record("8", "001", zone, _coda_amount(closing), _coda_date(last),
                          " " * 64, "0"))
    records.append(record("9", " " * 15, f"{len(records) - 1:06d}", f"{debit * 1000:015.0f}",
                          f"{credit * 1000:015.0f}", " " * 75, "2"))
    result = parse_outcome("\r\n".join(records).encode("latin-1"), "statement.cod")
    assert isinstance(result, ParseResult), str(result)
    assert result.format == "coda"
    statement, = result.statements
    assert statement.account_number == account
    assert [(t.booking_date, t.amount, t.description) for t in statement.transactions] == \
        [(day, amount, " ".join(text.split())) for day, amount, text in lines]
    assert (statement.opening_balance, statement.closing_balance) == (opening, closing)
    assert not {"balance_mismatch", "coda_trailer_count", "coda_trailer_sums",
                "coda_no_trailer"} & set(result.warning_codes())
