"""Read the SAM/CloudFormation template and evaluate it the way CloudFormation would, locally.

Pure module: needs PyYAML only (no boto3, moto or uvicorn), so tests and tools can import it cheaply.

- :func:`load_template` parses YAML with the CloudFormation short-form tags (``!Ref``, ``!Sub``,
  ``!GetAtt``, ...) turned into their long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``, ...).
- :class:`Resolver` evaluates intrinsic functions for one local "stack" (stack name, region, account,
  parameter overrides) and gives every resource a deterministic local physical name.
- :func:`function_specs` lists the ``AWS::Serverless::Function`` resources with what the local stack needs:
  code directory, handler, resolved environment, API routes, SQS sources, schedule events.
- :func:`route_match` / :func:`select_route` implement API Gateway REST path matching and precedence.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import yaml

__all__ = [
    "NO_VALUE",
    "ApiRoute",
    "FunctionSpec",
    "ResolveError",
    "Resolver",
    "SqsSource",
    "dependencies",
    "function_specs",
    "load_template",
    "parse_template",
    "provision",
    "route_match",
    "route_specificity",
    "select_route",
    "topological_order",
]


# ----------------------------------------------------------------------------------------------- loading

# Short-form tags whose long form is "Fn::<Name>" with the node's value as-is.
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


# libyaml's parser when PyYAML has it (several times faster on our ~3,000-line template); the
# constructors and resolvers stay PyYAML's safe ones.
_SafeBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_SafeBase):  # type: ignore[misc, valid-type]
    """SafeLoader with CloudFormation intrinsic tags and without YAML 1.1 timestamp magic."""


# CloudFormation keeps unquoted dates (e.g. AWSTemplateFormatVersion) as strings.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _fn_constructor(name: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {f"Fn::{name}": _construct_node(loader, node)}

    return construct


def _ref_constructor(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    return {"Ref": _construct_node(loader, node)}


def _condition_constructor(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    return {"Condition": _construct_node(loader, node)}


def _getatt_constructor(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        # "Resource.Attr" or "Resource.Attr.With.Dots": the logical id never contains a dot.
        logical_id, _, attribute = value.partition(".")
        value = [logical_id, attribute]
    return {"Fn::GetAtt": value}


for _name in _FN_TAGS:
    _CfnLoader.add_constructor(f"!{_name}", _fn_constructor(_name))
_CfnLoader.add_constructor("!Ref", _ref_constructor)
_CfnLoader.add_constructor("!Condition", _condition_constructor)
_CfnLoader.add_constructor("!GetAtt", _getatt_constructor)


def parse_template(text: str) -> dict[str, Any]:
    """Parse template text (YAML or JSON) into a dict with long-form intrinsics."""
    data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass  # nosec B506
    if not isinstance(data, dict):
        raise ValueError("a CloudFormation template must be a mapping at top level")
    return data


_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}


def load_template(path: str | Path) -> dict[str, Any]:
    """Load a SAM/CloudFormation template file; short-form intrinsics become long-form dicts.

    Parsed once per file version (path, mtime, size) per process; each caller gets its own deep copy,
    so tests and stacks that provision the template many times do not parse it many times."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    if key not in _PARSED:
        _PARSED[key] = parse_template(resolved.read_text(encoding="utf-8"))
    return copy.deepcopy(_PARSED[key])


# --------------------------------------------------------------------------------------------- resolving


class ResolveError(ValueError):
    """An intrinsic function could not be evaluated locally."""


class _NoValue:
    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


#: What ``Ref AWS::NoValue`` evaluates to inside the resolver; dropped from dicts and lists.
NO_VALUE: Any = _NoValue()

# Property holding an explicit physical name, per resource type.
_NAME_PROPERTIES: dict[str, str] = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::Scheduler::ScheduleGroup": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Lambda::LayerVersion": "LayerName",
}

# Length limits of generated names (AWS rejects longer ones).
_NAME_LIMITS: dict[str, int] = {
    "AWS::SQS::Queue": 80,
    "AWS::Events::Rule": 64,
    "AWS::Events::EventBus": 256,
    "AWS::Lambda::Function": 64,
    "AWS::Serverless::Function": 64,
    "AWS::IAM::Role": 64,
    "AWS::S3::Bucket": 63,
    "AWS::Scheduler::Schedule": 64,
    "AWS::Scheduler::ScheduleGroup": 64,
    "AWS::SNS::Topic": 256,
}

