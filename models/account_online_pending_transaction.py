from odoo import fields, models


class AccountOnlinePendingTransaction(models.Model):
    """A transaction the bank shows as pending: listed, never posted.

    The list of an account is replaced at every synchronization, so a transaction that posts
    leaves it and arrives as a normal statement line.
    """
    _name = "account.online.pending.transaction"
    _description = "Pending bank transaction"
    _order = "date desc, id desc"

    online_account_id = fields.Many2one("account.online.account", required=True,
                                        ondelete="cascade", index=True)
    journal_id = fields.Many2one(related="online_account_id.journal_id")
    company_id = fields.Many2one(related="online_account_id.company_id", store=True)
    date = fields.Date(required=True)
    payment_ref = fields.Char(string="Label")
    partner_name = fields.Char()
    amount = fields.Monetary(currency_field="currency_id")
    currency_id = fields.Many2one("res.currency")
    online_transaction_identifier = fields.Char(readonly=True)
