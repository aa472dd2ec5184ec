from odoo import _, api, fields, models
from odoo.exceptions import UserError


class AccountDuplicateTransactionWizard(models.TransientModel):
    """Find Duplicates: groups of statement lines that look like the same bank transaction."""
    _name = "account.duplicate.transaction.wizard"
    _description = "Find duplicate bank transactions"

    journal_id = fields.Many2one("account.journal", required=True, domain=[("type", "=", "bank")])
    date_from = fields.Date(string="From", help="Leave empty to search the whole journal.")
    line_ids = fields.One2many("account.duplicate.transaction.line", "wizard_id")
    group_count = fields.Integer(compute="_compute_group_count")

    @api.depends("line_ids.group")
    def _compute_group_count(self):
        for wizard in self:
            wizard.group_count = len(set(wizard.line_ids.mapped("group")))

    @api.model_create_multi
    def create(self, vals_list):
        wizards = super().create(vals_list)
        for wizard in wizards:
            wizard._search_duplicates()
        return wizards

    def _search_duplicates(self):
        self.ensure_one()
        groups = self.journal_id._online_sync_duplicate_groups(self.date_from)
        lines = self.env["account.bank.statement.line"].browse(
            [line_id for group in groups for line_id in group])
        by_id = {line.id: line for line in lines}
        values = [(5, 0, 0)]
        for number, group in enumerate(groups, start=1):
            ordered = sorted((by_id[i] for i in group),
                             key=lambda l: (not l.online_transaction_identifier, l.id))
            for position, line in enumerate(ordered):
                values.append((0, 0, {
                    "group": number,
                    "statement_line_id": line.id,
                    # Keep the first (synchronized if any) line of each group.
                    "to_delete": position > 0 and not line.is_reconciled,
                }))
        self.line_ids = values

    def action_search(self):
        self._search_duplicates()
        return self._reopen()

    def _reopen(self):
        return {"type": "ir.actions.act_window", "res_model": self._name, "res_id": self.id,
                "view_mode": "form", "target": "new", "name": _("Find Duplicates")}

    def action_delete(self):
        self.ensure_one()
        chosen = self.line_ids.filtered("to_delete").statement_line_id
        if not chosen:
            raise UserError(_("Select the lines to delete first."))
        if not chosen.has_access("unlink"):
            raise UserError(_(
                "Your access rights do not allow deleting bank transactions. Ask an administrator "
                "for the accounting rights \"Show Full Accounting Features\", or to delete the "
                "selected lines."))
        reconciled = chosen.filtered("is_reconciled")
        if reconciled:
            raise UserError(_(
                "%s of the selected lines are reconciled; undo their reconciliation before "
                "deleting them.", len(reconciled)))
        count = len(chosen)
        chosen.unlink()
        self.journal_id.account_online_account_id.possible_duplicates = False
        self.journal_id.message_post(
            body=_("%s duplicate bank transactions deleted with Find Duplicates.", count),
            subtype_xmlid="mail.mt_note")
        self._search_duplicates()
        return self._reopen()


class AccountDuplicateTransactionLine(models.TransientModel):
    _name = "account.duplicate.transaction.line"
    _description = "Possible duplicate bank transaction"
    _order = "group, id"

    wizard_id = fields.Many2one("account.duplicate.transaction.wizard", required=True,
                                ondelete="cascade")
    group = fields.Integer(required=True)
    statement_line_id = fields.Many2one("account.bank.statement.line", required=True,
                                        ondelete="cascade")
    date = fields.Date(related="statement_line_id.date")
    payment_ref = fields.Char(related="statement_line_id.payment_ref")
    partner_name = fields.Char(related="statement_line_id.partner_name")
    account_number = fields.Char(related="statement_line_id.account_number")
    amount = fields.Monetary(related="statement_line_id.amount")
    currency_id = fields.Many2one(related="statement_line_id.currency_id")
    is_reconciled = fields.Boolean(related="statement_line_id.is_reconciled")
    origin = fields.Selection([("online", "Synchronized"), ("other", "Imported or manual")],
                              compute="_compute_origin")
    to_delete = fields.Boolean(string="Delete")

    @api.depends("statement_line_id.online_transaction_identifier")
    def _compute_origin(self):
        for line in self:
            line.origin = "online" if line.statement_line_id.online_transaction_identifier else "other"
