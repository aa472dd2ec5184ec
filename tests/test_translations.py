from odoo.tests import TransactionCase, tagged

from ..models.online_sync_errors import error_advice, error_title
from ..services.errors import ErrorCategory


@tagged("post_install", "-at_install")
class TestTranslations(TransactionCase):

    def test_messages_and_labels_are_translated(self):
        expected = {
            "nl_BE": ("Je bank vraagt een actie van je", "Nu synchroniseren"),
            "fr_BE": ("Votre banque attend une action de votre part", "Synchroniser maintenant"),
            "vi_VN": ("Ngân hàng của bạn cần bạn thực hiện thao tác", None),
        }
        for lang, (title, _button) in expected.items():
            self.env["res.lang"]._activate_lang(lang)
            self.env["ir.module.module"]._load_module_terms(["account_online_synchronization"],
                                                            [lang], overwrite=True)
            env = self.env(context=dict(self.env.context, lang=lang))
            self.assertEqual(error_title(env, ErrorCategory.USER_ACTION_REQUIRED), title)
            advice = error_advice(env, ErrorCategory.AUTH_EXPIRED)
            self.assertNotEqual(advice, error_advice(self.env, ErrorCategory.AUTH_EXPIRED), lang)
            label = env["ir.model.fields"]._get("account.online.link", "auto_sync") \
                .with_context(lang=lang).field_description
            self.assertNotEqual(label, "Automatic synchronization", lang)
        button = self.env.ref("account_online_synchronization.account_journal_dashboard_kanban_view_online_sync")
        arch = button.with_context(lang="nl_BE").arch
        self.assertIn("Nu synchroniseren", arch)
