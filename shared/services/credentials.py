"""Credentials module (credentials.asciidoc)."""

from __future__ import annotations

from shared.auth import token_candidates
from shared.config import get_settings


def our_credentials(base_url: str, authorization: str) -> dict:
    """Our Credentials object. The token in it is the one the caller used to reach us: we store
    only hashes, and the caller just proved it holds this token."""
    token = token_candidates(authorization)[0]
    return {
        "token": token,
        "url": f"{base_url}/ocpi/versions",
        "roles": [p.to_credentials_role() for p in get_settings().own_parties],
    }
