# Run by bench/run.sh inside `odoo shell`. Everything is rolled back at the end.
#
# For each size N: the Sandbox Bank serves about N booked EUR transactions over its 90 days;
#  - baseline: Odoo's bare batch `account.bank.statement.line.create()` of the same N lines;
#  - ours: the module's first synchronization of that account (HTTP fetch, dedup, creation,
#    statements) into another fresh journal;
#  - no-op: a second synchronization of the same window (creates nothing).
import os
import time
from datetime import date, timedelta
from functools import partial
from urllib.parse import parse_qs, urlsplit

import requests

from odoo.addons.account_online_synchronization.services import sync as sync_planning
from odoo.addons.account_online_synchronization.services.proxy import ProxyClient
from odoo.addons.account_online_synchronization.simulators.sandbox_bank import SandboxBankServer

env = env(user=env.ref("base.user_admin"))  # noqa: F821 (odoo shell)
sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "5000 20000").split()]
report = ["# Import benchmark", "",
          f"Odoo 18.0 Community, PostgreSQL, one process, {date.today()}.", "",
          "| transactions | Odoo bare create() | module first sync | ratio | no-op resync |",
          "|---:|---:|---:|---:|---:|"]


def fresh_journal(name):
    return env["account.journal"].create({"name": name, "type": "bank"})


with SandboxBankServer() as bank:
    for size in sizes:
        env["ir.config_parameter"].sudo().set_param("web.base.url", "http://localhost:8069")
        env["account.online.provider"]._for_company("sandbox", env.company).base_url = bank.url
        bank.reset()
        bank.configure(txns_per_day={"EUR": max(1, round(size / 90)), "USD": 1})
        # Connect through the real consent flow (browser part done with requests).
        wizard = env["account.online.connect.wizard"].create({"security_contact": "it@example.com"})
        url = wizard.institution_ids.filtered(lambda i: i.identifier == "SANDBOX_BANK").action_connect()["url"]
        form = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        answer = requests.post(f"{bank.url}/consent/decision", data=dict(form, decision="approve"),
                               allow_redirects=False, timeout=10)
        callback = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
        link, _journal = env["account.online.consent.request"]._complete(callback)
        account = link.account_online_account_ids.filtered(lambda a: a.currency_id.name == "EUR")

        # Baseline: the same lines, built from the same fetched transactions, bare create().
        client = link._proxy_client()
        page = client.transactions(link._consent(), account.online_identifier,
                                   date.today() - timedelta(days=90), date.today())
        booked = [t for t in page.added if t.status.value == "booked"]
        identifier = partial(sync_planning.transaction_identifier, account_key=account.stable_key)
        base_journal = fresh_journal(f"Baseline {size}")
        vals = [base_journal._online_sync_line_values(account, t, identifier) for t in booked]
        for v in vals:
            v.pop("online_account_id")
        env.flush_all()
        started = time.perf_counter()
        env["account.bank.statement.line"].sudo().create(vals)
        env.flush_all()
        baseline = time.perf_counter() - started

        # Ours: first synchronization into a fresh journal.
        journal = fresh_journal(f"Synced {size}")
        journal.account_online_account_id = account
        env.flush_all()
        started = time.perf_counter()
        result = link._synchronize(trigger="manual", accounts=account)
        env.flush_all()
        ours = time.perf_counter() - started
        created = result.created

        started = time.perf_counter()
        again = link._synchronize(trigger="manual", accounts=account)
        env.flush_all()
        noop = time.perf_counter() - started
        assert again.created == 0, again.created

        report.append(
            f"| {created:,} | {len(vals) / baseline:,.1f} lines/s ({baseline:,.1f} s) "
            f"| {created / ours:,.1f} lines/s ({ours:,.1f} s) | {baseline / ours:.2f}× "
            f"| {noop:,.2f} s |")
        print(report[-1], flush=True)
        env.cr.rollback()
report += ["", "ratio = baseline time / module time (above 1: the module is faster than bare create())."]
with open(os.environ["BENCH_REPORT"], "w") as handle:
    handle.write("\n".join(report) + "\n")
