"""DynamoDB key schema of the one table (template.yaml `OcpiTable`). docs/store.md explains it.

| item | PK | SK | GSI1PK | GSI1SK |
|---|---|---|---|---|
| object (header) | `O#{module}#{CC}#{PID}#{ID}[#{variant}]` | `H` | `L#{module}#{collection}` | `{lu}#{PK}` |
| child of an object (EVSE) | same PK as its parent | `C#{child_id}` | - | - |
| manifest of the children | same PK as its parent | `K` | - | - |
| push state of an own object | same PK as the object | `Q` | - | - |
| credentials token (hashed) | `T#{hmac}` | `T` | - | - |
| partner | `P#{partner_id}` | `P` | `L#partners` | `{partner_id}` |
| party claim | `R#{ROLE}#{CC}#{PID}` | `R` | - | - |
| billing job of a partner and period | `B#{partner_id}#{period}` | `J` | - | - |
| billing statement | `B#{partner_id}#{period}` | `S` | `L#statements` | `{partner_id}#{period}` |
"""

from __future__ import annotations

from shared.store.base import ObjectRef

HEADER_SK = "H"
MANIFEST_SK = "K"  # the list of an object's child keys (for batched loading of listed objects)
CHILD_PREFIX = "C#"
PUSH_SK = "Q"  # push state (shared/services/push.py): seq, change, F#{partner} in flight, A#{partner} acked


def object_pk(ref: ObjectRef) -> str:
    pk = f"O#{ref.module}#{ref.country_code.upper()}#{ref.party_id.upper()}#{ref.object_id.upper()}"
    return f"{pk}#{ref.variant.upper()}" if ref.variant else pk


def child_sk(child_id: str) -> str:
    # EVSE uids are CiString(36) in URLs: compare case-insensitively.
    return f"{CHILD_PREFIX}{child_id.upper()}"


def list_pk(module: str, collection: str) -> str:
    return f"L#{module}#{collection}"


def list_sk(lu: str, pk: str) -> str:
    return f"{lu}#{pk}"


def token_pk(token_hash: str) -> str:
    return f"T#{token_hash}"


def partner_pk(partner_id: str) -> str:
    return f"P#{partner_id}"


PARTNERS_LIST_PK = "L#partners"


def party_pk(role: str, country_code: str, party_id: str) -> str:
    return f"R#{role.upper()}#{country_code.upper()}#{party_id.upper()}"


# Billing runs (shared/services/billing.py): one partition per partner and period.
BILLING_JOB_SK = "J"  # the job of the current run: run_id, expected/done/split unit sets, status
STATEMENT_SK = "S"  # the statement record (S3 keys, digests, totals)
STATEMENTS_LIST_PK = "L#statements"


def billing_pk(partner_id: str, period: str) -> str:
    return f"B#{partner_id}#{period}"


def statement_list_sk(partner_id: str, period: str) -> str:
    return f"{partner_id}#{period}"
