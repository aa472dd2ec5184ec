"""services/statement_files/csv.py: conformance on the real CSV samples + pitfalls."""
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from services.statement_files import parse_file
from services.statement_files.csv import PROFILES, CsvMapping
from services.statement_files.model import StatementFileError
from services.types import TxnStatus

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
pytestmark = pytest.mark.skipif(not (SAMPLES / "expected.json").exists(),
                                reason="sample files not available")
SAME_ENCODING = {"latin-1": {"latin-1", "cp1252"}, "utf-8": {"utf-8"}}   # cp1252 ⊃ latin-1


def expected_entries(prefix):
    if not (SAMPLES / "expected.json").exists():
        return []
    return [e for e in json.loads((SAMPLES / "expected.json").read_text())
            if e["file"].startswith(prefix)]


def sample(name):
    return (SAMPLES / "csv" / name).read_bytes()


def dec(text):
    return None if text is None else Decimal(text)


# ------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("entry", expected_entries("csv/"), ids=lambda e: e["file"])
def test_sample_matches_expected(entry):
    result = parse_file((SAMPLES / entry["file"]).read_bytes(), Path(entry["file"]).name)
    assert result.format == "csv"
    assert result.encoding in SAME_ENCODING[entry["encoding"]]
    assert result.raw["delimiter"] == entry["delimiter"]
    header_row = result.raw["header_row"]
    assert (-1 if header_row is None else header_row) == entry["header_row"]
    assert len(result.transactions) == entry["rows"]
    assert "csv_guessed_mapping" not in result.warning_codes()       # a built-in profile
    if entry["opening"] is None:
        assert all(s.opening_balance is None for s in result.statements)
    else:
        assert len(result.statements) == 1
        statement = result.statements[0]
        assert statement.opening_balance == dec(entry["opening"])
        assert statement.closing_balance == dec(entry["closing"])
        if statement.balance_difference:
            assert "balance_mismatch" in result.warning_codes()
    for statement in result.statements:
        ids = [t.external_id for t in statement.transactions]
        assert all(ids) and len(ids) == len(set(ids))
    for txn in result.transactions:
        assert txn.provider == "file" and txn.status == TxnStatus.BOOKED
        assert isinstance(txn.booking_date, date) and isinstance(txn.amount, Decimal)


EXPECTED_AMOUNTS = {   # from SOURCES.txt
    "be-fintro_sample.csv": ["-191.13", "-52.50", "-12.48", "-7000.97"],
    "csv2ofx_capitalone.csv": ["-1000.00", "1000.00"],
    "csv2ofx_gls.csv": ["-98.76"],
    "csv2ofx_n26-fr.csv": ["328.00", "-328.00"],
    "csv2ofx_payoneer.csv": ["120", "-100"],                       # put in balance order
    "oca_sheet_balance.csv": ["-33.50", "1533.50"],
    "oca_sheet_debit_credit.csv": ["-33.50", "1533.50"],
    "oca_sheet_meta_data_separated_credit_debit.csv": ["-50.00", "-100.00", "-80.68",
                                                       "1300.00"],
    "nl-ing_ing_ok.csv": ["-1.25", "1.25", "0.00", "20.00", "-0.31", "-0.31"],
    "csv2ofx_pcmastercard.csv": ["-36.33", "-13.98"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_AMOUNTS))
def test_amount_models(name):
    result = parse_file(sample(name), name)
    assert [t.amount for t in result.transactions] == [Decimal(a) for a in EXPECTED_AMOUNTS[name]]


# ----------------------------------------------------------------------------- detections
def test_semicolon_decimal_comma_and_dmy_dates():
    result = parse_file(sample("be-fintro_sample.csv"))
    assert result.raw["decimal_separator"] == "," and result.raw["date_order"] == "DMY"
    first = result.transactions[0]
    assert first.booking_date == date(2017, 2, 27) and first.value_date == date(2017, 2, 26)
    assert first.account_external_id == "BE848575674748" and first.currency == "EUR"


def test_cp1252_file_with_umlauts_and_running_balance():
    result = parse_file(sample("csv2ofx_gls.csv"))
    assert result.raw["profile"] == "de_gls"
    txn = result.transactions[0]
    assert txn.counterparty_name == "Drillisch Online AG"
    assert "987 SIMply Rechnung" in txn.description
    assert txn.balance_after == Decimal("1234.56")


