"""Model parallelism across workers: a model whose layers are placed on
worker 0 and worker 1 (ndflow.device scopes) trains as one program, its
partitions joined by send/recv over MPI, and gives the same losses,
gradients and parameters as the same model on one device. Every rank runs
the program; each gets every fetched result."""
import os
import sys

import numpy as np
import pytest

import ndflow as nd
import ndflow.distributed as dist

pytestmark = pytest.mark.skipif(dist.get_world_size() < 2, reason="needs at least 2 ranks")


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from test_placement import Split, make_step  # noqa: E402  (the same model as on one process)


def test_two_worker_split_equals_one_device():
    rng = np.random.default_rng(0)  # the same data on every rank
    nd.manual_seed(0)
    ref = Split()
    split = Split(("worker:0/cpu:0", "worker:1/cpu:0"))
    split.load_state_dict(ref.state_dict())
    step_ref = make_step(ref, nd.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9), return_grads=True)
    step_split = make_step(split, nd.optim.SGD(split.parameters(), lr=0.1, momentum=0.9), return_grads=True)
    for _ in range(6):
        x = nd.tensor(rng.standard_normal((8, 6)).astype(np.float32))
        y = nd.tensor(rng.integers(0, 3, 8))
        la, ga = step_ref(x, y)
        lb, gb = step_split(x, y)
        np.testing.assert_allclose(lb.numpy(), la.numpy(), rtol=1e-6, atol=1e-7)
        for a, b in zip(ga, gb):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-7)
    # Each worker holds (and updated) its own layer's parameters.
    rank = dist.get_rank()
    owned = {0: ref.l1, 1: ref.l2}.get(rank)
    mine = {0: split.l1, 1: split.l2}.get(rank)
    if owned is not None:
        for a, b in zip(owned.parameters(), mine.parameters()):
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-5, atol=1e-6)
    placement = nd.placement.placement(step_split)
    assert {"/worker:0/cpu:0", "/worker:1/cpu:0"} <= set(placement.values())
    pairs, reported = nd.placement.transfer_counts(step_split)
    assert pairs >= reported > 0  # plus the fetches sent to every other worker
