from datetime import date, timedelta

from odoo import fields
from odoo.exceptions import UserError
from odoo.sql_db import db_connect
from odoo.tests import tagged

from ..models.account_online_link import ADVISORY_LOCK_NAMESPACE
from .common import OnlineSyncCase


@tagged("post_install", "-at_install")
class TestFailures(OnlineSyncCase):

    def _line_count(self, link):
        return self.env["account.bank.statement.line"].search_count(
            [("journal_id", "in", link.journal_ids.ids)])

    def _error_message(self, record, reference):
        bodies = [m.body for m in record.message_ids if reference in (m.body or "")]
        self.assertEqual(len(bodies), 1, f"one message with {reference} on {record}")
        return bodies[0]

    def test_failure_half_way_creates_nothing_and_next_sync_completes(self):
        # Enough transactions for several pages; the second page fails for good.
        self.bank.configure(txns_per_day={"EUR": 8, "USD": 1})
        link = self._connect(sync=False)
        account = self._eur_account(link)
        self.bank.add_fault("http_500", path="/transactions", skip=1, times=None)
        action = link.action_fetch_transactions()
        self.assertEqual(action["params"]["type"], "danger")
        self.assertEqual(self._line_count(link), 0)
        self.assertFalse(account.last_sync, "a failed account never moves its watermark")
        self.assertEqual(link.state, "error")
        failed = self.env["account.online.sync.log"].search(
            [("link_id", "=", link.id), ("outcome", "=", "failed")])
        self.assertEqual(failed.online_account_id, link.account_online_account_ids)
        self.assertEqual(set(failed.mapped("error_category")), {"provider_error"})
        self.assertIn(link.last_error_reference, failed.mapped("error_reference"))

        self.bank.clear_faults()
        link.action_fetch_transactions()
        self.assertEqual(link.state, "connected")
        expected = self._bank_booked_ids(account, date.today() - timedelta(days=90))
        self.assertGreater(len(expected), 500)
        self.assertEqual(sorted(self._journal_txn_ids(account.journal_id)), sorted(expected))

    def test_one_failing_account_does_not_roll_back_the_other(self):
        link = self._connect(sync=False)
        eur = self._eur_account(link)
        usd = link.account_online_account_ids - eur
        self.bank.add_fault("http_500", path=f"/accounts/{usd.online_identifier}/transactions",
                            times=None)
        link.action_fetch_transactions()
        self.assertTrue(self._journal_txn_ids(eur.journal_id))
        self.assertFalse(self._journal_txn_ids(usd.journal_id))
        self.assertTrue(eur.last_sync)
        self.assertFalse(usd.last_sync)

    def test_error_is_explained_in_both_chatters_with_a_reference(self):
        link = self._connect(sync=False)
        journal = self._eur_account(link).journal_id
        self.bank.add_fault("consent_expired")
        link.action_fetch_transactions()
        self.assertEqual(link.state, "disconnected")
        reference = link.last_error_reference
        self.assertRegex(reference, r"^OS-[0-9A-F]{8}$")
        for record in (link, journal):
            body = self._error_message(record, reference)
            self.assertIn("consent has expired", body)
            self.assertIn("Reconnect", body)
        secrets = link._get_credentials()
        for message in link.message_ids | journal.message_ids:
            self.assertNotIn(secrets["access_token"], message.body or "")
        with self.assertRaisesRegex(UserError, "Reconnect it first"):
            link.action_fetch_transactions()

    def test_rate_limit_schedules_the_next_attempt_after_the_reset(self):
        link = self._connect(sync=False)
        self.bank.add_fault("rate_limit", seconds=7200, times=None)
        before = fields.Datetime.now()
        link.action_fetch_transactions()
        self.assertEqual(link.state, "connected", "a rate limit is not a broken connection")
        self.assertEqual(link.last_error_category, "rate_limited")
        self.assertGreaterEqual(link.next_sync, before + timedelta(seconds=7190))
        trigger = self.env["ir.cron.trigger"].search([
            ("cron_id", "=", self.env.ref("account_online_synchronization.ir_cron_online_sync").id),
            ("call_at", ">=", before + timedelta(seconds=7190))])
        self.assertTrue(trigger)
        # The cron does not hammer the bank before the reset time.
        requests_before = self.bank.stats()["total"]
        self.env["account.online.link"]._cron_synchronize()
        self.assertEqual(self.bank.stats()["total"], requests_before)

    def test_short_rate_limit_is_waited_out(self):
        link = self._connect(sync=False)
        self.bank.add_fault("rate_limit", seconds=1, times=1, path="/transactions")
        link.action_fetch_transactions()
        self.assertEqual(link.state, "connected")
        self.assertFalse(link.last_error_category)
        self.assertTrue(self._journal_txn_ids(self._eur_account(link).journal_id))

    def test_user_must_be_present_turns_auto_sync_off(self):
        link = self._connect(institution="SANDBOX_BANK_MFA", sync=False)
        self.env["account.online.link"]._cron_synchronize()
        self.assertFalse(link.auto_sync)
        self.assertEqual(link.last_error_category, "user_action_required")
        body = self._error_message(link, link.last_error_reference)
        self.assertIn("automatic synchronization has been turned off", body)
        self.assertFalse(self._journal_txn_ids(self._eur_account(link).journal_id))
        # With the user at the keyboard the bank answers.
        action = link.action_fetch_transactions()
        self.assertEqual(action["params"]["type"], "success")
        self.assertTrue(self._journal_txn_ids(self._eur_account(link).journal_id))

    def test_timeout_and_malformed_answers_fail_cleanly(self):
        link = self._connect(sync=False)
        self.env["ir.config_parameter"].sudo().set_param(
            "account_online_synchronization.max_retries", "1")
        for kind in ("timeout", "malformed_json"):
            self.bank.add_fault(kind, path="/transactions", times=None, seconds=5)
            link.action_fetch_transactions()
            self.assertEqual(self._line_count(link), 0, kind)
            self.assertEqual(link.state, "error", kind)
            self.bank.clear_faults()
        link.action_fetch_transactions()
        self.assertEqual(link.state, "connected")
        self.assertGreater(self._line_count(link), 0)

    def test_a_second_sync_of_the_same_connection_is_refused_while_one_runs(self):
        link = self._connect(sync=False)
        other = db_connect(self.env.cr.dbname).cursor()
        try:
            other.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, link.id))
            with self.assertRaisesRegex(UserError, "already running"):
                link.action_fetch_transactions()
        finally:
            other.execute("SELECT pg_advisory_unlock_all()")
            other.close()
        self.assertEqual(self._line_count(link), 0)
