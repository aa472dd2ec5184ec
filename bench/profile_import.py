# Profile of one import (not a test): `odoo shell -d <db> < bench/profile_import.py`.
# PROFILE_LINES synthetic bank lines (default 400) through Odoo's create(), then the same values
# through the module's import path, each in the same fresh journal after one warm-up line;
# prints time, SQL query count and the top functions by own time. Rolled back at the end.
import cProfile
import io
import os
import pstats
import time
from datetime import date, timedelta

env = env(su=True, context={"tracking_disable": True})  # noqa: F821 (odoo shell)
size = int(os.environ.get("PROFILE_LINES", "400"))
journal = env["account.journal"].create({"name": "Profile", "type": "bank", "code": "PRF"})
vals = sorted(({"journal_id": journal.id, "date": date.today() - timedelta(days=n % 60),
                "amount": (n % 300) - 150.5, "payment_ref": f"Payment {n}",
                "online_transaction_identifier": f"profile:{n}", "partner_name": "Shop"}
               for n in range(size)), key=lambda v: v["date"])
env["account.bank.statement.line"].create([dict(vals[0], online_transaction_identifier="warm")])
env.flush_all()
runs = (
    ("Odoo create()", lambda: env["account.bank.statement.line"].create([dict(v) for v in vals])),
    ("module import path", lambda: journal._bank_import_create_lines(
        [dict(v, online_transaction_identifier="module:" + v["online_transaction_identifier"])
         for v in vals])),
)
for label, run in runs:
    queries = env.cr.sql_log_count
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    run()
    env.flush_all()
    profile.disable()
    print(f"{label}: {size} lines, {time.perf_counter() - started:.2f} s, "
          f"{env.cr.sql_log_count - queries} SQL queries")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    print(out.getvalue())
env.cr.rollback()
