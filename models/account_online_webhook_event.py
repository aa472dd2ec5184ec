from datetime import timezone

from odoo import api, fields, models


class AccountOnlineWebhookEvent(models.Model):
    """Webhook requests already accepted, by a hash of their signature: a second delivery of the
    same signed request (a replay) is refused, whichever worker receives it. Kept until the
    request would be refused as stale anyway, then removed by the daily autovacuum."""
    _name = "account.online.webhook.event"
    _description = "Accepted bank webhook"
    _log_access = False

    replay_key = fields.Char(required=True, readonly=True)
    provider_code = fields.Char(required=True, readonly=True)
    received_at = fields.Datetime(required=True, readonly=True)
    keep_until = fields.Datetime(required=True, readonly=True, index=True)

    _sql_constraints = [
        ("replay_key_uniq", "unique(replay_key)", "This webhook was already received."),
    ]

    @api.model
    def _seen(self, provider_code, replay_key, keep_until):
        """Remember ``replay_key``; True when it was already there (a replay).

        One statement, no exception: of two workers receiving the same request at once, the
        second waits for the first's transaction and then finds the key.
        """
        self.env.cr.execute("""
            INSERT INTO account_online_webhook_event
                        (replay_key, provider_code, received_at, keep_until)
                 VALUES (%s, %s, now() at time zone 'UTC', %s)
            ON CONFLICT (replay_key) DO NOTHING
              RETURNING id
        """, (replay_key, provider_code,
              keep_until.astimezone(timezone.utc).replace(tzinfo=None)))
        return not self.env.cr.fetchone()

    @api.autovacuum
    def _gc_old_events(self):
        self.env.cr.execute("DELETE FROM account_online_webhook_event "
                            "WHERE keep_until < now() at time zone 'UTC'")
