"""services/statement_files/ofx.py: conformance on the real OFX/QFX samples + pitfalls."""
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from services.statement_files import parse_file
from services.statement_files.model import StatementFileError
from services.types import TxnStatus

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
pytestmark = pytest.mark.skipif(not (SAMPLES / "expected.json").exists(),
                                reason="sample files not available")


def expected_entries(prefix):
    if not (SAMPLES / "expected.json").exists():
        return []
    return [e for e in json.loads((SAMPLES / "expected.json").read_text())
            if e["file"].startswith(prefix)]


def sample(name):
    return (SAMPLES / name).read_bytes()


NEGATIVE = {  # files expected.json marks as to be rejected, and what the message must say
    "ofx/oca_test_ofx_wrong.ofx": "no amount (TRNAMT)",
    "ofx/asgrim_ofxdata-banking-xml200.ofx": "no amount (TRNAMT)",
}


def dec(text):
    """expected.json keeps the file's own spelling ('200,29' in the decimal-comma sample)."""
    return None if text in (None, "") else Decimal(text.replace(",", "."))


# ------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("entry", expected_entries("ofx/"), ids=lambda e: e["file"])
def test_sample_matches_expected(entry):
    content = sample(entry["file"])
    if entry["file"] in NEGATIVE:
        with pytest.raises(StatementFileError) as error:
            parse_file(content, entry["file"])
        assert NEGATIVE[entry["file"]] in str(error.value)
        assert "export the statement again" in str(error.value).lower()
        return
    result = parse_file(content, Path(entry["file"]).name)
    assert result.format == "ofx"
    assert result.version == entry["format"]
    assert len(result.statements) == len(entry["statements"])
    for statement, want in zip(result.statements, entry["statements"]):
        assert statement.account_number == want["account"]
        assert (statement.currency or "") == want["currency"]
        assert statement.account_kind == ("card" if want["type"] == "CCSTMTRS" else "bank")
        assert len(statement.transactions) == want["transactions"]
        unrounded = sum((Decimal(t.raw.get("unrounded_amount", t.amount))
                         for t in statement.transactions), Decimal(0))
        assert unrounded == Decimal(want["sum"])
        ledger = dec(want["ledgerbal"])
        if ledger is None:
            assert statement.closing_balance is None
            assert "ofx_no_balance" in result.warning_codes()
        else:
            unrounded_closing = Decimal(statement.raw.get("unrounded_closing_balance",
                                                          statement.closing_balance))
            assert unrounded_closing == ledger
        available = dec(want["availbal"])
        assert statement.raw["available_balance"] == available
        # OFX has no opening balance: when computed, the lines add up exactly
        if statement.opening_balance is not None:
            assert statement.opening_balance_computed
            assert statement.opening_balance + statement.total == statement.closing_balance
        for txn in statement.transactions:
            assert txn.provider == "file" and txn.status == TxnStatus.BOOKED
            assert isinstance(txn.amount, Decimal) and isinstance(txn.booking_date, date)
            assert txn.external_id
        ids = [t.external_id for t in statement.transactions]
        assert len(ids) == len(set(ids))
    assert "balance_mismatch" not in result.warning_codes()


# --------------------------------------------------------------------------------- pitfalls
def test_fitid_is_the_external_id_and_payee_memo_make_the_description():
    result = parse_file(sample("ofx/ofxparse_bank_medium_v102.ofx"))
    first = result.transactions[0]
    assert first.external_id == "0000123456782009040100001"
    assert not first.id_is_synthetic
    assert first.amount == Decimal("-6.60")
    assert first.counterparty_name == "MCDONALD'S #112"
    assert first.description == "MCDONALD'S #112 POS MERCHANDISE;MCDONALD'S #112"
    assert first.bank_transaction_code == "POS"


