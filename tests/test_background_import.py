"""A long import: the user's request imports a first chunk, the cron finishes it, and a worker
killed half-way leaves a state the next run resumes without duplicates."""
import json
from decimal import Decimal

from odoo.tests import tagged

from .common import OnlineSyncCase


class WorkerKilled(Exception):
    """Stands for a worker that dies before its transaction commits."""


@tagged("post_install", "-at_install")
class TestBackgroundImport(OnlineSyncCase):

    def setUp(self):
        super().setUp()
        params = self.env["ir.config_parameter"].sudo()
        # Small chunks and no time budget: every run imports one chunk and hands over.
        params.set_param("account_online_synchronization.import_chunk_size", 40)
        params.set_param("account_online_synchronization.interactive_budget", 0)
        params.set_param("account_online_synchronization.cron_budget", 0)
        self.bank.configure(txns_per_day={"EUR": 3, "USD": 1})
        self.cron = self.env.ref("account_online_synchronization.ir_cron_online_sync")

    def _lines(self, journal):
        return self.env["account.bank.statement.line"].search([("journal_id", "=", journal.id)])

    def _finish_with_cron(self, account, max_runs=40):
        runs = 0
        while account.fetching_status == "waiting" and runs < max_runs:
            self.env["account.online.link"]._cron_synchronize()
            runs += 1
        self.assertEqual(account.fetching_status, "done", f"not finished after {runs} cron runs")
        return runs

    def _assert_journal_is_the_bank(self, account):
        identifiers = self._journal_txn_ids(account.journal_id)
        self.assertEqual(len(identifiers), len(set(identifiers)), "no transaction twice")
        self.assertEqual(set(identifiers), self._bank_booked_ids(account))
        balance = sum(Decimal(str(amount)) for amount in self._lines(account.journal_id).mapped("amount"))
        self.assertEqual(balance, Decimal(str(account.balance)),
                         "the opening line makes the journal balance equal the bank's")

    def test_long_first_sync_returns_after_a_chunk_and_the_cron_finishes_it(self):
        link = self._connect(sync=False)
        account = self._eur_account(link)
        triggers_before = self.env["ir.cron.trigger"].search_count([("cron_id", "=", self.cron.id)])
        action = link.action_fetch_transactions()
        self.assertEqual(action["params"]["type"], "info")
        self.assertIn("background", action["params"]["message"])
        self.assertEqual(account.fetching_status, "waiting")
        first_chunk = len(self._lines(account.journal_id))
        self.assertTrue(40 <= first_chunk < len(self._bank_booked_ids(account)) + 1)
        opening = self._lines(account.journal_id).filtered(lambda l: not l.online_transaction_identifier)
        self.assertEqual(account.import_done, first_chunk - len(opening))
        self.assertGreater(account.import_total, account.import_done)
        self.assertGreater(
            self.env["ir.cron.trigger"].search_count([("cron_id", "=", self.cron.id)]),
            triggers_before, "the rest is handed to the cron at once")

        runs = self._finish_with_cron(account)
        self.assertGreater(runs, 1)
        self._assert_journal_is_the_bank(account)
        self.assertEqual(account.import_done, account.import_total)
        # Progress went to the user who asked, over the bus.
        self.env.cr.precommit.run()
        messages = self.env["bus.bus"].sudo().search([("channel", "ilike", "res.partner")])
        progress = [json.loads(m.message)["payload"] for m in messages
                    if json.loads(m.message)["type"] == "account_online_sync/progress"]
        self.assertTrue(progress)
        self.assertEqual(progress[-1]["done"], progress[-1]["total"])

    def test_worker_killed_half_way_is_resumed_without_duplicates(self):
        link = self._connect(sync=False)
        account = self._eur_account(link)
        link.action_fetch_transactions()
        imported = len(self._lines(account.journal_id))
        with self.assertRaises(WorkerKilled):
            with self.env.cr.savepoint():
                link._synchronize(trigger="cron")
                self.assertGreater(len(self._lines(account.journal_id)), imported)
                raise WorkerKilled()
        self.env.invalidate_all()
        self.assertEqual(len(self._lines(account.journal_id)), imported,
                         "what the killed worker did is gone with its transaction")
        self.assertEqual(account.fetching_status, "waiting")
        self._finish_with_cron(account)
        self._assert_journal_is_the_bank(account)

    def test_statements_of_a_chunked_import_balance(self):
        link = self._connect(sync=False)
        account = self._eur_account(link)
        link.action_fetch_transactions()
        self._finish_with_cron(account)
        statements = self.env["account.bank.statement"].search(
            [("journal_id", "=", account.journal_id.id)], order="first_line_index")
        self.assertGreater(len(statements), 1)
        for previous, statement in zip(statements, statements[1:]):
            self.assertAlmostEqual(statement.balance_start, previous.balance_end_real)
        for statement in statements:
            self.assertAlmostEqual(statement.balance_end, statement.balance_end_real)