_PSEUDO_PARAMETERS = (
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
)

_T = TypeVar("_T")

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class Resolver:
    """Evaluates CloudFormation intrinsics of ``template`` for one local stack.

    ``parameter_overrides`` win over parameter defaults (like ``sam deploy --parameter-overrides``).
    :meth:`set_physical` lets the provisioner record values only known after creation (e.g. the
    random suffix of a Secrets Manager ARN); later :meth:`resolve` calls use them.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        stack_name: str,
        region: str,
        account_id: str,
        parameter_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.parameter_overrides = dict(parameter_overrides or {})
        self.resources: dict[str, dict[str, Any]] = dict(template.get("Resources") or {})
        self.parameters: dict[str, dict[str, Any]] = dict(template.get("Parameters") or {})
        self.mappings: dict[str, Any] = dict(template.get("Mappings") or {})
        self.conditions: dict[str, Any] = dict(template.get("Conditions") or {})
        self._condition_cache: dict[str, bool] = {}
        self._name_cache: dict[str, str] = {}
        self._ref_overrides: dict[str, Any] = {}
        self._attr_overrides: dict[tuple[str, str], Any] = {}
        self._resolving: set[tuple[str, str]] = set()
        unknown = set(self.parameter_overrides) - set(self.parameters)
        if unknown:
            raise ResolveError(f"parameter overrides for unknown parameters: {sorted(unknown)}")

    # ------------------------------------------------------------------ public helpers

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    @property
    def url_suffix(self) -> str:
        return "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"

    def resource_type(self, logical_id: str) -> str:
        try:
            return str(self.resources[logical_id]["Type"])
        except KeyError:
            raise ResolveError(f"unknown resource {logical_id!r}") from None

    def is_active(self, logical_id: str) -> bool:
        """False when the resource has a ``Condition`` that evaluates to false."""
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.condition(str(condition))

    def active_resources(self) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if self.is_active(lid)}

    def condition(self, name: str) -> bool:
        if name in self._condition_cache:
            return self._condition_cache[name]
        if name not in self.conditions:
            raise ResolveError(f"unknown condition {name!r}")
        if ("condition", name) in self._resolving:
            raise ResolveError(f"circular condition {name!r}")
        self._resolving.add(("condition", name))
        try:
            value = self._eval_condition(self.conditions[name])
        finally:
            self._resolving.discard(("condition", name))
        self._condition_cache[name] = value
        return value

    def parameter(self, name: str) -> Any:
        spec = self.parameters[name] or {}
        if name in self.parameter_overrides:
            value = self.parameter_overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise ResolveError(f"parameter {name!r} has no Default and no override")
        ptype = str(spec.get("Type", "String"))
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            if isinstance(value, str):
                return [item.strip() for item in value.split(",")] if value else []
            return [str(item) for item in value]
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def set_physical(self, logical_id: str, ref: Any = None, **attributes: Any) -> None:
        """Record the real Ref value and/or attributes of a provisioned resource."""
        if ref is not None:
            self._ref_overrides[logical_id] = ref
        for attribute, value in attributes.items():
            self._attr_overrides[(logical_id, attribute)] = value

    def physical_name(self, logical_id: str) -> str:
        """Deterministic local name: the explicit name property if set, else ``{stack_name}-{logical_id}``."""
        if logical_id in self._name_cache:
            return self._name_cache[logical_id]
        rtype = self.resource_type(logical_id)
        props = self.resources[logical_id].get("Properties") or {}
        name_property = _NAME_PROPERTIES.get(rtype, "Name")
        explicit = props.get(name_property)
        if explicit is not None:
            if ("name", logical_id) in self._resolving:
                raise ResolveError(f"circular reference in the name of {logical_id!r}")
            self._resolving.add(("name", logical_id))
            try:
                resolved = self.resolve(explicit)
            finally:
                self._resolving.discard(("name", logical_id))
            if resolved is not None:
                name = str(resolved)
                self._name_cache[logical_id] = name
                return name
        name = self._generated_name(logical_id, rtype, props)
        self._name_cache[logical_id] = name
        return name

    def _generated_name(self, logical_id: str, rtype: str, props: Mapping[str, Any]) -> str:
        suffix = ""
        if rtype == "AWS::SQS::Queue" and _truthy(self.resolve(props.get("FifoQueue", False))):
            suffix = ".fifo"
        base = f"{self.stack_name}-{logical_id}"
        if rtype == "AWS::S3::Bucket":
            base = re.sub(r"[^a-z0-9.-]", "-", base.lower())
        limit = _NAME_LIMITS.get(rtype, 255) - len(suffix)
        if len(base) > limit:
            base = f"{base[: limit - 9]}-{_short_hash(self.stack_name, logical_id)}"
        return base + suffix

    # --------------------------------------------------------------------- evaluation

    def resolve(self, value: Any) -> Any:
        """Evaluate every intrinsic in ``value``. ``AWS::NoValue`` removes the key/list item (None at top)."""
        result = self._resolve(value)
        return None if result is NO_VALUE else result

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref":
                    return self.ref(self._resolve_str(arg))
                if isinstance(key, str) and key.startswith("Fn::"):
                    return self._function(key, arg)
            out = {}
            for key, item in value.items():
                resolved = self._resolve(item)
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(value, list):
            items = (self._resolve(item) for item in value)
            return [item for item in items if item is not NO_VALUE]
        return value

    def _resolve_str(self, value: Any) -> str:
        resolved = self._resolve(value)
        if not isinstance(resolved, str | int | float) or isinstance(resolved, bool):
            raise ResolveError(f"expected a string, got {resolved!r}")
        return str(resolved)

    def _function(self, key: str, arg: Any) -> Any:
        name = key[4:]
        handler = getattr(self, f"_fn_{name.lower()}", None)
        if handler is None:
            raise ResolveError(f"unsupported intrinsic function {key}")
        return handler(arg)

    def ref(self, name: str) -> Any:
        """Value of ``Ref name``: parameter, pseudo parameter or resource."""
        if name in self.parameters:
            return self.parameter(name)
        if name in _PSEUDO_PARAMETERS:
            return self._pseudo(name)
        if name in self._ref_overrides:
            return self._ref_overrides[name]
        if name in self.resources:
            return self._resource_ref(name)
        implicit = self._implicit_resource(name)
        if implicit is not None:
            return implicit
        raise ResolveError(f"Ref to unknown parameter or resource {name!r}")

    def _pseudo(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::StackName":
            return self.stack_name
        if name == "AWS::Region":
            return self.region
        if name == "AWS::AccountId":
            return self.account_id
        if name == "AWS::Partition":
            return self.partition
        if name == "AWS::URLSuffix":
            return self.url_suffix
        if name == "AWS::NotificationARNs":
            return []
        digest = hashlib.md5(self.stack_name.encode(), usedforsecurity=False).hexdigest()
        uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"
        return self._arn("cloudformation", f"stack/{self.stack_name}/{uuid}")

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return ":".join(
            [
                "arn",
                self.partition,
                service,
                self.region if region else "",
                self.account_id if account else "",
                resource,
            ]
        )

    def _implicit_resource(self, name: str) -> Any:
        """Resources SAM generates without them being in the template."""
        if name in ("ServerlessRestApi", "ServerlessHttpApi"):
            return self._api_id(name)
        if name.endswith("Role"):
            owner = name[: -len("Role")]
            if self.resources.get(owner, {}).get("Type") == "AWS::Serverless::Function":
                return f"{self.stack_name}-{name}"[:64]
        return None

    def _api_id(self, logical_id: str) -> str:
        return _short_hash(self.stack_name, logical_id, length=10)

    def _resource_ref(self, logical_id: str) -> Any:
        rtype = self.resource_type(logical_id)
        if rtype == "AWS::SQS::Queue":
            return self.queue_url(logical_id)
        if rtype == "AWS::SecretsManager::Secret":
            return self.secret_arn(logical_id)
        if rtype in ("AWS::SNS::Topic", "AWS::StepFunctions::StateMachine", "AWS::Serverless::StateMachine"):
            return self.get_att(logical_id, "Arn")
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return self._arn("lambda", f"layer:{self.physical_name(logical_id)}:1")
        if rtype in ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi", "AWS::Serverless::HttpApi"):
            return self._api_id(logical_id)
        if rtype == "AWS::Events::Rule":
            bus = self._rule_bus_name(logical_id)
            name = self.physical_name(logical_id)
            return name if bus == "default" else f"{bus}|{name}"
        if rtype == "AWS::Scheduler::Schedule":
            return self.physical_name(logical_id)
        return self.physical_name(logical_id)

    def queue_url(self, logical_id: str) -> str:
        if logical_id in self._ref_overrides:
            return str(self._ref_overrides[logical_id])
        return (
            f"https://sqs.{self.region}.{self.url_suffix}/{self.account_id}/{self.physical_name(logical_id)}"
        )

    def secret_arn(self, logical_id: str) -> str:
        if logical_id in self._ref_overrides:
            return str(self._ref_overrides[logical_id])
        name = self.physical_name(logical_id)
        # Real ARNs end with "-" and 6 random characters; ours are stable per stack and logical id.
        return self._arn("secretsmanager", f"secret:{name}-{_short_hash(self.stack_name, name, length=6)}")

    def _rule_bus_name(self, logical_id: str) -> str:
        props = self.resources[logical_id].get("Properties") or {}
        bus = self.resolve(props.get("EventBusName")) or "default"
        bus = str(bus)
        if bus.startswith("arn:"):
            bus = bus.rsplit("/", 1)[-1]
        return bus

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """Value of ``Fn::GetAtt [logical_id, attribute]`` in AWS's formats."""
        if (logical_id, attribute) in self._attr_overrides:
            return self._attr_overrides[(logical_id, attribute)]
        if logical_id not in self.resources:
            implicit = self._implicit_resource(logical_id)
            if implicit is not None and attribute == "Arn" and logical_id.endswith("Role"):
                return self._arn("iam", f"role/{implicit}", region=False)
            raise ResolveError(f"GetAtt of unknown resource {logical_id!r}")
        rtype = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        value: Any = None
        if rtype in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            value = {
                "Arn": self._arn("dynamodb", f"table/{name}"),
                "StreamArn": self._arn("dynamodb", f"table/{name}/stream/1970-01-01T00:00:00.000"),
            }.get(attribute)
        elif rtype == "AWS::SQS::Queue":
            value = {
                "Arn": self._arn("sqs", name),
                "QueueName": name,
                "QueueUrl": self.queue_url(logical_id),
            }.get(attribute)
        elif rtype == "AWS::Events::EventBus":
            value = {"Arn": self._arn("events", f"event-bus/{name}"), "Name": name}.get(attribute)
        elif rtype == "AWS::Events::Rule":
            bus = self._rule_bus_name(logical_id)
            path = f"rule/{name}" if bus == "default" else f"rule/{bus}/{name}"
            value = {"Arn": self._arn("events", path)}.get(attribute)
        elif rtype in ("AWS::Lambda::Function", "AWS::Serverless::Function"):
            value = {"Arn": self._arn("lambda", f"function:{name}")}.get(attribute)
        elif rtype == "AWS::SecretsManager::Secret":
            value = {"Id": self.secret_arn(logical_id), "Arn": self.secret_arn(logical_id)}.get(attribute)
        elif rtype == "AWS::S3::Bucket":
            value = {
                "Arn": self._arn("s3", name, region=False, account=False),
                "DomainName": f"{name}.s3.{self.url_suffix}",
                "DualStackDomainName": f"{name}.s3.dualstack.{self.region}.{self.url_suffix}",
                "RegionalDomainName": f"{name}.s3.{self.region}.{self.url_suffix}",
                "WebsiteURL": f"http://{name}.s3-website.{self.region}.{self.url_suffix}",
            }.get(attribute)
        elif rtype == "AWS::IAM::Role":
            value = {
                "Arn": self._arn("iam", f"role/{name}", region=False),
                "RoleId": "AROA" + _short_hash(self.stack_name, name, length=17).upper(),
            }.get(attribute)
        elif rtype == "AWS::SNS::Topic":
            value = {"TopicArn": self._arn("sns", name), "TopicName": name}.get(attribute)
            if attribute == "Arn":
                value = self._arn("sns", name)
        elif rtype == "AWS::Logs::LogGroup":
            value = {"Arn": self._arn("logs", f"log-group:{name}:*")}.get(attribute)
        elif rtype == "AWS::Scheduler::ScheduleGroup":
            value = {"Arn": self._arn("scheduler", f"schedule-group/{name}")}.get(attribute)
        elif rtype == "AWS::Scheduler::Schedule":
            props = self.resources[logical_id].get("Properties") or {}
            group = self.resolve(props.get("GroupName")) or "default"
            value = {"Arn": self._arn("scheduler", f"schedule/{group}/{name}")}.get(attribute)
        elif rtype in ("AWS::StepFunctions::StateMachine", "AWS::Serverless::StateMachine"):
            value = {
                "Arn": self._arn("states", f"stateMachine:{name}"),
                "Name": name,
            }.get(attribute)
        elif rtype in ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi"):
            value = {"RootResourceId": _short_hash(self.stack_name, logical_id, "root", length=10)}.get(
                attribute
            )
        if value is None:
            raise ResolveError(f"unsupported GetAtt {logical_id}.{attribute} ({rtype})")
        return value

    # ------------------------------------------------------------------- functions

    def _fn_getatt(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, _, attribute = arg.partition(".")
        else:
            if not isinstance(arg, list) or len(arg) != 2:
                raise ResolveError(f"Fn::GetAtt needs [resource, attribute], got {arg!r}")
            logical_id = self._resolve_str(arg[0])
            attribute = self._resolve_str(arg[1])
        return self.get_att(logical_id, attribute)

    def _fn_sub(self, arg: Any) -> str:
        variables: dict[str, Any] = {}
        if isinstance(arg, list):
            if len(arg) != 2 or not isinstance(arg[0], str) or not isinstance(arg[1], dict):
                raise ResolveError(f"Fn::Sub needs a string or [string, {{vars}}], got {arg!r}")
            text = arg[0]
            variables = {key: self._resolve(val) for key, val in arg[1].items()}
        elif isinstance(arg, str):
            text = arg
        else:
            raise ResolveError(f"Fn::Sub needs a string or [string, {{vars}}], got {arg!r}")

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            expression = expression.strip()
            if expression in variables:
                value = variables[expression]
            elif "." in expression and expression.split(".", 1)[0] in self.resources:
                logical_id, attribute = expression.split(".", 1)
                value = self.get_att(logical_id, attribute)
            else:
                value = self.ref(expression)
            if value is NO_VALUE:
                return ""
            if isinstance(value, list):
                return ",".join(str(item) for item in value)
            return str(value)

        return _SUB_VARIABLE.sub(replace, text)

    def _fn_if(self, arg: Any) -> Any:
        if not isinstance(arg, list) or len(arg) != 3:
            raise ResolveError(f"Fn::If needs [condition, if-true, if-false], got {arg!r}")
        condition = self._resolve_str(arg[0])
        return self._resolve(arg[1] if self.condition(condition) else arg[2])

    def _eval_condition(self, value: Any) -> bool:
        if isinstance(value, dict) and len(value) == 1 and "Condition" in value:
            return self.condition(self._resolve_str(value["Condition"]))
        resolved = self._resolve(value)
        if isinstance(resolved, bool):
            return resolved
        if isinstance(resolved, str) and resolved.lower() in ("true", "false"):
            return resolved.lower() == "true"
        raise ResolveError(f"not a condition: {value!r}")

    def _fn_equals(self, arg: Any) -> bool:
        if not isinstance(arg, list) or len(arg) != 2:
            raise ResolveError(f"Fn::Equals needs two values, got {arg!r}")
        left, right = (self._resolve(item) for item in arg)
        if left == right:
            return True
        scalars = (str, int, float, bool)
        if isinstance(left, scalars) and isinstance(right, scalars):
            return _scalar_text(left) == _scalar_text(right)
        return False

    def _fn_not(self, arg: Any) -> bool:
        items = arg if isinstance(arg, list) else [arg]
        if len(items) != 1:
            raise ResolveError(f"Fn::Not needs one condition, got {arg!r}")
        return not self._eval_condition(items[0])

    def _fn_and(self, arg: Any) -> bool:
        if not isinstance(arg, list) or not arg:
            raise ResolveError(f"Fn::And needs a list of conditions, got {arg!r}")
        return all(self._eval_condition(item) for item in arg)

    def _fn_or(self, arg: Any) -> bool:
        if not isinstance(arg, list) or not arg:
            raise ResolveError(f"Fn::Or needs a list of conditions, got {arg!r}")
        return any(self._eval_condition(item) for item in arg)

    def _fn_join(self, arg: Any) -> str:
        if not isinstance(arg, list) or len(arg) != 2:
            raise ResolveError(f"Fn::Join needs [delimiter, list], got {arg!r}")
        delimiter = self._resolve_str(arg[0])
        items = self._resolve(arg[1])
        if not isinstance(items, list):
            raise ResolveError(f"Fn::Join needs a list, got {items!r}")
        return delimiter.join(_scalar_text(item) for item in items)

    def _fn_select(self, arg: Any) -> Any:
        if not isinstance(arg, list) or len(arg) != 2:
            raise ResolveError(f"Fn::Select needs [index, list], got {arg!r}")
        index = int(self._resolve_str(arg[0]))
        items = self._resolve(arg[1])
        if not isinstance(items, list):
            raise ResolveError(f"Fn::Select needs a list, got {items!r}")
        try:
            return items[index]
        except IndexError:
            raise ResolveError(f"Fn::Select index {index} out of range for {items!r}") from None

    def _fn_split(self, arg: Any) -> list[str]:
        if not isinstance(arg, list) or len(arg) != 2:
            raise ResolveError(f"Fn::Split needs [delimiter, string], got {arg!r}")
        return self._resolve_str(arg[1]).split(self._resolve_str(arg[0]))

    def _fn_findinmap(self, arg: Any) -> Any:
        if not isinstance(arg, list) or len(arg) not in (3, 4):
            raise ResolveError(f"Fn::FindInMap needs [map, top key, second key], got {arg!r}")
        map_name, top, second = (self._resolve_str(item) for item in arg[:3])
        try:
            return self._resolve(self.mappings[map_name][top][second])
        except KeyError:
            if len(arg) == 4 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self._resolve(arg[3]["DefaultValue"])
            raise ResolveError(f"Fn::FindInMap: no {map_name}.{top}.{second}") from None

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(self._resolve_str(arg).encode()).decode()

    def _fn_getazs(self, arg: Any) -> list[str]:
        region = self._resolve_str(arg) if arg not in ("", None) else self.region
        return [f"{region or self.region}{zone}" for zone in "abc"]

    def _fn_importvalue(self, arg: Any) -> Any:
        raise ResolveError(f"Fn::ImportValue {self._resolve(arg)!r} cannot be resolved locally")

    def _fn_length(self, arg: Any) -> int:
        items = self._resolve(arg)
        if not isinstance(items, list):
            raise ResolveError(f"Fn::Length needs a list, got {items!r}")
        return len(items)

    def _fn_tojsonstring(self, arg: Any) -> str:
        return json.dumps(self._resolve(arg), separators=(",", ":"))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -------------------------------------------------------------------------------------------- functions


class ApiRoute(NamedTuple):
    method: str  # upper case, or ANY
    path: str  # API Gateway syntax: /ocpi/{version}/credentials, /{proxy+}


class SqsSource(NamedTuple):
    queue: str  # logical id of the queue (or the queue ARN when it is not a template resource)
    batch_size: int
    function_response_types: list[str]


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: str  # relative to the template's directory, no trailing slash
    handler: str  # e.g. "app.handler"
    environment: dict[str, str] = field(default_factory=dict)
    api_routes: list[ApiRoute] = field(default_factory=list)
    sqs_sources: list[SqsSource] = field(default_factory=list)
    #: Events of Type Schedule / ScheduleV2: {"name": event name, "type": ..., "properties": resolved}
    schedule_events: list[dict[str, Any]] = field(default_factory=list)
    #: Every event of the function, resolved, by event name (including the ones above).
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: int | None = None
    #: MemorySize in MB (Globals merged), None when the template leaves Lambda's default (128).
    memory_size: int | None = None
    #: The function's local physical name (FunctionName, else ``{stack_name}-{logical_id}``).
    function_name: str = ""

    @property
    def module_name(self) -> str:
        """The handler's module (``app`` for ``app.handler``)."""
        return self.handler.rsplit(".", 1)[0]

    @property
    def handler_attribute(self) -> str:
        return self.handler.rsplit(".", 1)[-1]


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _queue_logical_id(raw: Any, resolver: Resolver) -> str:
    """The queue's logical id from an SQS event's Queue property (GetAtt Arn, Ref, Sub or literal ARN)."""
    if isinstance(raw, dict) and len(raw) == 1:
        ((key, arg),) = raw.items()
        if key == "Fn::GetAtt":
            logical_id = arg.partition(".")[0] if isinstance(arg, str) else arg[0]
            if isinstance(logical_id, str) and logical_id in resolver.resources:
                return logical_id
    resolved = resolver.resolve(raw)
    for logical_id, resource in resolver.resources.items():
        if resource.get("Type") == "AWS::SQS::Queue" and resolved in (
            resolver.get_att(logical_id, "Arn"),
            resolver.queue_url(logical_id),
        ):
            return logical_id
    return str(resolved)


def function_specs(template: Mapping[str, Any], resolver: Resolver) -> list[FunctionSpec]:
    """Every active ``AWS::Serverless::Function`` with Globals applied and intrinsics resolved."""
    global_props = dict(((template.get("Globals") or {}).get("Function")) or {})
    global_env = ((global_props.get("Environment") or {}).get("Variables")) or {}
    specs: list[FunctionSpec] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function" or not resolver.is_active(logical_id):
            continue
        props = resource.get("Properties") or {}

        def prop(name: str, props: Mapping[str, Any] = props) -> Any:
            return resolver.resolve(props[name] if name in props else global_props.get(name))

        code_uri = prop("CodeUri")
        if isinstance(code_uri, dict):  # {Bucket, Key} form: no local code
            code_uri = None
        handler = prop("Handler")
        own_env = ((props.get("Environment") or {}).get("Variables")) or {}
        merged = {**global_env, **own_env}
        environment = {}
        for key, raw in merged.items():
            value = resolver.resolve(raw)
            if value is not None:
                environment[key] = _env_text(value)

        spec = FunctionSpec(
            logical_id=logical_id,
            code_uri=posixpath.normpath(str(code_uri)) if code_uri else "",
            handler=str(handler or ""),
            environment=environment,
        )
        timeout = prop("Timeout")
        spec.timeout = int(timeout) if timeout is not None else None
        memory_size = prop("MemorySize")
        spec.memory_size = int(memory_size) if memory_size is not None else None
        try:
            spec.function_name = resolver.physical_name(logical_id)
        except ResolveError:
            spec.function_name = f"{resolver.stack_name}-{logical_id}"[:64]

        for event_name, event in (props.get("Events") or {}).items():
            event_type = str(resolver.resolve(event.get("Type")))
            raw_props = event.get("Properties") or {}
            resolved_props = resolver.resolve(raw_props) or {}
            spec.events[event_name] = {"Type": event_type, "Properties": resolved_props}
            if event_type == "Api":
                spec.api_routes.append(
                    ApiRoute(str(resolved_props["Method"]).upper(), str(resolved_props["Path"]))
                )
            elif event_type == "SQS":
                spec.sqs_sources.append(
                    SqsSource(
                        _queue_logical_id(raw_props.get("Queue"), resolver),
                        int(resolved_props.get("BatchSize", 10)),
                        [str(item) for item in resolved_props.get("FunctionResponseTypes", [])],
                    )
                )
            elif event_type in ("Schedule", "ScheduleV2"):
                spec.schedule_events.append(
                    {"name": event_name, "type": event_type, "properties": resolved_props}
                )
        specs.append(spec)
    return specs


def provision(template: Mapping[str, Any], resolver: Resolver) -> dict[str, str]:
    """Create the template's resources with boto3; see :func:`shared.local.stack.provision`.

    Re-exported here for convenience; the implementation (boto3, imported lazily) lives in
    ``shared.local.stack``.
    """
    from shared.local.stack import provision as _provision

    return _provision(template, resolver)


# ---------------------------------------------------------------------------------- dependency ordering


def _references(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str):
                out.add(arg)
            elif key == "Fn::GetAtt":
                target = arg.partition(".")[0] if isinstance(arg, str) else arg[0]
                if isinstance(target, str):
                    out.add(target)
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0] if isinstance(arg, list) and arg else ""
                local_vars = set(arg[1]) if isinstance(arg, list) and len(arg) > 1 else set()
                for expression in _SUB_VARIABLE.findall(str(text)):
                    if expression.startswith("!"):
                        continue
                    name = expression.strip().split(".", 1)[0]
                    if name not in local_vars:
                        out.add(name)
        for item in value.values():
            _references(item, out)
    elif isinstance(value, list):
        for item in value:
            _references(item, out)


