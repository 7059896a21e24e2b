"""DataParallel and DistributedSampler: N ranks with per-rank batch b take
the same steps as one process with batch N·b (eager MLP, SGD with momentum).
Each rank computes the single-process reference itself and compares."""
import numpy as np
import pytest

import ndflow as nd
import ndflow.distributed as dist
from ndflow import nn, optim
from ndflow.data import DataLoader, TensorDataset

R, N = dist.get_rank(), dist.get_world_size()
B, STEPS, FEATURES, CLASSES = 4, 10, 12, 5


def mlp():
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, CLASSES))


def dataset():
    rng = np.random.default_rng(123)
    x = rng.standard_normal((N * B * STEPS, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=N * B * STEPS).astype(np.int64)
    return TensorDataset(nd.from_numpy(x), nd.from_numpy(y))


def train(model, loader, sync):
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    steps = 0
    for x, y in loader:
        loss = nd.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        sync()
        opt.step()
        steps += 1
    assert steps == STEPS


def params(model):
    return [p.detach().numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("bucket_mb", [25, 1e-4], ids=["one-bucket", "bucket-per-param"])
def test_data_parallel_equals_one_process_with_the_whole_batch(bucket_mb):
    nd.manual_seed(1000 + R)  # every rank starts different: the broadcast must fix that
    model = dist.DataParallel(mlp(), bucket_mb=bucket_mb)
    start = params(model)
    gathered = dist.all_gather(nd.from_numpy(np.concatenate([a.ravel() for a in start]))).numpy()
    for r in range(N):
        np.testing.assert_array_equal(gathered[r], gathered[0])  # all replicas equal after the broadcast
    if bucket_mb == 25:
        assert len(model.buckets) == 1
    else:
        assert len(model.buckets) == len(start)
        assert model.buckets[0][0] is list(model.parameters())[-1]  # reverse order

    data = dataset()
    sampler = dist.DistributedSampler(data, shuffle=False)
    train(model, DataLoader(data, batch_size=B, sampler=sampler), model.sync_gradients)

    reference = mlp()
    with nd.no_grad():
        for p, a in zip(reference.parameters(), start):
            p.copy_(nd.from_numpy(a))
    train(reference, DataLoader(data, batch_size=N * B), lambda: None)

    for got, want in zip(params(model), params(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    assert not np.allclose(params(model)[0], start[0])  # it did train
    assert list(model.state_dict())[0].startswith("module.")


def test_unused_parameter_on_some_ranks_gets_averaged_zeros():
    model = dist.DataParallel(nn.Linear(3, 2))
    w, b = model.module.weight, model.module.bias
    x = nd.ones((1, 3))
    # Rank 0 uses the bias, the others do not.
    out = nd.matmul(x, w.T).sum() + (b.sum() if R == 0 else 0)
    out.backward()
    model.sync_gradients()
    np.testing.assert_allclose(w.grad.detach().numpy(), np.ones((2, 3)))
    np.testing.assert_allclose(b.grad.detach().numpy(), np.full(2, 1.0 / N))


def test_distributed_sampler_shards():
    data = list(range(10))
    for replicas in (1, 3, 4):
        shards = [list(dist.DistributedSampler(data, replicas, r, shuffle=True, seed=7)) for r in range(replicas)]
        per = -(-10 // replicas)
        assert all(len(s) == per for s in shards)
        union = sorted(i for s in shards for i in s)
        assert set(union) == set(data) and len(union) == per * replicas  # padded by repeats
        dropped = [list(dist.DistributedSampler(data, replicas, r, shuffle=False, drop_last=True))
                   for r in range(replicas)]
        assert sorted(i for s in dropped for i in s) == list(range(10 // replicas * replicas))
    s = dist.DistributedSampler(data, 2, 1, shuffle=True, seed=3)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0 and e0 != e1
    # Every rank derives the same permutation: the shards of the ranks are disjoint.
    mine = nd.from_numpy(np.asarray(list(dist.DistributedSampler(list(range(8 * N)), seed=5)), dtype=np.int64))
    everyone = dist.all_gather(mine).numpy()
    assert sorted(everyone.ravel().tolist()) == list(range(8 * N))
    with pytest.raises(ValueError, match="rank must be in"):
        dist.DistributedSampler(data, 2, 2)
