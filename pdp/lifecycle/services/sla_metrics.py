"""The SLA checks' metrics on the worker's `/metrics` (`gpupaas_sla_*`).

Like the worker's other metrics, every label is a closed set (tier, objective, alert severity,
action), so no tenant's name reaches an unauthenticated scraper: per tenant and deployment figures
are on `GET /v1/sla`, behind a token.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

from pdp.telemetry.sla import SlaReport

CHECKS = Counter("gpupaas_sla_checks", "SLA checks made (periodic and POST /v1/sla/check)", ["result"])
ALERTS = Gauge(
    "gpupaas_sla_alerts",
    "Burn-rate alerts firing at the last SLA check, per tier, objective and severity",
    ["tier", "objective", "severity"],
)
MEASURED = Gauge("gpupaas_sla_deployments_measured", "Deployments whose SLA the last check measured")
LAST_CHECK = Gauge("gpupaas_sla_last_check_timestamp_seconds", "When the last SLA check measured")
ESCALATIONS = Counter(
    "gpupaas_sla_escalations", "SLA escalations ended, per tier and outcome", ["tier", "outcome"]
)
CREDITED = Counter(
    "gpupaas_sla_credit_percent", "SLA credits recorded, in percent of a deployment's charge", ["tier"]
)
_TIERS = ("enterprise", "standard", "spot")


def observe(report: SlaReport) -> None:
    firing: dict[tuple[str, str, str], int] = {}
    for row in report.rows:
        for alert in row.alerts:
            key = (row.tier if row.tier in _TIERS else "unknown", alert["objective"], alert["severity"])
            firing[key] = firing.get(key, 0) + 1
    for tier in (*_TIERS, "unknown"):
        for objective in ("latency", "availability"):
            for severity in ("fast", "slow"):
                ALERTS.labels(tier, objective, severity).set(firing.get((tier, objective, severity), 0))
    MEASURED.set(len(report.rows))
    LAST_CHECK.set(time.time())
    CHECKS.labels("measured").inc()


def failed_check() -> None:
    CHECKS.labels("prometheus_error").inc()


def escalated(tier: str, outcome: str, credit_percent: float) -> None:
    tier = tier if tier in _TIERS else "unknown"
    ESCALATIONS.labels(tier, outcome).inc()
    if credit_percent:
        CREDITED.labels(tier).inc(credit_percent)
