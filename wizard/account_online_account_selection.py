from odoo import _, api, fields, models
from odoo.exceptions import UserError


def _normalize_number(number):
    return "".join((number or "").split()).upper()


class AccountOnlineAccountSelection(models.TransientModel):
    """After consent: choose the accounts to synchronize and the journal of each."""
    _name = "account.online.account.selection"
    _description = "Choose the accounts to synchronize"

    link_id = fields.Many2one("account.online.link", required=True, ondelete="cascade")
    journal_id = fields.Many2one("account.journal",
                                 help="Journal the user started from, suggested first.")
    line_ids = fields.One2many("account.online.account.selection.line", "wizard_id")

    @api.model_create_multi
    def create(self, vals_list):
        wizards = super().create(vals_list)
        for wizard in wizards.filtered(lambda w: not w.line_ids):
            wizard.line_ids = [(0, 0, {
                "online_account_id": account.id,
                "journal_id": wizard._suggest_journal(account).id,
            }) for account in wizard.link_id.account_online_account_ids.filtered(
                lambda a: not a.journal_ids)]
        return wizards

    def _suggest_journal(self, account):
        """A free bank journal with the same number and currency, else the starting journal."""
        company = self.link_id.company_id
        free = self.env["account.journal"].search([
            ("type", "=", "bank"), ("company_id", "=", company.id),
            ("account_online_account_id", "=", False),
        ])
        free = free.filtered(lambda j: (j.currency_id or company.currency_id) == account.currency_id)
        number = _normalize_number(account.account_number)
        by_number = free.filtered(
            lambda j: number and _normalize_number(j.bank_acc_number) == number)
        if by_number:
            return by_number[0]
        if self.journal_id in free:
            return self.journal_id
        return self.env["account.journal"]

    def action_confirm(self):
        self.ensure_one()
        selected = self.line_ids.filtered("selected")
        if not selected:
            raise UserError(_("Select at least one account to synchronize."))
        used = selected.journal_id
        if len(used) != len(selected.filtered("journal_id")):
            raise UserError(_("Each journal can receive one online account only."))
        accounts = self.env["account.online.account"]
        for line in selected:
            line._link_journal()
            accounts |= line.online_account_id
        result = self.link_id._synchronize(trigger="first", accounts=accounts)
        action = result.notification_action()
        action["params"]["next"] = self.env["ir.actions.act_window"]._for_xml_id(
            "account.open_account_journal_dashboard_kanban")
        return action


class AccountOnlineAccountSelectionLine(models.TransientModel):
    _name = "account.online.account.selection.line"
    _description = "Account to synchronize"

    wizard_id = fields.Many2one("account.online.account.selection", required=True,
                                ondelete="cascade")
    online_account_id = fields.Many2one("account.online.account", required=True,
                                        ondelete="cascade")
    name = fields.Char(related="online_account_id.name")
    account_number = fields.Char(related="online_account_id.account_number")
    currency_id = fields.Many2one(related="online_account_id.currency_id")
    balance = fields.Monetary(related="online_account_id.balance", currency_field="currency_id")
    selected = fields.Boolean(string="Synchronize", default=True)
    journal_id = fields.Many2one(
        "account.journal", string="Journal",
        domain="[('type', '=', 'bank'), ('account_online_account_id', '=', False)]",
        help="Leave empty to create a new bank journal.")

    def _link_journal(self):
        self.ensure_one()
        account = self.online_account_id
        company = self.wizard_id.link_id.company_id
        journal = self.journal_id
        if not journal:
            # Its bank account (res.partner.bank) needs contact rights an accounting manager may
            # lack; creating the journal is part of connecting, which the manager may do.
            journal = self.env["account.journal"].sudo().with_company(company).create({
                "name": account.name,
                "type": "bank",
                "company_id": company.id,
                "currency_id": account.currency_id.id
                if account.currency_id != company.currency_id else False,
                "bank_acc_number": account.account_number,
            }).sudo(False)
        journal_currency = journal.currency_id or company.currency_id
        if account.currency_id and account.currency_id != journal_currency:
            if journal.has_entries:
                raise UserError(_(
                    "The account %(account)s is in %(currency)s but the journal %(journal)s "
                    "already has entries in %(journal_currency)s. Choose another journal or "
                    "leave it empty to create one.", account=account.name,
                    currency=account.currency_id.name, journal=journal.name,
                    journal_currency=journal_currency.name))
            journal.currency_id = account.currency_id
        journal.write({"account_online_account_id": account.id,
                       "bank_statements_source": "online_sync"})
        return journal
