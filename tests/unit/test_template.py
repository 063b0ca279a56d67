"""template.yaml is the single source of the stack: these checks keep code and template in step."""

from __future__ import annotations

import json
from pathlib import Path

from shared.local.template import load_template
from shared.modules import MODULES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTIONS = {k: v for k, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


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


def test_no_function_policy_uses_a_wildcard_action() -> None:
    for name, fn in FUNCTIONS.items():
        for policy in fn["Properties"].get("Policies", []):
            if isinstance(policy, dict) and "Statement" in policy:
                for st in policy["Statement"]:
                    actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                    assert not any(a == "*" or a.endswith(":*") for a in actions), name


def test_table_is_on_demand_encrypted_and_recoverable() -> None:
    props = TEMPLATE["Resources"]["OcpiTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True


# ------------------------------------------------------------------ billing runs
RESOURCES = TEMPLATE["Resources"]


def test_billing_schedules_daily_and_monthly_in_their_time_zone() -> None:
    params = TEMPLATE["Parameters"]
    for logical_id, cadence, param in (
        ("BillingDailyRun", "daily", "BillingDailySchedule"),
        ("BillingMonthlyRun", "monthly", "BillingMonthlySchedule"),
    ):
        props = RESOURCES[logical_id]["Properties"]
        assert RESOURCES[logical_id]["Type"] == "AWS::Scheduler::Schedule"
        assert props["ScheduleExpression"] == {"Ref": param}
        assert params[param]["Default"].startswith("cron(")
        assert props["ScheduleExpressionTimezone"] == {"Ref": "BillingTimezone"}
        target = props["Target"]
        assert target["Arn"] == {"Fn::GetAtt": ["ClearingQueue", "Arn"]}
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ClearingDeadLetterQueue", "Arn"]}
        assert (
            json.loads(target["Input"].replace("<aws.scheduler.scheduled-time>", "t"))["cadence"] == cadence
            and "<aws.scheduler.scheduled-time>" in target["Input"]
        )
    for name in ("BillingTimezone", "BillingGraceHours", "BillingSliceHours", "BillingSliceMaxCdrs"):
        assert name in params
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
    assert {"StatementsBucketName", "ClearingQueueUrl"} <= set(TEMPLATE["Outputs"])


def test_clearing_queue_has_a_dead_letter_queue_and_alarms() -> None:
    redrive = RESOURCES["ClearingQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ClearingDeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "BillingMaxAttempts"},
    }
    dlq_alarm = RESOURCES["ClearingDeadLetterAlarm"]["Properties"]
    assert dlq_alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["ClearingDeadLetterQueue", "QueueName"]}
    assert dlq_alarm["Threshold"] == 0 and dlq_alarm["ComparisonOperator"] == "GreaterThanThreshold"
    errors = RESOURCES["BillingWorkerErrorsAlarm"]["Properties"]
    assert errors["MetricName"] == "Errors" and errors["Dimensions"][0]["Value"] == {
        "Ref": "BillingWorkerFunction"
    }


def test_billing_worker_is_a_batch_consumer_with_least_privilege() -> None:
    props = FUNCTIONS["BillingWorkerFunction"]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ClearingQueue", "Arn"]}
    assert props["Timeout"] <= 900
    source = (ROOT / props["CodeUri"] / "app.py").read_text()
    assert "BatchProcessor" in source and "import fastapi" not in source and "from fastapi" not in source
    statements = [
        st for p in props["Policies"] if isinstance(p, dict) and "Statement" in p for st in p["Statement"]
    ]
    for st in statements:  # its own table, bucket and queue; never a wildcard resource
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        assert all(r != "*" for r in resources)
        assert all(
            ("OcpiTable" in str(r)) or ("StatementsBucket" in str(r)) or ("ClearingQueue" in str(r))
            for r in resources
        )


def test_table_has_the_billing_index() -> None:
    gsis = {g["IndexName"]: g for g in RESOURCES["OcpiTable"]["Properties"]["GlobalSecondaryIndexes"]}
    assert [k["AttributeName"] for k in gsis["GSI3"]["KeySchema"]] == ["GSI3PK", "GSI3SK"]
