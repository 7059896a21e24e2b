"""BSP vs ASP vs SSP with a straggler: the Fashion-MNIST MLP trained through
the parameter server by 4 workers, one of them slowed 3x, under each
consistency model; test accuracy against wall time, written to a PNG, and
the time each takes to reach the target accuracy.

    .venv/bin/python bench/ps_consistency.py                 # bsp asp ssp:1 ssp:3
    .venv/bin/python bench/ps_consistency.py --steps 400 --target 0.85

Every configuration is one job of tools/ndflow-launch (1 server, 4 workers,
one kernel thread each). The straggler (worker 3) sleeps twice its own step
time after every step. Worker 0 scores 2,000 test images every --eval-every
steps with the parameters it just pulled, and logs (seconds, clock, accuracy).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


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
    ps.register(model, sync=args.sync)
    if ps.is_server():
        ps.serve()
        return
    rank, workers = ps.rank(), ps.num_workers()
    train = nd.datasets.FashionMNIST(train=True)
    test = nd.datasets.FashionMNIST(train=False)
    norm = lambda a: ((a.reshape(len(a), 784).astype(np.float32) / 255.0) - 0.2860) / 0.3530  # noqa: E731
    x, y = norm(train.data), train.targets.astype(np.int64)
    xt, yt = nd.tensor(norm(test.data[:2000])), test.targets[:2000]
    rng = np.random.default_rng(rank)
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
    clock = 0
    # A fixed number of steps per worker: a worker that stopped early would
    # hold BSP/SSP readers back forever (dead-worker removal is not in yet).
    while clock < args.steps:
        idx = rng.integers(0, len(x), 128)
        s0 = time.perf_counter()
        with trainer.step():
            step(nd.tensor(x[idx]), nd.tensor(y[idx]))
        clock += 1
        if rank == workers - 1:  # the straggler: 3x the time of a step
            time.sleep(2 * (time.perf_counter() - s0))
        if log and clock % args.eval_every == 0:
            acc = float((predict(xt).numpy() == yt).mean())
            log.write(json.dumps({"t": time.perf_counter() - t0, "clock": clock, "acc": acc,
                                  "staleness": trainer.staleness[-1]}) + "\n")
            log.flush()


def run_config(sync, args, out_dir):
    log = os.path.join(out_dir, f"ps_{sync.replace(':', '')}.jsonl")
    cmd = [os.path.join(ROOT, "tools", "ndflow-launch"), "--servers", "1", "--workers", "4", "--max-restarts", "0",
           "--", sys.executable, os.path.abspath(__file__), "--worker", "--sync", sync, "--log", log,
           "--steps", str(args.steps), "--eval-every", str(args.eval_every)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if r.returncode != 0:
        sys.exit(f"{sync}: the job failed:\n{r.stderr[-3000:]}")
    return [json.loads(line) for line in open(log)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--syncs", nargs="+", default=["bsp", "asp", "ssp:1", "ssp:3"])
    p.add_argument("--steps", type=int, default=400, help="steps per worker (128 images each)")
    p.add_argument("--target", type=float, default=0.85)
    p.add_argument("--eval-every", type=int, default=20, help="worker 0 evaluates every N of its steps")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "runs", "ps_consistency"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sync", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker_main(args)
    os.makedirs(args.out_dir, exist_ok=True)
    curves = {s: run_config(s, args, args.out_dir) for s in args.syncs}
    print(f"Fashion-MNIST MLP, 1 server x 4 workers (worker 3 slowed 3x), {args.steps} steps per worker, "
          f"{os.cpu_count()} cores")
    print(f"| consistency | time to {args.target * 100:.0f}% | worker-0 clocks by then | final accuracy | "
          "worker-0 clocks in all | max staleness seen |")
    print("|---|---|---|---|---|---|")
    for s, pts in curves.items():
        hit = next((q for q in pts if q["acc"] >= args.target), None)
        reach = f"{hit['t']:.1f} s" if hit else "not reached"
        clocks = str(hit["clock"]) if hit else "-"
        print(f"| {s} | {reach} | {clocks} | {pts[-1]['acc'] * 100:.2f}% | {pts[-1]['clock']} | "
              f"{max(q['staleness'] for q in pts)} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, pts in curves.items():
        ax.plot([q["t"] for q in pts], [q["acc"] for q in pts], label=s.upper())
    ax.axhline(args.target, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("test accuracy (2,000 images)")
    ax.set_title("Parameter server, 4 workers, one 3x straggler")
    ax.set_ylim(0.5, 0.9)
    ax.legend()
    ax.grid(alpha=0.3)
    png = os.path.join(args.out_dir, "ps_consistency.png")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
