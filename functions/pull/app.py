"""Pull function: the scheduled recovery path for missed pushes (shared/services/pull.py).

Invoked by EventBridge Scheduler (template.yaml `PullFunction`, `PullSchedule`) with
`{"incremental": true}`, or by hand with

    {"partner_id": "<optional: one partner>", "modules": ["locations", ...], "incremental": false}

For every REGISTERED partner (or the one given), every module it offers as Sender that one of our
parties receives (locations, tariffs, sessions and CDRs from CPOs, tokens from eMSPs; `modules`
narrows this) is pulled and stored as a push would be. One partner's (or module's) failure is
logged, counted and reported in the result; the others go on. New pulls stop being started when less than
TIME_RESERVE_MS of the invocation is left; they are reported as `skipped`.

Result: {"incremental": bool, "pulled": [{"partner_id", "module", "fetched", "created", "updated",
"stale", "rejected"}], "failed": [{"partner_id", "module", "error", ...partial counts}],
"skipped": [{"partner_id", "module"}]}.

A background function: no FastAPI app, no HTTP server. Never logs token uids.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from shared.errors import OcpiError
from shared.logs import log_context, logger, party_label
from shared.metrics import metrics
from shared.services import pull
from shared.services.credentials import STATUS_REGISTERED
from shared.store import get_store

TIME_RESERVE_MS = 60_000


def parse_event(event: Any) -> tuple[str | None, list[str] | None, bool]:
    """(partner_id, modules, incremental) of an invocation; a malformed event is a ValueError
    (a configuration mistake: the invocation fails loudly)."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise ValueError("the pull event must be a JSON object")
    partner_id = event.get("partner_id")
    if partner_id is not None and (not isinstance(partner_id, str) or not partner_id):
        raise ValueError("partner_id must be a non-empty string")
    modules = event.get("modules")
    if modules is not None and (not isinstance(modules, list) or any(m not in pull.MODULES for m in modules)):
        raise ValueError(f"modules must be a list of {', '.join(pull.MODULES)}")
    incremental = event.get("incremental", False)
    if not isinstance(incremental, bool):
        raise ValueError("incremental must be true or false")
    return partner_id, modules, incremental


def _partners(store: Any, partner_id: str | None, result: dict[str, Any]) -> list[dict[str, Any]]:
    if partner_id is None:
        return [p for p in store.list_partners() if p.get("status") == STATUS_REGISTERED]
    try:
        return [pull.registered_partner(store, partner_id)]
    except OcpiError as err:
        result["failed"].append({"partner_id": partner_id, "module": None, "error": err.message})
        metrics.add_metric(name="PullFailures", unit=MetricUnit.Count, value=1)
        return []


def _time_left(context: Any) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return float(getter()) if callable(getter) else float("inf")


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # never the event: bodies may hold token uids
def handler(event: Any, context: Any) -> dict[str, Any]:
    partner_id, modules, incremental = parse_event(event)
    store = get_store()
    result: dict[str, Any] = {"incremental": incremental, "pulled": [], "failed": [], "skipped": []}
    for partner in _partners(store, partner_id, result):
        pid = partner["partner_id"]
        wanted = [m for m in pull.pullable_modules(partner) if modules is None or m in modules]
        for module in wanted:
            if _time_left(context) < TIME_RESERVE_MS:
                result["skipped"].append({"partner_id": pid, "module": module})
                continue
            try:
                # These keys also reach the lines of the client calling the partner.
                with log_context(partner=party_label(partner, pid), partner_id=pid, ocpi_module=module):
                    counts = pull.pull(store, pid, module, incremental=incremental)
            except OcpiError as err:
                logger.warning(
                    "pull of a partner failed",
                    extra={"partner_id": pid, "ocpi_module": module, "error": err.message[:300]},
                )
                partial = err.data if isinstance(err.data, dict) else {}
                result["failed"].append(
                    {"partner_id": pid, "module": module, "error": err.message, **partial}
                )
                metrics.add_metric(name="PullFailures", unit=MetricUnit.Count, value=1)
                continue
            except Exception as err:  # one partner's trouble must not stop the others
                logger.exception("pull of a partner failed", extra={"partner_id": pid, "ocpi_module": module})
                result["failed"].append(
                    {"partner_id": pid, "module": module, "error": f"{type(err).__name__}: {err}"[:300]}
                )
                metrics.add_metric(name="PullFailures", unit=MetricUnit.Count, value=1)
                continue
            result["pulled"].append({"partner_id": pid, "module": module, **counts})
            for name in pull.COUNTS:
                metrics.add_metric(
                    name=f"Pulled{name.capitalize()}", unit=MetricUnit.Count, value=counts[name]
                )
    logger.info(
        "pull run done",
        extra={
            "incremental": incremental,
            "pulled": len(result["pulled"]),
            "failed": len(result["failed"]),
            "skipped": len(result["skipped"]),
        },
    )
    return result
