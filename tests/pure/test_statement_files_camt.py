"""services/statement_files/camt.py: conformance on the real CAMT.053 samples + pitfalls."""
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

NEGATIVE = {"camt053/genkgo_camt053.v2.wrong.xml": "no statement (no Stmt element)"}


def expected_entries(prefix):
    if not (SAMPLES / "expected.json").exists():
        return []
    return [e for e in json.loads((SAMPLES / "expected.json").read_text())
            if e["file"].startswith(prefix)]


def sample(name):
    return (SAMPLES / "camt053" / name).read_bytes()


# ------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("entry", expected_entries("camt053/"), ids=lambda e: e["file"])
def test_sample_matches_expected(entry):
    content = (SAMPLES / entry["file"]).read_bytes()
    if entry["file"] in NEGATIVE:
        with pytest.raises(StatementFileError) as error:
            parse_file(content, Path(entry["file"]).name)
        assert NEGATIVE[entry["file"]] in str(error.value)
        return
    result = parse_file(content, Path(entry["file"]).name)
    assert result.format == "camt053" and result.version == entry["format"]
    assert len(result.statements) == len(entry["statements"])
    for statement, want in zip(result.statements, entry["statements"]):
        assert statement.statement_id == want["id"]
        assert statement.account_number == want["account"]
        assert statement.raw["entries"] == want["entries"]
        assert len(statement.transactions) == want["txdtls"]          # batches split
        assert statement.opening_balance == Decimal(want["opening"])
        assert not statement.opening_balance_computed
        if want["closing"] is None:                  # not in the file: computed from the lines
            assert statement.closing_balance_computed
            assert statement.closing_balance == statement.opening_balance + statement.total
        else:
            assert statement.closing_balance == Decimal(want["closing"])
            assert not statement.closing_balance_computed
        assert sorted({b[0] for b in statement.raw["balances"]}) == want["balance_types"]
        # the lines add up, or a warning says they do not
        if statement.balance_difference:
            assert "balance_mismatch" in result.warning_codes()
        for txn in statement.transactions:
            assert txn.provider == "file" and txn.status == TxnStatus.BOOKED
            assert isinstance(txn.booking_date, date) and isinstance(txn.amount, Decimal)
            assert txn.currency == statement.currency
        ids = [t.external_id for t in statement.transactions]
        assert all(ids) and len(ids) == len(set(ids))
    if all(s.balance_difference in (None, 0) for s in result.statements):
        assert "balance_mismatch" not in result.warning_codes()


def test_sample_notes_on_reconciliation_are_reproduced():
    reconciles = ["genkgo_camt053.v2.multi.statement.xml", "kedder_ch-sps_camt053_v08.xml",
                  "oca_test-camt053-txdtls_v04.xml", "subite_be_account_statement_v02.xml",
                  "tryton_account_statement_sepa_camt.053.001.02.xml"]
    for name in reconciles:
        result = parse_file(sample(name))
        assert all(s.balance_difference == 0 for s in result.statements), name
        assert "balance_mismatch" not in result.warning_codes()
    for name in ["oca_test-camt053_v02.xml", "kedder_ch-postfinance_gcamp6_v02.xml"]:
        result = parse_file(sample(name))
        assert "balance_mismatch" in result.warning_codes(), name
    assert parse_file(sample("oca_test-camt053_v02.xml")).statements[0].total == Decimal("-12.99")


