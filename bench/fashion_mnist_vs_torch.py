"""Fashion-MNIST training, MLP and CNN: ndflow (eager and @nd.function graph) vs PyTorch eager.

    .venv/bin/python bench/fashion_mnist_vs_torch.py             # MLP, 3 rounds x 1 epoch
    .venv/bin/python bench/fashion_mnist_vs_torch.py --model cnn # the CNN (--model both: one, then the other)
    .venv/bin/python bench/fashion_mnist_vs_torch.py --quick     # smoke run on a subset
    .venv/bin/python bench/fashion_mnist_vs_torch.py --rounds 5 --epochs 2

Same work on every side (see shared/BENCHMARKING.md): MLP 784-256-128-10 or
CNN conv3x3(32)-relu-maxpool2-conv3x3(64)-relu-maxpool2-fc128-relu-fc10 (no
padding: 28 -> 26 -> 13 -> 11 -> 5) with
initial weights drawn by NumPy from --seed, Fashion-MNIST scaled to float32/255
once by the parent and read by every worker from the same .npy files, one NumPy
permutation per epoch (drop-last batches of 128), SGD lr 0.05 momentum 0.9,
2 threads. Each configuration runs in its own subprocess
(`--worker torch|nd-eager|nd-graph --model mlp|cnn`, one "RESULT {json}" line), alternated
round by round: torch, nd-eager, nd-graph, torch, ...

Per worker: a few warm-up steps (allocation, oneDNN primitives, tracing), then
the weights and momentum buffers are reset to their initial values and the
epochs are timed with time.perf_counter, NumPy batching included (identical
code on all sides). Then test accuracy, then the training step at batch 1
(median of per-step times after warm-up; the inputs are prepared beforehand).
Memory: peak RSS (VmHWM) above the RSS right after the framework import; the
data is loaded before the import (and VmHWM reset after it where the kernel
allows), so the figure is the framework's: model, optimizer, activations,
workspaces, compiled graphs. (The torch worker imports torch._dynamo with torch:
torch.optim's first step would import it lazily, ~150 MB of modules.)
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [784, 256, 128, 10]
CNN_CHANNELS = [1, 32, 64]      # 3x3 convolutions without padding, each followed by relu and a 2x2 max pool
CNN_FC = [64 * 5 * 5, 128, 10]  # 28 -> 26 -> 13 -> 11 -> 5
MODELS = {"mlp": "MLP " + "-".join(map(str, SIZES)),
          "cnn": "CNN conv32-pool-conv64-pool-fc128-fc10 (3x3, 2x2 max pools)"}
CONFIGS = ["torch", "nd-eager", "nd-graph"]
MIN_PEER_GFLOPS = 150.0
ACC_TOLERANCE = 0.01  # ndflow's test accuracy may be at most this much below PyTorch's
# (label, ndflow config, metric, target ratio, stretch target) -- ratio = ndflow / PyTorch
TARGETS = {
    "mlp": [("epoch time, graph", "nd-graph", "epoch", 0.8, 0.7),
            ("epoch time, eager", "nd-eager", "epoch", 1.0, None),
            ("step at batch 1, graph", "nd-graph", "b1", 0.25, None),
            ("step at batch 1, eager", "nd-eager", "b1", None, None),
            ("peak memory, graph", "nd-graph", "mem", 1.0, None),
            ("peak memory, eager", "nd-eager", "mem", 1.0, None)],
    "cnn": [("epoch time, graph", "nd-graph", "epoch", 0.8, 0.6),
            ("epoch time, eager", "nd-eager", "epoch", 1.0, None),
            ("step at batch 1, graph", "nd-graph", "b1", None, None),
            ("step at batch 1, eager", "nd-eager", "b1", None, None),
            ("peak memory, graph", "nd-graph", "mem", 1.0, None),
            ("peak memory, eager", "nd-eager", "mem", 1.0, None)],
}


# ----------------------------------------------------------------- memory

def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------- the model

def initial_weights(seed, model="mlp"):
    """{state-dict name: array} for the Sequential that make_layers builds, every weight and
    bias uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch.nn.Linear's and Conv2d's default
    bounds: Kaiming-uniform with a = sqrt(5) gives exactly that for the weights)."""
    rng = np.random.default_rng(seed)
    out = {}

    def draw(name, shape, fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        out[f"{name}.weight"] = rng.uniform(-bound, bound, shape).astype(np.float32)
        out[f"{name}.bias"] = rng.uniform(-bound, bound, (shape[0],)).astype(np.float32)

    if model == "cnn":
        for k, (cin, cout) in enumerate(zip(CNN_CHANNELS[:-1], CNN_CHANNELS[1:])):
            draw(str(3 * k), (cout, cin, 3, 3), cin * 9)
        first_fc = 3 * (len(CNN_CHANNELS) - 1) + 1
        for k, (fan_in, fan_out) in enumerate(zip(CNN_FC[:-1], CNN_FC[1:])):
            draw(str(first_fc + 2 * k), (fan_out, fan_in), fan_in)
        return out
    for k, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        draw(str(2 * k + 1), (fan_out, fan_in), fan_in)
    return out


def make_layers(nn, model):
    """The layers of the model, the same on both sides: for the MLP Flatten, Linear, ReLU, ...;
    for the CNN (Conv2d, ReLU, MaxPool2d) x 2, Flatten, Linear, ReLU, Linear."""
    if model == "cnn":
        layers = []
        for cin, cout in zip(CNN_CHANNELS[:-1], CNN_CHANNELS[1:]):
            layers += [nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.MaxPool2d(2)]
        layers.append(nn.Flatten())
        sizes = CNN_FC
    else:
        layers, sizes = [nn.Flatten()], SIZES
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(fan_in, fan_out)] + ([nn.ReLU()] if k < len(sizes) - 2 else [])
    return layers


def epoch_order(seed, epoch, n):
    return np.random.default_rng([seed, epoch]).permutation(n)


def build(worker, threads, weights, model_kind="mlp"):
    """(framework, from_numpy, model, step, reset, no_grad) for one configuration."""
    if worker == "torch":
        import torch as fw
    else:
        import ndflow as fw
    fw.set_num_threads(threads)
    fw.manual_seed(0)
    nn, from_numpy = fw.nn, fw.from_numpy
    model = nn.Sequential(*make_layers(nn, model_kind))
    loss_fn = nn.CrossEntropyLoss()
    opt = fw.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def train_step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if worker == "torch":
        def reset():
            model.load_state_dict({k: fw.from_numpy(v.copy()) for k, v in weights.items()})
            with fw.no_grad():  # momentum buffers back to zero, in place
                for slots in opt.state.values():
                    slots["momentum_buffer"].zero_()
    else:
        opt_state0 = opt.state_dict()  # zero momentum buffers (clones)

        def reset():  # in place: a compiled step keeps seeing the same Variables
            model.load_state_dict(weights)
            opt.load_state_dict(opt_state0)
    step = fw.function(train_step) if worker == "nd-graph" else train_step
    reset()
    return fw, from_numpy, model, step, reset, fw.no_grad


# ----------------------------------------------------------------- worker

def worker_main(a):
    t_start = time.perf_counter()
    d = a.data
    X, Y = np.load(f"{d}/x_train.npy"), np.load(f"{d}/y_train.npy")
    Xt, Yt = np.load(f"{d}/x_test.npy"), np.load(f"{d}/y_test.npy")
    if a.model == "cnn":  # NCHW views: batches X[idx] are [B, 1, 28, 28]
        X, Xt = X.reshape(-1, 1, 28, 28), Xt.reshape(-1, 1, 28, 28)
    weights = initial_weights(a.seed, a.model)
    rss_before_import = _status_kb("VmRSS")
    if a.worker == "torch":
        import torch
        try:  # torch.optim's first step imports it (~150 MB of Python modules, sympy...):
            import torch._dynamo  # noqa: F401  an import cost, not training memory
        except ImportError:
            pass
        version = torch.__version__
    else:
        import ndflow
        version = ndflow.__version__
    import gc
    gc.collect()
    hwm_reset = _reset_peak_rss()
    rss_base = _status_kb("VmRSS")

    fw, from_numpy, model, step, reset, no_grad = build(a.worker, a.threads, weights, a.model)
    n, bs = len(X), a.batch
    nbatches = n // bs

    def run_batches(order, count):
        loss = None
        for i in range(count):
            idx = order[i * bs:(i + 1) * bs]
            loss = step(from_numpy(X[idx]), from_numpy(Y[idx]))
        return loss

    # Warm-up (allocation, oneDNN primitives, tracing), then back to the initial state.
    warm_order = np.random.default_rng([a.seed, 999]).permutation(n)
    t0 = time.perf_counter()
    first_loss = float(run_batches(warm_order, 1).item())
    if a.warmup > 1:
        run_batches(warm_order[bs:], a.warmup - 1).item()
    warmup_s = time.perf_counter() - t0
    reset()

    epoch_s, last_loss = [], None
    for e in range(a.epochs):
        order = epoch_order(a.seed, e, n)
        t0 = time.perf_counter()
        loss = run_batches(order, nbatches)
        last_loss = float(loss.item())  # sync inside the timing
        epoch_s.append(time.perf_counter() - t0)

    correct = 0
    with no_grad():
        for i in range(0, len(Xt), 1000):
            logits = model(from_numpy(Xt[i:i + 1000])).numpy()
            correct += int((logits.argmax(1) == Yt[i:i + 1000]).sum())
    accuracy = correct / len(Xt)

    # Training step at batch 1, same model (weights keep training; irrelevant for time).
    order = epoch_order(a.seed, 1000, n)
    singles = [(X[j:j + 1], Y[j:j + 1]) for j in order[:a.b1_warmup + a.b1_steps]]
    b1 = []
    for i, (x, y) in enumerate(singles):
        t0 = time.perf_counter()
        step(from_numpy(x), from_numpy(y))
        if i >= a.b1_warmup:
            b1.append(time.perf_counter() - t0)

    hwm = _status_kb("VmHWM")
    import resource
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; not reset by clear_refs
    peak = hwm if hwm_reset else max(hwm or 0, maxrss)
    threads = fw.get_num_threads()
    print("RESULT " + json.dumps({
        "worker": a.worker, "model": a.model, "version": version, "threads": threads,
        "epoch_s": epoch_s, "samples_per_epoch": nbatches * bs, "warmup_s": warmup_s,
        "first_loss": first_loss, "last_loss": last_loss, "accuracy": accuracy,
        "b1_us": statistics.median(b1) * 1e6 if b1 else None,
        "import_mb": (rss_base - rss_before_import) / 1024, "base_mb": rss_base / 1024,
        "peak_above_base_mb": (peak - rss_base) / 1024, "hwm_reset": hwm_reset,
        "wall_s": time.perf_counter() - t_start}), flush=True)
    return 0


# ----------------------------------------------------------------- parent

def prepare_data(root, directory, n_train, n_test):
    """Fashion-MNIST as float32/255 (N, 28, 28) and int64 labels, in .npy files that
    every worker loads (no framework import needed there)."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    from ndflow.datasets import FashionMNIST
    for split, count in (("train", n_train), ("test", n_test)):
        ds = FashionMNIST(root=root, train=(split == "train"))
        x = ds.data[:count].astype(np.float32)
        x /= 255.0
        np.save(f"{directory}/x_{split}.npy", x)
        np.save(f"{directory}/y_{split}.npy", np.ascontiguousarray(ds.targets[:count], dtype=np.int64))


