from datetime import date, timedelta

from odoo.tests import tagged

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
