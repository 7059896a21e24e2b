"""ndflow-launch: the single-host supervisor of parameter-server jobs (DESIGN.md §7).

Like torchrun's agent, not a cluster manager: it starts S server and W worker
processes on this host, all running the same command, watches them, restarts
the ones that fail and stops the job cleanly.

    tools/ndflow-launch --servers 2 --workers 4 -- python3 train.py --epochs 3

Every process finds its role and the job's addresses in its environment:

    NDFLOW_PS_ROLE          server | worker
    NDFLOW_PS_RANK          index within the role (0..S-1, 0..W-1)
    NDFLOW_PS_NUM_SERVERS   S
    NDFLOW_PS_NUM_WORKERS   W
    NDFLOW_PS_SERVERS       tcp://host:port,...  (server i binds to entry i)
    NDFLOW_PS_SECRET        the job's secret, 32 hex digits, fresh per job.
                            Only ever in the environment, never on a command
                            line (which `ps` shows to every user).
    NDFLOW_PS_INCARNATION   0, then +1 each time this process is restarted
    NDFLOW_PS_JOB_DIR       --log-dir, or a fresh temporary directory (removed
                            when the job succeeds, kept when it fails)
    NDFLOW_PS_HEARTBEAT_TIMEOUT   --heartbeat-timeout, when given

Read by ndflow.distributed.ps when set (the launcher passes them through):

    NDFLOW_PS_TIMEOUT           seconds a worker waits on a silent server (30)
    NDFLOW_PS_CHECKPOINT_EVERY  server checkpoints every K clocks (unset: none)
    NDFLOW_PS_SPLIT_BYTES       tables this large are split over the servers (1 MiB)
    NDFLOW_PS_CACHE             0 turns the workers' read cache off (on)

Supervision. A worker that exits 0 is done. A worker that exits non-zero or is
killed by a signal is restarted with the same rank and the next incarnation,
at most --max-restarts times (per process); the other processes are left
alone. Servers are restarted the same way (restoring their shards from their
checkpoints is the server's job); a server that exits 0 is done. When every
worker has exited 0 the servers get SIGTERM, then SIGKILL after
--grace-period seconds, and the launcher exits 0. When a process has no
restarts left, the launcher stops everything and exits 1, naming the process
and its exit status. SIGINT (Ctrl-C), SIGTERM or SIGHUP to the launcher:
SIGTERM to every child, SIGKILL after the grace period, exit 128 + signal
(130, 143, 129); a second Ctrl-C kills at once.

No orphans. Each child runs in its own session (process group), and every
signal goes to the whole group, so what a child started goes too; after a
child exits, whatever is left in its group is killed. On Linux each child also
gets PR_SET_PDEATHSIG=SIGKILL (prctl through ctypes, in preexec_fn), so it dies
even if the launcher itself is killed with SIGKILL (that covers the direct
children only: a grandchild outliving a SIGKILLed launcher is not caught).
Children read stdin from /dev/null.

Output. Each line a child writes is prefixed with its role and rank
(``[worker 2] loss 0.31``), stdout to stdout and stderr to stderr, and, with
--log-dir DIR, also written unprefixed to DIR/worker-2.log (appended across
incarnations). The launcher's own lifecycle lines (started, exited, restarting,
giving up) go to stderr, beginning with ``[ndflow-launch]``, and to
DIR/launcher.log.

Several hosts. Either run one launcher per host, all with the same server list,
secret and worker numbering (servers here on host a, workers on a and b):

    python3 -c 'import secrets; print(secrets.token_hex(16))' > secret  # chmod 600; copy to every host
    # host a: both servers, workers 0-1 of 4
    ndflow-launch --host a --servers 2 --server-addresses tcp://a:7000,tcp://a:7001 \\
        --workers 2 --total-workers 4 --secret-file secret -- python3 train.py
    # host b: workers 2-3 of 4, no servers
    ndflow-launch --servers 0 --server-addresses tcp://a:7000,tcp://a:7001 \\
        --workers 2 --first-worker-rank 2 --total-workers 4 --secret-file secret -- python3 train.py

(a launcher whose workers are not all of the job's does not stop its servers
when its own workers finish: they run until they exit 0 themselves or the
launcher gets Ctrl-C/SIGTERM). Or let Slurm or mpirun start one process per
slot and set the NDFLOW_PS_* variables from the slot's environment, e.g. the
first S tasks of `srun -n $((S + W))` are servers:

    export NDFLOW_PS_NUM_SERVERS=2 NDFLOW_PS_NUM_WORKERS=$((SLURM_NTASKS - 2))
    if [ "$SLURM_PROCID" -lt "$NDFLOW_PS_NUM_SERVERS" ]; then
      export NDFLOW_PS_ROLE=server NDFLOW_PS_RANK=$SLURM_PROCID
    else
      export NDFLOW_PS_ROLE=worker NDFLOW_PS_RANK=$((SLURM_PROCID - NDFLOW_PS_NUM_SERVERS))
    fi
    export NDFLOW_PS_SERVERS=tcp://node01:7000,tcp://node01:7001   # where tasks 0 and 1 run
    export NDFLOW_PS_INCARNATION=${SLURM_RESTART_COUNT:-0}
    # NDFLOW_PS_SECRET: exported once in the batch script (from a 0600 file), not on a command line
    exec python3 train.py

(with mpirun, OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE play the parts of
SLURM_PROCID and SLURM_NTASKS). Slurm or mpirun then do the watching: they do
not restart single processes the way this launcher does.
"""
import argparse
import ctypes
import ctypes.util
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROG = "ndflow-launch"
EXIT_USAGE = 2
EXIT_FAILED = 1
_PR_SET_PDEATHSIG = 1
_MAX_LINE = 1 << 16  # a longer line without a newline is passed on in pieces


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    p = _Parser(
        prog=PROG, allow_abbrev=False,
        usage=f"{PROG} --servers S --workers W [options] -- COMMAND [ARGS...]",
        description="Starts S parameter servers and W workers on this host, all running COMMAND with "
                    "their role, rank, the server addresses and the job's secret in NDFLOW_PS_* "
                    "environment variables; restarts failed processes and stops the job cleanly on "
                    "Ctrl-C. See python/ndflow/distributed/launch.py for the variables and for jobs "
                    "on several hosts.")
    p.add_argument("--servers", type=int, required=True, metavar="S", help="server processes on this host")
    p.add_argument("--workers", type=int, required=True, metavar="W", help="worker processes on this host")
    p.add_argument("--max-restarts", type=int, default=3, metavar="R",
                   help="restarts allowed per process (default 3)")
    p.add_argument("--heartbeat-timeout", type=float, metavar="SEC",
                   help="passed to the processes as NDFLOW_PS_HEARTBEAT_TIMEOUT")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the servers bind to and workers connect to (default 127.0.0.1, loopback)")
    p.add_argument("--base-port", type=int, metavar="P",
                   help="server i listens on port P+i (default: free ports picked by the launcher)")
    p.add_argument("--log-dir", metavar="DIR", help="also write each process's output to DIR/ROLE-RANK.log")
    p.add_argument("--grace-period", type=float, default=10.0, metavar="SEC",
                   help="seconds between SIGTERM and SIGKILL when stopping processes (default 10)")
    multi = p.add_argument_group("jobs on several hosts (one launcher per host)")
    multi.add_argument("--server-addresses", metavar="LIST",
                       help="every server of the job, tcp://host:port,...; the servers of this host are "
                            "entries --first-server-rank.. of it")
    multi.add_argument("--first-server-rank", type=int, default=0, metavar="K")
    multi.add_argument("--first-worker-rank", type=int, default=0, metavar="K")
    multi.add_argument("--total-workers", type=int, metavar="N",
                       help="workers of the whole job (default --workers)")
    multi.add_argument("--secret-file", metavar="FILE",
                       help="read the job's secret from FILE instead of generating a fresh one")
    return p


