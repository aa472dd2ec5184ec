"""Encryption at rest of provider secrets (Fernet: AES-128-CBC + HMAC-SHA256).

The key never lives in the database: it comes from the server configuration, the environment,
or a key file generated once in Odoo's data directory.
"""
import json
import os

from cryptography.fernet import Fernet, InvalidToken

ENV_VAR = "ODOO_ONLINE_SYNC_KEY"
KEY_FILE_NAME = "account_online_synchronization.key"


class SecretKeyError(Exception):
    pass


def load_or_create_key(configured_key=None, data_dir=None):
    """The Fernet key: configured value, else environment, else ``<data_dir>/<KEY_FILE_NAME>``."""
    key = configured_key or os.environ.get(ENV_VAR)
    if key:
        return key.encode() if isinstance(key, str) else key
    if not data_dir:
        raise SecretKeyError("no encryption key configured and no data directory to keep one")
    path = os.path.join(data_dir, KEY_FILE_NAME)
    if not os.path.exists(path):
        os.makedirs(data_dir, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
    with open(path, "rb") as handle:
        return handle.read().strip()


class SecretBox:
    def __init__(self, key):
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise SecretKeyError("the encryption key is not a valid Fernet key") from exc

    def seal(self, secrets):
        """dict -> opaque text; an empty dict seals to an empty string."""
        if not secrets:
            return ""
        return self._fernet.encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()

    def open(self, token):
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise SecretKeyError(
                "stored credentials cannot be decrypted with this server's key") from exc
