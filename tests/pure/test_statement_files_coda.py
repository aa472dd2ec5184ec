"""services/statement_files/coda.py: conformance on the real CODA samples + pitfalls."""
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from services.statement_files import parse_file
from services.statement_files.coda import bban_to_iban, format_ogm
from services.statement_files.model import StatementFileError
from services.types import TxnStatus

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
pytestmark = pytest.mark.skipif(not (SAMPLES / "expected.json").exists(),
                                reason="sample files not available")

NEGATIVE = {"coda/pycoda_Coda_faulty_version.cod": "version '5'"}


def expected_entries(prefix):
    if not (SAMPLES / "expected.json").exists():
        return []
    return [e for e in json.loads((SAMPLES / "expected.json").read_text())
            if e["file"].startswith(prefix)]


def sample(name):
    return (SAMPLES / "coda" / name).read_bytes()


# ------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("entry", expected_entries("coda/"), ids=lambda e: e["file"])
def test_sample_matches_expected(entry):
    content = (SAMPLES / entry["file"]).read_bytes()
    if entry["file"] in NEGATIVE:
        with pytest.raises(StatementFileError) as error:
            parse_file(content, Path(entry["file"]).name)
        assert NEGATIVE[entry["file"]] in str(error.value)
        assert "only CODA version 2" in str(error.value)
        return
    result = parse_file(content, Path(entry["file"]).name)
    assert result.format == "coda" and result.version == "CODA " + entry["statements"][0]["version"]
    assert len(result.statements) == len(entry["statements"])
    for statement, want in zip(result.statements, entry["statements"]):
        assert statement.account_number == want["account"]
        assert len(statement.transactions) == want["movements"]
        assert statement.raw["records_2_1"] == want["records_2_1"]
        assert statement.opening_balance == Decimal(want["opening"])
        if want["closing"] is None:                            # empty CODA: no record 8
            assert statement.closing_balance_computed
            assert statement.closing_balance == statement.opening_balance
        else:
            assert statement.closing_balance == Decimal(want["closing"])
        if statement.balance_difference:
            assert "balance_mismatch" in result.warning_codes()
        for txn in statement.transactions:
            assert txn.provider == "file" and txn.status == TxnStatus.BOOKED
            assert not txn.id_is_synthetic and isinstance(txn.booking_date, date)
            assert txn.currency == "EUR"
        ids = [t.external_id for t in statement.transactions]
        assert len(ids) == len(set(ids))
    if "do not reconcile" not in (entry.get("note") or ""):
        assert "balance_mismatch" not in result.warning_codes()


def test_balances_that_do_not_reconcile_and_account_mismatch_are_warnings():
    result = parse_file(sample("oca_Ontvangen_CODA.2012-01-11-18.59.15.cod"))
    statement = result.statements[0]
    assert statement.balance_difference == Decimal("118.24")
    assert {"balance_mismatch", "coda_account_mismatch"} <= set(result.warning_codes())
    assert statement.account_number == "BE46737018594236"          # record 1 wins


# ---------------------------------------------------------------------------- globalisation
def test_globalised_total_is_booked_once_by_default():
    result = parse_file(sample("pycoda_Coda_v2_3_globalisation.cod"))
    statement = result.statements[0]
    assert statement.opening_balance == Decimal("-455.17")               # debit sign
    assert [t.raw["detail"] for t in statement.transactions] == ["0000"] * 4
    total = statement.transactions[2]
    assert total.amount == Decimal("50000.00")
    assert [d["detail"] for d in total.raw["details"]] == ["0002"]
    assert statement.balance_difference == 0


def test_details_can_be_booked_instead_of_their_total():
    result = parse_file(sample("pycoda_Coda_v2_3_globalisation.cod"),
                        options={"coda_book_details": True})
    statement = result.statements[0]
    assert [t.raw["detail"] for t in statement.transactions] == ["0000", "0000", "0002",
                                                                "0000"]
    assert statement.balance_difference == 0                       # never total AND details
    single = parse_file(sample("pycoda_Coda_v2_3_single_statement.cod"),
                        options={"coda_book_details": True})
    assert len(single.transactions) > 17
    assert single.statements[0].balance_difference == 0


def test_globalisation_opened_but_never_closed_is_treated_as_normal():
    result = parse_file(sample("pycoda_Coda_v2_3_faulty_globalisation.cod"))
    assert len(result.transactions) == 11
    assert "coda_unclosed_globalisation" in result.warning_codes()
    assert result.statements[0].balance_difference == 0


def test_several_statements_in_one_file():
    result = parse_file(sample("oca7_Coda_iban_v2_3_multi_statements.cod"))
    first, second = result.statements
    assert first.closing_balance == second.opening_balance == Decimal("39575.69")
    assert [first.statement_id, second.statement_id] == ["2014/036", "2014/037"]
    assert first.transactions[0].external_id != second.transactions[0].external_id


# ---------------------------------------------------------------------------- communications
def test_structured_communication_is_the_ogm():
    txn = parse_file(sample("oca_Ontvangen_CODA.2012-01-11-18.59.15.cod")).transactions[1]
    assert txn.structured_reference == "+++240/2838/42818+++"
    assert txn.description == "+++240/2838/42818+++"
    assert txn.counterparty_name == "PARTNER 2"
    assert txn.counterparty_iban == "BE61310126985517"
    assert txn.counterparty_bic == "BBRUBEBB"
    assert "MOLENSTRAAT 60" in txn.raw["narration"]               # information records 3.x


