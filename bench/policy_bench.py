"""`opa bench` of the decision, per intent kind, for this checkout's policies and another revision,
alternating: OPA's prepared query as the server evaluates it, without HTTP or JSON.

    git archive <commit> policies | tar -x -C /tmp/before
    .venv/bin/python -m bench.policy_bench --before /tmp/before/policies [--rounds 2] [--no-scale]

Each revision's policies are built into a real bundle of the example fleet and of the generated
1,000-tenant / 10,000-node fleet (pdp.bundles.build, derived tables included: they come from the
policies), and each input of bench.policy_cost is run through `opa bench --benchmem
--optimize-store-for-read-speed` (the sidecar's store option). Prints, per round, revision, fleet
and input: the median and minimum of OPA's `timer_rego_query_eval_ns` and the allocations per
evaluation, which the load of a shared machine cannot skew. Rounds alternate the revisions so both
see the same load; the load average is printed with each round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.inputs import synthetic_config
from bench.policy_cost import EXAMPLES, ROOT, build, example_intents, scale_intents
from pdp.opa.binary import find_opa

QUERY = "data.gpupaas.decision.result"
TIMER = "histogram_timer_rego_query_eval_ns_"


def opa_bench(bundle: Path, intent: dict[str, Any], work: Path) -> dict[str, float]:
    path = work / "input.json"
    path.write_text(json.dumps(intent))
    argv = [str(find_opa()), "bench", "--bundle", str(bundle), "--input", str(path), "--benchmem"]
    argv += ["--optimize-store-for-read-speed", "--format", "json", QUERY]
    out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout)
    extra = out["Extra"]
    median, minimum = extra[TIMER + "median"] / 1000, extra[TIMER + "min"] / 1000
    return {"median": median, "min": minimum, "allocs": out["MemAllocs"] / out["N"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, required=True, help="the policies to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-scale", action="store_true", help="only the example fleet")
    args = parser.parse_args()
    revisions = {"before": args.before.resolve(), "after": ROOT / "policies"}
    with tempfile.TemporaryDirectory(prefix="policy-bench-") as tmp:
        work = Path(tmp)
        fleets = [("example", EXAMPLES / "tenants", EXAMPLES / "fleet.yaml", example_intents())]
        if not args.no_scale:
            scale = work / "scale"
            synthetic_config(scale)
            fleets.append(("1k tenants", scale / "tenants", scale / "fleet.yaml", scale_intents()))
        bundles = {}
        for rev, policies in revisions.items():
            for i, (fleet, tenants, fleet_file, _) in enumerate(fleets):
                bundles[rev, fleet] = build(tenants, fleet_file, work / f"{rev}-{i}", False, policies)[0]
        for round_ in range(1, args.rounds + 1):
            for rev in revisions:
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                print(f"== round {round_} {rev}, load average {load}", flush=True)
                for fleet, _, _, intents in fleets:
                    for name, intent in intents.items():
                        f = opa_bench(bundles[rev, fleet], intent, work)
                        print(
                            f"{fleet:10} {name:22} median {f['median']:6.0f} us  min {f['min']:6.0f} us"
                            f"  {f['allocs']:6.0f} allocs",
                            flush=True,
                        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
