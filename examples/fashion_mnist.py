#!/usr/bin/env python3
"""Train an MLP (784-256-128-10) or a small CNN on Fashion-MNIST with ndflow.

    python examples/fashion_mnist.py                  # MLP, graph mode, 3 epochs
    python examples/fashion_mnist.py --model cnn      # conv32-pool-conv64-pool-fc128-fc10
    python examples/fashion_mnist.py --mode eager --optimizer adam --lr 1e-3
    mpirun -np 2 python examples/fashion_mnist.py --distributed      # data parallel over 2 ranks

The training step is ordinary PyTorch-style code; in graph mode (the default)
@ndflow.function traces it once into a static graph that then runs in C++.
After training, the eval-mode model is exported to an .ndf file and run by the
standalone `ndflow-run` on the whole test set, which must give the same
accuracy. Writes the loss/accuracy curves as a PNG.

With --distributed, under `mpirun -np N`, every rank trains a replica
(ndflow.distributed.DataParallel; eager, or graph mode through the graph
data-parallel pass) on its shard of each epoch (DistributedSampler);
--batch-size is per rank, as in PyTorch DDP, so a step sees N x batch-size
samples. Rank 0 alone prints and writes files; every rank
reads --resume checkpoints. main(argv) can be called in-process (tests do).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ndflow as nd
from ndflow import nn

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                   help="mlp: 784-256-128-10; cnn: conv3x3(32)-relu-maxpool2-conv3x3(64)-relu-maxpool2-"
                        "fc128-relu-fc10")
    p.add_argument("--mode", choices=["graph", "eager"], default=None,
                   help="graph: compile the training step with @ndflow.function (default); eager: run op by "
                        "op (the default with --distributed when the build lacks graph data parallel)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128,
                   help="samples per step; with --distributed per rank (the global batch is N times it)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9, help="for --optimizer sgd and rmsprop")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop", "adagrad"], default="sgd")
    p.add_argument("--threads", type=int, default=2, help="kernel threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out-dir", default=str(ROOT / "runs" / "fashion_mnist"),
                   help="where the PNG and the exported model go")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--skip-export", action="store_true", help="do not export and run ndflow-run")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="save a checkpoint every N steps (0: never) to --checkpoint")
    p.add_argument("--checkpoint", default=None, help="checkpoint path (default: OUT_DIR/checkpoint.ndf)")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="resume from a checkpoint: the run ends with exactly the parameters of an "
                        "uninterrupted one")
    p.add_argument("--save-params", default=None, metavar="PATH",
                   help="write the final parameters to an .ndf file (to compare runs)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over the ranks of `mpirun -np N`; works as a world of one "
                        "without mpirun")
    p.add_argument("--ps", default=None, metavar="SYNC",
                   help="train through the parameter server with consistency bsp, asp or ssp:N; start with "
                        "tools/ndflow-launch --servers S --workers W -- python examples/fashion_mnist.py --ps bsp "
                        "(without the launcher: one worker and an in-process server)")
    p.add_argument("--bucket-mb", type=float, default=25,
                   help="with --distributed: gradient bucket size in MB (each bucket is one allreduce)")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="use only the first N training and test images (0: all), for quick runs")
    p.add_argument("--max-steps", type=int, default=0, metavar="N",
                   help="stop after N training steps in all (0: run every epoch), e.g. to interrupt a "
                        "run that --resume then continues")
    args = p.parse_args(argv)
    if args.ps and (args.distributed or args.resume or args.checkpoint_every):
        p.error("--ps trains through the parameter server: it does not combine with --distributed, "
                "--resume or --checkpoint-every (the servers keep the parameters)")
    if args.mode is None:  # graph, unless --distributed and the graph data-parallel pass is missing
        args.mode = "eager" if args.distributed and not _graph_data_parallel() else "graph"
    return args


def _graph_data_parallel():
    """Whether @ndflow.function steps of a DataParallel model are reduced by
    the graph data-parallel pass in this build."""
    return hasattr(nd._C._distributed, "data_parallel_pass")


MODELS = {"mlp": "MLP 784-256-128-10", "cnn": "CNN conv32-pool-conv64-pool-fc128-fc10"}


def make_model(kind="mlp"):
    if kind == "cnn":  # 1x28x28 -> 32x26x26 -> 32x13x13 -> 64x11x11 -> 64x5x5
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def make_optimizer(name, params, lr, momentum):
    if name == "sgd":
        return nd.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return nd.optim.Adam(params, lr=lr)
    if name == "adamw":
        return nd.optim.AdamW(params, lr=lr)
    if name == "rmsprop":
        return nd.optim.RMSprop(params, lr=lr, momentum=momentum)
    return nd.optim.Adagrad(params, lr=lr)


def accuracy(model, predict, x, y, chunk=1000):
    """Test accuracy of predict (class indices) in eval mode, in chunks."""
    model.eval()
    correct = 0
    with nd.no_grad():
        for i in range(0, len(x), chunk):
            correct += int((predict(nd.from_numpy(x[i:i + chunk])).numpy() == y[i:i + chunk]).sum())
    model.train()
    return correct / len(x)


def run_epoch(loader, train_step, bar, losses=None, after_step=None):
    """One pass over loader: losses per step (appended to `losses`), samples
    seen and seconds; after_step(losses) runs after every step and ends the
    epoch early by returning True."""
    losses = [] if losses is None else losses
    seen, start = 0, time.perf_counter()
    for xb, yb in loader:
        losses.append(train_step(xb, yb).item())
        seen += xb.shape[0]
        stop = after_step is not None and after_step(losses)
        if bar is not None:
            bar.update(1)
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}",
                                samples_s=f"{seen / (time.perf_counter() - start):,.0f}")
        if stop:
            break
    if bar is not None:
        bar.close()
    return losses, seen, time.perf_counter() - start


def load_split(root, train):
    """Images as float32 [N, 1, 28, 28], normalized with the training set's mean and std
    (0.2860, 0.3530, as torchvision tutorials do), and int64 labels."""
    ds = nd.datasets.FashionMNIST(root=root, train=train)
    x = ((np.asarray(ds.data, dtype=np.float32) / 255.0 - 0.2860) / 0.3530).reshape(-1, 1, 28, 28)
    return x, np.asarray(ds.targets, dtype=np.int64)


def progress(total, enabled, desc):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def find_ndflow_run():
    candidates = [os.environ.get("NDFLOW_RUN"), shutil.which("ndflow-run"),
                  str(Path(nd.__file__).parent / "bin" / "ndflow-run"), str(ROOT / "build" / "tools" / "ndflow-run")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def plot(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(1, len(history["step_loss"]) + 1)
    ax[0].plot(steps, history["step_loss"], lw=0.6, alpha=0.5, label="per step")
    per_epoch = len(steps) // max(1, len(history["train_loss"]))
    ax[0].plot(np.arange(1, len(history["train_loss"]) + 1) * per_epoch, history["train_loss"], "o-",
               label="epoch mean")
    ax[0].set(xlabel="step", ylabel="training loss", title="Loss")
    ax[0].legend()
    ax[1].plot(np.arange(1, len(history["test_acc"]) + 1), np.array(history["test_acc"]) * 100, "o-")
    ax[1].set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    ax[1].grid(alpha=0.3)
    fig.suptitle(history["title"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    nd.set_num_threads(args.threads)
    nd.manual_seed(args.seed)
    rank, world = 0, 1
    if args.distributed:
        import ndflow.distributed as dist
        if args.mode == "graph" and not _graph_data_parallel():
            sys.exit("fashion_mnist: this build has no graph data-parallel pass, so --distributed "
                     "trains in eager mode only; pass --mode eager")
        dist.init()
        rank, world = dist.get_rank(), dist.get_world_size()
    if args.ps:
        import ndflow.distributed.ps as ps
        ps.init()
        if ps.is_server():  # holds the tables until the launcher stops the job
            ps.register(make_model(args.model), sync=args.ps)
            ps.serve()
            return None
        rank, world = ps.rank(), ps.num_workers()
    say = print if rank == 0 else (lambda *a, **k: None)
    try:
        x_train, y_train = load_split(args.data_root, True)
        x_test, y_test = load_split(args.data_root, False)
    except FileNotFoundError as e:
        sys.exit(f"fashion_mnist: {e}")
    if args.limit:
        x_train, y_train, x_test, y_test = (a[:args.limit] for a in (x_train, y_train, x_test, y_test))

    net = make_model(args.model)
    # DataParallel broadcasts rank 0's parameters and averages the gradients
    # over the ranks during backward; `net` stays the plain model, which is
    # what checkpoints, --save-params and the export hold (interchangeable
    # with single-process runs).
    model = dist.DataParallel(net, bucket_mb=args.bucket_mb) if args.distributed else net
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        if args.distributed:
            model.sync_gradients()  # the wait point: the buckets were reduced during backward
        opt.step()
        return loss

    def predict(x):
        return nd.argmax(model(x), axis=1)

    if args.mode == "graph":
        train_step = nd.function(train_step)
        predict = nd.function(predict)
    if args.ps:
        # Pull the parameters before each step, push what it changed (scaled by
        # 1/W) and clock after it; the step itself is unchanged.
        ps.register(net, sync=args.ps)
        trainer = ps.PSTrainer(net)
        ps_step = train_step

        def train_step(x, y):
            with trainer.step():
                return ps_step(x, y)
    if world > 1 and args.distributed:
        local_step = train_step

        def train_step(x, y):  # reports the mean loss over the ranks (the loss of the global batch)
            return dist.all_reduce(local_step(x, y).detach().contiguous(), "mean")

    train_set = nd.data.TensorDataset(x_train, y_train)
    if args.distributed or args.ps:
        from ndflow.distributed import DistributedSampler
        # Each rank sees its 1/N of every epoch's permutation (same seed everywhere).
        sampler = (dist.DistributedSampler(train_set, shuffle=True, seed=args.seed) if args.distributed else
                   DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed))
        loader = nd.data.DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    else:
        loader = nd.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed)

    def test_accuracy():
        if args.ps:  # every worker scores the whole test set with the servers' parameters, all updates in
            ps.barrier()
            trainer.pull()
            return accuracy(model, predict, x_test, y_test)
        if world == 1:
            return accuracy(model, predict, x_test, y_test)
        # Each rank scores a contiguous 1/N of the test set; the counts are summed.
        lo, hi = len(x_test) * rank // world, len(x_test) * (rank + 1) // world
        correct = round(accuracy(model, predict, x_test[lo:hi], y_test[lo:hi]) * (hi - lo)) if hi > lo else 0
        total = dist.all_reduce(nd.from_numpy(np.array([correct], dtype=np.int64)), "sum")
        return int(total.numpy()[0]) / len(x_test)

    batch_note = f"batch {args.batch_size}" + (f" per rank x {world} ranks" if args.distributed else "")
    if args.ps:
        batch_note = f"batch {args.batch_size} per worker x {world} workers, parameter server {args.ps}"
    say(f"Fashion-MNIST {MODELS[args.model]} | mode {args.mode} | {args.optimizer} lr {args.lr} | "
        f"{batch_note} | {args.threads} threads | seed {args.seed}")
    history = {"step_loss": [], "train_loss": [], "test_acc": [], "seconds": [],
               "title": f"ndflow {args.model.upper()}, {args.mode} mode, {args.optimizer} lr {args.lr}, "
                        f"{batch_note}"}
    out = Path(args.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = Path(args.checkpoint) if args.checkpoint else out / "checkpoint.ndf"
    step, first_epoch, carried = 0, 0, []
    if args.resume:  # every rank reads the same checkpoint
        info = nd.load_checkpoint(args.resume, model=net, optimizer=opt, loader=loader)
        step = info["step"]
        history.update(info["extra"]["history"])
        carried = info["extra"]["epoch_losses"]
        first_epoch = loader.state_dict()["epoch"]
        say(f"resumed from {args.resume} at step {step} (epoch {first_epoch + 1}, "
            f"batch {loader.state_dict()['batches']})")

    total_start = time.perf_counter()
    stopped = False

    def after_step(losses):
        nonlocal step, stopped
        step += 1
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            if rank == 0:  # written atomically (temporary file, fsync, rename)
                nd.save_checkpoint(ckpt, model=net, optimizer=opt, loader=loader, step=step,
                                   extra={"history": history, "epoch_losses": losses})
            if world > 1:
                dist.barrier()  # no rank goes on (and maybe resumes) before the file is complete
        stopped = bool(args.max_steps) and step >= args.max_steps
        return stopped

    for epoch in range(first_epoch + 1, args.epochs + 1):
        bar = progress(len(loader), rank == 0 and not args.no_progress and sys.stderr.isatty(),
                       f"epoch {epoch}/{args.epochs}")
        losses, seen, secs = run_epoch(loader, train_step, bar, carried, after_step)
        carried = []
        if stopped:
            say(f"stopped after step {step} (--max-steps)")
            break
        acc = test_accuracy()
        history["step_loss"] += losses
        history["train_loss"].append(float(np.mean(losses)))
        history["test_acc"].append(acc)
        history["seconds"].append(secs)
        say(f"epoch {epoch}: train loss {np.mean(losses):.4f} | test accuracy {acc * 100:.2f}% | "
            f"{secs:.2f} s ({seen * world / secs:,.0f} samples/s)", flush=True)
    if history["test_acc"]:
        say(f"trained in {time.perf_counter() - total_start:.1f} s; final test accuracy "
            f"{history['test_acc'][-1] * 100:.2f}%")
    if world > 1 and args.distributed:
        check_replicas_agree(net, rank)
    if args.save_params and rank == 0:
        nd._C.save_tensors(args.save_params, list(net.state_dict().items()), {})
    if rank == 0 and not stopped and history["test_acc"]:
        png = out / (f"curves_{args.mode}.png" if args.model == "mlp" else f"curves_{args.model}_{args.mode}.png")
        try:
            plot(history, png)
            print(f"wrote {png}")
        except ImportError:
            print("matplotlib is missing: no plot (tools/setup.sh installs it)")
        if not args.skip_export:
            export_and_check(net, out, x_test, y_test, history["test_acc"][-1], args.model, args.threads)
    if world > 1 and args.distributed:
        dist.barrier()  # the files rank 0 wrote exist when any rank returns
    return history


def check_replicas_agree(net, rank):
    """Data parallel keeps every replica bit-identical; compare with rank 0's."""
    import ndflow.distributed as dist
    mine = np.concatenate([p.detach().numpy().ravel() for p in net.parameters()])
    theirs = dist.broadcast(nd.from_numpy(mine.copy()), 0).numpy()
    if not np.array_equal(mine, theirs):
        raise RuntimeError(f"fashion_mnist: the parameters of rank {rank} differ from rank 0's "
                           f"(max difference {np.abs(mine - theirs).max():.3g}): the replicas diverged")
    if rank == 0:
        print("all replicas hold the same parameters")


