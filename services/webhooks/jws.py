"""Compact JWS (JWT) verification for provider webhooks: ES256 (Plaid) and RS512 (Ibanity/Ponto).

Only what the webhooks need, on ``cryptography``: the header is read first (``alg``, ``kid``),
the caller finds the public key (a JWK) by ``kid``, then ``verify`` checks the signature and
returns the claims. Nothing here decides whether the claims are acceptable.
"""
import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class JWSError(ValueError):
    """The token is not a well-formed compact JWS, or its signature does not verify."""


def b64url_decode(text):
    if not isinstance(text, str):
        raise JWSError("not text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JWSError("bad base64url") from None


def _int(text):
    return int.from_bytes(b64url_decode(text), "big")


def split(token):
    """``(header, claims, signing_input, signature)`` of a compact JWS, unverified."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16384:
        raise JWSError("not a compact JWS")
    header_b64, claims_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(b64url_decode(header_b64))
        claims = json.loads(b64url_decode(claims_b64))
    except (ValueError, UnicodeDecodeError):
        raise JWSError("header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWSError("header or claims are not JSON objects")
    return header, claims, f"{header_b64}.{claims_b64}".encode("ascii"), \
        b64url_decode(signature_b64)


def public_key_from_jwk(jwk):
    """The ``cryptography`` public key of an EC P-256 or RSA JWK."""
    try:
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]),
                                                 ec.SECP256R1()).public_key()
        if jwk.get("kty") == "RSA":
            return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    except (KeyError, TypeError, ValueError, AttributeError):
        raise JWSError("unusable key") from None
    raise JWSError("unsupported key type")


def verify(token, jwk, algorithm):
    """Verify ``token`` with ``jwk`` under ``algorithm`` (``ES256`` or ``RS512``); return the
    claims. The header's ``alg`` must be exactly ``algorithm`` (no ``none``, no downgrade)."""
    header, claims, signing_input, signature = split(token)
    if header.get("alg") != algorithm:
        raise JWSError("unexpected algorithm")
    key = public_key_from_jwk(jwk)
    try:
        if algorithm == "ES256":
            if not isinstance(key, ec.EllipticCurvePublicKey) or len(signature) != 64:
                raise JWSError("bad ES256 signature")
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif algorithm == "RS512":
            if not isinstance(key, rsa.RSAPublicKey):
                raise JWSError("bad RS512 key")
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA512())
        else:
            raise JWSError("unsupported algorithm")
    except InvalidSignature:
        raise JWSError("signature does not verify") from None
    return claims
