#!/usr/bin/env python3
"""Benchmark (not a test) of the statement file parsers on large files.

Writes a ~10 MB CAMT.053 file and a ~10 MB OFX file (well-formed and realistic, generated
from a fixed seed, so every run parses the same bytes) into a temporary folder, parses each
with ``services.statement_files.parse_file`` and reports:

* parse time, best of 3 (wall clock, file already in memory);
* transactions (statement lines) per second and MB per second;
* peak Python allocation during one parse (``tracemalloc``);
* growth of the process's maximum resident set size during one parse, measured in a fresh
  child process (the high-water mark of a process that did nothing else).

Usage, from the repository root:

    python3 bench/statement_files_bench.py [--size-mb 10] [--repeat 3] [--keep]

The markdown table is printed and written to .build/statement-files-bench.md.
"""
import argparse
import gc
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.statement_files import parse_file  # noqa: E402

REPORT = REPO / ".build" / "statement-files-bench.md"
SEED = 20240101
START = date(2023, 1, 2)

COUNTERPARTIES = [
    ("Acme Supplies NV", "BE68539007547034", "GKCCBEBB"),
    ("Brasserie du Parc SPRL", "BE62510007547061", "GEBABEBB"),
    ("Stadtwerke München GmbH", "DE89370400440532013000", "COBADEFFXXX"),
    ("Electricité de France SA", "FR1420041010050500013M02606", "PSSTFRPPXXX"),
    ("Jansen & Zonen B.V.", "NL91ABNA0417164300", "ABNANL2A"),
    ("Office Depot Belgium", "BE71096123456769", "GKCCBEBB"),
    ("Telenet Group BVBA", "BE43068999999501", "GKCCBEBB"),
    ("Hôtel de la Gare", "LU280019400644750000", "BCEELULL"),
    ("Müller Logistik AG", "CH9300762011623852957", "UBSWCHZH80A"),
    ("Coffee & Co Ltd", "GB29NWBK60161331926819", "NWBKGB2L"),
]
WORDS = ("invoice", "order", "rent", "salary", "refund", "subscription", "fuel", "lunch",
         "licence", "maintenance", "deposit", "transport", "consulting", "insurance")


def _amount(rnd, low=1, high=25000):
    """A realistic amount: many small ones, a few large ones (2 decimals)."""
    value = Decimal(str(round(rnd.lognormvariate(4.5, 1.4), 2)))
    return min(max(value, Decimal(low)), Decimal(high)).quantize(Decimal("0.01"))


def _text(rnd):
    return f"{rnd.choice(WORDS).title()} {rnd.randint(1000, 99999)} " \
           f"{rnd.choice(WORDS)} {rnd.choice(WORDS)}"


# ------------------------------------------------------------------------------ CAMT.053
def camt053(target_bytes, seed=SEED):
    """(bytes, booked statement lines) of a camt.053.001.08 message holding one statement
    per business day, each with OPBD/CLBD balances and entries (10% batch bookings with
    several TxDtls, which the parser splits into one line each)."""
    rnd = random.Random(seed)
    iban = "BE71096123456769"
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n<BkToCstmrStmt>\n'
            "  <GrpHdr>\n    <MsgId>BENCH-CAMT-0001</MsgId>\n"
            "    <CreDtTm>2024-01-01T06:00:00+01:00</CreDtTm>\n"
            "    <MsgPgntn><PgNb>1</PgNb><LastPgInd>true</LastPgInd></MsgPgntn>\n"
            "  </GrpHdr>\n")
    tail = "</BkToCstmrStmt>\n</Document>\n"
    parts, size, lines = [head], len(head) + len(tail), 0
    balance = Decimal("25000.00")
    day, number, entry_number = START, 0, 0
    while size < target_bytes:
        if day.weekday() >= 5:
            day += timedelta(days=1)
            continue
        number += 1
        entries, total = [], Decimal(0)
        for _ in range(rnd.randint(20, 40)):
            entry_number += 1
            entry, amount, count = _camt_entry(rnd, day, entry_number)
            entries.append(entry)
            total += amount
            lines += count
        closing = balance + total
        statement = (
            f"  <Stmt>\n    <Id>STMT-{day:%Y%m%d}-{number}</Id>\n"
            f"    <ElctrncSeqNb>{number}</ElctrncSeqNb>\n"
            f"    <CreDtTm>{day.isoformat()}T23:00:00+01:00</CreDtTm>\n"
            f"    <FrToDt><FrDtTm>{day.isoformat()}T00:00:00+01:00</FrDtTm>"
            f"<ToDtTm>{day.isoformat()}T23:59:59+01:00</ToDtTm></FrToDt>\n"
            f"    <Acct>\n      <Id><IBAN>{iban}</IBAN></Id>\n      <Ccy>EUR</Ccy>\n"
            "      <Ownr><Nm>Bench Company SA</Nm></Ownr>\n"
            "      <Svcr><FinInstnId><BICFI>GKCCBEBB</BICFI></FinInstnId></Svcr>\n"
            "    </Acct>\n"
            + _camt_balance("OPBD", balance, day - timedelta(days=1))
            + _camt_balance("CLBD", closing, day)
            + f"    <TxsSummry><TtlNtries><NbOfNtries>{len(entries)}</NbOfNtries>"
            "</TtlNtries></TxsSummry>\n"
            + "".join(entries) + "  </Stmt>\n")
        parts.append(statement)
        size += len(statement.encode("utf-8"))
        balance = closing
        day += timedelta(days=1)
    parts.append(tail)
    return "".join(parts).encode("utf-8"), lines


