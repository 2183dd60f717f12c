"""Per-flow health monitoring: the AZTP documentation's ``FlowHealthMonitor``, working.

The documentation's monitor checks a hard-coded list of identities because listing a flow's
members "would require additional API". Here ``get_flow`` lists them, so the monitor checks
the real members: each must verify *in the flow* and be active. The security score is the
share of valid members: healthy >= 90 %, warning >= 70 %, otherwise critical. The monitor's
answer is then compared with the built-in ``get_flow_health(flow_id)``.

(The official client's ``flow_health()`` takes no argument and asks whether the flow service
is up; it keeps that meaning here.)

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/flow_health.py
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from datetime import datetime, timezone
from typing import Any

from aztp_agents import Aztp


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class FlowHealthMonitor:
    """Monitor health and security status of identity flows."""

    def __init__(self, client: Aztp) -> None:
        self.client = client

    async def monitor_flow_health(self, flow_id: str) -> dict[str, Any]:
        report: dict[str, Any] = {
            "flow_id": flow_id,
            "timestamp": now(),
            "status": "unknown",
            "identities": {},
            "security_score": 0.0,
            "issues": [],
        }
        try:
            flow = await self.client.get_flow(flow_id)
            members = [m["aztpId"] for m in flow["identities"]]
            valid_count = 0
            for aztp_id in members:
                is_valid = await self.client.verify_identity_by_aztp_id(
                    aztp_id, identity_flow_id=flow_id
                )
                data = json.loads(await self.client.get_identity_by_aztp_id(aztp_id))["data"]
                report["identities"][aztp_id] = {
                    "valid": is_valid,
                    "status": data["status"],
                    "last_verified": now(),
                }
                if is_valid and data["status"] == "active":
                    valid_count += 1
                else:
                    report["issues"].append(f"Identity issue: {aztp_id}")
            report["security_score"] = valid_count / len(members) * 100 if members else 100.0
            score = report["security_score"]
            report["status"] = (
                "healthy" if score >= 90 else "warning" if score >= 70 else "critical"
            )
        except Exception as exc:
            report["status"] = "error"
            report["issues"].append(f"Health check failed: {exc}")
        return report

    async def monitor_all_flows(self, flow_ids: list[str]) -> dict[str, Any]:
        reports = await asyncio.gather(*(self.monitor_flow_health(f) for f in flow_ids))
        counts = {"healthy": 0, "warning": 0, "critical": 0}
        for report in reports:
            counts[
                "healthy"
                if report["status"] == "healthy"
                else "warning"
                if report["status"] == "warning"
                else "critical"
            ] += 1
        overall = (
            "critical" if counts["critical"] else "warning" if counts["warning"] else "healthy"
        )
        return {
            "monitoring_timestamp": now(),
            "total_flows": len(flow_ids),
            "overall_status": overall,
            "flow_reports": dict(zip(flow_ids, reports, strict=True)),
            "summary_metrics": {f"{k}_flows": v for k, v in counts.items()}
            | {"health_percentage": counts["healthy"] / len(flow_ids) * 100 if flow_ids else 0.0},
        }


async def build_flows(client: Aztp) -> dict[str, str]:
    """Three production flows: all valid; one member revoked in the flow; one revoked globally."""
    layout = {
        "user-authentication-flow": ["auth-api", "token-service", "session-store", "mfa-service"],
        "payment-processing-flow": ["payment-api", "fraud-check", "ledger", "notifier"],
        "ai-recommendation-flow": ["recommender", "feature-store"],
    }
    flow_ids = {}
    for name, services in layout.items():
        flow = await client.create_flow(
            name, description=f"{name} (production)", discoverable="public", tags=["production"]
        )
        for service in services:
            agent = await client.secure_connect({}, service, config={"isGlobalIdentity": False})
            await client.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)
        flow_ids[name] = flow["_id"]
    fraud = "aztp://astha.ai/workload/production/node/fraud-check"
    await client.revoke_flow_identity(
        fraud, flow_ids["payment-processing-flow"], reason="model drift"
    )
    await client.revoke_identity(
        "aztp://astha.ai/workload/production/node/feature-store", reason="leaked key"
    )
    return flow_ids


async def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="astha.ai")
    print("Flow service:", (await client.flow_health())["message"])
    flow_ids = await build_flows(client)

    monitor = FlowHealthMonitor(client)
    report = await monitor.monitor_all_flows([*flow_ids.values(), "000000000000000000000000"])
    names = {v: k for k, v in flow_ids.items()}
    print("\nProduction Flow Monitoring Report:")
    for flow_id, flow_report in report["flow_reports"].items():
        print(
            f"   {names.get(flow_id, flow_id):<26} {flow_report['status']:<9} "
            f"score {flow_report['security_score']:5.1f} %  issues: {flow_report['issues']}"
        )
    metrics = report["summary_metrics"]
    print(f"   Overall Status: {report['overall_status']}")
    print(f"   Health Percentage: {metrics['health_percentage']:.1f}%")
    print(
        f"   Healthy Flows: {metrics['healthy_flows']}  Warning Flows: {metrics['warning_flows']}  "
        f"Critical Flows: {metrics['critical_flows']}"
    )
    if report["overall_status"] == "critical":
        print("CRITICAL: production flows have security issues!")

    print("\nThe built-in per-flow health (get_flow_health) agrees:")
    for name, flow_id in flow_ids.items():
        health = await client.get_flow_health(flow_id)
        print(
            f"   {name:<26} {health['status']:<9} {health['valid']}/{health['total']} valid  {health['issues']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
