"""template.yaml is the single source of the stack: these checks keep code and template in step."""

from __future__ import annotations

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
