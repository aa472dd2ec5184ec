from datetime import date, timedelta

from odoo.sql_db import db_connect
from odoo.tests import tagged

from ..models.account_online_link import ADVISORY_LOCK_NAMESPACE
from .common import OnlineSyncCase


@tagged("post_install", "-at_install")
class TestCron(OnlineSyncCase):

    def test_cron_over_three_connections_with_one_failing(self):
        links = [self._connect(sync=False) for _i in range(3)]
        broken = links[1]
        self.bank.add_fault("consent_expired", consent_id=broken.consent_identifier, times=None)
        self.env["account.online.link"]._cron_synchronize()
        for link in (links[0], links[2]):
            self.assertEqual(link.state, "connected")
            for account in link.account_online_account_ids:
                self.assertEqual(
                    sorted(self._journal_txn_ids(account.journal_id)),
                    sorted(self._bank_booked_ids(account, date.today() - timedelta(days=90))))
            self.assertTrue(link.next_sync)
        self.assertEqual(broken.state, "disconnected")
        self.assertFalse(self.env["account.bank.statement.line"].search(
            [("journal_id", "in", broken.journal_ids.ids)]))
        logs = self.env["account.online.sync.log"].search([("trigger", "=", "cron")])
        self.assertEqual(set(logs.filtered(lambda l: l.outcome == "failed").link_id.ids),
                         {broken.id})

    def test_cron_skips_connections_without_auto_sync_and_not_yet_due(self):
        manual_only = self._connect(sync=False)
        manual_only.auto_sync = False
        synced = self._connect()  # first sync just ran: next one in 12 hours
        requests_before = self.bank.stats()["total"]
        self.env["account.online.link"]._cron_synchronize()
        self.assertEqual(self.bank.stats()["total"], requests_before)
        self.assertFalse(manual_only.last_refresh)
        self.assertTrue(synced.last_refresh)

    def test_cron_record_runs_every_twelve_hours(self):
        cron = self.env.ref("account_online_synchronization.ir_cron_online_sync")
        self.assertEqual((cron.interval_number, cron.interval_type), (12, "hours"))
        self.assertTrue(cron.active)

    def test_cron_fetches_connections_in_parallel_within_the_provider_bound(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("account_online_synchronization.fetch_workers", 4)
        params.set_param("account_online_synchronization.fetch_per_provider", 2)
        links = [self._connect(sync=False) for _i in range(4)]
        self.assertEqual(self.bank.stats()["max_in_flight"], 1, "the connections were made one by one")
        # Every provider call is slow: fetches of different connections overlap, two at a time.
        self.bank.add_fault("delay", seconds=0.3, times=None)
        self.env["account.online.link"]._cron_synchronize()
        self.assertEqual(self.bank.stats()["max_in_flight"], 2)
        for link in links:
            self.assertEqual(link.state, "connected")
            for account in link.account_online_account_ids:
                identifiers = self._journal_txn_ids(account.journal_id)
                self.assertEqual(len(identifiers), len(set(identifiers)))
                self.assertEqual(set(identifiers), self._bank_booked_ids(account))

    def test_a_connection_another_worker_is_synchronizing_is_skipped(self):
        link = self._connect(sync=False)
        other = db_connect(self.env.cr.dbname).cursor()
        try:
            other.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, link.id))
            self.env["account.online.link"]._cron_synchronize()
            self.assertFalse(link.last_refresh, "left to the worker that holds it")
        finally:
            other.execute("SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, link.id))
            other.close()
        self.env["account.online.link"]._cron_synchronize()
        self.assertTrue(link.last_refresh)
