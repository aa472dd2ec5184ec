"""services/statement_files/__init__.py: format detection, dispatch, errors, shared model."""
import io
import json
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

import services.statement_files as statement_files
from services.statement_files import (MESSAGES, PARSERS, StatementFileError, detect_format,
                                      parse_file)
from services.statement_files.model import (ParseResult, Statement, check_balances,
                                            guess_decimal_separator, parse_decimal)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
PACKAGE = Path(statement_files.__file__).resolve().parent
pytestmark = pytest.mark.skipif(not (SAMPLES / "expected.json").exists(),
                                reason="sample files not available")
FAMILY = {"camt053": "camt053", "ofx": "ofx", "qif": "qif", "coda": "coda", "csv": "csv"}


def expected():
    if not (SAMPLES / "expected.json").exists():
        return []
    return json.loads((SAMPLES / "expected.json").read_text())


def test_samples_path_is_the_shared_folder():
    repository = Path(__file__).resolve().parents[2]
    assert SAMPLES.parent.name == "shared" and SAMPLES.parent.parent == repository.parent
    assert (SAMPLES / "expected.json").is_file()
    assert not list((repository / "tests").rglob("expected.json"))  # samples are not copied


@pytest.mark.parametrize("entry", expected(), ids=lambda e: e["file"])
def test_every_sample_is_detected_by_content_alone(entry):
    content = (SAMPLES / entry["file"]).read_bytes()
    family = FAMILY[entry["file"].split("/")[0]]
    assert detect_format(content) == family                 # no file name at all
    misleading = "statement.csv" if family != "csv" else "statement.qif"
    assert detect_format(content, misleading) == family     # a misleading extension
    assert detect_format(content, Path(entry["file"]).name) == family


def test_content_wins_over_a_wrong_extension():
    camt = (SAMPLES / "camt053/oca_test-camt053_v02.xml").read_bytes()
    result = parse_file(camt, "statement.csv")
    assert result.format == "camt053"
    ofx = (SAMPLES / "ofx/ofxtools_stmtrs.ofx").read_bytes()
    assert parse_file(ofx, "statement.xml").format == "ofx"


def test_extension_helps_when_the_content_says_little():
    text = b"a,b\n1,2\n"
    assert detect_format(text, "x.csv") == "csv"


@pytest.mark.parametrize("content, code", [
    (b"", "empty_file"), (b"   \n\n", "empty_file"),
    (b"\x00\x01\x02binary\xff" * 20, "unknown_format"),
])
def test_unusable_files(content, code):
    with pytest.raises(StatementFileError) as error:
        parse_file(content, "upload.bin")
    assert error.value.code == code
    assert str(error.value) and "Traceback" not in str(error.value)


def test_unknown_format_names_the_file_and_lists_the_formats():
    with pytest.raises(StatementFileError) as error:
        parse_file(b"\x00\x01\x02" * 50, "photo.jpg")
    message = str(error.value)
    assert "'photo.jpg'" in message and "CAMT.053" in message and "CODA" in message


def test_forced_format():
    qif = (SAMPLES / "qif/oca_test_qif.qif").read_bytes()
    assert parse_file(qif, options={"format": "qif"}).format == "qif"
    with pytest.raises(StatementFileError) as error:
        parse_file(qif, options={"format": "mt940"})
    assert error.value.code == "unknown_forced_format" and "'mt940'" in str(error.value)
    with pytest.raises(StatementFileError):               # a QIF file read as CODA
        parse_file(qif, options={"format": "coda"})


def test_unexpected_exceptions_become_a_clear_error(monkeypatch):
    def boom(content, filename, options):
        raise KeyError("internal")
    monkeypatch.setattr(PARSERS["qif"], "parse", boom)
    with pytest.raises(StatementFileError) as error:
        parse_file((SAMPLES / "qif/oca_test_qif.qif").read_bytes(), "a.qif")
    assert error.value.code == "parse_failed"
    assert "qif" in str(error.value) and "KeyError" in str(error.value)


def test_zip_of_camt_files():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("genkgo_camt053.v2.multi.statement.xml", "oca_test-camt053_v02.xml"):
            archive.writestr(name, (SAMPLES / "camt053" / name).read_bytes())
        archive.writestr("__MACOSX/._junk", b"junk")
    result = parse_file(buffer.getvalue(), "camt.zip")
    assert result.format == "camt053"
    assert len(result.statements) == 3 and len(result.transactions) == 6
    assert result.raw["files"] == ["genkgo_camt053.v2.multi.statement.xml",
                                   "oca_test-camt053_v02.xml"]


def test_same_file_twice_gives_the_same_ids():
    for name in ("camt053/oca_test-camt053_v02.xml", "qif/quiffen_test.qif",
                 "csv/oca_sheet_balance.csv", "coda/pycoda_Coda_v2_3_single_statement.cod",
                 "ofx/wesabe_checking.ofx"):
        content = (SAMPLES / name).read_bytes()
        first, second = parse_file(content, name), parse_file(content, name)
        assert [t.external_id for t in first.transactions] == \
            [t.external_id for t in second.transactions]