def test_cr_only_line_endings_and_unicode():
    result = parse_file(sample("csv2ofx_creditunion.csv"))
    assert b"\r" in sample("csv2ofx_creditunion.csv") and b"\n" not in sample(
        "csv2ofx_creditunion.csv")
    assert len(result.transactions) == 8
    assert result.transactions[0].date == date(2015, 2, 8)
    assert result.transactions[0].alt_ids["reference"] == "INV-1"


def test_direction_column_overrides_the_sign():
    result = parse_file(sample("csv2ofx_mint.csv"))
    assert [t.amount for t in result.transactions] == [
        Decimal("-1000.00"), Decimal("-1500.00"), Decimal("2000.00"), Decimal("-2500.00")]
    assert sorted(s.account_number for s in result.statements) == ["Checking", "Savings"]


def test_mixed_locale_us_dates_with_decimal_commas():
    result = parse_file(sample("csv2ofx_outbank.csv"))
    assert result.transactions[1].amount == Decimal("-63.89")
    assert result.transactions[1].date == date(2019, 2, 8)
    assert result.transactions[1].mandate_id == "0001-200000000000"
    assert result.transactions[1].counterparty_bic == "CHASDEFX"


def test_header_found_after_metadata_and_balances_from_the_lines_around_the_table():
    result = parse_file(sample("oca_sheet_meta_data_separated_credit_debit.csv"))
    statement = result.statements[0]
    assert result.raw["header_row"] == 3
    assert statement.opening_balance == Decimal("30000.77")
    assert statement.closing_balance == Decimal("31070.11")
    assert statement.balance_difference == Decimal("0.02")
    assert "balance_mismatch" in result.warning_codes()
    assert result.transactions[0].date == date(2020, 4, 1)


def test_no_header_row_and_balance_before_each_row():
    result = parse_file(sample("nl-asn_transactie-historie.csv"))
    statement = result.statements[0]
    assert result.raw["profile"] == "nl_asn" and result.raw["header_row"] is None
    assert statement.account_number == "NL00ASNB9999999999"
    assert statement.opening_balance + statement.total == statement.closing_balance
    assert statement.transactions[0].balance_after == Decimal("354.21")
    assert statement.transactions[1].counterparty_iban == "NL11ABNA0000000000"


def test_newest_first_running_balance_is_chained_backwards():
    statement = parse_file(sample("csv2ofx_payoneer.csv")).statements[0]
    assert [t.balance_after for t in statement.transactions] == [Decimal("300"), Decimal("200")]
    assert [t.external_id for t in statement.transactions] == ["1234", "123"]  # bank's ids
    assert not statement.transactions[0].id_is_synthetic


def test_unordered_balances_that_do_not_chain_give_no_statement_balance():
    result = parse_file(sample("csv2ofx_ingesp.csv"))
    assert result.statements[0].opening_balance is None
    assert "csv_balance_chain" in result.warning_codes()
    assert result.transactions[2].balance_after == Decimal("318.88")


def test_original_currency_columns():
    txn = parse_file(sample("oca_sheet_original_currency.csv")).transactions[0]
    assert txn.amount == Decimal("1525.00")
    assert (txn.original_amount, txn.original_currency) == (Decimal("-1000.00"), "EUR")


def test_pending_rows_are_skipped():
    content = sample("csv2ofx_payoneer.csv").replace(b"Completed,300", b"Pending,300")
    result = parse_file(content)
    assert [t.amount for t in result.transactions] == [Decimal("-100")]
    assert "csv_skipped_rows" in result.warning_codes()


def test_bom_tab_delimiter_and_guessed_columns():
    text = "\ufeffBuchungstag\tVerwendungszweck\tBetrag\tSaldo\n" \
           "02.01.2024\tMiete\t-800,00\t1.200,00\n23.01.2024\tGehalt\t2.500,00\t3.700,00\n"
    result = parse_file(text.encode("utf-8"), "export.txt")
    assert result.raw["delimiter"] == "\t"
    assert [t.amount for t in result.transactions] == [Decimal("-800.00"), Decimal("2500.00")]
    assert result.statements[0].opening_balance == Decimal("2000.00")
    assert "csv_guessed_mapping" in result.warning_codes()


def test_debit_and_credit_columns_positive_or_negative():
    text = b"Date;Text;Debit;Credit\n2024-01-02;A;12,50;\n2024-01-03;B;-3,00;\n2024-01-04;C;;7\n"
    result = parse_file(text, "x.csv")
    assert [t.amount for t in result.transactions] == [Decimal("-12.50"), Decimal("-3.00"),
                                                       Decimal("7")]


