"""Every provider × every fault knob, through the real adapters to their simulators.

After the fault and the recovery a user would do (nothing, Synchronize Now, or Reconnect), each
journal must hold exactly the bank's booked transactions: none lost, none duplicated.
"""
from datetime import timedelta
from decimal import Decimal

from odoo.tests import tagged

from ..simulators import catalog
from .common import OnlineSyncCase

HISTORY_DAYS = 20
FAULTS = ("delay", "timeout", "http_500", "rate_limit", "malformed_json", "consent_expired",
          "user_must_be_present")


def _amount(raw):
    """The absolute amount, in the account's currency, of a raw transaction of any provider."""
    if isinstance(raw.get("attributes"), dict):  # Ponto: a JSON:API resource
        raw = raw["attributes"]
    value = raw.get("transactionAmount", raw.get("transaction_amount", raw.get("amount")))
    if isinstance(value, dict):  # Yodlee: {amount, currency, convertedAmount, convertedCurrency}
        value = value.get("convertedAmount", value.get("amount"))
    return abs(Decimal(str(value)))


# What differs per provider in this test; servers and settings come from simulators.catalog.
PROVIDERS = {
    "sandbox": {"country": "base.be", "txns_per_day": {"EUR": 1, "USD": 1},
                "account_key": "stable_key",
                "history_days": 90},  # the bank refuses a window older than its documented 90 days
    "gocardless": {"country": "base.be", "txns_per_day": {"EUR": 1, "GBP": 1},
                   "account_key": "online_identifier"},
    "plaid": {"country": "base.us", "txns_per_day": {"EUR": 1, "GBP": 1, "USD": 1},
              "account_key": "online_identifier"},
    "yodlee": {"country": "base.be", "txns_per_day": {"EUR": 1, "USD": 1, "GBP": 1},
               "account_key": "online_identifier"},
    "ponto": {"country": None, "txns_per_day": None, "account_key": "online_identifier"},
    "saltedge": {"country": "base.be", "txns_per_day": None, "account_key": "online_identifier"},
    "enablebanking": {"country": "base.be", "txns_per_day": None,
                      "account_key": "online_identifier"},
}


@tagged("post_install", "-at_install")
class TestProvidersUnderFaults(OnlineSyncCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["ir.config_parameter"].sudo().set_param(
            "account_online_synchronization.max_retries", "1")
        cls.servers = {}
        for code in PROVIDERS:
            if code == "sandbox":
                cls.servers[code] = cls.bank
                continue
            server, values = catalog.start(code)
            cls.addClassCleanup(server.stop)
            cls.servers[code] = server
            cls.env["account.online.provider"].create(dict(
                values, name=code, code=code, company_id=cls.company.id))

    def _connect_through(self, code):
        spec = PROVIDERS[code]
        wizard = self.env["account.online.connect.wizard"].create({
            "security_contact": "it@example.com",
            "country_id": spec["country"] and self.env.ref(spec["country"]).id})
        line = wizard.institution_ids.filtered(
            lambda l: code in l.provider_ids.mapped("code") and not l.beta)[:1]
        self.assertTrue(line, f"{code} offers a bank")
        line.provider_id = line.provider_ids.filtered(lambda p: p.code == code)
        url = line.action_connect()["url"]
        self.assertTrue(url.startswith(("http://127.0.0.1", "https://127.0.0.1")), url)
        link, _journal = self.env["account.online.consent.request"]._complete(
            catalog.SIMULATE_USER[code](url))
        selection = self.env["account.online.account.selection"].create({"link_id": link.id})
        for selection_line in selection.line_ids:
            selection_line._link_journal()
        self.assertEqual(link.provider_code, code)
        return link

    def _reconnect(self, code, link):
        params = catalog.SIMULATE_USER[code](link.action_reconnect()["url"])
        renewed, _journal = self.env["account.online.consent.request"]._complete(params)
        self.assertEqual(renewed, link)

    def _assert_journals_hold_the_banks_booked_transactions(self, code, link, fault):
        spec, server = PROVIDERS[code], self.servers[code]
        for account in link.account_online_account_ids:
            lines = self.env["account.bank.statement.line"].search([
                ("journal_id", "=", account.journal_id.id),
                ("online_transaction_identifier", "!=", False)])
            booked = server.expected_booked(account[spec["account_key"]],
                                            server.today - timedelta(days=800),
                                            server.today)
            label = f"{code} / {fault} / {account.name}"
            self.assertEqual(len(lines), len(booked), label)
            self.assertEqual(len(set(lines.mapped("online_transaction_identifier"))), len(lines))
            self.assertEqual(sum(Decimal(str(abs(line.amount))) for line in lines),
                             sum(_amount(raw) for raw in booked), label)

    def _run_faults(self, code):
        server = self.servers[code]
        for fault in FAULTS:
            with self.subTest(provider=code, fault=fault):
                server.reset()
                server.configure(history_days=PROVIDERS[code].get("history_days", HISTORY_DAYS),
                                 txns_per_day=PROVIDERS[code]["txns_per_day"])
                link = self._connect_through(code)
                server.add_fault(fault, times=None, seconds=0.2 if fault == "delay" else (
                    5 if fault == "timeout" else 7200))
                if fault == "user_must_be_present":
                    self.env["account.online.link"]._cron_synchronize()
                else:
                    link.action_fetch_transactions()
                lines = self.env["account.bank.statement.line"].search_count(
                    [("journal_id", "in", link.journal_ids.ids),
                     ("online_transaction_identifier", "!=", False)])
                if fault != "delay":
                    self.assertEqual(lines, 0, f"{code} / {fault}: nothing imported half-way")
                    self.assertTrue(link.last_error_reference, f"{code} / {fault}")
                server.clear_faults()
                if link.state == "disconnected":
                    self._reconnect(code, link)
                link._synchronize(trigger="manual")
                self.assertIn(link.state, ("connected", "expiring"), f"{code} / {fault}")
                self._assert_journals_hold_the_banks_booked_transactions(code, link, fault)

    def test_sandbox(self):
        self._run_faults("sandbox")

    def test_gocardless(self):
        self._run_faults("gocardless")

    def test_plaid(self):
        self._run_faults("plaid")

    def test_plaid_withdrawn_transaction_leaves_the_journal(self):
        server = self.servers["plaid"]
        server.reset()
        server.configure(history_days=HISTORY_DAYS, txns_per_day=PROVIDERS["plaid"]["txns_per_day"])
        link = self._connect_through("plaid")
        link._synchronize(trigger="manual")
        account = link.account_online_account_ids[0]
        withdrawn = server.expected_booked(account.online_identifier, server.today - timedelta(
            days=HISTORY_DAYS), server.today)[-1]
        server.remove_transaction(withdrawn["transaction_id"])
        link._synchronize(trigger="manual")
        self._assert_journals_hold_the_banks_booked_transactions("plaid", link, "removed")
        self.assertFalse(self.env["account.bank.statement.line"].search([
            ("journal_id", "=", account.journal_id.id),
            ("online_transaction_identifier", "=like", f"%:{withdrawn['transaction_id']}")]))
        note = account.journal_id.message_ids.filtered(lambda m: "withdrew" in (m.body or ""))
        self.assertEqual(len(note), 1)
        self.assertIn(withdrawn["name"], note.body)

    def test_yodlee(self):
        self._run_faults("yodlee")

    def test_ponto(self):
        self._run_faults("ponto")

    def test_saltedge(self):
        self._run_faults("saltedge")

    def test_enablebanking(self):
        self._run_faults("enablebanking")
