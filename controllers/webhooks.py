from odoo import SUPERUSER_ID, http
from odoo.http import request

from ..models.account_online_provider_webhook import WEBHOOK_PATH


class OnlineSyncWebhookController(http.Controller):

    @http.route([f"{WEBHOOK_PATH}/<string:provider_code>",
                 f"{WEBHOOK_PATH}/<string:provider_code>/<string:callback>"],
                type="http", auth="public", methods=["POST"], csrf=False, save_session=False,
                readonly=False)
    def webhook(self, provider_code, callback=None, **_params):
        """A provider's webhook: verified, then applied; answers with a status and no detail."""
        httprequest = request.httprequest
        body = httprequest.get_data(cache=True)
        env = request.env(user=SUPERUSER_ID)  # notes are posted by OdooBot, not the public user
        configured = env["account.online.provider"]._webhook_url(provider_code)
        if callback:
            configured += f"/{callback}"
        # Salt Edge signs the URL it posted to: ours as configured, or as received.
        urls = list(dict.fromkeys([configured, httprequest.url]))
        status = env["account.online.link"]._receive_webhook(
            provider_code, dict(httprequest.headers), body, urls, callback)
        return request.make_response(b"", status=status)