def export_and_check(model, out, x_test, y_test, accuracy, kind="mlp", threads=2):
    """Exports the eval-mode model and runs ndflow-run on the whole test set
    (the CNN in chunks of 2500 images, to bound the activations' memory)."""
    model.eval()

    @nd.function
    def classify(images):
        return nd.argmax(model(images), axis=1)

    with nd.no_grad():
        classify(nd.from_numpy(x_test[:2]))
    path = out / f"{kind}.ndf"
    nd.save(classify, path)
    print(f"exported the eval-mode model to {path}")
    runner = find_ndflow_run()
    if runner is None:
        print("ndflow-run not found (build it with tools/build.sh): skipped the standalone check")
        return
    chunk = len(x_test) if kind == "mlp" else 2500
    preds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0, len(x_test), chunk):
            np.save(Path(tmp) / "x.npy", x_test[i:i + chunk])
            cmd = [runner, str(path), "--threads", str(threads), "--input", f"images={Path(tmp) / 'x.npy'}",
                   "--output", f"output_0={Path(tmp) / 'pred.npy'}"]
            subprocess.run(cmd, check=True)
            preds.append(np.load(Path(tmp) / "pred.npy"))
    pred = np.concatenate(preds)
    acc = float((pred == y_test).mean())
    same = "same as in-process" if abs(acc - accuracy) < 1e-9 else f"DIFFERS from in-process {accuracy * 100:.2f}%"
    print(f"ndflow-run on the {len(x_test)} test images: accuracy {acc * 100:.2f}% ({same})")
    if abs(acc - accuracy) >= 1e-9:
        sys.exit(1)


if __name__ == "__main__":
    main()
