"""The local stack's template reader, resolver, provisioner (on moto) and API Gateway routing."""

from __future__ import annotations

import asyncio
import base64
import json
import posixpath
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi import FastAPI, Request
from moto import mock_aws

from shared.local.stack import Dispatcher, common_environment, generate_secret_string, provision
from shared.local.template import (
    NO_VALUE,
    ResolveError,
    Resolver,
    function_specs,
    load_template,
    parse_template,
    route_match,
    select_route,
    topological_order,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


@pytest.fixture
def real_template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _resources_of(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == rtype}


# ------------------------------------------------------------------------------------------ parsing


def test_real_template_short_forms_become_long_forms(real_template: dict[str, Any]) -> None:
    assert isinstance(real_template["AWSTemplateFormatVersion"], str)
    env = real_template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["OCPI_TABLE_NAME"] == {"Ref": "OcpiTable"}
    assert env["OCPI_PUBLIC_URL"] == {
        "Fn::If": [
            "HasPublicUrl",
            {"Ref": "PublicUrl"},
            {"Fn::If": ["HasCustomDomain", {"Fn::Sub": "https://${DomainName}"}, {"Ref": "AWS::NoValue"}]},
        ]
    }
    assert real_template["Conditions"]["HasPublicUrl"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PublicUrl"}, ""]}]
    }
    assert _resources_of(real_template, "AWS::DynamoDB::Table"), "the template has a table"


def test_every_short_form_tag() -> None:
    template = parse_template(
        """
        A: !Ref X
        B: !Sub "${AWS::StackName}-x"
        C: !Sub ["${a}-${b}", {a: !Ref X, b: "2"}]
        D: !GetAtt Queue.Arn
        E: !GetAtt [Queue, QueueName]
        F: !GetAtt Db.Endpoint.Address
        G: !If [Cond, yes-value, !Ref AWS::NoValue]
        H: !Equals [!Ref X, ""]
        I: !Not [!Condition Cond]
        J: !And [!Condition Cond, !Equals [a, a]]
        K: !Or [!Condition Cond, !Equals [a, b]]
        L: !Join [",", [a, b]]
        M: !Select [1, !Split [",", "a,b,c"]]
        N: !FindInMap [Map, Top, Second]
        O: !Base64 hello
        P: !ImportValue exported
        Q: !GetAZs ""
        R: !Condition Cond
        S: 2010-09-09
        """
    )
    assert template["A"] == {"Ref": "X"}
    assert template["B"] == {"Fn::Sub": "${AWS::StackName}-x"}
    assert template["C"] == {"Fn::Sub": ["${a}-${b}", {"a": {"Ref": "X"}, "b": "2"}]}
    assert template["D"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert template["E"] == {"Fn::GetAtt": ["Queue", "QueueName"]}
    assert template["F"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    assert template["G"] == {"Fn::If": ["Cond", "yes-value", {"Ref": "AWS::NoValue"}]}
    assert template["H"] == {"Fn::Equals": [{"Ref": "X"}, ""]}
    assert template["I"] == {"Fn::Not": [{"Condition": "Cond"}]}
    assert template["J"] == {"Fn::And": [{"Condition": "Cond"}, {"Fn::Equals": ["a", "a"]}]}
    assert template["K"] == {"Fn::Or": [{"Condition": "Cond"}, {"Fn::Equals": ["a", "b"]}]}
    assert template["L"] == {"Fn::Join": [",", ["a", "b"]]}
    assert template["M"] == {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}
    assert template["N"] == {"Fn::FindInMap": ["Map", "Top", "Second"]}
    assert template["O"] == {"Fn::Base64": "hello"}
    assert template["P"] == {"Fn::ImportValue": "exported"}
    assert template["Q"] == {"Fn::GetAZs": ""}
    assert template["R"] == {"Condition": "Cond"}
    assert template["S"] == "2010-09-09"


# ---------------------------------------------------------------------------------------- resolving

INLINE = """
Parameters:
  Env:
    Type: String
    Default: dev
  Url:
    Type: String
    Default: ""
  Names:
    Type: CommaDelimitedList
    Default: "a,b,c"
Mappings:
  Sizes:
    dev: {memory: "128"}
    prod: {memory: "1024"}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  HasUrl: !Not [!Equals [!Ref Url, ""]]
  ProdWithUrl: !And [!Condition IsProd, !Condition HasUrl]
  ProdOrUrl: !Or [!Condition IsProd, !Condition HasUrl]
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: PK, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: PK, AttributeType: S}]
  NamedTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-named-${Env}"
      KeySchema: [{AttributeName: PK, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: PK, AttributeType: S}]
  Queue:
    Type: AWS::SQS::Queue
  FifoQueue:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
  Bus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub "${AWS::StackName}-bus"
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
  Secret:
    Type: AWS::SecretsManager::Secret
  Bucket:
    Type: AWS::S3::Bucket
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
  ProdOnly:
    Type: AWS::SQS::Queue
    Condition: IsProd
"""


@pytest.fixture
def inline() -> dict[str, Any]:
    return parse_template(INLINE)


def _resolver(template: dict[str, Any], **overrides: Any) -> Resolver:
    return Resolver(template, "stk", REGION, ACCOUNT, overrides)


def test_physical_names(inline: dict[str, Any]) -> None:
    r = _resolver(inline)
    assert r.physical_name("Table") == "stk-Table"
    assert r.physical_name("NamedTable") == "stk-named-dev"
    assert _resolver(inline, Env="prod").physical_name("NamedTable") == "stk-named-prod"
    assert r.physical_name("FifoQueue") == "stk-FifoQueue.fifo"
    assert r.physical_name("Bus") == "stk-bus"
    assert r.physical_name("Bucket") == "stk-bucket"  # S3 names are lower case
    assert r.physical_name("Table") == _resolver(inline).physical_name("Table"), "deterministic"


def test_refs_and_getatts(inline: dict[str, Any]) -> None:
    r = _resolver(inline)
    assert r.resolve({"Ref": "Table"}) == "stk-Table"
    assert r.resolve({"Ref": "Queue"}) == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/stk-Queue"
    assert r.resolve({"Ref": "Bus"}) == "stk-bus"
    assert r.resolve({"Ref": "Rule"}) == "stk-bus|stk-Rule"
    assert r.resolve({"Ref": "Bucket"}) == "stk-bucket"
    assert r.resolve({"Ref": "Fn"}) == "stk-Fn"
    secret = r.resolve({"Ref": "Secret"})
    assert secret.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:stk-Secret-")
    assert len(secret.rsplit("-", 1)[1]) == 6
    assert (
        r.resolve({"Fn::GetAtt": ["Table", "Arn"]}) == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/stk-Table"
    )
    assert r.resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == f"arn:aws:sqs:{REGION}:{ACCOUNT}:stk-Queue"
    assert r.resolve({"Fn::GetAtt": ["Queue", "QueueName"]}) == "stk-Queue"
    assert r.resolve({"Fn::GetAtt": ["Queue", "QueueUrl"]}) == r.resolve({"Ref": "Queue"})
    assert r.resolve({"Fn::GetAtt": ["Bus", "Arn"]}) == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/stk-bus"
    assert (
        r.resolve({"Fn::GetAtt": ["Rule", "Arn"]})
        == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/stk-bus/stk-Rule"
    )
    assert r.resolve({"Fn::GetAtt": ["Fn", "Arn"]}) == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stk-Fn"
    assert r.resolve({"Fn::GetAtt": ["Bucket", "Arn"]}) == "arn:aws:s3:::stk-bucket"
    assert r.resolve({"Fn::GetAtt": "Secret.Id"}) == secret
    with pytest.raises(ResolveError):
        r.resolve({"Ref": "Nope"})
    with pytest.raises(ResolveError):
        r.resolve({"Fn::GetAtt": ["Table", "Nope"]})


def test_pseudo_parameters_and_sub(inline: dict[str, Any]) -> None:
    r = _resolver(inline)
    assert r.resolve({"Fn::Sub": "${AWS::StackName}/${AWS::Region}/${AWS::AccountId}/${AWS::Partition}"}) == (
        f"stk/{REGION}/{ACCOUNT}/aws"
    )
    assert r.resolve({"Ref": "AWS::URLSuffix"}) == "amazonaws.com"
    assert r.resolve({"Fn::Sub": "${Queue.Arn}|${Table}|${Env}|${!Literal}"}) == (
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:stk-Queue|stk-Table|dev|${{Literal}}"
    )
    assert r.resolve({"Fn::Sub": ["${x}-${Env}", {"x": {"Fn::GetAtt": ["Bus", "Name"]}}]}) == "stk-bus-dev"
    assert r.resolve({"Ref": "AWS::StackId"}).startswith(
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/stk/"
    )


def test_conditions_if_and_novalue(inline: dict[str, Any]) -> None:
    value = {
        "Keep": "k",
        "Url": {"Fn::If": ["HasUrl", {"Ref": "Url"}, {"Ref": "AWS::NoValue"}]},
        "List": ["a", {"Ref": "AWS::NoValue"}, {"Fn::If": ["IsProd", "p", "d"]}],
        "Both": {"Fn::If": ["ProdWithUrl", "yes", "no"]},
        "Either": {"Fn::If": ["ProdOrUrl", "yes", "no"]},
    }
    dev = _resolver(inline).resolve(value)
    assert dev == {"Keep": "k", "List": ["a", "d"], "Both": "no", "Either": "no"}
    prod = _resolver(inline, Env="prod", Url="https://x").resolve(value)
    assert prod == {"Keep": "k", "Url": "https://x", "List": ["a", "p"], "Both": "yes", "Either": "yes"}
    assert _resolver(inline).resolve({"Ref": "AWS::NoValue"}) is None
    assert _resolver(inline)._resolve({"Ref": "AWS::NoValue"}) is NO_VALUE
    assert not _resolver(inline).is_active("ProdOnly")
    assert _resolver(inline, Env="prod").is_active("ProdOnly")


def test_other_functions(inline: dict[str, Any]) -> None:
    r = _resolver(inline)
    assert r.resolve({"Fn::Join": ["-", [{"Ref": "Env"}, "x", {"Ref": "AWS::NoValue"}]]}) == "dev-x"
    assert r.resolve({"Fn::Join": [",", {"Ref": "Names"}]}) == "a,b,c"
    assert r.resolve({"Fn::Select": ["1", {"Ref": "Names"}]}) == "b"
    assert r.resolve({"Fn::Split": ["/", "a/b"]}) == ["a", "b"]
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "memory"]}) == "128"
    assert r.resolve({"Fn::Base64": "hi"}) == base64.b64encode(b"hi").decode()
    assert r.resolve({"Fn::GetAZs": ""}) == [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
    assert r.resolve({"Fn::Equals": ["a", "a"]}) is True
    assert r.resolve({"Fn::Not": [{"Fn::Equals": ["a", "a"]}]}) is False
    with pytest.raises(ResolveError):
        r.resolve({"Fn::ImportValue": "x"})
    with pytest.raises(ResolveError):
        _resolver(inline, Unknown="x")


def test_topological_order_puts_dependencies_first() -> None:
    template = parse_template(
        """
        Resources:
          Rule:
            Type: AWS::Events::Rule
            Properties:
              EventBusName: !Ref Bus
              Targets: [{Id: q, Arn: !GetAtt Main.Arn}]
          Main:
            Type: AWS::SQS::Queue
            Properties:
              RedrivePolicy: {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 3}
          Bus:
            Type: AWS::Events::EventBus
            Properties: {Name: !Sub "${AWS::StackName}-${Dlq.QueueName}"}
          Dlq:
            Type: AWS::SQS::Queue
        """
    )
    order = topological_order(template["Resources"])
    assert order.index("Dlq") < order.index("Main") < order.index("Rule")
    assert order.index("Dlq") < order.index("Bus") < order.index("Rule")


# ---------------------------------------------------------------------------------------- functions


def test_function_specs_of_real_template(real_template: dict[str, Any]) -> None:
    r = _resolver(real_template)
    specs = {s.logical_id: s for s in function_specs(real_template, r)}
    functions = _resources_of(real_template, "AWS::Serverless::Function")
    assert set(specs) == set(functions)
    global_env = real_template["Globals"]["Function"]["Environment"]["Variables"]
    for logical_id, resource in functions.items():
        spec = specs[logical_id]
        props = resource["Properties"]
        assert spec.code_uri == posixpath.normpath(props["CodeUri"])
        assert spec.handler == props.get("Handler", real_template["Globals"]["Function"].get("Handler"))
        events = props.get("Events") or {}
        expected_routes = [
            (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
            for e in events.values()
            if e["Type"] == "Api"
        ]
        assert spec.api_routes == expected_routes
        assert len(spec.sqs_sources) == sum(1 for e in events.values() if e["Type"] == "SQS")
        # Globals and own variables merged; NoValue (no PublicUrl) dropped.
        own = (props.get("Environment") or {}).get("Variables") or {}
        assert set(spec.environment) == (set(global_env) | set(own)) - {"OCPI_PUBLIC_URL"}
        assert spec.environment["OCPI_TABLE_NAME"] == r.physical_name("OcpiTable")
        assert spec.environment["OCPI_EVENT_BUS_NAME"] == r.physical_name("OcpiBus")
        assert spec.environment["OCPI_TOKEN_KEY_SECRET_ARN"] == r.resolve({"Ref": "TokenHashKeySecret"})
        for key, value in own.items():
            assert spec.environment[key] == r.resolve(value)
        json.loads(spec.environment["OCPI_OWN_PARTIES"])
    with_url = function_specs(real_template, _resolver(real_template, PublicUrl="https://ocpi.example.com"))
    assert all(s.environment["OCPI_PUBLIC_URL"] == "https://ocpi.example.com" for s in with_url)
    # Only per-function variables differ between functions.
    common = common_environment(list(specs.values()))
    assert "OCPI_TABLE_NAME" in common and "OCPI_FUNCTION_MODULE" not in common


def test_function_specs_events_and_globals() -> None:
    template = parse_template(
        """
        Globals:
          Function:
            Handler: app.handler
            Timeout: 10
            Environment:
              Variables: {A: global, B: global, C: !Ref AWS::NoValue}
        Resources:
          Work:
            Type: AWS::SQS::Queue
          Worker:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: functions/worker/
              Timeout: 60
              Environment:
                Variables: {B: own, D: !Ref Work, E: 5, F: true}
              Events:
                FromQueue:
                  Type: SQS
                  Properties:
                    Queue: !GetAtt Work.Arn
                    BatchSize: 5
                    FunctionResponseTypes: [ReportBatchItemFailures]
                Literal:
                  Type: SQS
                  Properties:
                    Queue: !Sub "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-Work"
                Tick:
                  Type: ScheduleV2
                  Properties:
                    ScheduleExpression: rate(5 minutes)
                    Input: !Sub '{"stack": "${AWS::StackName}"}'
                Proxy:
                  Type: Api
                  Properties: {Path: "/x/{proxy+}", Method: any}
        """
    )
    (spec,) = function_specs(template, _resolver(template))
    assert spec.code_uri == "functions/worker"
    assert spec.handler == "app.handler" and spec.module_name == "app"
    assert spec.timeout == 60
    assert spec.environment == {
        "A": "global",
        "B": "own",
        "D": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/stk-Work",
        "E": "5",
        "F": "true",
    }
    assert spec.sqs_sources == [("Work", 5, ["ReportBatchItemFailures"]), ("Work", 10, [])]
    assert spec.api_routes == [("ANY", "/x/{proxy+}")]
    assert spec.schedule_events == [
        {
            "name": "Tick",
            "type": "ScheduleV2",
            "properties": {"ScheduleExpression": "rate(5 minutes)", "Input": '{"stack": "stk"}'},
        }
    ]
    assert set(spec.events) == {"FromQueue", "Literal", "Tick", "Proxy"}


# ------------------------------------------------------------------------------------- provisioning


def test_provision_real_template(real_template: dict[str, Any]) -> None:
    with mock_aws():
        r = _resolver(real_template)
        created = provision(real_template, r)
        ddb = boto3.client("dynamodb", region_name=REGION)
        tables = _resources_of(real_template, "AWS::DynamoDB::Table")
        assert tables
        for logical_id, resource in tables.items():
            props = resource["Properties"]
            name = created[logical_id]
            assert name == r.physical_name(logical_id)
            table = ddb.describe_table(TableName=name)["Table"]
            assert table["KeySchema"] == props["KeySchema"]
            assert sorted(table["AttributeDefinitions"], key=str) == sorted(
                props["AttributeDefinitions"], key=str
            )
            expected_gsis = {
                g["IndexName"]: (g["KeySchema"], g["Projection"])
                for g in props.get("GlobalSecondaryIndexes", [])
            }
            actual_gsis = {
                g["IndexName"]: (g["KeySchema"], g["Projection"])
                for g in table.get("GlobalSecondaryIndexes", [])
            }
            assert actual_gsis == expected_gsis
            assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
            if "TimeToLiveSpecification" in props:
                ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
                assert ttl["TimeToLiveStatus"] == "ENABLED"
                assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]

        events = boto3.client("events", region_name=REGION)
        for logical_id in _resources_of(real_template, "AWS::Events::EventBus"):
            bus = events.describe_event_bus(Name=created[logical_id])
            assert bus["Name"] == r.physical_name(logical_id)
            assert r.get_att(logical_id, "Arn") == bus["Arn"]

        sm = boto3.client("secretsmanager", region_name=REGION)
        for logical_id, resource in _resources_of(real_template, "AWS::SecretsManager::Secret").items():
            arn = created[logical_id]
            assert r.resolve({"Ref": logical_id}) == arn, "the resolver uses the real ARN"
            value = sm.get_secret_value(SecretId=arn)["SecretString"]
            spec = resource["Properties"].get("GenerateSecretString")
            if spec is not None:
                assert len(value) == int(spec.get("PasswordLength", 32))
                assert value.isalnum()

        sqs = boto3.client("sqs", region_name=REGION)
        for logical_id in _resources_of(real_template, "AWS::SQS::Queue"):
            assert sqs.get_queue_url(QueueName=r.physical_name(logical_id))["QueueUrl"] == created[logical_id]

        # The function environment resolved after provisioning points at what exists.
        for spec in function_specs(real_template, r):
            ddb.describe_table(TableName=spec.environment["OCPI_TABLE_NAME"])
            events.describe_event_bus(Name=spec.environment["OCPI_EVENT_BUS_NAME"])
            sm.get_secret_value(SecretId=spec.environment["OCPI_TOKEN_KEY_SECRET_ARN"])


def test_provision_statements_bucket_and_billing_schedules(real_template: dict[str, Any]) -> None:
    """The billing resources as the local stack creates them: the bucket encrypted, versioned, no public
    access (its TLS-only policy is not applied: the local endpoint is plain HTTP); the schedules in
    their time zone, sending to the clearing queue."""
    with mock_aws():
        r = _resolver(real_template)
        created = provision(real_template, r)
        s3 = boto3.client("s3", region_name=REGION)
        bucket = created["StatementsBucket"]
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        )
        scheduler = boto3.client("scheduler", region_name=REGION)
        for logical_id in ("BillingDailyRun", "BillingMonthlyRun"):
            schedule = scheduler.get_schedule(Name=created[logical_id])
            assert schedule["ScheduleExpressionTimezone"] == "Europe/Amsterdam"
            assert schedule["Target"]["Arn"] == r.get_att("ClearingQueue", "Arn")
            assert json.loads(schedule["Target"]["Input"])["kind"] == "run"


