"""tools/ndflow-launch (ndflow.distributed.launch): environment per role and rank,
restarts, giving up, Ctrl-C, no orphans, usage errors. Each test runs the
launcher on tiny Python child scripts written to tmp_path."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "tools" / "ndflow-launch"
# The module itself, loaded from its file: the launcher needs no ndflow extension.
_spec = importlib.util.spec_from_file_location("ndflow_launch", ROOT / "python/ndflow/distributed/launch.py")
launch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launch)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals are POSIX")

# Child prelude: where the test directory is, and a helper recording this process's view.
PRELUDE = """
import json, os, signal, sys, time
from pathlib import Path
D = Path(sys.argv[1])
role, rank = os.environ["NDFLOW_PS_ROLE"], int(os.environ["NDFLOW_PS_RANK"])
inc = int(os.environ["NDFLOW_PS_INCARNATION"])
me = f"{role}-{rank}-{inc}"
(D / f"{me}.pid.tmp").write_text(str(os.getpid()))
os.replace(D / f"{me}.pid.tmp", D / f"{me}.pid")  # readers never see a half-written file
def wait_for(name, seconds=20):
    end = time.time() + seconds
    while not (D / name).exists():
        if time.time() > end:
            sys.exit(f"{me}: timed out waiting for {name}")
        time.sleep(0.02)
"""


def script(tmp_path, body):
    path = tmp_path / "child.py"
    path.write_text(PRELUDE + textwrap.dedent(body))
    return path


def launch_cmd(tmp_path, child, *opts):
    return [str(LAUNCH), *opts, "--", sys.executable, str(child), str(tmp_path)]


def clean_env(tmp_path):
    """No NDFLOW_PS_* from outside; temporary job dirs (kept when a job fails) under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDFLOW_PS_")}
    env["TMPDIR"] = str(tmp_path)
    return env


def run(tmp_path, child, *opts, timeout=30):
    return subprocess.run(launch_cmd(tmp_path, child, *opts), capture_output=True, text=True,
                          timeout=timeout, env=clean_env(tmp_path))


def wait_files(tmp_path, names, seconds=20):
    end = time.time() + seconds
    while not all((tmp_path / n).exists() for n in names):
        assert time.time() < end, f"the children never wrote {names}"
        time.sleep(0.02)
    return [int((tmp_path / n).read_text()) for n in names]


def started_pids(tmp_path, names):
    """Pids of the children among `names` that got far enough to record one
    (a job stopped early may kill some before they start)."""
    return [int((tmp_path / n).read_text()) for n in names if (tmp_path / n).exists()]


