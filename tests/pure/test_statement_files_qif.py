"""services/statement_files/qif.py: conformance on the real QIF samples + pitfalls."""
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from services.statement_files import parse_file
from services.statement_files.model import StatementFileError, infer_date_order, parse_date
from services.types import TxnStatus

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
pytestmark = pytest.mark.skipif(not (SAMPLES / "expected.json").exists(),
                                reason="sample files not available")

# What the Odoo layer passes: the user's language date order as a tie-breaker (en_US here),
# and "line" so the 'Opening Balance' record is counted as a line, as expected.json does.
ODOO_OPTIONS = {"date_order_hint": "MDY", "qif_opening_balance": "line"}


def expected_entries(prefix):
    if not (SAMPLES / "expected.json").exists():
        return []
    return [e for e in json.loads((SAMPLES / "expected.json").read_text())
            if e["file"].startswith(prefix)]


def sample(name):
    return (SAMPLES / "qif" / name).read_bytes()


def qif(text):
    return text.encode("utf-8")


# ------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("entry", expected_entries("qif/"), ids=lambda e: e["file"])
def test_sample_matches_expected(entry):
    result = parse_file((SAMPLES / entry["file"]).read_bytes(), Path(entry["file"]).name,
                        options=ODOO_OPTIONS)
    assert result.format == "qif" and result.version == entry["format"]
    assert len(result.transactions) == entry["transactions"]
    assert sum(t.amount for t in result.transactions) == Decimal(entry["sum"])
    for statement in result.statements:
        assert statement.account_number is None            # QIF has no account number
        if entry["opening"] is None:                       # no 'Opening Balance' record kept
            assert statement.opening_balance is None and statement.closing_balance is None
        ids = [t.external_id for t in statement.transactions]
        assert len(ids) == len(set(ids))
    for txn in result.transactions:
        assert txn.provider == "file" and txn.status == TxnStatus.BOOKED
        assert txn.id_is_synthetic and txn.external_id.startswith("sha256:")
        assert isinstance(txn.booking_date, date) and isinstance(txn.amount, Decimal)


# ------------------------------------------------------------------------------------ dates
SAME_DAYS = [date(2013, 8, 12), date(2013, 8, 15), date(2013, 3, 3), date(2013, 3, 4),
             date(2013, 3, 3)]


@pytest.mark.parametrize("name", ["oca_test_qif.qif", "oca_test_qif_dmy.qif",
                                  "oca_test_qif_ymd.qif"])
@pytest.mark.parametrize("hint", [None, "MDY", "DMY"])
def test_date_order_is_inferred_once_per_file(name, hint):
    """US M/D/YY, D/M/YY and YY/MM/DD spellings of the same five lines give the same dates,
    whatever the user's language: each file has a single reading of ALL its dates."""
    result = parse_file(sample(name), options={"date_order_hint": hint})
    assert [t.date for t in result.transactions] == SAME_DAYS
    assert "dates_read_with_hint" not in result.warning_codes()


def test_ambiguous_dates_are_refused_without_a_hint():
    with pytest.raises(StatementFileError) as error:
        parse_file(sample("jemmyw_splits.qif"))
    message = str(error.value)
    assert error.value.code == "qif_ambiguous_dates"
    assert "'6/1/94'" in message and "month/day/year" in message and "day/month/year" in message
    assert "date format" in message


@pytest.mark.parametrize("hint, first", [("MDY", date(1994, 6, 1)), ("DMY", date(1994, 1, 6))])
def test_ambiguous_dates_follow_the_hint_with_a_warning(hint, first):
    result = parse_file(sample("jemmyw_splits.qif"), options={"date_order_hint": hint})
    assert result.transactions[0].date == first
    assert "dates_read_with_hint" in result.warning_codes()