PROVISION_INLINE = """
Resources:
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
      EventPattern: {source: [ocpi.test]}
      Targets:
        - {Id: queue, Arn: !GetAtt Work.Arn}
        - {Id: fn, Arn: !Sub "arn:aws:lambda:${AWS::Region}:${AWS::AccountId}:function:x"}
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 45
      MessageRetentionPeriod: 3600
      DelaySeconds: 0
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDlq.Arn
        maxReceiveCount: 3
  WorkDlq:
    Type: AWS::SQS::Queue
  Ordered:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      ContentBasedDeduplication: true
  Bus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub "${AWS::StackName}-bus"
  Plain:
    Type: AWS::SecretsManager::Secret
    Properties:
      SecretString: '{"k": "v"}'
  Files:
    Type: AWS::S3::Bucket
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
"""


def test_provision_queues_rules_buckets() -> None:
    template = parse_template(PROVISION_INLINE)
    with mock_aws():
        r = _resolver(template)
        created = provision(template, r)
        assert "Role" not in created, "unsupported types are skipped"
        sqs = boto3.client("sqs", region_name=REGION)
        attrs = sqs.get_queue_attributes(QueueUrl=created["Work"], AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "45"
        assert attrs["MessageRetentionPeriod"] == "3600"
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == r.get_att("WorkDlq", "Arn")
        assert int(redrive["maxReceiveCount"]) == 3
        fifo = sqs.get_queue_attributes(QueueUrl=created["Ordered"], AttributeNames=["All"])["Attributes"]
        assert fifo["FifoQueue"] == "true" and created["Ordered"].endswith("stk-Ordered.fifo")

        events = boto3.client("events", region_name=REGION)
        targets = events.list_targets_by_rule(Rule="stk-Rule", EventBusName="stk-bus")["Targets"]
        assert [t["Arn"] for t in targets] == [r.get_att("Work", "Arn")], "lambda targets are not attached"
        events.put_events(
            Entries=[{"Source": "ocpi.test", "DetailType": "t", "Detail": "{}", "EventBusName": "stk-bus"}]
        )
        messages = sqs.receive_message(QueueUrl=created["Work"], WaitTimeSeconds=0).get("Messages", [])
        assert messages and json.loads(messages[0]["Body"])["source"] == "ocpi.test"

        sm = boto3.client("secretsmanager", region_name=REGION)
        assert sm.get_secret_value(SecretId=created["Plain"])["SecretString"] == '{"k": "v"}'
        s3 = boto3.client("s3", region_name=REGION)
        assert s3.head_bucket(Bucket=created["Files"])["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_generate_secret_string() -> None:
    value = generate_secret_string({"PasswordLength": 40, "ExcludePunctuation": True})
    assert len(value) == 40 and value.isalnum()
    doc = json.loads(
        generate_secret_string({"SecretStringTemplate": '{"user": "u"}', "GenerateStringKey": "password"})
    )
    assert doc["user"] == "u" and len(doc["password"]) == 32


# ------------------------------------------------------------------------------------------ routing


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/ocpi/versions", "/ocpi/versions", {}),
        ("/ocpi/versions", "/ocpi/versions/", {}),
        ("/ocpi/versions", "/ocpi/version", None),
        ("/ocpi/{version}", "/ocpi/2.2.1", {"version": "2.2.1"}),
        ("/ocpi/{version}", "/ocpi/2.2.1/credentials", None),
        ("/ocpi/{version}", "/ocpi", None),
        ("/ocpi/{version}/credentials", "/ocpi/2.2.1/credentials", {"version": "2.2.1"}),
        ("/ocpi/{proxy+}", "/ocpi/a/b/c", {"proxy": "a/b/c"}),
        ("/ocpi/{proxy+}", "/ocpi/a", {"proxy": "a"}),
        ("/ocpi/{proxy+}", "/ocpi", None),
        ("/ocpi/{proxy+}", "/ocpi/", None),
        ("/{proxy+}", "/anything/at/all", {"proxy": "anything/at/all"}),
        ("/", "/", {}),
        ("/", "/x", None),
        ("/a/{b}/c/{d}", "/a/1/c/2", {"b": "1", "d": "2"}),
        ("/a/{b}/c", "/a//c", None),
    ],
)
def test_route_match(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert route_match(template, path) == expected


ROUTES = [
    ("GET", "/ocpi/versions", "versions-list"),
    ("GET", "/ocpi/{version}", "version-details"),
    ("ANY", "/ocpi/{version}/credentials", "credentials"),
    ("GET", "/ocpi/{version}/{module}", "generic-get"),
    ("ANY", "/ocpi/{proxy+}", "catch-all"),
    ("GET", "/ocpi/2.2.1/locations", "static-locations"),
    ("POST", "/ocpi/2.2.1/locations", "static-locations-post"),
]


@pytest.mark.parametrize(
    ("method", "path", "outcome", "target"),
    [
        ("GET", "/ocpi/versions", "ok", "versions-list"),  # static beats {version}
        ("GET", "/ocpi/2.2.1", "ok", "version-details"),
        ("PUT", "/ocpi/2.2.1/credentials", "ok", "credentials"),  # ANY
        ("GET", "/ocpi/2.2.1/credentials", "ok", "credentials"),  # static "credentials" beats {module}
        ("GET", "/ocpi/2.2.1/tariffs", "ok", "generic-get"),  # {version}/{module} beats {proxy+}
        ("GET", "/ocpi/2.2.1/locations", "ok", "static-locations"),
        ("post", "/ocpi/2.2.1/locations", "ok", "static-locations-post"),
        ("DELETE", "/ocpi/2.2.1/locations", "method_not_allowed", None),  # resource exists, no DELETE
        ("POST", "/ocpi/versions", "method_not_allowed", None),
        ("POST", "/ocpi/2.2.1/tariffs", "method_not_allowed", None),
        ("DELETE", "/ocpi/a/b/c/d", "ok", "catch-all"),
        ("GET", "/other", "not_found", None),
    ],
)
def test_select_route_precedence(method: str, path: str, outcome: str, target: str | None) -> None:
    got, route, _params = select_route(ROUTES, method, path)
    assert got == outcome
    assert (route[2] if route else None) == target


# --------------------------------------------------------------------------------------- dispatcher


def _echo_app(name: str) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield {"owner": name}

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def echo(path: str, request: Request) -> dict[str, Any]:
        return {"app": name, "path": "/" + path, "method": request.method, "state": request.state.owner}

    return app


async def _plain_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"  # no lifespan support: raises on the lifespan scope
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"plain"})


