"""Graph-mode collectives (ops/collective.h, distributed/collective_queue.h):
the same results as the eager collectives, issued in plan order whatever the
dataflow order of each rank, a plan check that names the first differing
collective and the ranks, and a stalled rank that makes the others fail with
an error naming the collective within the timeout (in a job of its own)."""
import re
import shutil
import textwrap

import numpy as np
import pytest

import ndflow as nd
import ndflow.distributed as dist
import ndflow.distributed.functional as fc
from ndflow import _C
from own_job import run_job

R, N = dist.get_rank(), dist.get_world_size()


def contribution(rank, shape, dtype):
    a = (np.arange(int(np.prod(shape))).reshape(shape) * (rank + 1) + 3 * rank) % 50
    if np.issubdtype(dtype, np.floating):
        a = a + 0.25 * rank - 1.5
    return np.array(a, dtype=dtype)


def everyone(shape, dtype):
    return np.stack([contribution(r, shape, dtype) for r in range(N)])


def graph_of(build, placeholders):
    """A Graph whose outputs are build(*placeholders) (name -> tensor)."""
    g = _C.Graph()
    with _C.GraphScope(g):
        ins = [g.placeholder(name, list(shape), dtype) for name, shape, dtype in placeholders]
        outs = build(*ins)
        for name, t in outs.items():
            g.mark_output(name, t)
    return g, list(outs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint8],
                         ids=lambda d: np.dtype(d).name)
def test_graph_collectives_equal_eager_ones(dtype):
    floating = np.issubdtype(dtype, np.floating)
    shape = (3, 4)

    def build(x):
        outs = {"sum": fc.all_reduce(x, "sum"), "max": fc.all_reduce(x, "max"),
                "gather": fc.all_gather(x), "last": fc.broadcast(x, N - 1)}
        if floating:
            outs["mean"] = fc.all_reduce(x, "mean")
            a, b = fc.all_reduce_coalesced([x, fc.all_reduce(x, "max")], "mean")
            outs["bucket_a"], outs["bucket_b"] = a, b
        return outs

    g, names = graph_of(build, [("x", shape, nd.from_numpy(np.zeros(1, dtype)).dtype)])
    session = _C.Session(g)
    mine = contribution(R, shape, dtype)
    for _ in range(2):  # a second step reuses the checked plan
        out = dict(zip(names, session.run([("x", nd.from_numpy(mine.copy()))], names)))
    # The eager collectives (in place) on the same inputs are the reference.
    eager = {}
    for op in ["sum", "max"] + (["mean"] if floating else []):
        eager[op] = dist.all_reduce(nd.from_numpy(mine.copy()), op).numpy()
    eager["gather"] = dist.all_gather(nd.from_numpy(mine.copy())).numpy()
    eager["last"] = dist.broadcast(nd.from_numpy(mine.copy()), N - 1).numpy()
    for k, v in eager.items():
        np.testing.assert_array_equal(out[k].numpy(), v, err_msg=k)
    np.testing.assert_array_equal(out["sum"].numpy(), everyone(shape, dtype).sum(0).astype(dtype))
    np.testing.assert_array_equal(out["gather"].numpy(), everyone(shape, dtype))
    if floating:
        np.testing.assert_allclose(out["bucket_a"].numpy(), everyone(shape, np.float64).mean(0), rtol=1e-6)
        np.testing.assert_allclose(out["bucket_b"].numpy(), everyone(shape, dtype).max(0), rtol=1e-6)


