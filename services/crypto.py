"""Encryption at rest of provider secrets (Fernet: AES-128-CBC + HMAC-SHA256).

The key never lives in the database: it comes from the server configuration, the environment,
or a key file generated once in Odoo's data directory.
"""
import json
import os
import secrets

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
        _create_key_file(path)
    with open(path, "rb") as handle:
        return handle.read().strip()


def _create_key_file(path):
    """Write a new key atomically; when several workers race, the first one's key wins."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    try:
        os.link(temporary, path)  # atomic, and fails if another worker got there first
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


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