def test_forced_date_format_wins_and_bad_dates_are_reported_with_their_line():
    result = parse_file(sample("jemmyw_splits.qif"), options={"date_format": "%d/%m/%y"})
    assert result.transactions[1].date == date(1994, 2, 6)
    with pytest.raises(StatementFileError) as error:
        parse_file(sample("oca_test_qif.qif"), options={"date_format": "DMY"})
    assert error.value.code == "qif_bad_date"
    assert "Line 6: '8/15/13' is not a date in the format 'day/month/year'" in str(error.value)


def test_apostrophe_years_and_space_padding():
    assert parse_date("2/10'2020", "MDY") == date(2020, 2, 10)
    assert parse_date("1/ 1'00", "MDY") == date(2000, 1, 1)
    assert parse_date("12/29/10", "MDY") == date(2010, 12, 29)
    assert parse_date("6/1/94", "MDY") == date(1994, 6, 1)
    assert parse_date("13/3/3", "DMY") is None                 # a year has 2 or 4 digits
    result = parse_file(sample("jemmyw_3_records_spaced.qif"))
    assert [t.date for t in result.transactions] == [date(2010, 1, 1), date(2010, 6, 1),
                                                     date(2010, 12, 29)]


def test_dmy_and_mdy_four_digit_years():
    dmy = parse_file(sample("jemmyw_3_records_ddmmyyyy.qif"), options={"date_order_hint": "MDY"})
    mdy = parse_file(sample("jemmyw_3_records_mmddyyyy.qif"), options={"date_order_hint": "DMY"})
    assert dmy.transactions[1].date == mdy.transactions[1].date == date(2010, 6, 1)


def test_identical_readings_are_not_ambiguous():
    order, hinted = infer_date_order(["01/01/2020", "05/05/2020"])
    assert not hinted and parse_date("05/05/2020", order) == date(2020, 5, 5)


# ---------------------------------------------------------------------------------- records
def test_splits_are_not_lines_and_t_is_the_amount():
    result = parse_file(sample("jemmyw_splits.qif"), options={"date_order_hint": "MDY"})
    assert [t.amount for t in result.transactions] == [Decimal("-1000.00"), Decimal("75.00")]
    first = result.transactions[0]
    assert first.alt_ids["reference"] == "1005" and first.counterparty_name == "Bank Of Mortgage"
    assert first.raw["splits"] == 2 and first.raw["cleared"] == "X"


def test_non_bank_sections_are_skipped_and_split_dates_ignored():
    result = parse_file(sample("quiffen_test.qif"), options={"qif_opening_balance": "line"})
    assert len(result.transactions) == 6
    assert Decimal("100.00") not in [t.amount for t in result.transactions]   # !Type:Invst
    assert date(2020, 1, 10) not in [t.date for t in result.transactions]     # D inside split
    assert "qif_skipped_sections" in result.warning_codes()


def test_opening_balance_record_becomes_the_opening_balance_by_default():
    result = parse_file(sample("quiffen_test.qif"))
    statement = result.statements[0]
    assert len(statement.transactions) == 5
    assert statement.opening_balance == Decimal("0.00")
    assert statement.closing_balance == Decimal("-35.50") and statement.closing_balance_computed
    assert "qif_opening_balance" in result.warning_codes()
    text = "!Type:Bank\nD01/02/2024\nT1,234.50\nPOpening Balance\nL[Checking]\n^\n" \
           "D01/23/2024\nT-34.50\nPShop\n^\n"
    statement = parse_file(qif(text)).statements[0]
    assert statement.opening_balance == Decimal("1234.50")
    assert statement.closing_balance == Decimal("1200.00")
    assert [t.amount for t in statement.transactions] == [Decimal("-34.50")]


def test_one_statement_per_account_section():
    result = parse_file(sample("csv2ofx_converted_mint.qif"))
    assert [(s.name, len(s.transactions), s.total) for s in result.statements] == [
        ("Checking", 3, Decimal("-2000.00")), ("Savings", 1, Decimal("-1000.00"))]
    assert result.transactions[0].account_external_id == "Checking"


