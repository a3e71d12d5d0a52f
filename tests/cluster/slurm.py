"""A real one-node SLURM cluster with accounting, started in a temporary directory for the tests.

munged, MariaDB (on a Unix socket), slurmdbd, slurmctld and slurmd run as this user on loopback, with their
configuration, state, sockets and logs under one directory; the partition, account and user are registered
with sacctmgr, as snakemake-executor-plugin-slurm expects (it reads job states with sacct). Clients find the
cluster through SLURM_CONF, so `env` is what a test passes to anything that calls sbatch, sacct or sacctmgr.
Nothing outside the directory and the loopback interface is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = (
    "munged",
    "mariadbd",
    "mariadb-install-db",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "sacct",
    "sacctmgr",
    "sinfo",
)
CLUSTER, PARTITION, ACCOUNT = "vlmtest", "debug", "vlm-rationality"


def missing_programs() -> list[str]:
    """Programs the cluster needs that are not installed (Debian: slurmctld slurmd slurmdbd slurm-client
    mariadb-server munge)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in DAEMONS if shutil.which(name, path=path) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """This machine as slurmd sees it (CPUs, sockets, memory), so the node registers without being drained."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(item.split("=", 1) for item in out.split()[:8] if "=" in item)
    return " ".join(
        f"{key}={fields[key]}"
        for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    )


class SlurmCluster:
    def __init__(self, root: Path) -> None:
        root = self.root = root.resolve()
        self.procs: list[subprocess.Popen] = []
        self.env = dict(
            os.environ,
            SLURM_CONF=str(root / "slurm.conf"),
            USER=os.environ.get("USER", "root"),
            MYSQL_UNIX_PORT=str(root / "mysql.sock"),
            PATH=os.pathsep.join([str(root / "bin"), os.environ["PATH"], "/usr/sbin", "/sbin"]),
        )
        self.user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()

    # --- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> "SlurmCluster":
        try:
            self._write_configs()
            self._start_munge()
            self._start_mariadb()
            self._spawn("slurmdbd", ["slurmdbd", "-D"])  # reads slurmdbd.conf beside $SLURM_CONF
            self._wait(lambda: self._run("sacctmgr", "-n", "list", "cluster", check=False).returncode == 0, "slurmdbd")
            self._run("sacctmgr", "-i", "add", "cluster", CLUSTER)
            self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
            self._spawn("slurmd", ["slurmd", "-D", "-N", self.node])
            self._run(
                "sacctmgr",
                "-i",
                "add",
                "account",
                ACCOUNT,
                f"Cluster={CLUSTER}",
                "Description=tests",
                "Organization=tests",
            )
            self._run("sacctmgr", "-i", "add", "user", self.user, f"Account={ACCOUNT}", f"Cluster={CLUSTER}")
            self._wait(
                lambda: self._run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() == "idle",
                "the node to be idle",
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def logs(self) -> str:
        """The daemons' logs, for a failing test's message."""
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))

    # --- pieces ----------------------------------------------------------------------------------------------------
    @property
    def node(self) -> str:
        return socket.gethostname()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}\n{self.logs()}")
        return result

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.out.log", "w")
        self.procs.append(
            subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"a SLURM daemon exited while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}:\n{self.logs()}")

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                "munged",
                "-F",
                "--force",
                f"--key-file={key}",
                f"--socket={self.root / 'munge.sock'}",
                f"--pid-file={self.root / 'munged.pid'}",
                f"--log-file={self.root / 'munged.log'}",
                f"--seed-file={self.root / 'munged.seed'}",
            ],
        )
        self._wait(lambda: (self.root / "munge.sock").exists(), "munged")

    def _start_mariadb(self) -> None:
        data = self.root / "mysql"
        self._run(
            "mariadb-install-db",
            f"--datadir={data}",
            f"--user={self.user}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        )
        self._spawn(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={self.root / 'mysql.sock'}",
                "--skip-networking",
                f"--user={self.user}",
                f"--pid-file={self.root / 'mysql.pid'}",
                f"--log-error={self.root / 'mariadb.log'}",
                "--innodb-buffer-pool-size=64M",
            ],
        )
        self._wait(lambda: (self.root / "mysql.sock").exists(), "MariaDB")

    def _write_configs(self) -> None:
        root, munge = self.root, f"socket={self.root / 'munge.sock'}"
        # snakemake-executor-plugin-slurm-jobstep (0.6) drops every SLURM_* variable, SLURM_CONF included, before
        # its `srun` inside the job; a real cluster's srun finds /etc/slurm/slurm.conf, this one is told again.
        (root / "bin").mkdir(parents=True, exist_ok=True)
        (root / "bin" / "srun").write_text(
            f'#!/bin/sh\nSLURM_CONF={root / "slurm.conf"} exec {shutil.which("srun")} "$@"\n'
        )
        (root / "bin" / "srun").chmod(0o755)
        for sub in ("state", "spool"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        dbd_port, ctld_port, slurmd_port = _free_port(), _free_port(), _free_port()
        (root / "slurmdbd.conf").write_text(f"""\
AuthType=auth/munge
AuthInfo={munge}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser={self.user}
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile={root / "slurmdbd.pid"}
LogFile={root / "slurmdbd.log"}
""")
        (root / "slurmdbd.conf").chmod(0o600)
        (root / "slurm.conf").write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={self.user}
SlurmdUser={self.user}
AuthType=auth/munge
AuthInfo={munge}
CredType=cred/munge
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
AccountingStoragePass={root / "munge.sock"}
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
NodeName={self.node} NodeAddr=127.0.0.1 {_node_line()} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
