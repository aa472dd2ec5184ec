"""Provider webhooks through the running Odoo server: each simulator signs and POSTs a real
webhook to the test server's URL; a verified one schedules that connection's synchronization
(cron trigger), a replayed or forged one is refused and schedules nothing."""
from datetime import timedelta

from odoo import fields
from odoo.tests import HttpCase, tagged

from ..simulators import catalog
from ..simulators.ponto import data as ponto_data
from .common import OnlineSyncCase

INSTITUTIONS = {"plaid": "ins_sim_eu_1", "saltedge": "fakebank_simple_xf",
                "ponto": ponto_data.ACCOUNTS[0]["institution_id"]}


@tagged("post_install", "-at_install")
class TestWebhooks(OnlineSyncCase, HttpCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["ir.config_parameter"].sudo().set_param("web.base.url", cls.base_url())
        cls.servers = {}
        for code in INSTITUTIONS:
            server, values = catalog.start(code)
            cls.addClassCleanup(server.stop)
            cls.servers[code] = server
            cls.env["account.online.provider"].create(dict(
                values, name=code, code=code, company_id=cls.company.id))
        cls.cron = cls.env.ref("account_online_synchronization.ir_cron_online_sync")

    def setUp(self):
        super().setUp()
        for code, server in self.servers.items():
            if code != "plaid":  # Salt Edge's and Ponto's dashboard setting; Plaid: per Item
                server.webhooks.url = self.env["account.online.provider"]._webhook_url(code)

    def _connect(self, code):
        requests = self.env["account.online.consent.request"]
        url = requests._start(code, {"identifier": INSTITUTIONS[code], "name": code},
                              self.company)
        link, _journal = requests._complete(catalog.SIMULATE_USER[code](url))
        self.assertEqual(link.provider_code, code)
        link.next_sync = fields.Datetime.now() + timedelta(hours=12)
        return link

    def _send(self, code, link, **knobs):
        self.env.flush_all()  # the server's request sees (and must not lose) our writes
        webhooks = self.servers[code].webhooks
        if code == "plaid":
            knobs.setdefault("webhook_code", "SYNC_UPDATES_AVAILABLE")
            status, _url = webhooks.send(link.consent_identifier, **knobs)
        elif code == "saltedge":
            status, _url = webhooks.send(link.consent_identifier, **knobs)
        else:
            if ".integration." not in knobs.get("event", ""):
                knobs.setdefault("account_id",
                                 link.account_online_account_ids[:1].online_identifier)
            status, _url = webhooks.send(organization_id=link.consent_identifier, **knobs)
        self.env.invalidate_all()
        return status

    def _triggers(self):
        return self.env["ir.cron.trigger"].search_count([("cron_id", "=", self.cron.id)])

    def _assert_scheduled(self, link, triggers_before):
        self.assertLessEqual(link.next_sync, fields.Datetime.now())
        self.assertGreater(self._triggers(), triggers_before)

    def _assert_nothing_scheduled(self, link, triggers_before):
        self.assertGreater(link.next_sync, fields.Datetime.now() + timedelta(hours=1))
        self.assertEqual(self._triggers(), triggers_before)

    def _check_sync_webhooks(self, code):
        link = self._connect(code)
        triggers = self._triggers()
        self.assertEqual(self._send(code, link), 200)
        self._assert_scheduled(link, triggers)

        link.next_sync = fields.Datetime.now() + timedelta(hours=12)
        triggers = self._triggers()
        self.env.flush_all()
        self.assertIn(self.servers[code].webhooks.replay(), (400, 401))  # the same request again
        self.env.invalidate_all()
        self._assert_nothing_scheduled(link, triggers)

        for forgery in ({"tamper": "signature"}, {"tamper": "body"}, {"age_seconds": 3600}):
            with self.subTest(provider=code, forgery=forgery):
                self.assertIn(self._send(code, link, **forgery), (400, 401))
                self._assert_nothing_scheduled(link, triggers)
        self.assertEqual(self.env["account.online.webhook.event"].search_count(
            [("provider_code", "=", code)]), 1)
        return link

    def test_plaid(self):
        link = self._check_sync_webhooks("plaid")
        self.assertIn("/account_online_synchronization/webhook/plaid",
                      self.servers["plaid"].webhooks.sent[0][0])
        self.assertEqual(self._send("plaid", link, webhook_code="PENDING_EXPIRATION"), 200)
        self.assertTrue(link.expiring_synchronization_date)
        self.assertIn("ends", link.message_ids[0].body)
        self.assertEqual(self._send("plaid", link, webhook_code="USER_PERMISSION_REVOKED"), 200)
        self.assertEqual(link.state, "disconnected")

    def test_saltedge(self):
        link = self._check_sync_webhooks("saltedge")
        self.assertEqual(self._send("saltedge", link, kind="fail",
                                    error_class="ConsentRevoked"), 200)
        self.assertEqual(link.state, "disconnected")

    def test_ponto(self):
        link = self._check_sync_webhooks("ponto")
        account = link.account_online_account_ids[:1]
        self.assertEqual(self._send("ponto", link, event="pontoConnect.integration.accountRevoked",
                                    account_id=account.online_identifier), 200)
        self.assertEqual(link.state, "connected")  # one account withdrawn: noted, others go on
        self.assertIn(account.name, link.message_ids[0].body)
        self.assertEqual(self._send("ponto", link, event="pontoConnect.integration.revoked"), 200)
        self.assertEqual(link.state, "disconnected")

    def test_unknown_provider_and_garbage(self):
        url = "/account_online_synchronization/webhook/"
        self.assertEqual(self.url_open(url + "gocardless", data=b"{}").status_code, 404)
        self.assertEqual(self.url_open(url + "plaid", data=b"not json").status_code, 400)
        self.assertEqual(self.url_open(url + "plaid", data=b'{"item_id": "x", "webhook_code":'
                                       b' "SYNC_UPDATES_AVAILABLE"}').status_code, 401)