# ---------------------------------------------------------------------------------- batches
def test_batch_entry_is_split_into_its_transactions():
    result = parse_file(sample("oca_test-camt053_v02.xml"))
    assert [t.amount for t in result.transactions] == [
        Decimal("-754.25"), Decimal("-564.05"), Decimal("-100.00"), Decimal("1405.31")]
    batch = result.transactions[1:3]
    assert [t.end_to_end_id for t in batch] == ["TESTBANK/NL/20141229/01206408",
                                                "TESTBANK/NL/20141229/01206407"]
    assert [t.mandate_id for t in batch] == ["NL22ZZZ524885430000-C0125.1",
                                             "NL22ZZZ524885430000-C0125.2"]
    assert all(t.raw["reversal"] and t.raw["return_reason"] == "AC06" for t in batch)
    assert "Reversal" in batch[0].raw["narration"]
    last = result.transactions[3]
    assert last.counterparty_name == "3rd party Media"            # the debtor of a credit
    assert last.counterparty_iban == "NL69ABNA0522123643"
    assert last.bank_transaction_code == "PMNT-RCDT-ESCT"


def test_split_lines_get_ids_derived_from_the_entry_reference():
    result = parse_file(sample("oca_test-camt053-txdtls_v04.xml"))
    # both TxDtls carry the same AcctSvcrRef, so the entry's reference + position is used
    assert [t.external_id for t in result.transactions] == [
        "20170323001234567891234567891234/1", "20170323001234567891234567891234/2"]
    assert [t.amount for t in result.transactions] == [Decimal("2187.00"), Decimal("1296.00")]
    assert result.transactions[0].structured_reference == "302388292000011111111111111"
    assert result.transactions[0].counterparty_bic == "POFICHBEXXX"


def test_batch_is_not_split_when_details_do_not_add_up():
    content = sample("oca_test-camt053_v02.xml").replace(
        b'<Amt Ccy="EUR">100.00</Amt>', b'<Amt Ccy="EUR">99.00</Amt>')
    result = parse_file(content)
    assert [t.amount for t in result.transactions] == [
        Decimal("-754.25"), Decimal("-664.05"), Decimal("1405.31")]
    assert result.transactions[1].counterparty_name is None      # two TxDtls: no single party


# ---------------------------------------------------------------------------------- versions
def test_versions_03_04_08_read_the_same_as_02():
    lines = {}
    for name in ["genkgo_camt053.v2.minimal.xml", "genkgo_camt053.v3.xml",
                 "genkgo_camt053.v4.xml", "genkgo_camt053.v8.xml"]:
        txn = parse_file(sample(name)).transactions[0]
        lines[name] = (txn.amount, txn.value_date, txn.counterparty_name)
    assert set(lines.values()) == {(Decimal("8.85"), date(2015, 1, 2), "NAME NAME")}


def test_v08_status_choice_and_party_wrapper():
    result = parse_file(sample("genkgo_camt053.v8.xml"))
    txn = result.transactions[0]
    assert txn.external_id == "AAAASESS-FP-CN_98765/01" and not txn.id_is_synthetic
    assert txn.counterparty_name == "NAME NAME"                   # Dbtr/Pty/Nm
    assert txn.structured_reference == "4654654654654654"
    assert txn.end_to_end_id == "MUELL/FINP/RA12345"


def test_v07_style_party_in_a_v02_file():
    txn = parse_file(sample("tryton_account_statement_sepa_camt.053.001.02.xml")).transactions[0]
    assert txn.amount == Decimal("-100.00")
    assert txn.counterparty_name                                  # Cdtr/Pty/Nm read anyway
    assert txn.booking_date == date(2009, 4, 29) and txn.value_date == date(2009, 4, 25)


def test_other_account_id_and_balance_currencies():
    statement = parse_file(sample("kedder_ch-sps_camt053_v08.xml")).statements[0]
    assert statement.account_number == "0035-2915203-10-000" and statement.currency == "CHF"
    result = parse_file(sample("genkgo_camt053.v2.minimal.xml"))
    assert result.statements[0].currency == "EUR"
    assert result.statements[0].closing_balance == Decimal("-27.00")       # DBIT balance
    assert "camt_balance_currency" in result.warning_codes()


