"""Bulk creation of bank statement lines: the rows Odoo's own ``create()`` writes, without its
per-line work.

Odoo creates each statement line's journal entry one at a time: it looks up the last sequence
number, writes the name, checks the balance and posts, move by move (see
``reference/import-profile.md``). Here, per run of lines in one sequence period, the first line
goes through Odoo's real ``create()`` (it takes the sequence lock, runs every check and gives a
complete row of each table) and the other lines are inserted in a few set-based statements as
copies of those rows, with every column that depends on the line recomputed. Numbers follow the
template's name in Odoo's own sequence cache, so later entries of the transaction continue the
sequence. ``tests/test_bulk_import.py`` compares the result with ``create()`` field by field.

A small batch (the usual 12-hourly synchronization: a few lines per account) does not pay for
a ``create()``: when the journal's latest line of the same sequence period was written by this
path and never modified since (every row's write date is its creation date), its rows are the
template, the copies get the creation columns of this transaction, and their names come from
Odoo's own sequence lock (``_locked_increment``) on the first copy.

Lines outside what this path reproduces (a partner, a zero amount, a hash-protected journal, a
fiscal-year sequence) go through ``create()``. Analytic distribution models apply to the copies
as to the template: their criteria (account, partner, product, company) are the template's.
"""
import json
from datetime import timedelta

from odoo import api, models

MAXINT = 2147483647
#: create() values this path reproduces; any other key sends the batch through create().
BULK_KEYS = {
    "journal_id", "date", "amount", "payment_ref", "partner_name", "account_number", "ref",
    "foreign_currency_id", "amount_currency", "sequence", "statement_id", "transaction_details",
    "online_transaction_identifier", "online_account_id",
    "move_type",  # create() sets it to "entry" in the values it is given
}
BULK_SEQUENCE_RESETS = {"year", "month", "never"}
#: Below this many lines a fresh template (one create()) does not pay for itself.
BULK_MIN_LINES = 8
#: Up to this many lines, an earlier pristine line of the journal is the template; the names
#: and the columns derived from them are then computed by Odoo's own code, line by line.
EXISTING_TEMPLATE_MAX_LINES = 50


