# Run by scripts/demo.sh inside `odoo shell`: configure every provider against its simulator,
# connect the Sandbox Bank once through its real consent flow (the browser's part done with
# requests), then synchronize. Idempotent.
import json
import os
from odoo.addons.account_online_synchronization.services.providers import available_providers
from odoo.addons.account_online_synchronization.simulators.sandbox_bank import simulate_user

admin_env = env(user=env.ref("base.user_admin"))  # noqa: F821 (provided by odoo shell)
admin_env["ir.config_parameter"].sudo().set_param("web.base.url", os.environ["WEB_URL"])
company = admin_env.company
# Dutch beside English, so the demo can be clicked through in both (Preferences > Language).
if not admin_env["res.lang"].search([("code", "=", "nl_BE")]):
    dutch = admin_env["res.lang"].with_context(active_test=False).search([("code", "=", "nl_BE")])
    admin_env["base.language.install"].sudo().create({"lang_ids": [(6, 0, dutch.ids)]}).lang_install()
Provider = admin_env["account.online.provider"].sudo()
with open(os.environ["SIMULATORS"]) as handle:
    simulators = json.load(handle)
for code, values in simulators.items():
    provider = Provider.search([("code", "=", code), ("company_id", "=", company.id)]) \
        or Provider.create({"name": code, "code": code, "company_id": company.id})
    provider.write(dict(values, name=dict(available_providers())[code]))
provider = Provider._for_company("sandbox", company)

link = admin_env["account.online.link"].search(
    [("provider_code", "=", "sandbox"), ("company_id", "=", company.id)], limit=1)

def give_consent(consent_url):
    """The user's part at the bank: open the consent page and press "Allow access"."""
    return simulate_user(consent_url)


if not link:
    wizard = admin_env["account.online.connect.wizard"].create({"security_contact": "it@example.com"})
    institution = wizard.institution_ids.filtered(lambda i: i.identifier == "SANDBOX_BANK")
    callback = give_consent(institution.action_connect()["url"])
    link, _journal = admin_env["account.online.consent.request"]._complete(callback)
    selection = admin_env["account.online.account.selection"].create({"link_id": link.id})
    result = selection.action_confirm()
else:
    if link.state != "disconnected":
        result = link.action_fetch_transactions()
    if link.state == "disconnected":
        # The simulators were restarted (they keep consents in memory): Reconnect, as a user would.
        admin_env["account.online.consent.request"]._complete(
            give_consent(link.action_reconnect()["url"]))
        result = link.action_fetch_transactions()
print(result["params"]["message"])
for journal in link.journal_ids:
    lines = admin_env["account.bank.statement.line"].search_count([("journal_id", "=", journal.id)])
    statements = admin_env["account.bank.statement"].search_count([("journal_id", "=", journal.id)])
    print(f"{journal.name}: {lines} transactions in {statements} statements")
env.cr.commit()  # noqa: F821
