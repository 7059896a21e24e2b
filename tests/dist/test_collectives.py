"""Collectives of ndflow.distributed against NumPy: rank r contributes a
tensor it and every other rank can compute, so each rank checks the result."""
import numpy as np
import pytest

import ndflow as nd
import ndflow.distributed as dist

R, N = dist.get_rank(), dist.get_world_size()
DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint8]


def contribution(rank, shape, dtype):
    """Rank `rank`'s input: distinct per rank, small enough not to overflow."""
    a = (np.arange(np.prod(shape)).reshape(shape) * (rank + 1) + 3 * rank) % 50
    if np.issubdtype(dtype, np.floating):
        a = a + 0.25 * rank - 1.5
    return np.array(a, dtype=dtype)  # 0-d arrays stay arrays


def everyone(shape, dtype):
    return [contribution(r, shape, dtype) for r in range(N)]


def test_world():
    assert dist.is_initialized()
    assert 0 <= R < N
    assert dist.is_mpi() == (N > 1 or dist._d.launched_by_mpi())
    gathered = dist.all_gather(nd.tensor([R], dtype=nd.int64)).numpy()
    np.testing.assert_array_equal(gathered.ravel(), np.arange(N))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), ()], ids=str)
def test_all_reduce_sum_max(dtype, shape):
    for op, ref in (("sum", lambda xs: np.sum(xs, axis=0).astype(dtype)), ("max", lambda xs: np.max(xs, axis=0))):
        t = nd.from_numpy(contribution(R, shape, dtype).copy())
        out = dist.all_reduce(t, op=op)
        assert out is t
        np.testing.assert_array_equal(t.numpy(), ref(everyone(shape, dtype)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_all_reduce_mean(dtype):
    t = nd.from_numpy(contribution(R, (4, 6), dtype).copy())
    version = t._version
    dist.all_reduce(t, "mean")
    assert t._version > version or N == 1
    np.testing.assert_allclose(t.numpy(), np.mean(everyone((4, 6), np.float64), axis=0).astype(dtype), rtol=1e-6)


def test_all_reduce_large_and_coalesced():
    big = nd.from_numpy(contribution(R, (1 << 18,), np.float32).copy())  # 1 MB
    dist.all_reduce(big)
    np.testing.assert_array_equal(big.numpy(), np.sum(everyone((1 << 18,), np.float32), axis=0))
    shapes = [(3, 4), (5,), (2, 2, 2)]
    ts = [nd.from_numpy(contribution(R + i, s, np.float32).copy()) for i, s in enumerate(shapes)]
    dist.all_reduce_coalesced(ts, "mean")
    for i, (s, t) in enumerate(zip(shapes, ts)):
        ref = np.mean([contribution(r + i, s, np.float64) for r in range(N)], axis=0)
        np.testing.assert_allclose(t.numpy(), ref.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_broadcast(dtype):
    for src in range(N):
        t = nd.from_numpy(contribution(R, (3, 4), dtype).copy())
        assert dist.broadcast(t, src=src) is t
        np.testing.assert_array_equal(t.numpy(), contribution(src, (3, 4), dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_all_gather(dtype):
    out = dist.all_gather(nd.from_numpy(contribution(R, (2, 3), dtype)))
    assert out.shape == (N, 2, 3)
    np.testing.assert_array_equal(out.numpy(), np.stack(everyone((2, 3), dtype)))


def test_barrier():
    for _ in range(3):
        dist.barrier()


def test_errors_name_the_collective():
    with pytest.raises(ValueError, match=r"\[allreduce\].*f32\[4,3\].*not contiguous"):
        dist.all_reduce(nd.zeros((3, 4)).T)
    with pytest.raises(TypeError, match=r"\[allreduce\].*'mean'.*i32\[3\]"):
        dist.all_reduce(nd.zeros((3,), dtype=nd.int32), "mean")
    with pytest.raises(TypeError, match=r"\[broadcast\].*f16\[2\].*valid dtypes"):
        dist.broadcast(nd.zeros((2,), dtype=nd.float16))
    with pytest.raises(IndexError, match=r"\[broadcast\] root .* is not a rank"):
        dist.broadcast(nd.zeros((2,)), src=N)
    with pytest.raises(ValueError, match="unknown reduce op 'min'"):
        dist.all_reduce(nd.zeros((2,)), "min")
    # The collectives still line up on every rank afterwards.
    t = nd.ones((2,))
    dist.all_reduce(t)
    np.testing.assert_array_equal(t.numpy(), [N, N])


@pytest.mark.skipif(N == 1, reason="needs two ranks")
def test_mismatched_collectives_are_an_error_on_every_rank():
    shape = (3,) if R == 0 else (4,)
    with pytest.raises(ValueError, match=r"\[allreduce\] the ranks issued different collectives.*"
                                         r"rank 0: allreduce\(sum\) f32\[3\]; rank 1: allreduce\(sum\) f32\[4\]"):
        dist.all_reduce(nd.zeros(shape))
    op = "sum" if R == 0 else "max"
    with pytest.raises(ValueError, match=r"rank 0: allreduce\(sum\).*rank 1: allreduce\(max\)"):
        dist.all_reduce(nd.zeros((2,)), op)
    with pytest.raises(ValueError, match=r"rank 0: broadcast\(root=0\).*rank 1: allgather"):
        dist.broadcast(nd.zeros((2,))) if R == 0 else dist.all_gather(nd.zeros((2,)))
    dist.barrier()