def test_ogm_check_digits():
    assert format_ogm("240283842818") == ("+++240/2838/42818+++", True)
    assert format_ogm("240283842819")[1] is False
    assert format_ogm("000000009797")[1] is True                    # 0 mod 97 -> 97


def test_free_communication_spread_over_records_and_references():
    txn = parse_file(sample("oca7_Coda_iban_v2_3_multi_statements.cod")).transactions[0]
    assert txn.amount == Decimal("-122.40")
    assert txn.description == "PREVENTION ET PROTECTION"
    assert txn.end_to_end_id == "201403281819027994ISABEL"
    assert txn.counterparty_name == "VZW SOCIAAL SECRET.SECUREX"
    assert txn.booking_date == date(2014, 3, 29) and txn.value_date == date(2014, 3, 29)
    assert txn.bank_transaction_code == "00101000"


# --------------------------------------------------------------------------- record handling
def test_crlf_and_trimmed_trailing_spaces_are_tolerated():
    content = sample("tryton_account_statement_coda_CODA.cod")
    trimmed = b"\r\n".join(line.rstrip() for line in content.splitlines())
    result = parse_file(trimmed, "coda.txt")
    assert result.format == "coda" and result.transactions[0].amount == Decimal("100.00")


def test_bad_ogm_is_a_warning():
    good = _coda(_r21("0001", "0000", "0", "000000000100000", "1101240283842818"))
    bad = _coda(_r21("0001", "0000", "0", "000000000100000", "1101240283842819"))
    assert "coda_bad_ogm" not in parse_file(good).warning_codes()
    assert "coda_bad_ogm" in parse_file(bad).warning_codes()


def test_old_belgian_account_number_is_turned_into_an_iban():
    assert bban_to_iban("435000000080") == "BE47435000000080"
    assert bban_to_iban("12345") is None
    content = _coda(_r21("0001", "0000", "1", "000000000050000", "0COFFEE"), structure="0")
    statement = parse_file(content).statements[0]
    assert statement.raw["bban"] == "539007547034"
    assert statement.account_number == "BE68539007547034"
    assert statement.transactions[0].amount == Decimal("-50.00")


def test_trailer_totals_and_counts_are_checked():
    content = _coda(_r21("0001", "0000", "0", "000000000100000", "0HELLO"),
                    trailer_credit="000000000200000", trailer_count="000009")
    result = parse_file(content)
    assert {"coda_trailer_sums", "coda_trailer_count"} <= set(result.warning_codes())
    ok = parse_file(_coda(_r21("0001", "0000", "0", "000000000100000", "0HELLO")))
    assert not {"coda_trailer_sums", "coda_trailer_count"} & set(ok.warning_codes())


@pytest.mark.parametrize("version", ["1", " "])
def test_other_versions_are_refused(version):
    content = _coda(_r21("0001", "0000", "0", "000000000100000", "0HELLO"))
    content = content[:127] + version.encode() + content[128:]
    with pytest.raises(StatementFileError) as error:
        parse_file(content, "x.cod")
    assert error.value.code == "coda_bad_version"


def test_broken_records_are_reported_with_their_line():
    content = _coda(_r21("0001", "0000", "0", "0000000001000X0", "0HELLO"))
    with pytest.raises(StatementFileError) as error:
        parse_file(content)
    assert error.value.code == "coda_bad_amount" and "Line 3" in str(error.value)
    with pytest.raises(StatementFileError) as error:
        parse_file(b"1" + _coda(_r21("0001", "0000", "0", "000000000100000", "0A"))[1:],
                   "x.cod")
    assert error.value.code == "coda_no_header"


# ------------------------------------------------------------------------------ builders
def _rec(*parts):
    line = "".join(parts)
    assert len(line) <= 128, len(line)
    return line.ljust(128)


def _r21(seq, detail, sign, amount, communication):
    """Record 2.1: communication = type flag (pos 62) + text (63-115)."""
    return _rec("21", seq, detail, "REF".ljust(21), sign, amount, "010324", "00150000",
                communication.ljust(54)[:54], "010324", "001", "0", "0", " ", "0")


def _coda(*movements, structure="2", trailer_credit=None, trailer_count=None):
    header = ("00000" + "010324" + "000" + "05" + " " + " " * 7 + "REF1234567"
              + "COMPANY".ljust(26) + "GEBABEBB".ljust(11) + "00000000000" + " " + "00000"
              ).ljust(127) + "2"
    if structure == "0":
        account = "539007547034 EUR".ljust(37)
    else:
        account = "BE68539007547034".ljust(34) + "EUR"
    old = _rec("1", structure, "001", account, "0", "000000001000000", "290224",
               "COMPANY".ljust(26), "CURRENT".ljust(35), "001")
    amounts = [(m[31], int(m[32:47]) if m[32:47].isdigit() else 0) for m in movements]
    total = sum(a if s == "0" else -a for s, a in amounts)
    debit = sum(a for s, a in amounts if s == "1")
    credit = sum(a for s, a in amounts if s == "0")
    closing = 1000000 + total
    new = _rec("8", "001", account, "0" if closing >= 0 else "1",
               f"{abs(closing):015d}", "010324")
    count = trailer_count or f"{len(movements) + 2:06d}"
    trailer = _rec("9", " " * 15, count, f"{debit:015d}", trailer_credit or f"{credit:015d}")
    trailer = trailer[:127] + "2"
    return "\r\n".join([header, old, *movements, new, trailer]).encode("latin-1")
