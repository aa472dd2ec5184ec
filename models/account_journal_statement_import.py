"""Import of bank statement files (CAMT.053, OFX/QFX, QIF, CODA, CSV) into bank journals.

The files are read by the pure parsers of ``services/statement_files``; every line goes through
the journal's shared identity (``_bank_import_plan``) and creation path
(``_bank_import_create_lines``), so a file never duplicates what online synchronization, an
earlier import or another file already brought, and the other way round.
"""
from collections import Counter

from odoo import _, fields, models
from odoo.exceptions import UserError

from ..services import identity
from ..services.statement_files import StatementFileError, parse_file
from ..services.statement_files.model import normalize_account, normalize_date_order
from .statement_file_messages import translator

IMPORT_FORMATS = ("CAMT.053", "OFX", "QFX", "QIF", "CODA", "CSV")


class AccountJournal(models.Model):
    # Same class name as in `account`: the bank statement source hook below is name-mangled.
    _inherit = "account.journal"

    statement_import_csv_mapping = fields.Json(
        string="Saved CSV column mapping", copy=False,
        help="The columns of this bank's CSV exports, saved at the last CSV import.")

    def __get_bank_statements_available_sources(self):
        sources = super().__get_bank_statements_available_sources()
        sources.append(("file_import", _("Import Statement Files")))
        return sources

    def _get_bank_statements_available_import_formats(self):
        """Statement file formats the Import Statement action reads."""
        return list(IMPORT_FORMATS)

    # ------------------------------------------------------------------ actions
    def action_open_statement_import_wizard(self, attachments=None):
        """Import Statement, from the dashboard card and the journal form."""
        self.ensure_one()
        if self.type != "bank":
            raise UserError(_("Statement files can only be imported into bank journals."))
        values = {"journal_id": self.id}
        if attachments:
            values["attachment_ids"] = [(6, 0, attachments.ids)]
        wizard = self.env["account.bank.statement.import.wizard"].create(values)
        return wizard._reopen()

    def create_document_from_attachment(self, attachment_ids):
        """Files dropped on (or uploaded from) a bank journal's card open Import Statement."""
        journal = self or self.browse(self.env.context.get("default_journal_id"))
        if len(journal) == 1 and journal.type == "bank":
            attachments = self.env["ir.attachment"].browse(attachment_ids)
            if not attachments:
                raise UserError(_("No file was uploaded."))
            return journal.with_context(
                {k: v for k, v in self.env.context.items() if not k.startswith("default_")}
            ).action_open_statement_import_wizard(attachments)
        return super().create_document_from_attachment(attachment_ids)

    # ------------------------------------------------------------------ import
    def _statement_import_account_numbers(self):
        """Normalized account numbers a statement of this journal may carry."""
        self.ensure_one()
        numbers = {normalize_account(self.bank_account_id.acc_number),
                   normalize_account(self.account_online_account_id.account_number)}
        numbers.discard(None)
        return numbers

    def _statement_import_options(self, options=None):
        """Parser options: the caller's, the journal's account for CSV files without one and
        the user's date order for ambiguous dates."""
        self.ensure_one()
        options = dict(options or {})
        if self.bank_account_id.acc_number:
            options.setdefault("account_number", self.bank_account_id.acc_number)
        if not options.get("currency"):
            options["currency"] = (self.currency_id or self.company_id.currency_id).name
        lang = self.env["res.lang"]._lang_get(self.env.lang or "en_US")
        if lang and "date_order_hint" not in options:
            try:
                options["date_order_hint"] = normalize_date_order(lang.date_format)
            except ValueError:
                pass
        if "csv_mapping" not in options and "csv_profile" not in options \
                and self.statement_import_csv_mapping:
            options["csv_mapping"] = self.statement_import_csv_mapping
        return options

    def _statement_import_parse(self, filename, content, options=None):
        """The ``ParseResult`` of one file; a UserError naming the file when it is unusable."""
        self.ensure_one()
        try:
            return parse_file(content, filename, options=self._statement_import_options(options))
        except StatementFileError as error:
            raise UserError(_("%(file)s: %(error)s", file=filename,
                              error=error.translated(translator(self.env)))) from error

    def _statement_import_check(self, filename, statement):
        """Refuse a statement of another account or currency; the warnings it deserves."""
        self.ensure_one()
        warnings = []
        number = normalize_account(statement.account_number)
        own = self._statement_import_account_numbers()
        if number and number not in own:
            other = self.search([
                *self._check_company_domain(self.company_id), ("type", "=", "bank"),
                ("id", "!=", self.id)]).filtered(
                    lambda j: number in j._statement_import_account_numbers())[:1]
            if own or other:
                message = _(
                    "The file %(file)s is a statement of the account %(account)s, not of the "
                    "account of the journal %(journal)s (%(journal_account)s).",
                    file=filename, account=statement.account_number, journal=self.name,
                    journal_account=", ".join(sorted(own)) or _("none"))
                if other:
                    message += " " + _("Import it into the journal %(other)s instead.",
                                       other=other.name)
                raise UserError(message)
            warnings.append(_(
                "The journal %(journal)s has no bank account number: set %(account)s as its "
                "bank account so that files of other accounts are refused.",
                journal=self.name, account=statement.account_number))
        elif not number:
            warnings.append(_(
                "The file does not say which account it belongs to; its lines were taken as "
                "lines of %(journal)s.", journal=self.name))
        journal_currency = (self.currency_id or self.company_id.currency_id).name
        if statement.currency and statement.currency.upper() != journal_currency:
            raise UserError(_(
                "The file %(file)s (account %(account)s) is in %(currency)s, but the journal "
                "%(journal)s is in %(journal_currency)s.",
                file=filename, account=statement.account_number or "-",
                currency=statement.currency, journal=self.name,
                journal_currency=journal_currency))
        return warnings

    def _statement_import_identifier_key(self, statement):
        return normalize_account(statement.account_number) or f"journal{self.id}"

    def _statement_import_file(self, filename, content, options=None, attachment=None):
        """Import one file: parse, check every statement, plan against the journal, create the
        new lines and one bank statement per statement of the file that has new lines.

        Returns ``{"file", "format", "version", "warnings", "statements": [...]}`` where each
        statement is a dict with its ``statement`` (the file's), ``rows`` ([(transaction,
        skip reason or None)] in file order), ``lines`` and ``record`` (what was created) and
        its ``warnings``. Raises UserError (nothing written) when the file cannot be imported.
        """
        self.ensure_one()
        result = self._statement_import_parse(filename, content, options)
        translate = translator(self.env)
        reports = []
        key_of = {}
        for statement in result.statements:
            reports.append({"statement": statement,
                            "warnings": self._statement_import_check(filename, statement)})
            key = self._statement_import_identifier_key(statement)
            for txn in statement.transactions:
                key_of[id(txn)] = key

        def identifier(txn):
            return f"file:{key_of[id(txn)]}:{txn.external_id}"

        transactions = [t for s in result.statements for t in s.transactions]
        plan = self._bank_import_plan(transactions, identifier)
        skipped = {id(txn): reason for txn, reason in plan.skipped}
        no_account = self.env["account.online.account"]
        lines = self._bank_import_create_lines([
            self._online_sync_line_values(no_account, txn, identifier) for txn in plan.new])
        line_of = {line.online_transaction_identifier: line for line in lines}
        for report in reports:
            statement = report["statement"]
            report["rows"] = [(txn, skipped.get(id(txn))) for txn in statement.transactions]
            report["lines"] = self.env["account.bank.statement.line"].sudo().browse([
                line_of[identifier(txn)].id for txn, reason in report["rows"] if reason is None])
            report["record"] = self._statement_import_create_statement(
                filename, statement, report, attachment)
        return {
            "file": filename,
            "format": result.format,
            "version": result.version,
            "warnings": [warning.translated(translate) for warning in result.warnings],
            "statements": reports,
            "csv_mapping": result.raw.get("mapping") if result.format == "csv" else None,
        }

    def _statement_import_create_statement(self, filename, statement, report, attachment):
        """The bank statement holding the new lines of ``statement`` (None when none is new).
        Its balances are the file's when every line of it is new; otherwise they follow the
        journal and a warning says why."""
        lines = report["lines"]
        if not lines:
            return None
        name = statement.statement_id or statement.name or _(
            "%(file)s %(start)s - %(end)s", file=filename,
            start=fields.Date.to_string(statement.date_from),
            end=fields.Date.to_string(statement.date_to))
        values = {
            "name": name,
            "reference": filename,
            "journal_id": self.id,
            "line_ids": [(6, 0, lines.ids)],
        }
        if attachment:
            values["attachment_ids"] = [(4, attachment.id)]
        complete = len(lines) == len(statement.transactions)
        if complete and statement.opening_balance is not None:
            values["balance_start"] = float(statement.opening_balance)
        record = self.env["account.bank.statement"].sudo().with_company(self.company_id).create(
            values)
        if complete and statement.closing_balance is not None:
            record.balance_end_real = float(statement.closing_balance)
        else:
            record.balance_end_real = record.balance_end
            if not complete:
                report["warnings"].append(_(
                    "%(count)s lines of statement %(statement)s were already in the journal; "
                    "the new statement holds the other lines and its balances follow the "
                    "journal instead of the file.",
                    count=len(statement.transactions) - len(lines), statement=statement.label))
        return record

    def _statement_import_skip_reason(self, reason):
        return {
            identity.SKIP_SAME_IDENTIFIER: _("Same bank reference already imported"),
            identity.SKIP_TWICE_IN_BATCH: _("Twice in the file"),
            identity.SKIP_SAME_CONTENT: _(
                "Same day and amount as a line already in the journal (synchronized or "
                "imported)"),
        }.get(reason, reason or "")

    def _statement_import_counts(self, file_reports):
        """(created, {reason: skipped}) over ``file_reports``."""
        created = 0
        skipped = Counter()
        for file_report in file_reports:
            for report in file_report["statements"]:
                for _txn, reason in report["rows"]:
                    if reason is None:
                        created += 1
                    else:
                        skipped[reason] += 1
        return created, skipped
