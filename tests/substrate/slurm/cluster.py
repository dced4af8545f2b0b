"""A real Slurm cluster on loopback for the tests, as the current user: munged with its own key and
socket, MariaDB in a temporary datadir on its own socket and port, slurmdbd, slurmctld, and one
slurmd per node of the fleet (NodeName=... Port=...), every file under one temporary folder.

Debian's slurm-wlm 22.05, installed by scripts/setup-slurm. Every daemon runs in the foreground as
a child of the test process, so stopping kills exactly what was started.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdp.substrate.slurm import accounts, lua
from pdp.substrate.slurm import fleet as slurm_fleet
from pdp.substrate.slurm.adapter import SlurmAdapter
from tests.ports import free_port

CLUSTER = "gpupaas"
PROGRAMS = (
    *("munged", "mariadbd", "mariadb-install-db", "mariadb"),
    *("slurmdbd", "slurmctld", "slurmd", "sbatch", "sacctmgr", "scontrol"),
)
SBIN = (Path("/usr/sbin"), Path("/usr/bin"))


def find(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for folder in SBIN:
        if (folder / program).exists():
            return str(folder / program)
    return None


def missing_programs() -> list[str]:
    missing = [p for p in PROGRAMS if find(p) is None]
    if not Path("/usr/share/lua/5.1/socket.lua").exists():
        missing.append("lua-socket (5.1)")
    if not list(Path("/usr/lib").glob("*/lua/5.1/cjson.so")):
        missing.append("lua-cjson (5.1)")
    return missing


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{tail}")
        time.sleep(0.1)


@dataclass
class SlurmCluster:
    root: Path
    fleet: Mapping[str, Any]
    hook: lua.HookSettings | None = None
    user: str = field(default_factory=getpass.getuser)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.etc = self.root / "etc"
        self.state = self.root / "state"
        self.logs = self.root / "log"
        self.munge_socket = self.root / "munge" / "munge.sock"
        self.db_socket = self.root / "db" / "mysql.sock"
        self.jobs = self.root / "jobs"
        # slurmstepd's Unix sockets live in the spool folder and their path must stay under 108
        # bytes, which a pytest temporary folder already nearly is.
        self.spool = Path(tempfile.mkdtemp(prefix="slurmd-", dir="/tmp"))
        self.nodes = [n for p in slurm_fleet.partitions(self.fleet) for n in p.nodes]
        self.ports = {
            "db": free_port(),
            "dbd": free_port(),
            "ctld": free_port(),
            **{n: free_port() for n in self.nodes},
        }
        self.env = {**os.environ, "SLURM_CONF": str(self.etc / "slurm.conf")}
        self.adapter = SlurmAdapter(self.etc / "slurm.conf", CLUSTER)

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        log = open(self.logs / f"{name}.out", "ab")  # noqa: SIM115 (closed with the process)
        self.processes[name] = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()

    def _alive(self, name: str) -> bool:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            out = (self.logs / f"{name}.out").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited ({process.returncode if process else '?'}):\n{out}")
        return True

    def run(self, *argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr or done.stdout}")
        return done

    # -- configuration -----------------------------------------------------------------------

    def write_config(self) -> None:
        folders = [self.etc, self.state, self.logs, self.jobs]
        folders += [self.munge_socket.parent, self.db_socket.parent]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            (self.spool / node).mkdir(parents=True, exist_ok=True)
        hostname = socket.gethostname().split(".")[0]
        slurm_conf = f"""\