def test_date_is_the_local_date_written_in_the_file_not_utc():
    # 20090401122017.000[-5:EST] is 1 April in the bank's zone (17:20 UTC, same day) and
    # 20071015021529.000[-8:PST]-style values must not move to the next UTC day.
    text = sample("ofx/ofxparse_bank_medium_v102.ofx").replace(
        b"20090401122017.000[-5:EST]", b"20090401230000.000[-5:EST]")
    result = parse_file(text)
    assert result.transactions[0].booking_date == date(2009, 4, 1)


def test_utf8_bytes_despite_charset_1252_and_blank_line_before_header():
    content = sample("ofx/ofxparse_chase_cc.qfx")
    assert content.startswith(b"\n") and b"CHARSET:1252" in content and b"\xc2\xa6" in content
    result = parse_file(content)
    assert result.transactions[0].counterparty_name == "SQ *ECCO UN POCO \u00a6 NATURA"


def test_latin1_charset_spelled_8859_1():
    result = parse_file(sample("ofx/actual_8859-1.qfx"))
    assert result.encoding == "latin-1"
    assert "\u00e9" in result.transactions[0].description


def test_bom_and_leading_blank_lines():
    content = b"\xef\xbb\xbf\r\n\r\n" + sample("ofx/ofxparse_checking_v102.ofx")
    result = parse_file(content, "x.ofx")
    assert len(result.transactions) == 3
    assert result.statements[0].closing_balance == Decimal("100.99")


def test_header_and_body_on_one_line():
    raw = sample("ofx/ofxparse_checking_v102.ofx").replace(b"\r", b"")
    one_line = b" ".join(raw.split(b"\n"))
    assert b"\n" not in one_line
    result = parse_file(one_line)
    assert result.version == "OFX 100/102"
    assert len(result.transactions) == 3


def test_body_on_one_line_and_no_blank_line_after_header():
    assert len(parse_file(sample("ofx/asgrim_ofxdata-oneline.ofx")).transactions) == 8
    result = parse_file(sample("ofx/ofxgo_busted_bmo_v102__no_header_newline.qfx"))
    assert result.transactions[0].amount == Decimal("2042.24")


def test_decimal_comma_amounts_and_balances():
    euro = parse_file(sample("ofx/ofxtools_stmtrs_euro.ofx"))
    plain = parse_file(sample("ofx/ofxtools_stmtrs.ofx"))
    assert [t.amount for t in euro.transactions] == [Decimal("-200.00"), Decimal("-300.00")]
    assert [t.amount for t in euro.transactions] == [t.amount for t in plain.transactions]
    assert euro.statements[0].closing_balance == Decimal("200.29")
    assert euro.transactions[0].alt_ids["reference"] == "1000"      # CHECKNUM


def test_explicit_plus_sign_and_mixed_closed_tags():
    result = parse_file(sample("ofx/tryton_account_statement_ofx_OFX.ofx"))
    assert result.transactions[0].amount == Decimal("100.00")
    assert result.statements[0].opening_balance == Decimal("400.00")


def test_thirteen_decimals_are_rounded_to_the_currency_with_a_warning():
    result = parse_file(sample("ofx/ofxgo_moneymrkt1_v203.ofx"))
    statement = result.statements[0]
    assert all(t.amount == t.amount.quantize(Decimal("0.01")) for t in statement.transactions)
    assert statement.closing_balance == Decimal("3317.74")
    assert "amounts_rounded" in result.warning_codes()
    assert statement.opening_balance + statement.total == statement.closing_balance


def test_opening_balance_is_ledger_balance_minus_the_lines():
    statement = parse_file(sample("ofx/ofxparse_checking_v102.ofx")).statements[0]
    assert statement.closing_balance == Decimal("100.99")
    assert statement.total == Decimal("-59.50")
    assert statement.opening_balance == Decimal("160.49")
    assert statement.opening_balance_computed and not statement.closing_balance_computed


