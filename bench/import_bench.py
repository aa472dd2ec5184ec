# Run by bench/run.sh inside `odoo shell`. Every size runs in its own transaction, rolled back.
#
# For each size N (BENCH_SIZES):
#  - naive: Odoo's batch `account.bank.statement.line.create()` of N synthetic bank lines
#    (sizes above BENCH_NAIVE_MAX are skipped: 20,000 lines take a quarter of an hour);
#  - ours: the module's import path (`journal._bank_import_create_lines`) of the same values
#    into another fresh journal, and its peak Python memory (tracemalloc);
#  - re-sync: the same N transactions offered again through the identity check
#    (`journal._bank_import_plan`), which must find them all, with its SQL query count.
# Then, for the largest size, a real first synchronization from the Sandbox Bank (HTTP fetch,
# identity, creation, statements) and a no-op re-synchronization.
# Writes BENCH_REPORT (markdown) and PNG plots beside it.
import json
import os
import time
import tracemalloc
from datetime import date, timedelta
from decimal import Decimal
from functools import partial

from odoo.addons.account_online_synchronization.services import sync as sync_planning
from odoo.addons.account_online_synchronization.services.types import Transaction, TxnStatus

env = env(su=True, context={"tracking_disable": True})  # noqa: F821 (odoo shell)
sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "1000 5000 20000").split()]
naive_max = int(os.environ.get("BENCH_NAIVE_MAX", "20000"))
report_path = os.environ["BENCH_REPORT"]
results = []


