"""Access to the server-side encryption key for provider secrets (never stored in the database)."""
from odoo import api, models, tools

from ..services.crypto import SecretBox, load_or_create_key

CONFIG_OPTION = "online_sync_encryption_key"


class OnlineSyncSecrets(models.AbstractModel):
    _name = "account.online.secrets"
    _description = "Encryption of online synchronization secrets"

    @api.model
    def _box(self):
        key = load_or_create_key(tools.config.get(CONFIG_OPTION), tools.config["data_dir"])
        return SecretBox(key)

    @api.model
    def _seal(self, secrets):
        return self._box().seal(secrets)

    @api.model
    def _open(self, token):
        return self._box().open(token)