def test_no_opening_balance_when_ledger_balance_predates_the_last_line():
    result = parse_file(sample("ofx/asgrim_ofx-multiple-accounts-xml.ofx"))
    second = result.statements[1]
    assert second.closing_date < max(t.date for t in second.transactions)
    assert second.opening_balance is None
    assert "ofx_balance_before_last_line" in result.warning_codes()


def test_empty_balance_is_a_warning_not_an_error():
    result = parse_file(sample("ofx/asgrim_ofxdata-selfclose.ofx"))
    assert len(result.transactions) == 5
    assert result.statements[0].closing_balance is None
    assert "ofx_no_balance" in result.warning_codes()


def test_file_without_header_and_empty_tags():
    assert parse_file(sample("ofx/ofxparse_fail_nice_empty_balance.ofx")).version == "OFX ?/?"
    result = parse_file(sample("ofx/ofxparse_ofx-v102-empty-tags.ofx"))
    txn = result.transactions[0]
    assert txn.amount == Decimal("12.34")
    assert txn.id_is_synthetic and txn.external_id.startswith("sha256:")
    assert {"ofx_missing_currency", "ofx_no_fitid"} <= set(result.warning_codes())


def test_synthetic_ids_are_stable_and_distinct_for_identical_lines():
    block = (b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-5.00<NAME>COFFEE</STMTTRN>")
    content = _sgml(block + block)
    first, second = parse_file(content), parse_file(content)
    ids = [t.external_id for t in first.transactions]
    assert len(set(ids)) == 2
    assert ids == [t.external_id for t in second.transactions]


def test_pending_transactions_are_never_imported():
    content = sample("ofx/ofxtools_stmtrs.ofx").replace(
        b"</BANKTRANLIST>",
        b"</BANKTRANLIST><BANKTRANLISTP><DTASOF>20051029</DTASOF><STMTTRNP><TRNTYPE>HOLD"
        b"</TRNTYPE><DTTRAN>20051028</DTTRAN><TRNAMT>-999.00</TRNAMT><NAME>HOLD</NAME>"
        b"</STMTTRNP></BANKTRANLISTP>")
    result = parse_file(content)
    assert len(result.transactions) == 2
    assert Decimal("-999.00") not in [t.amount for t in result.transactions]
    assert "ofx_pending_ignored" in result.warning_codes()


def test_xml_declaring_utf16_but_ascii():
    content = sample("ofx/ofxgo_moneymrkt1_v203.ofx")
    assert b'encoding="utf-16"' in content
    assert len(parse_file(content).transactions) == 3


def test_cdata_and_raw_ampersand():
    result = parse_file(sample("ofx/ofxparse_suncorp_v200.ofx"))
    assert "CDATA" not in result.transactions[0].description
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-5.00<FITID>1"
                    b"<NAME>A & B<MEMO>fish & chips</STMTTRN>")
    assert "fish & chips" in parse_file(content).transactions[0].description


def test_several_statements_bank_and_card():
    result = parse_file(sample("ofx/oca_test_ofx.ofx"))
    assert [s.account_kind for s in result.statements] == ["bank", "card"]
    assert [len(s.transactions) for s in result.statements] == [4, 0]
    assert result.statements[1].closing_balance == Decimal("-562.00")


def test_credit_card_purchases_are_negative():
    result = parse_file(sample("ofx/asgrim_ofxdata-credit-card.ofx"))
    assert result.transactions[0].amount == Decimal("-100.00")
    assert result.statements[0].closing_balance == Decimal("-500.00")


def test_missing_amount_names_the_transaction():
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<FITID>ABC<NAME>X</STMTTRN>")
    with pytest.raises(StatementFileError) as error:
        parse_file(content)
    assert error.value.code == "ofx_missing_amount"
    assert "'ABC'" in str(error.value)


