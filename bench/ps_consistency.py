"""BSP vs ASP vs SSP with stragglers: the Fashion-MNIST MLP trained through
the parameter server by 4 workers under each consistency model, with
persistent or transient stragglers; test accuracy against wall time, written
to a PNG, and the time each takes to reach the target accuracy.

    .venv/bin/python bench/ps_consistency.py                 # both modes, bsp asp ssp:1 ssp:3
    .venv/bin/python bench/ps_consistency.py --straggler transient --repeats 3
    .venv/bin/python bench/ps_consistency.py --steps 400 --target 0.85

Every configuration is one job of tools/ndflow-launch (1 server, 4 workers,
one kernel thread each). Each step is the MLP's real step (~1 ms of compute
and ~3 ms of pull + push + clock here: 2 cores for 5 processes) plus a
simulated compute time T (--step-ms, 10 ms) that every worker sleeps, as a
model 10x heavier would compute: without it the step-time jitter of 5
processes on 2 cores is as large as the stragglers' delays and drowns them.
Sleeping, not computing, so a slow worker takes no CPU from the others; the
same delays for every consistency model (a delay scaled on each measured
step would not be: a step's time depends on the model):

  persistent  worker 3 sleeps 3T instead of T: always ~3x slower. SSP(s)
              lets the fast workers run at most s clocks ahead of it; once
              they are, they wait for it at every clock as under BSP, so in
              steady state SSP makes as many clocks/s as BSP and only ASP
              (no bound) gains.
  transient   every worker, independently at each step, with probability
              --delay-prob (0.25) sleeps another --delay-factor (4) x T: on
              average 2T per step, every worker alike (random background
              load). BSP pays the slowest worker of every clock (P(some
              worker is delayed) = 1 - 0.75^4 = 68%); SSP's s clocks of slack
              absorb delays that hit different workers at different clocks,
              the case of Ho et al. (NIPS 2013).

The delays are drawn from a generator seeded with the worker's rank, so the
pattern of who sleeps at which step is the same in every run. Worker 0 scores
2,000 test images every --eval-every steps with the parameters it just
pulled, and logs (seconds, clock, accuracy, max staleness so far). The server
writes its stats when it is stopped: how long each worker's pulls were held
back (the consistency model's wait). With --repeats N each configuration runs
N times (interleaved) and the table reports medians and the per-run values.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODES = ("persistent", "transient")


def worker_main(args):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import ndflow as nd
    import ndflow.distributed.ps as ps
    import ndflow.nn as nn
    import ndflow.nn.functional as F
    nd.set_num_threads(1)
    ps.init()
    nd.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    tables = ps.register(model, sync=args.sync)
    if ps.is_server():
        ps.serve()  # until the launcher's SIGTERM, once every worker is done
        stats = ps._job().server.stats()  # the server object is not public; stats() is bound for this
        stats["tables"] = len(tables)
        with open(args.log + ".server.json", "w") as f:
            json.dump(stats, f)
        return
    rank, workers = ps.rank(), ps.num_workers()
    train = nd.datasets.FashionMNIST(train=True)
    test = nd.datasets.FashionMNIST(train=False)
    norm = lambda a: ((a.reshape(len(a), 784).astype(np.float32) / 255.0) - 0.2860) / 0.3530  # noqa: E731
    x, y = norm(train.data), train.targets.astype(np.int64)
    xt, yt = nd.tensor(norm(test.data[:2000])), test.targets[:2000]
    rng = np.random.default_rng(rank)                # the data: the same in both modes
    delays = np.random.default_rng(1000 + rank)      # who sleeps when (transient mode)
    opt = nd.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trainer = ps.PSTrainer(model)

    @nd.function
    def step(xb, yb):
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    @nd.function
    def predict(xb):
        return nd.argmax(model(xb), axis=1)

    log = open(args.log, "w") if rank == 0 else None
    t0 = time.perf_counter()
    clock, slept, steps = 0, 0.0, []
    base = args.step_ms / 1000
    # The same number of steps for every worker: one that stopped early would
    # hold BSP/SSP readers back until the heartbeat timeout declares it dead.
    while clock < args.steps:
        idx = rng.integers(0, len(x), 128)
        s0 = time.perf_counter()
        before = trainer.pull()  # what trainer.step() does
        step(nd.tensor(x[idx]), nd.tensor(y[idx]))
        trainer.push(before)     # pushes, then clocks
        s2 = time.perf_counter()
        clock += 1
        steps.append(s2 - s0)
        delay = 0.0
        if clock > 1:  # not after the first step, which traces and compiles step()
            delay = base  # the simulated compute
            if args.straggler == "persistent":
                if rank == workers - 1:
                    delay = 3 * base
            elif delays.random() < args.delay_prob:
                delay += args.delay_factor * base
        time.sleep(delay)
        slept += delay
        if log and clock % args.eval_every == 0:
            acc = float((predict(xt).numpy() == yt).mean())
            log.write(json.dumps({"t": time.perf_counter() - t0, "clock": clock, "acc": acc,
                                  "staleness": max(trainer.staleness)}) + "\n")
            log.flush()
    with open(f"{args.log}.w{rank}.json", "w") as f:
        json.dump({"slept": slept, "step": float(np.median(steps))}, f)


def run_config(mode, sync, rep, args):
    log = os.path.join(args.out_dir, f"ps_{mode}_{sync.replace(':', '')}_r{rep}.jsonl")
    cmd = [os.path.join(ROOT, "tools", "ndflow-launch"), "--servers", "1", "--workers", "4", "--max-restarts", "0",
           "--", sys.executable, os.path.abspath(__file__), "--worker", "--sync", sync, "--log", log,
           "--steps", str(args.steps), "--eval-every", str(args.eval_every), "--straggler", mode,
           "--delay-prob", str(args.delay_prob), "--delay-factor", str(args.delay_factor),
           "--step-ms", str(args.step_ms)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for stale in [log, log + ".server.json"] + [f"{log}.w{k}.json" for k in range(4)]:
        if os.path.exists(stale):
            os.remove(stale)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if r.returncode != 0:
        sys.exit(f"{mode} {sync}: the job failed:\n{r.stderr[-3000:]}")
    pts = [json.loads(line) for line in open(log)]
    hit = next((q for q in pts if q["acc"] >= args.target), None)
    run = {"pts": pts, "reach": hit["t"] if hit else None, "clocks_per_s": pts[-1]["clock"] / pts[-1]["t"],
           "final": pts[-1]["acc"], "staleness": max(q["staleness"] for q in pts), "wait": None}
    if os.path.exists(log + ".server.json"):
        st = json.load(open(log + ".server.json"))
        # The server sums the wait of every held-back pull; PSTrainer pulls all tables at once and they
        # are answered together, so the wall time a worker waited is about the sum / the number of tables.
        run["wait_per_worker"] = [ms / 1000 / st["tables"] for ms in st["pull_wait_ms"]]
        fast = run["wait_per_worker"][:-1] if mode == "persistent" else run["wait_per_worker"]
        run["wait"] = sum(fast) / len(fast)
    ws = [json.load(open(f"{log}.w{k}.json")) for k in range(4)]
    waits = " ".join(f"{w:.2f}" for w in run.get("wait_per_worker", []))
    slept = " ".join(f"{w['slept']:.2f}" for w in ws)
    step_ms = " ".join(f"{w['step'] * 1000:.1f}" for w in ws)
    reach = f"{run['reach']:.1f} s" if hit else "not reached"
    print(f"  {mode:10s} {sync:5s} run {rep}: {args.target:.0%} at {reach}, {pts[-1]['t']:.1f} s in all, "
          f"{run['clocks_per_s']:.1f} clocks/s (worker 0), final {run['final']:.2%}, "
          f"per worker: pull wait [{waits}] s, slept [{slept}] s, median step (pull incl.) [{step_ms}] ms", flush=True)
    return run


def fmt(v, unit=" s"):
    return "-" if v is None else f"{v:.1f}{unit}"


def describe(mode, args):
    t = f"T = {args.step_ms:g} ms"
    if mode == "persistent":
        return f"every step sleeps T, worker 3's 3T, {t}"
    return f"every step sleeps T, + {args.delay_factor:g}T with p = {args.delay_prob:g}, {t}"


def report(mode, runs, args):
    """runs: {sync: [run, ...]} for one straggler mode."""
    print(f"\n{mode} stragglers ({describe(mode, args)}), {args.steps} steps per worker, {args.repeats} run(s), "
          f"{os.cpu_count()} cores")
    fast = "workers 0-2" if mode == "persistent" else "every worker"
    print(f"| consistency | time to {args.target:.0%} (median) | per run | worker-0 clocks/s (mean) | "
          f"final accuracy (median) | max staleness seen | pull wait per worker, {fast} (median) |")
    print("|---|---|---|---|---|---|---|")
    for sync, rs in runs.items():
        reached = [r["reach"] for r in rs]
        # A run that missed the target counts as infinitely slow for the median.
        med = statistics.median([v if v is not None else float("inf") for v in reached])
        med = None if med == float("inf") else med
        waits = [r["wait"] for r in rs if r["wait"] is not None]
        print(f"| {sync} | {fmt(med) if med is not None else 'not reached'} | "
              f"{', '.join(fmt(v) if v is not None else 'no' for v in reached)} | "
              f"{statistics.mean(r['clocks_per_s'] for r in rs):.1f} | "
              f"{statistics.median(r['final'] for r in rs):.2%} | {max(r['staleness'] for r in rs)} | "
              f"{fmt(statistics.median(waits)) if waits else 'n/a'} |")


def plot(results, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plot")
        return
    modes = list(results)
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.8), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for i, (sync, rs) in enumerate(results[mode].items()):
            for k, r in enumerate(rs):  # every repeat, one color per consistency model
                ax.plot([q["t"] for q in r["pts"]], [q["acc"] for q in r["pts"]], color=f"C{i}",
                        alpha=0.85 if k == 0 else 0.4, linewidth=1.6 if k == 0 else 1.0,
                        label=sync.upper() if k == 0 else None)
        ax.axhline(args.target, color="gray", linestyle=":", linewidth=1)
        ax.set_title(f"{mode}: {describe(mode, args)}", fontsize=10)
        ax.set_xlabel("wall time (s)")
        ax.set_ylim(0.5, 0.9)
        ax.grid(alpha=0.3)
        ax.legend(title=f"{args.repeats} run(s) each", fontsize=9)
    axes[0][0].set_ylabel("test accuracy (2,000 images)")
    fig.suptitle("Parameter server, 1 server x 4 workers, Fashion-MNIST MLP")
    png = os.path.join(args.out_dir, "ps_consistency.png")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--syncs", nargs="+", default=["bsp", "asp", "ssp:1", "ssp:3"])
    p.add_argument("--straggler", choices=["persistent", "transient", "both"], default="both")
    p.add_argument("--delay-prob", type=float, default=0.25, help="transient: chance of a delay per worker-step")
    p.add_argument("--delay-factor", type=float, default=4.0, help="transient: a delay is this x T (--step-ms)")
    p.add_argument("--step-ms", type=float, default=10.0,
                   help="simulated compute time T per step, which the delays are multiples of")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration (median reported)")
    p.add_argument("--steps", type=int, default=400, help="steps per worker (128 images each)")
    p.add_argument("--target", type=float, default=0.85)
    p.add_argument("--eval-every", type=int, default=20, help="worker 0 evaluates every N of its steps")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "runs", "ps_consistency"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sync", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.step_ms <= 0:
        p.error("--step-ms must be > 0")
    if args.worker:
        return worker_main(args)
    os.makedirs(args.out_dir, exist_ok=True)
    modes = MODES if args.straggler == "both" else (args.straggler,)
    results = {m: {s: [] for s in args.syncs} for m in modes}
    t0 = time.perf_counter()
    for rep in range(args.repeats):  # repeats outermost: a slow spell of the machine hits every config alike
        for m in modes:
            for s in args.syncs:
                results[m][s].append(run_config(m, s, rep, args))
    print(f"({len(modes) * len(args.syncs) * args.repeats} jobs in {time.perf_counter() - t0:.0f} s)")
    for m in modes:
        report(m, results[m], args)
    plot(results, args)


if __name__ == "__main__":
    main()
