"""Import Statement: statement files into bank journals, through the same identity as online
synchronization (no duplicate whichever comes first), on the shared sample files."""
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from unittest.mock import patch
from xml.sax.saxutils import escape

from odoo.exceptions import UserError
from odoo.tests import new_test_user, tagged
from odoo.tools.translate import code_translations

from ..services import identity
from ..services.statement_files import MESSAGES
from .common import OnlineSyncCase

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def _sample(name):
    return (SAMPLES / name).read_bytes()


def _expected(name):
    return next(e for e in json.loads((SAMPLES / "expected.json").read_text())
                if e["file"] == name)


def camt053(iban, currency, transactions, opening, closing, statement_id="SANDBOX/1"):
    """A CAMT.053.001.02 statement of the Sandbox Bank's booked transactions (API dicts)."""
    def balance(code, amount, day):
        amount = Decimal(amount)
        return f"""<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>
            <Amt Ccy="{currency}">{abs(amount):.2f}</Amt>
            <CdtDbtInd>{"CRDT" if amount >= 0 else "DBIT"}</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"""

    entries = []
    for txn in transactions:
        amount = Decimal(txn["amount"])
        counterparty = txn.get("counterparty") or {}
        party = ""
        if counterparty.get("name"):
            role = "Dbtr" if amount >= 0 else "Cdtr"
            party = f"<RltdPties><{role}><Nm>{escape(counterparty['name'])}</Nm></{role}></RltdPties>"
        entries.append(f"""<Ntry>
            <Amt Ccy="{currency}">{abs(amount):.2f}</Amt>
            <CdtDbtInd>{"CRDT" if amount >= 0 else "DBIT"}</CdtDbtInd><Sts>BOOK</Sts>
            <BookgDt><Dt>{txn["booking_date"]}</Dt></BookgDt><ValDt><Dt>{txn["value_date"]}</Dt></ValDt>
            <AcctSvcrRef>{escape(txn["id"])}</AcctSvcrRef>
            <NtryDtls><TxDtls>{party}<RmtInf><Ustrd>{escape(txn["description"])}</Ustrd></RmtInf></TxDtls></NtryDtls>
        </Ntry>""")
    first = transactions[0]["booking_date"]
    last = transactions[-1]["booking_date"]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>{statement_id}</MsgId><CreDtTm>{last}T23:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>{statement_id}</Id><CreDtTm>{last}T23:00:00</CreDtTm>
      <Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>{currency}</Ccy></Acct>
      {balance("OPBD", opening, first)}
      {balance("CLBD", closing, last)}
      {"".join(entries)}
    </Stmt>
  </BkToCstmrStmt>
