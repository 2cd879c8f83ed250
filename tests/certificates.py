"""A throwaway certificate authority and a server certificate it signed, for https receivers on loopback.

The outbound client verifies certificates as it would against a public CA; trusting this CA (by ``cafile`` or
the ``SSL_CERT_FILE`` environment variable) lets tests and the deliveries bench run real TLS on 127.0.0.1.
EC keys: made in milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the authority's certificate: what a client trusts
    chain: Path  # the server's certificate
    key: Path  # the server's private key

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.chain, self.key)
        return context


def make_certificates(folder: Path, name: str, *, days: int = 30) -> Certificates:
    """Write a CA and a certificate for ``name`` (a host name or an IP address) valid ``days`` from yesterday.

    Tests whose clocks run days ahead still find the certificate valid: the client checks it against the real time.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Clicktrail throwaway test CA")])
    try:
        alternative: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alternative = x509.DNSName(name)

    def signed(subject: x509.Name, key: ec.EllipticCurvePrivateKey, *extensions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    signing_only = x509.KeyUsage(True, False, False, False, False, True, True, False, False)  # certificates and CRLs
    ca = signed(
        ca_name,
        ca_key,
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (signing_only, True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    )
    leaf = signed(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
        leaf_key,
        (x509.SubjectAlternativeName([alternative]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = Certificates(folder / "ca.pem", folder / "chain.pem", folder / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    paths.key.write_bytes(key)
    return paths
