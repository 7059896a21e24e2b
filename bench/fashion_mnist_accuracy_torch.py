#!/usr/bin/env python3
"""The accuracy reference for examples/fashion_mnist.py: the same recipe in
PyTorch (same models, PyTorch's default init, inputs normalized with the
training set's mean and std, SGD lr 0.05 momentum 0.9, batch 128, shuffled
each epoch), test accuracy after --epochs for each seed.

    .venv/bin/python bench/fashion_mnist_accuracy_torch.py --model cnn --seeds 0 1 2
"""
import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
from torch import nn


def idx(path):
    raw = gzip.open(path).read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(root, train):
    p = "train" if train else "t10k"
    x = ((idx(Path(root) / f"{p}-images-idx3-ubyte.gz").astype(np.float32) / 255 - 0.2860) / 0.3530)
    return torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(idx(Path(root) / f"{p}-labels-idx1-ubyte.gz").astype(np.int64))


def model(kind):
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    xtr, ytr = load(a.root, True)
    xte, yte = load(a.root, False)
    accs = []
    for seed in a.seeds:
        torch.manual_seed(seed)
        m = model(a.model)
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        for _ in range(a.epochs):
            for idx_ in torch.randperm(len(xtr)).split(128):
                opt.zero_grad()
                nn.functional.cross_entropy(m(xtr[idx_]), ytr[idx_]).backward()
                opt.step()
        with torch.no_grad():
            acc = sum(int((m(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum()) for i in range(0, 10000, 1000)) / 1e4
        accs.append(acc)
        print(f"torch {torch.__version__} {a.model} seed {seed}: test accuracy {acc * 100:.2f}%", flush=True)
    print(f"mean over {len(accs)} seeds: {np.mean(accs) * 100:.2f}%")


if __name__ == "__main__":
    main()
