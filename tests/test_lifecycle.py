from datetime import date, timedelta

from freezegun import freeze_time

from odoo.exceptions import UserError
from odoo.tests import tagged

from ..simulators.sandbox_bank import simulate_user
from .common import OnlineSyncCase


@tagged("post_install", "-at_install")
class TestConsentLifecycle(OnlineSyncCase):

    def test_reconnect_after_expiry_keeps_the_connection_and_its_journals(self):
        link = self._connect()
        journals = link.journal_ids
        eur = self._eur_account(link)
        old_identifier, imported = eur.online_identifier, set(self._journal_txn_ids(eur.journal_id))
        self.bank.add_fault("consent_expired", times=None, consent_id=link.consent_identifier)
        link.action_fetch_transactions()
        self.assertEqual(link.state, "disconnected")
        self.bank.clear_faults()

        action = link.action_reconnect()
        self.assertEqual(action["type"], "ir.actions.act_url")
        renewed, _journal = self.env["account.online.consent.request"]._complete(
            simulate_user(action["url"]))
        self.assertEqual(renewed, link, "the same connection is renewed, none is created")
        self.assertEqual(self.env["account.online.link"].search_count([]), 1)
        self.assertEqual(link.state, "connected")
        self.assertFalse(link.last_error_reference)
        # The bank gave new account ids; accounts were re-matched by their stable key.
        self.assertNotEqual(eur.online_identifier, old_identifier)
        self.assertEqual(len(link.account_online_account_ids), 2)
        self.assertEqual(link.journal_ids, journals)
        with freeze_time(date.today() + timedelta(days=1)):
            link.action_fetch_transactions()
        after = self._journal_txn_ids(eur.journal_id)
        self.assertEqual(len(after), len(set(after)), "no duplicate after the renewal")
        self.assertTrue(imported < set(after))

    def test_update_credentials_extends_the_consent(self):
        link = self._connect(sync=False)
        with freeze_time(date.today() + timedelta(days=30)):
            action = link.action_update_credentials()
            self.env["account.online.consent.request"]._complete(simulate_user(action["url"]))
            self.assertEqual(link.expiring_synchronization_date,
                             date.today() + timedelta(days=90))
        self.assertEqual(len(self.bank.consents()), 2)

    def test_deleting_a_connection_revokes_the_consent_at_the_bank(self):
        link = self._connect(sync=False)
        consent_id = link.consent_identifier
        journals = link.journal_ids
        link.unlink()
        revoked = {c["id"]: c["revoked"] for c in self.bank.consents()}
        self.assertTrue(revoked[consent_id])
        self.assertFalse(journals.account_online_account_id)

    def test_unused_connections_are_removed_after_a_month(self):
        unused = self._connect(sync=False)
        unused.account_online_account_ids.journal_ids.account_online_account_id = False
        used = self._connect(sync=False)
        self.env.flush_all()
        self.env.cr.execute("UPDATE account_online_link SET write_date = %s WHERE id IN %s",
                            [date.today() - timedelta(days=31), (unused.id, used.id)])
        self.env.invalidate_all()
        self.env["account.online.link"]._cron_delete_unused_connections()
        self.assertFalse(unused.exists())
        self.assertTrue(used.exists())

    def test_a_neutralized_database_never_calls_a_provider(self):
        link = self._connect(sync=False)
        self.env["ir.config_parameter"].sudo().set_param("database.is_neutralized", True)
        before = self.bank.stats()["total"]
        with self.assertRaisesRegex(UserError, "neutralized"):
            link.action_fetch_transactions()
        self.env["account.online.link"]._cron_synchronize()
        self.assertEqual(self.bank.stats()["total"], before)


@tagged("post_install", "-at_install")
class TestConsentExpiry(OnlineSyncCase):

    def _reminders(self):
        return self.env["mail.mail"].search([("subject", "ilike", "expires on")])

    def test_reminders_activity_and_expiry(self):
        link = self._connect(sync=False)
        journals = link.journal_ids
        journals.online_sync_renewal_contact_email = "cfo@example.com"
        expiry = link.expiring_synchronization_date
        cron = self.env["account.online.link"]._cron_consent_expiry

        with freeze_time(expiry - timedelta(days=20)):
            cron()
        self.assertEqual(link.state, "connected")
        self.assertFalse(self._reminders())

        with freeze_time(expiry - timedelta(days=14)):
            cron()
            cron()  # the same day again: nothing more
        self.assertEqual(link.state, "expiring")
        self.assertEqual(len(self._reminders()), len(journals))
        self.assertEqual(set(self._reminders().mapped("email_to")), {"cfo@example.com"})
        self.assertEqual(len(link._consent_activities()), len(journals))
        # Synchronizing while the consent is expiring keeps the warning.
        with freeze_time(expiry - timedelta(days=14)):
            link.action_fetch_transactions()
        self.assertEqual(link.state, "expiring")

        with freeze_time(expiry - timedelta(days=3)):
            cron()
        self.assertEqual(len(self._reminders()), 2 * len(journals))
        self.assertEqual(len(link._consent_activities()), len(journals), "no duplicate activity")

        link.action_send_reminder()
        self.assertEqual(len(self._reminders()), 3 * len(journals))

        with freeze_time(expiry):
            cron()
        self.assertEqual(link.state, "disconnected")
        self.assertTrue(any("consent expired" in (m.body or "") for m in link.message_ids))

    def test_renewal_closes_the_consent_activities(self):
        link = self._connect(sync=False)
        expiry = link.expiring_synchronization_date
        with freeze_time(expiry - timedelta(days=10)):
            self.env["account.online.link"]._cron_consent_expiry()
            self.assertTrue(link._consent_activities())
            action = link.action_update_credentials()
            self.env["account.online.consent.request"]._complete(simulate_user(action["url"]))
            self.assertEqual(link.state, "connected")
        self.assertFalse(link._consent_activities())
        self.assertEqual(link.reminder_sent_days, 0)
