"""One pod's `place_workload` question over its candidate nodes, one node per shape, asked with
the labels keys the extender gives it (whole or projected onto the keys the policy reads)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pdp.decision import Decision
from pdp.point import DECISION_PATH, DecideOptions, DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender.verdict import place_intent
from pdp.substrate.kubernetes.enforcement.shapes import (
    LabelsKey,
    group_by_shape,
    label_keys_read,
    shape_labels,
)


class PlacementQuestion:
    """One pod's `place_workload` question over its candidates, asked with the labels keys given
    (whole or projected): one node per shape."""

    def __init__(
        self,
        point: DecisionPoint,
        workload: dict[str, Any],
        names: Sequence[str],
        occupants: Mapping[str, list[str]] | None,
        alone: frozenset[str],
        deadline: float,
        caller: str | None,
    ) -> None:
        self.point = point
        self.caller = caller
        self.workload = workload
        self.names = names
        self.occupants = occupants
        self.alone = alone
        self.deadline = deadline
        self.shape_labels: dict[str, dict[str, str]] = {}  # first node of each shape -> labels sent

    def __call__(self, keys: Sequence[LabelsKey]) -> tuple[Decision, dict[str, list[str]]]:
        groups, labels = group_by_shape(self.names, keys, self.occupants, self.alone)
        shapes = []
        self.shape_labels = {first: shape_labels(labels[first]) for first in groups}
        for first in groups:
            shape: dict[str, Any] = {"name": first, "labels": self.shape_labels[first]}
            if self.occupants is not None:
                shape["namespaces"] = self.occupants.get(first, [])
            shapes.append(shape)
        options = DecideOptions(
            deadline=self.deadline, validated=True, entry_point="extender", principal=self.caller
        )
        return self.point.decide(place_intent(self.workload, shapes), options), groups

    def probe(self) -> tuple[bool, frozenset[str] | None]:
        """Whether the policy answered, and the node label keys it reports reading (None: none),
        asked on no node. Not a decision: it places nothing, so it is neither recorded nor
        counted."""
        budget = (self.deadline - time.monotonic()) / 2
        if budget <= 0:
            return False, None
        try:
            intent = place_intent(self.workload, [])
            result = self.point.engine.evaluate(DECISION_PATH, intent, timeout=budget)
        except Exception:  # an engine failure or bug: the keys are unknown, whole labels are sent
            return False, None
        return True, label_keys_read(result.get("constraints") if isinstance(result, Mapping) else None)