def test_payee_and_memo_variants():
    result = parse_file(sample("actual_data-payee-memo.qif"))
    assert [t.description for t in result.transactions] == [
        "Payee Name Note Text", "Payee Name Only", "Note Only Text", ""]


def test_eu_amounts_cr_line_endings_bom_and_cp1252():
    text = "!Type:Bank\rD31.12.2023\rT-1.234,56\rPCaf\u00e9\r^\rD02.01.2024\rT10,00\r^\r"
    result = parse_file(text.encode("cp1252"), "x.qif")
    assert result.encoding == "cp1252"
    assert [t.amount for t in result.transactions] == [Decimal("-1234.56"), Decimal("10.00")]
    assert result.transactions[0].date == date(2023, 12, 31)
    assert result.transactions[0].counterparty_name == "Caf\u00e9"
    bom = parse_file(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert len(bom.transactions) == 2 and bom.encoding == "utf-8"


def test_files_starting_with_account_or_option_are_accepted():
    text = ("!Option:AutoSwitch\n!Account\nNMy Card\nTCCard\n^\n!Clear:AutoSwitch\n"
            "!Account\nNMy Card\nTCCard\n^\n!Type:CCard\nD2024-01-05\nT-12.00\nPShop\n^\n")
    result = parse_file(qif(text))
    assert result.statements[0].name == "My Card"
    assert result.statements[0].account_kind == "card"
    assert result.transactions[0].date == date(2024, 1, 5)


def test_invert_sign_option_for_card_exports_with_positive_charges():
    text = "!Type:CCard\nD2024-01-05\nT12.00\nPShop\n^\n"
    assert parse_file(qif(text), options={"invert_sign": True}).transactions[0].amount == \
        Decimal("-12.00")


def test_identical_lines_get_distinct_stable_ids():
    text = qif("!Type:Bank\nD2024-01-05\nT-3.00\nPBus\n^\nD2024-01-05\nT-3.00\nPBus\n^\n")
    first, again = parse_file(text), parse_file(text)
    ids = [t.external_id for t in first.transactions]
    assert len(set(ids)) == 2 and ids == [t.external_id for t in again.transactions]


@pytest.mark.parametrize("text, code, fragment", [
    ("!Type:Bank\nD2024-01-05\nPShop\n^\n", "qif_no_amount", "Line 2"),
    ("!Type:Bank\nT-1.00\nPShop\n^\n", "qif_no_date", "Line 2"),
    ("!Type:Bank\nD2024-01-05\nT12,3.4x\n^\n", "qif_bad_amount", "'12,3.4x' is not a number"),
    ("!Type:Bank\nDyesterday\nT1\n^\n", "qif_unknown_dates", "'yesterday'"),
    ("!Type:Cat\nNFood\n^\n", "qif_no_transactions", "'cat'"),
])
def test_errors_say_what_is_wrong(text, code, fragment):
    with pytest.raises(StatementFileError) as error:
        parse_file(qif(text), "broken.qif")
    assert error.value.code == code
    assert fragment in str(error.value)


# ------------------------------------------------------------- damaged files (fuzzing finds)
def test_absurd_amount_is_refused_with_its_line():
    """A 40-digit amount overflowed the decimal context when rounded (InvalidOperation)."""
    with pytest.raises(StatementFileError) as error:
        parse_file(qif("!Type:Bank\nD2024-01-31\nT" + "9" * 40 + "\nPx\n^\n"))
    assert error.value.code == "qif_bad_amount" and "Line 2" in str(error.value)


def test_a_very_long_date_value_fails_fast():
    """parse_date's time-suffix pattern backtracked quadratically on a long run of 'T's
    (about 30 s for a 50,000-character D line)."""
    import time
    started = time.perf_counter()
    with pytest.raises(StatementFileError) as error:
        parse_file(qif("!Type:Bank\nD01/31/2024" + "T" * 50000 + "\nT1.00\n^\n"))
    assert error.value.code == "qif_unknown_dates"
    assert time.perf_counter() - started < 5
    assert parse_date("01/31/2024" + "T" * 50000, "MDY") is None
