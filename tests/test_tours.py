"""The accountant's flows in real headless Chromium (Odoo tours, static/tests/tours/)."""
import json
import threading
import time
from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.tests import HttpCase, common, tagged

from .common import OnlineSyncCase

TOUR_PREFIX = "account_online_sync_tour_"
CALLBACK_PATH = "/account_online_synchronization/consent/callback"


class _BankCustomerBrowser(common.ChromeBrowser):
    """The tour's Chromium, which also plays the bank's customer on pages outside Odoo's web client.

    A tour runs inside Odoo's web client and cannot act on another origin. When the browser lands
    on the Sandbox Bank's consent page (127.0.0.1, another port), this browser reads the page and
    presses "Allow access" (or "Cancel") through the DevTools connection the test already holds;
    the bank then sends the same browser back to Odoo's callback, where the tour resumes (its
    state is kept in Odoo's localStorage across page loads). On the callback's own page (shown
    only when the consent did not complete) it reads the message and follows the link back.
    """
    bank_url = odoo_url = None   # set by the test (a subclass per tour run)
    decision = "approve"
    seen = None                  # pages seen outside the web client: [{"url", "title", "text"}]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._handlers["Page.frameNavigated"] = self._handle_frame_navigated

    def _handle_frame_navigated(self, frame, **_kw):
        # Called from the websocket consumer thread, which must not wait for an answer itself.
        url = frame.get("url", "")
        if frame.get("parentId"):
            return
        if url.startswith(self.bank_url + "/consent?"):
            click = ('form[action="/consent/decision"] button[name=decision][value=%s]'
                     % json.dumps(self.decision))
        elif url.startswith(self.odoo_url + CALLBACK_PATH):
            # A successful callback redirects at once; a page here says what went wrong.
            click = "a.btn-primary"
        else:
            return
        threading.Thread(target=self._read_and_click, args=(url, click),
                         name="bank customer", daemon=True).start()

    def _evaluate(self, expression):
        answer = self._websocket_request("Runtime.evaluate", params={
            "expression": expression, "returnByValue": True})
        return answer.get("result", {}).get("value")

    def _read_and_click(self, url, selector):
        page = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            page = self._evaluate(
                "(location.href === %s && document.readyState === 'complete') ? "
                "{url: location.href, title: document.title, text: document.body.innerText} : null"
                % json.dumps(url))
            if page:
                break
            time.sleep(0.1)
        self.seen.append(page or {"url": url, "title": None, "text": None})
        if page:
            self._evaluate("document.querySelector(%s).click()" % json.dumps(selector))