# ------------------------------------------------------------------------------------- dates
def test_utc_booking_datetime_becomes_the_local_date():
    result = parse_file(sample("oca_test-camt053-bookgdt-dttm_v02.xml"))
    assert b"2014-01-04T23:00:00.000Z" in sample("oca_test-camt053-bookgdt-dttm_v02.xml")
    assert result.transactions[0].booking_date == date(2014, 1, 5)      # Amsterdam time
    utc = parse_file(sample("oca_test-camt053-bookgdt-dttm_v02.xml"),
                     options={"timezone": "UTC"})
    assert utc.transactions[0].booking_date == date(2014, 1, 4)


def test_nine_fractional_digits_in_a_balance_date():
    statement = parse_file(sample("genkgo_camt53.only-Dt-with-DtTm.xml")).statements[0]
    assert statement.opening_date == date(2025, 7, 23)
    assert statement.opening_balance == Decimal("5442.09") and statement.currency == "RON"


def test_date_with_offset_and_missing_dates():
    content = _camt(_entry("10.00", "CRDT", dates="<BookgDt><Dt>2017-04-01+02:00</Dt></BookgDt>"),
                    _entry("5.00", "CRDT", dates=""))
    result = parse_file(content)
    assert result.transactions[0].booking_date == date(2017, 4, 1)
    assert result.transactions[1].booking_date == date(2024, 3, 31)     # statement ToDt
    assert "camt_no_date" in result.warning_codes()


# ---------------------------------------------------------------------------- special cases
def test_only_booked_entries_are_imported():
    content = _camt(_entry("10.00", "CRDT", status="<Sts><Cd>PDNG</Cd></Sts>"),
                    _entry("4.00", "DBIT", status="<Sts>INFO</Sts>"),
                    _entry("3.00", "DBIT", status=""))
    result = parse_file(content)
    assert [t.amount for t in result.transactions] == [Decimal("-3.00")]
    assert result.statements[0].raw["entries"] == 3
    assert result.warning_codes().count("camt_skipped_status") == 2


def test_missing_credit_debit_indicator_reads_as_credit_with_a_warning():
    result = parse_file(_camt(_entry("7.50", None)))
    assert result.transactions[0].amount == Decimal("7.50")
    assert "camt_missing_indicator" in result.warning_codes()


def test_balance_fallbacks_prcd_and_itbd():
    content = _camt(_entry("10.00", "CRDT"), balances=(("PRCD", "100.00", "CRDT"),
                                                        ("ITBD", "105.00", "CRDT"),
                                                        ("ITBD", "110.00", "CRDT")))
    statement = parse_file(content).statements[0]
    assert statement.opening_balance == Decimal("100.00")
    assert statement.closing_balance == Decimal("110.00")


def test_only_closing_balance_computes_the_opening():
    statement = parse_file(_camt(_entry("10.00", "DBIT"),
                                 balances=(("CLBD", "90.00", "CRDT"),))).statements[0]
    assert statement.opening_balance == Decimal("100.00") and statement.opening_balance_computed


def test_entry_without_details_uses_its_additional_information():
    content = _camt(_entry("12.00", "DBIT", extra="<AddtlNtryInf>CARD 1234 SHOP</AddtlNtryInf>"))
    assert parse_file(content).transactions[0].description == "CARD 1234 SHOP"


def test_other_camt_messages_are_refused_clearly():
    content = _camt(_entry("1.00", "CRDT")).replace(b"camt.053.001.02", b"camt.052.001.02") \
        .replace(b"BkToCstmrStmt", b"BkToCstmrAcctRpt").replace(b"<Stmt>", b"<Rpt>") \
        .replace(b"</Stmt>", b"</Rpt>")
    with pytest.raises(StatementFileError) as error:
        parse_file(content, "report.xml")
    assert error.value.code == "camt_not_statement"
    assert "camt.052" in str(error.value) and "camt.053" in str(error.value)