# ---------------------------------------------------------------------------------- model
def test_every_message_code_used_in_the_parsers_has_a_template():
    used = set()
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r'StatementFileError\(\s*"([a-z0-9_]+)"', text))
        used |= set(re.findall(r'\.warn\(\s*"([a-z0-9_]+)"', text))
        used |= set(re.findall(r'(?:ambiguous|unknown)="([a-z0-9_]+)"', text))
    assert used and used <= set(MESSAGES), used - set(MESSAGES)


def test_messages_render_with_their_parameters():
    error = StatementFileError("csv_bad_amount", line=12, value="12,3.4")
    assert str(error) == "Line 12: the amount '12,3.4' is not a number."
    assert error.template == MESSAGES["csv_bad_amount"] and error.params["line"] == 12
    french = {MESSAGES["csv_bad_amount"]:
              "Ligne %(line)s : le montant %(value)s n'est pas un nombre."}
    assert error.translated(lambda t: french.get(t, t)) == \
        "Ligne 12 : le montant '12,3.4' n'est pas un nombre."
    result = ParseResult(format="csv")
    statement = Statement(statement_id="S1", opening_balance=Decimal("10"),
                          closing_balance=Decimal("12"))
    assert not check_balances(statement, result)
    warning = result.warnings[0]
    assert warning.code == "balance_mismatch" and "difference 2" in warning.message
    statement.closing_balance = Decimal("10")
    assert check_balances(statement, ParseResult(format="csv"))


@pytest.mark.parametrize("text, value", [
    ("1,234.56", "1234.56"), ("1.234,56", "1234.56"), ("-7.000,97", "-7000.97"),
    ("11'373.94", "11373.94"), ("$1,036.47", "1036.47"), ("+100.00", "100.00"),
    ("(12.00)", "-12.00"), ("12.50-", "-12.50"), ("155,5", "155.5"), ("EUR 3,10", "3.10"),
])
def test_parse_decimal(text, value):
    assert parse_decimal(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "abc", "12,3.4x", "1-2", "VWZ1", "1" * 16,
                                  "1,000,000,000,000,000.00", "NaN", "Infinity", "1E+30"])
def test_parse_decimal_rejects(text):
    with pytest.raises(ValueError):
        parse_decimal(text)


def test_guess_decimal_separator_over_a_column():
    assert guess_decimal_separator(["1,25", "0,00", "20,00"]) == ","
    assert guess_decimal_separator(["1,533.50", "-33.50"]) == "."
    assert guess_decimal_separator(["50000", "1,000"]) == "."


# ------------------------------------------------------------------ damaged ZIP archives
def _zip(*members, method=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return bytearray(buffer.getvalue())


def _zip_error(content):
    with pytest.raises(StatementFileError) as error:
        parse_file(bytes(content), "statements.zip")
    assert error.value.code == "zip_invalid"
    for name in ("Error", "error", "BadZipFile", "Exception"):
        assert name not in str(error.value), str(error.value)
    return str(error.value)


def test_damaged_zip_archives_are_a_clear_error():
    """zipfile/zlib errors (BadZipFile, zlib.error, NotImplementedError, ValueError...) came
    out of parse_file as they were."""
    qif = (SAMPLES / "qif/oca_test_qif.qif").read_bytes()
    stored = _zip(("a.qif", qif), method=zipfile.ZIP_STORED)
    stored[stored.find(b"!Type") + 1] ^= 0x20                         # bad CRC
    assert "'a.qif: it is damaged or incomplete'" in _zip_error(stored)
    deflated = _zip(("a.qif", qif))
    deflated[40:44] = b"\xff\xff\xff\xff"                            # broken deflate data
    assert "damaged" in _zip_error(deflated)
    central = deflated.find(b"PK\x01\x02")
    unsupported = _zip(("a.qif", qif))
    unsupported[8] = unsupported[central + 10] = 99                   # AES compression
    assert "compression method" in _zip_error(unsupported)
    encrypted = _zip(("a.qif", qif))
    encrypted[6] |= 1                                                 # 'encrypted' flag
    encrypted[central + 8] |= 1
    assert "password" in _zip_error(encrypted)


def test_an_archive_inside_an_archive_is_not_opened():
    """The member is parsed as the format it was detected as (a '.cod' member holding another
    ZIP was opened in turn: zip bombs nest)."""
    inner = bytes(_zip(("x.qif", (SAMPLES / "qif/oca_test_qif.qif").read_bytes())))
    with pytest.raises(StatementFileError) as error:
        parse_file(bytes(_zip(("inner.cod", inner))), "outer.zip")
    assert error.value.code == "coda_no_header"
