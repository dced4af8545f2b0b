"""What the decision commands print and the exit status they end with."""

from __future__ import annotations

import json
import sys
from typing import Any

# `pdp decide` and `pdp check-plan`: 0 ALLOW, 1 DENY, 3 NEEDS_APPROVAL, 2 a malformed intent or usage.
EXIT_STATUS = {"ALLOW": 0, "DENY": 1, "NEEDS_APPROVAL": 3}
EXIT_USAGE = 2


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
