from odoo import fields, models


class AccountBankStatement(models.Model):
    _inherit = "account.bank.statement"

    online_period_start = fields.Date(readonly=True, copy=False,
                                      help="First day of the period this synchronized statement covers.")
