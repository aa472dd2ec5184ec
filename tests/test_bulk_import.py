"""The bulk import path writes exactly the rows Odoo's own create() writes."""
from datetime import date, timedelta

from odoo.tests import TransactionCase, tagged

#: Columns that differ by nature between two journals: ids, timestamps, the journal itself.
SKIPPED = {"id", "create_date", "write_date", "journal_id", "move_id", "statement_line_id",
           "statement_id", "internal_index", "name", "move_name", "sequence_prefix",
           "access_token"}


@tagged("post_install", "-at_install")
class TestBulkImport(TransactionCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        company = cls.env.company
        cls.foreign = cls.env.ref("base.EUR") if company.currency_id.name != "EUR" \
            else cls.env.ref("base.USD")
        cls.foreign.active = True
        for day, rate in ((date(2025, 1, 1), 0.9), (date(2026, 1, 15), 0.8)):
            cls.env["res.currency.rate"].create({
                "currency_id": cls.foreign.id, "name": day, "rate": rate,
                "company_id": company.id})

    def _vals(self, journal, count=60, foreign_every=7):
        """Lines over two calendar years (the sequence restarts), in and out, some with an
        original amount in another currency, references, counterparties and details."""
        vals_list = []
        start = date(2025, 12, 10)
        for n in range(count):
            amount = round((n * 37 % 500 + 0.25) * (1 if n % 3 else -1), 2)
            vals = {
                "journal_id": journal.id,
                "date": start + timedelta(days=n // 2),
                "amount": amount,
                "payment_ref": f"Payment {n}",
                "online_transaction_identifier": f"sandbox:KEY:{n}",
                "transaction_details": {"end_to_end_id": f"E2E{n}"},
            }
            if n % 4 == 0:
                vals.update(partner_name=f"Partner {n}", account_number=f"BE68539007547{n:03d}")
            if n % 5 == 0:
                vals["ref"] = f"+++090/9337/{n:05d}+++"
            if foreign_every and n % foreign_every == 0 and journal.currency_id != self.foreign:
                vals.update(foreign_currency_id=self.foreign.id, amount_currency=round(amount * 1.1, 2))
            vals_list.append(vals)
        return sorted(vals_list, key=lambda v: (str(v["date"]), v.get("ref") or ""))

    def _journal(self, code, currency=None):
        return self.env["account.journal"].create({
            "name": f"Bank {code}", "code": code, "type": "bank",
            "currency_id": currency and currency.id})

    def _rows(self, table, ids, journal):
        code = journal.code
        self.env.flush_all()
        self.env.cr.execute(f'SELECT * FROM "{table}" WHERE id = ANY(%s)', [list(ids)])
        names = [column.name for column in self.env.cr.description]
        rows = []
        for values in self.env.cr.fetchall():
            row = dict(zip(names, values))
            comparable = {key: value for key, value in row.items() if key not in SKIPPED}
            for key in ("name", "move_name", "sequence_prefix"):
                if key in row and table != "account_bank_statement_line":
                    comparable[key] = (row[key] or "").replace(code, "JRNL")
            if table == "account_move_line":
                comparable["name"] = row["name"]
                if row["account_id"] == journal.default_account_id.id:
                    comparable["account_id"] = "the journal's bank account"
            if "internal_index" in row:
                comparable["internal_index"] = row["internal_index"][:18]
            rows.append(comparable)
        return sorted(rows, key=lambda r: repr(sorted(r.items(), key=lambda kv: kv[0])))

    def _assert_same_records(self, naive_journal, naive, bulk_journal, bulk):
        self.assertEqual(len(naive), len(bulk))
        for table, naive_ids, bulk_ids in (
                ("account_bank_statement_line", naive.ids, bulk.ids),
                ("account_move", naive.move_id.ids, bulk.move_id.ids),
                ("account_move_line", naive.move_id.line_ids.ids, bulk.move_id.line_ids.ids)):
            naive_rows = self._rows(table, naive_ids, naive_journal)
            bulk_rows = self._rows(table, bulk_ids, bulk_journal)
            self.assertEqual(len(naive_rows), len(bulk_rows), table)
            for naive_row, bulk_row in zip(naive_rows, bulk_rows):
                differences = {key: (naive_row[key], bulk_row.get(key)) for key in naive_row
                               if naive_row[key] != bulk_row.get(key)}
                self.assertFalse(differences, f"{table}: {differences}")

    def _import_both(self, currency=None, count=60):
        naive_journal, bulk_journal = self._journal("NAIV", currency), self._journal("BULK", currency)
        StatementLine = self.env["account.bank.statement.line"]
        naive = StatementLine.create(self._vals(naive_journal, count))
        bulk = bulk_journal._bank_import_create_lines(self._vals(bulk_journal, count))
        return naive_journal, naive, bulk_journal, bulk

    def test_bulk_rows_equal_create_rows_field_by_field(self):
        probe = self._journal("PROB")
        self.assertTrue(self.env["account.bank.statement.line"]._bulk_applies(
            probe, self._vals(probe)), "the data set must take the bulk path")
        naive_journal, naive, bulk_journal, bulk = self._import_both()
        self._assert_same_records(naive_journal, naive, bulk_journal, bulk)
        self.assertEqual(set(bulk.move_id.mapped("state")), {"posted"})
        # Names in sequence, restarting with the year, as create() numbers them.
        self.assertEqual(bulk.sorted("internal_index").move_id.mapped("name"),
                         [name.replace("NAIV", "BULK")
                          for name in naive.sorted("internal_index").move_id.mapped("name")])

    def test_bulk_rows_equal_create_rows_in_a_foreign_currency_journal(self):
        naive_journal, naive, bulk_journal, bulk = self._import_both(currency=self.foreign)
        self._assert_same_records(naive_journal, naive, bulk_journal, bulk)

    def test_analytic_distribution_models_apply_as_with_create(self):
        plan = self.env["account.analytic.plan"].create({"name": "Departments"})
        analytic = self.env["account.analytic.account"].create({"name": "Bank fees", "plan_id": plan.id})
        suspense = self.env.company.account_journal_suspense_account_id
        self.env["account.analytic.distribution.model"].create({
            "account_prefix": suspense.code, "analytic_distribution": {str(analytic.id): 100}})
        naive_journal, naive, bulk_journal, bulk = self._import_both(count=20)
        self._assert_same_records(naive_journal, naive, bulk_journal, bulk)
        distributions = bulk.move_id.line_ids.filtered(
            lambda l: l.account_id == suspense).mapped("analytic_distribution")
        self.assertEqual(len(distributions), 20)
        for distribution in distributions:
            self.assertEqual(distribution, {str(analytic.id): 100.0})

    def test_running_balances_and_statement_balances_match(self):
        naive_journal, naive, bulk_journal, bulk = self._import_both(count=40)
        Statement = self.env["account.bank.statement"]
        for journal, lines in ((naive_journal, naive), (bulk_journal, bulk)):
            Statement.create({"name": journal.code, "journal_id": journal.id,
                              "line_ids": [(6, 0, lines.ids)]})
        naive_statement = Statement.search([("journal_id", "=", naive_journal.id)])
        bulk_statement = Statement.search([("journal_id", "=", bulk_journal.id)])
        self.assertAlmostEqual(bulk_statement.balance_end, sum(bulk.mapped("amount")))
        self.assertEqual(bulk_statement.balance_end, naive_statement.balance_end)
        self.assertEqual(bulk.sorted("internal_index").mapped("running_balance"),
                         naive.sorted("internal_index").mapped("running_balance"))

    def test_later_entries_continue_the_sequence_without_gap_or_collision(self):
        journal = self._journal("SEQ")
        lines = journal._bank_import_create_lines(self._vals(journal, 20))
        last = max(lines.move_id.mapped("sequence_number"))
        manual = self.env["account.bank.statement.line"].create({
            "journal_id": journal.id, "date": date(2025, 12, 31), "amount": 5.0,
            "payment_ref": "typed by hand"})
        self.assertEqual(manual.move_id.sequence_number, last + 1)
        self.assertEqual(len(set((lines | manual).move_id.mapped("name"))), 21)

    def test_lines_outside_the_bulk_shape_go_through_create(self):
        journal = self._journal("ZERO")
        vals_list = self._vals(journal, 10, foreign_every=0)
        vals_list[3]["amount"] = 0.0  # create() reconciles a zero line at once: left to it
        self.assertFalse(self.env["account.bank.statement.line"]._bulk_applies(journal, vals_list))
        lines = journal._bank_import_create_lines(vals_list)
        self.assertEqual(len(lines), 10)
        self.assertTrue(lines.filtered(lambda l: not l.amount).is_reconciled)
        self.assertEqual(len(set(lines.move_id.mapped("name"))), 10)

    def test_a_small_later_batch_copies_the_latest_imported_line_field_by_field(self):
        """The 12-hourly case: a few new lines after earlier imports are copies of the journal's
        latest imported line (no create()), and they are the records create() writes."""
        naive_journal, bulk_journal = self._journal("NAIV"), self._journal("BULK")
        StatementLine = self.env["account.bank.statement.line"]
        naive_vals, bulk_vals = self._vals(naive_journal, 26), self._vals(bulk_journal, 26)
        naive_earlier = StatementLine.create(naive_vals[:20])
        bulk_earlier = bulk_journal._bank_import_create_lines(bulk_vals[:20])
        latest = bulk_earlier.sorted(lambda line: (line.date, line.id))[-1]
        self.assertEqual(StatementLine._bulk_existing_template(bulk_journal, bulk_vals[20:]), latest)

        naive = StatementLine.create(naive_vals[20:])
        queries = self.env.cr.sql_log_count
        bulk = bulk_journal._bank_import_create_lines(bulk_vals[20:])
        bulk_queries = self.env.cr.sql_log_count - queries
        self._assert_same_records(naive_journal, naive, bulk_journal, bulk)
        self.assertEqual(bulk.sorted("internal_index").move_id.mapped("name"),
                         [name.replace("NAIV", "BULK")
                          for name in naive.sorted("internal_index").move_id.mapped("name")])
        self.assertEqual(len(set((bulk_earlier | bulk).move_id.mapped("name"))), 26)
        self.assertEqual(max(bulk.move_id.mapped("sequence_number")),
                         max(naive.move_id.mapped("sequence_number")))
        self.assertLess(bulk_queries, 60, "six lines copied in a few set-based statements")
        # And the journal's next entry typed by hand continues after them.
        manual = StatementLine.create({"journal_id": bulk_journal.id, "date": date(2025, 12, 31),
                                       "amount": 5.0, "payment_ref": "typed by hand"})
        self.assertEqual(manual.move_id.sequence_number, max(bulk.move_id.mapped("sequence_number")) + 1)
        self.assertTrue(naive_earlier)

    def test_a_line_changed_since_its_import_is_never_copied(self):
        journal = self._journal("TOUCH")
        StatementLine = self.env["account.bank.statement.line"]
        vals = self._vals(journal, 24)
        earlier = journal._bank_import_create_lines(vals[:20])
        latest = earlier.sorted(lambda line: (line.date, line.id))[-1]
        # A later transaction annotated the latest entry (its write date moves on).
        self.env.cr.execute("""
            UPDATE account_move SET narration = '<p>checked by hand</p>',
                   write_date = write_date + interval '1 hour' WHERE id = %s""", [latest.move_id.id])
        self.env.invalidate_all()
        template = StatementLine._bulk_existing_template(journal, vals[20:])
        self.assertTrue(template)
        self.assertNotEqual(template, latest)
        # One line, then three: each batch copies the latest untouched line.
        new = journal._bank_import_create_lines(vals[20:21])
        new |= journal._bank_import_create_lines(vals[21:24])
        self.assertEqual(len(new), 4)
        self.assertFalse(any(new.move_id.mapped("narration")))
        numbers = (earlier | new).move_id.mapped("sequence_number")
        self.assertEqual(sorted(numbers), list(range(1, 25)))
        self.assertEqual(len(set((earlier | new).move_id.mapped("name"))), 24)
        # Another month: no template, the lines go the usual way.
        self.assertFalse(StatementLine._bulk_existing_template(
            journal, [dict(vals[0], date=date(2026, 3, 1))]))
        # An analytic distribution model may have changed since: no copies of earlier lines.
        plan = self.env["account.analytic.plan"].create({"name": "Departments"})
        analytic = self.env["account.analytic.account"].create({"name": "Fees", "plan_id": plan.id})
        self.env["account.analytic.distribution.model"].create({
            "account_prefix": "9", "analytic_distribution": {str(analytic.id): 100}})
        self.assertFalse(StatementLine._bulk_existing_template(journal, vals[20:]))
