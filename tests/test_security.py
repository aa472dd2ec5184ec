from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from .common import OnlineSyncCase


@tagged("post_install", "-at_install")
class TestSecurity(OnlineSyncCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.readonly = new_test_user(cls.env, "os_readonly", groups="account.group_account_readonly")
        cls.accountant = new_test_user(cls.env, "os_user", groups="account.group_account_user")
        cls.manager = new_test_user(cls.env, "os_manager",
                                    groups="account.group_account_manager,base.group_user")

    def test_access_rights(self):
        link = self._connect(sync=False)
        # Read-only accountants see the connection, change nothing, cannot sync.
        as_readonly = link.with_user(self.readonly)
        self.assertEqual(as_readonly.name, "Sandbox Bank")
        with self.assertRaises(AccessError):
            as_readonly.write({"auto_sync": False})
        with self.assertRaises(UserError):
            as_readonly.action_fetch_transactions()
        # Accountants may synchronize.
        action = link.with_user(self.accountant).action_fetch_transactions()
        self.assertEqual(action["params"]["type"], "success")
        # Managers manage connections but never read secrets; admins can.
        link.with_user(self.manager).write({"auto_sync": False})
        self.assertFalse(link.auto_sync)
        for user in (self.readonly, self.accountant, self.manager):
            with self.assertRaises(AccessError):
                link.with_user(user).read(["encrypted_credentials"])
        self.assertTrue(link.with_user(self.env.ref("base.user_admin")).read(
            ["encrypted_credentials"])[0]["encrypted_credentials"])
        provider = self.env["account.online.provider"]._for_company("sandbox", self.company)
        with self.assertRaises(AccessError):
            provider.with_user(self.manager).write({"base_url": "http://127.0.0.1:1"})

    def test_a_manager_connects_and_synchronizes_without_superuser_rights(self):
        manager_env = self.env(user=self.manager)
        params = self._give_consent(env=manager_env)
        link, _journal = manager_env["account.online.consent.request"]._complete(params)
        selection = manager_env["account.online.account.selection"].create({"link_id": link.id})
        action = selection.action_confirm()
        self.assertEqual(action["params"]["type"], "success")
        eur = self._eur_account(link)
        self.assertTrue(self._journal_txn_ids(eur.journal_id))
        self.assertTrue(eur.pending_transaction_ids)
        self.assertEqual(link.with_user(self.manager).action_fetch_transactions()["params"]["type"],
                         "success")

    def test_two_companies(self):
        company_b = self.env["res.company"].create({"name": "Company B",
                                                    "currency_id": self.env.ref("base.EUR").id})
        self.env["account.chart.template"].try_loading("generic_coa", company_b, install_demo=False)
        self._configure_sandbox(company_b)
        link_a = self._connect()
        link_b = self._connect(company=company_b)
        self.assertEqual(link_b.company_id, company_b)
        self.assertEqual(link_b.journal_ids.company_id, company_b)
        self.assertTrue(self._journal_txn_ids(self._eur_account(link_b).journal_id))
        user_b = new_test_user(self.env, "os_user_b", groups="account.group_account_manager",
                               company_id=company_b.id, company_ids=[(6, 0, company_b.ids)])
        visible = self.env["account.online.link"].with_user(user_b).search([])
        self.assertEqual(visible, link_b)
        with self.assertRaises(AccessError):
            link_a.with_user(user_b).read(["name"])
        logs_b = self.env["account.online.sync.log"].with_user(user_b).search([])
        self.assertEqual(logs_b.link_id, link_b)
