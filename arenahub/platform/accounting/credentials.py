"""Secrets: generated here, shown once, stored only as a SHA-256 hash.

Keys are 256-bit random strings, so a fast hash is the right tool (a slow password hash
protects low-entropy secrets, which these are not). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def new_consumer_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


def new_client_api_key() -> str:
    return "ck-" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def display_prefix(secret: str) -> str:
    """The part of a key safe to show in listings: enough to tell keys apart, useless to an attacker."""
    return secret[:7]
