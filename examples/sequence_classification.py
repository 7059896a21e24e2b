#!/usr/bin/env python3
"""Classify Fashion-MNIST images with an LSTM that reads them row by row.

    python examples/sequence_classification.py                 # graph mode, 2 epochs
    python examples/sequence_classification.py --mode eager --lr 1e-3

Each image is a sequence of 28 steps of 28 features (its rows); an
nn.LSTM(28, 128, batch_first=True) reads it and a Linear(128, 10) classifies
its last hidden state. In graph mode (the default) @ndflow.function traces the
training step once, the LSTM's time loop unrolled over the 28 steps, into a
static graph that runs in C++. After training, the eval-mode model is exported
to an .ndf file and run by the standalone `ndflow-run` on the test set.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ndflow as nd
from ndflow import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import ROOT, accuracy, find_ndflow_run, load_split, progress, run_epoch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["graph", "eager"], default="graph",
                   help="graph: compile the training step with @ndflow.function (default); eager: run op by op")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128, help="LSTM hidden size")
    p.add_argument("--layers", type=int, default=1, help="stacked LSTM layers")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop"], default="adam")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--threads", type=int, default=2, help="kernel threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out-dir", default=str(ROOT / "runs" / "sequence_classification"),
                   help="where the exported model goes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--skip-export", action="store_true", help="do not export and run ndflow-run")
    return p.parse_args(argv)


class RowLSTM(nn.Module):
    """images [N, 28, 28] -> logits [N, 10] from the LSTM's last hidden state."""

    def __init__(self, hidden=128, layers=1, rows=28, cols=28, classes=10):
        super().__init__()
        self.lstm = nn.LSTM(cols, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, images):
        _, (h_n, _) = self.lstm(images)
        return self.fc(h_n[-1])


def make_optimizer(name, params, lr):
    if name == "adam":
        return nd.optim.Adam(params, lr=lr)
    if name == "adamw":
        return nd.optim.AdamW(params, lr=lr)
    if name == "rmsprop":
        return nd.optim.RMSprop(params, lr=lr)
    return nd.optim.SGD(params, lr=lr, momentum=0.9)


def main(argv=None):
    args = parse_args(argv)
    nd.set_num_threads(args.threads)
    nd.manual_seed(args.seed)
    try:
        x_train, y_train = load_split(args.data_root, True)
        x_test, y_test = load_split(args.data_root, False)
    except FileNotFoundError as e:
        sys.exit(f"sequence_classification: {e}")
    x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)  # 28 steps of 28 features

    model = RowLSTM(args.hidden, args.layers)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def predict(x):
        return nd.argmax(model(x), axis=1)

    if args.mode == "graph":
        train_step = nd.function(train_step)
        predict = nd.function(predict)

    loader = nd.data.DataLoader(nd.data.TensorDataset(x_train, y_train), batch_size=args.batch_size,
                                shuffle=True, seed=args.seed)

    print(f"Fashion-MNIST row by row: LSTM(28, {args.hidden}, layers={args.layers}) -> Linear(10) | "
          f"mode {args.mode} | {args.optimizer} lr {args.lr} | batch {args.batch_size} | {args.threads} threads | "
          f"seed {args.seed}")
    total_start = time.perf_counter()
    acc = 0.0
    for epoch in range(1, args.epochs + 1):
        bar = progress(len(loader), not args.no_progress and sys.stderr.isatty(), f"epoch {epoch}/{args.epochs}")
        losses, seen, secs = run_epoch(loader, train_step, bar)
        acc = accuracy(model, predict, x_test, y_test)
        print(f"epoch {epoch}: train loss {np.mean(losses):.4f} | test accuracy {acc * 100:.2f}% | "
              f"{secs:.2f} s ({seen / secs:,.0f} samples/s)", flush=True)
    print(f"trained in {time.perf_counter() - total_start:.1f} s; final test accuracy {acc * 100:.2f}%")
    if not args.skip_export:
        export_and_check(model, Path(args.out_dir), x_test, y_test, acc, args.threads)
    return acc


def export_and_check(model, out, x_test, y_test, accuracy, threads):
    """Exports the eval-mode model (any batch size, 28 steps) and runs ndflow-run on the test set."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()

    @nd.function
    def classify(images):
        return nd.argmax(model(images), axis=1)

    with nd.no_grad():
        classify(nd.from_numpy(x_test[:2]))
    path = out / "row_lstm.ndf"
    nd.save(classify, path)
    print(f"exported the eval-mode model to {path}")
    runner = find_ndflow_run()
    if runner is None:
        print("ndflow-run not found (build it with tools/build.sh): skipped the standalone check")
        return
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x_test)
        subprocess.run([runner, str(path), "--threads", str(threads), "--input", f"images={Path(tmp) / 'x.npy'}",
                        "--output", f"output_0={Path(tmp) / 'pred.npy'}"], check=True)
        pred = np.load(Path(tmp) / "pred.npy")
    acc = float((pred == y_test).mean())
    same = "same as in-process" if abs(acc - accuracy) < 1e-9 else f"DIFFERS from in-process {accuracy * 100:.2f}%"
    print(f"ndflow-run on the {len(x_test)} test images: accuracy {acc * 100:.2f}% ({same})")
    if abs(acc - accuracy) >= 1e-9:
        sys.exit(1)


if __name__ == "__main__":
    main()