@tagged("post_install", "-at_install")
class TestTours(HttpCase, OnlineSyncCase):
    """Add a Bank Account through the bank's consent page, the dashboard card, the connection
    form, Find Duplicates, Reconnect, Update Credentials and a cancelled consent, clicked in
    Chromium as an accountant would."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The bank sends the browser back to this server (OnlineSyncCase points elsewhere).
        cls.env["ir.config_parameter"].sudo().set_param("web.base.url", cls.base_url())
        # An accountant: accounting administrator with the full accounting features.
        cls.accountant = cls.env["res.users"].create({
            "name": "Alice Accountant", "login": "accountant", "password": "accountant",
            "email": "accountant@example.com", "tz": "Europe/Brussels",
            "groups_id": [(6, 0, [cls.env.ref("base.group_user").id,
                                  cls.env.ref("account.group_account_manager").id,
                                  cls.env.ref("account.group_account_user").id])],
        })

    def _tour(self, url, name, **kwargs):
        self.start_tour(url, TOUR_PREFIX + name, login="accountant", timeout=120, **kwargs)

    def _tour_through_consent(self, url, name, decision="approve"):
        """Run a tour whose browser goes to the bank's consent page; return the pages it saw
        outside Odoo's web client."""
        seen = []
        browser_class = type("BankCustomerBrowser", (_BankCustomerBrowser,), {
            "bank_url": self.bank.url, "odoo_url": self.base_url(), "decision": decision,
            "seen": seen})
        with patch.object(common, "ChromeBrowser", browser_class):
            self._tour(url, name)
        return seen

    # ------------------------------------------------------------------ a) Add a Bank Account
    def test_add_a_bank_account_through_the_consent_page(self):
        self.company.online_sync_security_contact = False
        # The company's empty bank journal, which the accountant picks for the EUR account.
        bank_journal = self.env["account.journal"].create({
            "name": "Main Bank", "code": "MAIN", "type": "bank", "company_id": self.company.id})
        seen = self._tour_through_consent("/odoo", "add_bank_account")

        # The browser really left for the bank's page, on the bank's origin, and came back.
        self.assertEqual(len(seen), 1, seen)
        self.assertTrue(seen[0]["url"].startswith(self.bank.url + "/consent?"))
        self.assertIn("institution_id=SANDBOX_BANK&", seen[0]["url"])
        self.assertEqual(seen[0]["title"], "Sandbox Bank – Consent")
        self.assertIn("Allow access", seen[0]["text"])
        self.assertIn("Sandbox Current Account", seen[0]["text"])

        link = self.env["account.online.link"].search([])
        self.assertEqual(len(link), 1)
        self.assertEqual(link.state, "connected")
        self.assertEqual(self.env.company.online_sync_security_contact, "+32 2 123 45 67")
        eur = self._eur_account(link)
        self.assertEqual(eur.journal_id, bank_journal)
        booked = self._bank_booked_ids(eur)
        self.assertTrue(booked)
        self.assertEqual(set(self._journal_txn_ids(bank_journal)), booked)
        lines = self.env["account.bank.statement.line"].search([("journal_id", "=", bank_journal.id)])
        self.assertAlmostEqual(sum(lines.mapped("amount")),
                               float(self.bank.expected_balances(eur.stable_key)["booked"]),
                               places=2)
        usd = link.account_online_account_ids - eur
        self.assertEqual(usd.journal_id.name, "Sandbox Dollar Account")
        self.assertEqual((usd.journal_id.currency_id or self.company.currency_id).name, "USD")
        self.assertEqual((bank_journal.currency_id or self.company.currency_id).name, "EUR")

    # ------------------------------------------------------------------ b) the dashboard card
    def test_dashboard_card_synchronize_now(self):
        link = self._connect()
        journal = self._eur_account(link).journal_id
        journal.name = "Sandbox EUR"
        before = set(self._journal_txn_ids(journal))
        lines = self.env["account.bank.statement.line"].search([("journal_id", "=", journal.id)])
        last_day = lines.filtered(lambda l: l.date == max(lines.mapped("date")))
        # The last booking day was not fetched yet: Synchronize Now brings its 3 transactions.
        self.assertEqual(len(last_day), 3)
        last_day.unlink()
        self._tour("/odoo/accounting", "dashboard_sync_now")
        self.assertEqual(set(self._journal_txn_ids(journal)), before)
        self.assertEqual(self._eur_account(link).last_sync_count, 3)

    # ------------------------------------------------------------------ c) the connection form
    def test_connection_form_and_sync_log(self):
        self._connect()
        self._tour("/odoo", "connection_form")
        logs = self.env["account.online.sync.log"].search([("trigger", "=", "manual")])
        self.assertEqual(len(logs), 2, "Fetch Transactions synchronized both accounts")

    # ------------------------------------------------------------------ d) Find Duplicates
    def test_find_duplicates_from_the_journal(self):
        link = self._connect()
        journal = self._eur_account(link).journal_id
        journal.name = "Sandbox EUR"
        synced = self.env["account.bank.statement.line"].search([
            ("journal_id", "=", journal.id), ("online_transaction_identifier", "!=", False)],
            order="date desc, id desc", limit=1)
        typed = self.env["account.bank.statement.line"].create({
            "journal_id": journal.id, "date": synced.date, "amount": synced.amount,
            "payment_ref": "Typed by hand", "account_number": synced.account_number})
        self._tour("/odoo/accounting", "find_duplicates")
        self.assertFalse(typed.exists())
        self.assertTrue(synced.exists())
        self.assertTrue(any("duplicate bank transactions deleted" in (m.body or "")
                            for m in journal.message_ids))

    # ------------------------------------------------------------------ consent lifecycle
    def _assert_consent_page(self, page):
        self.assertTrue(page["url"].startswith(self.bank.url + "/consent?"), page["url"])
        self.assertEqual(page["title"], "Sandbox Bank – Consent")
        self.assertIn("Allow access", page["text"])

    def test_reconnect_from_the_card_after_the_consent_expired(self):
        link = self._connect()
        journal = self._eur_account(link).journal_id
        journal.name = "Sandbox EUR"
        # The bank now refuses the old consent: Synchronize Now fails and the card says so.
        self.bank.add_fault("consent_expired", times=None, consent_id=link.consent_identifier)
        old_consent = link.consent_identifier
        seen = self._tour_through_consent("/odoo/accounting", "reconnect")
        self.assertEqual(len(seen), 1, seen)
        self._assert_consent_page(seen[0])
        self.assertEqual(self.env["account.online.link"].search([]), link, "renewed, not created")
        self.assertEqual(link.state, "connected")
        self.assertNotEqual(link.consent_identifier, old_consent)
        self.assertEqual(link.journal_ids, journal | self.env["account.journal"].search(
            [("account_online_account_id", "in", link.account_online_account_ids.ids)]))
        self.assertEqual(self._eur_account(link).journal_id, journal)

    def test_update_credentials_of_an_expiring_consent(self):
        link = self._connect()
        today = fields.Date.context_today(link)
        link.write({"expiring_synchronization_date": today + timedelta(days=10),
                    "state": "expiring"})
        seen = self._tour_through_consent("/odoo", "update_credentials")
        self.assertEqual(len(seen), 1, seen)
        self._assert_consent_page(seen[0])
        self.assertEqual(link.state, "connected")
        self.assertEqual(link.expiring_synchronization_date, today + timedelta(days=90))
        self.assertEqual(len(self.bank.consents()), 2)

    def test_cancelled_consent_explains_and_creates_nothing(self):
        self.company.online_sync_security_contact = "+32 2 123 45 67"
        self.env["account.journal"].create({
            "name": "Main Bank", "code": "MAIN", "type": "bank", "company_id": self.company.id})
        seen = self._tour_through_consent("/odoo", "cancelled_consent", decision="cancel")
        self.assertEqual(len(seen), 2, seen)
        self._assert_consent_page(seen[0])
        failure = seen[1]
        self.assertTrue(failure["url"].startswith(self.base_url() + CALLBACK_PATH + "?error="))
        self.assertEqual(failure["title"], "Bank connection not completed")
        self.assertIn("The bank did not grant access", failure["text"])
        self.assertIn("Nothing was created", failure["text"])
        self.assertFalse(self.env["account.online.link"].search([]))
        self.assertFalse(self.env["account.online.account"].search([]))