def dependencies(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Logical ids each resource refers to (Ref, GetAtt, Sub, DependsOn), restricted to ``resources``."""
    deps: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        refs: set[str] = set()
        _references(resource.get("Properties") or {}, refs)
        depends_on = resource.get("DependsOn") or []
        refs.update([depends_on] if isinstance(depends_on, str) else depends_on)
        refs.discard(logical_id)
        deps[logical_id] = {ref for ref in refs if ref in resources}
    return deps


def topological_order(resources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Resource logical ids so that every resource comes after the ones it refers to (template order kept)."""
    deps = dependencies(resources)
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(logical_id: str, chain: tuple[str, ...]) -> None:
        if state.get(logical_id) == 2:
            return
        if state.get(logical_id) == 1:
            raise ResolveError(f"circular dependency: {' -> '.join((*chain, logical_id))}")
        state[logical_id] = 1
        for dep in sorted(deps[logical_id], key=list(resources).index):
            visit(dep, (*chain, logical_id))
        state[logical_id] = 2
        order.append(logical_id)

    for logical_id in resources:
        visit(logical_id, ())
    return order


# -------------------------------------------------------------------------------------- route matching


def _segments(path: str) -> list[str]:
    path = path.split("?", 1)[0]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]  # API Gateway tolerates one trailing slash
    return path.strip("/").split("/") if path.strip("/") else []


