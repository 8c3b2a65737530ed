"""A CA certificate's pin, shared by central (prints it in tokens) and the box (checks it).

``sha256:`` and the hex SHA-256 of the certificate's DER SubjectPublicKeyInfo, the form
kubeadm's ``--discovery-token-ca-cert-hash`` uses: it names the CA's key, so a re-issued CA
certificate on the same key keeps its pin.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = ["ca_pin", "key_pin"]


def key_pin(public_key: CertificatePublicKeyTypes) -> str:
    """``sha256:<64 hex>`` of a public key's DER SubjectPublicKeyInfo."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def ca_pin(certificate: x509.Certificate) -> str:
    """``sha256:<64 hex>`` of the certificate's SubjectPublicKeyInfo."""
    return key_pin(certificate.public_key())