def transactions(size):
    """``size`` booked transactions spread over 90 days, in and out, some with counterparties."""
    today = date.today()
    return [Transaction(
        provider="bench", account_external_id="acc", external_id=f"T{n:07d}", id_is_synthetic=False,
        alt_ids={}, status=TxnStatus.BOOKED,
        amount=Decimal((n * 7919) % 90000 - 30000) / 100 or Decimal("1.00"), currency="EUR",
        booking_date=today - timedelta(days=90 - (n * 90) // size), value_date=None,
        transaction_date=None, description=f"Card payment {n}", structured_reference=None,
        counterparty_name=f"Shop {n % 97}" if n % 3 else None,
        counterparty_iban=f"BE68539007547{n % 1000:03d}" if n % 3 else None)
        for n in range(size)]


def fresh_journal(code):
    return env["account.journal"].create({"name": f"Bench {code}", "code": code, "type": "bank"})


def count_queries(function):
    before = env.cr.sql_log_count
    value = function()
    return value, env.cr.sql_log_count - before


for size in sizes:
    txns = transactions(size)
    identifier = partial(sync_planning.transaction_identifier, account_key="BENCH")
    row = {"size": size}
    online_account = env["account.online.account"]
    if size <= naive_max:
        journal = fresh_journal("NAIV")
        vals = sorted((journal._online_sync_line_values(online_account, t, identifier) for t in txns),
                      key=lambda v: str(v["date"]))
        env.flush_all()
        started = time.perf_counter()
        env["account.bank.statement.line"].create(vals)
        env.flush_all()
        row["naive_s"] = time.perf_counter() - started
        env.cr.rollback()
        env.invalidate_all()
    journal = fresh_journal("OURS")
    vals = [journal._online_sync_line_values(online_account, t, identifier) for t in txns]
    env.flush_all()
    tracemalloc.start()
    started = time.perf_counter()
    journal._bank_import_create_lines(vals)
    env.flush_all()
    row["ours_s"] = time.perf_counter() - started
    row["ours_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    env.invalidate_all()
    started = time.perf_counter()
    plan, queries = count_queries(lambda: journal._bank_import_plan(txns, identifier))
    row["resync_s"] = time.perf_counter() - started
    row["resync_queries"] = queries
    assert not plan.new, f"re-sync found {len(plan.new)} new transactions"
    results.append(row)
    print(json.dumps(row), flush=True)
    env.cr.rollback()
    env.invalidate_all()

# A real first synchronization from the Sandbox Bank at the largest size, and a no-op re-sync.
sync_row = None
if os.environ.get("BENCH_SYNC", "1") == "1":
    from urllib.parse import parse_qs, urlsplit

    import requests

    from odoo.addons.account_online_synchronization.simulators.sandbox_bank import SandboxBankServer

    size = max(sizes)
    with SandboxBankServer() as bank:
        env["ir.config_parameter"].set_param("web.base.url", "http://localhost:8069")
        env["account.online.provider"]._for_company("sandbox", env.company).base_url = bank.url
        bank.configure(txns_per_day={"EUR": max(1, round(size / 90)), "USD": 1})
        wizard = env["account.online.connect.wizard"].create({"security_contact": "it@example.com"})
        url = wizard.institution_ids.filtered(
            lambda i: i.identifier == "SANDBOX_BANK").action_connect()["url"]
        form = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        answer = requests.post(f"{bank.url}/consent/decision", data=dict(form, decision="approve"),
                               allow_redirects=False, timeout=10)
        callback = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
        link, _journal = env["account.online.consent.request"]._complete(callback)
        account = link.account_online_account_ids.filtered(lambda a: a.currency_id.name == "EUR")
        journal = fresh_journal("SYNC")
        journal.account_online_account_id = account
        env.flush_all()
        started = time.perf_counter()
        # As the cron runs it (a user's Synchronize Now would hand the rest over after ~8 s).
        first = link._synchronize(trigger="cron", accounts=account)
        env.flush_all()
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again, queries = count_queries(lambda: link._synchronize(trigger="cron", accounts=account))
        env.flush_all()
        again_s = time.perf_counter() - started
        sync_row = {"created": first.created, "first_s": first_s, "again_s": again_s,
                    "again_created": again.created, "again_queries": queries,
                    "fetched": again.per_account[account]["fetched"]}
        print(json.dumps(sync_row), flush=True)
        env.cr.rollback()

# ------------------------------------------------------------------------------ report
lines = ["# Import benchmark", "",
         f"Odoo 18.0 Community, PostgreSQL, one Odoo process, {date.today()}; synthetic booked "
         "bank lines over 90 days; every size in a fresh journal, rolled back afterwards.", "",
         "| lines | Odoo create() | ours | speed-up | ours peak Python memory | re-sync identity check | queries |",
         "|---:|---:|---:|---:|---:|---:|---:|"]
for row in results:
    naive = (f"{row['size'] / row['naive_s']:,.1f} lines/s ({row['naive_s']:,.1f} s)"
             if "naive_s" in row else "not run")
    ratio = f"{row['naive_s'] / row['ours_s']:,.1f}×" if "naive_s" in row else "–"
    lines.append(
        f"| {row['size']:,} | {naive} | {row['size'] / row['ours_s']:,.1f} lines/s "
        f"({row['ours_s']:,.1f} s) | {ratio} | {row['ours_peak_mib']:,.1f} MiB "
        f"| {row['size'] / row['resync_s']:,.0f} lines/s | {row['resync_queries']} |")
if len(results) > 1:
    first_rate = results[0]["size"] / results[0]["ours_s"]
    last_rate = results[-1]["size"] / results[-1]["ours_s"]
    lines += ["", f"Flatness: our rate at {results[-1]['size']:,} lines is "
              f"{last_rate / first_rate:.2f}× our rate at {results[0]['size']:,}."]
if sync_row:
    lines += ["", f"Sandbox Bank first synchronization (HTTP fetch, identity, creation, monthly "
              f"statements, balance checkpoint): {sync_row['created']:,} lines in "
              f"{sync_row['first_s']:,.1f} s ({sync_row['created'] / sync_row['first_s']:,.1f} "
              f"lines/s); re-synchronization of the same window: {sync_row['fetched']:,} "
              f"transactions fetched, {sync_row['again_created']} created, "
              f"{sync_row['again_s']:,.2f} s, {sync_row['again_queries']} SQL queries."]

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot([r["size"] for r in results], [r["size"] / r["ours_s"] for r in results], "o-",
              label="module import path")
    naive_rows = [r for r in results if "naive_s" in r]
    axis.plot([r["size"] for r in naive_rows], [r["size"] / r["naive_s"] for r in naive_rows],
              "s-", label="Odoo create()")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("lines imported")
    axis.set_ylabel("lines per second")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    plot = os.path.join(os.path.dirname(report_path), "bench-rate.png")
    figure.savefig(plot, dpi=110)
    lines += ["", f"![lines per second against lines imported]({os.path.basename(plot)})"]
except ImportError:
    lines += ["", "(matplotlib is not installed: no plot)"]
with open(report_path, "w") as handle:
    handle.write("\n".join(lines) + "\n")
