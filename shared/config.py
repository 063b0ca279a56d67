"""Runtime settings, read once per container from environment variables.

| variable | meaning |
|---|---|
| OCPI_TABLE_NAME | the DynamoDB table (template.yaml `OcpiTable`) |
| OCPI_EVENT_BUS_NAME | the EventBridge bus for domain events |
| OCPI_TOKEN_KEY_SECRET_ARN | Secrets Manager secret holding the HMAC key for credentials tokens |
| OCPI_TOKEN_KEY | the HMAC key itself (tests / local use; wins over the secret) |
| OCPI_PUBLIC_URL | public base URL (empty: derived from the request) |
| OCPI_OWN_PARTIES | JSON list of our own parties: country_code, party_id, role, business_details |
| OCPI_PAGE_LIMIT | server maximum page size reported in X-Limit (default 100) |
| OCPI_AUTH_CACHE_TTL | seconds a warm container trusts a token lookup (default 30) |
| OCPI_REGISTRATION_TTL | seconds a registration token (token A) stays valid (default 7 days) |
| OCPI_MAX_BODY_BYTES | largest request body accepted (default 1 MiB) |
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class OwnParty:
    country_code: str
    party_id: str
    role: str
    business_details: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.role.upper(), self.country_code.upper(), self.party_id.upper())

    def to_credentials_role(self) -> dict:
        return {
            "role": self.role,
            "business_details": self.business_details or {"name": f"{self.country_code}*{self.party_id}"},
            "party_id": self.party_id,
            "country_code": self.country_code,
        }


_DEFAULT_PARTIES = (
    '[{"country_code":"NL","party_id":"CPO","role":"CPO","business_details":{"name":"Example CPO"}},'
    '{"country_code":"NL","party_id":"MSP","role":"EMSP","business_details":{"name":"Example eMSP"}}]'
)


@dataclass(frozen=True)
class Settings:
    table_name: str
    event_bus_name: str
    token_key_secret_arn: str
    token_key: str
    public_url: str
    own_parties: tuple[OwnParty, ...]
    page_limit: int
    auth_cache_ttl: float
    registration_ttl: int
    max_body_bytes: int

    def own_roles(self) -> set[str]:
        return {p.role.upper() for p in self.own_parties}

    def own_party(self, country_code: str, party_id: str, role: str | None = None) -> OwnParty | None:
        for p in self.own_parties:
            same = (p.country_code.upper(), p.party_id.upper()) == (country_code.upper(), party_id.upper())
            if same and (role is None or p.role.upper() == role.upper()):
                return p
        return None


def _parties(raw: str) -> tuple[OwnParty, ...]:
    items = json.loads(raw)
    return tuple(
        OwnParty(
            country_code=i["country_code"],
            party_id=i["party_id"],
            role=i["role"].upper(),
            business_details=i.get("business_details") or {},
        )
        for i in items
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env = os.environ
    return Settings(
        table_name=env.get("OCPI_TABLE_NAME", "ocpi"),
        event_bus_name=env.get("OCPI_EVENT_BUS_NAME", "ocpi"),
        token_key_secret_arn=env.get("OCPI_TOKEN_KEY_SECRET_ARN", ""),
        token_key=env.get("OCPI_TOKEN_KEY", ""),
        public_url=env.get("OCPI_PUBLIC_URL", "").rstrip("/"),
        own_parties=_parties(env.get("OCPI_OWN_PARTIES") or _DEFAULT_PARTIES),
        page_limit=int(env.get("OCPI_PAGE_LIMIT", "100")),
        auth_cache_ttl=float(env.get("OCPI_AUTH_CACHE_TTL", "30")),
        registration_ttl=int(env.get("OCPI_REGISTRATION_TTL", str(7 * 24 * 3600))),
        max_body_bytes=int(env.get("OCPI_MAX_BODY_BYTES", str(1024 * 1024))),
    )


def reset_settings() -> None:
    """Tests change the environment; this forgets the cached settings."""
    get_settings.cache_clear()