def test_functional_collectives_eagerly_and_their_gradients():
    x = nd.from_numpy(contribution(R, (2, 3), np.float64))
    np.testing.assert_array_equal(fc.all_reduce(x).numpy(), everyone((2, 3), np.float64).sum(0))
    np.testing.assert_array_equal(fc.all_gather(x).numpy(), everyone((2, 3), np.float64))
    assert np.array_equal(x.numpy(), contribution(R, (2, 3), np.float64))  # inputs untouched

    w = nd.from_numpy(np.array([0.5, -1.0, 2.0])).mark_variable("w")

    @nd.function
    def grads(x):
        # On rank r, with x_r this rank's x: sum(all_reduce(x * w)) has the
        # gradient N * x_r (every rank's sum reads x_r * w); the own row of
        # all_gather(x * w) has x_r; sum(broadcast(x * w, 0)) has N * x_0 on
        # the root (every rank reads the root's row) and 0 elsewhere.
        s = fc.all_reduce(x * w, "sum").sum() + fc.all_gather(x * w)[R].sum() + fc.broadcast(x * w, 0).sum()
        return _C.gradients([s], [w])[0]

    xr = contribution(R, (2, 3), np.float64)
    got = grads(nd.from_numpy(xr)).numpy()
    root_term = N * xr.sum(0) if R == 0 else 0
    np.testing.assert_allclose(got, N * xr.sum(0) + xr.sum(0) + root_term, rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[all_reduce\] op 'max' has no gradient"):
        nd.function(lambda x: _C.gradients([fc.all_reduce(x * w, "max").sum()], [w])[0])(nd.from_numpy(xr))


def test_collectives_issue_in_plan_order_whatever_the_dataflow_order():
    """Two allreduces of the same shape whose inputs become ready in opposite
    orders on even and odd ranks (a slow branch on each side). Issued in
    arrival order, MPI would pair A on one rank with B on another and mix the
    sums silently; issued in plan order, both are right."""
    def slow_sum(big):
        h = big
        for _ in range(6):
            h = nd.tanh(nd.matmul(h, big) * 0.01)
        return h.sum()

    def build(xa, xb, big_a, big_b):
        a = fc.all_reduce(xa + slow_sum(big_a) * 0.0, "sum")
        b = fc.all_reduce(xb + slow_sum(big_b) * 0.0, "sum")
        return {"a": a, "b": b}

    g, names = graph_of(build, [("xa", (4,), nd.float32), ("xb", (4,), nd.float32),
                                ("big_a", (-1, -1), nd.float32), ("big_b", (-1, -1), nd.float32)])
    session = _C.Session(g, inter_op_threads=3)  # the branches run side by side
    slow, fast = np.full((320, 320), 0.01, np.float32), np.full((2, 2), 0.01, np.float32)
    big_a, big_b = (slow, fast) if R % 2 else (fast, slow)
    for step in range(3):
        out = session.run([("xa", nd.full((4,), float(R + step))), ("xb", nd.full((4,), 100.0 + R)),
                           ("big_a", nd.from_numpy(big_a)), ("big_b", nd.from_numpy(big_b))], names)
        np.testing.assert_array_equal(out[0].numpy(), np.full(4, sum(r + step for r in range(N)), np.float32))
        np.testing.assert_array_equal(out[1].numpy(), np.full(4, sum(100.0 + r for r in range(N)), np.float32))


@pytest.mark.skipif(N == 1, reason="needs two ranks")
def test_plan_check_names_the_first_differing_collective_and_the_ranks():
    def build(x, y):
        return {"a": fc.all_reduce(x, "sum"), "b": fc.all_reduce(y, "sum")}

    g, names = graph_of(build, [("x", (-1,), nd.float32), ("y", (-1,), nd.float32)])
    session = _C.Session(g)
    y_len = 4 if R == 1 else 3  # rank 1 compiled the second collective for other shapes
    with pytest.raises(ValueError, match=r"\[collective plan check\] the ranks compiled different sequences.*"
                                         r"first difference at collective #1: rank\(s\) \[1\] differ from rank 0.*"
                                         r"rank 0: #1 all_reduce\(sum\) '[^']+' f32\[3\]; "
                                         r"rank 1: #1 all_reduce\(sum\) '[^']+' f32\[4\]"):
        session.run([("x", nd.ones((2,))), ("y", nd.ones((y_len,)))], names)
    # Nothing was sent: the same session runs fine once the shapes agree.
    out = session.run([("x", nd.ones((2,))), ("y", nd.ones((3,)))], names)
    np.testing.assert_array_equal(out[1].numpy(), np.full(3, N, np.float32))

    # A different op (and a graph with fewer collectives on the last rank).
    def build2(x):
        outs = {"a": fc.all_reduce(x, "max" if R == N - 1 else "sum")}
        if R != N - 1:
            outs["b"] = fc.broadcast(x, 0)
        return outs

    g2, names2 = graph_of(build2, [("x", (2,), nd.float32)])
    with pytest.raises(ValueError, match=rf"first difference at collective #0: rank\(s\) \[{N - 1}\] differ.*"
                                         rf"rank {N - 1}: #0 all_reduce\(max\)"):
        _C.Session(g2).run([("x", nd.ones((2,)))], names2)
    dist.barrier()


@pytest.mark.skipif(N == 1, reason="the timeout applies to worlds of several ranks")
def test_a_malformed_timeout_is_an_error(monkeypatch):
    g, names = graph_of(lambda x: {"a": fc.all_reduce(x)}, [("x", (2,), nd.float32)])
    monkeypatch.setenv("NDFLOW_COLLECTIVE_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="NDFLOW_COLLECTIVE_TIMEOUT='soon' is not a positive number"):
        _C.Session(g).run([("x", nd.ones((2,)))], names)


STALL_SCRIPT = textwrap.dedent("""
    import sys, time
    import ndflow as nd, ndflow.distributed as dist, ndflow.distributed.functional as fc
    from ndflow import _C
    dist.init()
    R = dist.get_rank()
    g = _C.Graph()
    with _C.GraphScope(g):
        x = g.placeholder("x", [3], nd.float32)
        g.mark_output("y", fc.all_reduce(x * 2.0, "sum"))
    s = _C.Session(g)
    dist.barrier()                                  # every rank is up
    stall_at = int(sys.argv[2])
    for step in range(2):
        if R == 1 and step == stall_at:
            time.sleep(float(sys.argv[1]))          # stalls past the others' timeout
        t0 = time.time()
        try:
            s.run([("x", nd.ones((3,)))], ["y"])
        except Exception:
            print(f"rank {R} failed after {time.time() - t0:.1f} s", flush=True)
            raise                                   # the excepthook aborts the job
        print(f"rank {R} passed step {step}", flush=True)
""")


@pytest.mark.skipif(N > 1, reason="starts its own 2-rank job from the single-process run")
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
@pytest.mark.parametrize("stall_at, expected", [
    # Mid-run: rank 0 waits in the step's all_reduce; rank 1's communication
    # thread answers that it has not issued it.
    (1, r"\[all_reduce\] graph collective #0 \(node '[^']+', f32\[3\]\) of step 1 did not complete within 2 s "
        r"on rank 0 of 2: rank\(s\) \[1\] have not reached it"),
    # Before the first step: rank 0 waits in the plan check; rank 1 has not
    # compiled the graph yet, so it cannot answer either.
    (0, r"\[collective plan check\] the check of the graph's 1 collectives \(first: #0 all_reduce\(sum\) "
        r"'[^']+' f32\[3\]\) did not complete within 2 s on rank 0: rank\(s\) \[1\] did not answer"),
], ids=["mid-run", "first-step"])
def test_a_stalled_rank_makes_the_others_fail_naming_it(tmp_path, stall_at, expected):
    script = tmp_path / "stall.py"
    script.write_text(STALL_SCRIPT)
    p, elapsed, out = run_job(script, [40, stall_at], {"NDFLOW_COLLECTIVE_TIMEOUT": "2"})
    assert p.returncode != 0, out
    assert elapsed < 30, f"the job took {elapsed:.0f} s: the stalled rank was waited for\n{out}"
    assert "rank 1 passed step 1" not in out, out
    if stall_at == 1:
        assert "rank 0 passed step 0" in out and "rank 1 passed step 0" in out, out
    m = re.search(rf"rank 0 failed after ([0-9.]+) s", out)
    assert m and 1.9 <= float(m.group(1)) < 6, out  # the 2 s timeout, plus at most the progress query
    assert re.search(expected, out), out
