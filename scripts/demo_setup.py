# Run by scripts/demo.sh inside `odoo shell`: connect the Sandbox Bank once through its real
# consent flow (the browser's part done with requests), then synchronize. Idempotent.
import os
from urllib.parse import parse_qs, urlsplit

import requests

admin_env = env(user=env.ref("base.user_admin"))  # noqa: F821 (provided by odoo shell)
admin_env["ir.config_parameter"].sudo().set_param("web.base.url", os.environ["WEB_URL"])
company = admin_env.company
provider = admin_env["account.online.provider"]._for_company("sandbox", company)
provider.base_url = os.environ["SANDBOX_URL"]

link = admin_env["account.online.link"].search(
    [("provider_code", "=", "sandbox"), ("company_id", "=", company.id)], limit=1)
if not link:
    wizard = admin_env["account.online.connect.wizard"].create({"security_contact": "it@example.com"})
    institution = wizard.institution_ids.filtered(lambda i: i.identifier == "SANDBOX_BANK")
    consent_url = institution.action_connect()["url"]
    form = {key: values[0] for key, values in parse_qs(urlsplit(consent_url).query).items()}
    answer = requests.post(f"{provider.base_url}/consent/decision",
                           data=dict(form, decision="approve"), allow_redirects=False, timeout=10)
    callback = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    link, _journal = admin_env["account.online.consent.request"]._complete(callback)
    selection = admin_env["account.online.account.selection"].create({"link_id": link.id})
    result = selection.action_confirm()
else:
    result = link.action_fetch_transactions()
print(result["params"]["message"])
for journal in link.journal_ids:
    lines = admin_env["account.bank.statement.line"].search_count([("journal_id", "=", journal.id)])
    statements = admin_env["account.bank.statement"].search_count([("journal_id", "=", journal.id)])
    print(f"{journal.name}: {lines} transactions in {statements} statements")
env.cr.commit()  # noqa: F821