ClusterName={CLUSTER}
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={self.ports["ctld"]}
SlurmUser={self.user}
SlurmdUser={self.user}
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={self.state}/ctld
SlurmdSpoolDir={self.spool}/%n
SlurmctldPidFile={self.state}/slurmctld.pid
SlurmdPidFile={self.state}/slurmd-%n.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
PreemptType=preempt/qos
PreemptMode=REQUEUE
KillWait=2
MinJobAge=600
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["dbd"]}
AccountingStoragePass={self.munge_socket}
AccountingStorageEnforce=associations,limits,qos
JobSubmitPlugins={"lua" if self.hook else ""}
SlurmctldDebug=info
SlurmdDebug=info
"""
        # Every slurmd reports this machine's CPUs and memory: the nodes declare no more.
        settings = slurm_fleet.NodeSettings(
            cpus=min(os.cpu_count() or 1, 4),
            memory_mb=1000,
            hostname=hostname,
            address="127.0.0.1",
            ports={n: self.ports[n] for n in self.nodes},
        )
        (self.etc / "slurm.conf").write_text(slurm_conf + slurm_fleet.slurm_conf_fleet(self.fleet, settings))
        (self.etc / "gres.conf").write_text(
            slurm_fleet.gres_conf(self.fleet, f"{self.root}/dev/{{node}}/nvidia[0-{{last}}]")
        )
        self._make_devices()
        dbd = self.etc / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports["dbd"]}
SlurmUser={self.user}
LogFile={self.logs}/slurmdbd.log
PidFile={self.state}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["db"]}
StorageUser=slurm
StoragePass=slurm-test
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)  # slurmdbd refuses a config others can read (it holds the password)
        if self.hook:
            lua.install(self.etc, self.fleet, self.hook)

    def _make_devices(self) -> None:
        """Stand-in GPU device files: character devices with NVIDIA's major number where this user
        may make them (root), plain files elsewhere (slurmd then logs that they are no devices,
        and counts them all the same). No job opens them: TaskPlugin=task/none."""
        for p in slurm_fleet.partitions(self.fleet):
            for node in p.nodes:
                folder = self.root / "dev" / node
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(p.gpus_per_node):
                    path = folder / f"nvidia{i}"
                    if path.exists():
                        continue
                    try:
                        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(195, i))
                    except PermissionError:
                        path.touch()

    # -- start / stop ------------------------------------------------------------------------

    def start(self) -> SlurmCluster:
        self.write_config()
        try:
            self._start_munge()
            self._start_mariadb()
            self._start_slurmdbd()
            self._start_slurmctld()
            self._start_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        key = self.munge_socket.parent / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket.parent.chmod(0o755)
        self._spawn(
            "munged",
            [
                find("munged") or "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.munge_socket.parent}/munged.pid",
                f"--log-file={self.logs}/munged.log",
                f"--seed-file={self.munge_socket.parent}/munged.seed",
            ],
        )
        wait_for("munged", lambda: self._alive("munged") and self.munge_socket.exists(), 20)

    def _start_mariadb(self) -> None:
        datadir = self.db_socket.parent / "data"
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        self.run(
            find("mariadb-install-db") or "mariadb-install-db",
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            *as_root,
            timeout=120,
        )
        self._spawn(
            "mariadbd",
            [
                find("mariadbd") or "mariadbd",
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={self.db_socket}",
                f"--port={self.ports['db']}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                f"--pid-file={self.db_socket.parent}/mariadb.pid",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=32M",
                "--innodb-lock-wait-timeout=900",
                "--performance-schema=off",
                *as_root,
            ],
        )

        def answers() -> bool:
            self._alive("mariadbd")
            return self.sql("SELECT 1", check=False).returncode == 0

        wait_for("mariadbd", answers, 60, self.logs / "mariadbd.out")
        self.sql(
            "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-test'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )

    def sql(self, statement: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        client = find("mariadb") or "mariadb"
        return self.run(
            client, "--no-defaults", f"--socket={self.db_socket}", "-uroot", "-e", statement, check=check
        )

    def _start_slurmdbd(self) -> None:
        self._spawn("slurmdbd", [find("slurmdbd") or "slurmdbd", "-D"])

        def answers() -> bool:
            self._alive("slurmdbd")
            return self.run("sacctmgr", "-nP", "show", "cluster", check=False, timeout=10).returncode == 0

        wait_for("slurmdbd", answers, 60, self.logs / "slurmdbd.log")
        self.adapter.ensure_cluster()
        for qos in accounts.qos_objects():
            self.adapter.apply(qos)

    def _start_slurmctld(self) -> None:
        self._spawn("slurmctld", [find("slurmctld") or "slurmctld", "-D", "-i"])

        def answers() -> bool:
            self._alive("slurmctld")
            return self.run("scontrol", "ping", check=False, timeout=10).stdout.count("UP") > 0

        wait_for("slurmctld", answers, 60, self.logs / "slurmctld.log")

    def _start_nodes(self) -> None:
        for node in self.nodes:
            self._spawn(f"slurmd-{node}", [find("slurmd") or "slurmd", "-D", "-N", node])

        def idle() -> bool:
            for node in self.nodes:
                self._alive(f"slurmd-{node}")
            out = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout
            states = dict(line.split() for line in out.splitlines() if line.strip())
            return len(states) == len(self.nodes) and all(s == "idle" for s in states.values())

        wait_for("slurmd nodes", idle, 90, self.logs / "slurmctld.log")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--full", f"--user={self.user}", check=False, timeout=10)
        nodes = [n for n in self.processes if n.startswith("slurmd-")]
        order = [*nodes, "slurmctld", "slurmdbd", "mariadbd", "munged"]
        for name in order:
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self.spool, ignore_errors=True)

    # -- jobs --------------------------------------------------------------------------------

    def sbatch(
        self,
        account: str,
        gres: str | None = None,
        *,
        partition: str | None = None,
        nodes: int = 1,
        name: str = "job",
        seconds: int = 600,
        extra: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "sbatch",
            "--parsable",
            f"--account={account}",
            f"--job-name={name}",
            f"--nodes={nodes}",
            "--time=30",
            f"--chdir={self.jobs}",
            f"--output={self.jobs}/%j.out",
            f"--wrap=sleep {seconds}",
        ]
        if gres:
            argv.append(f"--gres={gres}")
        if partition:
            argv.append(f"--partition={partition}")
        return self.run(*argv, *extra, check=False)

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a mapping (JobState, Reason, Partition, QOS, ...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        fields: dict[str, str] = {}
        for token in out.split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        return fields

    def wait_job(
        self, job_id: str, check: Callable[[dict[str, str]], bool], timeout: float = 60
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.job(job_id)
            if check(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} never got there; last: {state}")
            time.sleep(0.2)
