# Run by bench/run.sh inside `odoo shell`: the 12-hourly cron over many connections, sequential
# against parallel fetching, in the same run. Everything is rolled back at the end.
#
# BENCH_CONNECTIONS connections (2 accounts each) to the Sandbox Bank, every provider call
# answered after BENCH_LATENCY seconds (the simulator's delay fault). The journals first get
# the bank's history up to yesterday (not measured); then the bank's clock moves to today and
# each run imports one new day per account (what a real 12-hour cron does). Sequential: one
# fetch at a time (fetch_workers = 1); ours: a pool of BENCH_WORKERS threads, with the
# per-provider bound raised to it for this single local provider. The bank runs in a process
# of its own, as a real bank would: its work is not the Odoo worker's.
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import requests

from odoo import fields
from odoo.modules.module import get_module_path

env = env(su=True, context={"tracking_disable": True})  # noqa: F821 (odoo shell)
count = int(os.environ.get("BENCH_CONNECTIONS", "1000"))
latency = float(os.environ.get("BENCH_LATENCY", "0.2"))
workers = int(os.environ.get("BENCH_WORKERS", "16"))
report_path = os.environ["BENCH_REPORT"]
params = env["ir.config_parameter"]
Link = env["account.online.link"]


journal_numbers = iter(range(10**6))


class RemoteSandboxBank:
    """The Sandbox Bank in its own process (``python3 -m simulators.sandbox_bank``), driven
    through its admin API (``/_sim/...``, see simulators/sandbox_bank/README.md)."""

    def __enter__(self):
        self._process = subprocess.Popen(
            [sys.executable, "-m", "simulators.sandbox_bank", "--port", "0"],
            cwd=get_module_path("account_online_synchronization"), stdout=subprocess.PIPE,
            text=True)
        first_line = self._process.stdout.readline()  # "Sandbox Bank listening on <url> (...)"
        self.url = first_line.split(" listening on ")[1].split()[0]
        return self

    def __exit__(self, *exc):
        self._process.terminate()
        self._process.wait(timeout=30)

    def _admin(self, method, path, body=None):
        answer = requests.request(method, f"{self.url}/_sim/{path}", json=body, timeout=30)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def configure(self, **config):
        self._admin("POST", "config", config)

    def set_today(self, day):
        self._admin("POST", "clock", {"today": day.isoformat()})

    def add_fault(self, kind, **options):
        self._admin("POST", "faults", dict(options, kind=kind))

    def stats(self):
        return self._admin("GET", "stats")


def connect(bank):
    wizard = env["account.online.connect.wizard"].create({"security_contact": "it@example.com"})
    url = wizard.institution_ids.filtered(lambda i: i.identifier == "SANDBOX_BANK").action_connect()["url"]
    form = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    answer = requests.post(f"{bank.url}/consent/decision", data=dict(form, decision="approve"),
                           allow_redirects=False, timeout=10)
    callback = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    link, _journal = env["account.online.consent.request"]._complete(callback)
    # Journals with codes of our own: Odoo numbers default bank journal codes up to 99 only.
    for account in link.account_online_account_ids:
        journal = env["account.journal"].create({
            "name": f"{link.name} {account.name} {link.id}", "type": "bank",
            "code": "Z" + _base36(next(journal_numbers)),
            "currency_id": account.currency_id != env.company.currency_id and account.currency_id.id})
        journal.account_online_account_id = account
    return link


def _base36(number, width=4):
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = ""
    for _i in range(width):
        number, rest = divmod(number, 36)
        text = digits[rest] + text
    return text


def run_cron(fetch_workers, per_provider, keep=False):
    params.set_param("account_online_synchronization.fetch_workers", fetch_workers)
    params.set_param("account_online_synchronization.fetch_per_provider", per_provider)
    links.write({"next_sync": False})
    env.flush_all()
    before = bank.stats()["total"]
    lines_before = env["account.bank.statement.line"].search_count(
        [("journal_id", "in", links.journal_ids.ids)])
    started = time.perf_counter()
    # The cron commits after each connection, except under tests: so that both runs start from
    # the same state, they run as under tests (no commit) and are rolled back.
    threading.current_thread().testing = True
    with env.cr.savepoint(flush=True) as savepoint:
        Link._cron_synchronize()
        env.flush_all()
        elapsed = time.perf_counter() - started
        created = env["account.bank.statement.line"].search_count(
            [("journal_id", "in", links.journal_ids.ids)]) - lines_before
        if not keep:
            savepoint.rollback()
    threading.current_thread().testing = False
    env.invalidate_all()
    return elapsed, bank.stats()["total"] - before, created


with RemoteSandboxBank() as bank:
    params.set_param("web.base.url", "http://localhost:8069")
    env["account.online.provider"]._for_company("sandbox", env.company).base_url = bank.url
    bank.configure(txns_per_day={"EUR": 2, "USD": 1})
    started = time.perf_counter()
    links = Link.browse([connect(bank).id for _i in range(count)])
    connect_s = time.perf_counter() - started
    # Steady state: every journal holds the bank's history up to yesterday (synchronized
    # without latency, not measured); the bank's clock then moves to today, so each run below
    # fetches the usual overlap window and imports one new day per account.
    today = fields.Date.context_today(Link)
    bank.set_today(today - timedelta(days=1))
    run_cron(workers, workers, keep=True)
    bank.set_today(today)
    bank.add_fault("delay", seconds=latency, times=None)
    sequential = run_cron(1, 1)
    ours = run_cron(workers, workers)
    row = {"connections": count, "accounts": len(links.account_online_account_ids),
           "latency_s": latency, "workers": workers, "connect_s": connect_s,
           "sequential_s": sequential[0], "sequential_requests": sequential[1],
           "ours_s": ours[0], "ours_requests": ours[1], "lines": ours[2],
           "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(row), flush=True)
env.cr.rollback()

with open(report_path, "a") as handle:
    handle.write(
        "\n## Cron over many connections\n\n"
        f"{row['connections']:,} Sandbox Bank connections, {row['accounts']:,} accounts, every "
        f"provider call answered after {row['latency_s'] * 1000:.0f} ms; each account last "
        "synchronized yesterday (the journals hold the history up to yesterday; one new day of "
        "transactions per account).\n\n"
        "| run | provider calls | time | lines |\n|---|---:|---:|---:|\n"
        f"| sequential fetching (1 at a time) | {row['sequential_requests']:,} "
        f"| {row['sequential_s']:,.1f} s | {row['lines']:,} |\n"
        f"| parallel fetching ({row['workers']} threads) | {row['ours_requests']:,} "
        f"| {row['ours_s']:,.1f} s | {row['lines']:,} |\n\n"
        f"Parallel time / sequential time: {row['ours_s'] / row['sequential_s']:.3f} "
        f"(target ≤ 0.125). Both runs without the per-connection commit (see the script). "
        f"Process peak RSS: {row['max_rss_mib']:,.0f} MiB.\n")
