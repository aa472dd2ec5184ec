from odoo import api, models

WEBHOOK_PATH = "/account_online_synchronization/webhook"
# Providers whose adapter gives the webhook URL to the provider itself when a connection is made
# (config key of the adapter). Salt Edge and Ponto take theirs in their dashboards.
ADAPTER_WEBHOOK_KEYS = {"plaid": "webhook"}


class AccountOnlineProviderWebhook(models.Model):
    _inherit = "account.online.provider"

    @api.model
    def _webhook_url(self, code):
        """The URL the provider must post ``code``'s webhooks to, from ``web.base.url``."""
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url") or ""
        return f"{base_url.rstrip('/')}{WEBHOOK_PATH}/{code}"

    def _client_config(self):
        config = super()._client_config()
        key = ADAPTER_WEBHOOK_KEYS.get(self.code)
        if key and not config.get(key):
            config[key] = self._webhook_url(self.code)
        return config
