from odoo import fields, models
from odoo.tools.sql import index_exists


UNIQUE_INDEX = "account_bank_statement_line_online_identifier_uniq"


class AccountBankStatementLine(models.Model):
    _inherit = "account.bank.statement.line"

    online_transaction_identifier = fields.Char(readonly=True, copy=False)
    online_account_id = fields.Many2one("account.online.account", readonly=True, copy=False,
                                        ondelete="set null", index="btree_not_null")
    online_link_id = fields.Many2one(related="online_account_id.account_online_link_id",
                                     store=True, string="Bank Connection")

    def init(self):
        super().init()
        # The database, not only the code, refuses the same bank transaction twice in a journal.
        if not index_exists(self.env.cr, UNIQUE_INDEX):
            self.env.cr.execute(f"""
                CREATE UNIQUE INDEX {UNIQUE_INDEX}
                    ON account_bank_statement_line (journal_id, online_transaction_identifier)
                 WHERE online_transaction_identifier IS NOT NULL
            """)
