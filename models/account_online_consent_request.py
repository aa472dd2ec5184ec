import hashlib
import hmac
import secrets
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..services.errors import ProviderError
from ..services.pkce import new_pkce_pair
from ..services.providers import callback_state_params
from ..services.proxy import ProxyClient

REQUEST_LIFETIME = timedelta(hours=1)
CALLBACK_PATH = "/account_online_synchronization/consent/callback"


def _hash_state(state):
    return hashlib.sha256(state.encode()).hexdigest()


class AccountOnlineConsentRequest(models.Model):
    """A consent the user was sent to give and has not come back from yet.

    Nothing else exists until the provider redirects back with a valid ``state``: a cancelled or
    failed consent leaves no half-made connection.
    """
    _name = "account.online.consent.request"
    _description = "Pending bank consent"

    state_hash = fields.Char(required=True, index=True)
    provider_code = fields.Char(required=True)
    institution_identifier = fields.Char(required=True)
    institution_name = fields.Char(required=True)
    institution_logo_url = fields.Char()
    company_id = fields.Many2one("res.company", required=True, ondelete="cascade")
    user_id = fields.Many2one("res.users", required=True, ondelete="cascade")
    journal_id = fields.Many2one("account.journal", ondelete="cascade")
    link_id = fields.Many2one("account.online.link", ondelete="cascade",
                              help="The connection whose consent is being renewed.")
    encrypted_verifier = fields.Text(groups="base.group_system")
    expires_at = fields.Datetime(required=True)

    @api.model
    def _callback_url(self):
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url")
        return base_url.rstrip("/") + CALLBACK_PATH

    @api.model
    def _start(self, provider_code, institution, company, journal=None, link=None):
        """Register the pending consent and return the provider's consent page URL.

        With ``link``, the consent renews that connection (Update Credentials, Reconnect).
        """
        state = secrets.token_urlsafe(32)
        verifier, challenge = new_pkce_pair()
        client = ProxyClient(provider_code,
                             self.env["account.online.provider"]._for_company(
                                 provider_code, company)._client_config())
        consent = link._consent() if link else None
        start = client.start_consent(institution["identifier"], self._callback_url(), state,
                                     code_challenge=challenge if client.uses_pkce else None,
                                     consent=consent)
        if link:
            link._set_credentials(consent.secrets)  # a renewal may have rotated the tokens
        self.sudo().create({
            "state_hash": _hash_state(state),
            "provider_code": provider_code,
            "institution_identifier": institution["identifier"],
            "institution_name": institution["name"],
            "institution_logo_url": institution.get("logo_url"),
            "company_id": company.id,
            "user_id": self.env.user.id,
            "journal_id": journal.id if journal else False,
            "link_id": link.id if link else False,
            "encrypted_verifier": self.env["account.online.secrets"]._seal({
                "code_verifier": verifier, **start.pending_data}),
            "expires_at": fields.Datetime.now() + REQUEST_LIFETIME,
        })
        return start.redirect_url

    @api.model
    def _find(self, state):
        if not state:
            return self.browse()
        request = self.sudo().search([("state_hash", "=", _hash_state(state))], limit=1)
        if not request or not hmac.compare_digest(request.state_hash, _hash_state(state)):
            return self.browse()
        if request.user_id != self.env.user or request.expires_at < fields.Datetime.now():
            return self.browse()
        return request

    @api.model
    def _callback_state(self, params):
        return next((params[key] for key in callback_state_params() if params.get(key)), None)

    @api.model
    def _complete(self, params):
        """Handle the provider's redirect. Returns the new link; raises UserError otherwise."""
        request = self._find(self._callback_state(params))
        if not request:
            raise UserError(_(
                "This bank authorization is unknown or has expired. Start again from "
                "Accounting > Configuration > Add a Bank Account."))
        pending = self.env["account.online.secrets"]._open(request.encrypted_verifier)
        company = request.company_id
        try:
            client = ProxyClient(request.provider_code,
                                 self.env["account.online.provider"]._for_company(
                                     request.provider_code, company)._client_config(),
                                 user_present=True)
            consent = client.complete_consent(
                dict(params), self._callback_url(),
                code_verifier=pending.pop("code_verifier", None), pending_data=pending)
            accounts = client.accounts(consent)
        except ProviderError as error:
            request.unlink()
            raise UserError(_(
                "The bank did not grant access: %(reason)s Nothing was created; you can start "
                "again from Add a Bank Account. (Reference: %(ref)s)",
                reason=error.user_message or error.message, ref=error.reference)) from error
        if request.link_id:
            link = request.link_id
            link._renew(consent, accounts)
            request.unlink()
            return link, self.env["account.journal"]
        link = self.env["account.online.link"].with_company(company).create({
            "name": request.institution_name,
            "provider_code": request.provider_code,
            "institution_identifier": request.institution_identifier,
            "institution_logo_url": request.institution_logo_url,
            "company_id": company.id,
            "state": "connected",
            "consent_identifier": consent.external_id,
            "expiring_synchronization_date": consent.valid_until and consent.valid_until.date(),
        })
        link._set_credentials(consent.secrets)
        link._create_online_accounts(accounts)
        journal = request.journal_id
        request.unlink()
        return link, journal

    @api.autovacuum
    def _gc_expired_requests(self):
        self.sudo().search([("expires_at", "<", fields.Datetime.now())]).unlink()