def test_invalid_xml_and_bad_amount():
    with pytest.raises(StatementFileError) as error:
        parse_file(_camt(_entry("1.00", "CRDT"))[:-30], "cut.xml")
    assert error.value.code == "camt_invalid_xml"
    with pytest.raises(StatementFileError) as error:
        parse_file(_camt(_entry("12,3.4", "CRDT")))
    assert "'12,3.4' is not a number" in str(error.value)


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    content = _camt(_entry("1.00", "CRDT", extra="<AddtlNtryInf>&xxe;</AddtlNtryInf>"))
    content = content.replace(b"<Document", b'<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file://'
                              + str(secret).encode() + b'">]><Document', 1)
    try:
        result = parse_file(content)
    except StatementFileError:
        return
    assert "TOPSECRET" not in result.transactions[0].description


def test_namespace_less_and_iso_prefixed_namespaces():
    for namespace in (b"", b' xmlns="ISO:camt.053.001.02"'):
        content = _camt(_entry("2.00", "CRDT")).replace(
            b' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"', namespace)
        assert parse_file(content, "x.xml").transactions[0].amount == Decimal("2.00")


@pytest.mark.parametrize("amount", ["NaN", "sNaN", "Infinity", "-Infinity", "1E+30",
                                    "1" * 40])
def test_non_finite_and_absurd_amounts_are_refused(amount):
    """Decimal() reads 'NaN', 'Infinity' and '1E+30'; rounding them (or comparing NaN) raised
    decimal.InvalidOperation, shown to the user as 'InvalidOperation: [<class ...>]'."""
    with pytest.raises(StatementFileError) as error:
        parse_file(_camt(_entry(amount, "CRDT")))
    assert error.value.code == "camt_bad_amount" and f"'{amount}' is not a number" in \
        str(error.value)
    with pytest.raises(StatementFileError) as error:        # in a balance too
        parse_file(_camt(_entry("1.00", "CRDT"), balances=(("OPBD", amount, "CRDT"),)))
    assert error.value.code == "camt_bad_amount"


def test_absurd_transaction_amount_detail_is_ignored():
    """An unusable TxDtls amount only prevents the split of a batch entry."""
    detail = ('<TxDtls><AmtDtls><TxAmt><Amt Ccy="EUR">NaN</Amt></TxAmt></AmtDtls></TxDtls>'
              '<TxDtls><AmtDtls><TxAmt><Amt Ccy="EUR">1.00</Amt></TxAmt></AmtDtls></TxDtls>')
    result = parse_file(_camt(_entry("2.00", "CRDT", extra=f"<NtryDtls>{detail}</NtryDtls>")))
    assert [t.amount for t in result.transactions] == [Decimal("2.00")]


def _entry(amount, indicator, status="<Sts>BOOK</Sts>",
           dates="<BookgDt><Dt>2024-03-30</Dt></BookgDt>", extra=""):
    indicator_xml = f"<CdtDbtInd>{indicator}</CdtDbtInd>" if indicator else ""
    return (f'<Ntry><Amt Ccy="EUR">{amount}</Amt>{indicator_xml}{status}{dates}'
            f"{extra}</Ntry>")


def _camt(*entries, balances=(("OPBD", "0", "CRDT"),)):
    bal = "".join(f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{amt}'
                  f"</Amt><CdtDbtInd>{ind}</CdtDbtInd><Dt><Dt>2024-03-31</Dt></Dt></Bal>"
                  for code, amt, ind in balances)
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
            "<GrpHdr><MsgId>M1</MsgId><CreDtTm>2024-04-01T08:00:00</CreDtTm></GrpHdr><Stmt>"
            "<Id>S1</Id><CreDtTm>2024-04-01T08:00:00</CreDtTm><FrToDt>"
            "<FrDtTm>2024-03-01T00:00:00</FrDtTm><ToDtTm>2024-03-31T23:59:59</ToDtTm></FrToDt>"
            "<Acct><Id><IBAN>BE71096123456769</IBAN></Id><Ccy>EUR</Ccy></Acct>"
            + bal + "".join(entries) + "</Stmt></BkToCstmrStmt></Document>").encode("utf-8")