</Document>""".encode()


@tagged("post_install", "-at_install")
class TestStatementImport(OnlineSyncCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Line = cls.env["account.bank.statement.line"]

    def _currency(self, code):
        currency = self.env["res.currency"].with_context(active_test=False).search(
            [("name", "=", code)], limit=1)
        currency.active = True
        return currency

    def _journal(self, number, currency="EUR", name=None):
        currency = self._currency(currency)
        count = self.env["account.journal"].search_count([]) + 1
        return self.env["account.journal"].create({
            "name": name or f"Bank {number}",
            "code": f"SI{count}",
            "type": "bank",
            "bank_acc_number": number,
            "currency_id": currency.id if currency != self.company.currency_id else False,
        })

    def _wizard(self, journal, *files, **values):
        attachments = self.env["ir.attachment"].create(
            [{"name": name, "raw": content} for name, content in files])
        return self.env["account.bank.statement.import.wizard"].create({
            "journal_id": journal.id, "attachment_ids": [(6, 0, attachments.ids)], **values})

    def _preview(self, journal, *files, **values):
        wizard = self._wizard(journal, *files, **values)
        wizard.action_preview()
        self.assertEqual(wizard.state, "preview")
        return wizard

    def _lines(self, journal):
        return self.Line.search([("journal_id", "=", journal.id)])

    # ------------------------------------------------------------------ samples
    def _check_sample(self, journal, path, count, opening, closing, warnings=()):
        name = Path(path).name
        wizard = self._preview(journal, (name, _sample(path)))
        # nothing is written by the preview
        self.assertFalse(self._lines(journal))
        self.assertEqual(len(wizard.statement_ids), 1)
        preview = wizard.statement_ids
        self.assertEqual((wizard.new_count, wizard.skipped_count), (count, 0))
        self.assertEqual((preview.new_count, preview.skipped_count), (count, 0))
        self.assertEqual(len(wizard.line_ids), count)
        self.assertEqual(set(wizard.line_ids.mapped("status")), {"new"})
        self.assertEqual(preview.file_name, name)
        self.assertAlmostEqual(preview.balance_start, float(opening))
        self.assertAlmostEqual(preview.balance_end, float(closing))
        for warning in warnings:
            self.assertIn(warning, wizard.warning_message or "")

        action = wizard.action_import()
        self.assertEqual(action["tag"], "display_notification")
        self.assertIn(f"{count} transactions imported", action["params"]["message"])
        lines = self._lines(journal)
        self.assertEqual(len(lines), count)
        self.assertEqual(sorted(action["params"]["next"]["domain"][0][2]), sorted(lines.ids))
        self.assertTrue(all(lines.mapped("online_transaction_identifier")))
        self.assertFalse(lines.online_account_id)
        statement = lines.statement_id
        self.assertEqual(len(statement), 1)
        self.assertEqual(statement.line_ids, lines)
        self.assertEqual(statement.reference, name)
        self.assertAlmostEqual(statement.balance_start, float(opening))
        self.assertAlmostEqual(statement.balance_end_real, float(closing))
        self.assertAlmostEqual(statement.balance_end,
                               float(opening) + sum(lines.mapped("amount")))
        self.assertTrue(statement.attachment_ids)
        return wizard, lines

    def test_camt053_preview_then_import(self):
        path = "camt053/oca_test-camt053_v02.xml"
        want = _expected(path)["statements"][0]
        journal = self._journal(want["account"])
        _wizard, lines = self._check_sample(
            journal, path, want["txdtls"], want["opening"], want["closing"],
            # the sample's lines do not add up to its balances: the user is told
            warnings=["the closing balance in the file is"])
        self.assertEqual(len(set(lines.mapped("online_transaction_identifier"))), want["txdtls"])
        self.assertTrue(all(i.startswith("file:NL77ABNA0574908765:")
                            for i in lines.mapped("online_transaction_identifier")))

    def test_ofx_preview_then_import(self):
        path = "ofx/wesabe_checking.ofx"
        want = _expected(path)["statements"][0]
        journal = self._journal(want["account"], currency=want["currency"])
        opening = Decimal(want["ledgerbal"]) - Decimal(want["sum"])
        _wizard, lines = self._check_sample(journal, path, want["transactions"], opening,
                                            want["ledgerbal"])
        self.assertAlmostEqual(sum(lines.mapped("amount")), float(want["sum"]), places=2)

    def test_coda_preview_then_import(self):
        path = "coda/pycoda_Coda_v2_3_single_statement.cod"
        want = _expected(path)["statements"][0]
        journal = self._journal(want["account"])
        self._check_sample(journal, path, want["movements"], want["opening"], want["closing"])

    # ------------------------------------------------------------------ identity
    def test_reimport_creates_nothing_and_says_why(self):
        path = "camt053/oca_test-camt053_v02.xml"
        journal = self._journal("NL77 ABNA 0574 9087 65")     # spaces: compared normalized
        self._wizard(journal, ("statement.xml", _sample(path))).action_import()
        lines = self._lines(journal)
        self.assertEqual(len(lines), 4)

        wizard = self._preview(journal, ("same-file-again.xml", _sample(path)))
        self.assertEqual((wizard.new_count, wizard.skipped_count), (0, 4))
        self.assertEqual(set(wizard.line_ids.mapped("status")), {"skipped"})
        self.assertEqual(set(wizard.line_ids.mapped("skip_reason")),
                         {"Same bank reference already imported"})
        self.assertIn("4 × Same bank reference already imported", wizard.statement_ids.skip_reasons)
        action = wizard.action_import()
        self.assertIn("0 transactions imported, 4 already in the journal",
                      action["params"]["message"])
        self.assertEqual(self._lines(journal), lines)
        self.assertEqual(len(lines.statement_id), 1, "no empty statement for a re-import")

    def test_overlapping_files_in_one_import(self):
        """Two files of one account sharing lines: the preview already counts the second
        file's overlap, and the import creates each transaction once."""
        link = self._connect(sync=False)
        account = self._eur_account(link)
        journal = account.journal_id
        today = self.bank.today
        first = self.bank.expected_booked(account.stable_key, today - timedelta(days=20),
                                          today - timedelta(days=10))
        second = self.bank.expected_booked(account.stable_key, today - timedelta(days=15),
                                           today - timedelta(days=5))
        overlap = {t["id"] for t in first} & {t["id"] for t in second}
        self.assertTrue(overlap)
        files = [("a.xml", camt053(account.stable_key, "EUR", first, "0", "0", "A")),
                 ("b.xml", camt053(account.stable_key, "EUR", second, "0", "0", "B"))]
        wizard = self._preview(journal, *files)
        total = len({t["id"] for t in first + second})
        self.assertEqual(wizard.new_count, total)
        self.assertEqual(wizard.skipped_count, len(overlap))
        # the second statement holds only its new lines: its balances follow the journal
        self.assertIn(f"{len(overlap)} lines of statement B", wizard.warning_message)
        wizard.action_import()
        lines = self._lines(journal)
        self.assertEqual(len(lines), total)
        statements = lines.statement_id.sorted("name")
        self.assertEqual(statements.mapped("name"), ["A", "B"])
        self.assertEqual(len(statements[1].line_ids), len(second) - len(overlap))
        self.assertAlmostEqual(statements[1].balance_end_real, statements[1].balance_end)

    def _bank_file(self, account, date_from, date_to):
        booked = self.bank.expected_booked(account.stable_key, date_from, date_to)
        self.assertTrue(booked)
        closing = self.bank.expected_balances(account.stable_key)["booked"]
        total = sum(Decimal(t["amount"]) for t in booked)
        return booked, camt053(account.stable_key, "EUR", booked, closing - total, closing)

    def test_file_then_online_sync_creates_no_duplicate(self):
        link = self._connect(sync=False)
        account = self._eur_account(link)
        journal = account.journal_id
        today = self.bank.today
        booked, content = self._bank_file(account, today - timedelta(days=40),
                                          today - timedelta(days=5))
        self._wizard(journal, ("export.xml", content)).action_import()
        self.assertEqual(len(self._lines(journal)), len(booked))
        # The synchronization had stopped 30 days ago: its window covers most of the file.
        account.last_sync = today - timedelta(days=30)
        link.action_fetch_transactions()
        expected = self.bank.expected_booked(account.stable_key, today - timedelta(days=40), today)
        lines = self._lines(journal)
        self.assertEqual(len(lines), len(expected))
        self.assertGreater(len(expected), len(booked))
        synced = lines.filtered(lambda l: l.online_transaction_identifier.startswith("sandbox:"))
        self.assertEqual(len(synced), len(expected) - len(booked))
        self.assertTrue(all(line.date > today - timedelta(days=5) for line in synced))

    def test_online_sync_then_file_creates_nothing(self):
        link = self._connect()
        account = self._eur_account(link)
        journal = account.journal_id
        before = self._lines(journal)
        synced = before.filtered("online_transaction_identifier")
        self.assertTrue(synced)
        booked, content = self._bank_file(account, min(synced.mapped("date")), self.bank.today)
        self.assertEqual(len(booked), len(synced))
        wizard = self._preview(journal, ("export.xml", content))
        self.assertEqual((wizard.new_count, wizard.skipped_count), (0, len(booked)))
        self.assertEqual(set(wizard.line_ids.mapped("skip_reason")), {
            journal._statement_import_skip_reason(identity.SKIP_SAME_CONTENT)})
        action = wizard.action_import()
        self.assertIn(f"0 transactions imported, {len(booked)} already in the journal",
                      action["params"]["message"])
        self.assertEqual(self._lines(journal), before)

    # ------------------------------------------------------------------ refusals
    def test_file_of_another_journal_is_refused(self):
        owner = self._journal("NL77ABNA0574908765", name="Owner Bank")
        other = self._journal("BE55442968847144", name="Other Bank")
        wizard = self._wizard(other, ("nl77.xml", _sample("camt053/oca_test-camt053_v02.xml")))
        with self.assertRaises(UserError) as error:
            wizard.action_preview()
        message = str(error.exception)
        for part in ("nl77.xml", "NL77ABNA0574908765", "Other Bank", "BE55442968847144",
                     "Owner Bank"):
            self.assertIn(part, message)
        with self.assertRaises(UserError):
            wizard.action_import()
        self.assertFalse(self._lines(other) | self._lines(owner))

    def test_file_in_another_currency_is_refused(self):
        journal = self._journal("NL77ABNA0574908765", currency="USD"
                                if self.company.currency_id.name != "USD" else "GBP",
                                name="Dollar Bank")
        wizard = self._wizard(journal, ("eur.xml", _sample("camt053/oca_test-camt053_v02.xml")))
        with self.assertRaises(UserError) as error:
            wizard.action_import()
        message = str(error.exception)
        for part in ("eur.xml", "EUR", "Dollar Bank"):
            self.assertIn(part, message)
        self.assertFalse(self._lines(journal))

    def test_malformed_file_names_the_file_and_creates_nothing(self):
        journal = self._journal("NL77ABNA0574908765")
        good = ("good.xml", _sample("camt053/oca_test-camt053_v02.xml"))
        bad = ("broken.qif", b"!Type:Bank\nD03/03/2020\nTabc\nPCoffee\n^\n")
        wizard = self._wizard(journal, good, bad)
        with self.assertRaises(UserError) as error:
            wizard.action_import()
        message = str(error.exception)
        self.assertIn("broken.qif", message)
        self.assertIn("Line 2", message)          # the record starting on line 2
        self.assertIn("abc", message)
        self.assertFalse(self._lines(journal), "the good file is not half-imported either")
        self.assertFalse(self.env["account.bank.statement"].search(
            [("journal_id", "=", journal.id)]))

        wrong = "camt053/genkgo_camt053.v2.wrong.xml"
        wizard = self._wizard(journal, ("wrong.xml", _sample(wrong)))
        with self.assertRaises(UserError) as error:
            wizard.action_preview()
        self.assertIn("wrong.xml", str(error.exception))
        self.assertIn("Stmt", str(error.exception))

    def test_file_without_account_is_imported_with_a_warning(self):
        journal = self._journal("BE71096123456769")
        qif = _sample("qif/oca_test_qif.qif")
        wizard = self._preview(journal, ("statement.qif", qif), date_format="MDY")
        self.assertEqual(wizard.new_count, _expected("qif/oca_test_qif.qif")["transactions"])
        wizard.action_import()
        lines = self._lines(journal)
        self.assertEqual(len(lines), 5)
        # the key of a file without account is the journal: a re-import is recognised
        wizard = self._preview(journal, ("statement.qif", qif), date_format="MDY")
        self.assertEqual((wizard.new_count, wizard.skipped_count), (0, 5))

    # ------------------------------------------------------------------ entry points
    def test_files_dropped_on_the_dashboard_card_open_the_wizard(self):
        """As an accounting manager (Invoicing only): the card offers Import Statement, a file
        dropped on it opens the wizard with the file, and the import goes through."""
        journal = self._journal("NL77ABNA0574908765")
        manager = new_test_user(self.env, "statement_import_manager",
                                groups="base.group_user,account.group_account_manager")
        env = self.env(user=manager)
        dashboard = self.env.ref("account.account_journal_dashboard_kanban_view")
        arch = env["account.journal"].get_views([(dashboard.id, "kanban")])["views"]["kanban"]["arch"]
        self.assertIn("action_open_statement_import_wizard", arch)
        self.assertIn("Upload Statement Files", arch)
        attachment = env["ir.attachment"].create(
            {"name": "dropped.xml", "raw": _sample("camt053/oca_test-camt053_v02.xml")})
        action = env["account.journal"].with_context(
            default_journal_id=journal.id, default_move_type="entry",
        ).create_document_from_attachment(attachment.ids)
        self.assertEqual(action["res_model"], "account.bank.statement.import.wizard")
        wizard = env[action["res_model"]].browse(action["res_id"])
        self.assertEqual(wizard.journal_id, journal)
        self.assertEqual(wizard.attachment_ids, attachment)
        wizard.action_preview()
        self.assertEqual(wizard.new_count, 4)
        wizard.action_import()
        self.assertEqual(len(self._lines(journal)), 4)
        self.assertIn("file_import",
                      dict(journal._fields["bank_statements_source"].selection(journal)))
        action = journal.with_env(env).action_open_statement_import_wizard()
        self.assertEqual(action["target"], "new")

    def test_csv_layout_is_saved_for_the_journal(self):
        path = "csv/oca_sheet_debit_credit.csv"
        journal = self._journal("BE71096123456769")
        wizard = self._wizard(journal, ("export.csv", _sample(path)),
                              csv_layout="generic_label")
        wizard.action_import()
        self.assertEqual(len(self._lines(journal)), _expected(path)["rows"])
        saved = journal.statement_import_csv_mapping
        self.assertEqual(saved["name"], "generic_label")
        self.assertEqual((saved["amount_column"], saved["direction_column"]), ("Amount", "D/C"))
        # the next import starts from the saved layout and recognises the lines
        wizard = self._wizard(journal, ("export.csv", _sample(path)))
        self.assertEqual(wizard.csv_layout, "journal")
        wizard.action_preview()
        self.assertEqual((wizard.new_count, wizard.skipped_count), (0, 2))

    def test_parser_messages_are_translated_before_their_parameters_are_filled(self):
        self.env["res.lang"]._activate_lang("fr_FR")
        translations = code_translations.get_python_translations(
            "account_online_synchronization", "fr_FR")
        french = {
            MESSAGES["balance_mismatch"]: "Relevé %(statement)s : le solde final du fichier est "
                                          "%(closing)s, différence %(difference)s.",
            MESSAGES["qif_bad_amount"]: "Ligne %(line)s : le montant %(value)s n'est pas un "
                                        "nombre.",
        }
        journal = self._journal("NL77ABNA0574908765")
        key = ("account_online_synchronization", "fr_FR")
        with patch.dict(code_translations.python_translations, {key: {**translations, **french}}):
            wizard = self._wizard(journal, ("nl.xml", _sample("camt053/oca_test-camt053_v02.xml")))
            wizard.with_context(lang="fr_FR").action_preview()
            self.assertIn("nl.xml: Relevé '1234Test/1 (NL77ABNA0574908765)' : le solde final "
                          "du fichier est 15121.12, différence -434.16.", wizard.warning_message)
            wizard = self._wizard(journal, ("bad.qif", b"!Type:Bank\nD03/03/2020\nTabc\n^\n"))
            with self.assertRaises(UserError) as error:
                wizard.with_context(lang="fr_FR").action_preview()
            self.assertIn("bad.qif", str(error.exception))
            self.assertIn("Ligne 2 : le montant 'abc' n'est pas un nombre.", str(error.exception))