def alive(pid):
    """True while `pid` runs (a zombie, already dead, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        pass
    else:
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def assert_gone(pids, seconds=5):
    end = time.time() + seconds
    while any(alive(p) for p in pids) and time.time() < end:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], "orphaned children still run"


def events(stderr, who):
    return [line for line in stderr.splitlines() if line.startswith(f"[ndflow-launch] {who}:")]


def test_environment_per_role_and_rank(tmp_path):
    child = script(tmp_path, """
        env = {k: v for k, v in os.environ.items() if k.startswith("NDFLOW_PS_")}
        cmdline = Path("/proc/self/cmdline").read_bytes().decode() if Path("/proc/self/cmdline").exists() else ""
        (D / f"{me}.json").write_text(json.dumps({"env": env, "argv": sys.argv, "cmdline": cmdline}))
        print(f"hello out {rank}")
        print(f"hello err {rank}", file=sys.stderr)
        if role == "server":
            time.sleep(60)   # until the launcher stops it
    """)
    logs = tmp_path / "logs"
    r = run(tmp_path, child, "--servers", "2", "--workers", "3", "--log-dir", str(logs),
            "--heartbeat-timeout", "2.5")
    assert r.returncode == 0, r.stderr
    seen = {}
    for role, n in (("server", 2), ("worker", 3)):
        for rank in range(n):
            seen[role, rank] = json.loads((tmp_path / f"{role}-{rank}-0.json").read_text())
    envs = [s["env"] for s in seen.values()]
    secret = envs[0]["NDFLOW_PS_SECRET"]
    assert re.fullmatch(r"[0-9a-f]{32}", secret)
    servers = envs[0]["NDFLOW_PS_SERVERS"].split(",")
    assert len(servers) == 2 and len(set(servers)) == 2
    assert all(re.fullmatch(r"tcp://127\.0\.0\.1:\d+", a) for a in servers)
    for (role, rank), s in seen.items():
        env = s["env"]
        assert env["NDFLOW_PS_ROLE"] == role and env["NDFLOW_PS_RANK"] == str(rank)
        assert env["NDFLOW_PS_NUM_SERVERS"] == "2" and env["NDFLOW_PS_NUM_WORKERS"] == "3"
        assert env["NDFLOW_PS_SECRET"] == secret and env["NDFLOW_PS_SERVERS"] == ",".join(servers)
        assert env["NDFLOW_PS_INCARNATION"] == "0"
        assert env["NDFLOW_PS_JOB_DIR"] == str(logs)
        assert env["NDFLOW_PS_HEARTBEAT_TIMEOUT"] == "2.5"
        assert secret not in " ".join(s["argv"]) and secret not in s["cmdline"]
    assert secret not in r.stdout + r.stderr
    # Prefixed output: stdout to stdout, stderr to stderr; unprefixed in the log files.
    for role, rank in seen:
        assert f"[{role} {rank}] hello out {rank}" in r.stdout.splitlines()
        assert f"[{role} {rank}] hello err {rank}" in r.stderr.splitlines()
        log = (logs / f"{role}-{rank}.log").read_text()
        assert f"hello out {rank}\n" in log and f"hello err {rank}\n" in log
    assert "job finished" in (logs / "launcher.log").read_text()
    # Servers were stopped (SIGTERM) after the workers finished.
    for rank in range(2):
        assert any("exited with signal SIGTERM" in e for e in events(r.stderr, f"server {rank}"))
    # A second job gets another secret and, without --log-dir, a temporary job dir removed on success.
    for f in tmp_path.glob("*.json"):
        f.unlink()
    r2 = run(tmp_path, child, "--servers", "1", "--workers", "1")
    assert r2.returncode == 0, r2.stderr
    env2 = json.loads((tmp_path / "worker-0-0.json").read_text())["env"]
    assert env2["NDFLOW_PS_SECRET"] != secret and re.fullmatch(r"[0-9a-f]{32}", env2["NDFLOW_PS_SECRET"])
    assert not Path(env2["NDFLOW_PS_JOB_DIR"]).exists()


def test_sigkilled_worker_is_restarted_and_the_job_finishes(tmp_path):
    child = script(tmp_path, """
        if role == "server":
            time.sleep(60)
        if (role, rank, inc) == ("worker", 1, 0):
            print("victim running", flush=True)
            time.sleep(60)                      # killed by the test
        if role == "worker" and rank != 1:
            wait_for("release")                 # survivors run across the victim's death and restart
        (D / f"{me}.done").write_text(os.environ["NDFLOW_PS_INCARNATION"])
    """)
    proc = subprocess.Popen(launch_cmd(tmp_path, child, "--servers", "1", "--workers", "3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path))
    try:
        (victim,) = wait_files(tmp_path, ["worker-1-0.pid"])
        survivors = wait_files(tmp_path, ["worker-0-0.pid", "worker-2-0.pid", "server-0-0.pid"])
        os.kill(victim, signal.SIGKILL)
        wait_files(tmp_path, ["worker-1-1.done"])
        assert all(alive(p) for p in survivors)
        (tmp_path / "release").write_text("")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert (tmp_path / "worker-1-1.done").read_text() == "1"
    w1 = events(err, "worker 1")
    assert any("exited with signal SIGKILL" in e and "incarnation 0" in e for e in w1), w1
    assert any("restarting (restart 1 of 3)" in e for e in w1), w1
    assert sum("started" in e for e in w1) == 2 and any("incarnation 1" in e and "started" in e for e in w1)
    for who in ("worker 0", "worker 2", "server 0"):   # survivors: started once, never restarted
        ev = events(err, who)
        assert sum("started" in e for e in ev) == 1 and not any("restarting" in e for e in ev), ev
    assert not list(tmp_path.glob("worker-[02]-1.*")) and (tmp_path / "worker-0-0.done").exists()
    assert "[worker 1] victim running" in out
    assert_gone(survivors)


def test_restarts_exhausted_fails_naming_the_worker(tmp_path):
    child = script(tmp_path, """
        if role == "worker" and rank == 1:
            sys.exit(3)
        time.sleep(60)
    """)
    t0 = time.time()
    r = run(tmp_path, child, "--servers", "1", "--workers", "2", "--max-restarts", "2")
    assert r.returncode == 1, r.stderr
    assert time.time() - t0 < 20            # the survivors were stopped, not waited for
    w1 = events(r.stderr, "worker 1")
    assert sum("started" in e for e in w1) == 3   # incarnations 0, 1, 2
    assert any("giving up" in e for e in w1), w1
    last = r.stderr.strip().splitlines()[-1]
    assert "job failed" in last and "worker 1" in last and "status 3" in last and "--max-restarts" in last
    assert_gone(started_pids(tmp_path, ["worker-0-0.pid", "server-0-0.pid"]))


def test_server_that_keeps_dying_stops_the_job(tmp_path):
    child = script(tmp_path, """
        if role == "server":
            sys.exit(5)
        time.sleep(60)
    """)
    r = run(tmp_path, child, "--servers", "1", "--workers", "2", "--max-restarts", "1")
    assert r.returncode == 1, r.stderr
    s0 = events(r.stderr, "server 0")
    assert sum("started" in e for e in s0) == 2 and any("giving up" in e for e in s0), s0
    last = r.stderr.strip().splitlines()[-1]
    assert "job failed" in last and "server 0" in last and "status 5" in last
    assert_gone(started_pids(tmp_path, ["worker-0-0.pid", "worker-1-0.pid"]))
    assert "job directory kept" in r.stderr   # a failed job keeps its temporary job dir


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_launcher_stops_every_child(tmp_path, sig, code):
    child = script(tmp_path, """
        if (role, rank) == ("worker", 1):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)   # needs the SIGKILL after the grace period
            import subprocess                              # and a grandchild in its process group
            g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            (D / "grandchild.tmp").write_text(str(g.pid))
            os.replace(D / "grandchild.tmp", D / "grandchild.pid")
        time.sleep(60)
    """)
    proc = subprocess.Popen(launch_cmd(tmp_path, child, "--servers", "2", "--workers", "2", "--grace-period", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path))
    try:
        pids = wait_files(tmp_path, ["server-0-0.pid", "server-1-0.pid", "worker-0-0.pid", "worker-1-0.pid",
                                     "grandchild.pid"])
        t0 = time.time()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert time.time() - t0 < 10
    assert_gone(pids)
    assert f"job stopped by {sig.name}" in err
    assert any("exited with signal SIGKILL" in e for e in events(err, "worker 1")), err
    assert not any("restarting" in line for line in err.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_sigkilled_launcher(tmp_path):
    child = script(tmp_path, "time.sleep(60)\n")
    proc = subprocess.Popen(launch_cmd(tmp_path, child, "--servers", "1", "--workers", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(tmp_path))
    try:
        pids = wait_files(tmp_path, ["server-0-0.pid", "worker-0-0.pid", "worker-1-0.pid"])
        os.kill(proc.pid, signal.SIGKILL)   # the launcher cannot clean up; the kernel does
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert_gone(pids)


@pytest.mark.parametrize("argv, message", [
    (["--servers", "1", "--workers", "2", "python3", "train.py"], "missing '--'"),
    (["--servers", "1", "--workers", "2", "--"], "no command after '--'"),
    (["--servers", "1", "--workers", "0", "--", "python3", "train.py"], "--workers must be at least 1"),
    (["--workers", "2", "--", "python3", "train.py"], "--servers"),
    (["--servers", "1", "--workers", "2", "--max-restarts", "-1", "--", "python3"], "--max-restarts"),
    (["--servers", "1", "--workers", "2", "--", "no-such-program-xyz"], "command not found"),
    (["--servers", "1", "--workers", "2", "--first-worker-rank", "1", "--total-workers", "2", "--", "python3"],
     "--total-workers"),
])
def test_bad_usage_exits_2_with_one_error_line_and_help(capsys, argv, message):
    assert launch.main(argv) == 2
    err = capsys.readouterr().err
    first, second = err.splitlines()[:2]
    assert first.startswith("ndflow-launch: error:") and message in first, first
    assert second == "" and "usage: ndflow-launch --servers S --workers W" in err and "--max-restarts" in err


def test_wrapper_script_help_and_usage_error():
    r = subprocess.run([str(LAUNCH), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "usage: ndflow-launch" in r.stdout and "--heartbeat-timeout" in r.stdout
    r = subprocess.run([str(LAUNCH), "--servers", "1", "--workers", "1", "python3"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("ndflow-launch: error: missing '--'")


def test_base_port_and_several_host_options(tmp_path):
    child = script(tmp_path, """
        (D / f"{me}.json").write_text(json.dumps(dict(os.environ)))
    """)
    secret_file = tmp_path / "secret"
    secret_file.write_text("0123456789abcdef0123456789abcdef\n")
    addresses = "tcp://10.0.0.1:7000,tcp://10.0.0.2:7000"
    # A workers-only host: workers 2 and 3 of 4, servers elsewhere, the shared secret.
    r = run(tmp_path, child, "--servers", "0", "--workers", "2", "--first-worker-rank", "2",
            "--total-workers", "4", "--server-addresses", addresses, "--secret-file", str(secret_file))
    assert r.returncode == 0, r.stderr
    for rank in (2, 3):
        env = json.loads((tmp_path / f"worker-{rank}-0.json").read_text())
        assert env["NDFLOW_PS_NUM_WORKERS"] == "4" and env["NDFLOW_PS_SERVERS"] == addresses
        assert env["NDFLOW_PS_SECRET"] == "0123456789abcdef0123456789abcdef"
    assert not list(tmp_path.glob("worker-[01]-*"))
    # --base-port: consecutive ports from P; a port in use is a usage error that says what to do.
    sock = launch._bind_check("127.0.0.1", 0)
    busy = sock.getsockname()[1]
    sock.listen()
    try:
        with pytest.raises(launch.UsageError, match="another --base-port"):
            launch.server_addresses("127.0.0.1", 1, busy)
    finally:
        sock.close()
    assert launch.server_addresses("127.0.0.1", 1, busy) == [f"tcp://127.0.0.1:{busy}"]
