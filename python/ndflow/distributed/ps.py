"""Parameter-server training (DESIGN.md §7; C++: distributed/ps/).

Started by ``tools/ndflow-launch --servers S --workers W -- python train.py``,
every process runs the same script; ``init()`` reads its role, rank, the
server addresses and the job's secret from the environment the launcher set
(``NDFLOW_PS_*``). Each parameter becomes a table: a large one is split by
rows into one key range per server, a small one lives whole on one server
(see register()). Servers hold the values and
apply what workers push; workers pull values, compute, push, and end each
step with ``clock()``. Reads obey the table's consistency model: ``"bsp"``,
``"asp"`` or ``"ssp:N"`` (a worker at clock c sees every update from clocks
<= c - N - 1 of every worker; SSP(0) is BSP; ASP never waits).

    import ndflow.distributed.ps as ps
    ps.init()
    model = MLP()                                  # the same seed on every process
    ps.register(model, sync="ssp:3")
    if ps.is_server():
        ps.serve()                                 # until the launcher stops the job
        raise SystemExit(0)
    trainer = ps.PSTrainer(model)
    for x, y in loader:
        with trainer.step():                       # pull before, push + clock after
            train_step(x, y)                       # eager or @ndflow.function: updates the parameters locally

Faults. A worker's connections ping the servers from a background thread
every NDFLOW_PS_HEARTBEAT_TIMEOUT/4 seconds (default timeout 30 s); a server
declares a worker that has been silent for the timeout dead and leaves it out
of the clock table, so BSP/SSP readers stop waiting for it. A restarted worker
(the launcher's NDFLOW_PS_INCARNATION + 1) rejoins at its previous clock (the
step it had not finished is done again), or at the slowest clock of the
others if it had been declared dead meanwhile; ``current_clock()`` tells it
where to continue, and ``PSTrainer`` pulls the current parameters before
every step:

    for step in range(ps.current_clock(), steps):  # 0 on a first start
        with trainer.step():
            ...

Servers checkpoint their tables, held-back updates and clock table to
``$NDFLOW_PS_JOB_DIR/server-<rank>.ndf`` every NDFLOW_PS_CHECKPOINT_EVERY
clocks (0: only when stopped; unset: never); a restarted server restores from
it. The workers notice (the new server does not know their connections),
handshake again at their own clocks, resend what was unanswered, and go on:
what they pushed to it since its checkpoint is lost, at most one interval.
A server that stays down makes every worker fail within NDFLOW_PS_TIMEOUT
with an error naming it.

Reads may be served by the worker's cache (NDFLOW_PS_CACHE=0 turns it off):
under SSP(s) a value fetched when the slowest worker was at clock k answers
reads at clocks up to k + s, with this worker's own pushes applied since.

Started without the launcher, ``init()`` makes a world of one worker with an
in-process server, so the same script runs unchanged.

``PSTrainer`` pushes what the local step changed (new - old parameters,
scaled by 1/W), with tables that accumulate: with plain or momentum SGD under
BSP this takes exactly the steps of synchronous data parallelism on the same
data, since those optimizers are linear in the gradients.
"""
import atexit
import contextlib
import os
import secrets
import signal
import threading

from .. import _C
from ..autograd import no_grad

_ps = _C._ps
_state = None


