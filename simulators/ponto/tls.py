"""Throw-away PKI of the Ponto simulator: a CA, a server certificate for 127.0.0.1/localhost and
the application's client certificate (what the Ibanity developer portal hands out), written as PEM
files into a private directory. Made with ``cryptography``; nothing here is reused across runs.
"""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


def _name(common_name, organization="Ponto Simulator"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _ca(common_name):
    key = _key()
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, common_name, *, client):
    key = _key()
    now = datetime.datetime.utcnow()
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
                   critical=False))
    if not client:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(directory, name, data):
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return path


def _key_pem(key, passphrase=None):
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(directory, client_id, passphrase):
    """Write the PEM files into ``directory``; returns their paths by role.

    ``client_cert``/``client_key`` are the application's certificate and (unencrypted) key,
    ``client_key_encrypted`` the same key protected by ``passphrase`` (as the portal delivers it),
    ``untrusted_cert``/``untrusted_key`` a client certificate from another CA (to be refused).
    """
    ca_key, ca_cert = _ca("Ponto Simulator CA")
    server_key, server_cert = _leaf(ca_key, ca_cert, "127.0.0.1", client=False)
    client_key, client_cert = _leaf(ca_key, ca_cert, client_id, client=True)
    rogue_ca_key, rogue_ca_cert = _ca("Somebody Else's CA")
    rogue_key, rogue_cert = _leaf(rogue_ca_key, rogue_ca_cert, client_id, client=True)
    return {
        "ca": _write(directory, "ca.pem", _cert_pem(ca_cert)),
        "server_cert": _write(directory, "server.pem", _cert_pem(server_cert)),
        "server_key": _write(directory, "server.key", _key_pem(server_key)),
        "client_cert": _write(directory, "client.pem", _cert_pem(client_cert)),
        "client_key": _write(directory, "client.key", _key_pem(client_key)),
        "client_key_encrypted": _write(directory, "client-encrypted.key",
                                       _key_pem(client_key, passphrase)),
        "untrusted_cert": _write(directory, "untrusted.pem", _cert_pem(rogue_cert)),
        "untrusted_key": _write(directory, "untrusted.key", _key_pem(rogue_key)),
    }
