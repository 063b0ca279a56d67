"""template.yaml is the single source of the stack: these checks keep code and template in step.

Least privilege is checked against the code itself: :func:`code_calls` reads the Python sources
(AST, no import) from a function's ``app.py`` through ``shared/`` and collects every AWS call the
function can reach: DynamoDB operations (``DynamoStore`` methods reached through ``store.<method>``)
and the indexes it queries, SQS, EventBridge, S3, Secrets Manager and KMS calls. Each function's
role must grant exactly those DynamoDB actions and indexes, and every other action it reaches. The
analysis over-approximates (a referenced class counts with all its methods); a sample-event run on
moto (:func:`test_sample_events_call_only_what_the_analysis_and_the_role_allow`) checks that
what the code really calls is inside it.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib.util
import json
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from shared.local.template import load_template
from shared.modules import MODULES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
OUTPUTS = TEMPLATE["Outputs"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
API_FUNCTIONS = {
    k for k, v in FUNCTIONS.items() if any(e["Type"] == "Api" for e in v["Properties"]["Events"].values())
}
TOPIC = {"Ref": "AlarmTopic"}
KEY_ARN = {"Fn::GetAtt": ["OcpiKey", "Arn"]}
TABLE_ARN = {"Fn::GetAtt": ["OcpiTable", "Arn"]}
PURPOSE = "ocpi-partner-token"  # shared/secrets.py PURPOSE: the encryption context every grant requires
# What Lambda's SQS event source mapping needs on the function's role to poll its queue.
POLLER_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _dir(function_id: str) -> str:
    return Path(FUNCTIONS[function_id]["Properties"]["CodeUri"]).name


def _role(function_id: str) -> tuple[str, dict]:
    role = FUNCTIONS[function_id]["Properties"]["Role"]
    assert isinstance(role, dict) and "Fn::GetAtt" in role, f"{function_id}: Role must be !GetAtt <Role>.Arn"
    logical_id, attribute = role["Fn::GetAtt"]
    assert attribute == "Arn" and RESOURCES[logical_id]["Type"] == "AWS::IAM::Role", function_id
    return logical_id, RESOURCES[logical_id]


def _statements(function_id: str) -> list[dict]:
    _, role = _role(function_id)
    return [st for policy in role["Properties"]["Policies"] for st in policy["PolicyDocument"]["Statement"]]


def _granted(function_id: str) -> dict[str, list]:
    """Action -> the resources it is allowed on (template expressions), over the role's statements."""
    out: dict[str, list] = defaultdict(list)
    for st in _statements(function_id):
        assert st["Effect"] == "Allow"
        for action in _list(st["Action"]):
            out[action] += _list(st["Resource"])
    return out


def _table_indexes() -> set[str]:
    return {g["IndexName"] for g in RESOURCES["OcpiTable"]["Properties"]["GlobalSecondaryIndexes"]}


def _index_arn(name: str) -> dict:
    return {"Fn::Sub": f"${{OcpiTable.Arn}}/index/{name}"}


# ============================================================ what the code calls (static analysis)
_SKIP = ("shared/local/", "shared/admin/", "shared/store/memory.py")  # not shipped / not used by functions
_STORE = ("shared.store.dynamo", "DynamoStore")
_DYNAMO_ACTIONS = {
    "get_item": "GetItem",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "query": "Query",
    "scan": "Scan",
    "batch_get_item": "BatchGetItem",
    "batch_write_item": "BatchWriteItem",
    "transact_get_items": "GetItem",
}
# TransactWriteItems is authorized per item: the IAM action of each item kind the call builds.
_TRANSACT_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_INDEX_BY_CALLER = {(_STORE[0], f"{_STORE[1]}.{m}") for m in ("query_index", "query_range")}
_OTHER_ACTIONS = {
    "send_message": "sqs:SendMessage",
    "send_message_batch": "sqs:SendMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "put_object": "s3:PutObject",
    "get_object": "s3:GetObject",
    "put_events": "events:PutEvents",
    "get_secret_value": "secretsmanager:GetSecretValue",
    "encrypt": "kms:Encrypt",
    "decrypt": "kms:Decrypt",
    "generate_data_key": "kms:GenerateDataKey",
}


@dataclass
class _Module:
    name: str
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted target
    defs: dict[str, ast.AST] = field(default_factory=dict)  # "func", "Class", "Class.method"
    methods: dict[str, list[str]] = field(default_factory=dict)
    consts: dict[str, str] = field(default_factory=dict)  # module-level NAME = "string"


