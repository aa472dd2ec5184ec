"""Pure-Python bank statement file parsers: CAMT.053, OFX/QFX, QIF, CODA and CSV.

The fallback import of bank lines when no online connection exists. Every parser returns the
same ``ParseResult``: statements (account, currency, balances) holding normalized
``services.types.Transaction`` objects (provider "file", signed Decimal amounts, ``date``
objects, ``external_id`` = the file's own id or a synthetic fingerprint) and a list of
warnings (message code + parameters, English templates in ``model.MESSAGES``). Anything that
makes the file unusable raises ``StatementFileError`` with a message saying what is wrong and
what to do.

    result = parse_file(data, "export.xml")
    for statement in result.statements:
        ...

Options (all optional; the Odoo layer passes the journal's settings):

``format``               force a format ("camt053", "ofx", "qif", "coda", "csv")
``encoding``             force the text encoding (QIF, CSV, CODA, OFX)
``date_format``          force the date order of QIF/CSV dates: "DMY", "MDY", "YMD" or a
                         strptime-like pattern ("%d/%m/%Y")
``date_order_hint``      order to use only when the dates are ambiguous (e.g. from the
                         user's language)
``decimal_separator``    "," or "." for QIF/CSV amounts
``invert_sign``          QIF/CSV: money out is written positive (some card exports)
``currency``             QIF/CSV: currency when the file does not say
``qif_opening_balance``  "balance" (default: an 'Opening Balance' record sets the opening
                         balance) or "line" (import it as a line)
``timezone``             CAMT: IANA zone used to turn UTC date-times into bank dates
``coda_book_details``    CODA: book the details of globalised movements instead of totals
``csv_mapping``          CSV: a ``CsvMapping`` (or its dict) saved for the journal
``csv_profile``          CSV: name of a built-in profile to use (see ``csv.PROFILES``)
``delimiter``            CSV: force the delimiter
``account_number``       CSV: the journal's account when the file has no account column

Messages: ``ParseResult.warnings`` are ``ParseMessage(code, params)`` and errors are
``StatementFileError(code, **params)``; both render in English (``str()``) and accept a
translation function (``.translated(_)``) applied to the template from ``MESSAGES``.
"""
import io
import os
import zipfile
import zlib

from . import camt, coda, ofx, qif
from . import csv as csv_parser
from .csv import PROFILES, CsvMapping
from .model import (MESSAGES, ParseMessage, ParseResult, Statement, StatementFileError)

__all__ = ["parse_file", "detect_format", "PARSERS", "EXTENSIONS", "CsvMapping", "PROFILES",
           "ParseResult", "ParseMessage", "Statement", "StatementFileError", "MESSAGES"]

#: format code -> parser module (each has ``detect(content, filename)`` and
#: ``parse(content, filename, options)``), in detection priority order
PARSERS = {
    "camt053": camt,
    "ofx": ofx,
    "coda": coda,
    "qif": qif,
    "csv": csv_parser,
}

EXTENSIONS = {
    ".xml": "camt053", ".053": "camt053", ".camt": "camt053",
    ".ofx": "ofx", ".qfx": "ofx",
    ".qif": "qif",
    ".cod": "coda", ".coda": "coda",
    ".csv": "csv", ".tsv": "csv",
}

MAX_ZIP_MEMBERS = 500
MAX_ZIP_SIZE = 100 * 1024 * 1024


def detect_format(content, filename=None):
    """The format code of ``content`` or None. The content decides; the file name extension
    only breaks ties or helps when the content says little (CSV)."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    if not content or not content.strip():
        return None
    scores = {}
    for name, parser in PARSERS.items():
        try:
            scores[name] = parser.detect(content, filename)
        except Exception:  # a detector must never break detection
            scores[name] = 0.0
    best = max(scores, key=lambda n: scores[n])
    extension = os.path.splitext(filename or "")[1].lower()
    by_extension = EXTENSIONS.get(extension)
    if scores[best] >= 0.5:
        if by_extension and scores.get(by_extension, 0) == scores[best]:
            return by_extension
        return best
    if by_extension and scores.get(by_extension, 0) > 0:
        return by_extension
    return best if scores[best] > 0 else None


def parse_file(content, filename=None, *, options=None):
    """Parse a statement file -> ``ParseResult``; raises ``StatementFileError``.

    ``content`` is the file's bytes. A ZIP archive is opened and every statement file in it
    is parsed (all of one format); their statements are returned together.
    """
    options = dict(options or {})
    if isinstance(content, str):
        content = content.encode("utf-8")
    if not content or not content.strip():
        raise StatementFileError("empty_file")
    if content[:4] == b"PK\x03\x04" and not options.get("format"):
        return _parse_zip(content, filename, options)
    fmt = options.get("format")
    if fmt:
        if fmt not in PARSERS:
            raise StatementFileError("unknown_forced_format", format=fmt, formats=list(PARSERS))
    else:
        fmt = detect_format(content, filename)
        if fmt is None:
            raise StatementFileError("unknown_format", filename=filename or "-")
    try:
        return PARSERS[fmt].parse(content, filename, options)
    except StatementFileError:
        raise
    except RecursionError:
        raise StatementFileError("parse_failed", format=fmt,
                                 detail="the file is nested too deeply") from None
    except Exception as error:  # never a raw traceback for the user
        detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        raise StatementFileError("parse_failed", format=fmt, detail=detail) from error


#: what a damaged ZIP archive raises while it is opened or read
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
               IndexError, OverflowError, RuntimeError)      # NotImplementedError included


def _zip_failure(error, member=None):
    """``zip_invalid`` saying why, in words (never the exception)."""
    if isinstance(error, NotImplementedError):
        reason = "it uses a compression method or ZIP version that is not supported"
    elif type(error) is RuntimeError:           # zipfile: encrypted member
        reason = "a file in it is protected by a password"
    else:
        reason = "it is damaged or incomplete"
    if member:
        member = "".join(c if c.isprintable() else "?" for c in member)
        reason = f"{member}: {reason}"
    return StatementFileError("zip_invalid", detail=reason)


def _parse_zip(content, filename, options):
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        infos = archive.infolist()
    except zipfile.BadZipFile:
        raise StatementFileError("unknown_format", filename=filename or "-") from None
    except _ZIP_ERRORS as error:
        raise _zip_failure(error) from error
    members = [m for m in infos if not m.is_dir()
               and not os.path.basename(m.filename).startswith((".", "__MACOSX"))
               and "__MACOSX" not in m.filename]
    if not members:
        raise StatementFileError("no_statement", detail="the ZIP archive is empty")
    if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > MAX_ZIP_SIZE:
        raise StatementFileError("zip_too_large", count=len(members))
    combined = None
    for member in sorted(members, key=lambda m: m.filename):
        try:
            data = archive.read(member)
        except _ZIP_ERRORS as error:
            raise _zip_failure(error, member.filename) from error
        fmt = detect_format(data, member.filename)
        if fmt is None or fmt == "csv" and not member.filename.lower().endswith((".csv", ".txt")):
            continue
        # the format is forced: an archive inside the archive is not opened in turn
        result = parse_file(data, member.filename, options=dict(options, format=fmt))
        if combined is None:
            combined = result
            combined.raw["files"] = [member.filename]
        else:
            if result.format != combined.format:
                raise StatementFileError("zip_mixed_formats", first=combined.format,
                                         other=result.format)
            combined.statements.extend(result.statements)
            combined.warnings.extend(result.warnings)
            combined.raw["files"].append(member.filename)
    if combined is None:
        raise StatementFileError("no_statement",
                                 detail="no statement file in the ZIP archive")
    return combined
