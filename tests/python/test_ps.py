"""ndflow.distributed.ps end to end: jobs of real processes started by
tools/ndflow-launch (2 servers x 4 workers) — exact integer sums under BSP,
SSP and ASP, BSP training equal to synchronous data parallelism — and the
launcher-less world of one."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ndflow as nd
import ndflow.nn as nn
import ndflow.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "tools" / "ndflow-launch"

EXACT = textwrap.dedent("""
    import sys
    import numpy as np
    import ndflow as nd
    import ndflow.distributed.ps as ps
    ps.init()
    tables = {"a": nd.zeros((3,)), "b": nd.zeros((2, 2)), "e": nd.zeros((6, 2))}
    ps.register(tables, sync=sys.argv[1], split_bytes=int(sys.argv[2]))
    if ps.is_server():
        ps.serve()
        for name in tables:
            for server, begin, end in ps.layout(name):
                if server == ps.rank():
                    rows = ps._job().server.value(name).numpy().reshape(end - begin, -1)
                    for r in range(end - begin):
                        print("FINAL", name, begin + r, float(rows[r].sum()), flush=True)
        raise SystemExit(0)
    w = ps.rank()
    for c in range(10):
        for name, t in tables.items():
            ps.pull(name).wait()
            ps.push(name, nd.full(t.shape, float((w + 1) * (c + 1)))).wait()
        ids = nd.tensor(np.array([w % 6, (w + c) % 6], dtype=np.int64))
        ps.pull_rows("e", ids).wait()
        ps.push_rows("e", ids, nd.full((2, 2), float((w + 1) * (c + 1)))).wait()
        ps.clock()
    ps.barrier()                    # every worker's pushes are in: each worker sees the closed form
    got = {name: ps.pull(name).wait().numpy() for name in tables}
    print("SEEN", " ".join(f"{n}={float(v.sum())}" for n, v in got.items()),
          "layout", [len(ps.layout(n)) for n in tables], flush=True)
""")


def exact_rows():
    """Per (table, row): the closed-form sum of EXACT's pushes over the row's elements."""
    per_element = sum(w + 1 for w in range(4)) * sum(c + 1 for c in range(10))  # 550
    want = {("a", r): per_element for r in range(3)}
    want.update({("b", r): 2 * per_element for r in range(2)})
    want.update({("e", r): 2 * per_element for r in range(6)})
    for w in range(4):
        for c in range(10):
            for r in (w % 6, (w + c) % 6):
                want["e", r] += 2 * (w + 1) * (c + 1)
    return want


TRAIN = textwrap.dedent("""
    import numpy as np
    import ndflow as nd, ndflow.nn as nn, ndflow.nn.functional as F
    import ndflow.distributed.ps as ps
    ps.init()
    nd.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    ps.register(model, sync="bsp")
    if ps.is_server():
        ps.serve()
        raise SystemExit(0)
    opt = nd.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 16, 5)).astype(np.float32)   # 10 steps x 4 workers x 4 samples
    Y = rng.integers(0, 3, (10, 16))
    trainer = ps.PSTrainer(model)
    r = ps.rank()

    @nd.function
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for s in range(10):
        with trainer.step():
            step(nd.tensor(X[s, 4 * r:4 * r + 4]), nd.tensor(Y[s, 4 * r:4 * r + 4]))
    trainer.pull()                     # BSP: every worker's last push is in
    if r == 0:
        flat = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
        np.save(__import__("sys").argv[1], flat)
""")


def launch(tmp_path, body, *args, workers=4, servers=2):
    script = tmp_path / "job.py"
    script.write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDFLOW_PS_")}
    env["PYTHONPATH"] = str(ROOT / "python")
    cmd = [str(LAUNCH), "--servers", str(servers), "--workers", str(workers), "--max-restarts", "0",
           "--grace-period", "5", "--", sys.executable, str(script), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.parametrize("sync,split", [("bsp", 1 << 20), ("ssp:2", 1 << 20), ("asp", 1 << 20),
                                        ("bsp", 0), ("ssp:2", 0), ("asp", 0)],
                         ids=["bsp", "ssp2", "asp", "bsp-split", "ssp2-split", "asp-split"])
def test_integer_updates_sum_exactly(tmp_path, sync, split):
    """split=0: every table is cut into one row range per server (a: rows
    [0, 1) and [1, 3), ...); the shards' sums still add up exactly."""
    out = launch(tmp_path, EXACT, sync, split)
    want = exact_rows()
    finals = {(n, int(r)): float(v) for n, r, v in re.findall(r"FINAL (\w) (\d+) ([0-9.]+)", out)}
    assert finals == {k: float(v) for k, v in want.items()}, out
    totals = {n: sum(v for (t, _), v in want.items() if t == n) for n in "abe"}
    seen = re.findall(r"SEEN a=([0-9.]+) b=([0-9.]+) e=([0-9.]+) layout \[(\d), (\d), (\d)\]", out)
    assert len(seen) == 4, out
    shards = "2" if split == 0 else "1"
    for a, b, e, *layout in seen:
        assert (float(a), float(b), float(e)) == (totals["a"], totals["b"], totals["e"]), out
        assert layout == [shards] * 3, out