class _Job:
    def __init__(self, env):
        def need(name):
            v = env.get(name)
            if v is None:
                raise RuntimeError(f"ndflow.distributed.ps.init(): {name} is not set; start the job with "
                                   "tools/ndflow-launch (or set every NDFLOW_PS_* variable, see its --help)")
            return v
        self.role = need("NDFLOW_PS_ROLE")
        if self.role not in ("server", "worker"):
            raise ValueError(f"NDFLOW_PS_ROLE={self.role!r} is neither 'server' nor 'worker'")
        self.rank = int(need("NDFLOW_PS_RANK"))
        self.num_workers = int(need("NDFLOW_PS_NUM_WORKERS"))
        self.servers = [a for a in need("NDFLOW_PS_SERVERS").split(",") if a]
        self.secret = need("NDFLOW_PS_SECRET")
        self.incarnation = int(env.get("NDFLOW_PS_INCARNATION", "0"))
        self.timeout = float(env.get("NDFLOW_PS_TIMEOUT", "30"))
        self.heartbeat_timeout = float(env.get("NDFLOW_PS_HEARTBEAT_TIMEOUT", "30"))
        if not self.heartbeat_timeout > 0:
            raise ValueError(f"NDFLOW_PS_HEARTBEAT_TIMEOUT={self.heartbeat_timeout!r}: must be > 0 seconds")
        self.heartbeat = None     # (thread, stop event) of a worker
        every = env.get("NDFLOW_PS_CHECKPOINT_EVERY")
        self.checkpoint_every = None if every is None else int(every)
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            raise ValueError(f"NDFLOW_PS_CHECKPOINT_EVERY={every}: give a number of clocks >= 0 (0: only on stop)")
        self.job_dir = env.get("NDFLOW_PS_JOB_DIR")
        self.split_bytes = int(env.get("NDFLOW_PS_SPLIT_BYTES", str(1 << 20)))
        self.cache = env.get("NDFLOW_PS_CACHE", "1") not in ("0", "false", "no")
        self.server = None        # this process's Server (server role, or the local world of one)
        self.worker = None        # this process's _ps.Worker (worker role)
        self.planner = None       # the LayoutPlanner every process runs alike
        self.tables = {}          # name -> [(server, first row, end row)]
        self.rules = {}           # name -> update rule
        self.local = False


def init():
    """Reads this process's role from the launcher's environment (idempotent).
    Without the launcher: one worker with an in-process server."""
    global _state
    if _state is not None:
        return _state.role
    if "NDFLOW_PS_ROLE" in os.environ:
        _state = _Job(os.environ)
    else:
        secret = secrets.token_hex(16)
        _state = _Job({"NDFLOW_PS_ROLE": "worker", "NDFLOW_PS_RANK": "0", "NDFLOW_PS_NUM_WORKERS": "1",
                       "NDFLOW_PS_SERVERS": "local", "NDFLOW_PS_SECRET": secret})
        _state.local = True
    return _state.role


def _job():
    if _state is None:
        init()
    return _state


def is_server():
    return _job().role == "server"


def rank():
    """This process's index within its role."""
    return _job().rank


def num_workers():
    return _job().num_workers


def register(module_or_tensors, sync="bsp", rule="accumulate", lr=0.01, split_bytes=None, **hyper):
    """Puts parameters on the servers: a module's named parameters, or a dict
    {name: tensor}. Every process calls it with the same parameters (same
    seed) in the same order: a server keeps the shards it owns, initialized
    from its copy; a worker connects to every server. Returns the table names.

    Layout: a table of at least split_bytes (default NDFLOW_PS_SPLIT_BYTES,
    1 MiB) is split by rows (axis 0) into one key range per server; a
    smaller one lives whole on the server holding the fewest bytes so far.

    rule: "accumulate" (table += pushed: the worker runs its optimizer and
    pushes deltas) or a server-side optimizer that takes the pushed tensors as
    gradients: "sgd", "momentum", "adagrad", "rmsprop", "adam", with lr and
    torch.optim's hyperparameters as keywords (momentum=0.9, dampening,
    nesterov, alpha, centered, lr_decay, initial_accumulator_value,
    betas=(0.9, 0.999), amsgrad, decoupled_weight_decay, eps, weight_decay).
    set_lr() changes lr later (a schedule)."""
    job = _job()
    named = (dict(module_or_tensors.named_parameters()) if hasattr(module_or_tensors, "named_parameters")
             else dict(module_or_tensors))
    if not named:
        raise ValueError("ps.register: no parameters to put on the servers")
    for name in named:
        if name in job.tables:
            raise ValueError(f"ps.register: table {name!r} is registered twice")
    if job.planner is None:
        job.planner = _ps.LayoutPlanner(1 if job.local else len(job.servers),
                                        job.split_bytes if split_bytes is None else int(split_bytes))
    for name, t in named.items():
        job.tables[name] = job.planner.place(name, list(t.shape))
        job.rules[name] = rule
    if job.local or job.role == "server":
        if job.server is None:
            address = "tcp://127.0.0.1:0" if job.local else job.servers[job.rank]
            checkpoint = ""
            if job.checkpoint_every is not None and not job.local:
                if not job.job_dir:
                    raise RuntimeError("NDFLOW_PS_CHECKPOINT_EVERY is set but NDFLOW_PS_JOB_DIR is not: "
                                       "tools/ndflow-launch sets it (--log-dir)")
                checkpoint = os.path.join(job.job_dir, f"server-{job.rank}.ndf")
            # A restarted server (incarnation > 0) restores its tables and clock table from its checkpoint.
            job.server = _ps.Server(job.secret, job.num_workers, address, job.heartbeat_timeout, checkpoint,
                                    job.checkpoint_every or 0, job.incarnation > 0)
        mine = 0 if job.local else job.rank
        with no_grad():
            for name, t in named.items():
                for server, begin, end in job.tables[name]:
                    if server == mine:
                        part = t.detach() if t.dim() == 0 or len(job.tables[name]) == 1 else t.detach()[begin:end]
                        job.server.add_table(name, part.contiguous().clone(), rule, lr, sync, hyper)
    if job.local and not job.server.running:   # a running one takes later tables as they come
        job.server.start()
        job.servers = [job.server.endpoint]
    if job.role == "worker":
        if job.worker is None:
            job.worker = _ps.Worker(job.servers, job.secret, job.rank, job.incarnation + 1, job.timeout, job.cache)
            job.worker_thread, job.worker_thread_name = threading.get_ident(), threading.current_thread().name
            if not job.local:
                _start_heartbeat(job)
        for name, t in named.items():
            job.worker.add_table(name, list(t.shape), job.tables[name], sync, rule)
    return list(named)


