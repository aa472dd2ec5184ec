from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..models.account_online_provider import provider_selection
from ..services.errors import ProviderError
from ..services.proxy import ProxyClient


class AccountOnlineConnectWizard(models.TransientModel):
    """Add a Bank Account: find the institution, then go to its consent page."""
    _name = "account.online.connect.wizard"
    _description = "Add a Bank Account"

    provider_code = fields.Selection(selection=provider_selection, string="Provider",
                                     default="sandbox", required=True)
    country_id = fields.Many2one(
        "res.country", default=lambda self: self.env.company.account_fiscal_country_id)
    search_text = fields.Char(string="Bank name")
    journal_id = fields.Many2one("account.journal", domain=[("type", "=", "bank")],
                                 help="Journal to link the first matching account to.")
    institution_ids = fields.One2many("account.online.connect.institution", "wizard_id",
                                      string="Institutions")
    search_message = fields.Char(readonly=True)

    @api.model_create_multi
    def create(self, vals_list):
        wizards = super().create(vals_list)
        for wizard in wizards:
            wizard._search_institutions()
        return wizards

    def _search_institutions(self):
        self.ensure_one()
        client = ProxyClient(self.provider_code,
                             self.env["account.online.provider"]._for_company(
                                 self.provider_code, self.env.company)._client_config())
        try:
            institutions = client.institutions(country=self.country_id.code or None,
                                               query=self.search_text or None)
        except ProviderError as error:
            self.institution_ids = [(5, 0, 0)]
            self.search_message = _("The provider could not list its banks: %(reason)s "
                                    "(Reference: %(ref)s)", reason=error.message,
                                    ref=error.reference)
            return
        self.institution_ids = [(5, 0, 0)] + [(0, 0, {
            "identifier": institution.external_id,
            "name": institution.name,
            "logo_url": institution.logo_url,
            "beta": institution.beta,
            "bic": institution.bic,
        }) for institution in institutions]
        self.search_message = False if institutions else _("No bank matches this search.")

    def action_search(self):
        self.ensure_one()
        self._search_institutions()
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": _("Add a Bank Account"),
        }


class AccountOnlineConnectInstitution(models.TransientModel):
    _name = "account.online.connect.institution"
    _description = "Bank offered by a provider"

    wizard_id = fields.Many2one("account.online.connect.wizard", required=True,
                                ondelete="cascade")
    identifier = fields.Char(required=True)
    name = fields.Char(required=True)
    bic = fields.Char(string="BIC")
    logo_url = fields.Char()
    beta = fields.Boolean()

    def action_connect(self):
        """Send the browser to the provider's consent page; it comes back to our callback."""
        self.ensure_one()
        if not (self.env.is_superuser() or self.env.user.has_group("account.group_account_manager")):
            raise UserError(_("Only accounting managers can connect a bank."))
        wizard = self.wizard_id
        url = self.env["account.online.consent.request"]._start(
            wizard.provider_code,
            {"identifier": self.identifier, "name": self.name, "logo_url": self.logo_url},
            self.env.company, journal=wizard.journal_id)
        return {"type": "ir.actions.act_url", "url": url, "target": "self"}
