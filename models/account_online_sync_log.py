from odoo import fields, models

from .online_sync_errors import ERROR_CATEGORY_SELECTION


class AccountOnlineSyncLog(models.Model):
    """One row per account per synchronization run."""
    _name = "account.online.sync.log"
    _description = "Online Synchronization Log"
    _order = "create_date desc, id desc"
    _rec_name = "online_account_id"

    link_id = fields.Many2one("account.online.link", string="Connection", required=True,
                              ondelete="cascade", index=True)
    online_account_id = fields.Many2one("account.online.account", string="Account",
                                        ondelete="cascade", index=True)
    journal_id = fields.Many2one("account.journal", ondelete="set null")
    company_id = fields.Many2one(related="link_id.company_id", store=True, index=True)
    trigger = fields.Selection(
        [("manual", "Manual"), ("cron", "Scheduled"), ("first", "First synchronization")],
        required=True, default="manual")
    outcome = fields.Selection([("success", "Success"), ("failed", "Failed")], required=True)
    date_from = fields.Date(string="From")
    date_to = fields.Date(string="To")
    fetched = fields.Integer(help="Transactions the provider returned (booked and pending).")
    created = fields.Integer(string="Imported", help="New statement lines created.")
    duplicates = fields.Integer(string="Skipped as duplicate")
    pending = fields.Integer(string="Pending seen")
    duration = fields.Float(string="Duration (s)", digits=(16, 2))
    error_category = fields.Selection(ERROR_CATEGORY_SELECTION)
    error_reference = fields.Char()
    error_message = fields.Text()