def _start_heartbeat(job):
    """Pings every server from a thread of its own, through connections of
    its own (a Client belongs to one thread), so that a worker busy with a
    long step is not declared dead. Any request keeps a worker alive too."""
    interval = job.heartbeat_timeout / 4
    clients = [_ps.Client(a, job.secret, job.rank, job.incarnation + 1, min(job.timeout, job.heartbeat_timeout))
               for a in job.servers]
    stop = threading.Event()

    def beat():
        while not stop.wait(interval):
            for c in clients:
                try:
                    c.ping()
                except Exception:  # a dead server: the training calls report it, naming the server
                    pass

    thread = threading.Thread(target=beat, name="ndflow-ps-heartbeat", daemon=True)
    thread.start()
    job.heartbeat = (thread, stop)

    def stop_beating():
        stop.set()
        thread.join(timeout=1.0)  # a ping to a dead server may hang on; the daemon thread then dies with us
    atexit.register(stop_beating)


def serve():
    """Server role: serves the registered tables until SIGTERM or SIGINT
    (the launcher stops servers that way once every worker is done)."""
    job = _job()
    if job.role != "server":
        raise RuntimeError("ps.serve() is for the server role; workers train (see PSTrainer)")
    if job.server is None:
        raise RuntimeError("ps.serve(): register the parameters first (ps.register(model))")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    job.server.start()
    while not stop.wait(0.2):
        pass
    job.server.stop()


def _worker():
    job = _job()
    if job.role != "worker":
        raise RuntimeError("push/pull/clock/barrier are for workers; servers call ps.serve()")
    if job.worker is None:
        raise RuntimeError("register the parameters first (ps.register(model))")
    if threading.get_ident() != job.worker_thread:
        # The connections and the cache are one thread's (no locks on the hot path).
        raise RuntimeError("ndflow.distributed.ps: push/pull/clock must come from the thread that called "
                           f"register() ({job.worker_thread_name!r}); this is {threading.current_thread().name!r}")
    return job.worker


def push(name, value):
    """Sends `value` to table `name` (to each server its rows, for a split
    table); returns a handle (handle.wait()). Leave `value` unmodified until
    then: it is sent without a copy."""
    return _worker().push(name, value.detach().contiguous())


def pull(name):
    """The table's value once its consistency model allows; returns a handle.
    A read the consistency model allows from the worker's cache does not
    reach the servers (see cache_stats())."""
    return _worker().pull(name)


def push_rows(name, ids, rows):
    """Sends updates of some rows of table `name`: ids (i64 [k]) and rows
    ([k, *row_shape]); returns a handle."""
    return _worker().push_rows(name, ids.contiguous(), rows.detach().contiguous())


