import codecs
import json

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..services.statement_files import PARSERS, PROFILES

FORMATS = [("auto", "Detect"), ("camt053", "CAMT.053"), ("ofx", "OFX / QFX"), ("qif", "QIF"),
           ("coda", "CODA"), ("csv", "CSV")]
#: lines listed in the preview (the counts always cover every line)
PREVIEW_MAX_LINES = 2000
FORMAT_LABELS = {"camt053": "CAMT.053", "ofx": "OFX", "qif": "QIF", "coda": "CODA", "csv": "CSV"}


class AccountBankStatementImportWizard(models.TransientModel):
    """Import Statement: upload statement files, preview what is new, import it."""
    _name = "account.bank.statement.import.wizard"
    _description = "Import bank statement files"

    journal_id = fields.Many2one("account.journal", required=True, readonly=True,
                                 domain=[("type", "=", "bank")])
    currency_id = fields.Many2one("res.currency", compute="_compute_currency_id")
    attachment_ids = fields.Many2many(
        "ir.attachment", "account_bank_statement_import_wizard_attachment_rel", "wizard_id",
        "attachment_id", string="Files",
        help="CAMT.053 (.xml), OFX/QFX, QIF, CODA or CSV statement exports of the bank; "
             "several files, or a ZIP archive of them, at once.")
    state = fields.Selection([("upload", "Upload"), ("preview", "Preview")], default="upload",
                             required=True)
    file_format = fields.Selection(FORMATS, string="Format", default="auto", required=True)
    encoding = fields.Char(help="Text encoding of the files (e.g. cp1252, latin-1); empty: "
                                "detected.")
    date_format = fields.Selection(
        [("DMY", "Day/Month/Year"), ("MDY", "Month/Day/Year"), ("YMD", "Year/Month/Day")],
        string="Date order", help="QIF and CSV files: the order of day, month and year in the "
                                  "dates; empty: detected from the file.")
    csv_layout = fields.Selection(
        selection="_selection_csv_layout", string="CSV layout", default="auto", required=True,
        help="How the columns of a CSV file are read: detected, the layout saved for this "
             "journal, a bank's built-in layout or your own mapping.")
    csv_mapping = fields.Text(
        string="CSV column mapping",
        help='JSON object, e.g. {"date_column": "Date", "amount_column": "Amount", '
             '"description_columns": ["Label"], "date_format": "DMY"}.')
    csv_save_mapping = fields.Boolean(
        string="Remember the CSV layout for this journal", default=True)

    statement_ids = fields.One2many("account.bank.statement.import.wizard.statement",
                                    "wizard_id", string="Statements", readonly=True)
    line_ids = fields.One2many("account.bank.statement.import.wizard.line", "wizard_id",
                               string="Lines", readonly=True)
    new_count = fields.Integer(string="New transactions", readonly=True)
    skipped_count = fields.Integer(string="Already in the journal", readonly=True)
    warning_message = fields.Text(string="Warnings", readonly=True)
    lines_truncated = fields.Boolean(readonly=True)
    supported_formats = fields.Char(compute="_compute_supported_formats")

    @api.model
    def _selection_csv_layout(self):
        return [("auto", _("Detect")), ("journal", _("Saved for this journal")),
                ("custom", _("Custom mapping"))] + [(p.name, p.label) for p in PROFILES]

    @api.depends("journal_id")
    def _compute_currency_id(self):
        for wizard in self:
            journal = wizard.journal_id
            wizard.currency_id = journal.currency_id or journal.company_id.currency_id

    @api.depends("journal_id")
    def _compute_supported_formats(self):
        for wizard in self:
            wizard.supported_formats = ", ".join(
                wizard.journal_id._get_bank_statements_available_import_formats())

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            journal = self.env["account.journal"].browse(vals.get("journal_id"))
            if "csv_layout" not in vals and journal.statement_import_csv_mapping:
                vals["csv_layout"] = "journal"
            if "csv_mapping" not in vals and journal.statement_import_csv_mapping:
                vals["csv_mapping"] = json.dumps(journal.statement_import_csv_mapping, indent=1)
        return super().create(vals_list)

    def _reopen(self):
        return {"type": "ir.actions.act_window", "res_model": self._name, "res_id": self.id,
                "view_mode": "form", "views": [(False, "form")], "target": "new",
                "name": _("Import Statement")}

    # ------------------------------------------------------------------ options
    def _parser_options(self):
        self.ensure_one()
        options = {}
        if self.file_format != "auto":
            assert self.file_format in PARSERS
            options["format"] = self.file_format
        if self.encoding:
            try:
                codecs.lookup(self.encoding.strip())
            except LookupError:
                raise UserError(_("%s is not a known text encoding.", self.encoding)) from None
            options["encoding"] = self.encoding.strip()
        if self.date_format:
            options["date_format"] = self.date_format
        if self.csv_layout == "auto":
            options["csv_mapping"] = None        # not the journal's saved mapping
        elif self.csv_layout == "custom":
            options["csv_mapping"] = self._custom_mapping()
        elif self.csv_layout != "journal":
            options["csv_profile"] = self.csv_layout
        return options

    def _custom_mapping(self):
        try:
            mapping = json.loads(self.csv_mapping or "")
        except ValueError as error:
            raise UserError(_("The CSV column mapping is not valid JSON: %s", error)) from None
        if not isinstance(mapping, dict):
            raise UserError(_("The CSV column mapping must be a JSON object, e.g. %s.",
                              '{"date_column": "Date", "amount_column": "Amount"}'))
        return mapping

    def _files(self):
        self.ensure_one()
        if not self.attachment_ids:
            raise UserError(_("Add at least one statement file to import."))
        return [(attachment.name, attachment.raw, attachment)
                for attachment in self.attachment_ids.sorted("id")]

    def _run(self):
        """Import every file into the journal: reports of ``_statement_import_file``."""
        journal = self.journal_id
        options = self._parser_options()
        return [journal._statement_import_file(name, content, options, attachment)
                for name, content, attachment in self._files()]

    # ------------------------------------------------------------------ steps
    def action_preview(self):
        """Run the import, keep what it would do, and undo it: the preview counts exactly what
        Import creates, including files that overlap each other."""
        self.ensure_one()
        savepoint = self.env.cr.savepoint()
        try:
            reports = self._run()
            values = self._preview_values(reports)
        finally:
            savepoint.close(rollback=True)
        self.write(values)
        return self._reopen()

    def action_back(self):
        self.write({"state": "upload", "statement_ids": [(5, 0, 0)], "line_ids": [(5, 0, 0)],
                    "warning_message": False, "new_count": 0, "skipped_count": 0,
                    "lines_truncated": False})
        return self._reopen()

    def action_import(self):
        self.ensure_one()
        journal = self.journal_id
        reports = self._run()
        if self.csv_save_mapping:
            mappings = [r["csv_mapping"] for r in reports if r.get("csv_mapping")]
            if mappings:
                journal.sudo().statement_import_csv_mapping = mappings[-1].to_dict()
        created, skipped = journal._statement_import_counts(reports)
        lines = self.env["account.bank.statement.line"].browse(
            [line.id for r in reports for s in r["statements"] for line in s["lines"]])
        message = _("%(created)s transactions imported, %(skipped)s already in the journal "
                    "(not imported again).", created=created, skipped=sum(skipped.values()))
        warnings = [w for r in reports for w in r["warnings"] + [
            w for s in r["statements"] for w in s["warnings"]]]
        if warnings:
            message += "\n" + "\n".join(warnings)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": _("Import Statement"),
                "message": message,
                "type": "warning" if warnings else "success",
                "sticky": bool(warnings),
                "next": self._lines_action(journal, lines),
            },
        }

    def _lines_action(self, journal, lines):
        if not lines:
            return {"type": "ir.actions.act_window_close"}
        return {
            "type": "ir.actions.act_window",
            "name": _("Imported transactions"),
            "res_model": "account.bank.statement.line",
            "views": [(False, "list"), (False, "form")],
            "domain": [("id", "in", lines.ids)],
            "context": {"default_journal_id": journal.id},
            "target": "current",
        }

    # ------------------------------------------------------------------ preview
    def _preview_values(self, reports):
        journal = self.journal_id
        statements = []
        new_count = skipped_count = shown = 0
        warnings = []
        for file_report in reports:
            fmt = FORMAT_LABELS.get(file_report["format"], file_report["format"])
            for position, report in enumerate(file_report["statements"]):
                statement = report["statement"]
                file_warnings = file_report["warnings"] if position == 0 else []
                statement_warnings = file_warnings + report["warnings"]
                warnings += [f"{file_report['file']}: {w}" for w in statement_warnings]
                reasons = {}
                lines = []
                for sequence, (txn, reason) in enumerate(report["rows"]):
                    if reason:
                        label = journal._statement_import_skip_reason(reason)
                        reasons[label] = reasons.get(label, 0) + 1
                    if shown >= PREVIEW_MAX_LINES:
                        continue
                    shown += 1
                    lines.append((0, 0, {
                        "wizard_id": self.id,
                        "sequence": sequence,
                        "date": txn.date,
                        "payment_ref": txn.description or txn.structured_reference or "/",
                        "partner_name": txn.counterparty_name,
                        "reference": txn.external_id if not txn.id_is_synthetic else False,
                        "amount": float(txn.amount),
                        "status": "skipped" if reason else "new",
                        "skip_reason": journal._statement_import_skip_reason(reason)
                        if reason else False,
                    }))
                new = sum(1 for _txn, reason in report["rows"] if not reason)
                new_count += new
                skipped_count += len(report["rows"]) - new
                statements.append((0, 0, {
                    "file_name": file_report["file"],
                    "file_format": " ".join(filter(None, [fmt, file_report["version"]
                                                          if file_report["version"] != fmt
                                                          else None])),
                    "name": statement.label,
                    "account_number": statement.account_number,
                    "statement_currency": statement.currency,
                    "date_from": statement.date_from,
                    "date_to": statement.date_to,
                    "balance_start": float(statement.opening_balance)
                    if statement.opening_balance is not None else False,
                    "balance_end": float(statement.closing_balance)
                    if statement.closing_balance is not None else False,
                    "has_balances": statement.opening_balance is not None
                    and statement.closing_balance is not None,
                    "new_count": new,
                    "skipped_count": len(report["rows"]) - new,
                    "skip_reasons": "\n".join(f"{count} × {label}"
                                              for label, count in reasons.items()),
                    "warnings": "\n".join(statement_warnings),
                    "line_ids": lines,
                }))
        return {
            "state": "preview",
            "statement_ids": [(5, 0, 0)] + statements,
            "new_count": new_count,
            "skipped_count": skipped_count,
            "warning_message": "\n".join(warnings) or False,
            "lines_truncated": shown < new_count + skipped_count,
        }


