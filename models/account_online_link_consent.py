import logging
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import format_date

from ..services.errors import ProviderError

_logger = logging.getLogger(__name__)

CONSENT_WARNING_DAYS = 15
REMINDER_DAYS = (15, 3, 1)


class AccountOnlineLinkConsent(models.Model):
    """The consent's life: renewal, reminders before expiry, expiry, revocation on deletion."""
    _inherit = "account.online.link"

    def action_update_credentials(self):
        """Renew the consent of this connection at the bank; journals and history stay."""
        self.ensure_one()
        url = self.env["account.online.consent.request"]._start(
            self.provider_code,
            {"identifier": self.institution_identifier, "name": self.name,
             "logo_url": self.institution_logo_url},
            self.company_id, link=self)
        return {"type": "ir.actions.act_url", "url": url, "target": "self"}

    def action_reconnect(self):
        """Reconnect a disconnected or failing connection: a new consent on the same record."""
        return self.action_update_credentials()

    def _renew(self, consent, accounts):
        """A new consent arrived for this connection: store it and re-match the accounts."""
        self.ensure_one()
        self.write({
            "consent_identifier": consent.external_id,
            "expiring_synchronization_date": consent.valid_until and consent.valid_until.date(),
            "reminder_sent_days": 0,
            "last_error_category": False,
            "last_error_message": False,
            "last_error_reference": False,
            "next_sync": False,
        })
        self.state = self._healthy_state()
        self._set_credentials(consent.secrets)
        self._create_online_accounts(accounts).write({"check_duplicates": True})
        self._consent_activities().action_feedback(feedback=_("Consent renewed."))
        self.message_post(body=_("Consent renewed until %s.",
                                 self.expiring_synchronization_date or _("no end date")),
                          subtype_xmlid="mail.mt_note")

    def _days_left(self, today=None):
        if not self.expiring_synchronization_date:
            return None
        return (self.expiring_synchronization_date - (today or fields.Date.context_today(self))).days

    def _healthy_state(self):
        """State of a connection that works: expiring in the last days of its consent."""
        days_left = self._days_left()
        return "expiring" if days_left is not None and days_left <= CONSENT_WARNING_DAYS \
            else "connected"

    def _consent_activities(self):
        return self.env["mail.activity"].search([
            ("res_model", "=", "account.journal"), ("res_id", "in", self.journal_ids.ids),
            ("activity_type_id", "=", self.env.ref(
                "account_online_synchronization.mail_activity_type_update_consent").id)])

    @api.model
    def _cron_consent_expiry(self):
        """Daily: expiring consents get an activity and reminders; expired ones are closed."""
        today = fields.Date.context_today(self)
        links = self.search([("expiring_synchronization_date", "!=", False),
                             ("state", "!=", "disconnected")])
        for link in links:
            days_left = link._days_left(today)
            if days_left <= 0:
                link.state = "disconnected"
                link.message_post(body=_(
                    "Your consent expired on %s: transactions are no longer imported. Use "
                    "Reconnect to give your consent again; nothing is lost meanwhile.",
                    format_date(self.env, link.expiring_synchronization_date)),
                    subtype_xmlid="mail.mt_note")
            elif days_left <= CONSENT_WARNING_DAYS:
                if link.state == "connected":
                    link.state = "expiring"
                link._schedule_consent_activities()
                threshold = min(t for t in REMINDER_DAYS if days_left <= t)
                if link.reminder_sent_days != threshold:
                    link._send_consent_reminders()
                    link.reminder_sent_days = threshold

    def _schedule_consent_activities(self):
        activity_type = self.env.ref("account_online_synchronization.mail_activity_type_update_consent")
        done = set(self._consent_activities().mapped("res_id"))
        for journal in self.journal_ids.filtered(lambda j: j.id not in done):
            journal.activity_schedule(
                activity_type_id=activity_type.id,
                date_deadline=self.expiring_synchronization_date,
                summary=_("Update your bank consent before %s",
                          format_date(self.env, self.expiring_synchronization_date)),
                user_id=(journal.account_online_link_id.create_uid or self.env.user).id)

    def action_send_reminder(self):
        """Send Now: e-mail the consent reminder to the journals' connection request addresses."""
        self.ensure_one()
        self._send_consent_reminders()
        return True

    def _send_consent_reminders(self):
        template = self.env.ref("account_online_synchronization.mail_template_consent_reminder")
        for journal in self.journal_ids:
            if journal.online_sync_renewal_contact_email:
                template.send_mail(journal.id)
            else:
                journal.message_post(body=_(
                    "The bank consent of %(bank)s expires on %(date)s. Add addresses under "
                    "Connection requests on this journal to be reminded by e-mail.",
                    bank=self.name, date=format_date(self.env, self.expiring_synchronization_date)),
                    subtype_xmlid="mail.mt_note")

    def unlink(self):
        """Deleting a connection revokes its consent at the provider first."""
        for link in self.filtered("consent_identifier"):
            try:
                link.sudo()._proxy_client().revoke(link.sudo()._consent())
            except (ProviderError, UserError) as error:
                _logger.info("Consent of link %s not revoked at the provider: %s", link.id, error)
        return super().unlink()

    @api.model
    def _cron_delete_unused_connections(self):
        """Daily: connections left without any linked journal for a month are removed."""
        month_ago = fields.Datetime.now() - timedelta(days=30)
        unused = self.search([("write_date", "<", month_ago)]).filtered(
            lambda link: not link.journal_ids)
        unused.unlink()