def pull_rows(name, ids):
    """Rows `ids` (i64 [k]) of table `name` once the consistency model
    allows; returns a handle."""
    return _worker().pull_rows(name, ids.contiguous())


def set_lr(lr, names=None):
    """Sets the learning rate of the server-side optimizer of tables `names`
    (default: every table registered with a rule other than "accumulate"),
    on every server holding a shard; it applies to the pushes the servers
    take from then on (a BSP clock not yet committed steps with it). Call it
    from one worker, or from every worker with the same value, e.g. with a
    schedule's value each epoch. Checkpointed with the optimizer state."""
    job = _job()
    worker = _worker()
    if names is None:
        names = [n for n, r in job.rules.items() if r != "accumulate"]
        if not names:
            raise ValueError("ps.set_lr: no table has a server-side optimizer (register(..., rule='sgd'|'adam'|...))")
    handles = [worker.set_lr(n, float(lr)) for n in names]
    for h in handles:
        h.wait()


def clock():
    """Ends this worker's step on every server."""
    _worker().clock()


def barrier():
    """Ends this worker's step (clock()) and waits until every live worker
    has reached it: after a barrier, a pull sees every update pushed before
    it, under any consistency model."""
    _worker().barrier()


def current_clock():
    """This worker's clock: the steps it has finished, or for a restarted
    worker, the clock it rejoined at (where to continue)."""
    return _worker().current_clock


def cache_stats():
    """The worker cache's hits and misses: {"hits", "misses"} for whole-table
    pulls, {"row_hits", "row_misses"} for rows, and "staleness": the
    whole-table reads this worker got per staleness 0..15 ([16]: 16 or more),
    cached or not (the servers' stats count only what reached them)."""
    return _worker().cache_stats()


def layout(name):
    """Where table `name` lives: [(server, first row, end row)], one entry
    per shard (a whole table is one shard)."""
    job = _job()
    if name not in job.tables:
        raise KeyError(f"table {name!r} is not registered (tables: {sorted(job.tables)})")
    return list(job.tables[name])


class PSTrainer:
    """Keeps a module's parameters in step with the servers around each
    training step: pulls them before, pushes (new - old) * scale after, then
    clocks. scale defaults to 1/num_workers (the mean, as data parallelism).

    server_optimizer=True (for tables registered with a server-side rule such
    as "momentum" or "adam"): the worker runs no optimizer; the step only
    computes gradients (backward), and push() sends p.grad * scale, so a BSP
    clock's summed pushes are the mean gradient over the workers, on which
    the server takes one optimizer step."""

    def __init__(self, module, scale=None, server_optimizer=False):
        job = _job()
        if job.role != "worker":
            raise RuntimeError("PSTrainer runs on workers; servers call ps.serve()")
        self.named = dict(module.named_parameters())
        missing = [n for n in self.named if n not in job.tables]
        if missing:
            raise ValueError(f"PSTrainer: parameters {missing} are not registered; call ps.register(model) first")
        self.scale = 1.0 / job.num_workers if scale is None else float(scale)
        self.server_optimizer = bool(server_optimizer)
        self.staleness = []   # per step: this worker's clock - the slowest clock its pulls saw

    def pull(self):
        handles = {n: pull(n) for n in self.named}  # all in flight at once
        stale = 0
        clock_now = current_clock()
        with no_grad():
            for n, h in handles.items():
                value = h.wait()
                self.named[n].copy_(value)
                stale = max(stale, clock_now - h.slowest_clock)
        self.staleness.append(stale)
        return {n: p.detach().clone() for n, p in self.named.items()}

    def push(self, before):
        with no_grad():
            if self.server_optimizer:
                missing = [n for n, p in self.named.items() if p.grad is None]
                if missing:
                    raise RuntimeError(f"PSTrainer(server_optimizer=True): no gradient for {missing}; "
                                       "run backward() inside step()")
                deltas = {n: p.grad.detach() * self.scale for n, p in self.named.items()}
            else:
                deltas = {n: (p.detach() - before[n]) * self.scale for n, p in self.named.items()}
        for h in [push(n, d) for n, d in deltas.items()]:
            h.wait()
        clock()

    @contextlib.contextmanager
    def step(self):
        before = self.pull()
        yield
        self.push(before)
