"""Odoo test base: a real Sandbox Bank on 127.0.0.1 and the real consent flow to it."""
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import requests

from odoo.tests import TransactionCase
from odoo.tests.common import _super_send

from ..simulators.sandbox_bank import SandboxBankServer


class OnlineSyncCase(TransactionCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bank = SandboxBankServer().start()
        cls.addClassCleanup(cls.bank.stop)
        params = cls.env["ir.config_parameter"].sudo()
        params.set_param("account_online_synchronization.retry_backoff", "0.01")
        params.set_param("account_online_synchronization.request_timeout", "2")
        params.set_param("web.base.url", "http://localhost:8069")
        cls.company = cls.env.company
        cls._configure_sandbox(cls.company)

    @classmethod
    def _configure_sandbox(cls, company):
        provider = cls.env["account.online.provider"]._for_company("sandbox", company)
        provider.base_url = cls.bank.url

    @classmethod
    def _request_handler(cls, session, prepared, /, **kwargs):
        # Odoo's test harness stretches every timeout to 10 s; the simulators on 127.0.0.1 need
        # the adapter's own timeouts for the timeout tests to stay short.
        if urlsplit(prepared.url).hostname == "127.0.0.1":
            return _super_send(session, prepared, **kwargs)
        return super()._request_handler(session, prepared, **kwargs)

    def setUp(self):
        super().setUp()
        self.bank.reset()

    # ------------------------------------------------------------------ the real consent flow
    def _give_consent(self, institution="SANDBOX_BANK", decision="approve", company=None, env=None):
        """Add a Bank Account up to the callback: returns the callback's query parameters."""
        env = env or self.env
        company = company or self.company
        wizard = env["account.online.connect.wizard"].with_company(company).create(
            {"security_contact": "+32 2 123 45 67"})
        line = wizard.institution_ids.filtered(lambda i: i.identifier == institution)
        self.assertTrue(line, "the Sandbox Bank offers %s" % institution)
        action = line.with_company(company).action_connect()
        self.assertEqual(action["type"], "ir.actions.act_url")
        page = requests.get(action["url"], timeout=5)
        self.assertEqual(page.status_code, 200)
        self.assertIn("Allow access", page.text)
        form = {k: v[0] for k, v in parse_qs(urlsplit(action["url"]).query).items()}
        form["decision"] = decision
        answer = requests.post(f"{self.bank.url}/consent/decision", data=form,
                               allow_redirects=False, timeout=5)
        self.assertEqual(answer.status_code, 302)
        location = urlsplit(answer.headers["Location"])
        self.assertTrue(location.path.endswith("/account_online_synchronization/consent/callback"))
        return {k: v[0] for k, v in parse_qs(location.query).items()}

    def _connect(self, institution="SANDBOX_BANK", company=None, journal=None, sync=True):
        """Connect the Sandbox Bank, link every account to a journal, run the first sync."""
        company = company or self.company
        params = self._give_consent(institution, company=company)
        link, _journal = self.env["account.online.consent.request"]._complete(params)
        selection = self.env["account.online.account.selection"].create({
            "link_id": link.id, "journal_id": journal.id if journal else False})
        if sync:
            selection.action_confirm()
        else:
            for line in selection.line_ids:
                line._link_journal()
        return link

    def _eur_account(self, link):
        return link.account_online_account_ids.filtered(lambda a: a.currency_id.name == "EUR")

    def _bank_booked_ids(self, account, date_from=None, date_to=None):
        """Identifiers the bank holds as booked for an online account in a window."""
        date_to = date_to or self.bank.today
        date_from = date_from or date_to - timedelta(days=90)
        return {t["id"] for t in self.bank.expected_booked(account.stable_key, date_from, date_to)}

    def _journal_txn_ids(self, journal):
        lines = self.env["account.bank.statement.line"].search([("journal_id", "=", journal.id)])
        return [line.online_transaction_identifier.rsplit(":", 1)[1]
                for line in lines if line.online_transaction_identifier]