class AccountBankStatementLine(models.Model):
    _inherit = "account.bank.statement.line"

    @api.model
    def _bulk_create(self, journal, vals_list):
        """Create statement lines of ``journal`` from ``create()`` values, in date order.

        Returns the lines in the order of ``vals_list`` sorted by (date, reference), the order in
        which Odoo numbers them.
        """
        vals_list = sorted(vals_list, key=lambda v: (str(v["date"]), v.get("ref") or ""))
        if not self._bulk_applies(journal, vals_list):
            return self.create(vals_list)
        if len(vals_list) <= EXISTING_TEMPLATE_MAX_LINES:
            lines = self._bulk_create_from_existing(journal, vals_list)
            if lines is not None:
                return lines
        if len(vals_list) < BULK_MIN_LINES:
            return self.create(vals_list)
        lines = self.browse()
        start = 0
        while start < len(vals_list):
            template = self.create(vals_list[start:start + 1])
            reset = template.move_id._deduce_sequence_number_reset(template.move_id.name)
            if reset not in BULK_SEQUENCE_RESETS:
                return lines | template | self.create(vals_list[start + 1:])
            period = _sequence_period(reset, template.date)
            end = start + 1
            while end < len(vals_list) and _sequence_period(
                    reset, _as_date(template, vals_list[end]["date"])) == period:
                end += 1
            lines |= template | self._bulk_clone(template, vals_list[start + 1:end])
            start = end
        return lines

    def _bulk_create_from_existing(self, journal, vals_list):
        """Copies of the journal's latest pristine line, when one exists in the sequence period
        of every line of ``vals_list``; None otherwise (the caller goes the usual way)."""
        template = self._bulk_existing_template(journal, vals_list)
        if not template:
            return None
        return self._bulk_clone(template, vals_list, names_from_lock=True)

    @api.model
    def _bulk_existing_template(self, journal, vals_list):
        """The latest line of ``journal`` that this path may copy for ``vals_list``: written by
        an import (no partner, not reconciled, two journal items on the journal's bank and
        suspense accounts), untouched since the transaction that created it, in the same
        sequence period as every line to create, with no analytic distribution model that
        could have changed since (the copies keep the template's distribution)."""
        if self.env["account.analytic.distribution.model"].sudo().search_count(
                [("company_id", "in", (False, journal.company_id.id))], limit=1):
            return self.browse()
        dates = [_as_date(self, vals["date"]) for vals in vals_list]
        self.env.flush_all()
        # Latest first along Odoo's index of unreconciled lines, from the first day of the
        # month of the first line (the shortest sequence period) to the last line's day.
        self.env.cr.execute("""
            SELECT line.id
              FROM account_bank_statement_line line
              JOIN account_move move ON move.id = line.move_id
             WHERE line.journal_id = %(journal)s AND line.company_id = %(company)s
               AND (NOT line.is_reconciled OR line.is_reconciled IS NULL)
               AND line.internal_index >= %(lower)s AND line.internal_index < %(upper)s
               AND line.online_transaction_identifier IS NOT NULL
               AND move.state = 'posted' AND line.partner_id IS NULL
               AND line.write_date = line.create_date AND move.write_date = line.create_date
               AND move.create_date = line.create_date
               AND (SELECT COUNT(*) FROM account_move_line item
                     WHERE item.move_id = move.id AND item.write_date = line.create_date
                       AND item.create_date = line.create_date) = 2
               AND NOT EXISTS (SELECT 1 FROM account_move_line item
                                WHERE item.move_id = move.id
                                  AND (item.write_date <> line.create_date
                                       OR item.reconciled OR item.partner_id IS NOT NULL))
          ORDER BY line.internal_index DESC
             LIMIT 1
        """, {"journal": journal.id, "company": journal.company_id.id,
              "lower": f"{min(dates).replace(day=1):%Y%m%d}",
              "upper": f"{max(dates) + timedelta(days=1):%Y%m%d}"})
        row = self.env.cr.fetchone()
        template = self.browse(row and row[0])
        if not template:
            return template
        liquidity, counterpart, others = template._seek_for_lines()
        if others or liquidity.account_id != journal.default_account_id \
                or counterpart.account_id != journal.suspense_account_id:
            return self.browse()
        move = template.move_id
        reset = move._deduce_sequence_number_reset(move.name)
        if reset not in BULK_SEQUENCE_RESETS or any(
                _sequence_period(reset, day) != _sequence_period(reset, move.date) for day in dates):
            return self.browse()
        return template

    @api.model
    def _bulk_applies(self, journal, vals_list):
        if journal.restrict_mode_hash_table:
            return False
        if self.env["ir.config_parameter"].sudo().get_param(
                "account_online_synchronization.bulk_import", "1") in ("0", "False", "false"):
            return False
        return all(set(vals) <= BULK_KEYS and vals.get("amount")
                   and vals.get("move_type", "entry") == "entry" for vals in vals_list)

    # ------------------------------------------------------------------ copies of the template
    def _bulk_clone(self, template, vals_list, names_from_lock=False):
        """Copies of ``template`` for ``vals_list``. Their names follow the template's in the
        sequence cache (the template was just created: its creation took the sequence lock),
        or, with ``names_from_lock``, follow the journal's last name through Odoo's lock."""
        if not vals_list:
            return self.browse()
        self.env.flush_all()
        journal = template.journal_id
        move = template.move_id
        liquidity, counterpart, others = template._seek_for_lines()
        if others or len(liquidity) != 1 or len(counterpart) != 1:
            return self.create(vals_list)
        count = len(vals_list)
        line_ids = self._bulk_next_ids("account_bank_statement_line", count)
        move_ids = self._bulk_next_ids("account_move", count)
        aml_ids = self._bulk_next_ids("account_move_line", 2 * count)
        if names_from_lock:
            names, sequence_numbers = ["/"] * count, [0] * count
        else:
            names, sequence_numbers = self._bulk_names(move, count)
        now, uid = self.env.cr.now(), self.env.uid
        stamps = {"create_date": [now] * count, "write_date": [now] * count,
                  "create_uid": [uid] * count, "write_uid": [uid] * count}
        default_sequence = self._fields["sequence"].default(self)
        rows = [self._bulk_row(journal, vals, liquidity, counterpart) for vals in vals_list]

        def column(key):
            return [row[key] for row in rows]

        sequences = [vals.get("sequence", default_sequence) for vals in vals_list]
        dates = [_as_date(template, vals["date"]) for vals in vals_list]
        statements = [vals.get("statement_id") or None for vals in vals_list]
        online_accounts = [vals.get("online_account_id") or None for vals in vals_list]
        links = self._bulk_links(online_accounts)
        self._bulk_insert("account_move", move.id, {
            "id": move_ids, "statement_line_id": [None] * count, "name": names,
            "sequence_number": sequence_numbers, "ref": [v.get("ref") or None for v in vals_list],
            "date": dates, "amount_total": column("amount_total"),
            "amount_total_signed": column("amount_total_signed"),
            "amount_total_in_currency_signed": column("amount_total_in_currency"),
            "made_sequence_gap": [False] * count, "currency_id": column("move_currency_id"),
            **stamps,
        })
        self._bulk_insert("account_bank_statement_line", template.id, {
            "id": line_ids, "move_id": move_ids, "statement_id": statements,
            "sequence": sequences,
            "foreign_currency_id": column("foreign_currency_id"),
            "amount": [vals["amount"] for vals in vals_list],
            "amount_currency": column("st_amount_currency"),
            "amount_residual": column("st_residual"),
            "is_reconciled": [False] * count,
            "payment_ref": [vals.get("payment_ref") for vals in vals_list],
            "partner_name": [vals.get("partner_name") or None for vals in vals_list],
            "account_number": [vals.get("account_number") or None for vals in vals_list],
            "transaction_details": [json.dumps(vals["transaction_details"])
                                    if vals.get("transaction_details") else None
                                    for vals in vals_list],
            "online_transaction_identifier": [vals.get("online_transaction_identifier") or None
                                              for vals in vals_list],
            "online_account_id": online_accounts,
            "online_link_id": links,
            "internal_index": [f"{day:%Y%m%d}{MAXINT - seq:0>10}{line_id:0>10}"
                               for day, seq, line_id in zip(dates, sequences, line_ids)],
        })
        # The move and its statement line point at each other: the move's side is set last.
        self.env.cr.execute("""
            UPDATE account_move move SET statement_line_id = v.line_id
              FROM unnest(%s::int4[], %s::int4[]) AS v(move_id, line_id)
             WHERE move.id = v.move_id""", [move_ids, line_ids])
        for offset, source, prefix in ((0, liquidity, "liq"), (1, counterpart, "cp")):
            self._bulk_insert("account_move_line", source.id, {
                "id": aml_ids[offset::2], "move_id": move_ids, "statement_line_id": line_ids,
                "statement_id": statements, "move_name": names, "date": dates,
                "ref": [v.get("ref") or None for v in vals_list],
                "name": [vals.get("payment_ref") for vals in vals_list],
                "currency_id": column(f"{prefix}_currency_id"),
                "debit": column(f"{prefix}_debit"), "credit": column(f"{prefix}_credit"),
                "balance": column(f"{prefix}_balance"),
                "amount_currency": column(f"{prefix}_amount_currency"),
                "amount_residual": column(f"{prefix}_residual"),
                "amount_residual_currency": column(f"{prefix}_residual_currency"),
                "price_subtotal": column(f"{prefix}_amount_currency"),
                "price_total": column(f"{prefix}_amount_currency"),
                **stamps,
            })
        self.env.invalidate_all()
        if names_from_lock:
            self._bulk_name_from_lock(self.env["account.move"].browse(move_ids))
        # Only statements hold stored computations over their lines (balances, completeness);
        # everything on the lines and entries themselves was written above.
        statements = self.env["account.bank.statement"].browse(
            {statement_id for statement_id in statements if statement_id})
        if statements:
            for field in statements._fields.values():
                if field.store and field.compute and any(
                        dependency.startswith("line_ids") for dependency in field.get_depends(statements)[0]):
                    self.env.add_to_compute(field, statements)
        return self.browse(line_ids)

    def _bulk_name_from_lock(self, moves):
        """Name posted copies inserted as "/", in order: the first through Odoo's own sequence
        lock, the others after it from the transaction's sequence cache; the columns derived
        from the names are then computed by Odoo's own compute methods."""
        first = moves[0]
        format_string, format_values = first._get_next_sequence_format()
        first_name = first._locked_increment(format_string, format_values)
        self.env.cr.execute("UPDATE account_move SET name = %s WHERE id = %s", [first_name, first.id])
        first.invalidate_recordset(["name"])
        names, _numbers = self._bulk_names(first, len(moves) - 1)
        if names:
            self.env.cr.execute("""
                UPDATE account_move move SET name = v.name
                  FROM unnest(%s::int4[], %s::varchar[]) AS v(id, name)
                 WHERE move.id = v.id""", [moves[1:].ids, names])
        moves.invalidate_recordset()
        Move = self.env["account.move"]
        for field in ("sequence_prefix", "sequence_number", "made_sequence_gap"):
            self.env.add_to_compute(Move._fields[field], moves)
        moves.flush_recordset()  # prefix and number first: the gap is computed from them
        items = moves.line_ids
        self.env.add_to_compute(items._fields["move_name"], items)
        items.flush_recordset()

    def _bulk_row(self, journal, vals, liquidity, counterpart):
        """Every amount column of one line, computed the way ``create()`` computes it."""
        company_currency = journal.company_id.sudo().currency_id
        journal_currency = journal.currency_id or company_currency
        foreign_currency = self.env["res.currency"].browse(vals.get("foreign_currency_id") or [])
        if foreign_currency == journal_currency:
            foreign_currency = self.env["res.currency"]  # create() drops it too
        journal_amount = vals["amount"]
        transaction_amount = vals.get("amount_currency", 0.0) if foreign_currency else journal_amount
        if journal_currency == company_currency:
            company_amount = journal_amount
        elif foreign_currency == company_currency:
            company_amount = transaction_amount
        else:
            company_amount = journal_currency._convert(
                journal_amount, company_currency, journal.company_id, _as_date(liquidity, vals["date"]))
        row = {
            "foreign_currency_id": foreign_currency.id or None,
            "st_amount_currency": transaction_amount if foreign_currency else 0.0,
            "st_residual": -transaction_amount,
        }
        for prefix, source, currency, amount, balance in (
                ("liq", liquidity, journal_currency, journal_amount, company_amount),
                ("cp", counterpart, foreign_currency or journal_currency, -transaction_amount,
                 -company_amount)):
            keeps_residual = source.account_id.reconcile or source.account_id.account_type in (
                "asset_cash", "liability_credit_card")
            row.update({
                f"{prefix}_currency_id": currency.id,
                f"{prefix}_debit": balance if balance > 0 else 0.0,
                f"{prefix}_credit": -balance if balance < 0 else 0.0,
                f"{prefix}_balance": balance,
                f"{prefix}_amount_currency": amount,
                f"{prefix}_residual": balance if keeps_residual else 0.0,
                f"{prefix}_residual_currency": amount if keeps_residual else 0.0,
            })
        debit_amount = row["liq_amount_currency"] if company_amount > 0 else row["cp_amount_currency"]
        row.update(move_currency_id=(foreign_currency or journal_currency).id,
                   amount_total=debit_amount, amount_total_signed=abs(company_amount),
                   amount_total_in_currency=abs(debit_amount))
        return row

    def _bulk_names(self, move, count):
        """The next ``count`` names after ``move``'s, from Odoo's sequence cache (the template's
        creation took the sequence lock for this transaction)."""
        if not count:
            return [], []
        format_string, format_values = move._get_sequence_format_param(move.name)
        seq = format_values.pop("seq")
        cache_key = (format_string.format(**format_values, seq=0),
                     move._sequence_index and move[move._sequence_index])
        cache = move._get_sequence_cache()
        seq = max(seq, cache.get(cache_key, seq))
        numbers = list(range(seq + 1, seq + 1 + count))
        cache[cache_key] = numbers[-1]
        return [format_string.format(**format_values, seq=n) for n in numbers], numbers

    def _bulk_links(self, online_account_ids):
        accounts = self.env["account.online.account"].browse(
            {account_id for account_id in online_account_ids if account_id})
        link_of = {account.id: account.account_online_link_id.id for account in accounts}
        return [link_of.get(account_id) for account_id in online_account_ids]

    def _bulk_next_ids(self, table, count):
        self.env.cr.execute(f"SELECT nextval('{table}_id_seq') FROM generate_series(1, %s)",
                            [count])
        return [row[0] for row in self.env.cr.fetchall()]

    def _bulk_column_types(self, table):
        """{column: SQL type} of ``table``, once per registry (columns change only on upgrade)."""
        cache = self.env.registry.__dict__.setdefault("_online_sync_bulk_columns", {})
        if table not in cache:
            cache[table] = _column_types(self.env.cr, table)
        return cache[table]

    def _bulk_insert(self, table, template_id, overrides):
        """Insert one row per position of the ``overrides`` columns; every other column is
        copied from the template row ``template_id``."""
        types = self._bulk_column_types(table)
        names = list(overrides)
        selected = [f'v."{name}"' if name in overrides else f'tpl."{name}"' for name in types]
        unnest = ", ".join(f"%s::{types[name]}[]" for name in names)
        self.env.cr.execute(f"""
            INSERT INTO "{table}" ({", ".join(f'"{name}"' for name in types)})
            SELECT {", ".join(selected)}
              FROM "{table}" tpl,
                   unnest({unnest}) AS v({", ".join(f'"{name}"' for name in names)})
             WHERE tpl.id = %s
        """, [overrides[name] for name in names] + [template_id])


def _column_types(cr, table):
    cr.execute("""
        SELECT attname, format_type(atttypid, NULL) FROM pg_attribute
         WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
      ORDER BY attnum""", [table])
    return dict(cr.fetchall())


def _as_date(record, value):
    return record._fields["date"].convert_to_cache(value, record) if isinstance(value, str) \
        else value


def _sequence_period(reset, day):
    if reset == "year":
        return day.year
    if reset == "month":
        return day.year, day.month
    return None
