"""scripts/slurm-cluster.sh keeps to its own clusters: a failed start undoes what it did, nothing
is written to /etc/slurm, and the suite leaves a SLURM it did not start untouched (it neither
submits to it nor restarts it) even when that SLURM is the one `sinfo` answers from."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import ROOT
from slurm_helpers import SCRIPT, require_slurm

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _root_and_slurm():
    if os.geteuid() != 0:
        pytest.skip("the cluster script runs as root")
    require_slurm(nodes=1)


@pytest.fixture
def state_root():
    """Where the clusters of a test keep their state: the daemons' users (munge, mysql) cannot
    enter pytest's private tmp folders."""
    path = Path(tempfile.mkdtemp(prefix="wf-slurm-check-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port_base(start: int) -> int:
    """The first base >= start (in steps of 10) whose 4 ports nothing listens on."""
    for base in range(start, start + 2000, 10):
        if not any(_listening(base + i) for i in range(4)):
            return base
    raise AssertionError("no free ports")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def script(command: str, state: Path, name: str, base: int, nodes: int = 1, **extra: str):
    env = {**os.environ, "SLURM_STATE_DIR": str(state), "SLURM_CLUSTER_NAME": name, "SLURM_PORT_BASE": str(base),
           "SLURM_SUBNET": "10.79.0", **extra}
    return subprocess.run(["bash", str(SCRIPT), command, "--nodes", str(nodes)], env=env, capture_output=True,
                          text=True, timeout=180)


def fingerprint(folder: Path) -> dict:
    """Every file under a folder -> its content hash (a missing folder: {})."""
    if not folder.is_dir():
        return {}
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def live_daemons(state: Path) -> dict[str, int]:
    """pid file -> pid, for the pid files under a state dir that name a live process."""
    found = {}
    for pid_file in state.rglob("*.pid"):
        pid = pid_file.read_text().strip()
        if pid.isdigit() and Path(f"/proc/{pid}").exists() and "Z" not in _stat(pid):
            found[pid_file.name] = int(pid)
    return found


def _stat(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def network_of(name: str) -> str:
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return "\n".join(line for line in (links + spaces).splitlines() if name in line)


def test_a_failed_start_stops_what_it_started_and_removes_its_network(state_root):
    etc = fingerprint(Path("/etc/slurm"))
    base = free_port_base(17300)
    failed = script("start", state_root / "state", "wffail", base, nodes=2, SLURM_CLUSTER_FAIL_AFTER="start_slurmd")
    assert failed.returncode != 0 and "start failed: stopping what it started" in failed.stderr, failed.stderr
    assert "starting slurmctld" in failed.stderr and "stopping slurmctld" in failed.stderr, failed.stderr
    assert live_daemons(state_root / "state") == {}
    assert network_of("wffail") == "", "bridge, veths and namespaces are gone"
    assert fingerprint(Path("/etc/slurm")) == etc
    assert not any(_listening(base + i) for i in range(4))


def test_a_busy_port_fails_before_anything_starts(state_root):
    base = free_port_base(17400)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", base + 2))
        squatter.listen()
        failed = script("start", state_root / "state", "wfbusy", base)
    assert failed.returncode != 0, failed.stderr
    assert f"port {base + 2} is already in use by a process this script did not start (slurmdbd" in failed.stderr
    assert "starting" not in failed.stderr and not (state_root / "state").exists()


def test_the_suite_leaves_a_foreign_cluster_alone(tmp_path, state_root):
    """A foreign single-node SLURM that `sinfo` answers from (the caller's SLURM_CONF names it):
    the suite's SLURM tests use the script's own cluster; with that one absent they skip. The
    foreign cluster keeps its daemons, its config and an empty queue and accounting."""
    foreign_state = state_root / "foreign"
    started = script("start", foreign_state, "site", free_port_base(6817))
    assert started.returncode == 0, started.stderr
    conf = foreign_state / "etc/slurm.conf"
    caller = {**os.environ, "SLURM_CONF": str(conf)}
    caller.pop("CI", None)
    try:
        assert subprocess.run(["sinfo", "-h"], env=caller, capture_output=True).returncode == 0
        before = (live_daemons(foreign_state), fingerprint(foreign_state / "etc"), fingerprint(Path("/etc/slurm")))

        tests = ["tests/integration/test_slurm_integration.py::test_two_task_distributed_job",
                 "tests/integration/test_multinode.py::test_srun_puts_one_task_on_each_node_at_its_own_address"]
        ours = pytest_run(tests, caller)
        assert re.search(r"\b2 passed\b", ours.stdout) and "skipped" not in ours.stdout, ours.stdout[-3000:]

        elsewhere = pytest_run(tests + ["-rs"], {**caller, "SLURM_STATE_DIR": str(tmp_path / "absent"), "COLUMNS": "300"})
        assert re.search(r"\b2 skipped\b", elsewhere.stdout), elsewhere.stdout[-3000:]
        assert "cluster is not running (bash scripts/slurm-cluster.sh start" in elsewhere.stdout

        after = (live_daemons(foreign_state), fingerprint(foreign_state / "etc"), fingerprint(Path("/etc/slurm")))
        assert after == before, "the foreign cluster's daemons and config are untouched"
        accounting = subprocess.run(["sacct", "-a", "-n", "-X", "-S", "2000-01-01", "-o", "JobName%40"], env=caller,
                                    capture_output=True, text=True).stdout.split()
        assert accounting == ["slurm-cluster-smoke"], "only the foreign cluster's own smoke job ever ran there"
        assert subprocess.run(["squeue", "-h"], env=caller, capture_output=True, text=True).stdout == ""
    finally:
        script("stop", foreign_state, "site", 0)


def pytest_run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def test_a_start_cancels_the_jobs_left_from_before_the_stop(state_root):
    """A job still queued or running when a cluster stopped (or when the machine went away) would
    come back as RUNNING with no process behind it and hold its nodes until its time limit. A held
    array's pending tasks fold into one squeue line: the array is cancelled by its id."""
    state, base = state_root / "state", free_port_base(17500)
    assert script("start", state, "wfleft", base).returncode == 0
    try:
        env = {**os.environ, "SLURM_CONF": str(state / "etc/slurm.conf")}
        job = subprocess.run(["sbatch", "--parsable", "-t", "30", "-J", "left", "-o", "/dev/null", "--wrap", "sleep 600"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        array = subprocess.run(["sbatch", "--parsable", "--hold", "--array=0-3", "-J", "left", "-o", "/dev/null",
                                "--wrap", "true"], env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert script("stop", state, "wfleft", base).returncode == 0
        restarted = script("start", state, "wfleft", base)
        assert restarted.returncode == 0, restarted.stderr
        assert f"cancelling job(s) {job} {array} left from before the last stop" in restarted.stderr, restarted.stderr
        assert subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout == ""
        states = subprocess.run(["sacct", "-n", "-X", "-j", job, "-o", "State"], env=env, capture_output=True,
                                text=True).stdout.split()
        assert states and states[0].startswith("CANCELLED"), states
    finally:
        script("stop", state, "wfleft", base)
    assert live_daemons(state) == {}