def synchronous_reference():
    """TRAIN's 10 steps in one process on the whole batch of 16 (the mean over
    4 workers' means of 4 samples is the mean over 16): the parameters, flat."""
    nd.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = nd.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 16, 5)).astype(np.float32)
    Y = rng.integers(0, 3, (10, 16))
    for s in range(10):
        opt.zero_grad()
        F.cross_entropy(model(nd.tensor(X[s])), nd.tensor(Y[s])).backward()
        opt.step()
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def test_bsp_training_equals_synchronous_data_parallel(tmp_path):
    launch(tmp_path, TRAIN, tmp_path / "ps.npy")
    ps_params = np.load(tmp_path / "ps.npy")
    np.testing.assert_allclose(ps_params, synchronous_reference(), rtol=1e-4, atol=1e-5)


def test_world_of_one_without_the_launcher():
    import ndflow.distributed.ps as ps
    saved = ps._state
    ps._state = None
    try:
        env_role = os.environ.pop("NDFLOW_PS_ROLE", None)
        assert ps.init() == "worker"
        nd.manual_seed(0)
        model = nn.Linear(3, 2)
        ps.register(model)
        trainer = ps.PSTrainer(model)
        opt = nd.optim.SGD(model.parameters(), lr=0.5)
        x = nd.ones((4, 3))
        for _ in range(3):
            with trainer.step():
                opt.zero_grad()
                model(x).sum().backward()
                opt.step()
        # The server holds what the worker computed.
        on_server = ps.pull("weight").wait()
        np.testing.assert_allclose(on_server.numpy(), model.weight.detach().numpy())
        assert trainer.staleness == [0, 0, 0]
        with pytest.raises(KeyError, match="not registered"):
            ps.pull("nope")
    finally:
        if ps._state is not None and ps._state.server is not None:
            ps._state.server.stop()
        ps._state = saved
        if env_role is not None:
            os.environ["NDFLOW_PS_ROLE"] = env_role


def _local_world():
    import ndflow.distributed.ps as ps
    saved, ps._state = ps._state, None
    env_role = os.environ.pop("NDFLOW_PS_ROLE", None)
    return ps, saved, env_role


def _end_local_world(ps, saved, env_role):
    if ps._state is not None and ps._state.server is not None:
        ps._state.server.stop()
    ps._state = saved
    if env_role is not None:
        os.environ["NDFLOW_PS_ROLE"] = env_role


@pytest.mark.parametrize("rule,hyper,local_opt", [
    ("momentum", {"momentum": 0.9}, lambda ps_: nd.optim.SGD(ps_, lr=0.1, momentum=0.9)),
    ("adam", {"betas": (0.9, 0.99)}, lambda ps_: nd.optim.Adam(ps_, lr=0.1, betas=(0.9, 0.99))),
    ("adagrad", {"initial_accumulator_value": 0.1, "lr_decay": 0.01},
     lambda ps_: nd.optim.Adagrad(ps_, lr=0.1, initial_accumulator_value=0.1, lr_decay=0.01)),
])
def test_server_side_optimizer_equals_local_training(rule, hyper, local_opt):
    ps, saved, env_role = _local_world()
    try:
        ps.init()
        rng = np.random.default_rng(1)
        X = rng.standard_normal((6, 8, 5)).astype(np.float32)
        Y = rng.integers(0, 3, (6, 8))

        def make():
            nd.manual_seed(0)
            return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

        model = make()
        ps.register(model, sync="bsp", rule=rule, lr=0.1, **hyper)
        trainer = ps.PSTrainer(model, server_optimizer=True)
        grads_only = nd.optim.SGD(model.parameters(), lr=0.0)   # only to zero the gradients
        for s in range(6):
            with trainer.step():
                grads_only.zero_grad()
                F.cross_entropy(model(nd.tensor(X[s])), nd.tensor(Y[s])).backward()
        trainer.pull()

        ref = make()
        opt = local_opt(ref.parameters())
        for s in range(6):
            opt.zero_grad()
            F.cross_entropy(ref(nd.tensor(X[s])), nd.tensor(Y[s])).backward()
            opt.step()
        for (n, p), q in zip(model.named_parameters(), ref.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=n)
        stats = ps._job().server.stats()
        assert len(stats["staleness"]) == 17 and stats["staleness"][0] == 7 * 4   # 7 pulls of 4 tables, all fresh
        assert sum(stats["staleness"][1:]) == 0
        assert stats["pull_wait_ms"] == [0.0]
        with pytest.raises(ValueError, match="unknown optimizer hyperparameter 'bogus'"):
            ps.register({"x": nd.zeros((2,))}, rule="adam", bogus=1)
    finally:
        _end_local_world(ps, saved, env_role)