def _camt_balance(code, amount, day):
    return (f"    <Bal>\n      <Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>\n"
            f'      <Amt Ccy="EUR">{abs(amount)}</Amt>\n'
            f"      <CdtDbtInd>{'DBIT' if amount < 0 else 'CRDT'}</CdtDbtInd>\n"
            f"      <Dt><Dt>{day.isoformat()}</Dt></Dt>\n    </Bal>\n")


def _camt_entry(rnd, day, number):
    """(xml, signed amount, statement lines) of one booked entry."""
    credit = rnd.random() < 0.4
    batch = rnd.random() < 0.1
    details = [_amount(rnd, high=5000) for _ in range(rnd.randint(2, 6))] if batch else \
        [_amount(rnd)]
    amount = sum(details, Decimal(0))
    indicator = "CRDT" if credit else "DBIT"
    side, other = ("Dbtr", "Cdtr") if credit else ("Cdtr", "Dbtr")
    value_day = day + timedelta(days=rnd.choice((0, 0, 0, 1, 2)))
    tx_parts = []
    for i, detail in enumerate(details, start=1):
        name, iban, bic = rnd.choice(COUNTERPARTIES)
        reference = f"RF{rnd.randint(10, 99)}{rnd.randint(10 ** 9, 10 ** 10 - 1)}"
        remittance = (f"<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp>"
                      f"<Ref>{reference}</Ref></CdtrRefInf></Strd>"
                      if rnd.random() < 0.3 else f"<Ustrd>{escape(_text(rnd))}</Ustrd>")
        tx_parts.append(
            "        <TxDtls>\n"
            f"          <Refs><AcctSvcrRef>{day:%Y%m%d}-{number:06d}-{i}</AcctSvcrRef>"
            f"<EndToEndId>E2E-{number:06d}-{i}</EndToEndId>"
            f"<TxId>TX-{number:06d}-{i}</TxId></Refs>\n"
            f'          <Amt Ccy="EUR">{detail}</Amt>\n'
            f"          <CdtDbtInd>{indicator}</CdtDbtInd>\n"
            f'          <AmtDtls><TxAmt><Amt Ccy="EUR">{detail}</Amt></TxAmt></AmtDtls>\n'
            "          <RltdPties>\n"
            f"            <{side}><Pty><Nm>{escape(name)}</Nm></Pty></{side}>\n"
            f"            <{side}Acct><Id><IBAN>{iban}</IBAN></Id></{side}Acct>\n"
            f"            <{other}><Pty><Nm>Bench Company SA</Nm></Pty></{other}>\n"
            "          </RltdPties>\n"
            f"          <RltdAgts><{side}Agt><FinInstnId><BICFI>{bic}</BICFI></FinInstnId>"
            f"</{side}Agt></RltdAgts>\n"
            f"          <RmtInf>{remittance}</RmtInf>\n"
            "        </TxDtls>\n")
    batch_xml = (f"        <Btch><NbOfTxs>{len(details)}</NbOfTxs>"
                 f'<TtlAmt Ccy="EUR">{amount}</TtlAmt></Btch>\n' if batch else "")
    family = ("RCDT", "ESCT") if credit else ("ICDT", "ESCT")
    xml = ("      <Ntry>\n"
           f"        <NtryRef>{number}</NtryRef>\n"
           f'        <Amt Ccy="EUR">{amount}</Amt>\n'
           f"        <CdtDbtInd>{indicator}</CdtDbtInd>\n"
           "        <Sts><Cd>BOOK</Cd></Sts>\n"
           f"        <BookgDt><Dt>{day.isoformat()}</Dt></BookgDt>\n"
           f"        <ValDt><Dt>{value_day.isoformat()}</Dt></ValDt>\n"
           f"        <AcctSvcrRef>{day:%Y%m%d}-{number:06d}</AcctSvcrRef>\n"
           f"        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>{family[0]}</Cd>"
           f"<SubFmlyCd>{family[1]}</SubFmlyCd></Fmly></Domn></BkTxCd>\n"
           "        <NtryDtls>\n" + batch_xml + "".join(tx_parts) + "        </NtryDtls>\n"
           f"        <AddtlNtryInf>{'SEPA batch' if batch else 'SEPA credit transfer'}"
           "</AddtlNtryInf>\n      </Ntry>\n")
    return xml, (amount if credit else -amount), (len(details) if batch else 1)


