"""Checkpoints: round trips, refusal of foreign files, and the resume
guarantee of examples/fashion_mnist.py: a run killed with SIGKILL at a random
moment (also in the middle of writing a checkpoint) and resumed ends with
exactly the parameters of an uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fashion_mnist.py"
DATA = Path("/usr/share/datasets/fashion-mnist")


def _params(path):
    tensors, _ = nd._C.load_tensors(str(path))
    return {k: v.numpy().copy() for k, v in tensors}


def test_checkpoint_round_trip_restores_model_optimizer_rng_and_loader(tmp_path):
    nd.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = nd.optim.Adam(model.parameters(), lr=0.01)
    x, y = nd.randn(16, 4), nd.tensor([0, 1, 2, 1] * 4)
    data = nd.data.TensorDataset(np.arange(40, dtype=np.float32).reshape(10, 4), np.zeros(10, dtype=np.int64))
    loader = nd.data.DataLoader(data, batch_size=2, shuffle=True, seed=5)
    it = iter(loader)
    next(it), next(it)

    def step(m, o):
        o.zero_grad()
        nd.cross_entropy(m(x), y).backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    path = tmp_path / "ck.ndf"
    nd.save_checkpoint(path, model=model, optimizer=opt, loader=loader, step=3, extra={"note": "x"})
    rest = [b[0].numpy().copy() for b in it]
    draw = nd.rand(5).numpy()

    model2 = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt2 = nd.optim.Adam(model2.parameters(), lr=0.5)
    loader2 = nd.data.DataLoader(data, batch_size=2, shuffle=True, seed=99)
    info = nd.load_checkpoint(path, model=model2, optimizer=opt2, loader=loader2)
    assert info == {"step": 3, "extra": {"note": "x"}}
    assert opt2.param_groups[0]["lr"] == 0.01
    np.testing.assert_array_equal(nd.rand(5).numpy(), draw)  # the generator continues where it was
    got = [b[0].numpy().copy() for b in loader2]
    assert len(got) == len(rest)
    for g, r in zip(got, rest):
        np.testing.assert_array_equal(g, r)
    for _ in range(2):
        step(model, opt)
        step(model2, opt2)
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_load_checkpoint_refuses_other_files(tmp_path):
    nd._C.save_tensors(str(tmp_path / "t.ndf"), [("w", nd.zeros(2))], {})
    with pytest.raises(ValueError, match="not an ndflow checkpoint"):
        nd.load_checkpoint(tmp_path / "t.ndf")
    (tmp_path / "junk.ndf").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        nd.load_checkpoint(tmp_path / "junk.ndf")
    model = nn.Linear(2, 2)
    nd.save_checkpoint(tmp_path / "m.ndf", model=model)
    with pytest.raises(ValueError, match="no optimizer state"):
        nd.load_checkpoint(tmp_path / "m.ndf", optimizer=nd.optim.SGD(model.parameters(), lr=0.1))


def _example(args, out_dir):
    cmd = [sys.executable, str(EXAMPLE), "--epochs", "1", "--no-progress", "--skip-export", "--threads", "1",
           "--out-dir", str(out_dir)] + args
    return cmd


@pytest.mark.skipif(not DATA.exists(), reason="dataset-fashion-mnist is not installed (tools/setup.sh)")
@pytest.mark.parametrize("every", [50, 1])
def test_sigkill_and_resume_gives_the_uninterrupted_parameters(tmp_path, every):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    want = tmp_path / "want.ndf"
    subprocess.run(_example(["--save-params", str(want)], tmp_path), check=True, env=env, timeout=300,
                   capture_output=True)
    ckpt = tmp_path / "ck.ndf"
    proc = subprocess.Popen(_example(["--checkpoint-every", str(every), "--checkpoint", str(ckpt)], tmp_path),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert ckpt.exists(), "the example wrote no checkpoint"
    # Every step writes a checkpoint when every == 1: a kill then mostly lands inside a save.
    time.sleep(random.Random(every).uniform(0.0, 0.15))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    got = tmp_path / "got.ndf"
    res = subprocess.run(_example(["--resume", str(ckpt), "--save-params", str(got)], tmp_path), env=env,
                         timeout=300, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a, b = _params(want), _params(got)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
