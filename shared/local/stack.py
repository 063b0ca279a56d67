"""Run the whole OCPI stack of template.yaml locally in one process ("make run", ``ocpi-local``).

What it does, all derived from the SAM template:

1. starts moto in server mode (in-process thread) and points every boto3 client of this process at it;
2. provisions the template's DynamoDB tables, SQS queues (dead-letter queues first), EventBridge buses and
   rules (SQS targets attached), Secrets Manager secrets, S3 buckets, Scheduler schedule groups/schedules
   and KMS keys (not their aliases or key policies) in moto; other resource types are skipped;
3. imports every function that has API events (``<CodeUri>/app.py``, module-level ASGI ``app``) with the
   function environment of the template (Globals merged with the function's own);
4. serves them with uvicorn behind one dispatcher that routes like API Gateway REST (most specific path,
   then method or ANY; 404/405 in the OCPI envelope otherwise);
5. runs background functions (``Events`` of ``Type: SQS``) like Lambda's event source mapping: one poller
   thread per (function, queue) long-polls the queue, calls ``<CodeUri>/app.py``'s handler with the
   Lambda SQS event and a fake context, then deletes what succeeded (all of the batch, or, with
   ``ReportBatchItemFailures``, what ``batchItemFailures`` does not list; nothing when the handler
   raises). The rest becomes visible again after the queue's VisibilityTimeout and is redelivered, or
   moved to the queue's dead-letter queue after maxReceiveCount receives.

It prints the versions URL, the moto endpoint, the own parties and how to get a registration token, writes
the environment for ``ocpi-admin`` to ``.local/<STACK_NAME>.env`` (``source`` it), then prints
``READY <versions url>`` once it accepts connections. Ctrl-C or SIGTERM stop it cleanly (exit code 0).
Several instances run side by side when they use different ports (the stack name follows PORT).

Environment variables:
  HOST                   address to listen on (default 127.0.0.1)
  PORT                   HTTP port of the OCPI API (default 8080)
  MOTO_PORT              port of the moto server (default PORT+1000)
  STACK_NAME             names local resources (default ocpi-local-<PORT>)
  OCPI_OWN_PARTIES_FILE  JSON list of own parties (default shared/local/parties.json)
  OCPI_PUBLIC_URL        base URL the functions advertise (default http://HOST:PORT)
  TEMPLATE               SAM template to run (default template.yaml of this repository)
  PARAMETER_OVERRIDES    template parameters, "Name=Value Name2=Value2" (shell quoting allowed)
  LOG_LEVEL              uvicorn and local stack log level (default info)
  AWS_DEFAULT_REGION     region of the local resources (default eu-west-1)
  MOTO_ACCOUNT_ID        account id moto uses (default 123456789012)

AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set by the stack (moto, "testing");
AWS_PROFILE and service-specific AWS_ENDPOINT_URL_* variables are removed from its environment.

Known limits: all functions share one process, so environment variables that differ between functions
(e.g. OCPI_FUNCTION_MODULE) are only set while that function's module is imported and, for background
functions, while their handler runs (then visible process-wide; background invocations that need
different values for the same variable wait for each other). A function's sibling modules are imported
from its code directory at import time only (lazy imports of them later fail). Pollers receive at most 10
messages per batch (BatchSize above 10, MaximumBatchingWindowInSeconds and ScalingConfig are not applied)
and do not stop a handler that runs past its Timeout (they log it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import re
import secrets
import shlex
import signal
import socket
import string
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from shared.local.template import (
    FunctionSpec,
    Resolver,
    function_specs,
    load_template,
    select_route,
    topological_order,
)

log = logging.getLogger("ocpi.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_PARTIES_FILE = Path(__file__).resolve().with_name("parties.json")
#: How to make a registration token with the admin CLI (shared/admin/cli.py) once the env is loaded.
INVITE_COMMAND = '.venv/bin/ocpi-admin invite --name "Partner X"'
DEFAULT_REGION = "eu-west-1"
DEFAULT_ACCOUNT_ID = "123456789012"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ProvisionError(RuntimeError):
    """A template resource could not be created in the local AWS (moto)."""


# --------------------------------------------------------------------------------------------- config


def _connect_host(host: str) -> str:
    """An address clients can connect to for a listening address (0.0.0.0 / :: -> loopback)."""
    any_ipv4 = "0.0.0.0"  # noqa: S104 - compared, never bound  # nosec B104
    return "127.0.0.1" if host in ("", "::", any_ipv4) else host


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    moto_port: int = 9080
    stack_name: str = "ocpi-local-8080"
    parties_file: Path = DEFAULT_PARTIES_FILE
    public_url: str = "http://127.0.0.1:8080"
    template: Path = DEFAULT_TEMPLATE
    log_level: str = "info"
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    parameter_overrides: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        host = env.get("HOST") or "127.0.0.1"
        port = int(env.get("PORT") or 8080)
        moto_port = int(env.get("MOTO_PORT") or port + 1000)
        log_level = (env.get("LOG_LEVEL") or "info").lower()
        if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ValueError(f"LOG_LEVEL: unknown level {log_level!r}")
        overrides: dict[str, str] = {}
        for item in shlex.split(env.get("PARAMETER_OVERRIDES") or ""):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"PARAMETER_OVERRIDES: expected Name=Value, got {item!r}")
            overrides[key] = value
        return cls(
            host=host,
            port=port,
            moto_port=moto_port,
            stack_name=env.get("STACK_NAME") or f"ocpi-local-{port}",
            parties_file=Path(env.get("OCPI_OWN_PARTIES_FILE") or DEFAULT_PARTIES_FILE),
            public_url=(env.get("OCPI_PUBLIC_URL") or f"http://{_connect_host(host)}:{port}").rstrip("/"),
            template=Path(env.get("TEMPLATE") or DEFAULT_TEMPLATE),
            log_level=log_level,
            region=env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            account_id=env.get("MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID,
            parameter_overrides=overrides,
        )

    @property
    def moto_endpoint(self) -> str:
        return f"http://{_connect_host(self.host)}:{self.moto_port}"

    @property
    def versions_url(self) -> str:
        return f"{self.public_url}/ocpi/versions"


def aws_environment(config: Config) -> dict[str, str]:
    """The AWS variables every boto3 client of the local stack (and ocpi-admin) needs."""
    return {
        "AWS_ENDPOINT_URL": config.moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": config.region,
        "AWS_REGION": config.region,
    }


def apply_aws_environment(config: Config, environ: MutableMapping[str, str] | None = None) -> None:
    environ = os.environ if environ is None else environ
    dropped = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
    for key in list(environ):
        if key in dropped or key.startswith("AWS_ENDPOINT_URL_"):
            del environ[key]
    environ.update(aws_environment(config))


def load_parties(path: Path) -> list[dict[str, Any]]:
    """Own parties from a JSON file: a list of {country_code, party_id, role, business_details}."""
    try:
        parties = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read own parties from {path}: {exc}") from exc
    if not isinstance(parties, list) or not parties:
        raise ValueError(f"{path}: own parties must be a non-empty JSON list")
    for party in parties:
        if not isinstance(party, dict) or not all(
            isinstance(party.get(key), str) and party.get(key) for key in ("country_code", "party_id", "role")
        ):
            raise ValueError(f"{path}: each party needs country_code, party_id and role: {party!r}")
    return parties


# ------------------------------------------------------------------------------------------ provisioning


_LOADER: Any = None


def _data_loader() -> Any:
    """One botocore data loader per process: the service models (S3's is large) are parsed once,
    not once per provisioning (tests provision the template for every test that uses AWS)."""
    global _LOADER
    if _LOADER is None:
        import botocore.loaders

        _LOADER = botocore.loaders.create_loader()
    return _LOADER


class _Clients:
    def __init__(self, region: str) -> None:
        import botocore.session

        self._session = botocore.session.get_session()
        self._session.register_component("data_loader", _data_loader())
        self._region = region
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.create_client(service, region_name=self._region)
        return self._clients[service]


def _tags_list(tags: Any) -> list[dict[str, str]]:
    if isinstance(tags, dict):
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
    return [{"Key": str(t["Key"]), "Value": str(t["Value"])} for t in tags or []]


def _attr_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _ignored(logical_id: str, props: Mapping[str, Any], used: set[str]) -> None:
    ignored = sorted(set(props) - used)
    if ignored:
        log.debug("%s: properties not applied locally: %s", logical_id, ", ".join(ignored))


def _optional(logical_id: str, what: str, call: Callable[[], Any]) -> None:
    """Extras moto may not support: a failure is a warning, not a stop."""
    try:
        call()
    except Exception as exc:
        log.warning("%s: could not apply %s locally: %s", logical_id, what, exc)


def _index(index: Mapping[str, Any]) -> dict[str, Any]:
    return {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}


def _provision_table(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    ddb = clients("dynamodb")
    name = resolver.physical_name(logical_id)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = [_index(i) for i in props["GlobalSecondaryIndexes"]]
    if props.get("LocalSecondaryIndexes"):
        kwargs["LocalSecondaryIndexes"] = [_index(i) for i in props["LocalSecondaryIndexes"]]
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = props.get("SSESpecification")
    if sse and "SSEEnabled" in sse:
        kwargs["SSESpecification"] = {"Enabled": bool(sse["SSEEnabled"])}
    if props.get("Tags"):
        kwargs["Tags"] = _tags_list(props["Tags"])
    description = ddb.create_table(**kwargs)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("AttributeName"):
        spec = {"Enabled": bool(ttl.get("Enabled", True)), "AttributeName": ttl["AttributeName"]}
        _optional(
            logical_id,
            "TimeToLiveSpecification",
            lambda: ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=spec),
        )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        _optional(
            logical_id,
            "PointInTimeRecoverySpecification",
            lambda: ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            ),
        )
    _ignored(
        logical_id,
        props,
        {
            "TableName",
            "KeySchema",
            "AttributeDefinitions",
            "BillingMode",
            "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes",
            "StreamSpecification",
            "SSESpecification",
            "Tags",
            "TimeToLiveSpecification",
            "PointInTimeRecoverySpecification",
            "ProvisionedThroughput",
        },
    )
    attrs = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attrs["StreamArn"] = description["LatestStreamArn"]
    resolver.set_physical(logical_id, name, **attrs)
    return name


def _provision_simple_table(
    clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver
) -> str:
    key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    key_type = {"String": "S", "Number": "N", "Binary": "B"}.get(str(key.get("Type", "String")), "S")
    table_props = {
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": key_type}],
        **({"SSESpecification": props["SSESpecification"]} if "SSESpecification" in props else {}),
    }
    return _provision_table(clients, logical_id, table_props, resolver)


_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _provision_queue(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    sqs = clients("sqs")
    name = resolver.physical_name(logical_id)
    attributes = {}
    for key in _QUEUE_ATTRIBUTES:
        if key not in props:
            continue
        value = props[key]
        if key == "FifoQueue" and not (value is True or str(value).lower() == "true"):
            continue  # SQS only takes FifoQueue for FIFO queues
        if key in ("RedrivePolicy", "RedriveAllowPolicy") and isinstance(value, str):
            value = json.loads(value)
        attributes[key] = _attr_text(value)
    kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if props.get("Tags"):
        kwargs["tags"] = {t["Key"]: t["Value"] for t in _tags_list(props["Tags"])}
    url = sqs.create_queue(**kwargs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    _ignored(logical_id, props, {*_QUEUE_ATTRIBUTES, "QueueName", "Tags"})
    resolver.set_physical(logical_id, url, QueueUrl=url, Arn=arn, QueueName=name)
    return url


def _provision_bus(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    name = resolver.physical_name(logical_id)
    if name != "default":
        kwargs: dict[str, Any] = {"Name": name}
        if props.get("Description"):
            kwargs["Description"] = props["Description"]
        if props.get("Tags"):
            kwargs["Tags"] = _tags_list(props["Tags"])
        arn = clients("events").create_event_bus(**kwargs)["EventBusArn"]
        resolver.set_physical(logical_id, name, Arn=arn, Name=name)
    _ignored(logical_id, props, {"Name", "Description", "Tags"})
    return name


# Target services moto's EventBridge delivers to; put_events fails on rules with other targets.
_MOTO_DELIVERABLE_TARGETS = ("sqs", "logs", "events")


def _provision_rule(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    events = clients("events")
    name = resolver.physical_name(logical_id)
    bus = props.get("EventBusName") or "default"
    kwargs: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": props.get("State") or "ENABLED"}
    if "EventPattern" in props:
        pattern = props["EventPattern"]
        kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    for key in ("ScheduleExpression", "Description", "RoleArn"):
        if props.get(key):
            kwargs[key] = props[key]
    arn = events.put_rule(**kwargs)["RuleArn"]
    targets = []
    for target in props.get("Targets") or []:
        service = str(target.get("Arn", "")).split(":")[2:3]
        if service and service[0] in _MOTO_DELIVERABLE_TARGETS:
            targets.append(dict(target))
        else:
            log.info(
                "%s: target %s (%s) not attached in moto (it cannot deliver to it)",
                logical_id,
                target.get("Id"),
                target.get("Arn"),
            )
    if targets:
        response = events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        if response.get("FailedEntryCount"):
            raise ProvisionError(f"{logical_id}: put_targets failed: {response.get('FailedEntries')}")
    _ignored(
        logical_id,
        props,
        {
            "Name",
            "EventBusName",
            "State",
            "EventPattern",
            "Targets",
            "ScheduleExpression",
            "Description",
            "RoleArn",
        },
    )
    resolver.set_physical(logical_id, None, Arn=arn)
    return name if bus == "default" else f"{bus}|{name}"


def generate_secret_string(spec: Mapping[str, Any]) -> str:
    """Value for a GenerateSecretString spec: alphanumeric (punctuation only if ExcludePunctuation: false)."""

    def flag(key: str) -> bool:
        value = spec.get(key, False)
        return value is True or str(value).lower() == "true"

    alphabet = ""
    if not flag("ExcludeLowercase"):
        alphabet += string.ascii_lowercase
    if not flag("ExcludeUppercase"):
        alphabet += string.ascii_uppercase
    if not flag("ExcludeNumbers"):
        alphabet += string.digits
    if "ExcludePunctuation" in spec and not flag("ExcludePunctuation"):
        alphabet += string.punctuation
    if flag("IncludeSpace"):
        alphabet += " "
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = "".join(ch for ch in alphabet if ch not in excluded) or string.ascii_letters
    length = int(spec.get("PasswordLength", 32))
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    template = spec.get("SecretStringTemplate")
    key = spec.get("GenerateStringKey")
    if template is not None and key:
        document = json.loads(template) if isinstance(template, str) else dict(template)
        document[key] = value
        return json.dumps(document)
    return value


def _provision_secret(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    name = resolver.physical_name(logical_id)
    kwargs: dict[str, Any] = {"Name": name}
    if props.get("Description"):
        kwargs["Description"] = props["Description"]
    if "SecretString" in props:
        kwargs["SecretString"] = str(props["SecretString"])
    elif "GenerateSecretString" in props:
        kwargs["SecretString"] = generate_secret_string(props["GenerateSecretString"] or {})
    if props.get("Tags"):
        kwargs["Tags"] = _tags_list(props["Tags"])
    arn = clients("secretsmanager").create_secret(**kwargs)["ARN"]
    _ignored(logical_id, props, {"Name", "Description", "SecretString", "GenerateSecretString", "Tags"})
    resolver.set_physical(logical_id, arn, Id=arn, Arn=arn)
    return arn


def _provision_bucket(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    s3 = clients("s3")
    name = resolver.physical_name(logical_id)
    kwargs: dict[str, Any] = {"Bucket": name}
    if resolver.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": resolver.region}
    s3.create_bucket(**kwargs)
    versioning = props.get("VersioningConfiguration")
    if versioning and versioning.get("Status"):
        _optional(
            logical_id,
            "VersioningConfiguration",
            lambda: s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": versioning["Status"]}
            ),
        )
    if props.get("Tags"):
        tags = _tags_list(props["Tags"])
        _optional(logical_id, "Tags", lambda: s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags}))
    encryption = props.get("BucketEncryption")
    if encryption and encryption.get("ServerSideEncryptionConfiguration"):
        rules = []
        for rule in encryption["ServerSideEncryptionConfiguration"]:
            applied: dict[str, Any] = {}
            if "ServerSideEncryptionByDefault" in rule:
                applied["ApplyServerSideEncryptionByDefault"] = rule["ServerSideEncryptionByDefault"]
            if "BucketKeyEnabled" in rule:
                applied["BucketKeyEnabled"] = str(rule["BucketKeyEnabled"]).lower() == "true"
            rules.append(applied)
        _optional(
            logical_id,
            "BucketEncryption",
            lambda: s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules}),
        )
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        config = {key: str(value).lower() == "true" for key, value in block.items()}
        _optional(
            logical_id,
            "PublicAccessBlockConfiguration",
            lambda: s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=config),
        )
    # Bucket policies (AWS::S3::BucketPolicy) are not provisioned: moto enforces them, and a TLS-only
    # policy would refuse every request to the local stack's plain-HTTP endpoint.
    _ignored(
        logical_id,
        props,
        {
            "BucketName",
            "VersioningConfiguration",
            "Tags",
            "BucketEncryption",
            "PublicAccessBlockConfiguration",
        },
    )
    return name


def _provision_schedule_group(
    clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver
) -> str:
    name = resolver.physical_name(logical_id)
    arn = clients("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
    resolver.set_physical(logical_id, name, Arn=arn)
    _ignored(logical_id, props, {"Name"})
    return name


_SCHEDULE_KEYS = (
    "ActionAfterCompletion",
    "Description",
    "EndDate",
    "FlexibleTimeWindow",
    "GroupName",
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "StartDate",
    "State",
    "Target",
)


def _provision_schedule(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    name = resolver.physical_name(logical_id)
    kwargs: dict[str, Any] = {key: props[key] for key in _SCHEDULE_KEYS if key in props}
    kwargs["Name"] = name
    kwargs.setdefault("FlexibleTimeWindow", {"Mode": "OFF"})
    target = dict(kwargs.get("Target") or {})
    target.setdefault("RoleArn", f"arn:aws:iam::{resolver.account_id}:role/{resolver.stack_name}-scheduler")
    kwargs["Target"] = target
    arn = clients("scheduler").create_schedule(**kwargs)["ScheduleArn"]
    resolver.set_physical(logical_id, name, Arn=arn)
    _ignored(logical_id, props, {*_SCHEDULE_KEYS, "Name"})
    return name


def _provision_kms_key(clients: _Clients, logical_id: str, props: dict[str, Any], resolver: Resolver) -> str:
    """A customer-managed key; Ref is its key id (as in CloudFormation), GetAtt Arn / KeyId.

    The KeyPolicy is not applied (nor resolved: it names IAM principals that do not exist locally, and
    moto enforces parts of key policies); every local caller may use the key. Aliases
    (AWS::KMS::Alias) are not created: the functions refer to the key by id."""
    kms = clients("kms")
    kwargs: dict[str, Any] = {}
    for key in ("Description", "KeySpec", "KeyUsage"):
        if props.get(key):
            kwargs[key] = str(props[key])
    if str(props.get("MultiRegion", "")).lower() == "true":
        kwargs["MultiRegion"] = True
    if props.get("Tags"):
        kwargs["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags_list(props["Tags"])]
    meta = kms.create_key(**kwargs)["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    if str(props.get("EnableKeyRotation", "")).lower() == "true":
        _optional(logical_id, "EnableKeyRotation", lambda: kms.enable_key_rotation(KeyId=key_id))
    if str(props.get("Enabled", "true")).lower() == "false":
        kms.disable_key(KeyId=key_id)
    _ignored(
        logical_id,
        props,
        {"Description", "KeySpec", "KeyUsage", "MultiRegion", "Tags", "EnableKeyRotation", "Enabled"},
    )
    resolver.set_physical(logical_id, key_id, Arn=arn, KeyId=key_id)
    return key_id


# Properties left unresolved (and unapplied) locally, per resource type.
_UNRESOLVED: dict[str, tuple[str, ...]] = {"AWS::KMS::Key": ("KeyPolicy", "PendingWindowInDays")}

Provisioner = Callable[[_Clients, str, dict[str, Any], Resolver], str]

PROVISIONERS: dict[str, Provisioner] = {
    "AWS::DynamoDB::Table": _provision_table,
    "AWS::Serverless::SimpleTable": _provision_simple_table,
    "AWS::SQS::Queue": _provision_queue,
    "AWS::Events::EventBus": _provision_bus,
    "AWS::Events::Rule": _provision_rule,
    "AWS::SecretsManager::Secret": _provision_secret,
    "AWS::S3::Bucket": _provision_bucket,
    "AWS::Scheduler::ScheduleGroup": _provision_schedule_group,
    "AWS::Scheduler::Schedule": _provision_schedule,
    "AWS::KMS::Key": _provision_kms_key,
}


def provision(template: Mapping[str, Any], resolver: Resolver) -> dict[str, str]:
    """Create the template's supported resources with boto3 (moto server or ``moto.mock_aws``).

    Resources are created after the ones they refer to (dead-letter queues before their queues, buses
    before rules, queues before rule targets). Returns ``{logical_id: Ref value}`` (table name, queue URL,
    bus name, secret ARN, bucket name, ...). Real values (queue URLs, secret ARNs) are recorded in
    ``resolver`` so function environments resolved afterwards use them.
    """
    del template  # the resolver holds it; kept in the signature for readability at call sites
    clients = _Clients(resolver.region)
    active = resolver.active_resources()
    supported = {lid: res for lid, res in active.items() if res.get("Type") in PROVISIONERS}
    skipped = sorted({str(res.get("Type")) for lid, res in active.items() if lid not in supported})
    if skipped:
        log.debug("resource types not provisioned locally: %s", ", ".join(skipped))
    created: dict[str, str] = {}
    for logical_id in topological_order(supported):
        resource = supported[logical_id]
        raw = dict(resource.get("Properties") or {})
        unresolved = [key for key in _UNRESOLVED.get(resource["Type"], ()) if raw.pop(key, None) is not None]
        if unresolved:
            log.debug("%s: properties not applied locally: %s", logical_id, ", ".join(unresolved))
        props = resolver.resolve(raw) or {}
        try:
            created[logical_id] = PROVISIONERS[resource["Type"]](clients, logical_id, props, resolver)
        except ProvisionError:
            raise
        except Exception as exc:
            raise ProvisionError(f"cannot create {logical_id} ({resource['Type']}) locally: {exc}") from exc
        log.info("provisioned %s (%s): %s", logical_id, resource["Type"], created[logical_id])
    return created


# ------------------------------------------------------------------------------------------- functions


def common_environment(specs: list[FunctionSpec]) -> dict[str, str]:
    """Variables with the same value in every function (from the template's Globals, in practice)."""
    if not specs:
        return {}
    common = dict(specs[0].environment)
    for spec in specs[1:]:
        common = {k: v for k, v in common.items() if spec.environment.get(k) == v}
    return common


@contextlib.contextmanager
def _temporary_environ(values: Mapping[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _hide_private_modules(names: set[str], code_dir: Path, owner: str) -> None:
    """Move modules only importable from ``code_dir`` (a function's own ``models.py``...) out of the way.

    Another function may have a sibling module of the same name; it must get its own. Modules also
    importable without ``code_dir`` on sys.path (the shared package...) stay shared.
    """
    private_tops: dict[str, bool] = {}
    for name in sorted(names):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file or not Path(file).resolve().is_relative_to(code_dir):
            continue
        top = name.split(".", 1)[0]
        if top not in private_tops:
            spec = importlib.machinery.PathFinder.find_spec(top)
            private_tops[top] = spec is None
        if private_tops[top]:
            sys.modules[f"{owner}.{name}"] = sys.modules.pop(name)


def _module_unique_name(spec: FunctionSpec) -> str:
    return "ocpi_fn_" + re.sub(r"\W", "_", spec.logical_id).lower()


def load_function_module(spec: FunctionSpec, base_dir: Path, environment: Mapping[str, str]) -> Any:
    """Import ``<base_dir>/<CodeUri>/<handler module>.py`` under a unique name, with ``environment`` applied.

    The function's variables are set in ``os.environ`` for the import only and restored afterwards, so
    values specific to one function do not leak into the others sharing this process.
    """
    code_dir = (base_dir / spec.code_uri).resolve()
    module_file = code_dir / (spec.module_name.replace(".", "/") + ".py")
    if not module_file.is_file():
        raise FileNotFoundError(f"{spec.logical_id}: {module_file} not found (CodeUri {spec.code_uri})")
    unique = _module_unique_name(spec)
    import_spec = importlib.util.spec_from_file_location(unique, module_file)
    if import_spec is None or import_spec.loader is None:
        raise ImportError(f"cannot import {module_file}")
    module = importlib.util.module_from_spec(import_spec)
    before = set(sys.modules)
    sys.path.insert(0, str(code_dir))
    sys.modules[unique] = module
    try:
        with _temporary_environ(environment):
            import_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(code_dir))
        _hide_private_modules(set(sys.modules) - before - {unique}, code_dir, unique)
    return module


def _module_app(spec: FunctionSpec, module: Any) -> Any:
    app = getattr(module, "app", None)
    if app is None or not callable(app):
        raise ImportError(f"{spec.logical_id}: {module.__file__} has no module-level ASGI `app`")
    return app


def _module_handler(spec: FunctionSpec, module: Any) -> Any:
    handler = getattr(module, spec.handler_attribute, None)
    if handler is None or not callable(handler):
        raise ImportError(f"{spec.logical_id}: {module.__file__} has no handler `{spec.handler_attribute}`")
    return handler


def load_function_app(spec: FunctionSpec, base_dir: Path, environment: Mapping[str, str]) -> Any:
    """Import the function's module (see :func:`load_function_module`) and return its ASGI ``app``."""
    return _module_app(spec, load_function_module(spec, base_dir, environment))


def load_function_handler(spec: FunctionSpec, base_dir: Path, environment: Mapping[str, str]) -> Any:
    """Import the function's module (see :func:`load_function_module`) and return its Lambda handler."""
    return _module_handler(spec, load_function_module(spec, base_dir, environment))


# ------------------------------------------------------------------------- background functions (SQS)

#: System attributes Lambda puts in an SQS record's ``attributes`` (when SQS returns them), in its order.
_LAMBDA_SQS_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)

#: Lambda's default function timeout (seconds) when the template sets none.
DEFAULT_FUNCTION_TIMEOUT = 3
#: Lambda's default memory size (MB) when the template sets none.
DEFAULT_FUNCTION_MEMORY = 128


class LambdaContext:
    """The part of Lambda's context object handlers (and Powertools) use."""

    def __init__(
        self,
        function_name: str,
        *,
        memory_limit_in_mb: int = DEFAULT_FUNCTION_MEMORY,
        invoked_function_arn: str = "",
        timeout_seconds: float = DEFAULT_FUNCTION_TIMEOUT,
        aws_request_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = invoked_function_arn
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self.timeout_seconds = timeout_seconds
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """boto3's MessageAttributes in the shape of a Lambda SQS record's ``messageAttributes``."""
    converted: dict[str, dict[str, Any]] = {}
    for name, attribute in attributes.items():
        value: dict[str, Any] = {}
        if "StringValue" in attribute:
            value["stringValue"] = attribute["StringValue"]
        if "BinaryValue" in attribute:
            raw = attribute["BinaryValue"]
            raw = raw.encode() if isinstance(raw, str) else bytes(raw)
            value["binaryValue"] = base64.b64encode(raw).decode("ascii")
        value["stringListValues"] = list(attribute.get("StringListValues") or [])
        value["binaryListValues"] = [
            base64.b64encode(item if isinstance(item, bytes) else str(item).encode()).decode("ascii")
            for item in attribute.get("BinaryListValues") or []
        ]
        value["dataType"] = attribute.get("DataType", "String")
        converted[name] = value
    return converted


def build_sqs_event(messages: list[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping passes for ``messages`` (boto3 receive_message output)."""
    records = []
    for message in messages:
        system = message.get("Attributes") or {}
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": {key: str(system[key]) for key in _LAMBDA_SQS_ATTRIBUTES if key in system},
            "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes") or {}),
            "md5OfBody": message.get("MD5OfBody", ""),
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
        records.append(record)
    return {"Records": records}


def batch_item_failures(result: Any, message_ids: Iterable[str]) -> set[str] | None:
    """Message ids a ReportBatchItemFailures response lists as failed; None when the response is invalid.

    Like Lambda: a null response, an empty one or a null/empty ``batchItemFailures`` is a full success;
    a response that is not an object, or an item without a valid ``itemIdentifier`` of this batch, fails
    the whole batch.
    """
    if result is None:
        return set()
    if not isinstance(result, Mapping):
        return None
    items = result.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    known = set(message_ids)
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or identifier not in known:
            return None
        failed.add(identifier)
    return failed


class _EnvironmentOverlay:
    """Sets a function's own variables in ``os.environ`` while its handler runs, and restores them after.

    Invocations whose variables agree (the same function, or different keys) run concurrently; one that
    needs a different value for a variable currently set by another waits until that one finishes.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        #: key -> [value, users, value before the first user]
        self._active: dict[str, list[Any]] = {}

    def _compatible(self, values: Mapping[str, str]) -> bool:
        return all(key not in self._active or self._active[key][0] == v for key, v in values.items())

    @contextlib.contextmanager
    def applied(self, values: Mapping[str, str]):
        if not values:
            yield
            return
        with self._condition:
            self._condition.wait_for(lambda: self._compatible(values))
            for key, value in values.items():
                if key in self._active:
                    self._active[key][1] += 1
                else:
                    self._active[key] = [value, 1, os.environ.get(key)]
                    os.environ[key] = value
        try:
            yield
        finally:
            with self._condition:
                for key in values:
                    entry = self._active[key]
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._active[key]
                        if entry[2] is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = entry[2]
                self._condition.notify_all()


_FUNCTION_ENVIRONMENT = _EnvironmentOverlay()


def _arn_parts(arn: str) -> list[str]:
    parts = arn.split(":", 5)
    return parts if len(parts) == 6 else ["arn", "aws", "sqs", "", "", arn]


class SqsPoller:
    """Lambda's SQS event source mapping for one (function, queue): receive, invoke, delete.

    :meth:`poll_once` does one long poll and, if it got messages, one invocation; :meth:`run` loops on it
    until ``stop_event`` is set (a thread per poller: :meth:`start`). One poller per source never runs two
    batches at once, so FIFO message groups are delivered in order, as Lambda does.

    ``environment`` holds the variables applied while the handler runs (by default the function's variables
    whose value differs from this process's environment when the poller is created).
    """

    def __init__(
        self,
        spec: FunctionSpec,
        queue_url: str,
        queue_arn: str,
        handler: Callable[[dict[str, Any], Any], Any],
        batch_size: int = 10,
        report_failures: bool = False,
        stop_event: threading.Event | None = None,
        *,
        environment: Mapping[str, str] | None = None,
        client: Any = None,
        wait_seconds: int = 1,
    ) -> None:
        self.spec = spec
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.batch_size = batch_size
        self.report_failures = report_failures
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.wait_seconds = wait_seconds
        arn = _arn_parts(queue_arn)
        self.region = arn[3] or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        self.account_id = arn[4] or os.environ.get("MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID
        self.queue_name = arn[5]
        self.max_messages = max(1, min(int(batch_size), 10))
        if environment is None:
            environment = {k: v for k, v in spec.environment.items() if os.environ.get(k) != v}
        self.environment = dict(environment)
        self.client = client or boto3.session.Session(region_name=self.region).client("sqs")
        self.function_name = spec.function_name or spec.logical_id
        self.function_arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
        self.thread: threading.Thread | None = None
        #: Counters, for logs and tests.
        self.invocations = 0
        self.handler_errors = 0

    def __repr__(self) -> str:
        return f"SqsPoller({self.spec.logical_id} <- {self.queue_name})"

    # ------------------------------------------------------------------ one round

    def receive(self) -> list[dict[str, Any]]:
        response = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.max_messages,
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def context(self) -> LambdaContext:
        return LambdaContext(
            self.function_name,
            memory_limit_in_mb=self.spec.memory_size or DEFAULT_FUNCTION_MEMORY,
            invoked_function_arn=self.function_arn,
            timeout_seconds=self.spec.timeout or DEFAULT_FUNCTION_TIMEOUT,
        )

    def invoke(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the handler on ``event``; return the records to delete (the ones that succeeded)."""
        records = event["Records"]
        context = self.context()
        started = time.monotonic()
        self.invocations += 1
        try:
            with _FUNCTION_ENVIRONMENT.applied(self.environment):
                result = self.handler(event, context)
        except Exception:
            self.handler_errors += 1
            log.exception(
                "%s: handler failed on %d message(s) from %s (request %s); the batch will be retried",
                self.spec.logical_id,
                len(records),
                self.queue_name,
                context.aws_request_id,
            )
            return []
        finally:
            elapsed = time.monotonic() - started
            if elapsed > context.timeout_seconds:
                log.warning(
                    "%s: took %.1f s, more than its Timeout of %s s (Lambda would have stopped it)",
                    self.spec.logical_id,
                    elapsed,
                    context.timeout_seconds,
                )
        if not self.report_failures:
            return list(records)
        failed = batch_item_failures(result, (record["messageId"] for record in records))
        if failed is None:
            log.error(
                "%s: invalid ReportBatchItemFailures response %r; the whole batch will be retried",
                self.spec.logical_id,
                result,
            )
            return []
        if failed:
            log.info(
                "%s: %d of %d message(s) from %s failed and will be retried",
                self.spec.logical_id,
                len(failed),
                len(records),
                self.queue_name,
            )
        return [record for record in records if record["messageId"] not in failed]

    def delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), 10):
            chunk = records[start : start + 10]
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
                    for index, record in enumerate(chunk)
                ],
            )
            for failure in response.get("Failed") or []:
                log.warning(
                    "%s: could not delete message %s from %s: %s",
                    self.spec.logical_id,
                    chunk[int(failure["Id"])]["messageId"],
                    self.queue_name,
                    failure.get("Message") or failure.get("Code"),
                )

    def poll_once(self) -> int:
        """One long poll; invoke the handler on what came and delete what succeeded. Returns #messages."""
        messages = self.receive()
        if not messages:
            return 0
        event = build_sqs_event(messages, self.queue_arn, self.region)
        self.delete(self.invoke(event))
        return len(messages)

    # ------------------------------------------------------------------ thread

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                if self.stop_event.is_set():
                    break
                log.warning(
                    "poller %s <- %s: %s (retrying in 1 s)",
                    self.spec.logical_id,
                    self.queue_name,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                self.stop_event.wait(1.0)

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(
            target=self.run, name=f"sqs-poller-{self.spec.logical_id}-{self.queue_name}", daemon=True
        )
        self.thread.start()
        return self.thread


@dataclass
class SqsEventSource:
    """One SQS event of a background function, resolved against the provisioned queues."""

    spec: FunctionSpec
    handler: Callable[[dict[str, Any], Any], Any]
    queue_name: str
    queue_url: str
    queue_arn: str
    batch_size: int
    report_failures: bool
    #: The function's variables that differ from the variables shared by every function.
    environment: dict[str, str] = field(default_factory=dict)


def resolve_sqs_queue(queue: str, resolver: Resolver) -> tuple[str, str, str]:
    """(name, url, arn) of an SQS event's queue: a template queue's logical id, or a queue ARN."""
    if queue in resolver.resources:
        if resolver.resource_type(queue) != "AWS::SQS::Queue":
            raise ValueError(f"{queue} is a {resolver.resource_type(queue)}, not an SQS queue")
        if not resolver.is_active(queue):
            raise ValueError(f"queue {queue} is not created (its Condition is false)")
        return (
            resolver.physical_name(queue),
            str(resolver.queue_url(queue)),
            str(resolver.get_att(queue, "Arn")),
        )
    arn = _arn_parts(queue)
    client = boto3.session.Session(region_name=arn[3] or resolver.region).client("sqs")
    kwargs = {"QueueName": arn[5]}
    if arn[4] and arn[4] != resolver.account_id:
        kwargs["QueueOwnerAWSAccountId"] = arn[4]
    return arn[5], client.get_queue_url(**kwargs)["QueueUrl"], queue


def start_pollers(
    sources: Iterable[SqsEventSource],
    stop_event: threading.Event,
    say: Callable[[str], None] | None = None,
) -> list[SqsPoller]:
    """Start one :class:`SqsPoller` thread per source.

    Prints one line per poller: ``poller: <function logical id> <- <queue name> (batch N)``.
    """
    say = _say if say is None else say
    pollers = []
    for source in sources:
        poller = SqsPoller(
            source.spec,
            source.queue_url,
            source.queue_arn,
            source.handler,
            source.batch_size,
            source.report_failures,
            stop_event,
            environment=source.environment,
        )
        say(f"poller: {source.spec.logical_id} <- {source.queue_name} (batch {source.batch_size})")
        poller.start()
        pollers.append(poller)
    return pollers


def stop_pollers(pollers: Iterable[SqsPoller], stop_event: threading.Event, timeout: float = 10.0) -> None:
    """Set ``stop_event`` and wait (bounded) for the poller threads to finish their current round."""
    stop_event.set()
    deadline = time.monotonic() + timeout
    for poller in pollers:
        if poller.thread is None:
            continue
        poller.thread.join(max(0.0, deadline - time.monotonic()))
        if poller.thread.is_alive():
            log.warning("%r still busy at shutdown (its handler is running); not waiting", poller)


# ------------------------------------------------------------------------------------------ dispatcher


def ocpi_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _send_envelope(send: Send, http_status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps(
        {"status_code": 2000, "status_message": message, "timestamp": ocpi_timestamp()}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Lifespan:
    """Drives one ASGI app's lifespan protocol on behalf of the dispatcher."""

    def __init__(self, name: str, app: ASGIApp) -> None:
        self.name = name
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = False
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except Exception as exc:
            if self.supported:
                log.exception("%s: lifespan failed", self.name)
            else:
                log.debug("%s: no lifespan support (%s)", self.name, exc)
        finally:
            await self._from_app.put({"type": "lifespan.exited"})

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] == "lifespan.startup.complete":
            self.supported = True
        elif message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"{self.name}: startup failed: {message.get('message', '')}")

    async def shutdown(self) -> None:
        if self.supported and self._task is not None and not self._task.done():
            await self._to_app.put({"type": "lifespan.shutdown"})
            message = await self._from_app.get()
            if message["type"] == "lifespan.shutdown.failed":
                log.error("%s: shutdown failed: %s", self.name, message.get("message", ""))
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)


class Dispatcher:
    """One ASGI app in front of the function apps, routing like API Gateway REST."""

    def __init__(self, routes: list[tuple[str, str, str]], apps: Mapping[str, ASGIApp]) -> None:
        #: (method, path template, function logical id)
        self.routes = list(routes)
        self.apps = dict(apps)
        self._lifespans: dict[str, _Lifespan] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome, route, _params = select_route(self.routes, scope["method"], scope["path"])
        if outcome == "not_found" or route is None:
            if outcome == "method_not_allowed":
                await _send_envelope(send, 405, "Method not allowed")
            else:
                await _send_envelope(send, 404, "Not found")
            return
        function_id = route[2]
        lifespan = self._lifespans.get(function_id)
        if lifespan is not None and lifespan.supported:
            scope = dict(scope)
            scope["state"] = dict(lifespan.state)
        await self.apps[function_id](scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for function_id, app in self.apps.items():
                        lifespan = _Lifespan(function_id, app)
                        self._lifespans[function_id] = lifespan
                        await lifespan.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for lifespan in reversed(list(self._lifespans.values())):
                    await lifespan.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


# ------------------------------------------------------------------------------------------------ main


def export_lines(config: Config, shared_env: Mapping[str, str]) -> list[str]:
    """Shell lines that give another process (ocpi-admin, scripts) this stack's environment."""
    lines = ["unset AWS_PROFILE"]
    values = {**aws_environment(config), **shared_env}
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    return lines


def env_file_path(config: Config) -> Path:
    """``.local/<STACK_NAME>.env`` in the repository root: the stack's exports, while it runs."""
    return REPO_ROOT / ".local" / f"{config.stack_name}.env"


def _check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(f"{what} port {host}:{port} is not available: {exc}") from exc


def _start_moto(config: Config) -> Any:
    from moto.server import ThreadedMotoServer

    _check_port_free(config.host, config.moto_port, "MOTO_PORT")
    server = ThreadedMotoServer(ip_address=config.host, port=config.moto_port, verbose=False)
    starter = threading.Thread(target=server.start, name="moto-start", daemon=True)
    starter.start()
    starter.join(timeout=30)
    if starter.is_alive():
        raise RuntimeError(f"moto server did not start on {config.host}:{config.moto_port}")
    return server


def _say(text: str = "") -> None:
    print(text, flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ocpi-local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    _parse_args(argv)
    try:
        config = Config.from_env()
    except ValueError as exc:
        print(f"ocpi-local: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper() if config.log_level.upper() != "TRACE" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3"):  # their debug output dumps every signed request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if config.log_level not in ("debug", "trace"):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log

    stop = threading.Event()
    holder: dict[str, Any] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        server = holder.get("uvicorn")
        if server is not None:
            server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    moto_server = None
    env_file = env_file_path(config)
    wrote_env_file = False
    pollers: list[SqsPoller] = []
    try:
        _check_port_free(config.host, config.port, "PORT")
        apply_aws_environment(config)
        moto_server = _start_moto(config)
        if stop.is_set():
            return 0
        parts = prepare(config)
        if stop.is_set():
            return 0
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("\n".join(export_lines(config, parts.shared_env)) + "\n", encoding="utf-8")
        wrote_env_file = True
        pollers = start_pollers(parts.sqs_sources, stop)
        return _serve(config, parts.dispatcher, parts.shared_env, holder, stop)
    except Exception as exc:
        log.error("ocpi-local failed: %s", exc, exc_info=True)
        print(f"ocpi-local: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # Pollers first: they talk to moto, which stops below.
        stop_pollers(pollers, stop)
        # The file points at this process's moto: stale once it stops.
        if wrote_env_file:
            with contextlib.suppress(OSError):
                env_file.unlink(missing_ok=True)
        if moto_server is not None:
            with contextlib.suppress(Exception):
                moto_server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class LocalParts:
    """What :func:`prepare` makes of the template: the HTTP dispatcher and the background functions."""

    dispatcher: Dispatcher
    shared_env: dict[str, str]
    sqs_sources: list[SqsEventSource] = field(default_factory=list)


def prepare(config: Config) -> LocalParts:
    """Provision the template in the (already running) moto and import the API and background functions."""
    template = load_template(config.template)
    resolver = Resolver(
        template, config.stack_name, config.region, config.account_id, config.parameter_overrides
    )
    provision(template, resolver)

    parties = load_parties(config.parties_file)
    local_env = {
        "OCPI_OWN_PARTIES": json.dumps(parties, separators=(",", ":")),
        "OCPI_PUBLIC_URL": config.public_url,
    }
    if os.environ.get("OCPI_VERSIONS"):  # the OCPI versions this stack offers (ocpi-admin uses it too)
        local_env["OCPI_VERSIONS"] = os.environ["OCPI_VERSIONS"]
    specs = function_specs(template, resolver)
    shared_env = {**common_environment(specs), **local_env}
    os.environ.update(shared_env)

    base_dir = config.template.resolve().parent
    routes: list[tuple[str, str, str]] = []
    apps: dict[str, ASGIApp] = {}
    sources: list[SqsEventSource] = []
    for spec in specs:
        if not spec.api_routes and not spec.sqs_sources:
            continue
        environment = {**spec.environment, **local_env}
        module = load_function_module(spec, base_dir, environment)
        if spec.api_routes:
            apps[spec.logical_id] = _module_app(spec, module)
            routes += [(route.method, route.path, spec.logical_id) for route in spec.api_routes]
            log.info("%s: %s", spec.logical_id, ", ".join(f"{r.method} {r.path}" for r in spec.api_routes))
        if spec.sqs_sources:
            handler = _module_handler(spec, module)
            own = {key: value for key, value in environment.items() if shared_env.get(key) != value}
            for source in spec.sqs_sources:
                try:
                    name, url, arn = resolve_sqs_queue(source.queue, resolver)
                except Exception as exc:
                    log.warning("%s: SQS event on %s not polled: %s", spec.logical_id, source.queue, exc)
                    continue
                sources.append(
                    SqsEventSource(
                        spec=spec,
                        handler=handler,
                        queue_name=name,
                        queue_url=url,
                        queue_arn=arn,
                        batch_size=source.batch_size,
                        report_failures="ReportBatchItemFailures" in source.function_response_types,
                        environment=own,
                    )
                )
    return LocalParts(Dispatcher(routes, apps), shared_env, sources)


def build(config: Config) -> tuple[Dispatcher, dict[str, str]]:
    """Like :func:`prepare`, for callers that only want the HTTP side."""
    parts = prepare(config)
    return parts.dispatcher, parts.shared_env


def _banner(config: Config, shared_env: Mapping[str, str]) -> None:
    parties = json.loads(shared_env["OCPI_OWN_PARTIES"])
    env_file = env_file_path(config)
    _say(f"OCPI local stack {config.stack_name} (template {config.template})")
    _say(f"  versions URL : {config.versions_url}")
    _say(f"  moto endpoint: {config.moto_endpoint}")
    _say("  own parties  :")
    for party in parties:
        name = (party.get("business_details") or {}).get("name", "")
        _say(f"    {party['country_code']}/{party['party_id']} as {party['role']}  {name}".rstrip())
    _say("")
    with contextlib.suppress(ValueError):
        env_file = env_file.relative_to(Path.cwd())
    _say("Registration token (token A) for a partner; give it to them with the versions URL:")
    _say(f"  source {env_file}   # or these exports:")
    for line in export_lines(config, shared_env):
        _say(f"  {line}")
    _say(f"  {INVITE_COMMAND}")
    _say("")


def _serve(
    config: Config,
    dispatcher: Dispatcher,
    shared_env: Mapping[str, str],
    holder: dict[str, Any],
    stop: threading.Event,
) -> int:
    import uvicorn

    uv_config = uvicorn.Config(
        dispatcher,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=False,  # its lines show paths, which carry token uids: our "request" line replaces them
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(uv_config)
    holder["uvicorn"] = server
    if stop.is_set():
        return 0
    _banner(config, shared_env)

    async def run() -> bool:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            _say(f"READY {config.versions_url}")
        await task
        return server.started

    try:
        started = asyncio.run(run())
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return int(exc.code or 1)
    if not started and not stop.is_set():
        return 1
    _say(f"stopped {config.stack_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