def test_server_side_momentum_under_bsp_equals_synchronous_training(tmp_path):
    # 4 workers push p.grad / 4; a BSP clock's sum is the mean gradient over
    # the 16 samples, on which the servers take one momentum step.
    body = (TRAIN.replace('ps.register(model, sync="bsp")',
                          'ps.register(model, sync="bsp", rule="momentum", lr=0.1, momentum=0.9)')
            .replace("trainer = ps.PSTrainer(model)", "trainer = ps.PSTrainer(model, server_optimizer=True)")
            .replace("    opt.step()\n", ""))
    assert "opt.step()" not in body and "server_optimizer=True" in body
    launch(tmp_path, body, tmp_path / "ps.npy")
    ps_params = np.load(tmp_path / "ps.npy")
    np.testing.assert_allclose(ps_params, synchronous_reference(), rtol=1e-4, atol=1e-5)


def test_a_server_that_dies_and_stays_down_fails_the_worker_within_the_timeout_naming_it():
    import time
    from ndflow import _C
    server = _C._ps.Server("s3cret", 1)
    server.add_table("w", nd.zeros((4,)))
    server.start()
    address = server.endpoint
    worker = _C._ps.Worker([address], "s3cret", 0, 1, 0.5)
    worker.add_table("w", [4], [(0, 0, 4)], "bsp", "accumulate")
    worker.push("w", nd.ones((4,))).wait()
    worker.clock()
    server.stop()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=re.escape(address)):
        worker.pull("w").wait()
    assert 0.4 < time.monotonic() - t0 < 3.0


def test_sparse_embedding_example_trains_with_the_table_split_over_two_servers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDFLOW_PS_")}
    env["PYTHONPATH"] = str(ROOT / "python")
    cmd = [str(LAUNCH), "--servers", "2", "--workers", "4", "--max-restarts", "0", "--",
           sys.executable, str(ROOT / "examples" / "sparse_embedding.py"), "--sync", "ssp:2", "--steps", "200"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "embedding rows per server: server 0: [0, 25000), server 1: [25000, 50000)" in r.stdout, r.stdout
    acc = float(re.search(r"test accuracy ([0-9.]+)%", r.stdout).group(1))
    assert acc >= 95.0, r.stdout
    hits = re.search(r"worker cache: ([0-9,]+) of ([0-9,]+) rows", r.stdout)
    assert hits and int(hits.group(1).replace(",", "")) > 0, r.stdout


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_fashion_mnist_example_trains_through_the_parameter_server(tmp_path, mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDFLOW_PS_")}
    env["PYTHONPATH"] = str(ROOT / "python")
    cmd = [str(LAUNCH), "--servers", "2", "--workers", "2", "--max-restarts", "0", "--",
           sys.executable, str(ROOT / "examples" / "fashion_mnist.py"), "--ps", "ssp:2", "--mode", mode,
           "--epochs", "2", "--limit", "12000", "--skip-export", "--no-progress", "--out-dir", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "parameter server ssp:2" in r.stdout, r.stdout
    acc = float(re.search(r"\[worker 0\] trained in [0-9.]+ s; final test accuracy ([0-9.]+)%", r.stdout).group(1))
    assert acc > 70.0, r.stdout


def test_calls_from_another_thread_are_refused_with_a_clear_error():
    import threading
    ps, saved, env_role = _local_world()
    try:
        ps.init()
        ps.register({"w": nd.zeros((2,))})
        errors = []

        def other():
            try:
                ps.pull("w")
            except RuntimeError as e:
                errors.append(str(e))
        t = threading.Thread(target=other, name="loader")
        t.start()
        t.join()
        assert len(errors) == 1 and "thread that called register()" in errors[0] and "'loader'" in errors[0]
        assert ps.pull("w").wait().numpy().tolist() == [0.0, 0.0]
    finally:
        _end_local_world(ps, saved, env_role)


def test_set_lr_schedules_the_server_side_optimizer():
    ps, saved, env_role = _local_world()
    try:
        ps.init()
        ps.register({"acc": nd.zeros((2,))})
        with pytest.raises(ValueError, match="no table has a server-side optimizer"):
            ps.set_lr(0.1)
        ps.register({"w": nd.zeros((2,))}, rule="sgd", lr=1.0)
        for lr in (1.0, 0.5, 0.25):         # a step schedule, one clock each
            ps.set_lr(lr)
            ps.push("w", nd.ones((2,))).wait()
            ps.clock()
        assert ps.pull("w").wait().numpy().tolist() == [-1.75, -1.75]
        with pytest.raises(ValueError, match="accumulates"):
            ps.set_lr(0.1, names=["acc"])
    finally:
        _end_local_world(ps, saved, env_role)