def _bind_check(host, port):
    """Binds host:port (0: any free port) and returns the socket, or raises OSError."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    s = socket.socket(family, kind, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(addr)
    except OSError:
        s.close()
        raise
    return s


def _endpoint(host, port):
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def server_addresses(host, count, base_port=None):
    """The addresses of `count` local servers: base_port+i, or free ports (all distinct)."""
    socks = []
    try:
        for i in range(count):
            port = 0 if base_port is None else base_port + i
            try:
                socks.append(_bind_check(host, port))
            except OSError as e:
                what = "a free port" if port == 0 else f"port {port}"
                hint = ("choose another --base-port, or leave it out to let the launcher pick free ports"
                        if port else "give an address of this host with --host (default 127.0.0.1)")
                raise UsageError(f"cannot bind {what} on --host {host} ({e.strerror or e}): {hint}")
        return [_endpoint(host, s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def parse(argv):
    """Returns (options, command, server list, secret); raises UsageError."""
    argv = list(argv)
    before, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, None)
    parser = build_parser()
    # --help prints and exits 0 here; without '--', words that are not options are the command
    o = parser.parse_args(before) if command is not None else parser.parse_known_args(before)[0]
    if command is None:
        raise UsageError("missing '--' before the command: "
                         f"{PROG} --servers 1 --workers 2 -- python3 train.py")
    if not command:
        raise UsageError(f"no command after '--': {PROG} --servers 1 --workers 2 -- python3 train.py")
    if o.total_workers is None:
        o.total_workers = o.first_worker_rank + o.workers
    if o.workers < 1 and o.total_workers == o.workers:
        raise UsageError(f"--workers must be at least 1 (got {o.workers}); a host that runs only servers "
                         "needs --total-workers N, the workers started elsewhere")
    if o.servers < 0 or o.workers < 0:
        raise UsageError("--servers and --workers cannot be negative")
    if o.max_restarts < 0:
        raise UsageError(f"--max-restarts must be 0 or more (got {o.max_restarts})")
    if o.grace_period < 0 or (o.heartbeat_timeout is not None and o.heartbeat_timeout <= 0):
        raise UsageError("--grace-period must be >= 0 and --heartbeat-timeout > 0")
    if o.first_worker_rank < 0 or o.first_worker_rank + o.workers > o.total_workers:
        raise UsageError(f"workers {o.first_worker_rank}..{o.first_worker_rank + o.workers - 1} do not fit in "
                         f"--total-workers {o.total_workers}: check --first-worker-rank and --total-workers")
    if o.base_port is not None and not (0 < o.base_port and o.base_port + o.servers <= 65536):
        raise UsageError(f"--base-port {o.base_port}: ports must lie in 1..65535")
    if shutil.which(command[0]) is None:
        raise UsageError(f"command not found: {command[0]} (give a path or a program on PATH after '--')")
    if o.server_addresses is not None:
        servers = [a.strip() for a in o.server_addresses.split(",") if a.strip()]
        bad = [a for a in servers if not re.fullmatch(r"tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}", a)]
        if bad or not servers:
            raise UsageError(f"--server-addresses: {', '.join(bad) or 'empty'} is not a list of tcp://host:port")
        if o.first_server_rank < 0 or o.first_server_rank + o.servers > len(servers):
            raise UsageError(f"--servers {o.servers} from --first-server-rank {o.first_server_rank} do not fit "
                             f"in the {len(servers)} --server-addresses")
    else:
        if o.first_server_rank != 0:
            raise UsageError("--first-server-rank needs --server-addresses (the job's whole server list)")
        servers = server_addresses(o.host, o.servers, o.base_port)
    if o.log_dir is not None:
        try:
            os.makedirs(o.log_dir, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create --log-dir {o.log_dir}: {e.strerror or e}; give a writable directory")
    if o.secret_file is not None:
        try:
            with open(o.secret_file, encoding="ascii") as f:
                secret = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read --secret-file {o.secret_file}: {e}")
        if not re.fullmatch(r"[0-9A-Za-z_-]{16,1024}", secret):
            raise UsageError(f"--secret-file {o.secret_file} must hold one token of 16..1024 letters and "
                             "digits, e.g. from: python3 -c 'import secrets; print(secrets.token_hex(16))'")
    else:
        secret = secrets.token_hex(16)
    return o, command, servers, secret


def describe_status(code):
    """Popen.returncode in words: 'status 3' or 'signal SIGKILL'."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