def test_nothing_recognised_lists_the_columns():
    with pytest.raises(StatementFileError) as error:
        parse_file(b"Foo,Bar,Baz\n1,2,3\n4,5,6\n", "x.csv")
    assert error.value.code == "csv_no_mapping"
    assert "'Foo', 'Bar', 'Baz'" in str(error.value)


def test_ambiguous_dates_need_a_format():
    text = b"Date,Label,Amount\n01/02/2024,A,1.00\n03/04/2024,B,2.00\n"
    mapping = CsvMapping(date_column="Date", amount_column="Amount",
                         description_columns=("Label",))
    with pytest.raises(StatementFileError) as error:
        parse_file(text, options={"csv_mapping": mapping})
    assert error.value.code == "csv_ambiguous_dates"
    assert "'01/02/2024'" in str(error.value)
    result = parse_file(text, options={"csv_mapping": mapping, "date_order_hint": "DMY"})
    assert result.transactions[0].date == date(2024, 2, 1)


# ------------------------------------------------------------------------------- mappings
def test_explicit_mapping_saved_as_a_dict():
    mapping = CsvMapping(date_column=0, amount_column=10, balance_column=8,
                         balance_is_before=True, description_columns=(17,), has_header=False,
                         date_format="%d-%m-%Y", decimal_separator=".", currency="EUR")
    restored = CsvMapping.from_dict(json.loads(json.dumps(mapping.to_dict())))
    assert restored == mapping
    result = parse_file(sample("nl-asn_transactie-historie.csv"),
                        options={"csv_mapping": restored.to_dict()})
    assert len(result.transactions) == 11
    assert result.statements[0].closing_balance == Decimal("84.24")
    assert "csv_profile" not in result.warning_codes()


def test_mapping_with_skip_lines_and_invert_sign():
    text = b"My Bank export\nAccount 1\nWhen;What;How much\n2024-01-02;Card;12.00\n"
    mapping = {"date_column": "When", "amount_column": "How much",
               "description_columns": ["What"], "skip_lines": 2, "invert_sign": True}
    result = parse_file(text, options={"csv_mapping": mapping})
    assert result.transactions[0].amount == Decimal("-12.00")
    assert result.transactions[0].description == "Card"


def test_missing_mapped_column_is_named():
    with pytest.raises(StatementFileError) as error:
        parse_file(sample("csv2ofx_capitalone.csv"),
                   options={"csv_mapping": {"date_column": "Datum", "amount_column": "Debit"}})
    assert error.value.code == "csv_missing_column"
    assert "'Datum'" in str(error.value) and "'Posted Date'" in str(error.value)


@pytest.mark.parametrize("value, code", [("12,3.4x", "csv_bad_amount"),
                                         ("31/02/2024", "csv_bad_date")])
def test_bad_values_are_reported_with_their_line(value, code):
    text = f"Date,Label,Amount\n01/15/2024,A,1.00\n01/16/2024,B,2.00\n".encode()
    if code == "csv_bad_amount":
        text += f'01/17/2024,C,"{value}"\n'.encode()
    else:
        text += f"{value},C,3.00\n".encode()
        text = text.replace(b"01/15", b"15/01").replace(b"01/16", b"16/01")
    with pytest.raises(StatementFileError) as error:
        parse_file(text, "x.csv")
    assert error.value.code == code and "Line 4" in str(error.value)


def test_every_builtin_profile_is_well_formed():
    names = [p.name for p in PROFILES]
    assert len(names) == len(set(names))
    for profile in PROFILES:
        mapping = CsvMapping.from_dict(profile.mapping)
        assert mapping.date_column is not None
        assert mapping.amount_column is not None or mapping.debit_column is not None
        assert bool(profile.headers) != bool(profile.match_rows)


def test_absurd_amount_is_refused_with_its_line():
    """A 40-digit amount overflowed the decimal context when rounded (InvalidOperation)."""
    with pytest.raises(StatementFileError) as error:
        parse_file(("Date,Label,Amount\n2024-01-31,A,1.00\n2024-02-01,B," + "9" * 40 +
                    ".00\n").encode(), "x.csv")
    assert error.value.code == "csv_bad_amount" and "Line 3" in str(error.value)
