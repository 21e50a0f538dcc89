"""Secrets that must pass through the web tier without being written down in clear.

``seal``/``unseal``: a secret that has to survive one redirect (a new API key, shown once after the POST) travels
in the session encrypted (Fernet: AES-128-CBC and HMAC-SHA256) with a key derived from SECRET_KEY and the purpose.
The session store (the database) then holds ciphertext only; SECRET_KEY is not in the database.

``Redacted``: a str whose repr hides it. Templates print it (``{{ raw_key }}``); a repr of the context, as
Django's template debug log writes when a variable lookup fails, shows ``'<redacted>'``.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class Redacted(str):
    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


def _fernet(purpose: str, secret_key: str) -> Fernet:
    digest = hashlib.sha256(f"suanli.secret_values:{purpose}:{secret_key}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(value: str, *, purpose: str) -> str:
    return _fernet(purpose, settings.SECRET_KEY).encrypt(value.encode()).decode()


def unseal(token: str, *, purpose: str, max_age_seconds: int) -> Redacted | None:
    """The value, or None if the token is not ours, was made for another purpose or is older than max_age."""
    for secret_key in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        try:
            value = _fernet(purpose, secret_key).decrypt(token.encode(), ttl=max_age_seconds)
        except (InvalidToken, ValueError, TypeError):
            continue
        return Redacted(value.decode())
    return None
