import json

from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..services.providers import available_providers, get_adapter_class


# How each adapter names the application id and secret the form asks for (default:
# client_id / client_secret). Other secrets (private keys) keep their own names.
CREDENTIAL_KEYS = {
    "plaid": ("client_id", "secret"),
    "gocardless": ("secret_id", "secret_key"),
    "saltedge": ("app_id", "secret"),
}


def provider_selection(_model=None):
    return available_providers()


class AccountOnlineProvider(models.Model):
    """A company's settings for one aggregator: environment, endpoint, application credentials."""
    _name = "account.online.provider"
    _description = "Online Synchronization Provider"
    _order = "sequence, id"

    name = fields.Char(required=True, translate=False)
    sequence = fields.Integer(default=10)
    code = fields.Selection(selection=provider_selection, required=True, string="Provider")
    company_id = fields.Many2one("res.company", required=True, default=lambda self: self.env.company,
                                 ondelete="cascade")
    active = fields.Boolean(default=True)
    environment = fields.Selection(
        [("sandbox", "Sandbox"), ("production", "Production")], default="sandbox", required=True)
    base_url = fields.Char(string="Base URL",
                           help="Leave empty to use the provider's default address.")
    client_id = fields.Char(string="Client ID")
    client_secret = fields.Char(
        string="Client Secret", compute="_compute_client_secret", inverse="_inverse_client_secret",
        groups="base.group_system", store=False,
        help="Stored encrypted with the server's key; never shown back.")
    private_key = fields.Text(
        compute="_compute_client_secret", inverse="_inverse_private_key",
        groups="base.group_system", store=False,
        help="PEM private key for providers that sign their requests (Salt Edge, Enable Banking) "
             "or use a client certificate (Ponto). Stored encrypted; never shown back.")
    certificate = fields.Text(help="PEM client certificate (Ponto).")
    options = fields.Text(
        help='Extra provider settings as JSON, e.g. {"admin_login_name": "..."} for Yodlee.')
    encrypted_secrets = fields.Text(groups="base.group_system", copy=False)
    has_secret = fields.Boolean(compute="_compute_has_secret")

    _sql_constraints = [
        ("code_company_uniq", "unique(code, company_id)",
         "Each provider can be configured once per company."),
    ]

    def _compute_client_secret(self):
        for provider in self:
            provider.client_secret = False
            provider.private_key = False

    def _inverse_client_secret(self):
        self._store_secret("client_secret")

    def _inverse_private_key(self):
        self._store_secret("private_key")

    def _store_secret(self, name):
        for provider in self.sudo():
            if provider[name]:
                secrets = provider._get_secrets()
                secrets[name] = provider[name]
                provider.encrypted_secrets = self.env["account.online.secrets"]._seal(secrets)

    @api.constrains("options")
    def _check_options(self):
        for provider in self.filtered("options"):
            try:
                if not isinstance(json.loads(provider.options), dict):
                    raise ValueError
            except ValueError:
                raise ValidationError(_("The extra settings of %s must be a JSON object.",
                                        provider.name)) from None

    def _compute_has_secret(self):
        for provider in self:
            provider.has_secret = bool(provider.sudo().encrypted_secrets)

    def _get_secrets(self):
        self.ensure_one()
        return self.env["account.online.secrets"]._open(self.sudo().encrypted_secrets)

    @api.model
    def _for_company(self, code, company):
        provider = self.sudo().search([("code", "=", code), ("company_id", "=", company.id)],
                                      limit=1)
        if not provider:
            provider = self._create_default(code, company)
        if not provider:
            raise UserError(_(
                "The provider %(provider)s is not configured for %(company)s. Configure it under "
                "Accounting > Configuration > Online Synchronization > Providers.",
                provider=dict(available_providers()).get(code, code), company=company.name))
        return provider

    @api.model
    def _create_default(self, code, company):
        """Providers that need no contract (the Sandbox Bank) configure themselves."""
        credentials = get_adapter_class(code).default_credentials
        if not credentials:
            return self.browse()
        provider = self.sudo().create({
            "name": dict(available_providers())[code],
            "code": code,
            "company_id": company.id,
            "client_id": credentials["client_id"],
        })
        provider.encrypted_secrets = self.env["account.online.secrets"]._seal(
            {"client_secret": credentials["client_secret"]})
        return provider

    def _client_config(self):
        """Everything the adapter needs, secrets included (server side only)."""
        self.ensure_one()
        if self.env["ir.config_parameter"].sudo().get_param("database.is_neutralized"):
            raise UserError(_("This database is a neutralized copy: it never contacts banks."))
        id_key, secret_key = CREDENTIAL_KEYS.get(self.code, ("client_id", "client_secret"))
        config = dict(json.loads(self.options or "{}"), environment=self.environment)
        if self.base_url:
            config["base_url"] = self.base_url
        if self.certificate:
            config["certificate"] = self.certificate
        secrets = self._get_secrets()
        config[id_key] = self.client_id
        config[secret_key] = secrets.pop("client_secret", None)
        config.update(secrets)
        return config
