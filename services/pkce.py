"""PKCE (RFC 7636) helpers for consent flows that use an authorization code."""
import base64
import hashlib
import secrets


def code_challenge(verifier):
    """S256 challenge of ``verifier``: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def new_pkce_pair():
    """A fresh ``(code_verifier, code_challenge)``; the verifier has 64 URL-safe characters."""
    verifier = secrets.token_urlsafe(48)  # 48 bytes -> 64 characters, within RFC 7636's 43..128
    return verifier, code_challenge(verifier)