# ---------------------------------------------------------------------------------- OFX
def ofx(target_bytes, seed=SEED):
    """(bytes, statement lines) of an OFX 1.02 SGML bank statement (the most common export,
    cp1252) of one checking account, with a ledger and an available balance."""
    rnd = random.Random(seed)
    head = ("OFXHEADER:100\r\nDATA:OFXSGML\r\nVERSION:102\r\nSECURITY:NONE\r\n"
            "ENCODING:USASCII\r\nCHARSET:1252\r\nCOMPRESSION:NONE\r\nOLDFILEUID:NONE\r\n"
            "NEWFILEUID:NONE\r\n\r\n"
            "<OFX>\r\n<SIGNONMSGSRSV1>\r\n<SONRS>\r\n<STATUS>\r\n<CODE>0\r\n<SEVERITY>INFO\r\n"
            "</STATUS>\r\n<DTSERVER>20240101060000.000[+1:CET]\r\n<LANGUAGE>ENG\r\n"
            "<FI>\r\n<ORG>Bench Bank\r\n<FID>1234\r\n</FI>\r\n</SONRS>\r\n</SIGNONMSGSRSV1>\r\n"
            "<BANKMSGSRSV1>\r\n<STMTTRNRS>\r\n<TRNUID>1\r\n<STATUS>\r\n<CODE>0\r\n"
            "<SEVERITY>INFO\r\n</STATUS>\r\n<STMTRS>\r\n<CURDEF>USD\r\n<BANKACCTFROM>\r\n"
            "<BANKID>121000248\r\n<ACCTID>4412345678\r\n<ACCTTYPE>CHECKING\r\n"
            "</BANKACCTFROM>\r\n<BANKTRANLIST>\r\n"
            f"<DTSTART>{START:%Y%m%d}\r\n<DTEND>@END@\r\n")
    parts, size, lines = [], len(head) + 400, 0
    total, day, number = Decimal(0), START, 0
    while size < target_bytes:
        for _ in range(rnd.randint(10, 30)):
            number += 1
            credit = rnd.random() < 0.35
            amount = _amount(rnd) * (1 if credit else -1)
            total += amount
            name, _, _ = rnd.choice(COUNTERPARTIES)
            kind = "CREDIT" if credit else rnd.choice(("DEBIT", "POS", "CHECK", "PAYMENT"))
            hour = rnd.randint(0, 23)
            block = ("<STMTTRN>\r\n"
                     f"<TRNTYPE>{kind}\r\n"
                     f"<DTPOSTED>{day:%Y%m%d}{hour:02d}0000.000[-5:EST]\r\n"
                     f"<DTUSER>{day - timedelta(days=rnd.choice((0, 1, 2))):%Y%m%d}\r\n"
                     f"<TRNAMT>{amount}\r\n"
                     f"<FITID>{day:%Y%m%d}{number:08d}\r\n"
                     + (f"<CHECKNUM>{rnd.randint(1000, 9999)}\r\n" if kind == "CHECK" else "")
                     + f"<NAME>{name[:32].replace('&', '&amp;')}\r\n"
                     f"<MEMO>{_text(rnd)}\r\n"
                     "</STMTTRN>\r\n")
            parts.append(block)
            size += len(block)
            lines += 1
        day += timedelta(days=1)
    end = day - timedelta(days=1)
    ledger = Decimal("10000.00") + total
    tail = ("</BANKTRANLIST>\r\n"
            f"<LEDGERBAL>\r\n<BALAMT>{ledger}\r\n<DTASOF>{end:%Y%m%d}235959\r\n</LEDGERBAL>\r\n"
            f"<AVAILBAL>\r\n<BALAMT>{ledger - 150}\r\n<DTASOF>{end:%Y%m%d}235959\r\n"
            "</AVAILBAL>\r\n</STMTRS>\r\n</STMTTRNRS>\r\n</BANKMSGSRSV1>\r\n</OFX>\r\n")
    text = head.replace("@END@", f"{end:%Y%m%d}") + "".join(parts) + tail
    return text.encode("cp1252"), lines


