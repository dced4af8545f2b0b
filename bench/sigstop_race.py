"""How often does a decision sent right after `kill(OPA, SIGSTOP)` still get an answer (an ALLOW)?

    .venv/bin/python -m bench.sigstop_race --rounds 100 --hogs 4          # kill() and go
    .venv/bin/python -m bench.sigstop_race --rounds 100 --hogs 4 --wait   # wait for the stop

SIGSTOP is asynchronous for a multi-threaded process: one thread takes it and stops the others when
it next runs, so OPA's other threads may answer for a while after kill() returned. This measures
that window the way the fail-closed tests met it (docs/reliability.md): the embedded stack on the
examples, an ALLOW intent, OPA stopped, one decision with a 0.25 s deadline, OPA continued.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pdp.embedded import EmbeddedPDP, EmbeddedSettings
from pdp.opa.binary import PROJECT_ROOT
from pdp.point import DecideOptions

INTENT = PROJECT_ROOT / "examples" / "intents" / "01-acme-eu-deploy-eu.json"


def threads_stopped(pid: int) -> bool:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            continue
    return bool(states) and all(s == "T" for s in states)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--hogs", type=int, default=4, help="busy-loop processes beside the test")
    parser.add_argument("--wait", action="store_true", help="wait until every OPA thread has stopped")
    args = parser.parse_args()
    intent = json.loads(INTENT.read_text())
    with tempfile.TemporaryDirectory(prefix="sigstop-race-") as tmp:
        root = Path(tmp)
        shutil.copytree(PROJECT_ROOT / "examples", root / "examples")
        settings = EmbeddedSettings.from_project(
            root, policies=PROJECT_ROOT / "policies", keys=root / "keys", decision_log=None
        )
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
        allows = not_stopped = late = 0
        try:
            with EmbeddedPDP(settings) as stack:
                assert stack.sidecar is not None
                for _ in range(args.rounds):
                    stack.point.decide(intent)
                    pid = stack.sidecar.pid
                    assert pid is not None
                    os.kill(pid, signal.SIGSTOP)
                    if args.wait:
                        while not threads_stopped(pid):
                            time.sleep(0.001)
                    elif not threads_stopped(pid):
                        not_stopped += 1
                    try:
                        started = time.monotonic()
                        decision = stack.point.decide(intent, DecideOptions(deadline=started + 0.25))
                        late += time.monotonic() - started >= 0.25
                    finally:
                        os.kill(pid, signal.SIGCONT)
                    allows += decision.outcome == "ALLOW"
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    print(
        f"rounds {args.rounds}, hogs {args.hogs}, wait for the stop: {args.wait}: "
        f"{allows} ALLOW while OPA was sent SIGSTOP; {not_stopped} rounds with OPA threads still "
        f"running after kill() returned; {late} DENY later than the 0.25 s deadline"
    )
    return 1 if allows else 0


if __name__ == "__main__":
    sys.exit(main())
