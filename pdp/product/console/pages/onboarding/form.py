"""The onboarding form's controls, and the tenant policy a filled form stands for.

Each control is one field of the tenant schema (pdp/schemas/tenant.schema.json): the GPU classes
and residencies offered are the fleet's. `read` turns the form's strings into the policy: numbers
that are not numbers are problems named by their field; everything else is left to the API's own
validation (`onboard_problems`), whose sentences name the field too. Pure: no I/O beyond reading
the packaged schema once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pdp.schemas import load_schema

# The choices the tenant schema allows, read from it rather than copied.
_TENANT = load_schema("tenant")["$defs"]["tenant"]["properties"]
TIERS: tuple[str, ...] = tuple(_TENANT["tier"]["enum"])
ISOLATIONS: tuple[str, ...] = tuple(_TENANT["isolation"]["enum"])
SLA_CLASSES: tuple[str, ...] = tuple(_TENANT["sla"]["properties"]["class"]["enum"])
YES_NO = (("no", "no"), ("yes", "yes"))
ENTITLEMENT = "entitlement_"  # the prefix of a GPU class's control: entitlement_H100-80GB

# What a new form holds before the admin types anything.
BLANK = {
    "name": "", "display_name": "", "tier": "standard", "isolation": "shared", "data_residency": "any",
    "allow_preemption": "no", "allow_gpu_sharing": "no", "namespaces": "", "sla_class": "",
    "sla_latency_p99_ms": "", "sla_availability": "", "sla_max_batch_size": "",
}  # fmt: skip


@dataclass(frozen=True)
class Control:
    """One control of the form and the tenant field (`path`, as the schema's problems name it)."""

    name: str
    label: str
    path: str
    kind: str = "text"  # text, number or select
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) of a select
    hint: str = ""
    step: str = "1"  # of a number: "any" for a decimal one
    required: bool = False


@dataclass(frozen=True)
class Group:
    legend: str
    controls: tuple[Control, ...]


@dataclass(frozen=True)
class Problem:
    """What is wrong, as a sentence naming the field, and the control it belongs to ("" if none)."""

    control: str
    sentence: str


@dataclass(frozen=True)
class Draft:
    policy: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)