GENERATORS = {"camt053": ("statement.xml", camt053), "ofx": ("statement.ofx", ofx)}


# --------------------------------------------------------------------------- measurements
def _maxrss_bytes():
    """The process's maximum resident set size so far. On Linux, VmHWM of /proc: getrusage's
    ru_maxrss survives fork + exec, so a child would start with its parent's maximum."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024     # Linux reports KiB


def _child_rss(path, filename):
    """Run in a fresh process: max RSS growth (bytes) while parsing the file once."""
    content = Path(path).read_bytes()
    gc.collect()
    before = _maxrss_bytes()
    result = parse_file(content, filename)
    after = _maxrss_bytes()
    print(json.dumps({"rss_delta": after - before, "lines": len(result.transactions)}))


def measure(path, filename, expected_lines, repeat):
    content = Path(path).read_bytes()
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = parse_file(content, filename)
        times.append(time.perf_counter() - started)
        lines = len(result.transactions)
        if lines != expected_lines:
            raise SystemExit(f"{filename}: parsed {lines} lines, generated {expected_lines}")
        del result
    gc.collect()
    tracemalloc.start()
    result = parse_file(content, filename)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    warnings = result.warning_codes()
    del result
    child = subprocess.run(
        [sys.executable, __file__, "--child-rss", str(path), filename],
        check=True, capture_output=True, text=True, cwd=REPO)
    rss = json.loads(child.stdout.strip().splitlines()[-1])
    return {"size": len(content), "lines": expected_lines, "best": min(times), "times": times,
            "tracemalloc_peak": peak, "rss_delta": rss["rss_delta"], "warnings": warnings}


def _mb(value):
    return f"{value / 1024 / 1024:.1f} MiB"


def report(rows, repeat):
    import lxml.etree
    import ofxparse

    lines = [
        "# Statement file parsing benchmark", "",
        f"`python3 bench/statement_files_bench.py` on {datetime.now():%Y-%m-%d %H:%M}: "
        f"Python {platform.python_version()}, lxml {lxml.etree.__version__}, "
        f"ofxparse {getattr(ofxparse, '__version__', '?')}, {os.cpu_count()} CPU(s), "
        f"{platform.machine()} {platform.system()}. Files generated from seed {SEED} "
        "(same bytes every run); time = wall clock of `parse_file(bytes, name)`, best of "
        f"{repeat}; peaks measured on one more parse.", "",
        "| format | file size | statement lines | parse time (best of %d) | lines/s | MB/s "
        "| tracemalloc peak | max RSS delta |" % repeat,
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {_mb(row['size'])} | {row['lines']:,} | {row['best']:.2f} s "
            f"| {row['lines'] / row['best']:,.0f} | {row['size'] / 1e6 / row['best']:.2f} "
            f"| {_mb(row['tracemalloc_peak'])} | {_mb(row['rss_delta'])} |")
    lines += ["", "All runs: " + "; ".join(
        f"{name} " + ", ".join(f"{t:.2f} s" for t in row["times"]) for name, row in rows.items()),
        "Warnings: " + "; ".join(f"{name} {sorted(set(row['warnings'])) or 'none'}"
                                 for name, row in rows.items()), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--child-rss", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss:
        return _child_rss(*args.child_rss)
    folder = Path(tempfile.mkdtemp(prefix="statement-files-bench-"))
    rows = {}
    try:
        for name, (filename, generate) in GENERATORS.items():
            content, expected = generate(int(args.size_mb * 1024 * 1024))
            path = folder / filename
            path.write_bytes(content)
            del content
            print(f"{name}: {path} ({_mb(path.stat().st_size)}, {expected:,} lines)",
                  file=sys.stderr, flush=True)
            rows[name] = measure(path, filename, expected, args.repeat)
    finally:
        if args.keep:
            print(f"files kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    text = report(rows, args.repeat)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
