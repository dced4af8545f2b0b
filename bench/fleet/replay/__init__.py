"""The replay of a plan through a living fleet (run.py), what it records (results.py) and the
watches it keeps on the API server (watch.py)."""

from bench.fleet.replay.results import MAX_STALL_SECONDS, Failure, RunResult, Sample, refusal_reason
from bench.fleet.replay.run import Replay

__all__ = ["MAX_STALL_SECONDS", "Failure", "Replay", "RunResult", "Sample", "refusal_reason"]