class AccountBankStatementImportWizardStatement(models.TransientModel):
    _name = "account.bank.statement.import.wizard.statement"
    _description = "Statement of an imported file (preview)"
    _order = "id"

    wizard_id = fields.Many2one("account.bank.statement.import.wizard", required=True,
                                ondelete="cascade")
    currency_id = fields.Many2one(related="wizard_id.currency_id", string="Journal Currency")
    file_name = fields.Char(string="File")
    file_format = fields.Char(string="Format")
    name = fields.Char(string="Statement")
    account_number = fields.Char(string="Account")
    statement_currency = fields.Char(string="Currency")
    date_from = fields.Date(string="From")
    date_to = fields.Date(string="To")
    has_balances = fields.Boolean()
    balance_start = fields.Monetary(string="Opening balance")
    balance_end = fields.Monetary(string="Closing balance")
    new_count = fields.Integer(string="New")
    skipped_count = fields.Integer(string="Already present")
    skip_reasons = fields.Text(string="Why already present")
    warnings = fields.Text()
    line_ids = fields.One2many("account.bank.statement.import.wizard.line", "statement_id",
                               string="Lines")


class AccountBankStatementImportWizardLine(models.TransientModel):
    _name = "account.bank.statement.import.wizard.line"
    _description = "Line of an imported file (preview)"
    _order = "statement_id, sequence, id"

    wizard_id = fields.Many2one("account.bank.statement.import.wizard", required=True,
                                ondelete="cascade")
    statement_id = fields.Many2one("account.bank.statement.import.wizard.statement",
                                   ondelete="cascade")
    currency_id = fields.Many2one(related="wizard_id.currency_id", string="Journal Currency")
    sequence = fields.Integer()
    date = fields.Date()
    payment_ref = fields.Char(string="Label")
    partner_name = fields.Char(string="Counterparty")
    reference = fields.Char(string="Bank reference")
    amount = fields.Monetary()
    status = fields.Selection([("new", "New"), ("skipped", "Already present")])
    skip_reason = fields.Char(string="Why already present")
