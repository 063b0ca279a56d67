"""Data access: interfaces (base), DynamoDB implementation (dynamo), in-memory fake (memory)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from shared.store.meter import METER


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    """One DynamoDB client per container (created lazily, reused by warm invocations)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "dynamodb",
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=2, read_timeout=5),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
    )
    METER.attach(client)
    return client


_store_override: Any = None


def set_store(store: Any) -> None:
    """Tests plug a MemoryStore (or a DynamoStore on moto) in here."""
    global _store_override
    _store_override = store


def get_store() -> Any:
    if _store_override is not None:
        return _store_override
    return _default_store()


@lru_cache(maxsize=1)
def _default_store() -> Any:
    from shared.config import get_settings
    from shared.store.dynamo import DynamoStore

    return DynamoStore(dynamodb_client(), get_settings().table_name)


def reset_store() -> None:
    global _store_override
    _store_override = None
    _default_store.cache_clear()
    dynamodb_client.cache_clear()
