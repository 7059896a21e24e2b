"""Graph data parallelism (runtime/passes/data_parallel.h through
@ndflow.function): N ranks with per-rank batch b end with the same parameters
as one process with batch N·b after 10 compiled steps, for an MLP trained
with SGD + momentum and with Adam, whether the step runs a DataParallel
module (automatic) or asks with data_parallel=True. Each rank computes the
single-process reference itself (a plain traced step on the whole batch)."""
import numpy as np
import pytest

import ndflow as nd
import ndflow.distributed as dist
from ndflow import nn, optim

R, N = dist.get_rank(), dist.get_world_size()
B, STEPS, FEATURES, CLASSES = 4, 10, 12, 5


def mlp():
    nd.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, CLASSES))


def data():
    rng = np.random.default_rng(123)
    x = rng.standard_normal((STEPS, N * B, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(STEPS, N * B)).astype(np.int64)
    return x, y


def make_opt(kind, params):
    if kind == "momentum":
        return optim.SGD(params, lr=0.1, momentum=0.9)
    return optim.Adam(params, lr=0.01)


def train(model, opt, batches, **function_args):
    @nd.function(**function_args)
    def step(x, y):
        opt.zero_grad()
        loss = nd.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for x, y in batches:
        step(nd.from_numpy(x), nd.from_numpy(y))
    assert step.trace_count == 1
    return step


def params(model):
    return [p.detach().numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["momentum", "adam"])
@pytest.mark.parametrize("switch", ["DataParallel", "flag"])
def test_graph_data_parallel_equals_one_process_with_the_whole_batch(kind, switch):
    x, y = data()
    reference = mlp()
    ref_step = train(reference, make_opt(kind, reference.parameters()), zip(x, y), data_parallel=False)
    assert ref_step.data_parallel_report is None

    net = mlp()
    mine = slice(R * B, (R + 1) * B)
    shards = [(xs[mine], ys[mine]) for xs, ys in zip(x, y)]
    if switch == "DataParallel":
        model = dist.DataParallel(net, bucket_mb=1e-3)  # 1 KB: several buckets
        step = train(model, make_opt(kind, model.parameters()), shards)
        expect_report = N > 1  # automatic only in a world of several ranks
    else:
        step = train(net, make_opt(kind, net.parameters()), shards, data_parallel=True, bucket_mb=25)
        expect_report = True
    if expect_report:
        assert step.data_parallel_report.startswith("data_parallel:"), step.data_parallel_report
        buckets = "1 bucket(s)" if switch == "flag" else "bucket(s)"
        assert buckets in step.data_parallel_report and "for 6 gradients" in step.data_parallel_report
        ops = step.graph.op_counts()
        assert ops.get("all_reduce_coalesced", 0) >= 1
    for got, want in zip(params(net), params(reference)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    # p.grad holds the averaged gradient of the last step, as in PyTorch DDP.
    for p, q in zip(net.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_data_parallel_off_keeps_the_local_gradients():
    x, y = data()
    net = mlp()
    mine = slice(R * B, (R + 1) * B)
    model = dist.DataParallel(net)
    step = train(model, make_opt("momentum", model.parameters()), [(x[0][mine], y[0][mine])], data_parallel=False)
    assert step.data_parallel_report is None
    assert "all_reduce_coalesced" not in step.graph.op_counts()


def test_bad_switches_are_errors():
    with pytest.raises(TypeError, match="data_parallel must be None"):
        nd.function(lambda x: x, data_parallel="yes")
    with pytest.raises(ValueError, match="bucket_mb must be a positive number"):
        nd.function(lambda x: x, bucket_mb=0)
