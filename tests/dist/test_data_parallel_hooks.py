"""DataParallel reduces gradient buckets during backward, from the
post-accumulate-grad hooks: N ranks with per-rank batch b still take the
same steps as one process with batch N·b (SGD with momentum, Adam), with
several buckets so that buckets are reduced while backward runs; unused
parameters, no_sync() and a rank whose backward reaches no parameter keep
every rank's collectives in step."""
import numpy as np
import pytest

import ndflow as nd
import ndflow.distributed as dist
from ndflow import nn, optim
from ndflow.data import DataLoader, TensorDataset

R, N = dist.get_rank(), dist.get_world_size()
B, STEPS, FEATURES, CLASSES = 4, 10, 12, 5
SMALL_BUCKET_MB = 1e-3  # ~1 KB: the MLP below splits into 3 buckets


def mlp():
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, CLASSES))


def dataset():
    rng = np.random.default_rng(321)
    x = rng.standard_normal((N * B * STEPS, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=N * B * STEPS).astype(np.int64)
    return TensorDataset(nd.from_numpy(x), nd.from_numpy(y))


def make_opt(kind, params):
    if kind == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9)
    return optim.Adam(params, lr=0.01)


def params(model):
    return [p.detach().numpy().copy() for p in model.parameters()]


def train(model, loader, kind, on_step=None):
    opt = make_opt(kind, model.parameters())
    steps = 0
    for x, y in loader:
        loss = nd.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if on_step is not None:
            on_step()
        opt.step()
        steps += 1
    assert steps == STEPS


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_buckets_reduced_during_backward_match_one_process(kind):
    nd.manual_seed(77 + R)  # replicas start different: the broadcast makes them equal
    model = dist.DataParallel(mlp(), bucket_mb=SMALL_BUCKET_MB)
    assert len(model.buckets) == 3
    start = params(model)

    # The first layer's weight is the last gradient backward finishes; when
    # its hook runs (registered after DataParallel's), the buckets of the
    # later layers must already be on their way: communication overlaps backward.
    early = []
    first_weight = model.module[0].weight
    first_weight.register_post_accumulate_grad_hook(lambda t: early.append(model._sync.next))

    def after_backward():
        model.sync_gradients()  # a no-op wait: backward did it
        assert model.buckets_started_in_backward >= (1 if N > 1 else 0)

    data = dataset()
    loader = DataLoader(data, batch_size=B, sampler=dist.DistributedSampler(data, shuffle=False))
    train(model, loader, kind, after_backward)
    if N > 1:
        assert len(early) == STEPS and min(early) >= 1, early

    reference = mlp()
    with nd.no_grad():
        for p, a in zip(reference.parameters(), start):
            p.copy_(nd.from_numpy(a))
    train(reference, DataLoader(data, batch_size=N * B), kind)

    for got, want in zip(params(model), params(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    assert not np.allclose(params(model)[0], start[0])  # it did train
    # All replicas end bit-identical: they applied the same averaged gradients.
    flat = nd.from_numpy(np.concatenate([a.ravel() for a in params(model)]))
    everyone = dist.all_gather(flat).numpy()
    for r in range(N):
        np.testing.assert_array_equal(everyone[r], everyone[0])


def test_gradients_are_averaged_when_backward_returns_without_sync_gradients():
    model = dist.DataParallel(nn.Linear(3, 2), bucket_mb=1e-5)  # one bucket per parameter
    x = nd.full((1, 3), float(R + 1))
    model(x).sum().backward()
    mean = (N + 1) / 2  # mean over ranks of (rank + 1)
    np.testing.assert_allclose(model.module.weight.grad.numpy(), np.full((2, 3), mean), rtol=1e-6)
    np.testing.assert_allclose(model.module.bias.grad.numpy(), np.ones(2))
    model.sync_gradients()  # nothing left to do, and no collective issued
    np.testing.assert_allclose(model.module.weight.grad.numpy(), np.full((2, 3), mean), rtol=1e-6)


def test_parameter_no_rank_uses_keeps_none_and_one_some_ranks_use_gets_averaged_zeros():
    lin = nn.Linear(3, 2)
    extra = nn.Linear(2, 2)
    model = dist.DataParallel(nn.Sequential(lin, extra), bucket_mb=1e-5)
    x = nd.ones((1, 3))
    out = lin(x).sum()
    if R == 0:
        out = out + extra.bias.sum()  # only rank 0 touches extra.bias; nobody extra.weight
    out.backward()
    model.sync_gradients()
    assert extra.weight.grad is None
    np.testing.assert_allclose(extra.bias.grad.numpy(), np.full(2, 1.0 / N))
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.ones((2, 3)))


def test_rank_whose_backward_reaches_no_parameter_reduces_in_sync_gradients():
    model = dist.DataParallel(nn.Linear(3, 2), bucket_mb=1e-5)
    other = nd.ones((2,))
    other.requires_grad = True
    if R == 0:
        loss = model(nd.ones((1, 3))).sum()  # hooks fire: reduced during backward
    else:
        loss = (other * 2).sum()             # no hook fires: sync_gradients must reduce
    loss.backward()
    model.sync_gradients()
    np.testing.assert_allclose(model.module.weight.grad.numpy(), np.full((2, 3), 1.0 / N), rtol=1e-6)


def test_no_sync_accumulates_locally_and_the_next_backward_reduces_the_sum():
    nd.manual_seed(5)
    model = dist.DataParallel(nn.Linear(3, 2), bucket_mb=1e-5)
    w = model.module.weight
    with model.no_sync():
        model(nd.full((1, 3), float(R))).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), float(R)))  # not reduced
    model(nd.ones((1, 3))).sum().backward()
    mean = (N - 1) / 2 + 1  # mean over ranks of (rank + 1)
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), mean), rtol=1e-6)
    model.sync_gradients()


def test_bucket_mb_must_be_positive():
    with pytest.raises(ValueError, match="bucket_mb"):
        dist.DataParallel(nn.Linear(2, 2), bucket_mb=0)
