"""The Slurm adapter: makes the objects of accounts.py true in slurmdbd with `sacctmgr -i`.

It has the lifecycle's Adapter shape (apply, delete, exists, gone), so onboarding, quota changes
and offboarding drive it like the Kubernetes adapter, with the same retries and compensation.
Every operation reads the current state first and changes only the difference, so applying an
object twice changes nothing and a retried step finishes what a crashed one began.

`exists` is strict: the associations exist when slurmdbd holds exactly the rendered QOS, limits
and user-partition pairs, so the lifecycle's verification step fails (and retries) on drift.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 30.0


class SlurmCommandFailed(RuntimeError):
    """A Slurm command exited with an error; the message holds the command and what it printed."""


def _where(conditions: str) -> list[str]:
    """`where` and its conditions as separate arguments, the way sacctmgr reads them."""
    return ["where", *conditions.split()]


def _tres_text(limits: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(limits.items()))


def _parse_tres(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.rpartition("=")
        out[key] = int(value)
    return out


class SlurmAdapter:
    def __init__(
        self, slurm_conf: Path, cluster: str, *, bin_dir: Path | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> None:
        self.slurm_conf = Path(slurm_conf)
        self.cluster = cluster
        self.bin_dir = bin_dir
        self.timeout = timeout
        self._env = {**os.environ, "SLURM_CONF": str(self.slurm_conf)}
        # The changing commands run, in order: what a caller reports as changed (empty: nothing was).
        self.changes: list[str] = []

    # -- commands ---------------------------------------------------------------------------

    def run(self, program: str, *args: str, check: bool = True) -> str:
        path = str(self.bin_dir / program) if self.bin_dir else program
        argv = [path, *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=self.timeout, env=self._env, check=False
        )
        if check and done.returncode != 0:
            raise SlurmCommandFailed(
                f"{' '.join(argv)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def sacctmgr(self, *args: str) -> str:
        """A changing sacctmgr command (reads go through `rows`)."""
        out = self.run("sacctmgr", "-i", *args)
        self.changes.append(" ".join(["sacctmgr", *args]))
        return out

    def rows(self, *args: str) -> list[list[str]]:
        """`sacctmgr show ...` as rows of fields (parsable, no header)."""
        out = self.run("sacctmgr", "-nP", "show", *args)
        return [line.split("|") for line in out.splitlines() if line.strip()]

    # -- reads ------------------------------------------------------------------------------

    def ensure_cluster(self) -> None:
        if not self.rows("cluster", *_where(f"cluster={self.cluster}"), "format=cluster"):
            self.sacctmgr("add", "cluster", self.cluster)

    def _account(self, name: str) -> list[str] | None:
        found = self.rows("account", *_where(f"name={name}"), "format=account,description,organization")
        return found[0] if found else None

    def _qos(self, name: str) -> list[str] | None:
        found = self.rows("qos", *_where(f"name={name}"), "format=name,priority,preempt,preemptmode")
        return found[0] if found else None

    def _account_association(self, account: str) -> tuple[str, str, dict[str, int]] | None:
        """(QOS list, default QOS, GrpTRES) of the account's own association."""
        for user, qos, default_qos, tres in self.rows(
            "association",
            *_where(f"account={account} cluster={self.cluster}"),
            "format=user,qos,defaultqos,grptres",
        ):
            if not user:
                return qos, default_qos, _parse_tres(tres)
        return None

    def _user_partitions(self, account: str) -> set[tuple[str, str]]:
        return {
            (user, partition)
            for user, partition in self.rows(
                "association", *_where(f"account={account} cluster={self.cluster}"), "format=user,partition"
            )
            if user
        }

    # -- Adapter ----------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any]) -> None:
        kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
        if kind == "SlurmQos":
            self._apply_qos(name, spec)
        elif kind == "SlurmAccount":
            self._apply_account(name, spec)
        elif kind == "SlurmAssociations":
            self._apply_associations(spec)
        else:
            raise ValueError(f"the Slurm adapter does not handle kind {kind!r}")

    def _apply_qos(self, name: str, spec: Mapping[str, Any]) -> None:
        settings = [
            f"Priority={spec['priority']}",
            f"Preempt={','.join(spec['preempt'])}" if spec["preempt"] else "Preempt=",
            f"PreemptMode={spec['preempt_mode']}",
        ]
        if self._qos(name) is None:
            self.sacctmgr("add", "qos", name, *settings)
        elif not self._qos_matches(name, spec):
            self.sacctmgr("modify", "qos", *_where(f"name={name}"), "set", *settings)

    def _qos_matches(self, name: str, spec: Mapping[str, Any]) -> bool:
        found = self._qos(name)
        if found is None:
            return False
        _, priority, preempt, mode = found
        return (
            int(priority) == int(spec["priority"])
            and sorted(filter(None, preempt.split(","))) == sorted(spec["preempt"])
            and mode.lower() == str(spec["preempt_mode"]).lower()
        )

    def _apply_account(self, name: str, spec: Mapping[str, Any]) -> None:
        settings = [f"Description={spec['description']}", f"Organization={spec['organization']}"]
        found = self._account(name)
        if found is None:
            self.sacctmgr("add", "account", name, f"Cluster={self.cluster}", *settings)
        # slurmdbd keeps descriptions and organizations in lower case.
        elif [v.lower() for v in found[1:]] != [
            str(spec["description"]).lower(),
            str(spec["organization"]).lower(),
        ]:
            self.sacctmgr("modify", "account", *_where(f"name={name}"), "set", *settings)

    def _apply_associations(self, spec: Mapping[str, Any]) -> None:
        account = str(spec["account"])
        if self._account(account) is None:
            raise SlurmCommandFailed(f"account {account!r} does not exist yet (apply the SlurmAccount first)")
        qos = str(spec["qos"])
        current = self._account_association(account)
        wanted_tres = {k: int(v) for k, v in spec["grp_tres"].items()}
        if current is None or (current[0], current[1]) != (qos, qos) or current[2] != wanted_tres:
            # Limits that are no longer wanted are cleared with -1.
            cleared = {k: -1 for k in (current[2] if current else {}) if k not in wanted_tres}
            self.sacctmgr(
                "modify",
                "account",
                *_where(f"name={account} cluster={self.cluster} user="),
                "set",
                f"QOS={qos}",
                f"DefaultQOS={qos}",
                f"GrpTRES={_tres_text({**cleared, **wanted_tres})}",
            )
        wanted = {(u, p) for u in spec["users"] for p in spec["partitions"]}
        have = self._user_partitions(account)
        for user, partition in sorted(have - wanted):
            self._delete_user_association(account, user, partition)
        for user in sorted({u for u, _ in wanted - have}):
            parts = sorted(p for u, p in wanted - have if u == user)
            self.sacctmgr(
                "add",
                "user",
                user,
                f"Account={account}",
                f"Cluster={self.cluster}",
                f"Partition={','.join(parts)}",
            )

    def _delete_user_association(self, account: str, user: str, partition: str) -> None:
        self.run("scancel", f"--account={account}", f"--user={user}", f"--partition={partition}", check=False)
        where = f"name={user} account={account} cluster={self.cluster} partition={partition}"
        self.sacctmgr("delete", "user", *_where(where))

    def delete(self, obj: Mapping[str, Any]) -> None:
        kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
        if kind == "SlurmQos":
            if self._qos(name) is not None:
                self.sacctmgr("delete", "qos", *_where(f"name={name}"))
        elif kind == "SlurmAccount":
            if self._account(name) is not None:
                # Running and pending jobs hold the account; sacctmgr refuses while they exist,
                # and the lifecycle retries the step until scancel has taken effect.
                self.run("scancel", f"--account={name}", check=False)
                self.sacctmgr("delete", "account", *_where(f"name={name}"))
        elif kind == "SlurmAssociations":
            account = str(spec["account"])
            for user, partition in sorted(self._user_partitions(account)):
                self._delete_user_association(account, user, partition)
            current = self._account_association(account)
            if current is not None and current[2]:
                self.sacctmgr(
                    "modify",
                    "account",
                    *_where(f"name={account} cluster={self.cluster} user="),
                    "set",
                    f"GrpTRES={_tres_text(dict.fromkeys(current[2], -1))}",
                )
        else:
            raise ValueError(f"the Slurm adapter does not handle kind {kind!r}")

    def exists(self, obj: Mapping[str, Any]) -> bool:
        kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
        if kind == "SlurmQos":
            return self._qos_matches(name, spec)
        if kind == "SlurmAccount":
            return self._account(name) is not None
        if kind == "SlurmAssociations":
            account = str(spec["account"])
            current = self._account_association(account)
            wanted = {(u, p) for u in spec["users"] for p in spec["partitions"]}
            return (
                current is not None
                and (current[0], current[1]) == (spec["qos"], spec["qos"])
                and current[2] == {k: int(v) for k, v in spec["grp_tres"].items()}
                and self._user_partitions(account) == wanted
            )
        raise ValueError(f"the Slurm adapter does not handle kind {kind!r}")

    def gone(self, obj: Mapping[str, Any]) -> bool:
        kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
        if kind == "SlurmQos":
            return self._qos(name) is None
        if kind == "SlurmAccount":
            return self._account(name) is None
        if kind == "SlurmAssociations":
            account = str(spec["account"])
            return self._account(account) is None or not self._user_partitions(account)
        raise ValueError(f"the Slurm adapter does not handle kind {kind!r}")

    def apply_all(self, objs: Sequence[Mapping[str, Any]]) -> None:
        for obj in objs:
            self.apply(obj)
