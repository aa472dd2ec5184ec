from werkzeug.exceptions import BadRequest

from odoo import http
from odoo.exceptions import UserError
from odoo.http import request

from ..models.account_online_consent_request import CALLBACK_PATH


class OnlineSyncConsentController(http.Controller):

    @http.route(CALLBACK_PATH, type="http", auth="user", methods=["GET"], readonly=False)
    def consent_callback(self, **params):
        """The provider's hosted consent page sends the browser back here."""
        if not request.env["account.online.consent.request"]._callback_state(params):
            raise BadRequest()
        try:
            link, journal = request.env["account.online.consent.request"]._complete(params)
        except UserError as error:
            return request.render("account_online_synchronization.consent_failed",
                                  {"message": error.args[0]}, status=400)
        if not link.account_online_account_ids.filtered(lambda a: not a.journal_ids):
            # A renewal: every account found its journal again.
            return request.redirect(
                f"/odoo/action-account_online_synchronization.action_account_online_link/{link.id}")
        wizard = request.env["account.online.account.selection"].create({
            "link_id": link.id,
            "journal_id": journal.id if journal else False,
        })
        return request.redirect(
            f"/odoo/action-account_online_synchronization.action_account_online_account_selection"
            f"/{wizard.id}")
