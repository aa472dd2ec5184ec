from datetime import date, timedelta

import psycopg2
from freezegun import freeze_time

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import OnlineSyncCase


@tagged("post_install", "-at_install")
class TestSync(OnlineSyncCase):

    def test_first_sync_imports_exactly_the_booked_transactions(self):
        link = self._connect()
        for account in link.account_online_account_ids:
            journal = account.journal_id
            imported = self._journal_txn_ids(journal)
            expected = self._bank_booked_ids(account, date.today() - timedelta(days=90))
            self.assertTrue(expected)
            self.assertEqual(sorted(imported), sorted(expected))
            self.assertEqual(len(imported), len(set(imported)))
            # Pending transactions are seen but not imported.
            self.assertFalse(any(i.startswith("pdg_") for i in imported))
            self.assertEqual(account.balance_date, date.today())
        log = self.env["account.online.sync.log"].search([("link_id", "=", link.id)])
        self.assertEqual(set(log.mapped("outcome")), {"success"})
        self.assertEqual(set(log.mapped("trigger")), {"first"})
        self.assertTrue(all(entry.pending > 0 for entry in log))

    def test_first_sync_opens_the_journal_at_the_banks_balance(self):
        link = self._connect()
        for account in link.account_online_account_ids:
            journal = account.journal_id
            balance, _per_day = journal._online_sync_balance_by_day()
            expected = self.bank.expected_balances(account.stable_key)["booked"]
            self.assertEqual(balance, expected)
            self.assertAlmostEqual(account.balance, float(expected))
            opening = self.env["account.bank.statement.line"].search([
                ("journal_id", "=", journal.id), ("online_transaction_identifier", "=", False)])
            self.assertEqual(len(opening), 1)
            self.assertIn("Opening balance", opening.payment_ref)
            self.assertFalse(account.balance_mismatch_date)
        # A later sync adds no second opening line.
        link.action_fetch_transactions()
        self.assertEqual(self.env["account.bank.statement.line"].search_count([
            ("journal_id", "in", link.journal_ids.ids),
            ("online_transaction_identifier", "=", False)]), 2)

    def test_balance_checkpoint_reports_the_first_differing_day(self):
        link = self._connect()
        account = self._eur_account(link)
        journal = account.journal_id
        old_line = self.env["account.bank.statement.line"].search([
            ("journal_id", "=", journal.id), ("online_transaction_identifier", "!=", False),
            ("date", "<", date.today() - timedelta(days=20))], limit=1)
        missing_day = old_line.date
        old_line.unlink()
        link.action_fetch_transactions()
        self.assertEqual(account.balance_mismatch_date, missing_day)
        messages = journal.message_ids.filtered(lambda m: "differ" in (m.body or ""))
        self.assertEqual(len(messages), 1)
        self.assertIn("first differ on", messages.body)
        # Not repeated while nothing changes.
        link.action_fetch_transactions()
        self.assertEqual(len(journal.message_ids.filtered(lambda m: "differ" in (m.body or ""))), 1)

    def test_lines_are_grouped_in_monthly_statements_that_balance(self):
        link = self._connect()
        journal = self._eur_account(link).journal_id
        lines = self.env["account.bank.statement.line"].search([("journal_id", "=", journal.id)])
        self.assertFalse(lines.filtered(lambda l: not l.statement_id))
        for statement in lines.statement_id:
            months = {(l.date.year, l.date.month) for l in statement.line_ids}
            self.assertEqual(len(months), 1, statement.name)
            self.assertEqual(statement.online_period_start.day, 1)
            self.assertAlmostEqual(statement.balance_end_real, statement.balance_end)
        self.assertGreaterEqual(len(lines.statement_id), 3)

    def test_statement_periodicity_of_the_journal(self):
        link = self._connect(sync=False)
        eur = self._eur_account(link)
        usd = link.account_online_account_ids - eur
        eur.journal_id.online_sync_statement_periodicity = "none"
        usd.journal_id.online_sync_statement_periodicity = "week"
        link.action_fetch_transactions()
        eur_lines = self.env["account.bank.statement.line"].search(
            [("journal_id", "=", eur.journal_id.id)])
        self.assertTrue(eur_lines)
        self.assertFalse(eur_lines.statement_id)
        usd_lines = self.env["account.bank.statement.line"].search(
            [("journal_id", "=", usd.journal_id.id)])
        self.assertFalse(usd_lines.filtered(lambda l: not l.statement_id))
        for statement in usd_lines.statement_id:
            weeks = {l.date.isocalendar()[:2] for l in statement.line_ids}
            self.assertEqual(len(weeks), 1, statement.name)
            self.assertEqual(statement.online_period_start.weekday(), 0)

    def test_resync_creates_nothing(self):
        link = self._connect()
        count = self.env["account.bank.statement.line"].search_count(
            [("journal_id", "in", link.journal_ids.ids)])
        action = link.action_fetch_transactions()
        self.assertEqual(action["params"]["type"], "success")
        self.assertIn("0 transactions fetched", action["params"]["message"])
        self.assertEqual(self.env["account.bank.statement.line"].search_count(
            [("journal_id", "in", link.journal_ids.ids)]), count)
        last_logs = self.env["account.online.sync.log"].search(
            [("link_id", "=", link.id), ("trigger", "=", "manual")])
        self.assertEqual(sum(last_logs.mapped("created")), 0)
        self.assertGreater(sum(last_logs.mapped("duplicates")), 0)

    def test_synchronize_now_on_the_journal(self):
        link = self._connect()
        journal = self._eur_account(link).journal_id
        before = len(self._journal_txn_ids(journal))
        with freeze_time(date.today() + timedelta(days=2)):
            # Two days later (the simulator's clock moves too): new transactions were posted.
            action = journal.action_online_sync_now()
            expected = self._bank_booked_ids(self._eur_account(link),
                                             date.today() - timedelta(days=90))
        self.assertEqual(action["params"]["type"], "success")
        self.assertGreater(len(self._journal_txn_ids(journal)), before)
        imported = set(self._journal_txn_ids(journal))
        self.assertTrue(expected <= imported)
        self.assertEqual(len(imported), len(self._journal_txn_ids(journal)))
        logs = self.env["account.online.sync.log"].search(journal.action_open_online_sync_logs()["domain"])
        self.assertEqual(set(logs.mapped("trigger")), {"first", "manual"})
        self.assertEqual(logs.journal_id, journal)
        dashboard = journal._get_journal_dashboard_data_batched()[journal.id]
        self.assertEqual(dashboard["online_sync"]["state"], "connected")
        self.assertTrue(dashboard["online_sync"]["last_sync"])

    def test_pending_transactions_post_later_without_duplicates(self):
        link = self._connect()
        account = self._eur_account(link)
        pending = account.pending_transaction_ids
        bank_pending = self.bank.expected_pending(account.stable_key)
        self.assertEqual(len(pending), len(bank_pending))
        self.assertEqual(sorted(pending.mapped("amount")),
                         sorted(float(t["amount"]) for t in bank_pending))
        self.assertEqual(account.action_open_pending()["domain"],
                         [("online_account_id", "=", account.id)])
        pending_ids = set(pending.mapped("online_transaction_identifier"))
        before = set(self._journal_txn_ids(account.journal_id))
        with freeze_time(date.today() + timedelta(days=1)):
            link.action_fetch_transactions()
            expected = self._bank_booked_ids(account, date.today() - timedelta(days=91))
        after = set(self._journal_txn_ids(account.journal_id))
        self.assertTrue(after - before, "yesterday's pending transactions are booked today")
        self.assertEqual(after, expected)
        # Yesterday's pending left the list; today's are listed instead.
        self.assertFalse(pending.exists())
        self.assertTrue(account.pending_transaction_ids)
        self.assertFalse(pending_ids
                         & set(account.pending_transaction_ids.mapped("online_transaction_identifier")))

    def test_first_sync_starts_after_the_journals_last_line(self):
        journal = self.env["account.journal"].create({"name": "Old Bank", "type": "bank",
                                                      "code": "OLDB"})
        last = date.today() - timedelta(days=10)
        self.env["account.bank.statement.line"].create({
            "journal_id": journal.id, "date": last, "payment_ref": "manual", "amount": 10})
        link = self._connect(journal=journal)
        account = journal.account_online_account_id
        self.assertIn(account, link.account_online_account_ids)
        synced = self.env["account.bank.statement.line"].search([
            ("journal_id", "=", journal.id), ("online_transaction_identifier", "!=", False)])
        self.assertTrue(synced)
        self.assertGreater(min(synced.mapped("date")), last)
        self.assertEqual(set(self._journal_txn_ids(journal)),
                         self._bank_booked_ids(account, last + timedelta(days=1)))

    def test_first_sync_is_bounded_by_the_lock_date(self):
        lock = date.today() - timedelta(days=20)
        self.company.fiscalyear_lock_date = lock
        link = self._connect()
        lines = self.env["account.bank.statement.line"].search(
            [("journal_id", "in", link.journal_ids.ids)])
        self.assertTrue(lines)
        self.assertGreater(min(lines.mapped("date")), lock)

    def test_database_refuses_the_same_transaction_twice(self):
        link = self._connect()
        line = self.env["account.bank.statement.line"].search(
            [("journal_id", "in", link.journal_ids.ids)], limit=1)
        with self.assertRaises(psycopg2.IntegrityError), mute_logger("odoo.sql_db"), \
                self.env.cr.savepoint():
            self.env["account.bank.statement.line"].create({
                "journal_id": line.journal_id.id, "date": line.date, "payment_ref": "copy",
                "amount": 1, "online_transaction_identifier": line.online_transaction_identifier})
