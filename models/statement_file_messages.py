"""The statement-file parsers' messages (``services/statement_files/model.MESSAGES``) as
translatable terms: the .pot extractor reads the literals below, and ``translator(env)`` gives
the translation of a template, applied before its parameters are filled in.

Keep in step with ``MESSAGES`` (tests/pure/test_statement_file_messages.py checks it).
"""
from odoo.tools.translate import LazyTranslate

_lt = LazyTranslate(__name__)

MESSAGES = {
    "empty_file": _lt('The file is empty.'),
    "unknown_format": _lt(
        'The file %(filename)s is not a bank statement this importer can read. Supported '
        'formats are CAMT.053 (XML), OFX/QFX, QIF, CODA and CSV; export the statement again '
        'in one of them.'),
    "unknown_forced_format": _lt('Unknown statement format %(format)s; use one of %(formats)s.'),
    "bad_encoding": _lt(
        'The file cannot be decoded with the encoding %(encoding)s; choose another encoding '
        'or export the file again as UTF-8.'),
    "no_statement": _lt('The file contains no bank statement (%(detail)s).'),
    "parse_failed": _lt(
        'The %(format)s file could not be read (%(detail)s). Check that it is a complete '
        'statement export; if it is, report the problem with the file attached.'),
    "zip_too_large": _lt('The ZIP archive holds too many or too large files (%(count)s files).'),
    "zip_invalid": _lt(
        'The ZIP archive cannot be opened (%(detail)s). Extract the statement file from it '
        'and import that file instead.'),
    "zip_mixed_formats": _lt(
        'The ZIP archive mixes %(first)s and %(other)s files; import them separately.'),
    "balance_mismatch": _lt(
        'Statement %(statement)s: the opening balance %(opening)s plus the lines (%(total)s) '
        'gives %(computed)s, but the closing balance in the file is %(closing)s (difference '
        '%(difference)s). Check that no line is missing.'),
    "amounts_rounded": _lt(
        '%(count)s amounts had more decimals than %(currency)s allows and were rounded.'),
    "dates_read_with_hint": _lt(
        'The dates can be read in several ways; they were read as %(format)s (the date format'
        ' of your language or of the file layout). Check the dates of the lines.'),
    "duplicate_ids": _lt(
        '%(count)s lines share a bank reference with another line of the file; a suffix was '
        'added to keep them apart.'),
    "ofx_invalid": _lt('The OFX file could not be read: %(detail)s. Export the statement again.'),
    "ofx_missing_amount": _lt(
        'Transaction %(number)s of the file (FITID %(fitid)s) has no amount (TRNAMT): the OFX'
        ' file is incomplete or damaged. Export the statement again.'),
    "ofx_bad_amount": _lt(
        'Transaction %(number)s of the file: the amount %(value)s is not a number.'),
    "ofx_missing_date": _lt(
        'Transaction %(number)s of the file (FITID %(fitid)s) has no posting date (DTPOSTED):'
        ' the OFX file is incomplete or damaged. Export the statement again.'),
    "ofx_no_statement": _lt(
        'The OFX file contains no bank or credit-card statement (investment statements are '
        'not supported).'),
    "ofx_pending_ignored": _lt(
        '%(count)s pending transactions were ignored; only booked ones are imported.'),
    "ofx_no_balance": _lt(
        'Account %(account)s: the file gives no usable ledger balance, so the statement has '
        'no opening or closing balance.'),
    "ofx_balance_before_last_line": _lt(
        'Account %(account)s: the ledger balance is dated %(balance_date)s, before the last '
        'line (%(last_date)s); the opening balance was not computed.'),
    "ofx_no_fitid": _lt(
        '%(count)s transactions have no FITID; they were identified by their date, amount and'
        ' text instead.'),
    "ofx_missing_currency": _lt(
        'Account %(account)s: the file does not say in which currency it is.'),
    "ofx_missing_account": _lt('A statement in the file does not say which account it belongs to.'),
    "qif_no_transactions": _lt(
        'The QIF file contains no bank transactions (only %(sections)s sections, which are '
        'not bank statements).'),
    "qif_bad_date": _lt('Line %(line)s: %(value)s is not a date in the format %(format)s.'),
    "qif_no_date": _lt('Line %(line)s: the transaction has no date (D line).'),
    "qif_no_amount": _lt('Line %(line)s: the transaction has no amount (T line).'),
    "qif_bad_amount": _lt('Line %(line)s: the amount %(value)s is not a number.'),
    "qif_ambiguous_dates": _lt(
        'The dates in this file can be read in several ways (%(candidates)s; e.g. '
        '%(example)s). Choose the date format in the import options and import the file '
        'again.'),
    "qif_unknown_dates": _lt(
        'The dates of this file (e.g. %(example)s) match no known date format; choose the '
        'date format in the import options.'),
    "qif_skipped_sections": _lt(
        '%(count)s records of non-bank sections (%(sections)s) were skipped.'),
    "qif_opening_balance": _lt(
        "The 'Opening Balance' record (%(amount)s) was used as the opening balance, not "
        'imported as a line.'),
    "camt_invalid_xml": _lt('The XML file could not be read: %(detail)s.'),
    "camt_not_statement": _lt(
        'This XML file is a %(kind)s message, not a CAMT.053 bank statement. Export the '
        'statement (camt.053) instead.'),
    "camt_no_statement": _lt('The CAMT.053 file contains no statement (no Stmt element).'),
    "camt_bad_amount": _lt(
        'Statement %(statement)s, entry %(entry)s: the amount %(value)s is not a number.'),
    "camt_bad_date": _lt('Statement %(statement)s: %(value)s is not a valid date.'),
    "camt_no_amount": _lt('Statement %(statement)s, entry %(entry)s has no amount.'),
    "camt_skipped_status": _lt(
        'Statement %(statement)s: %(count)s entries with status %(status)s were ignored; only'
        ' booked entries are imported.'),
    "camt_balance_currency": _lt(
        'Statement %(statement)s: the %(kind)s balance is in %(balance_currency)s, not in the'
        ' statement currency %(currency)s.'),
    "camt_missing_indicator": _lt(
        'Statement %(statement)s: %(count)s amounts have no credit/debit indicator and were '
        'read as credits.'),
    "camt_no_date": _lt(
        'Statement %(statement)s, entry %(entry)s has no booking or value date; the statement'
        ' date was used.'),
    "coda_bad_version": _lt(
        'This CODA file has version %(version)s; only CODA version 2 is supported. Ask the '
        'bank for CODA 2.x files.'),
    "coda_bad_record": _lt('Line %(line)s: %(detail)s.'),
    "coda_bad_amount": _lt('Line %(line)s: the amount %(value)s is not a number.'),
    "coda_bad_date": _lt('Line %(line)s: %(value)s is not a date (DDMMYY).'),
    "coda_no_header": _lt(
        'The CODA file must start with a header record (0); line %(line)s starts with '
        '%(value)s.'),
    "coda_account_mismatch": _lt(
        'Statement %(statement)s: the new-balance record names account %(other)s, the old-'
        'balance record %(account)s; %(account)s was used.'),
    "coda_trailer_count": _lt(
        'Statement %(statement)s: the trailer announces %(expected)s records, the file has '
        '%(found)s.'),
    "coda_trailer_sums": _lt(
        'Statement %(statement)s: the trailer totals (debit %(debit)s, credit %(credit)s) do '
        'not match the movements (debit %(found_debit)s, credit %(found_credit)s).'),
    "coda_unclosed_globalisation": _lt(
        'Statement %(statement)s: a globalisation opened by movement %(sequence)s is never '
        'closed; its lines were imported as ordinary movements.'),
    "coda_bad_ogm": _lt(
        'Movement %(sequence)s: the structured communication %(value)s has a wrong check '
        'digit.'),
    "coda_no_trailer": _lt('The CODA file ends without a trailer record (9); it may be truncated.'),
    "csv_no_rows": _lt('The CSV file contains no transaction rows.'),
    "csv_bad_row": _lt('Line %(line)s cannot be read as CSV (%(detail)s).'),
    "csv_no_mapping": _lt(
        'The columns of this CSV file were not recognised. Columns found: %(columns)s. Set up'
        ' a column mapping for this journal (date, amount or debit/credit, label) and import '
        'again.'),
    "csv_missing_column": _lt(
        'The column %(column)s of the mapping is not in the file. Columns found: %(columns)s.'),
    "csv_bad_date": _lt('Line %(line)s: %(value)s is not a date in the format %(format)s.'),
    "csv_bad_amount": _lt('Line %(line)s: the amount %(value)s is not a number.'),
    "csv_no_amount": _lt('Line %(line)s has no amount.'),
    "csv_ambiguous_dates": _lt(
        'The dates of column %(column)s can be read in several ways (%(candidates)s; e.g. '
        '%(example)s). Choose the date format in the column mapping and import again.'),
    "csv_unknown_dates": _lt(
        'The values of column %(column)s (e.g. %(example)s) match no known date format; set '
        'the date format in the column mapping.'),
    "csv_profile": _lt('The file was read with the built-in layout %(profile)s.'),
    "csv_guessed_mapping": _lt(
        'The columns were guessed from their names (date: %(date)s, amount: %(amount)s); '
        'check the lines before posting them.'),
    "csv_skipped_rows": _lt('%(count)s rows were skipped (%(reason)s).'),
    "csv_balance_chain": _lt(
        'The running balances of the file do not follow from the amounts (line %(line)s); the'
        ' statement balances were not taken from them.'),
    "csv_bad_direction": _lt(
        'Line %(line)s: %(value)s is neither a debit nor a credit marker (%(markers)s).'),
}

#: English template -> its translatable term
_BY_TEMPLATE = {term._source: term for term in MESSAGES.values()}


def translator(env):
    """A function giving the translation of a parser template in the language of ``env``
    (the template itself when it is unknown), for ``ParseMessage.translated``."""
    def translate(template):
        term = _BY_TEMPLATE.get(template)
        return env._(term) if term is not None else template
    return translate