def route_match(path_template: str, path: str) -> dict[str, str] | None:
    """Match a request path against an API Gateway REST path template.

    ``{x}`` matches exactly one non-empty segment, ``{x+}`` (last segment only) one or more remaining
    segments; other segments must be equal (case-sensitive). Returns the path parameters or None.
    """
    template_parts = _segments(path_template)
    path_parts = _segments(path)
    params: dict[str, str] = {}
    for index, part in enumerate(template_parts):
        if part.startswith("{") and part.endswith("+}"):
            rest = path_parts[index:]
            if not rest or any(segment == "" for segment in rest):
                return None
            params[part[1:-2]] = "/".join(rest)
            return params
        if index >= len(path_parts):
            return None
        segment = path_parts[index]
        if part.startswith("{") and part.endswith("}"):
            if segment == "":
                return None
            params[part[1:-1]] = segment
        elif part != segment:
            return None
    if len(path_parts) != len(template_parts):
        return None
    return params


def route_specificity(path_template: str) -> tuple[int, ...]:
    """Sort key, larger = more specific: per segment 2 for static, 1 for ``{x}``, 0 for ``{x+}``."""
    key = []
    for part in _segments(path_template):
        if part.startswith("{") and part.endswith("+}"):
            key.append(0)
        elif part.startswith("{") and part.endswith("}"):
            key.append(1)
        else:
            key.append(2)
    return tuple(key)


