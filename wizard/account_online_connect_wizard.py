import json

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..services.errors import ProviderError
from ..services.proxy import ProxyClient


def _institution_key(institution):
    """Banks served by several providers are listed once: by BIC, else by name."""
    return (institution.bic or "").upper()[:8] or " ".join(institution.name.lower().split())


class AccountOnlineConnectWizard(models.TransientModel):
    """Add a Bank Account: find the institution, then go to its consent page."""
    _name = "account.online.connect.wizard"
    _description = "Add a Bank Account"

    country_id = fields.Many2one(
        "res.country", default=lambda self: self.env.company.account_fiscal_country_id)
    search_text = fields.Char(string="Bank name")
    journal_id = fields.Many2one("account.journal", domain=[("type", "=", "bank")],
                                 help="Journal to link the first matching account to.")
    institution_ids = fields.One2many("account.online.connect.institution", "wizard_id",
                                      string="Institutions")
    search_message = fields.Char(readonly=True)
    needs_security_contact = fields.Boolean(
        default=lambda self: not self.env.company.online_sync_security_contact)
    security_contact = fields.Char(
        help="Phone number or e-mail address the provider may use to check it is really your "
             "company connecting its bank accounts. Asked once per company.")

    @api.model
    def default_get(self, fields_list):
        """Open with the banks of the company's country already listed."""
        values = super().default_get(fields_list)
        if "institution_ids" in fields_list:
            country = self.env["res.country"].browse(values.get("country_id"))
            lines, message = self._find_institutions(country, values.get("search_text"))
            values.update(institution_ids=[(0, 0, line) for line in lines],
                          search_message=message)
        return values

    @api.model_create_multi
    def create(self, vals_list):
        wizards = super().create(vals_list)
        for wizard, vals in zip(wizards, vals_list):
            # Not what the defaults listed; a wizard saved from the form keeps the banks it shows.
            if ("search_text" in vals or "country_id" in vals) and "institution_ids" not in vals:
                wizard._search_institutions()
        return wizards

    def _providers(self):
        Provider = self.env["account.online.provider"]
        providers = Provider.sudo().search([("company_id", "=", self.env.company.id)])
        if not providers.filtered(lambda p: p.code == "sandbox"):
            providers |= Provider._for_company("sandbox", self.env.company)
        return providers.sorted("sequence")

    @api.model
    def _find_institutions(self, country, search_text):
        """Ask every configured provider; one line per bank, with the providers serving it."""
        found, problems = {}, []
        for provider in self._providers():
            client = ProxyClient(provider.code, provider._client_config())
            try:
                institutions = client.institutions(country=country.code or None,
                                                   query=search_text or None)
            except ProviderError as error:
                problems.append(_("%(provider)s could not list its banks (reference %(ref)s).",
                                  provider=provider.name, ref=error.reference))
                continue
            for institution in institutions:
                entry = found.setdefault(_institution_key(institution), {
                    "name": institution.name, "bic": institution.bic,
                    "logo_url": institution.logo_url, "beta": institution.beta,
                    "identifiers": {}, "provider_ids": []})
                entry["identifiers"][str(provider.id)] = institution.external_id
                entry["provider_ids"].append(provider.id)
                entry["beta"] = entry["beta"] and institution.beta
        lines = [{
            "name": entry["name"], "bic": entry["bic"], "logo_url": entry["logo_url"],
            "beta": entry["beta"], "identifiers": json.dumps(entry["identifiers"]),
            "provider_ids": [(6, 0, entry["provider_ids"])],
            "provider_id": entry["provider_ids"][0],
        } for entry in sorted(found.values(), key=lambda e: e["name"].lower())]
        message = " ".join(problems)
        if not found:
            message = (message + " " + _("No bank matches this search.")).strip()
        return lines, message or False

    def _search_institutions(self):
        self.ensure_one()
        lines, message = self._find_institutions(self.country_id, self.search_text)
        self.institution_ids = [(5, 0, 0)] + [(0, 0, line) for line in lines]
        self.search_message = message

    @api.model
    def action_open(self):
        """Open the wizard already saved, with the country's banks listed: the web client refuses
        a row's button (Connect) while the wizard is a new, unsaved record."""
        return self.create({})._action_reopen()

    def action_search(self):
        self.ensure_one()
        self._search_institutions()
        return self._action_reopen()

    def _action_reopen(self):
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
    _description = "Bank offered by the providers"

    wizard_id = fields.Many2one("account.online.connect.wizard", required=True,
                                ondelete="cascade")
    name = fields.Char(required=True)
    bic = fields.Char(string="BIC")
    logo_url = fields.Char()
    beta = fields.Boolean(help="The provider's connection to this bank is still in test.")
    identifiers = fields.Char(help="The bank's id at each provider (JSON).")
    provider_ids = fields.Many2many("account.online.provider", string="Providers")
    provider_id = fields.Many2one("account.online.provider", string="Through",
                                  domain="[('id', 'in', provider_ids)]")
    identifier = fields.Char(compute="_compute_identifier")
    several_providers = fields.Boolean(compute="_compute_several_providers")

    @api.depends("provider_ids")
    def _compute_several_providers(self):
        for line in self:
            line.several_providers = len(line.provider_ids) > 1

    @api.depends("identifiers", "provider_id")
    def _compute_identifier(self):
        for line in self:
            line.identifier = json.loads(line.identifiers or "{}").get(str(line.provider_id.id))

    def action_connect(self):
        """Send the browser to the provider's consent page; it comes back to our callback."""
        self.ensure_one()
        if not (self.env.is_superuser() or self.env.user.has_group("account.group_account_manager")):
            raise UserError(_("Only accounting managers can connect a bank."))
        wizard = self.wizard_id
        company = self.env.company
        if not company.online_sync_security_contact:
            if not wizard.security_contact:
                raise UserError(_(
                    "Give a security contact (phone or e-mail) first: it is asked once, at the "
                    "first bank connection of %s.", company.name))
            company.sudo().online_sync_security_contact = wizard.security_contact
        url = self.env["account.online.consent.request"]._start(
            self.provider_id.code,
            {"identifier": self.identifier, "name": self.name, "logo_url": self.logo_url},
            company, journal=wizard.journal_id)
        return {"type": "ir.actions.act_url", "url": url, "target": "self"}
