import time
from datetime import timedelta
from functools import partial

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import format_date, formatLang

from ..services import sync as sync_planning
from ..services.errors import ProviderError
from ..services.fetch import FetchRequest, fetch_account


#: Transactions per chunk of a long import (each chunk ends at a day boundary).
IMPORT_CHUNK_SIZE = 2000


class AccountOnlineAccount(models.Model):
    """One account at the provider, linked to at most one bank journal."""
    _name = "account.online.account"
    _description = "Online Bank Account"
    _order = "account_online_link_id, name, id"

    name = fields.Char(string="Account Name", required=True)
    account_online_link_id = fields.Many2one("account.online.link", string="Connection",
                                             required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="account_online_link_id.company_id", store=True,
                                 index=True)
    online_identifier = fields.Char(string="Provider account id", readonly=True, required=True)
    stable_key = fields.Char(readonly=True, index=True,
                             help="IBAN or provider hash that survives a new consent.")
    account_number = fields.Char(readonly=True)
    currency_id = fields.Many2one("res.currency", readonly=True)
    balance = fields.Monetary(readonly=True, currency_field="currency_id")
    balance_date = fields.Date(readonly=True)
    journal_ids = fields.One2many("account.journal", "account_online_account_id",
                                  string="Linked Journals", domain=[("type", "=", "bank")])
    journal_id = fields.Many2one("account.journal", string="Journal", compute="_compute_journal_id")
    last_sync = fields.Date(
        string="Synchronized up to", readonly=True, copy=False,
        help="Date of the latest bank transaction imported; the next synchronization starts a "
             "few days before it.")
    sync_cursor = fields.Char(readonly=True, copy=False)
    fetching_status = fields.Selection(
        [("waiting", "Waiting"), ("processing", "Processing"), ("done", "Done")],
        default="done", readonly=True, copy=False)
    last_sync_count = fields.Integer(string="Transactions fetched last time", readonly=True)
    import_total = fields.Integer(
        string="Transactions to import", readonly=True, copy=False,
        help="New transactions found by the last synchronization.")
    import_done = fields.Integer(string="Transactions imported", readonly=True, copy=False)
    import_requested_by = fields.Many2one(
        "res.users", readonly=True, copy=False,
        help="Who asked for the running import: told of its progress.")
    pending_transaction_ids = fields.One2many("account.online.pending.transaction",
                                              "online_account_id", string="Pending transactions")
    possible_duplicates = fields.Boolean(
        readonly=True, copy=False,
        help="After a reconnect, some lines of the journal look like the same transaction.")
    check_duplicates = fields.Boolean(readonly=True, copy=False,
                                      help="Look for duplicates after the next synchronization.")
    balance_mismatch_date = fields.Date(
        readonly=True, copy=False,
        help="First day on which the bank's balance and the journal's differ, when they do.")

    @api.depends("journal_ids")
    def _compute_journal_id(self):
        for account in self:
            account.journal_id = account.journal_ids[:1]

    @api.constrains("journal_ids")
    def _check_one_journal(self):
        for account in self:
            if len(account.journal_ids) > 1:
                raise ValidationError(_(
                    "The online account %s can be linked to one journal only.", account.name))

    # ------------------------------------------------------------------ synchronization
    def _identifier_key(self):
        return self.stable_key or self.online_identifier

    def _plan_window(self, journal, max_history_days, last_line_date):
        lock_date = journal.company_id._get_user_fiscal_lock_date(journal, ignore_exceptions=True)
        return sync_planning.plan_window(
            fields.Date.context_today(self),
            watermark=self.last_sync,
            first_sync_from=last_line_date + timedelta(days=1) if last_line_date else None,
            lock_date=lock_date if lock_date and lock_date.year > 1 else None,
            max_history_days=max_history_days,
        )

    def _synchronize(self, client, consent, deadline=None, prefetched=None):
        """Fetch the window, import new booked transactions, refresh the balance.

        Runs inside the caller's savepoint; raises ProviderError on any provider failure before
        anything is written, so a failure leaves no partial lines. New transactions are imported
        oldest first, in chunks; past ``deadline`` (``time.monotonic()``) the rest is left for
        the next run: the watermark then stops at the last imported day, the provider's cursor
        is not advanced, and the next run fetches again from there (the identity check skips
        what is already in).
        """
        self.ensure_one()
        journal = self.journal_id
        request = self._fetch_request(client)
        last_line_date, window = request.last_line_date, request.window
        if prefetched is not None and prefetched.request == request:
            page, balances = prefetched.result()  # raises the fetch's ProviderError, if any
        else:
            page, balances = fetch_account(client, consent, request)
        identifier = partial(sync_planning.transaction_identifier, account_key=self._identifier_key())
        selection = sync_planning.select_new(page.added, set(), identifier, window)
        plan = journal._bank_import_plan(selection.new, identifier)
        self._replace_pending(selection.pending, identifier)
        bank_balance = self._update_balance(balances)
        if plan.new and not last_line_date and bank_balance is not None:
            journal._online_sync_create_opening_line(bank_balance, plan.new)
        lines, imported = self._import_in_chunks(journal, plan.new, identifier, deadline)
        complete = len(imported) == len(plan.new)
        values = {
            "last_sync": sync_planning.next_watermark(self.last_sync,
                                                      page.added if complete else imported),
            "fetching_status": "done" if complete else "waiting",
            "last_sync_count": len(lines),
            "import_total": len(plan.new),
            "import_done": len(imported),
        }
        if complete:
            values["sync_cursor"] = page.next_cursor or self.sync_cursor
            if page.removed_external_ids:
                self._withdraw_lines(journal, client.provider_code, page.removed_external_ids)
            if bank_balance is not None:
                self._check_balance(journal, bank_balance, page.added, client, consent)
            if self.check_duplicates:
                values.update(check_duplicates=False, possible_duplicates=bool(
                    journal._online_sync_duplicate_groups(window.date_from)))
        self.write(values)
        return {
            "fetched": len(page.added),
            "created": len(lines),
            "remaining": len(plan.new) - len(imported),
            "duplicates": selection.duplicates + plan.skipped_count(),
            "pending": len(selection.pending),
            "window": window,
        }

    def _fetch_request(self, client):
        """What to ask the provider for this account, from what the database knows."""
        last_line_date = self.journal_id._online_sync_last_line_date()
        return FetchRequest(
            account_id=self.online_identifier,
            window=self._plan_window(self.journal_id, client.max_history_days, last_line_date),
            cursor=self.sync_cursor or None,
            last_line_date=last_line_date,
        )

    def _withdraw_lines(self, journal, provider, external_ids):
        """The bank withdrew booked transactions (Plaid ``removed``): their lines go, unless
        reconciled or locked, which are kept and pointed out in the chatter for review."""
        key = self._identifier_key()
        lines = self.env["account.bank.statement.line"].sudo().search([
            ("journal_id", "=", journal.id),
            ("online_transaction_identifier", "in",
             [sync_planning.identifier_for(provider, key, ext_id) for ext_id in external_ids]),
        ])
        if not lines:
            return
        lock_date = journal.company_id._get_user_fiscal_lock_date(journal, ignore_exceptions=True)
        kept = lines.filtered(lambda line: line.is_reconciled or (lock_date and line.date <= lock_date))
        removed = lines - kept
        described = {line: _("%(date)s, %(amount)s, %(label)s", date=format_date(self.env, line.date),
                              amount=formatLang(self.env, line.amount, currency_obj=line.currency_id),
                              label=line.payment_ref or "")
                     for line in lines}
        parts = []
        if removed:
            parts.append(Markup("<p>%s</p><ul>%s</ul>") % (
                _("The bank withdrew these transactions; their lines were deleted:"),
                Markup().join(Markup("<li>%s</li>") % described[line] for line in removed)))
        if kept:
            parts.append(Markup("<p>%s</p><ul>%s</ul>") % (
                _("The bank withdrew these transactions, but their lines are reconciled or in a "
                  "locked period and were kept. Check them and undo the reconciliation or add a "
                  "correcting line if needed:"),
                Markup().join(Markup("<li>%s</li>") % described[line] for line in kept)))
        removed.unlink()
        journal.message_post(body=Markup().join(parts), subtype_xmlid="mail.mt_note")

    def _import_in_chunks(self, journal, transactions, identifier, deadline):
        """Import ``transactions`` (date order) chunk by chunk until done or past ``deadline``;
        a chunk never ends inside a day, so the watermark can stop at its last day."""
        chunk_size = int(self.env["ir.config_parameter"].sudo().get_param(
            "account_online_synchronization.import_chunk_size", IMPORT_CHUNK_SIZE))
        transactions = sorted(transactions, key=lambda t: t.date)
        lines = self.env["account.bank.statement.line"]
        start = 0
        while start < len(transactions):
            if deadline is not None and start and time.monotonic() > deadline:
                break
            end = min(start + chunk_size, len(transactions))
            while end < len(transactions) and transactions[end].date == transactions[end - 1].date:
                end += 1
            lines |= journal._online_sync_create_lines(self, transactions[start:end], identifier)
            start = end
            self._notify_progress(start, len(transactions))
        return lines, transactions[:start]

    def _notify_progress(self, done, total):
        """Progress of a long import for whoever asked for it (delivered at each commit)."""
        self.import_done = done
        user = self.import_requested_by
        if user and total:
            self.env["bus.bus"]._sendone(user.partner_id, "account_online_sync/progress", {
                "journal_id": self.journal_id.id,
                "journal": self.journal_id.name,
                "done": done,
                "total": total,
            })

    def _replace_pending(self, pending, identifier):
        # Kept by the system (users only read them), whoever triggered the synchronization.
        currency = self.currency_id or self.company_id.currency_id
        vals_list = [{
            "online_account_id": self.id,
            "date": txn.transaction_date or txn.value_date or fields.Date.context_today(self),
            "payment_ref": txn.description,
            "partner_name": txn.counterparty_name,
            "amount": float(txn.amount),
            "currency_id": currency.id,
            "online_transaction_identifier": identifier(txn),
        } for txn in pending]
        current = self.pending_transaction_ids.sudo()

        def described(values):
            return (values["online_transaction_identifier"], values["date"], values["amount"],
                    values["payment_ref"] or False, values["partner_name"] or False)

        if sorted(map(described, vals_list)) == sorted(
                described(pending_line) for pending_line in current):
            return  # the bank shows the same pending transactions as last time
        current.unlink()
        self.env["account.online.pending.transaction"].sudo().create(vals_list)

    def action_open_pending(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "account_online_synchronization.action_account_online_pending_transaction")
        action["domain"] = [("online_account_id", "=", self.id)]
        return action

    def _update_balance(self, balances):
        """Store the bank's booked balance; returns it (Decimal) or None."""
        booked = [b for b in balances if b.kind == "booked"] or balances
        if not booked:
            return None
        self.write({"balance": float(booked[0].amount),
                    "balance_date": booked[0].reference_date or fields.Date.today()})
        return booked[0].amount

    def _check_balance(self, journal, bank_balance, transactions, client, consent):
        """Balance checkpoint: say so in the chatter when the journal no longer matches the bank."""
        journal_balance = journal._online_sync_balance()
        if journal._online_sync_currency().compare_amounts(float(bank_balance),
                                                           float(journal_balance)) == 0:
            if self.balance_mismatch_date:
                self.balance_mismatch_date = False
            return
        journal_balance, per_day = journal._online_sync_balance_by_day()
        day, exact = sync_planning.first_divergence(bank_balance, transactions, journal_balance,
                                                    per_day)
        if not exact and client.max_history_days:
            # Locate the day further back, once: only when the balances disagree.
            today = fields.Date.context_today(self)
            try:
                history = client.transactions(consent, self.online_identifier,
                                              today - timedelta(days=client.max_history_days), today)
                day, exact = sync_planning.first_divergence(bank_balance, history.added,
                                                            journal_balance, per_day)
            except ProviderError:
                pass
        if day and day == self.balance_mismatch_date:
            return  # already reported
        self.balance_mismatch_date = day or fields.Date.context_today(self)
        currency = journal._online_sync_currency()
        body = _(
            "The bank's balance (%(bank)s) and the journal's (%(journal)s) differ. "
            "%(where)s Check for missing, deleted or duplicated lines around that day.",
            bank=formatLang(self.env, float(bank_balance), currency_obj=currency),
            journal=formatLang(self.env, float(journal_balance), currency_obj=currency),
            where=_("The running balances first differ on %s.", format_date(self.env, day))
            if exact and day else _("They already differ on %s or before.",
                                    format_date(self.env, day or fields.Date.today())))
        journal.message_post(body=body, subtype_xmlid="mail.mt_note")
        self.account_online_link_id.message_post(body=body, subtype_xmlid="mail.mt_note")

    def _log_sync(self, trigger, duration, stats=None, error=None):
        values = {
            "link_id": self.account_online_link_id.id,
            "online_account_id": self.id,
            "journal_id": self.journal_id.id,
            "trigger": trigger,
            "duration": duration,
        }
        if error:
            values.update(outcome="failed", error_category=error.category.value,
                          error_reference=error.reference,
                          error_message=error.user_message or error.message)
        else:
            values.update(outcome="success", fetched=stats["fetched"], created=stats["created"],
                          duplicates=stats["duplicates"], pending=stats["pending"],
                          date_from=stats["window"].date_from, date_to=stats["window"].date_to)
        return self.env["account.online.sync.log"].sudo().create(values)
