"""services/crypto.py: sealing of provider secrets and where the key comes from."""
import os
import stat

import pytest
from cryptography.fernet import Fernet

from services.crypto import ENV_VAR, KEY_FILE_NAME, SecretBox, SecretKeyError, load_or_create_key

SECRETS = {"access_token": "sbx_at_abc", "refresh_token": "sbx_rt_def",
           "access_expires_at": "2024-05-20T10:00:00Z"}


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_seal_open_round_trip():
    box = SecretBox(Fernet.generate_key())
    sealed = box.seal(SECRETS)
    assert isinstance(sealed, str)
    assert "sbx_at_abc" not in sealed and "refresh_token" not in sealed
    assert box.open(sealed) == SECRETS
    assert box.seal(SECRETS) != sealed  # fresh IV each time


def test_empty_secrets():
    box = SecretBox(Fernet.generate_key())
    assert box.seal({}) == "" and box.open("") == {} and box.open(None) == {}


def test_wrong_key_is_refused():
    sealed = SecretBox(Fernet.generate_key()).seal(SECRETS)
    with pytest.raises(SecretKeyError):
        SecretBox(Fernet.generate_key()).open(sealed)
    with pytest.raises(SecretKeyError):
        SecretBox(Fernet.generate_key()).open(sealed[:-4] + "AAAA")


def test_invalid_key_is_refused():
    with pytest.raises(SecretKeyError):
        SecretBox(b"not a fernet key")


def test_key_file_is_created_once_with_mode_0600(tmp_path):
    data_dir = tmp_path / "filestore"
    key = load_or_create_key(data_dir=str(data_dir))
    path = data_dir / KEY_FILE_NAME
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().strip() == key
    assert load_or_create_key(data_dir=str(data_dir)) == key  # read back, not regenerated
    box = SecretBox(key)
    assert SecretBox(load_or_create_key(data_dir=str(data_dir))).open(box.seal(SECRETS)) == SECRETS


def test_environment_key_wins_over_the_key_file(tmp_path, monkeypatch):
    file_key = load_or_create_key(data_dir=str(tmp_path))
    env_key = Fernet.generate_key().decode()
    monkeypatch.setenv(ENV_VAR, env_key)
    assert load_or_create_key(data_dir=str(tmp_path)) == env_key.encode() != file_key
    other_dir = tmp_path / "other"
    assert load_or_create_key(data_dir=str(other_dir)) == env_key.encode()
    assert not other_dir.exists()  # no key file made when the environment has one


def test_configured_key_wins_over_the_environment(monkeypatch):
    configured = Fernet.generate_key().decode()
    monkeypatch.setenv(ENV_VAR, Fernet.generate_key().decode())
    assert load_or_create_key(configured_key=configured) == configured.encode()


def test_no_key_anywhere_is_an_error():
    with pytest.raises(SecretKeyError):
        load_or_create_key()


def test_workers_racing_for_the_key_file_agree(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    data_dir = str(tmp_path / "data")
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _i: load_or_create_key(None, data_dir), range(16)))
    assert len(set(keys)) == 1
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [KEY_FILE_NAME]