@pytest.mark.parametrize("transactions, code", [
    (b"<STMTTRN><TRNTYPE>DEBIT<TRNAMT>-1.00<FITID>A</STMTTRN>", "ofx_missing_date"),
    (b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-1.00<FITID>A"
     b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240103<TRNAMT>-2.00<FITID>B</STMTTRN>", "ofx_invalid"),
])
def test_damaged_transactions_are_refused(transactions, code):
    with pytest.raises(StatementFileError) as error:
        parse_file(_sgml(transactions))
    assert error.value.code == code


def test_unreadable_amount_is_reported():
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>12,3.4x<FITID>1"
                    b"</STMTTRN>")
    with pytest.raises(StatementFileError) as error:
        parse_file(content)
    assert error.value.code == "ofx_bad_amount"
    assert "'12,3.4x' is not a number" in str(error.value)


def test_investment_only_file_is_refused():
    content = (b"OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\n\n<OFX><INVSTMTMSGSRSV1>"
               b"<INVSTMTTRNRS><TRNUID>1<INVSTMTRS><DTASOF>20240101<CURDEF>USD"
               b"<INVACCTFROM><BROKERID>b<ACCTID>1</INVACCTFROM></INVSTMTRS></INVSTMTTRNRS>"
               b"</INVSTMTMSGSRSV1></OFX>")
    with pytest.raises(StatementFileError) as error:
        parse_file(content, "invest.ofx")
    assert error.value.code == "ofx_no_statement"
    assert "investment statements are not supported" in str(error.value)


def _sgml(transactions):
    return (b"OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nSECURITY:NONE\nENCODING:USASCII\n"
            b"CHARSET:1252\nCOMPRESSION:NONE\nOLDFILEUID:NONE\nNEWFILEUID:NONE\n\n"
            b"<OFX><SIGNONMSGSRSV1><SONRS><STATUS><CODE>0<SEVERITY>INFO</STATUS>"
            b"<DTSERVER>20240105<LANGUAGE>ENG</SONRS></SIGNONMSGSRSV1><BANKMSGSRSV1><STMTTRNRS>"
            b"<TRNUID>1<STATUS><CODE>0<SEVERITY>INFO</STATUS><STMTRS><CURDEF>EUR<BANKACCTFROM>"
            b"<BANKID>1<ACCTID>BE71096123456769<ACCTTYPE>CHECKING</BANKACCTFROM><BANKTRANLIST>"
            b"<DTSTART>20240101<DTEND>20240105" + transactions +
            b"</BANKTRANLIST><LEDGERBAL><BALAMT>100.00<DTASOF>20240105</LEDGERBAL></STMTRS>"
            b"</STMTTRNRS></BANKMSGSRSV1></OFX>")


# ------------------------------------------------------------- damaged files (fuzzing finds)
def _parse_error(content):
    with pytest.raises(StatementFileError) as error:
        parse_file(content)
    message = str(error.value)
    for name in ("Error", "Exception", "NoneType", "Traceback", "ParserRejectedMarkup"):
        assert name not in message, message
    return error.value


@pytest.mark.parametrize("value", [b"20241332", b"2024", b"yesterday", b"00000000"])
def test_unreadable_posting_date_names_the_transaction(value):
    error = _parse_error(_sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>" + value +
                               b"<TRNAMT>-1.00<FITID>F7</STMTTRN>"))
    assert error.code == "ofx_invalid"
    assert value.decode() in str(error) and "transaction 1 (FITID F7)" in str(error)


def test_unreadable_optional_dates_are_dropped():
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<DTUSER>2024-01-0x"
                    b"<TRNAMT>-1.00<FITID>A</STMTTRN>")
    content = content.replace(b"<DTSERVER>20240105", b"<DTSERVER>garbage")
    content = content.replace(b"<DTEND>20240105", b"<DTEND>20241399")
    content = content.replace(b"<DTASOF>20240105", b"<DTASOF>99999999")
    result = parse_file(content)
    txn, = result.transactions
    assert txn.date == date(2024, 1, 2) and txn.transaction_date is None
    statement, = result.statements
    assert statement.closing_balance == Decimal("100.00") and statement.closing_date is None


