from odoo.exceptions import UserError
from odoo.tests import new_test_user, tagged

from ..simulators.sandbox_bank import simulate_user
from .common import OnlineSyncCase


@tagged("post_install", "-at_install")
class TestFindDuplicates(OnlineSyncCase):

    def _copy_by_hand(self, line):
        """The same bank transaction typed in by hand (or imported from a file)."""
        return self.env["account.bank.statement.line"].create({
            "journal_id": line.journal_id.id, "date": line.date, "amount": line.amount,
            "payment_ref": "typed by hand", "account_number": line.account_number})

    def _group_of(self, wizard, line):
        entry = wizard.line_ids.filtered(lambda l: l.statement_line_id == line)
        return wizard.line_ids.filtered(lambda l: l.group == entry.group)

    def test_find_duplicates_and_delete_the_selected_ones(self):
        link = self._connect()
        journal = self._eur_account(link).journal_id
        synced = self.env["account.bank.statement.line"].search([
            ("journal_id", "=", journal.id), ("online_transaction_identifier", "!=", False)],
            limit=1)
        manual = self._copy_by_hand(synced)
        wizard = self.env["account.duplicate.transaction.wizard"].browse(
            journal.action_open_duplicates_wizard()["res_id"])
        group = self._group_of(wizard, synced)
        self.assertEqual(group.statement_line_id, synced | manual)
        # The synchronized line is kept, the other one proposed for deletion.
        self.assertEqual(group.filtered("to_delete").statement_line_id, manual)
        self.assertEqual(group.filtered(lambda l: l.origin == "online").statement_line_id, synced)
        wizard.line_ids.filtered(lambda l: l.statement_line_id != manual).to_delete = False
        wizard.action_delete()
        self.assertFalse(manual.exists())
        self.assertTrue(synced.exists())
        self.assertFalse(wizard.line_ids.filtered(lambda l: l.statement_line_id == synced))
        self.assertTrue(any("duplicate bank transactions deleted" in (m.body or "")
                            for m in journal.message_ids))

    def test_after_a_reconnect_a_banner_flags_possible_duplicates(self):
        link = self._connect()
        account = self._eur_account(link)
        journal = account.journal_id
        synced = self.env["account.bank.statement.line"].search([
            ("journal_id", "=", journal.id), ("online_transaction_identifier", "!=", False)],
            order="date desc", limit=1)
        self.assertFalse(account.possible_duplicates)
        self._copy_by_hand(synced)
        self.bank.add_fault("consent_expired", times=None, consent_id=link.consent_identifier)
        link.action_fetch_transactions()
        self.bank.clear_faults()
        self.env["account.online.consent.request"]._complete(
            simulate_user(link.action_reconnect()["url"]))
        link.action_fetch_transactions()
        self.assertTrue(account.possible_duplicates)
        dashboard = journal._get_journal_dashboard_data_batched()[journal.id]
        self.assertTrue(dashboard["online_sync"]["possible_duplicates"])
        wizard = self.env["account.duplicate.transaction.wizard"].browse(
            journal.action_open_duplicates_wizard()["res_id"])
        wizard.line_ids.filtered(lambda l: l.origin == "online").to_delete = False
        wizard.action_delete()
        self.assertFalse(account.possible_duplicates)

    def test_an_administrator_without_full_accounting_gets_a_clear_refusal(self):
        link = self._connect()
        journal = self._eur_account(link).journal_id
        synced = self.env["account.bank.statement.line"].search([
            ("journal_id", "=", journal.id), ("online_transaction_identifier", "!=", False)],
            limit=1)
        manual = self._copy_by_hand(synced)
        manager = new_test_user(self.env, login="invoicing_admin",
                                groups="base.group_user,account.group_account_manager")
        self.assertFalse(manager.has_group("account.group_account_basic"))
        wizard = self.env["account.duplicate.transaction.wizard"].with_user(manager).browse(
            journal.with_user(manager).action_open_duplicates_wizard()["res_id"])
        with self.assertRaisesRegex(UserError, "Show Full Accounting Features"):
            wizard.action_delete()
        self.assertTrue(manual.exists())
