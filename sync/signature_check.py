"""Does a remote signature value verify over a SHA-256 hash with its certificate?

Remote-signing providers (VNPT SmartCA, CSC-API services such as Viettel MySign)
sign a *hash* the caller computed: the value they return is a raw signature
over that digest, made with the private key whose certificate they return
alongside. This module checks exactly that, with nothing but the three byte
strings, so the kiosk (before it puts the signature into a dossier) and central
(before it hands a provider's answer to a kiosk) apply the same test:

- the certificate is one DER X.509 certificate (PEM is accepted too);
- its key is RSA (the value is PKCS#1 v1.5 over DigestInfo(SHA-256, hash), what
  SmartCA's ``sign_type: hash`` and CSC ``signAlgo`` 1.2.840.113549.1.1.1 /
  1.2.840.113549.1.1.11 return) or EC (the value is ECDSA over the hash, DER
  ``Ecdsa-Sig-Value`` or the raw r||s form some services return);
- the value verifies over the 32-byte hash.

What it does not check: the certificate's chain to a trusted CA, its validity
dates and revocation (OCSP/CRL). Those need the national root certificates and
network access; they are left to whoever validates the signed dossier later
(docs/signing.md, "What is not modelled").
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    encode_dss_signature,
)

from sync import SyncError

HASH_BYTES = 32
MAX_CERTIFICATE_BYTES = 12 * 1024  # the dossier schema keeps 16 KiB of base64
MAX_VALUE_BYTES = 12 * 1024


class SignatureRefused(SyncError, ValueError):
    """The value, the certificate or the hash is not a valid remote signature."""


def load_certificate(data: bytes) -> x509.Certificate:
    """The certificate in ``data`` (DER, or PEM); SignatureRefused saying why if not."""
    if not data:
        raise SignatureRefused("the certificate is empty")
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise SignatureRefused(
            f"the certificate is {len(data)} bytes, more than {MAX_CERTIFICATE_BYTES}"
        )
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise SignatureRefused(f"the certificate is not an X.509 certificate: {exc}") from None


def verify_hash_signature(digest: bytes, value: bytes, certificate: bytes) -> x509.Certificate:
    """Check that ``value`` signs the SHA-256 ``digest`` with ``certificate``'s key.

    Returns the parsed certificate; raises SignatureRefused naming what is wrong.
    """
    if len(digest) != HASH_BYTES:
        raise SignatureRefused(f"the hash is {len(digest)} bytes; a SHA-256 hash is 32")
    if not value:
        raise SignatureRefused("the signature value is empty")
    if len(value) > MAX_VALUE_BYTES:
        raise SignatureRefused(f"the signature value is {len(value)} bytes, over {MAX_VALUE_BYTES}")
    cert = load_certificate(certificate)
    try:
        key = cert.public_key()
    except (ValueError, TypeError) as exc:
        raise SignatureRefused(f"the certificate's public key cannot be read: {exc}") from None
    prehashed = Prehashed(hashes.SHA256())
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(value, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            _verify_ecdsa(key, value, digest)
        else:
            raise SignatureRefused(
                f"the certificate's key is {type(key).__name__}; only RSA and EC are accepted"
            )
    except InvalidSignature:
        raise SignatureRefused(
            "the signature value does not verify over the hash with the certificate's key"
        ) from None
    except ValueError as exc:  # malformed DER in the value
        raise SignatureRefused(f"the signature value is malformed: {exc}") from None
    return cert


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, value: bytes, digest: bytes) -> None:
    """ECDSA over ``digest``: the value as DER Ecdsa-Sig-Value, else as raw r||s (P1363)."""
    algorithm = ec.ECDSA(Prehashed(hashes.SHA256()))
    size = (key.curve.key_size + 7) // 8
    try:
        key.verify(value, digest, algorithm)
        return
    except (InvalidSignature, ValueError):
        if len(value) != 2 * size:
            raise
    r = int.from_bytes(value[:size], "big")
    s = int.from_bytes(value[size:], "big")
    key.verify(encode_dss_signature(r, s), digest, algorithm)