@cache
def _modules() -> dict[str, _Module]:
    out: dict[str, _Module] = {}
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("functions/*/app.py")]):
        rel = path.relative_to(ROOT)
        if str(rel).startswith(_SKIP):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mod = _Module(".".join(parts), ast.parse(path.read_text(encoding="utf-8")))
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    mod.imports[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    mod.imports[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in mod.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                mod.defs[node.name] = node
            elif isinstance(node, ast.ClassDef):
                mod.defs[node.name] = node
                mod.methods[node.name] = []
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                        mod.defs[f"{node.name}.{sub.name}"] = sub
                        mod.methods[node.name].append(sub.name)
            elif isinstance(node, ast.Assign) and isinstance(getattr(node.value, "value", None), str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        mod.consts[target.id] = node.value.value
        out[mod.name] = mod
    return out


Node = tuple[str, str | None]  # (module, qualified def name | None = the module's top-level code)


def _resolve_dotted(dotted: str) -> Node | None:
    mods = _modules()
    if dotted in mods:
        return (dotted, None)
    module, _, attr = dotted.rpartition(".")
    return (module, attr) if module in mods else None


def _target(mod: _Module, expr: ast.AST) -> Node | None:
    if isinstance(expr, ast.Name):
        if expr.id in mod.defs:
            return (mod.name, expr.id)
        return _resolve_dotted(mod.imports[expr.id]) if expr.id in mod.imports else None
    if isinstance(expr, ast.Attribute):
        base = _target(mod, expr.value)
        if base and base[1] is None:
            return _resolve_dotted(f"{base[0]}.{expr.attr}") or (base[0], expr.attr)
    return None


def _const(mod: _Module, expr: ast.AST) -> str | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    target = _target(mod, expr)
    return _modules()[target[0]].consts.get(target[1]) if target and target[1] else None


def _is_store(expr: ast.AST) -> bool:
    """How the code names the store everywhere: ``store``, ``self.store``, ``batch.store``."""
    return (isinstance(expr, ast.Name) and expr.id == "store") or (
        isinstance(expr, ast.Attribute) and expr.attr in ("store", "_store")
    )


def _body(mod: _Module, qual: str | None) -> tuple[list[ast.AST], set[str]]:
    """The nodes that run for a def (or the module's top level) and its local names."""
    if qual is not None:
        node = mod.defs[qual]
        if isinstance(node, ast.ClassDef):
            return [*node.bases, *node.decorator_list], set()
        local = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del):
                local.add(n.id)
            elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ExceptHandler) and n is not node:
                local.add(n.name or "")
        return [node], local
    nodes: list[ast.AST] = []
    for node in mod.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nodes += [*node.decorator_list, *node.args.defaults]
        elif isinstance(node, ast.ClassDef):
            nodes += [*node.bases, *node.decorator_list]
            for sub in node.body:
                is_def = isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef)
                nodes += sub.decorator_list if is_def else [sub]
        else:
            nodes.append(node)
    return nodes, set()


@dataclass
class CodeCalls:
    actions: set[str] = field(default_factory=set)  # IAM actions, e.g. "dynamodb:Query", "sqs:SendMessage"
    indexes: set[str] = field(default_factory=set)  # GSIs it queries; "*" = a name only known at run time
    reached: set[Node] = field(default_factory=set)


@cache
def _step(key: Node) -> tuple[tuple[Node, ...], frozenset[str], frozenset[str]]:
    """One def (or a module's top level): what it refers to, the AWS actions and indexes it calls."""
    mods = _modules()
    mname, qual = key
    mod = mods[mname]
    todo: list[Node] = [(mname, None)]  # using a def means its module was imported
    actions: set[str] = set()
    indexes: set[str] = set()
    node = mod.defs.get(qual) if qual else None
    if isinstance(node, ast.ClassDef) and key != _STORE:  # a class in use: all of its methods
        todo += [(mname, f"{qual}.{m}") for m in mod.methods[qual]]
    cls = qual.split(".")[0] if qual and "." in qual else None
    roots, local = _body(mod, qual)
    for root in roots:
        for n in ast.walk(root):
            if isinstance(n, ast.Name) and n.id in local:
                continue
            if isinstance(n, ast.Name | ast.Attribute) and (target := _target(mod, n)):
                todo.append(target)
            if isinstance(n, ast.Import | ast.ImportFrom):  # an import runs module code, calls no def
                for a in n.names:
                    dotted = a.name if isinstance(n, ast.Import) else f"{n.module}.{a.name}"
                    if target := _resolve_dotted(dotted):
                        todo.append((target[0], None))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in mods:
                todo += [(n.value, None), *((n.value, q) for q in mods[n.value].defs)]  # importlib
            if isinstance(n, ast.Attribute):
                if _is_store(n.value):
                    todo.append((_STORE[0], f"{_STORE[1]}.{n.attr}"))
                if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls") and cls:
                    todo.append((mname, f"{cls}.{n.attr}"))
            # An index a Query names: a constant, or (query_index, query_range) a name passed in,
            # which their call sites below resolve; a name from anywhere else: any index.
            named: list[ast.AST] = []
            if isinstance(n, ast.Dict):
                named = [v for k, v in zip(n.keys, n.values, strict=True) if _const(mod, k) == "IndexName"]
            elif isinstance(n, ast.Call):
                named = [kw.value for kw in n.keywords if kw.arg == "IndexName"]
            for value in named:
                if (index := _const(mod, value)) or key not in _INDEX_BY_CALLER:
                    indexes.add(index or "*")
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
                continue
            attr = n.func.attr
            if attr in ("query_index", "query_range") and _is_store(n.func.value) and n.args:
                indexes.add(_const(mod, n.args[0]) or "*")
            if mname == _STORE[0]:
                op = _const(mod, n.args[0]) if attr == "_call" and n.args else attr
                if op in _DYNAMO_ACTIONS:
                    actions.add(f"dynamodb:{_DYNAMO_ACTIONS[op]}")
                elif op == "transact_write_items":  # authorized per item kind it builds
                    kinds = {
                        _const(mod, k) for d in ast.walk(root) if isinstance(d, ast.Dict) for k in d.keys
                    }
                    actions |= {f"dynamodb:{_TRANSACT_ITEMS[k]}" for k in kinds if k in _TRANSACT_ITEMS}
            elif attr in _OTHER_ACTIONS:
                actions.add(_OTHER_ACTIONS[attr])
    return tuple(todo), frozenset(actions), frozenset(indexes)


