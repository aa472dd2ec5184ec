from datetime import date, timedelta

from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import OnlineSyncCase


@tagged("post_install", "-at_install")
class TestConnect(OnlineSyncCase):

    def test_connect_creates_link_accounts_and_journals(self):
        link = self._connect(sync=False)
        self.assertEqual(link.state, "connected")
        self.assertEqual(link.provider_code, "sandbox")
        self.assertEqual(link.name, "Sandbox Bank")
        self.assertTrue(link.consent_identifier)
        self.assertEqual(link.expiring_synchronization_date,
                         date.today() + timedelta(days=90))
        accounts = link.account_online_account_ids
        self.assertEqual(sorted(accounts.currency_id.mapped("name")), ["EUR", "USD"])
        self.assertTrue(all(accounts.mapped("stable_key")))
        for account in accounts:
            journal = account.journal_id
            self.assertEqual(journal.type, "bank")
            self.assertEqual(journal.bank_statements_source, "online_sync")
            self.assertEqual(journal.currency_id or self.company.currency_id, account.currency_id)
        # The consent request is consumed: the same callback cannot be replayed.
        self.assertFalse(self.env["account.online.consent.request"].search([]))

    def test_accounts_not_chosen_can_be_linked_later_without_a_new_consent(self):
        params = self._give_consent()
        link, _journal = self.env["account.online.consent.request"]._complete(params)
        selection = self.env["account.online.account.selection"].create({"link_id": link.id})
        eur_line = selection.line_ids.filtered(lambda l: l.currency_id.name == "EUR")
        (selection.line_ids - eur_line).selected = False
        selection.action_confirm()
        self.assertTrue(link.has_unlinked_accounts)
        consents_before = len(self.bank.consents())
        action = link.action_link_accounts()
        later = self.env["account.online.account.selection"].browse(action["res_id"])
        self.assertEqual(later.line_ids.currency_id.name, "USD")
        later.action_confirm()
        self.assertFalse(link.has_unlinked_accounts)
        self.assertEqual(len(self.bank.consents()), consents_before)
        usd = link.account_online_account_ids - self._eur_account(link)
        self.assertTrue(self._journal_txn_ids(usd.journal_id))

    def test_a_currency_conflicting_with_a_journal_with_entries_is_refused(self):
        journal = self.env["account.journal"].create({
            "name": "USD-only", "type": "bank", "code": "USDJ",
            "currency_id": self.env.ref("base.USD").id})
        self.env.ref("base.USD").active = True
        self.env["account.bank.statement.line"].create({
            "journal_id": journal.id, "date": "2026-01-05", "payment_ref": "x", "amount": 5})
        params = self._give_consent()
        link, _journal = self.env["account.online.consent.request"]._complete(params)
        selection = self.env["account.online.account.selection"].create({"link_id": link.id})
        eur_line = selection.line_ids.filtered(lambda l: l.currency_id.name == "EUR")
        eur_line.journal_id = journal
        with self.assertRaisesRegex(UserError, "already has entries"):
            selection.action_confirm()

    def test_institution_search_and_security_contact(self):
        wizard = self.env["account.online.connect.wizard"].create({"search_text": "mfa"})
        self.assertEqual(wizard.institution_ids.mapped("name"), ["Sandbox Bank (MFA)"])
        line = wizard.institution_ids
        self.assertTrue(line.beta)
        self.assertTrue(line.logo_url.startswith(self.bank.url))
        self.assertEqual(line.provider_id.code, "sandbox")
        self.assertTrue(wizard.needs_security_contact)
        with self.assertRaisesRegex(UserError, "security contact"):
            line.action_connect()
        self.assertFalse(self.env["account.online.consent.request"].search([]))
        wizard.security_contact = "it@example.com"
        self.assertEqual(line.action_connect()["type"], "ir.actions.act_url")
        self.assertEqual(self.company.online_sync_security_contact, "it@example.com")
        # Asked once per company.
        self.assertFalse(self.env["account.online.connect.wizard"].create({}).needs_security_contact)
        empty = self.env["account.online.connect.wizard"].create({"search_text": "no such bank"})
        self.assertFalse(empty.institution_ids)
        self.assertIn("No bank matches", empty.search_message)

    def test_credentials_are_encrypted_at_rest(self):
        link = self._connect(sync=False)
        secrets = link._get_credentials()
        self.assertTrue(secrets.get("access_token"))
        self.env.cr.execute("SELECT encrypted_credentials FROM account_online_link WHERE id = %s",
                            [link.id])
        stored = self.env.cr.fetchone()[0]
        self.assertTrue(stored)
        self.assertNotIn(secrets["access_token"], stored)
        self.assertNotIn(secrets["refresh_token"], stored)

    def test_existing_journal_is_suggested_and_linked(self):
        journal = self.env["account.journal"].create({
            "name": "My Bank", "type": "bank", "code": "MYBNK"})
        link = self._connect(journal=journal, sync=False)
        # The journal is in the company's currency: it gets the account in that currency.
        self.assertEqual(journal.account_online_account_id.currency_id, self.company.currency_id)
        self.assertIn(journal.account_online_account_id, link.account_online_account_ids)

    def test_replayed_or_forged_state_is_refused(self):
        params = self._give_consent()
        self.env["account.online.consent.request"]._complete(dict(params))
        links_before = self.env["account.online.link"].search_count([])
        with self.assertRaisesRegex(UserError, "unknown or has expired"):
            self.env["account.online.consent.request"]._complete(dict(params))
        with self.assertRaisesRegex(UserError, "unknown or has expired"):
            self.env["account.online.consent.request"]._complete(
                dict(params, state="forged-state"))
        self.assertEqual(self.env["account.online.link"].search_count([]), links_before)

    def test_cancelled_consent_leaves_nothing(self):
        params = self._give_consent(decision="cancel")
        self.assertEqual(params["error"], "access_denied")
        with self.assertRaisesRegex(UserError, "did not grant access"):
            self.env["account.online.consent.request"]._complete(params)
        self.assertFalse(self.env["account.online.link"].search([]))
        self.assertFalse(self.env["account.online.consent.request"].search([]))

    def test_another_users_state_is_refused(self):
        params = self._give_consent()
        other = self.env["res.users"].create({
            "name": "Other manager", "login": "other_manager",
            "groups_id": [(6, 0, [self.env.ref("account.group_account_manager").id])]})
        with self.assertRaisesRegex(UserError, "unknown or has expired"):
            self.env["account.online.consent.request"].with_user(other)._complete(params)
