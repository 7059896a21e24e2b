"""max_pool2d's return_indices and max_unpool2d (nn.MaxPool2d(return_indices=True),
nn.MaxUnpool2d) against NumPy: where the maxima come from, the unpooled
values, their gradient (gathered back, as torch's), graph mode, errors."""
import numpy as np
import pytest

import ndflow as nd
import ndflow.nn as nn
import ndflow.nn.functional as F

from op_samples import np_max_pool2d_indices


def np_unpool(x, idx, out_hw):
    n, c = x.shape[:2]
    y = np.zeros((n, c, out_hw[0] * out_hw[1]), dtype=x.dtype)
    for a in range(n):
        for b in range(c):
            y[a, b, idx[a, b].ravel()] = x[a, b].ravel()
    return y.reshape(n, c, *out_hw)


def distinct(*shape, seed=0):
    """Values without ties, so that the argmax is unambiguous."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float64) / 7.0


@pytest.mark.parametrize("k,s,p,d", [((2, 2), (2, 2), (0, 0), (1, 1)), ((3, 3), (1, 1), (1, 1), (1, 1)),
                                     ((3, 2), (2, 1), (1, 0), (1, 1)), ((2, 3), (1, 2), (0, 1), (1, 1)),
                                     ((2, 2), (1, 1), (1, 1), (2, 2)), ((3, 2), (2, 1), (1, 0), (2, 3))])
def test_indices_point_at_the_maxima(k, s, p, d):
    x = distinct(2, 3, 7, 6)
    y, idx = F.max_pool2d(nd.tensor(x), k, s, p, dilation=d, return_indices=True)
    assert idx.dtype == nd.int64
    want = np_max_pool2d_indices(x, k, s, p, d)
    np.testing.assert_array_equal(idx.numpy(), want)
    # The values at those positions are the pooled maxima.
    picked = np.take_along_axis(x.reshape(2, 3, -1), want.reshape(2, 3, -1), axis=2).reshape(want.shape)
    np.testing.assert_array_equal(y.numpy(), picked)


def test_ties_take_the_first_maximum_in_row_major_order():
    x = np.array([[[[3, 1, 2, 9], [5, 4, 0, 8], [7, 7, 6, 1], [2, 7, 3, 6]]]], dtype=np.float32)
    _, idx = F.max_pool2d(nd.tensor(x), 2, return_indices=True)
    assert idx.numpy().ravel().tolist() == [4, 3, 8, 10]


def test_ceil_mode_indices_match_the_pooled_values():
    x = distinct(1, 2, 5, 5, seed=3)
    y, idx = F.max_pool2d(nd.tensor(x), 2, 2, ceil_mode=True, return_indices=True)
    assert list(y.shape) == [1, 2, 3, 3]
    picked = np.take_along_axis(x.reshape(1, 2, -1), idx.numpy().reshape(1, 2, -1), axis=2).reshape(1, 2, 3, 3)
    np.testing.assert_array_equal(y.numpy(), picked)


@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 3), (1, 1), (0, 0))])
def test_unpool_puts_each_value_back_where_it_came_from(k, s, p):
    x = distinct(2, 2, 6, 6, seed=1)
    pool, unpool = nn.MaxPool2d(k, s, p, return_indices=True), nn.MaxUnpool2d(k, s, p)
    y, idx = pool(nd.tensor(x))
    out = unpool(y, idx, output_size=x.shape)  # the default size may drop the last row (as torch's)
    np.testing.assert_array_equal(out.numpy(), np_unpool(y.numpy(), idx.numpy(), x.shape[2:]))
    # Overlapping windows (stride 1) pick one element more than once: it still holds its value once.
    assert set(np.unique(out.numpy())) <= set(np.unique(x)) | {0.0}


def test_unpool_output_size_and_its_bounds():
    x = distinct(1, 1, 5, 5, seed=2)
    y, idx = F.max_pool2d(nd.tensor(x), 2, return_indices=True)  # [1, 1, 2, 2] from a 5x5 input
    out = F.max_unpool2d(y, idx, 2, output_size=[5, 5])
    assert list(out.shape) == [1, 1, 5, 5]
    np.testing.assert_array_equal(out.numpy(), np_unpool(y.numpy(), idx.numpy(), (5, 5)))
    assert list(F.max_unpool2d(y, idx, 2, output_size=[1, 1, 5, 5]).shape) == [1, 1, 5, 5]
    with pytest.raises(ValueError, match="output_size"):
        F.max_unpool2d(y, idx, 2, output_size=[7, 7])
    with pytest.raises(ValueError, match="indices of the same shape"):
        F.max_unpool2d(y, idx.reshape(1, 1, 4, 1), 2)
    with pytest.raises(ValueError, match="int64 indices"):
        F.max_unpool2d(y, idx.to(nd.int32), 2)


def test_unpool_gradient_gathers_the_output_gradient():
    x = distinct(1, 2, 4, 4, seed=4)
    y, idx = F.max_pool2d(nd.tensor(x), 3, 1, return_indices=True)  # overlapping: repeated indices
    v = y.detach().requires_grad_()
    out = F.max_unpool2d(v, idx, 3, 1)
    g = np.random.default_rng(5).standard_normal(out.shape)
    (out * nd.tensor(g)).sum().backward()
    want = np.take_along_axis(g.reshape(1, 2, -1), idx.numpy().reshape(1, 2, -1), axis=2).reshape(v.shape)
    np.testing.assert_allclose(v.grad.numpy(), want, rtol=1e-12)


def test_pool_then_unpool_trains_the_same_in_graph_mode():
    rng = np.random.default_rng(6)
    conv = nn.Conv2d(2, 2, 3, padding=1, dtype=nd.float64)
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    x = nd.tensor(rng.standard_normal((2, 2, 6, 6)))

    def loss_of(inp):
        y, idx = pool(conv(inp))
        return (unpool(y, idx) ** 2).mean()

    eager = loss_of(x)
    eager.backward()
    g_eager = conv.weight.grad.numpy().copy()
    conv.weight.grad = conv.bias.grad = None

    @nd.function
    def step(inp):
        loss = loss_of(inp)
        loss.backward()
        return loss

    traced = step(x)
    np.testing.assert_allclose(traced.numpy(), eager.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(conv.weight.grad.numpy(), g_eager, rtol=1e-10)


def test_module_repr_and_tuple_output():
    m = nn.MaxPool2d(2, return_indices=True)
    out = m(nd.zeros(1, 1, 4, 4))
    assert isinstance(out, tuple) and len(out) == 2
    assert "kernel_size=(2, 2)" in repr(nn.MaxUnpool2d(2))
    assert "dilation=(2, 1)" in repr(nn.MaxPool2d(2, dilation=(2, 1)))
    with pytest.raises(ValueError, match="dilation"):
        nn.MaxPool2d(2, dilation=0)


def test_dilated_max_pool_gradient_and_graph_mode():
    x = nd.tensor(distinct(1, 2, 7, 7, seed=8)).requires_grad_()
    pool = nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True)
    y = pool(x)
    g = np.random.default_rng(9).standard_normal(y.shape)
    (y * nd.tensor(g)).sum().backward()
    # The gradient lands on the maxima the indices name, summed where windows share one.
    idx = F.max_pool2d(x.detach(), 3, 2, 1, dilation=2, ceil_mode=True, return_indices=True)[1].numpy()
    want = np.zeros((1, 2, 49))
    for c in range(2):
        np.add.at(want[0, c], idx[0, c].ravel(), g[0, c].ravel())
    np.testing.assert_allclose(x.grad.numpy(), want.reshape(1, 2, 7, 7), rtol=1e-12)
    traced = nd.function(lambda t: pool(t))(x.detach())
    np.testing.assert_array_equal(traced.numpy(), y.detach().numpy())


@pytest.mark.parametrize("odd", [False, True])
def test_max_pool_backward_routes_to_the_first_maximum_and_the_last_nan(odd):
    """The 2x2/2 backward (its own kernel path) against the rules of the general one and torch's:
    ties go to the first maximum in row-major order, a NaN wins and a later NaN wins over it;
    an odd last row or column gets no gradient."""
    x = np.array([[np.nan, 1, 2, np.nan], [3, np.nan, 5, 6], [1, 1, 4, 4], [1, 1, 4, 4]])
    want = np.array([[0, 0, 0, 2], [0, 1, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]], dtype=np.float64)
    if odd:
        x = np.pad(x, ((0, 1), (0, 1)), constant_values=9.0)  # 5x5: the 9s are in no window
        want = np.pad(want, ((0, 1), (0, 1)))
    g = np.array([[1.0, 2.0], [3.0, 4.0]])
    dx = nd.ops.max_pool2d_backward(nd.tensor(x[None, None]), nd.tensor(g[None, None]), kernel_size=[2, 2])
    np.testing.assert_array_equal(dx.numpy()[0, 0], want)
    # The same routing as the indices, which share the general argmax loop.
    idx = F.max_pool2d(nd.tensor(x[None, None]), 2, return_indices=True)[1].numpy().ravel()
    w = x.shape[1]
    assert idx.tolist() == [1 * w + 1, 0 * w + 3, 2 * w + 0, 2 * w + 2]