@cache
def code_calls(function_dir: str) -> CodeCalls:
    """Every AWS call reachable from ``functions/<function_dir>/app.py``: its top level and every def
    (FastAPI routes and handlers are reached through decorators and Lambda), then by name."""
    mods = _modules()
    entry = f"functions.{function_dir}.app"
    out = CodeCalls()
    todo: list[Node] = [(entry, None), *((entry, q) for q in mods[entry].defs)]
    while todo:
        key = todo.pop()
        mname, qual = key
        if key in out.reached or mname not in mods or (qual is not None and qual not in mods[mname].defs):
            continue
        out.reached.add(key)
        targets, actions, indexes = _step(key)
        todo += targets
        out.actions |= actions
        out.indexes |= indexes
    if "*" in out.indexes:
        out.indexes = (out.indexes - {"*"}) | _table_indexes()
    out.indexes.discard("")
    return out


def test_code_analysis_finds_the_known_calls() -> None:
    """The analysis itself: calls we know each of these functions makes are found, and a function
    that only reads is not credited with writes."""
    versions = code_calls("versions")
    assert {"dynamodb:GetItem", "secretsmanager:GetSecretValue"} <= versions.actions
    assert not versions.actions & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    assert {"dynamodb:PutItem"} <= code_calls("credentials").actions  # TransactWriteItems of Put items
    assert "GSI2" in code_calls("locations").indexes  # the geo index (/ext/locations/nearby)
    assert code_calls("billing_worker").indexes == _table_indexes()  # query_range(name, ...)
    assert {"sqs:SendMessage", "sqs:ChangeMessageVisibility"} <= code_calls("push_delivery").actions
    assert "s3:PutObject" in code_calls("billing_worker").actions


