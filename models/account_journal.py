from decimal import Decimal

from odoo import _, fields, models
from odoo.exceptions import UserError

from ..services import identity
from ..services import sync as sync_planning

#: Lines written per set-based batch (each starts with one line through Odoo's create()).
CREATE_CHUNK_SIZE = 5000
# Statement lines of one day are ordered by descending sequence: this one comes first.
OPENING_LINE_SEQUENCE = 2**31 - 1


class AccountJournal(models.Model):
    # Same class name as in `account`: the bank statement source hook below is name-mangled.
    _inherit = "account.journal"

    account_online_account_id = fields.Many2one(
        "account.online.account", string="Online Account", copy=False, ondelete="set null",
        index="btree_not_null", check_company=False)
    account_online_link_id = fields.Many2one(
        related="account_online_account_id.account_online_link_id", store=True,
        string="Bank Connection")
    account_online_link_state = fields.Selection(related="account_online_link_id.state",
                                                 string="Connection State")
    online_sync_statement_periodicity = fields.Selection(
        [("none", "No statement"), ("day", "Daily"), ("week", "Weekly"),
         ("bimonthly", "Twice a month"), ("month", "Monthly")],
        string="Statements of synchronized lines", default="month", required=True,
        help="How synchronized transactions are grouped into bank statements.")

    online_sync_renewal_contact_email = fields.Char(
        string="Connection requests",
        help="Comma-separated e-mail addresses reminded before the bank consent expires.")

    _sql_constraints = [
        ("account_online_account_uniq", "unique(account_online_account_id)",
         "An online account can be linked to one journal only."),
    ]

    def __get_bank_statements_available_sources(self):
        sources = super().__get_bank_statements_available_sources()
        sources.append(("online_sync", _("Online Synchronization")))
        return sources

    # ------------------------------------------------------------------ actions
    def action_online_sync_now(self):
        """Synchronize Now, from the dashboard card."""
        self.ensure_one()
        if not self.account_online_account_id:
            raise UserError(_("The journal %s is not linked to a bank connection.", self.name))
        return self.account_online_link_id._manual_synchronize(
            accounts=self.account_online_account_id)

    def action_online_reconnect(self):
        """Reconnect Bank, from the dashboard card."""
        self.ensure_one()
        return self.account_online_link_id.action_reconnect()

    def action_open_online_sync_logs(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "account_online_synchronization.action_account_online_sync_log")
        action["domain"] = [("journal_id", "=", self.id)]
        return action

    def action_open_online_link(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "account.online.link",
            "res_id": self.account_online_link_id.id,
            "view_mode": "form",
            "target": "current",
        }

    def action_open_online_sync_connect(self):
        """Connect bank: the Add a Bank Account wizard, targeting this journal."""
        self.ensure_one()
        return self.env["account.online.connect.wizard"].with_context(
            default_journal_id=self.id).action_open()

    # ------------------------------------------------------------------ import of lines
    def _online_sync_last_line_date(self):
        self.ensure_one()
        [(last_date,)] = self.env["account.bank.statement.line"].sudo()._read_group(
            [("journal_id", "=", self.id)], aggregates=["date:max"])
        return last_date

    def _online_sync_currency(self):
        return self.currency_id or self.company_id.currency_id

    def _online_sync_balance(self):
        """The balance of every statement line of the journal, as Decimal: one sum."""
        self.ensure_one()
        [(total,)] = self.env["account.bank.statement.line"].sudo()._read_group(
            [("journal_id", "=", self.id)], aggregates=["amount:sum"])
        return Decimal(str(round(total or 0.0, self._online_sync_currency().decimal_places)))

    def _online_sync_balance_by_day(self):
        """(balance, {day: total}) of every statement line of the journal, as Decimal."""
        self.ensure_one()
        groups = self.env["account.bank.statement.line"].sudo()._read_group(
            [("journal_id", "=", self.id)], ["date:day"], ["amount:sum"])
        digits = self._online_sync_currency().decimal_places
        per_day = {day: Decimal(str(round(total, digits))) for day, total in groups}
        return sum(per_day.values(), Decimal(0)), per_day

    def _online_sync_create_opening_line(self, bank_balance, transactions):
        """First synchronization: an opening line makes the journal balance equal the bank's
        once ``transactions`` (the new booked ones, about to be imported) are in."""
        self.ensure_one()
        balance, _per_day = self._online_sync_balance_by_day()
        amount = float(bank_balance - balance - sum(t.amount for t in transactions))
        if self._online_sync_currency().is_zero(amount):
            return self.env["account.bank.statement.line"]
        first_date = min(t.date for t in transactions)
        opening = self.env["account.bank.statement.line"].sudo().with_company(self.company_id).create({
            "journal_id": self.id,
            "date": first_date,
            "payment_ref": _("Opening balance (first synchronization)"),
            "amount": amount,
            "sequence": OPENING_LINE_SEQUENCE,
        })
        period = sync_planning.statement_period(first_date, self.online_sync_statement_periodicity)
        if period:
            self._online_sync_attach_to_statement(period, opening)
        return opening

    def _online_sync_known_identifiers(self, identifiers):
        """The subset of ``identifiers`` already in this journal: one query for the batch."""
        self.ensure_one()
        if not identifiers:
            return set()
        self.env["account.bank.statement.line"].flush_model(
            ["journal_id", "online_transaction_identifier"])
        self.env.cr.execute("""
            SELECT online_transaction_identifier
              FROM account_bank_statement_line
             WHERE journal_id = %s AND online_transaction_identifier = ANY(%s)
        """, [self.id, list(identifiers)])
        return {row[0] for row in self.env.cr.fetchall()}

    def _bank_import_content_counts(self, days):
        """{(day, amount): number of identified lines} of this journal on ``days``: one query."""
        self.ensure_one()
        if not days:
            return {}
        self.env["account.bank.statement.line"].flush_model(
            ["journal_id", "online_transaction_identifier", "amount", "move_id"])
        self.env["account.move"].flush_model(["date"])
        self.env.cr.execute("""
            SELECT move.date, ROUND(line.amount::numeric, 2), COUNT(*)
              FROM account_bank_statement_line line
              JOIN account_move move ON move.id = line.move_id
             WHERE line.journal_id = %s AND line.online_transaction_identifier IS NOT NULL
               AND move.date = ANY(%s)
          GROUP BY move.date, ROUND(line.amount::numeric, 2)
        """, [self.id, sorted(days)])
        return {identity.content_key(day, amount): count
                for day, amount, count in self.env.cr.fetchall()}

    def _bank_import_plan(self, transactions, identifier):
        """Split booked ``transactions`` of one source into new ones and ones already in the
        journal (same identifier, or same day and amount as lines of another import): two
        queries whatever the size of the batch or of the journal."""
        self.ensure_one()
        known = self._online_sync_known_identifiers([identifier(t) for t in transactions])
        counts = self._bank_import_content_counts({t.date for t in transactions})
        return identity.plan_import(transactions, identifier, known, counts)

    def _online_sync_line_values(self, online_account, transaction, identifier):
        values = {
            "journal_id": self.id,
            "date": transaction.date,
            "amount": float(transaction.amount),
            "payment_ref": transaction.description or transaction.structured_reference or "/",
            "partner_name": transaction.counterparty_name or False,
            "account_number": transaction.counterparty_iban or False,
            "online_transaction_identifier": identifier(transaction),
            "online_account_id": online_account.id,
            "transaction_details": {
                key: value for key, value in {
                    "reference": transaction.structured_reference,
                    "value_date": transaction.value_date and transaction.value_date.isoformat(),
                    "counterparty_bic": transaction.counterparty_bic,
                    "end_to_end_id": transaction.end_to_end_id,
                    "bank_transaction_code": transaction.bank_transaction_code,
                }.items() if value
            },
        }
        if transaction.structured_reference:
            values["ref"] = transaction.structured_reference
        journal_currency = self.currency_id or self.company_id.currency_id
        if transaction.original_currency and transaction.original_amount is not None \
                and transaction.original_currency != journal_currency.name:
            currency = self.env["res.currency"].with_context(active_test=False).search(
                [("name", "=", transaction.original_currency)], limit=1)
            if currency and not currency.active:
                currency.sudo().active = True  # a line in an inactive currency cannot be posted
            if currency:
                values.update(foreign_currency_id=currency.id,
                              amount_currency=float(transaction.original_amount))
        return values

    def _online_sync_create_lines(self, online_account, transactions, identifier):
        """Create statement lines for new booked transactions, in batches, grouped in statements."""
        self.ensure_one()
        if not transactions:
            return self.env["account.bank.statement.line"]
        lines = self.env["account.bank.statement.line"]
        groups = sync_planning.group_by_statement(transactions, self.online_sync_statement_periodicity)
        for period, period_transactions in groups.items():
            statement = period and self._online_sync_statement(period)
            vals_list = [self._online_sync_line_values(online_account, txn, identifier)
                         for txn in period_transactions]
            if statement:  # created straight into the period's statement
                for vals in vals_list:
                    vals["statement_id"] = statement.id
            period_lines = self._bank_import_create_lines(vals_list)
            if statement:
                statement.balance_end_real = statement.balance_end
            elif period:
                self._online_sync_attach_to_statement(period, period_lines)
            lines |= period_lines
        return lines

    def _bank_import_create_lines(self, vals_list):
        """Create statement lines of this journal from ``create()`` values, in date order: the
        one path every import (online synchronization, statement files) goes through. Same
        records as ``create()``, written set-based (see account_bank_statement_line_bulk.py)."""
        self.ensure_one()
        StatementLine = self.env["account.bank.statement.line"].sudo().with_company(self.company_id)
        StatementLine = StatementLine.with_context(tracking_disable=True)
        vals_list = sorted(vals_list, key=lambda v: (str(v["date"]), v.get("ref") or ""))
        lines = StatementLine
        for start in range(0, len(vals_list), CREATE_CHUNK_SIZE):
            lines |= StatementLine._bulk_create(self, vals_list[start:start + CREATE_CHUNK_SIZE])
        return self.env["account.bank.statement.line"].sudo().browse(lines.ids)

    def _online_sync_statement(self, period):
        """The journal's statement of synchronized lines for ``period``, if there is one."""
        return self.env["account.bank.statement"].sudo().search(
            [("journal_id", "=", self.id), ("online_period_start", "=", period[0])], limit=1)

    def _online_sync_attach_to_statement(self, period, lines):
        start, end = period
        Statement = self.env["account.bank.statement"].sudo()
        statement = self._online_sync_statement(period)
        if statement:
            statement.line_ids = [(4, line.id) for line in lines]
        else:
            statement = Statement.create({
                "name": self._online_sync_statement_name(start, end),
                "journal_id": self.id,
                "online_period_start": start,
                "line_ids": [(6, 0, lines.ids)],
            })
        statement.balance_end_real = statement.balance_end

    def _online_sync_statement_name(self, start, end):
        if self.online_sync_statement_periodicity == "month":
            label = start.strftime("%Y-%m")
        elif start == end:
            label = fields.Date.to_string(start)
        else:
            label = f"{fields.Date.to_string(start)} – {fields.Date.to_string(end)}"
        return _("%(journal)s %(period)s", journal=self.name, period=label)

    # ------------------------------------------------------------------ duplicates
    def _online_sync_duplicate_groups(self, date_from=None):
        """Lists of statement line ids that look like one bank transaction: the same
        identifier, or the same date, amount, currency and counterparty account number."""
        self.ensure_one()
        self.env["account.bank.statement.line"].flush_model()
        self.env["account.move"].flush_model(["date"])
        date_clause = "AND move.date >= %(date_from)s" if date_from else ""
        self.env.cr.execute(f"""
            SELECT array_agg(line.id ORDER BY line.id)
              FROM account_bank_statement_line line
              JOIN account_move move ON move.id = line.move_id
             WHERE line.journal_id = %(journal)s {date_clause}
          GROUP BY move.date, line.amount, COALESCE(line.foreign_currency_id, 0),
                   COALESCE(line.account_number, '')
            HAVING COUNT(*) > 1
             UNION
            SELECT array_agg(line.id ORDER BY line.id)
              FROM account_bank_statement_line line
             WHERE line.journal_id = %(journal)s AND line.online_transaction_identifier IS NOT NULL
          GROUP BY line.online_transaction_identifier
            HAVING COUNT(*) > 1
        """, {"journal": self.id, "date_from": date_from})
        return [row[0] for row in self.env.cr.fetchall()]

    def action_open_duplicates_wizard(self):
        self.ensure_one()
        wizard = self.env["account.duplicate.transaction.wizard"].create({"journal_id": self.id})
        return wizard._reopen()

    # ------------------------------------------------------------------ dashboard
    def _fill_bank_cash_dashboard_data(self, dashboard_data):
        super()._fill_bank_cash_dashboard_data(dashboard_data)
        for journal in self.filtered("account_online_account_id"):
            link = journal.account_online_link_id
            account = journal.account_online_account_id
            dashboard_data[journal.id]["online_sync"] = {
                "link_name": link.name,
                "state": link.state,
                "last_sync": link.last_refresh and fields.Datetime.to_string(
                    fields.Datetime.context_timestamp(journal, link.last_refresh))[:16],
                "fetched": account.last_sync_count,
                "error_reference": link.last_error_reference or "",
                "consent_until": link.expiring_synchronization_date
                and fields.Date.to_string(link.expiring_synchronization_date),
                "consent_days_left": link._days_left(),
                "possible_duplicates": account.possible_duplicates,
                "importing": account.fetching_status == "waiting",
                "import_done": account.import_done,
                "import_total": account.import_total,
            }
