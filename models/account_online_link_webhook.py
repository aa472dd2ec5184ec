import logging
from datetime import timezone

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import format_date

from ..services import webhooks
from ..services.errors import ErrorCategory, ProviderError

_logger = logging.getLogger(__name__)


class AccountOnlineLinkWebhook(models.Model):
    """What a verified provider webhook does to its connection: schedule its synchronization,
    note a consent that expires soon, close a revoked one."""
    _inherit = "account.online.link"

    @api.model
    def _receive_webhook(self, provider_code, headers, body, urls, callback=None):
        """Verify and apply one webhook request; returns the HTTP status to answer.

        The keys to verify with are those of the provider record of the named connection's
        company (or, for a connection we do not know, of any company using the provider).
        Never logs the token or the signature.
        """
        if provider_code not in webhooks.supported_providers():
            return 404
        try:
            external_id = webhooks.identify(provider_code, body, callback)
        except webhooks.WebhookRejected:
            return 400
        links = self.sudo().search([("provider_code", "=", provider_code),
                                    ("consent_identifier", "=", external_id)])
        domain = [("code", "=", provider_code)]
        if links:
            domain.append(("company_id", "in", links.company_id.ids))
        providers = self.env["account.online.provider"].sudo().search(domain)
        Events = self.env["account.online.webhook.event"].sudo()
        reason = webhooks.UNKNOWN_KEY
        for provider in providers:
            try:
                config = provider._client_config()
            except UserError:  # a neutralized database: no provider configuration is used
                continue
            try:
                event = webhooks.verify(
                    provider_code, headers, body, config, url=urls, path_suffix=callback,
                    seen=lambda key, until: Events._seen(provider_code, key, until))
            except webhooks.WebhookRejected as rejected:
                reason = rejected.reason
                if reason in (webhooks.FORGED, webhooks.UNKNOWN_KEY):
                    continue  # maybe another company's keys
                break
            targets = links.filtered(lambda link: link.company_id == provider.company_id)
            _logger.info("Accepted %s webhook %s (%s) for connections %s", provider_code,
                         event.code, event.kind, targets.ids)
            targets._apply_webhook_event(event)
            return 200
        _logger.info("Refused a %s webhook: %s", provider_code, reason)
        if reason == webhooks.UNAVAILABLE:
            return 503
        return 400 if reason == webhooks.MALFORMED else 401

    def _apply_webhook_event(self, event):
        for link in self:
            if event.kind == webhooks.SYNC_AVAILABLE:
                link._schedule_webhook_sync()
            elif event.kind == webhooks.CONSENT_EXPIRING:
                link._webhook_consent_expiring(event.detail.get("expires_at"))
            elif event.kind == webhooks.CONSENT_REVOKED:
                link._webhook_consent_revoked(event)
            elif event.kind == webhooks.ERROR:
                link._webhook_error(event)

    def _schedule_webhook_sync(self):
        """The provider has new data: the cron synchronizes this connection now (never inside
        the webhook's request). Connections without automatic synchronization (their bank wants
        the user present) and disconnected ones are left alone."""
        self.ensure_one()
        if self.state == "disconnected" or not self.auto_sync:
            return False
        self.next_sync = fields.Datetime.now()
        self.env.ref("account_online_synchronization.ir_cron_online_sync")._trigger()
        return True

    def _webhook_consent_expiring(self, expires_at):
        self.ensure_one()
        if expires_at:
            self.expiring_synchronization_date = expires_at.astimezone(timezone.utc).date()
        if self.state in ("connected", "expiring"):
            self.state = self._healthy_state()
        when = format_date(self.env, self.expiring_synchronization_date) \
            if self.expiring_synchronization_date else _("soon")
        self.message_post(body=_(
            "The bank announced that your consent ends %s. Use Update Credentials to renew it "
            "before then; transactions keep being imported meanwhile.", when),
            subtype_xmlid="mail.mt_note")

    def _webhook_consent_revoked(self, event):
        self.ensure_one()
        accounts = self.account_online_account_ids.filtered(
            lambda account: account.online_identifier in event.account_ids)
        if event.account_ids and accounts != self.account_online_account_ids:
            self.message_post(body=_(
                "Access to %s was withdrawn at the bank: its transactions are no longer "
                "imported. Use Reconnect to give access to it again.",
                ", ".join(accounts.mapped("name")) or _("an account")),
                subtype_xmlid="mail.mt_note")
            return
        if self.state == "disconnected":
            return
        self._handle_error(ProviderError(
            self.provider_code, ErrorCategory.AUTH_EXPIRED,
            f"consent ended at the provider ({event.code})", code=event.code,
            user_message=_("The bank or the provider ended your consent.")))

    def _webhook_error(self, event):
        """A failure the provider noticed on its side. One that only the user can repair closes
        the connection; any other is checked by synchronizing (the sync records what it finds)."""
        self.ensure_one()
        if event.detail.get("reconnect") and self.state != "disconnected":
            self._handle_error(ProviderError(
                self.provider_code, ErrorCategory.AUTH_EXPIRED,
                f"the provider reports {event.detail.get('error_code') or event.code}",
                code=event.detail.get("error_code"),
                user_message=event.detail.get("message") or None))
            return
        self.message_post(body=_(
            "The provider reported a problem with this connection (%s). It is checked by "
            "synchronizing again.", event.detail.get("error_code") or event.code),
            subtype_xmlid="mail.mt_note")
        self._schedule_webhook_sync()