# ============================================================ least privilege
def test_every_function_has_its_own_role_without_managed_policies() -> None:
    roles = set()
    for function_id in FUNCTIONS:
        props = FUNCTIONS[function_id]["Properties"]
        assert "Policies" not in props, f"{function_id}: permissions belong to its role"
        logical_id, role = _role(function_id)
        roles.add(logical_id)
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert (
            trust["Principal"] == {"Service": "lambda.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
        )
        # SAM's generated roles would add AWSLambdaBasicExecutionRole (logs on every log group) and,
        # for SQS events, AWSLambdaSQSQueueExecutionRole (every queue): our roles carry neither.
        assert "ManagedPolicyArns" not in role["Properties"], function_id
    assert len(roles) == len(FUNCTIONS), "one role per function"


def test_no_sam_policy_templates_or_full_access_policies() -> None:
    text = (ROOT / "template.yaml").read_text()
    assert not re.search(r"\b\w+(CrudPolicy|ReadPolicy|WritePolicy|PollerPolicy|FullAccess)\b", text)
    managed = {
        lid: r["Properties"]["ManagedPolicyArns"]
        for lid, r in RESOURCES.items()
        if r["Type"] == "AWS::IAM::Role" and "ManagedPolicyArns" in r["Properties"]
    }
    # The only managed policy: API Gateway's account-wide CloudWatch role (its purpose, and the AWS
    # policy made for it; API Gateway writes execution logs to log groups it names itself).
    assert list(managed) == ["ApiGatewayCloudWatchRole"]
    (arn,) = managed["ApiGatewayCloudWatchRole"]
    assert arn["Fn::Sub"].endswith(":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs")


def test_no_role_statement_has_a_wildcard_action_or_resource() -> None:
    for lid, resource in RESOURCES.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                actions = _list(st["Action"])
                assert not any(a == "*" or a.endswith(":*") for a in actions), (lid, actions)
                # No action our functions use needs Resource "*" (PutMetricData would; our metrics
                # are EMF log lines, no API call).
                assert "*" not in _list(st["Resource"]), (lid, actions)


def test_every_role_writes_only_its_own_log_group() -> None:
    for function_id in FUNCTIONS:
        props = FUNCTIONS[function_id]["Properties"]
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
        assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        granted = _granted(function_id)
        for action in LOG_ACTIONS:
            assert granted[action] == [{"Fn::GetAtt": [group, "Arn"]}], (function_id, action)
        assert not [a for a in granted if a.startswith("logs:") and a not in LOG_ACTIONS], function_id
    assert TEMPLATE["Globals"]["Function"]["LoggingConfig"]["LogFormat"] == "JSON"


def test_dynamodb_grants_are_exactly_what_the_code_calls() -> None:
    """Table actions and queried indexes per function equal what its code path reaches: a missing
    grant fails in production (AccessDenied), an extra one is privilege nobody needs."""
    for function_id in FUNCTIONS:
        calls = code_calls(_dir(function_id))
        granted = _granted(function_id)
        actions = {a for a in granted if a.startswith("dynamodb:")}
        assert actions == {a for a in calls.actions if a.startswith("dynamodb:")}, function_id
        for action in actions:
            assert TABLE_ARN in granted[action] or action == "dynamodb:Query", (function_id, action)
            others = [r for r in granted[action] if r != TABLE_ARN]
            assert action == "dynamodb:Query" or not others, (function_id, action, others)
        index_grants = [r for r in granted.get("dynamodb:Query", []) if r != TABLE_ARN]
        assert sorted(map(json.dumps, index_grants)) == sorted(
            json.dumps(_index_arn(i)) for i in calls.indexes
        ), function_id
        if "dynamodb:Query" in actions:
            assert TABLE_ARN in granted["dynamodb:Query"], function_id


def test_other_grants_are_what_the_code_calls_on_the_stack_resources() -> None:
    bus = {"Fn::GetAtt": ["OcpiBus", "Arn"]}
    secret = {"Ref": "TokenHashKeySecret"}
    for function_id in FUNCTIONS:
        calls = {a for a in code_calls(_dir(function_id)).actions if not a.startswith("dynamodb:")}
        granted = _granted(function_id)
        sqs_events = [
            e for e in FUNCTIONS[function_id]["Properties"]["Events"].values() if e["Type"] == "SQS"
        ]
        expected = calls | LOG_ACTIONS | (POLLER_ACTIONS if sqs_events else set())
        assert {a for a in granted if not a.startswith("dynamodb:")} == expected, function_id
        for action, resources in granted.items():
            if action == "events:PutEvents":
                assert resources == [bus], function_id
            elif action == "secretsmanager:GetSecretValue":
                assert resources == [secret], function_id
            elif action.startswith("kms:"):
                assert resources == [KEY_ARN], function_id
            elif action.startswith("s3:"):
                assert resources == [{"Fn::Sub": "${StatementsBucket.Arn}/*"}], function_id
            elif action.startswith("sqs:"):
                assert all(r["Fn::GetAtt"][1] == "Arn" for r in resources), function_id
        for event in sqs_events:  # polls its own queue, nothing else
            for action in POLLER_ACTIONS:
                assert granted[action] == [event["Properties"]["Queue"]], (function_id, action)


def test_every_kms_grant_is_conditioned_on_the_partner_token_purpose() -> None:
    for function_id in FUNCTIONS:
        for st in _statements(function_id):
            if any(a.startswith("kms:") for a in _list(st["Action"])):
                assert set(_list(st["Action"])) <= {"kms:Encrypt", "kms:Decrypt"}, function_id
                assert st["Resource"] == KEY_ARN, function_id
                assert st["Condition"] == {"StringEquals": {"kms:EncryptionContext:purpose": PURPOSE}}
    # Registration and a partner's PUT seal the token it gives us; nothing else encrypts.
    assert [f for f in FUNCTIONS if "kms:Encrypt" in _granted(f)] == ["CredentialsFunction"]
    source = (ROOT / "shared" / "secrets.py").read_text()
    assert f'PURPOSE = "{PURPOSE}"' in source


def test_kms_key_rotates_is_retained_and_serves_dynamodb_of_this_account() -> None:
    key = RESOURCES["OcpiKey"]
    props = key["Properties"]
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"  # the retained table needs it
    assert props["EnableKeyRotation"] is True
    by_sid = {st["Sid"]: st for st in props["KeyPolicy"]["Statement"]}
    admin = by_sid["AccountAdministers"]
    assert admin["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    # Principal "*" limited by conditions to callers of this account going through DynamoDB.
    dynamo = by_sid["DynamoDBForAccountPrincipals"]
    assert dynamo["Condition"]["StringEquals"] == {
        "kms:CallerAccount": {"Ref": "AWS::AccountId"},
        "kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"},
    }
    assert "kms:Decrypt" in dynamo["Action"] and "kms:CreateGrant" in dynamo["Action"]
    alias = RESOURCES["OcpiKeyAlias"]["Properties"]
    assert alias == {
        "AliasName": {"Fn::Sub": "alias/${AWS::StackName}-ocpi"},
        "TargetKeyId": {"Ref": "OcpiKey"},
    }
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["OCPI_KMS_KEY_ID"] == {"Ref": "OcpiKey"}


# ============================================================ sample events against moto
class _Context:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30000


def _iam_actions(service: str, operation: str, params: dict) -> set[str]:
    if service == "dynamodb" and operation == "TransactWriteItems":
        return {f"dynamodb:{_TRANSACT_ITEMS[k]}" for item in params["TransactItems"] for k in item}
    if service == "dynamodb" and operation == "TransactGetItems":
        return {"dynamodb:GetItem"}
    if service == "sqs" and operation.endswith("Batch"):
        return {f"sqs:{operation.removesuffix('Batch')}"}
    return {f"{service}:{operation}"}


def test_sample_events_call_only_what_the_analysis_and_the_role_allow(monkeypatch) -> None:
    """Every function's events/<dir>/*.json, invoked in-process on moto (the template provisioned)
    with that function's template environment: each AWS call made (recorded by a botocore hook) is
    one the static analysis found and the function's role grants (on the queried index too)."""
    import boto3
    from moto import mock_aws

    from shared import auth, config, events, secrets, store
    from shared.local.template import Resolver, function_specs, provision
    from shared.services import push
    from shared.store.base import TokenRecord

    current: dict[str, str | None] = {"fn": None}
    recorded: dict[str, set[str]] = defaultdict(set)
    queried: dict[str, set[str]] = defaultdict(set)

    def hook(params: dict, model: Any, **_: Any) -> None:
        if current["fn"] is None:
            return
        service = model.service_model.signing_name
        recorded[current["fn"]] |= _iam_actions(service, model.name, params)
        if service == "dynamodb" and model.name == "Query" and params.get("IndexName"):
            queried[current["fn"]].add(params["IndexName"])

    def reset_clients() -> None:
        config.reset_settings()
        store.reset_store()
        events.reset()
        push.reset()
        secrets.reset()
        auth.clear_cache()  # and the cached HMAC key

    with mock_aws():
        resolver = Resolver(TEMPLATE, "grants", "eu-west-1", "123456789012", {})
        provision(TEMPLATE, resolver)
        specs = {s.logical_id: s for s in function_specs(TEMPLATE, resolver)}
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        boto3.setup_default_session(region_name="eu-west-1")
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", hook)
        monkeypatch.delenv("OCPI_TOKEN_KEY")  # hash with the template's secret, as deployed
        for key, value in specs["VersionsFunction"].environment.items():
            monkeypatch.setenv(key, value)
        reset_clients()
        db = store.get_store()
        endpoints = [
            {"identifier": m, "role": r, "url": f"http://127.0.0.1:9/ocpi/2.2.1/{m}"}
            for m in ("locations", "tariffs", "tokens", "sessions", "cdrs", "commands")
            for r in ("SENDER", "RECEIVER")
        ]
        for partner_id, roles in (
            ("p1", [("CPO", "NL", "TNM"), ("EMSP", "NL", "TNM"), ("HUB", "NL", "HUB")]),
            ("9b2f6a4e-0c1d-4e2f-8a3b-4c5d6e7f8091", [("EMSP", "DE", "MSP")]),
        ):
            db.put_partner(
                {
                    "partner_id": partner_id,
                    "status": "REGISTERED",
                    "version": "2.2.1",
                    "roles": [{"role": r, "country_code": c, "party_id": p} for r, c, p in roles],
                    "endpoints": endpoints,
                    "outbound_token": secrets.seal(partner_id, f"token-for-{partner_id}"),
                }
            )
        db.put_token(TokenRecord(auth.hash_token("event-sample-token"), "p1", "C"))

        for function_id, spec in specs.items():
            for key, value in spec.environment.items():
                monkeypatch.setenv(key, value)
            reset_clients()
            path = ROOT / spec.code_uri / "app.py"
            module_spec = importlib.util.spec_from_file_location(f"grants_{_dir(function_id)}", path)
            module = importlib.util.module_from_spec(module_spec)
            current["fn"] = function_id
            try:
                module_spec.loader.exec_module(module)
                for event_file in sorted((ROOT / "events" / _dir(function_id)).glob("*.json")):
                    event = json.loads(event_file.read_text())
                    with contextlib.suppress(Exception):  # what it called before failing is recorded
                        module.handler(copy.deepcopy(event), _Context())
            finally:
                current["fn"] = None
        reset_clients()

    assert recorded["LocationsFunction"] and recorded["BillingWorkerFunction"], "the hook saw the calls"
    for function_id, actions in recorded.items():
        calls = code_calls(_dir(function_id))
        assert actions <= calls.actions, (function_id, actions - calls.actions)
        granted = set(_granted(function_id))
        assert actions <= granted, (function_id, actions - granted)
        assert queried[function_id] <= calls.indexes, (function_id, queried[function_id])


# ============================================================ functions
def test_every_function_has_code_handler_and_sample_events() -> None:
    assert FUNCTIONS
    for name, fn in FUNCTIONS.items():
        code = ROOT / fn["Properties"]["CodeUri"]
        assert (code / "app.py").is_file(), name
        assert fn["Properties"]["Handler"] == "app.handler", name
        module = fn["Properties"]["Environment"]["Variables"]["OCPI_FUNCTION_MODULE"]
        events = ROOT / "events" / code.name
        assert events.is_dir() and list(events.glob("*.json")), f"no sample events for {name} ({module})"


def test_ocpi_modules_variable_lists_exactly_the_deployed_module_functions() -> None:
    listed = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["OCPI_MODULES"].split(",")
    deployed = {
        fn["Properties"]["Environment"]["Variables"]["OCPI_FUNCTION_MODULE"] for fn in FUNCTIONS.values()
    } - {"versions"}
    assert set(listed) == {m for m in deployed if m in MODULES}


def test_runtime_and_architecture() -> None:
    glob = TEMPLATE["Globals"]["Function"]
    assert glob["Runtime"] == "python3.13" and glob["Architectures"] == ["arm64"]


def test_snapstart_on_the_api_functions_behind_a_parameter() -> None:
    assert PARAMETERS["EnableSnapStart"]["AllowedValues"] == ["true", "false"]
    for function_id, fn in FUNCTIONS.items():
        props = fn["Properties"]
        if function_id in API_FUNCTIONS:  # Api events go to the alias (SAM wires them to AutoPublishAlias)
            assert props["AutoPublishAlias"] == "live", function_id
            assert props["SnapStart"] == {
                "ApplyOn": {"Fn::If": ["UseSnapStart", "PublishedVersions", "None"]}
            }, function_id
        else:
            assert "SnapStart" not in props, function_id


def _parameters_in(value: Any) -> set[str]:
    text = json.dumps(value)
    refs = set(re.findall(r'"Ref": "(\w+)"', text)) | set(re.findall(r"\$\{(\w+)\}", text))
    return refs & set(PARAMETERS)


def test_a_parameter_change_publishes_new_api_function_versions() -> None:
    """API Gateway invokes the published version behind the alias; SAM publishes a new one only when
    a property's text changes, not a parameter's value. Every parameter the API functions read is
    therefore in VersionDescription, OwnParties (too long) through ConfigRevision."""
    glob = TEMPLATE["Globals"]["Function"]
    read = _parameters_in(glob["Environment"]) | _parameters_in(glob["LoggingConfig"])
    billing = {p for p in read if p.startswith("Billing")}
    for function_id in API_FUNCTIONS:  # the billing settings are for the billing worker and ocpi-admin
        assert not any(m == "shared.services.billing" for m, _ in code_calls(_dir(function_id)).reached)
        props = FUNCTIONS[function_id]["Properties"]
        assert props["AutoPublishAliasAllProperties"] is True and props["VersionDeletionPolicy"] == "Delete"
        described = _parameters_in(props["VersionDescription"])
        assert read - billing - {"OwnParties"} | {"EnableSnapStart", "ConfigRevision"} == described, (
            function_id
        )
    # The worst case fits Lambda's 256 characters for a version description.
    longest = sum(
        PARAMETERS[p].get("MaxLength")
        or max(len(str(v)) for v in PARAMETERS[p].get("AllowedValues") or [""])
        or len(str(PARAMETERS[p].get("MaxValue", PARAMETERS[p]["Default"])))
        for p in described
    )
    assert longest + len(described) <= 256, longest


def test_queue_consumers_are_capped_without_reserving_concurrency() -> None:
    for function_id, fn in FUNCTIONS.items():
        assert "ReservedConcurrentExecutions" not in fn["Properties"], function_id
        for event in fn["Properties"]["Events"].values():
            if event["Type"] == "SQS":
                cap = event["Properties"]["ScalingConfig"]["MaximumConcurrency"]
                assert PARAMETERS[cap["Ref"]]["MinValue"] >= 2, function_id  # SQS's own minimum


def test_max_body_bytes_parameter_feeds_the_app_limit() -> None:
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["OCPI_MAX_BODY_BYTES"] == {"Ref": "MaxBodyBytes"}
    param = PARAMETERS["MaxBodyBytes"]
    assert param["Default"] == 1024 * 1024 and param["MaxValue"] <= 10 * 1024 * 1024  # API Gateway's cap
    assert "OCPI_MAX_BODY_BYTES" in (ROOT / "shared" / "config.py").read_text()


# ============================================================ API Gateway
def test_api_stage_logs_throttles_and_records_metrics() -> None:
    props = RESOURCES["OcpiApi"]["Properties"]
    log = props["AccessLogSetting"]
    assert log["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(log["Format"])
    for name in ("requestId", "ip", "httpMethod", "resourcePath", "status", "protocol", "responseLength"):
        assert name in fields
    assert fields["resourcePath"] == "$context.resourcePath"
    assert "$context.path" not in log["Format"]  # paths carry token uids and session ids
    (setting,) = props["MethodSettings"]
    assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert setting["LoggingLevel"] == "ERROR" and setting["DataTraceEnabled"] is False
    assert setting["MetricsEnabled"] == {"Fn::If": ["UseApiDetailedMetrics", True, False]}
    group = RESOURCES["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # The account-wide CloudWatch role is optional (one per region) and outlives the stack.
    for lid in ("ApiGatewayCloudWatchRole", "ApiGatewayAccount"):
        assert RESOURCES[lid]["Condition"] == "CreateApiGatewayAccount"
    assert RESOURCES["ApiGatewayCloudWatchRole"]["DeletionPolicy"] == "Retain"
    assert RESOURCES["OcpiApi"]["DependsOn"] == "ApiGatewayAccountReady"


def test_custom_domain_is_optional_and_becomes_the_public_url() -> None:
    assert PARAMETERS["DomainName"]["Default"] == "" and PARAMETERS["CertificateArn"]["Default"] == ""
    for lid in ("OcpiDomain", "OcpiBasePathMapping"):
        assert RESOURCES[lid]["Condition"] == "HasCustomDomain"
    domain = RESOURCES["OcpiDomain"]["Properties"]
    assert domain["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert domain["RegionalCertificateArn"] == {"Ref": "CertificateArn"}
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["OCPI_PUBLIC_URL"] == {
        "Fn::If": [
            "HasPublicUrl",
            {"Ref": "PublicUrl"},
            {"Fn::If": ["HasCustomDomain", {"Fn::Sub": "https://${DomainName}"}, {"Ref": "AWS::NoValue"}]},
        ]
    }
    assert "HasCustomDomain" in json.dumps(OUTPUTS["VersionsUrl"]["Value"])


# ============================================================ alarms and dashboard
def _alarms() -> dict[str, dict]:
    return {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_alarm_notifies_the_alarm_topic() -> None:
    assert _alarms()
    for lid, props in _alarms().items():
        assert props["AlarmActions"] == [TOPIC] and props["OKActions"] == [TOPIC], lid
    assert RESOURCES["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"
    assert "Condition" not in RESOURCES["AlarmTopic"]  # the topic exists with or without an email


def test_every_dead_letter_queue_has_an_alarm() -> None:
    dlqs: set[str] = set()
    for resource in RESOURCES.values():
        redrive = (resource.get("Properties") or {}).get("RedrivePolicy")
        if resource["Type"] == "AWS::SQS::Queue" and redrive:
            dlqs.add(redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])
    text = json.dumps(RESOURCES)
    for match in re.finditer(r'"DeadLetterConfig": \{"Arn": \{"Fn::GetAtt": \["(\w+)", "Arn"\]\}', text):
        dlqs.add(match.group(1))
    assert len(dlqs) >= 4
    watched = {
        props["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for props in _alarms().values()
        if props.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and props["Threshold"] == 0
        and props["ComparisonOperator"] == "GreaterThanThreshold"
    }
    assert dlqs <= watched, dlqs - watched


def test_every_function_has_an_errors_and_throttles_alarm() -> None:
    covered = set()
    for props in _alarms().values():
        metrics = {m["Id"]: m for m in props.get("Metrics", [])}
        stats = [m["MetricStat"]["Metric"] for m in metrics.values() if "MetricStat" in m]
        if {s["MetricName"] for s in stats} == {"Errors", "Throttles"}:
            (fn,) = {s["Dimensions"][0]["Value"]["Ref"] for s in stats}
            assert "FILL(errors, 0) + FILL(throttles, 0)" in [m.get("Expression") for m in metrics.values()]
            assert props["Threshold"] == 0 and props["TreatMissingData"] == "notBreaching"
            covered.add(fn)
    assert covered == set(FUNCTIONS)


def test_api_5xx_rate_alarm_needs_a_minimum_of_requests() -> None:
    props = _alarms()["Api5xxRateAlarm"]
    metrics = {m["Id"]: m for m in props["Metrics"]}
    assert metrics["errors"]["MetricStat"]["Metric"]["MetricName"] == "5XXError"
    assert metrics["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    assert metrics["errors"]["MetricStat"]["Period"] == 300
    expression = metrics["rate"]["Expression"]["Fn::Sub"]
    assert "${Api5xxAlarmMinRequests}" in expression and "errors / requests" in expression
    assert props["Threshold"] == {"Ref": "Api5xxAlarmPercent"}


def test_billing_failures_alarm_on_the_custom_metric() -> None:
    props = _alarms()["BillingDeadLetteredAlarm"]
    assert (props["Namespace"], props["MetricName"]) == ("OCPI", "BillingDeadLettered")
    assert props["Dimensions"] == [{"Name": "service", "Value": "ocpi"}]
    source = (ROOT / "functions" / "billing_worker" / "app.py").read_text()
    assert '"BillingDeadLettered"' in source


def _dashboard() -> dict:
    body, variables = RESOURCES["OcpiDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in set(re.findall(r"\$\{([^}!]+)\}", body)):
        root = name.split(".")[0]
        assert root.startswith("AWS::") or root in RESOURCES or root in PARAMETERS or root in variables, name
    return json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: m.group(1), body))


def test_dashboard_shows_api_functions_queues_custom_metrics_and_request_logs() -> None:
    dashboard = _dashboard()
    text = json.dumps(dashboard)
    for function_id in FUNCTIONS:
        for metric in ("Errors", "Throttles", "Duration"):
            assert f'"AWS/Lambda", "{metric}", "FunctionName", "{function_id}"' in text, (function_id, metric)
    for lid, resource in RESOURCES.items():
        if resource["Type"] == "AWS::SQS::Queue":
            assert f'"QueueName", "{lid}.QueueName"' in text, lid
    for metric in ("5XXError", "4XXError", "Latency", "ApproximateAgeOfOldestMessage"):
        assert metric in text
    assert "Requests" in text and "ocpi_status" in text and "PushDelivered" in text
    (logs,) = [w for w in dashboard["widgets"] if w["type"] == "log"]
    query = logs["properties"]["query"]
    for function_id in API_FUNCTIONS:
        group = FUNCTIONS[function_id]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert f"SOURCE '{group}'" in query, function_id
    assert "stats count(*)" in query and "by partner, ocpi_module, ocpi_status" in query


# ============================================================ data
def test_table_is_on_demand_kms_encrypted_and_recoverable() -> None:
    props = RESOURCES["OcpiTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "OcpiKey"},
    }
    assert props["DeletionProtectionEnabled"] is True


def test_table_has_the_billing_index() -> None:
    gsis = {g["IndexName"]: g for g in RESOURCES["OcpiTable"]["Properties"]["GlobalSecondaryIndexes"]}
    assert [k["AttributeName"] for k in gsis["GSI3"]["KeySchema"]] == ["GSI3PK", "GSI3SK"]


# ------------------------------------------------------------------ billing runs
def test_billing_schedules_daily_and_monthly_in_their_time_zone() -> None:
    for logical_id, cadence, param in (
        ("BillingDailyRun", "daily", "BillingDailySchedule"),
        ("BillingMonthlyRun", "monthly", "BillingMonthlySchedule"),
    ):
        props = RESOURCES[logical_id]["Properties"]
        assert RESOURCES[logical_id]["Type"] == "AWS::Scheduler::Schedule"
        assert props["ScheduleExpression"] == {"Ref": param}
        assert PARAMETERS[param]["Default"].startswith("cron(")
        assert props["ScheduleExpressionTimezone"] == {"Ref": "BillingTimezone"}
        target = props["Target"]
        assert target["Arn"] == {"Fn::GetAtt": ["ClearingQueue", "Arn"]}
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ClearingDeadLetterQueue", "Arn"]}
        assert (
            json.loads(target["Input"].replace("<aws.scheduler.scheduled-time>", "t"))["cadence"] == cadence
            and "<aws.scheduler.scheduled-time>" in target["Input"]
        )
    for name in ("BillingTimezone", "BillingGraceHours", "BillingSliceHours", "BillingSliceMaxCdrs"):
        assert name in PARAMETERS
    role = RESOURCES["BillingSchedulerRole"]["Properties"]
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sqs:SendMessage"


def test_statements_bucket_is_encrypted_versioned_private_and_tls_only() -> None:
    props = RESOURCES["StatementsBucket"]["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    (deny,) = RESOURCES["StatementsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"StatementsBucketName", "ClearingQueueUrl"} <= set(OUTPUTS)


def test_clearing_queue_has_a_dead_letter_queue_and_alarms() -> None:
    redrive = RESOURCES["ClearingQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ClearingDeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "BillingMaxAttempts"},
    }
    dlq_alarm = _alarms()["ClearingDeadLetterAlarm"]
    assert dlq_alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["ClearingDeadLetterQueue", "QueueName"]}
    assert dlq_alarm["Threshold"] == 0 and dlq_alarm["ComparisonOperator"] == "GreaterThanThreshold"
    errors = {m["Id"]: m for m in _alarms()["BillingWorkerErrorsAlarm"]["Metrics"]}
    assert errors["errors"]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "BillingWorkerFunction"}}
    ]


def test_billing_worker_is_a_batch_consumer() -> None:
    props = FUNCTIONS["BillingWorkerFunction"]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ClearingQueue", "Arn"]}
    assert props["Timeout"] <= 900
    source = (ROOT / props["CodeUri"] / "app.py").read_text()
    assert "BatchProcessor" in source and "import fastapi" not in source and "from fastapi" not in source


# ============================================================ deploying
def test_every_parameter_has_a_default_and_a_description() -> None:
    """`sam deploy --guided` proposes every default: accepting them all must give a working stack."""
    for name, param in PARAMETERS.items():
        assert "Default" in param, name
        assert param.get("Description"), name
    assert PARAMETERS["LogRetentionDays"]["Default"] == 90
    assert 90 in PARAMETERS["LogRetentionDays"]["AllowedValues"]


def test_outputs_name_the_variables_ocpi_admin_reads() -> None:
    described = {
        out["Description"].split(":", 1)[0]
        for out in OUTPUTS.values()
        if out["Description"].startswith("OCPI_")
    }
    required = {
        "OCPI_TABLE_NAME",
        "OCPI_EVENT_BUS_NAME",
        "OCPI_TOKEN_KEY_SECRET_ARN",
        "OCPI_KMS_KEY_ID",
        "OCPI_PUBLIC_URL",
        "OCPI_OWN_PARTIES",
        "OCPI_PUSH_QUEUE_URL",
        "OCPI_PUSH_DLQ_URL",
        "OCPI_BILLING_QUEUE_URL",
        "OCPI_BILLING_BUCKET",
    }
    assert required <= described, required - described
    cli = (ROOT / "shared" / "admin" / "cli.py").read_text()
    for name in described:  # each names a variable the functions get from the template
        assert name in TEMPLATE["Globals"]["Function"]["Environment"]["Variables"] or name in cli, name
    for name in ("ApiUrl", "VersionsUrl", "AlarmTopicArn", "DashboardUrl", "KmsKeyId", "TokenKeySecretArn"):
        assert name in OUTPUTS, name


def test_samconfig_lets_guided_deploy_ask_only_for_parameters() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
    assert deploy["resolve_s3"] is True and deploy["confirm_changeset"] is True
    assert deploy["stack_name"]
    assert config["default"]["global"]["parameters"]["stack_name"] == deploy["stack_name"]
