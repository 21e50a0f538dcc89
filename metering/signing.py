"""Ed25519 request signatures for the metering API. Pure: no ORM, no Django.

A provider registers public keys; its agent signs every request with the private key. The signed message is

    <unix timestamp>\\n<METHOD>\\n<path>\\n<hex sha256 of the body>

sent as ``X-Suanli-Timestamp`` and ``X-Suanli-Signature`` (base64 of the 64-byte signature). Because the body's
hash is signed, the platform can keep the signed batch and anyone holding the public key can later check that a
record is exactly what the provider sent (可信、可溯). Timestamps more than ``MAX_SKEW_SECONDS`` away from the
server's clock are refused, which bounds replays; record ids make replays within that window harmless.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TIMESTAMP_HEADER = "X-Suanli-Timestamp"
SIGNATURE_HEADER = "X-Suanli-Signature"
MAX_SKEW_SECONDS = 300
PUBLIC_KEY_BYTES = 32


class KeyFormatError(ValueError):
    pass


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_message(timestamp: int, method: str, path: str, body: bytes) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{path}\n{body_sha256(body)}".encode()


def parse_public_key(text: str) -> bytes:
    """A public key as raw 32 bytes, from PEM (SubjectPublicKeyInfo) or base64 of the raw key."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise KeyFormatError("not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError("not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("not base64") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise KeyFormatError("an Ed25519 public key is 32 bytes")
    return raw


def fingerprint(public_raw: bytes) -> str:
    """Like OpenSSH's: SHA256 of the raw key, base64 without padding."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_raw).digest()).decode().rstrip("=")


def public_key_text(public_raw: bytes) -> str:
    return base64.b64encode(public_raw).decode()


def verify(public_raw: bytes, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def timestamp_fresh(timestamp: int, now: float) -> bool:
    return abs(now - timestamp) <= MAX_SKEW_SECONDS


# --- the signing side (the provider agent) ------------------------------------------------------------


def generate_private_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError("not an Ed25519 private key")
    return key


def public_raw_of(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(private_key: Ed25519PrivateKey, timestamp: int, method: str, path: str, body: bytes) -> str:
    return base64.b64encode(private_key.sign(canonical_message(timestamp, method, path, body))).decode()


def signed_headers(
    private_key: Ed25519PrivateKey, timestamp: int, method: str, path: str, body: bytes
) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(private_key, timestamp, method, path, body),
    }