def child_env(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
               NDFLOW_PEER_THREADS=str(threads))
    pypath = os.path.join(os.path.dirname(HERE), "python")
    env["PYTHONPATH"] = pypath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def peer_info(threads):
    """(torch version or None, sgemm GFLOP/s or None) from bench/peer_torch.py info."""
    try:
        p = subprocess.run([sys.executable, os.path.join(HERE, "peer_torch.py"), "info"],
                           env=child_env(threads), capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, None
    version, gflops = None, None
    for line in p.stdout.splitlines():
        if line.startswith("hello torch="):
            v = line.split()[1].split("=", 1)[1]
            version = None if v == "none" else v
        elif line.startswith("result "):
            gflops = float(line.split()[1])
    return version, gflops


def run_worker(name, a):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--model", a.model, "--data", a.data,
           "--epochs", str(a.epochs), "--seed", str(a.seed), "--batch", str(a.batch),
           "--threads", str(a.threads), "--warmup", str(a.warmup),
           "--b1-steps", str(a.b1_steps), "--b1-warmup", str(a.b1_warmup)]
    try:
        p = subprocess.run(cmd, env=child_env(a.threads), capture_output=True, text=True,
                           timeout=a.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {a.timeout} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (p.stderr or p.stdout).strip().splitlines()[-6:]
    return {"error": f"exit {p.returncode}: " + " | ".join(tail)}


def med(v):
    return statistics.median(v) if v else float("nan")


def summarize(results, peer_ok, model="mlp"):
    """Per configuration: (epoch min, epoch median, samples/s at min, accuracy, memory, b1)."""
    rows = {}
    for name, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            continue
        ep = [t for r in ok for t in r["epoch_s"]]
        rows[name] = {"min": min(ep), "med": med(ep), "sps": ok[0]["samples_per_epoch"] / min(ep),
                      "acc": med([r["accuracy"] for r in ok]), "loss0": ok[0]["first_loss"],
                      "mem": med([r["peak_above_base_mb"] for r in ok]),
                      "imp": med([r["import_mb"] for r in ok]),
                      "b1min": min(r["b1_us"] for r in ok), "b1": med([r["b1_us"] for r in ok]),
                      "runs": len(ok), "threads": ok[0]["threads"]}
    print(f"\n{'config':<9} {'epoch min':>9} {'median':>8} {'samples/s':>10} {'test acc':>8} "
          f"{'loss@0':>7} {'mem MB':>7} {'import MB':>9} {'b1 min us':>9} {'b1 med us':>9}  runs")
    for name in CONFIGS:
        r = rows.get(name)
        if r:
            print(f"{name:<9} {r['min']:>8.3f}s {r['med']:>7.3f}s {r['sps']:>10.0f} {r['acc']:>8.4f} "
                  f"{r['loss0']:>7.4f} {r['mem']:>7.1f} {r['imp']:>9.1f} {r['b1min']:>9.1f} "
                  f"{r['b1']:>9.1f}  {r['runs']} ({r['threads']} thr)")
    print("  mem MB: peak RSS above the RSS right after import (median over rounds); "
          "b1: training step at batch 1, median per round")
    if "torch" not in rows or not peer_ok:
        return
    t = rows["torch"]
    print(f"\n{'ratio ndflow / PyTorch':<26} {'by min':>7} {'by median':>9}  target")
    for label, name, metric, target, stretch in TARGETS[model]:
        r = rows.get(name)
        if not r:
            continue
        if metric == "epoch":
            lo, mid = r["min"] / t["min"], r["med"] / t["med"]
        elif metric == "b1":
            lo, mid = r["b1min"] / t["b1min"], r["b1"] / t["b1"]
        else:
            lo = mid = r["mem"] / t["mem"] if t["mem"] > 0 else float("nan")
        if target is None:
            goal = "(no target)"
        else:
            goal = f"<= {target:.2f}x" + (f" (aim {stretch:.2f}x)" if stretch else "")
            goal += ": met" if lo <= target else ": MISSED"
        print(f"{label:<26} {lo:>6.2f}x {mid:>8.2f}x  {goal}")
    print("  verdicts use the 'by min' column (the uncontended runs)")
    for name in ("nd-graph", "nd-eager"):
        r = rows.get(name)
        if r:
            diff = r["acc"] - t["acc"]
            verdict = "met" if diff >= -ACC_TOLERANCE else "MISSED"
            print(f"test accuracy, {name[3:]:<5}       {diff * 100:+6.2f} points vs PyTorch's {t['acc']:.4f}  "
                  f">= -{ACC_TOLERANCE * 100:.1f}: {verdict}")


def parent_main(a):
    models = ["mlp", "cnn"] if a.model == "both" else [a.model]
    print(f"ndflow Fashion-MNIST {' and '.join(MODELS[m] for m in models)}, batch {a.batch}, "
          f"SGD lr 0.05 momentum 0.9, {a.threads} threads, {a.rounds} round(s) x {a.epochs} epoch(s)"
          f"{' [quick: subset]' if a.quick else ''}")
    try:
        print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
              f"on {os.cpu_count()} CPUs (other load makes every figure slower)")
    except OSError:
        pass
    version, gflops = peer_info(a.threads)
    if version is None:
        print("peer: PyTorch is not importable here (install with tools/setup.sh --bench); "
              "running the ndflow sides only, no ratios")
        peer_ok = False
    else:
        peer_ok = gflops is not None and gflops >= MIN_PEER_GFLOPS
        print(f"peer: torch {version}, sgemm 1024^3 on {a.threads} threads: "
              f"{gflops if gflops is None else round(gflops, 1)} GFLOP/s"
              + ("" if peer_ok else f" (< {MIN_PEER_GFLOPS:.0f}: peer misconfigured, no ratios)"))
    configs = [c for c in CONFIGS if c != "torch" or version is not None]
    all_results = {m: {c: [] for c in configs} for m in models}
    own_dir = a.data is None
    a.data = a.data or tempfile.mkdtemp(prefix="ndflow_fmnist_")
    try:
        t0 = time.perf_counter()
        prepare_data(a.root, a.data, a.n_train, a.n_test)
        print(f"data: {a.n_train or 60000} train / {a.n_test or 10000} test images prepared "
              f"in {time.perf_counter() - t0:.2f} s")
        for model in models:
            a.model = model
            results = all_results[model]
            print(f"\n== {MODELS[model]}")
            for rnd in range(a.rounds):
                for c in configs:
                    r = run_worker(c, a)
                    results[c].append(r)
                    if "error" in r:
                        print(f"round {rnd + 1} {c}: ERROR {r['error']}")
                    else:
                        print(f"round {rnd + 1} {c:<8}: epochs " + " ".join(f"{t:.3f}s" for t in r["epoch_s"])
                              + f"  acc {r['accuracy']:.4f}  b1 {r['b1_us']:.1f} us"
                              f"  mem +{r['peak_above_base_mb']:.1f} MB  (warm-up {r['warmup_s']:.2f}s)")
            summarize(results, peer_ok, model)
            try:
                print(f"load average now: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
            except OSError:
                pass
    finally:
        if own_dir:
            shutil.rmtree(a.data, ignore_errors=True)
    print("\ntargets: MLP graph epoch <= 0.8x PyTorch (aim 0.7x), CNN graph epoch <= 0.8x (aim 0.6x), eager "
          f"epoch <= 1.0x, MLP batch-1 step (graph) <= 0.25x, memory <= PyTorch's, test accuracy at most "
          f"{ACC_TOLERANCE * 100:.0f} point below PyTorch's")
    return 1 if any("error" in r for res in all_results.values() for runs in res.values() for r in runs) else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=CONFIGS, help="internal: run one configuration")
    p.add_argument("--model", choices=["mlp", "cnn", "both"], default="mlp",
                   help="the model to train (both: the MLP, then the CNN; default mlp)")
    p.add_argument("--rounds", type=int, help="alternated rounds (default 3; quick: 1)")
    p.add_argument("--epochs", type=int, help="timed epochs per run (default 1)")
    p.add_argument("--quick", action="store_true", help="short smoke run on a subset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, help="untimed warm-up steps (default 20; quick: 5)")
    p.add_argument("--b1-steps", type=int, help="timed batch-1 steps (default 2000; quick: 200)")
    p.add_argument("--b1-warmup", type=int, default=50)
    p.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--data", help="internal: directory of the prepared .npy files")
    p.add_argument("--timeout", type=int, default=1200, help="seconds per worker run")
    a = p.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 3)
    a.epochs = a.epochs or 1
    a.warmup = a.warmup if a.warmup is not None else (5 if q else 20)
    a.b1_steps = a.b1_steps if a.b1_steps is not None else (200 if q else 2000)
    a.n_train, a.n_test = (8192, 2000) if q else (None, None)
    if a.worker:
        if a.model == "both":
            p.error("a worker runs one model")
        os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))  # before any import of torch/ndflow
        return worker_main(a)
    return parent_main(a)


if __name__ == "__main__":
    sys.exit(main())