def residencies(clusters: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """`any`, and `<jurisdiction>-only` for each jurisdiction of the fleet, labelled with its regions."""
    regions: dict[str, set[str]] = {}
    for cluster in clusters.values():
        jurisdiction = str(cluster.get("jurisdiction", ""))
        if jurisdiction:
            regions.setdefault(jurisdiction, set()).add(str(cluster.get("region", "")))
    every = sorted(r for rs in regions.values() for r in rs if r)
    offered = [("any", f"any ({', '.join(every)})" if every else "any")]
    for jurisdiction, rs in sorted(regions.items()):
        offered.append(
            (f"{jurisdiction.lower()}-only", f"{jurisdiction.lower()}-only ({', '.join(sorted(rs))})")
        )
    return tuple(offered)


def _pick(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((v, v) for v in values)


def groups(classes: tuple[str, ...], clusters: Mapping[str, Any]) -> tuple[Group, ...]:
    """The form's controls in fieldsets, for the fleet's GPU classes and clusters."""
    return (
        Group("Tenant", (
            Control("name", "Name", "tenant.name", required=True,
                    hint="lowercase letters, digits and -, at most 63 characters"),
            Control("display_name", "Display name (optional)", "tenant.display_name"),
        )),
        Group("Service level", (
            Control("tier", "Tier", "tenant.tier", "select", _pick(TIERS)),
            Control("isolation", "Isolation", "tenant.isolation", "select", _pick(ISOLATIONS),
                    hint="dedicated: pools of its own; shared: the fleet's shared pools"),
            Control("allow_preemption", "Allow preemption", "tenant.allow_preemption", "select", YES_NO),
            Control("allow_gpu_sharing", "Allow GPU sharing", "tenant.allow_gpu_sharing", "select", YES_NO),
            Control("sla_class", "SLA class", "tenant.sla", "select", (("", "no SLA"), *_pick(SLA_CLASSES))),
            Control("sla_latency_p99_ms", "SLA p99 latency in ms (optional)", "tenant.sla.latency_p99_ms",
                    "number", step="any"),
            Control("sla_availability", "SLA availability in % (optional)", "tenant.sla.availability",
                    "number", step="any"),
            Control("sla_max_batch_size", "SLA largest batch size (optional)", "tenant.sla.max_batch_size",
                    "number"),
        )),
        Group("Residency and namespaces", (
            Control("data_residency", "Data residency (its regions)", "tenant.data_residency", "select",
                    residencies(clusters)),
            Control("namespaces", "Namespaces", "tenant.namespaces", required=True,
                    hint="separated by commas, e.g. acme-prod, acme-staging"),
        )),
        Group("Entitlements: GPUs per GPU class (leave empty for none)", tuple(
            Control(f"{ENTITLEMENT}{c}", f"{c} GPUs", f"tenant.entitlements.{c}", "number") for c in classes
        )),
    )  # fmt: skip


def controls(of: tuple[Group, ...]) -> list[Control]:
    return [c for g in of for c in g.controls]


def _number(form: Mapping[str, str], name: str, path: str, whole: bool) -> tuple[float | int | None, str]:
    text = form.get(name, "").strip()
    if not text:
        return None, ""
    try:
        number = int(text) if whole else float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # "nan" and "inf" are floats, not numbers a person means
        return None, f"{path}: {text!r} is not a {'whole number' if whole else 'number'}"
    return number, ""


def _flag(form: Mapping[str, str], name: str) -> bool | str | None:
    text = form.get(name, "").strip()
    return {"yes": True, "no": False, "": None}.get(text, text)  # anything else: the schema says so


def read(form: Mapping[str, str], classes: tuple[str, ...]) -> Draft:
    """The tenant policy of a filled form, and the problems of the values that are not numbers."""
    policy: dict[str, Any] = {}
    problems: list[Problem] = []
    for name in ("name", "display_name", "tier", "isolation", "data_residency"):
        text = form.get(name, "").strip()
        if text:  # an empty required field is the schema's "is required"
            policy[name] = text
    for name in ("allow_preemption", "allow_gpu_sharing"):
        flag = _flag(form, name)
        if flag is not None:
            policy[name] = flag
    namespaces = [n.strip() for n in form.get("namespaces", "").replace(" ", ",").split(",") if n.strip()]
    if namespaces:
        policy["namespaces"] = namespaces
    entitlements: dict[str, int] = {}
    for c in classes:
        gpus, problem = _number(form, f"{ENTITLEMENT}{c}", f"tenant.entitlements.{c}", whole=True)
        if problem:
            problems.append(Problem(f"{ENTITLEMENT}{c}", problem))
        elif gpus is not None:
            entitlements[c] = int(gpus)
    if entitlements:
        policy["entitlements"] = entitlements
    elif not problems:
        first = f"{ENTITLEMENT}{classes[0]}" if classes else ""
        problems.append(Problem(first, "tenant.entitlements: enter the GPUs of at least one GPU class"))
    sla: dict[str, Any] = (
        {"class": form.get("sla_class", "").strip()} if form.get("sla_class", "").strip() else {}
    )
    for key, whole in (("latency_p99_ms", False), ("availability", False), ("max_batch_size", True)):
        value, problem = _number(form, f"sla_{key}", f"tenant.sla.{key}", whole)
        if problem:
            problems.append(Problem(f"sla_{key}", problem))
        elif value is not None:
            sla[key] = value
    if sla:
        policy["sla"] = sla
    return Draft(policy, problems)


def control_of(sentence: str, of: list[Control]) -> str:
    """The control a problem's sentence names: the one whose field is the longest that the sentence
    starts with ("tenant.namespaces[1]: ..." is the namespaces control's); "" if none."""
    best = ""
    best_length = 0
    for c in of:
        follows = sentence[len(c.path) : len(c.path) + 1]
        if len(c.path) > best_length and sentence.startswith(c.path) and follows in (" ", ":", "[", "."):
            best, best_length = c.name, len(c.path)
    if not best and sentence.startswith("tenant.entitlements"):
        best = next((c.name for c in of if c.name.startswith(ENTITLEMENT)), "")
    return best