def _shape(path_template: str) -> str:
    """Template with variable names erased: /ocpi/{version} and /ocpi/{v} are the same API resource."""
    return "/" + "/".join(
        "{+}" if part.endswith("+}") else "{}" if part.startswith("{") else part
        for part in _segments(path_template)
    )


def select_route(
    routes: Iterable[tuple[str, str, _T]], method: str, path: str
) -> tuple[str, tuple[str, str, _T] | None, dict[str, str]]:
    """Pick the route for ``method path`` among ``(method, path_template, target)`` triples.

    Like API Gateway REST: the most specific matching resource (path) wins, whatever the method;
    then its exact method, else its ANY method. Returns ``(outcome, route, path_params)`` with outcome
    ``"ok"``, ``"method_not_allowed"`` (the resource exists without that method) or ``"not_found"``.
    """
    method = method.upper()
    matches: list[tuple[tuple[int, ...], str, tuple[str, str, _T], dict[str, str]]] = []
    for route in routes:
        params = route_match(route[1], path)
        if params is not None:
            matches.append((route_specificity(route[1]), _shape(route[1]), route, params))
    if not matches:
        return "not_found", None, {}
    best_key = max(key for key, *_ in matches)
    best_shape = next(shape for key, shape, *_ in matches if key == best_key)
    resource = [(route, params) for key, shape, route, params in matches if shape == best_shape]
    for wanted in (method, "ANY"):
        for route, params in resource:
            if route[0].upper() == wanted:
                return "ok", route, params
    return "method_not_allowed", None, {}
