import logging
import threading
import time
import zlib
from datetime import timedelta

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import split_every
from odoo.http import request

from ..services.errors import ErrorCategory, ProviderError
from ..services.fetch import ParallelFetcher
from ..services.proxy import ProxyClient
from .account_online_provider import provider_selection
from .online_sync_errors import ERROR_CATEGORY_SELECTION, error_advice, error_title

_logger = logging.getLogger(__name__)

SYNC_INTERVAL = timedelta(hours=12)
#: Seconds of importing before the rest of a long import is handed to the cron.
INTERACTIVE_IMPORT_BUDGET = 8
CRON_IMPORT_BUDGET = 300
DEFAULT_RATE_LIMIT_WAIT = timedelta(hours=6)
# Errors about the connection as a whole: once one account hits them, the others would too.
LINK_LEVEL_CATEGORIES = {
    ErrorCategory.AUTH_INVALID, ErrorCategory.AUTH_EXPIRED, ErrorCategory.USER_ACTION_REQUIRED,
    ErrorCategory.RATE_LIMITED, ErrorCategory.NETWORK,
}
# First key of the two-int advisory lock taken while a connection synchronizes.
ADVISORY_LOCK_NAMESPACE = zlib.crc32(b"account_online_synchronization") & 0x7FFFFFFF