@pytest.mark.parametrize("status", [b"<STATUS><SEVERITY>INFO</STATUS>",
                                    b"<STATUS><CODE>zero<SEVERITY>INFO</STATUS>",
                                    b"<STATUS><CODE>0</STATUS>", b"<STATUS><CODE>"])
def test_damaged_status_aggregates_are_ignored(status):
    """ofxparse reads int(CODE) and SEVERITY of every STATUS: a missing or garbled one used to
    end in 'TypeError: int() argument...' / 'AttributeError' in the message."""
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-1.00<FITID>A"
                    b"</STMTTRN>").replace(b"<STATUS><CODE>0<SEVERITY>INFO</STATUS>", status)
    assert parse_file(content).transactions[0].amount == Decimal("-1.00")


def test_stray_less_than_sign_in_a_value():
    """html.parser took '< B' for a tag: IndexError inside ofxparse."""
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-1.00<FITID>A"
                    b"<NAME>A</NAME>< B<MEMO>x <1 y</STMTTRN>")
    txn, = parse_file(content).transactions
    assert txn.counterparty_name == "A" and txn.description == "A x <1 y"


def test_markup_the_html_parser_rejects_is_a_clear_error():
    """'<![CDAT^[' made BeautifulSoup raise ParserRejectedMarkup, outside ofx_invalid."""
    error = _parse_error(_sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-1.00"
                               b"<FITID>A<NAME><![CDAT^[x]]></STMTTRN>"))
    assert error.code == "ofx_invalid" and "damaged" in str(error)


def test_institution_is_read_from_the_signon():
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-1.00<FITID>A</STMTTRN>")
    content = content.replace(b"<LANGUAGE>ENG", b"<LANGUAGE>ENG<FI><ORG>Bank &amp; Co<FID>7</FI>")
    assert parse_file(content).statements[0].raw["institution"] == "Bank & Co"


@pytest.mark.parametrize("amount", [b"1" * 40, b"99999999999999999999.00"])
def test_absurd_amounts_are_refused(amount):
    """A 40-digit amount overflowed the 28-digit decimal context when rounded
    (decimal.InvalidOperation in the message)."""
    error = _parse_error(_sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>" + amount +
                               b"<FITID>A</STMTTRN>"))
    assert error.code == "ofx_bad_amount" and "Transaction 1" in str(error)


def test_bad_balance_amount_is_not_blamed_on_a_transaction():
    content = _sgml(b"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240102<TRNAMT>-1.00<FITID>A</STMTTRN>")
    error = _parse_error(content.replace(b"<BALAMT>100.00", b"<BALAMT>1OO.00"))
    assert error.code == "ofx_invalid" and "BALAMT" in str(error)
    assert "Transaction" not in str(error)


def test_sgml_leaves_are_closed_for_ofxparse():
    """ofxparse looks every unclosed tag up in the list of all closing tags of the file
    (quadratic: a 10 MB SGML file took minutes); the pre-processing closes the leaves."""
    from services.statement_files.ofx import _close_leaves
    assert _close_leaves("<STMTTRN>\n<TRNTYPE>DEBIT\n<NAME>x</NAME><MEMO>a b  \n</STMTTRN>") == \
        "<STMTTRN>\n<TRNTYPE>DEBIT</TRNTYPE>\n<NAME>x</NAME><MEMO>a b</MEMO>  \n</STMTTRN>"


def test_many_unclosed_transactions_fail_fast():
    """Each unclosed <STMTTRN> was searched for its end to the end of the file (quadratic)."""
    import time
    started = time.perf_counter()
    error = _parse_error(_sgml(b"<STMTTRN><TRNTYPE>DEBIT<TRNAMT>-1.00<DTPOSTED>20240102" * 20000))
    assert error.code == "ofx_invalid" and "never closed" in str(error)
    assert time.perf_counter() - started < 10
