from urllib.parse import urlencode

from odoo.tests import HttpCase, tagged

from .common import OnlineSyncCase

CALLBACK = "/account_online_synchronization/consent/callback"


@tagged("post_install", "-at_install")
class TestConsentCallbackHttp(HttpCase, OnlineSyncCase):
    """The callback controller through real HTTP, as the browser reaches it."""

    def test_callback_creates_the_connection_and_opens_account_selection(self):
        self.authenticate("admin", "admin")
        params = self._give_consent(env=self.env(user=self.env.ref("base.user_admin")))
        response = self.url_open(CALLBACK + "?" + urlencode(params), allow_redirects=False)
        self.assertIn(response.status_code, (302, 303))
        self.assertIn("action_account_online_account_selection", response.headers["Location"])
        wizard_id = int(response.headers["Location"].rsplit("/", 1)[1])
        wizard = self.env["account.online.account.selection"].browse(wizard_id)
        self.assertEqual(len(wizard.line_ids), 2)
        self.assertEqual(wizard.link_id.state, "connected")

    def test_callback_with_a_bad_state_explains_and_creates_nothing(self):
        self.authenticate("admin", "admin")
        response = self.url_open(CALLBACK + "?code=x&state=forged", allow_redirects=False)
        self.assertEqual(response.status_code, 400)
        self.assertIn("unknown or has expired", response.text)
        self.assertFalse(self.env["account.online.link"].search([]))

    def test_callback_requires_a_login(self):
        response = self.url_open(CALLBACK + "?code=x&state=y", allow_redirects=False)
        self.assertIn(response.status_code, (302, 303))
        self.assertIn("/web/login", response.headers["Location"])