class _Stream:
    """One pipe of one child: splits it into lines, prefixes them, writes them out."""

    def __init__(self, fd, proc, console):
        self.fd, self.proc, self.console, self.buf = fd, proc, console, b""

    def feed(self, data, launcher):
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        if len(self.buf) >= _MAX_LINE:
            lines.append(self.buf)
            self.buf = b""
        for line in lines:
            launcher.child_line(self, line)

    def close(self, launcher):
        if self.buf:
            launcher.child_line(self, self.buf)
            self.buf = b""


class Proc:
    def __init__(self, role, rank, log):
        self.role, self.rank, self.log = role, rank, log
        self.name = f"{role} {rank}"
        self.incarnation = -1
        self.popen = None
        self.state = "new"  # running, done (exited 0), failed (no restarts left), stopped

    @property
    def running(self):
        return self.state == "running"


class Launcher:
    def __init__(self, opts, command, servers, secret, out=None, err=None):
        self.o, self.command, self.servers, self.secret = opts, command, servers, secret
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr.buffer
        self.sel = selectors.DefaultSelector()
        self.signum = None
        self.signals = 0  # how many stop signals arrived
        self.launcher_log = None
        self.procs = []
        self.job_dir = None
        self.own_job_dir = False
        self.prctl = _load_prctl()

    # -- output ------------------------------------------------------------
    def event(self, text):
        line = f"[{PROG}] {text}\n".encode()
        self._write(self.err, line)
        if self.launcher_log:
            self.launcher_log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode())
            self.launcher_log.flush()

    def _write(self, f, data):
        try:
            f.write(data)
            f.flush()
        except (BrokenPipeError, ValueError):
            pass  # the console went away; the log files still get everything

    def child_line(self, stream, line):
        p = stream.proc
        self._write(stream.console, f"[{p.name}] ".encode() + line + b"\n")
        if p.log:
            p.log.write(line + b"\n")
            p.log.flush()

    def _pump(self, timeout):
        """Waits up to `timeout` s for output or a signal and handles what came."""
        for key, _ in self.sel.select(timeout):
            if key.data is None:  # the signal wake-up pipe
                try:
                    while os.read(key.fd, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            stream = key.data
            try:
                data = os.read(stream.fd, 1 << 16)
            except BlockingIOError:
                continue
            if data:
                stream.feed(data, self)
            else:
                stream.close(self)
                self.sel.unregister(stream.fd)
                os.close(stream.fd)

    def _drain(self, proc, seconds=0.5):
        """After `proc` exited: reads what is left in its pipes (bounded, as a grandchild may hold them)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(
                isinstance(k.data, _Stream) and k.data.proc is proc for k in self.sel.get_map().values()):
            self._pump(0.05)

    # -- processes ---------------------------------------------------------
    def env_for(self, p):
        env = dict(os.environ)
        env.update({
            "NDFLOW_PS_ROLE": p.role,
            "NDFLOW_PS_RANK": str(p.rank),
            "NDFLOW_PS_NUM_SERVERS": str(len(self.servers)),
            "NDFLOW_PS_NUM_WORKERS": str(self.o.total_workers),
            "NDFLOW_PS_SERVERS": ",".join(self.servers),
            "NDFLOW_PS_SECRET": self.secret,
            "NDFLOW_PS_INCARNATION": str(p.incarnation),
            "NDFLOW_PS_JOB_DIR": self.job_dir,
        })
        if self.o.heartbeat_timeout is not None:
            env["NDFLOW_PS_HEARTBEAT_TIMEOUT"] = repr(self.o.heartbeat_timeout)
        # Several processes share this host's cores: OpenMP threads that spin
        # while idle would steal them from the others (a 2-worker job on 2
        # cores ran 50x slower), so they sleep unless the user says otherwise.
        env.setdefault("OMP_WAIT_POLICY", "passive")
        return env

    def _preexec(self):
        prctl, parent = self.prctl, os.getpid()

        def setup():  # in the child, between fork and exec; start_new_session has run setsid()
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the launcher died before prctl took effect
                os._exit(1)
        return setup

    def start(self, p):
        p.incarnation += 1
        if p.log:
            p.log.write(f"--- {p.name}, incarnation {p.incarnation}\n".encode())
            p.log.flush()
        p.popen = subprocess.Popen(self.command, env=self.env_for(p), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True, preexec_fn=self._preexec())
        p.state = "running"
        for pipe, console in ((p.popen.stdout, self.out), (p.popen.stderr, self.err)):
            fd = os.dup(pipe.fileno())
            pipe.close()
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, _Stream(fd, p, console))
        self.event(f"{p.name}: started, pid {p.popen.pid}, incarnation {p.incarnation}")

    def _signal_group(self, p, sig):
        try:
            os.killpg(p.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self, p):
        """If `p` has exited: kills what is left in its process group, reaps it, returns its code."""
        if not hasattr(os, "waitid"):  # macOS: a small window in which the group id could be reused
            if p.popen.poll() is None:
                return None
        else:
            try:
                # WNOWAIT: the zombie keeps the pid (and so the group id) reserved while we kill the group.
                if os.waitid(os.P_PID, p.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    return None
            except ChildProcessError:
                pass
        self._signal_group(p, signal.SIGKILL)
        return p.popen.wait()

    def stop(self, procs, why):
        """SIGTERM to each running process's group, SIGKILL after the grace period, reaps them."""
        procs = [p for p in procs if p.running]
        if not procs:
            return
        self.event(f"stopping {', '.join(p.name for p in procs)} ({why}): SIGTERM, "
                   f"SIGKILL after {self.o.grace_period:g} s")
        for p in procs:
            self._signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + self.o.grace_period
        signals_before = self.signals
        killed = False
        while procs:
            for p in list(procs):
                code = self._reap(p)
                if code is not None:
                    procs.remove(p)
                    p.state = "stopped"
                    self.event(f"{p.name}: exited with {describe_status(code)} (pid {p.popen.pid})")
            if not procs:
                break
            if not killed and (time.monotonic() >= deadline or self.signals != signals_before):
                self.event(f"killing {', '.join(p.name for p in procs)}: still running"
                           + (" after the grace period" if time.monotonic() >= deadline else ""))
                for p in procs:
                    self._signal_group(p, signal.SIGKILL)
                killed = True
            self._pump(0.05)
        self._pump(0)

    def _handle_exit(self, p, code):
        """Returns an error message when the job must end because of `p`."""
        self._drain(p)
        self.event(f"{p.name}: exited with {describe_status(code)} "
                   f"(pid {p.popen.pid}, incarnation {p.incarnation})")
        if code == 0:
            p.state = "done"
            return None
        if p.incarnation < self.o.max_restarts:
            self.event(f"{p.name}: restarting (restart {p.incarnation + 1} of {self.o.max_restarts})")
            try:
                self.start(p)
            except OSError as e:
                p.state = "failed"
                return f"cannot restart {p.name}: {e}"
            return None
        p.state = "failed"
        self.event(f"{p.name}: giving up after {p.incarnation} restart(s)")
        where = f" or {self.o.log_dir}/{p.role}-{p.rank}.log" if self.o.log_dir else ""
        return (f"{p.name} exited with {describe_status(code)} and has no restarts left "
                f"(--max-restarts {self.o.max_restarts}); see its output above{where}")

    # -- the job -----------------------------------------------------------
    def _on_signal(self, signum, frame):
        self.signum = signum
        self.signals += 1

    def run(self):
        o = self.o
        if o.log_dir:
            os.makedirs(o.log_dir, exist_ok=True)
            self.job_dir = os.path.abspath(o.log_dir)
            self.launcher_log = open(os.path.join(o.log_dir, "launcher.log"), "ab")
        else:
            self.job_dir = tempfile.mkdtemp(prefix="ndflow-ps-")
            self.own_job_dir = True
        for role, count, first in (("server", o.servers, o.first_server_rank),
                                   ("worker", o.workers, o.first_worker_rank)):
            for rank in range(first, first + count):
                log = open(os.path.join(o.log_dir, f"{role}-{rank}.log"), "ab") if o.log_dir else None
                self.procs.append(Proc(role, rank, log))

        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.sel.register(wake_r, selectors.EVENT_READ, None)
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)
        old = {s: signal.signal(s, self._on_signal if s != signal.SIGCHLD else (lambda *a: None))
               for s in handled}
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            code, last = self._supervise()
        finally:
            for p in self.procs:  # only after an unexpected error: stop() has reaped the rest
                if p.running:
                    self._signal_group(p, signal.SIGKILL)
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old.items():
                signal.signal(s, h)
            for key in list(self.sel.get_map().values()):
                os.close(key.fd)
            self.sel.close()
            os.close(wake_w)
            for p in self.procs:
                if p.log:
                    p.log.close()
        if self.own_job_dir:
            if code == 0:
                shutil.rmtree(self.job_dir, ignore_errors=True)
            else:
                self.event(f"job directory kept: {self.job_dir}")
        self.event(last)
        if self.launcher_log:
            self.launcher_log.close()
        return code

    def _supervise(self):
        o = self.o
        self.event(f"job: {len(self.servers)} server(s) at {','.join(self.servers) or '-'}, "
                   f"{o.workers} worker(s) here of {o.total_workers}, max {o.max_restarts} restart(s) each, "
                   f"job dir {self.job_dir}")
        error = None
        try:
            for p in self.procs:
                if self.signum is None:
                    self.start(p)
        except OSError as e:
            error = f"cannot start {p.name}: {e} (check the command after '--')"
        servers = [p for p in self.procs if p.role == "server"]
        workers = [p for p in self.procs if p.role == "worker"]
        all_workers_here = o.workers == o.total_workers
        while error is None and self.signum is None:
            for p in self.procs:
                if p.running:
                    code = self._reap(p)
                    if code is not None:
                        error = self._handle_exit(p, code)
                        if error:
                            break
            if error:
                break
            if workers and all(p.state == "done" for p in workers) and all_workers_here:
                self.stop(servers, "every worker finished")
                return 0, "job finished: every worker exited 0"
            if all(p.state == "done" for p in self.procs):
                return 0, "job finished: every process exited 0"
            self._pump(0.5)
        if error is None:
            name = signal.Signals(self.signum).name
            self.stop(self.procs, f"the launcher got {name}")
            return 128 + self.signum, f"job stopped by {name}"
        self.stop(self.procs, "the job failed")
        return EXIT_FAILED, f"job failed: {error}"


def main(argv=None):
    """Runs the launcher; returns its exit status (2 for bad usage)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts, command, servers, secret = parse(argv)
    except UsageError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n\n{build_parser().format_help()}")
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    return Launcher(opts, command, servers, secret).run()


if __name__ == "__main__":
    sys.exit(main())