class AccountOnlineLink(models.Model):
    """One consent at one institution through one provider."""
    _name = "account.online.link"
    _description = "Bank Connection"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _order = "name, id"

    name = fields.Char(string="Institution", required=True, tracking=True)
    provider_code = fields.Selection(selection=provider_selection, string="Provider",
                                     required=True, readonly=True)
    institution_identifier = fields.Char(readonly=True)
    institution_logo_url = fields.Char(readonly=True)
    company_id = fields.Many2one("res.company", required=True, readonly=True,
                                 default=lambda self: self.env.company)
    state = fields.Selection(
        [("connected", "Connected"), ("expiring", "Expiring"), ("error", "Error"),
         ("disconnected", "Not Connected")],
        default="disconnected", required=True, readonly=True, tracking=True)
    auto_sync = fields.Boolean(
        string="Automatic synchronization", default=True, tracking=True,
        help="Synchronize every 12 hours. Turned off when the bank refuses access without you "
             "being present; then use Synchronize Now.")
    consent_identifier = fields.Char(readonly=True, copy=False)
    expiring_synchronization_date = fields.Date(string="Consent expiry", readonly=True,
                                                copy=False, tracking=True)
    reminder_sent_days = fields.Integer(
        readonly=True, copy=False,
        help="Days before expiry of the last reminder sent (15, 3 or 1); 0 when none yet.")
    last_refresh = fields.Datetime(string="Last synchronization", readonly=True, copy=False)
    next_sync = fields.Datetime(string="Next synchronization", readonly=True, copy=False)
    last_error_category = fields.Selection(ERROR_CATEGORY_SELECTION, readonly=True, copy=False)
    last_error_message = fields.Text(readonly=True, copy=False)
    last_error_reference = fields.Char(readonly=True, copy=False)
    last_error_date = fields.Datetime(readonly=True, copy=False)
    encrypted_credentials = fields.Text(groups="base.group_system", copy=False)
    account_online_account_ids = fields.One2many("account.online.account",
                                                 "account_online_link_id", string="Accounts")
    journal_ids = fields.One2many("account.journal", compute="_compute_journal_ids",
                                  string="Journals")
    sync_log_ids = fields.One2many("account.online.sync.log", "link_id")
    sync_log_count = fields.Integer(compute="_compute_sync_log_count")
    has_unlinked_accounts = fields.Boolean(compute="_compute_has_unlinked_accounts")

    @api.depends("account_online_account_ids.journal_ids")
    def _compute_journal_ids(self):
        for link in self:
            link.journal_ids = link.account_online_account_ids.journal_ids

    @api.depends("account_online_account_ids.journal_ids")
    def _compute_has_unlinked_accounts(self):
        for link in self:
            link.has_unlinked_accounts = any(
                not account.journal_ids for account in link.account_online_account_ids)

    def action_link_accounts(self):
        """Link accounts not chosen at the first connection, without a new consent."""
        self.ensure_one()
        wizard = self.env["account.online.account.selection"].create({"link_id": self.id})
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "account_online_synchronization.action_account_online_account_selection")
        action["res_id"] = wizard.id
        return action

    def _compute_sync_log_count(self):
        counts = dict(self.env["account.online.sync.log"]._read_group(
            [("link_id", "in", self.ids)], ["link_id"], ["__count"]))
        for link in self:
            link.sync_log_count = counts.get(link, 0)

    # ------------------------------------------------------------------ provider access
    def _proxy_client(self, user_present=False):
        self.ensure_one()
        provider = self.env["account.online.provider"]._for_company(self.provider_code,
                                                                     self.company_id)
        psu_ip = request.httprequest.remote_addr if (user_present and request) else None
        return ProxyClient(self.provider_code, provider._client_config(),
                           user_present=user_present, psu_ip=psu_ip,
                           **self._transport_options())

    @api.model
    def _transport_options(self):
        """Timeout and retry settings (system parameters, for slow banks and for tests)."""
        params = self.env["ir.config_parameter"].sudo()
        timeout = float(params.get_param("account_online_synchronization.request_timeout", 60))
        return {
            "timeout": (min(timeout, 10.0), timeout),
            "backoff": float(params.get_param("account_online_synchronization.retry_backoff", 0.5)),
            "max_retries": int(params.get_param("account_online_synchronization.max_retries", 3)),
        }

    def _get_credentials(self):
        self.ensure_one()
        return self.env["account.online.secrets"]._open(self.sudo().encrypted_credentials)

    def _set_credentials(self, secrets):
        self.ensure_one()
        self.sudo().encrypted_credentials = self.env["account.online.secrets"]._seal(secrets)

    def _consent(self):
        self.ensure_one()
        return ProxyClient.consent(self.provider_code, self.consent_identifier,
                                   self._get_credentials(),
                                   institution_id=self.institution_identifier)

    def _create_online_accounts(self, accounts):
        """Create the provider's accounts under this connection (known ones are refreshed)."""
        self.ensure_one()
        existing = {a.stable_key or a.online_identifier: a for a in self.account_online_account_ids}
        Currency = self.env["res.currency"].with_context(active_test=False)
        records = self.env["account.online.account"]
        for account in accounts:
            currency = Currency.search([("name", "=", account.currency)], limit=1) \
                if account.currency else self.company_id.currency_id
            if currency and not currency.active:
                currency.sudo().active = True
            values = {
                "name": account.name or account.account_number_masked or account.external_id,
                "online_identifier": account.external_id,
                "stable_key": account.stable_key,
                "account_number": account.iban or account.account_number_masked,
                "currency_id": currency.id,
            }
            record = existing.get(account.stable_key or account.external_id)
            if record:
                if record.online_identifier != account.external_id:
                    values["sync_cursor"] = False  # a cursor belongs to the old account id
                record.write(values)
            else:
                record = records.create(dict(values, account_online_link_id=self.id))
            records |= record
        return records

    # ------------------------------------------------------------------ synchronization
    def action_fetch_transactions(self):
        """Fetch Transactions, on the connection form."""
        self.ensure_one()
        return self._manual_synchronize()

    def _manual_synchronize(self, accounts=None):
        """A user asked for a sync: accountants and managers may; the import runs as superuser."""
        self.check_access("read")
        user = self.env.user
        if not (self.env.is_superuser() or user.has_group("account.group_account_user")
                or user.has_group("account.group_account_manager")):
            raise UserError(_("Only accountants and accounting managers can synchronize "
                              "bank accounts."))
        result = self.sudo()._synchronize(trigger="manual", accounts=accounts and accounts.sudo())
        return result.notification_action()

    def _try_lock(self):
        """Take this connection's sync lock for the transaction; False when another holds it."""
        self.env.cr.execute("SELECT pg_try_advisory_xact_lock(%s, %s)",
                            (ADVISORY_LOCK_NAMESPACE, self.id))
        return self.env.cr.fetchone()[0]

    def _synchronize(self, trigger="manual", accounts=None, prefetch=None):
        """Synchronize the linked accounts (or ``accounts``) of this connection.

        Each account runs in its own savepoint: a failure rolls back that account only and never
        moves its watermark. Returns a ``SyncResult``.
        """
        self.ensure_one()
        if self.state == "disconnected":
            raise UserError(_("The connection to %s is not active. Reconnect it first.", self.name))
        if not self._try_lock():
            raise UserError(_(
                "A synchronization of %s is already running. Wait for it to finish; its "
                "transactions will appear when it is done.", self.name))
        accounts = (accounts or self.account_online_account_ids).filtered("journal_ids")
        if trigger == "manual":
            accounts.import_requested_by = self.env.user
        deadline = time.monotonic() + self._import_budget(trigger)
        result = SyncResult(self)
        if prefetch:
            client, consent, prefetched = prefetch
        else:
            client = self._proxy_client(user_present=(trigger != "cron"))
            consent = self._consent()
            prefetched = {}
        secrets_before = dict(consent.secrets)
        for account in accounts:
            started = time.monotonic()
            try:
                with self.env.cr.savepoint():
                    stats = account._synchronize(client, consent, deadline=deadline,
                                                 prefetched=prefetched.get(account.id))
            except ProviderError as error:
                account._log_sync(trigger, time.monotonic() - started, error=error)
                result.errors.append((account, error))
                if error.category in LINK_LEVEL_CATEGORIES:
                    break
            else:
                account._log_sync(trigger, time.monotonic() - started, stats=stats)
                result.add(account, stats)
        if consent.secrets != secrets_before:
            self._set_credentials(consent.secrets)
        self._record_outcome(result)
        return result

    @api.model
    def _import_budget(self, trigger):
        """Seconds a run may spend importing before it leaves the rest to the next cron run:
        short when a user waits for the answer."""
        params = self.env["ir.config_parameter"].sudo()
        if trigger == "manual":
            return float(params.get_param("account_online_synchronization.interactive_budget",
                                          INTERACTIVE_IMPORT_BUDGET))
        return float(params.get_param("account_online_synchronization.cron_budget",
                                      CRON_IMPORT_BUDGET))

    def _record_outcome(self, result):
        now = fields.Datetime.now()
        values = {"last_refresh": now}
        if not result.errors:
            values.update(state=self._healthy_state(), next_sync=now + SYNC_INTERVAL,
                          last_error_category=False, last_error_message=False,
                          last_error_reference=False)
            if result.remaining:
                # The rest of a long import continues in the background, at once.
                values["next_sync"] = now
                self.env.ref("account_online_synchronization.ir_cron_online_sync")._trigger()
            self.write(values)
            return
        self.write(values)
        for account, error in result.errors:
            self._handle_error(error, account)

    def _handle_error(self, error, account=None):
        """Set the state, schedule the next attempt and explain the failure in the chatter."""
        now = fields.Datetime.now()
        values = {
            "last_error_category": error.category.value,
            "last_error_message": error.user_message or error.message,
            "last_error_reference": error.reference,
            "last_error_date": now,
        }
        extra = ""
        if error.category == ErrorCategory.RATE_LIMITED:
            wait = timedelta(seconds=error.retry_after) if error.retry_after else DEFAULT_RATE_LIMIT_WAIT
            values["next_sync"] = now + wait
            self.env.ref("account_online_synchronization.ir_cron_online_sync")._trigger(
                at=values["next_sync"])
            extra = _("Next attempt: %s (UTC).", fields.Datetime.to_string(values["next_sync"]))
        else:
            values["state"] = "disconnected" if error.category == ErrorCategory.AUTH_EXPIRED else "error"
            values["next_sync"] = now + SYNC_INTERVAL
        if error.requires_user_presence and self.auto_sync:
            values["auto_sync"] = False
            extra = _("Your bank refuses access when you are not present, so automatic "
                      "synchronization has been turned off. Synchronize manually with "
                      "Synchronize Now on the journal's dashboard card.")
        self.write(values)
        _logger.info("Online sync of link %s failed: %s", self.id, error)
        body = Markup(
            "<p><strong>%(title)s</strong></p><p>%(advice)s</p>%(extra)s"
            "<p>%(detail_label)s %(detail)s</p><p>%(ref_label)s <code>%(ref)s</code></p>") % {
            "title": error_title(self.env, error.category),
            "advice": error_advice(self.env, error.category),
            "extra": Markup("<p>%s</p>") % extra if extra else "",
            "detail_label": _("Bank's answer:"),
            "detail": error.user_message or error.message,
            "ref_label": _("Reference for support:"),
            "ref": error.reference,
        }
        self.message_post(body=body, subtype_xmlid="mail.mt_note")
        journals = account.journal_ids if account else self.journal_ids
        for journal in journals:
            journal.message_post(body=body, subtype_xmlid="mail.mt_note")

    @api.model
    def _cron_synchronize(self):
        """Every 12 hours: each due connection in its own transaction.

        Connections are taken in batches; a batch's HTTP fetching runs in parallel threads
        (bounded, per provider) while imports stay one at a time on the cron's cursor. A
        connection another worker is synchronizing is skipped (advisory lock), so several cron
        workers can share the work.
        """
        now = fields.Datetime.now()
        links = self.search([
            ("state", "!=", "disconnected"),
            "|", "&", ("auto_sync", "=", True),
            "|", ("next_sync", "=", False), ("next_sync", "<=", now + timedelta(minutes=30)),
            ("account_online_account_ids.fetching_status", "=", "waiting"),
        ])
        params = self.env["ir.config_parameter"].sudo()
        workers = int(params.get_param("account_online_synchronization.fetch_workers", 8))
        per_provider = int(params.get_param("account_online_synchronization.fetch_per_provider", 4))
        testing = getattr(threading.current_thread(), "testing", False)
        cron = self.env["ir.cron"]
        batches = list(split_every(max(1, 2 * workers), links.ids, self.browse))
        done = 0
        held = self.browse()  # session locks taken and not yet released
        with ParallelFetcher(workers, per_provider) as fetcher:
            try:
                # The next batch is locked and its fetching started before the current one is
                # imported: the threads keep fetching while the cron's cursor writes.
                upcoming = self._cron_start_batch(batches[0], fetcher) if batches else None
                for index, batch in enumerate(batches):
                    locked, prefetches = upcoming
                    held |= locked
                    upcoming = self._cron_start_batch(batches[index + 1], fetcher) \
                        if index + 1 < len(batches) else None
                    if upcoming:
                        held |= upcoming[0]
                    for link in locked:
                        try:
                            with self.env.cr.savepoint():
                                link._synchronize(trigger="cron", prefetch=prefetches[link])
                        except UserError as error:
                            _logger.info("Skipped online sync of link %s: %s", link.id, error)
                        except Exception:
                            _logger.exception("Online sync of link %s crashed", link.id)
                        if not testing:
                            self.env.cr.commit()
                        link._release_session_lock()
                        held -= link
                    done += len(batch)
                    cron._notify_progress(done=done, remaining=len(links) - done)
            finally:
                for link in held:
                    link._release_session_lock()

    @api.model
    def _cron_start_batch(self, batch, fetcher):
        """Lock ``batch``'s connections that no other worker holds and start fetching them."""
        locked = batch.filtered(lambda link: link._try_session_lock())
        return locked, {link: link._start_prefetch(fetcher) for link in locked}

    def _start_prefetch(self, fetcher):
        """Start fetching this connection's accounts in ``fetcher``'s threads: the database is
        read here (windows, tokens), only HTTP runs in the threads."""
        self.ensure_one()
        try:
            client = self._proxy_client(user_present=False)
            consent = self._consent()
        except Exception:  # the synchronization itself will report it
            return None
        accounts = self.account_online_account_ids.filtered("journal_ids")
        requests = [account._fetch_request(client) for account in accounts]
        prefetches = fetcher.submit(self.provider_code, client, consent, requests)
        return client, consent, dict(zip(accounts.ids, prefetches))

    def _try_session_lock(self):
        """This connection's sync lock for the whole cron batch (it survives the commits)."""
        self.env.cr.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, self.id))
        return self.env.cr.fetchone()[0]

    def _release_session_lock(self):
        self.env.cr.execute("SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, self.id))

    # ------------------------------------------------------------------ actions
    def action_open_sync_logs(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "account_online_synchronization.action_account_online_sync_log")
        action["domain"] = [("link_id", "=", self.id)]
        return action


class SyncResult:
    """What one synchronization of a connection did, for the user and the tests."""

    def __init__(self, link):
        self.link = link
        self.created = 0
        self.remaining = 0
        self.per_account = {}
        self.errors = []

    def add(self, account, stats):
        self.per_account[account] = stats
        self.created += stats["created"]
        self.remaining += stats.get("remaining", 0)

    def notification_action(self):
        env = self.link.env
        _ = env._
        if self.errors:
            _account, error = self.errors[0]
            message = _("%(title)s. %(advice)s Reference: %(ref)s",
                        title=error_title(env, error.category),
                        advice=error_advice(env, error.category), ref=error.reference)
            kind, title = "danger", _("Synchronization failed")
        elif self.remaining:
            message = _("%(count)s transactions imported from %(bank)s so far; the other "
                        "%(remaining)s are being imported in the background. You will be told "
                        "when they are in.", count=self.created, bank=self.link.name,
                        remaining=self.remaining)
            kind, title = "info", _("Synchronization continues")
        else:
            message = _("%(count)s transactions fetched from %(bank)s.",
                        count=self.created, bank=self.link.name)
            kind, title = "success", _("Synchronization done")
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": title, "message": message, "type": kind,
                       "sticky": bool(self.errors),
                       "next": {"type": "ir.actions.client", "tag": "soft_reload"}},
        }