def test_dispatcher_routes_and_envelopes() -> None:
    dispatcher = Dispatcher(
        [("GET", "/ocpi/versions", "A"), ("ANY", "/ocpi/{version}/x", "B"), ("GET", "/plain", "C")],
        {"A": _echo_app("A"), "B": _echo_app("B"), "C": _plain_app},
    )

    async def scenario() -> None:
        sent: list[dict[str, Any]] = []
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        lifespan = asyncio.create_task(dispatcher({"type": "lifespan", "state": {}}, inbox.get, send))
        await asyncio.sleep(0.2)
        assert sent[0]["type"] == "lifespan.startup.complete"

        transport = httpx.ASGITransport(app=dispatcher)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            response = await client.get("/ocpi/versions")
            assert response.status_code == 200
            assert response.json() == {"app": "A", "path": "/ocpi/versions", "method": "GET", "state": "A"}
            response = await client.delete("/ocpi/2.2.1/x")
            assert response.json()["app"] == "B" and response.json()["state"] == "B"
            response = await client.get("/plain")
            assert response.text == "plain"
            response = await client.post("/ocpi/versions")
            assert response.status_code == 405
            assert response.json()["status_code"] == 2000
            assert response.json()["status_message"] == "Method not allowed"
            assert response.json()["timestamp"].endswith("Z")
            response = await client.get("/nothing/here")
            assert response.status_code == 404
            assert response.json()["status_message"] == "Not found"

        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, timeout=5)
        assert sent[-1]["type"] == "lifespan.shutdown.complete"

    asyncio.run(scenario())
