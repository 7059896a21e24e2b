"""nn.Embedding / nn.functional.embedding options with torch's semantics,
checked against NumPy references: max_norm (+ norm_type) renormalizes the
looked-up rows of the weight in place before the lookup,
scale_grad_by_freq divides each row's gradient by its index count in the
batch, both together, in eager and compiled (@ndflow.function) steps, and
the errors (sparse=True, bad max_norm / norm_type, a traced weight that is
not a Variable)."""

import math

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn, optim
from ndflow.nn import functional as F

RNG = np.random.default_rng(11)


def arr(t):
    return np.asarray(t.detach().numpy())


def np_norm(rows, p):
    a = np.abs(rows)
    if p == math.inf:
        return a.max(axis=-1)
    if p == 0:
        return (a != 0).sum(axis=-1).astype(rows.dtype)
    return (a ** p).sum(axis=-1) ** (1.0 / p)


def np_renorm(w, idx, max_norm, p):
    """torch.embedding_renorm_: each distinct referenced row over max_norm is scaled once."""
    w = w.copy()
    for r in np.unique(np.asarray(idx).reshape(-1)):
        n = np_norm(w[r], p)
        if n > max_norm:
            w[r] *= max_norm / (n + 1e-7)
    return w


def np_freq_grad(idx, g, num_rows, padding_idx=None, scale=True):
    """The weight gradient of sum(g * W[idx]), each row divided by its index count (torch)."""
    flat = np.asarray(idx).reshape(-1)
    counts = np.bincount(flat, minlength=num_rows)
    want = np.zeros((num_rows, g.shape[-1]))
    rows = g.reshape(-1, g.shape[-1])
    if scale:
        rows = rows / counts[flat][:, None]
    np.add.at(want, flat, rows)
    if padding_idx is not None:
        want[padding_idx] = 0
    return want


def table(v=9, d=4, scale=2.0):
    return RNG.normal(size=(v, d)) * scale


# ------------------------------------------------------------------ max_norm

@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5, 60.0, math.inf])
def test_max_norm_renormalizes_referenced_rows_in_place(p):
    w0 = table()
    w = nn.Parameter(nd.tensor(w0.copy()))
    idx = np.array([[1, 4, 1], [7, 4, 4]])  # duplicates; rows 0, 2, 3, 5, 6, 8 not referenced
    ref = np_norm(w0[[1, 4, 7]], p)
    max_norm = float(ref.min() + ref.max()) / 2  # some referenced rows over, some under
    version = w._version
    y = F.embedding(nd.tensor(idx), w, max_norm=max_norm, norm_type=p)
    want = np_renorm(w0, idx, max_norm, p)
    got = arr(w)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert w._version > version  # written in place (as torch's embedding_renorm_)
    assert np.all(np_norm(got[[1, 4, 7]], p) <= max_norm)
    untouched = [0, 2, 3, 5, 6, 8]
    np.testing.assert_array_equal(got[untouched], w0[untouched])  # bit for bit
    for r in (1, 4, 7):  # rows under the limit stay bit for bit too
        if np_norm(w0[r], p) <= max_norm:
            np.testing.assert_array_equal(got[r], w0[r])
    assert any(np_norm(w0[r], p) > max_norm for r in (1, 4, 7))
    assert any(np_norm(w0[r], p) < max_norm for r in (1, 4, 7))
    # the lookup returns the renormalized rows
    np.testing.assert_array_equal(arr(y), got[idx])
    # a second lookup changes nothing more (each row is already at most max_norm, by 1e-7)
    F.embedding(nd.tensor(idx), w, max_norm=max_norm, norm_type=p)
    np.testing.assert_allclose(arr(w), got, rtol=1e-12)


def test_max_norm_zero_norm_counts_nonzeros():
    w0 = np.array([[0.0, 2.0, 0.0, 3.0], [1.0, 1.0, 1.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    w = nn.Parameter(nd.tensor(w0.copy()))
    F.embedding(nd.tensor([0, 1, 2]), w, max_norm=1.5, norm_type=0)
    np.testing.assert_allclose(arr(w), np_renorm(w0, [0, 1, 2], 1.5, 0), rtol=1e-12)


def test_max_norm_module_float32_padding_and_gradient():
    nd.manual_seed(3)
    emb = nn.Embedding(10, 5, padding_idx=2, max_norm=1.0)
    w0 = arr(emb.weight).copy()
    idx = np.array([[2, 3, 3, 9], [0, 2, 9, 9]])
    y = emb(nd.tensor(idx))
    want = np_renorm(w0.astype(np.float64), idx, 1.0, 2.0)
    got = arr(emb.weight)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(got[2], np.zeros(5))  # the padding row is zero, so never rescaled
    untouched = [1, 4, 5, 6, 7, 8]
    np.testing.assert_array_equal(got[untouched], w0[untouched])
    np.testing.assert_array_equal(arr(y), got[idx])
    # the gradient is the lookup's (not through the renormalization), and skips padding_idx
    g = RNG.normal(size=(2, 4, 5)).astype(np.float32)
    (y * nd.tensor(g)).sum().backward()
    np.testing.assert_allclose(emb.weight.grad.numpy(), np_freq_grad(idx, g, 10, 2, scale=False), rtol=1e-6)


def test_max_norm_gradient_matches_finite_differences_below_the_limit():
    """Rows under max_norm are not touched, so the gradient is the true derivative."""
    w = nn.Parameter(nd.tensor(table(6, 3, 0.3)))
    idx = nd.tensor(np.array([[0, 5, 5], [2, 0, 3]]))
    r = nd.tensor(RNG.normal(size=(2, 3, 3)))

    def loss():
        return (F.embedding(idx, w, max_norm=10.0, norm_type=1.0) * r).sum()

    loss().backward()
    _check_fd(loss, w)


def test_max_norm_modifies_a_weight_saved_for_backward():
    """As torch: the in-place renorm bumps the version, so an op that saved the weight earlier
    (here a tied output projection) cannot backpropagate."""
    w = nn.Parameter(nd.tensor(table(5, 3)))
    h = nd.tensor(RNG.normal(size=(2, 3)))
    logits = nd.matmul(h, w.T)
    F.embedding(nd.tensor([1, 2]), w, max_norm=0.5)
    with pytest.raises(ValueError, match="modified in place"):
        logits.sum().backward()


def test_max_norm_leaves_rows_alone_when_under_the_limit_or_unreferenced():
    w0 = table()
    w = nn.Parameter(nd.tensor(w0.copy()))
    F.embedding(nd.tensor([0, 1, 2]), w, max_norm=1e6)
    np.testing.assert_array_equal(arr(w), w0)
    F.embedding(nd.tensor(np.zeros((0,), np.int64)), w, max_norm=0.1)  # nothing referenced
    np.testing.assert_array_equal(arr(w), w0)


# -------------------------------------------------------- scale_grad_by_freq

@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_scale_grad_by_freq_divides_row_gradients_by_counts(index_dtype):
    nd.manual_seed(4)
    emb = nn.Embedding(8, 3, padding_idx=6, scale_grad_by_freq=True, dtype=nd.float64)
    plain = nn.Embedding.from_pretrained(emb.weight, freeze=False, padding_idx=6)
    idx = np.array([[1, 1, 1, 6], [3, 6, 1, 0], [3, 7, 7, 2]], dtype=index_dtype)
    y = emb(nd.tensor(idx))
    # the forward value is the plain lookup's
    np.testing.assert_array_equal(arr(y), arr(plain(nd.tensor(idx))))
    np.testing.assert_array_equal(arr(y), arr(emb.weight)[idx])
    g = RNG.normal(size=(3, 4, 3))
    (y * nd.tensor(g)).sum().backward()
    want = np_freq_grad(idx, g, 8, padding_idx=6)
    np.testing.assert_allclose(emb.weight.grad.numpy(), want, rtol=1e-12, atol=1e-15)
    assert not emb.weight.grad.numpy()[[4, 5, 6]].any()
    # without the option the counts do not divide
    (plain(nd.tensor(idx)) * nd.tensor(g)).sum().backward()
    np.testing.assert_allclose(plain.weight.grad.numpy(), np_freq_grad(idx, g, 8, 6, scale=False), rtol=1e-12)


def test_scale_grad_by_freq_functional_and_gradient_identity():
    """The scaled gradient is the true derivative of sum(r * W[idx] / count[idx]) (finite differences),
    and, with distinct indices, of the plain loss."""
    w = nn.Parameter(nd.tensor(table(7, 2)))
    idx_np = np.array([4, 4, 0, 4, 2, 0])
    idx = nd.tensor(idx_np)
    r = RNG.normal(size=(6, 2))
    inv = 1.0 / np.bincount(idx_np, minlength=7)[idx_np][:, None]
    (g,) = nd.grad((F.embedding(idx, w, scale_grad_by_freq=True) * nd.tensor(r)).sum(), [w])
    w.grad = g

    def weighted():
        return (F.embedding(idx, w) * nd.tensor(r * inv)).sum()

    _check_fd(weighted, w)
    w.grad = None
    distinct = nd.tensor(np.array([3, 1, 6]))
    r3 = nd.tensor(RNG.normal(size=(3, 2)))

    def loss():
        return (F.embedding(distinct, w, scale_grad_by_freq=True) * r3).sum()

    loss().backward()
    _check_fd(loss, w)


def test_scale_grad_by_freq_without_grad_is_the_plain_lookup():
    w = nn.Parameter(nd.tensor(table(5, 2)))
    with nd.no_grad():
        y = F.embedding(nd.tensor([1, 1, 3]), w, scale_grad_by_freq=True)
    assert not y.requires_grad
    np.testing.assert_array_equal(arr(y), arr(w)[[1, 1, 3]])


def test_max_norm_and_scale_grad_by_freq_together():
    w0 = table(6, 3)
    emb = nn.Embedding.from_pretrained(nd.tensor(w0), freeze=False, padding_idx=-1, max_norm=1.2,
                                       norm_type=1.0, scale_grad_by_freq=True)
    assert emb.padding_idx == 5 and emb.max_norm == 1.2 and emb.norm_type == 1.0 and emb.scale_grad_by_freq
    idx = np.array([[0, 0, 5], [2, 0, 5]])
    y = emb(nd.tensor(idx))
    want_w = np_renorm(w0, idx, 1.2, 1.0)
    np.testing.assert_allclose(arr(emb.weight), want_w, rtol=1e-12)
    np.testing.assert_array_equal(arr(y), arr(emb.weight)[idx])
    g = RNG.normal(size=(2, 3, 3))
    (y * nd.tensor(g)).sum().backward()
    np.testing.assert_allclose(emb.weight.grad.numpy(), np_freq_grad(idx, g, 6, padding_idx=5), rtol=1e-12)


# ----------------------------------------------------------------- compiled

def _train(compiled, idxs, r, **kw):
    nd.manual_seed(5)
    emb = nn.Embedding(10, 4, dtype=nd.float64, **kw)
    with nd.no_grad():
        emb.weight.mul_(nd.tensor(3.0, dtype=nd.float64))  # most rows over max_norm
    opt = optim.SGD(emb.parameters(), lr=0.3)
    r = nd.tensor(r)

    def step(i):
        opt.zero_grad()
        y = emb(i)
        loss = (y * r).sum() + (y * y).sum() * 0.1
        loss.backward()
        opt.step()
        return loss, y

    if compiled:
        step = nd.function(step)
    out = []
    for i in idxs:
        loss, y = step(nd.tensor(i))
        out.append((loss.item(), arr(y).copy(), arr(emb.weight).copy()))
    return out, (step.trace_count if compiled else None)


@pytest.mark.parametrize("kw", [dict(scale_grad_by_freq=True), dict(max_norm=2.0),
                                dict(max_norm=1.5, norm_type=3.0, scale_grad_by_freq=True, padding_idx=3)])
def test_compiled_step_matches_eager(kw):
    idxs = [RNG.integers(0, 10, (3, 5)) for _ in range(4)]
    idxs[0][0, :3] = 7  # a repeated index
    r = RNG.normal(size=idxs[0].shape + (4,))
    eager, _ = _train(False, idxs, r, **kw)
    graph, traces = _train(True, idxs, r, **kw)
    assert traces == 1  # the counts and the renorm are computed per call, not baked in
    for (le, ye, we), (lg, yg, wg) in zip(eager, graph):
        np.testing.assert_allclose(lg, le, rtol=1e-10)
        np.testing.assert_allclose(yg, ye, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(wg, we, rtol=1e-10, atol=1e-12)


def test_compiled_scale_grad_by_freq_gradient_matches_numpy():
    emb = nn.Embedding(6, 2, scale_grad_by_freq=True, dtype=nd.float64)
    g = RNG.normal(size=(2, 3, 2))

    @nd.function
    def grads(i):
        emb.weight.grad = None
        y = emb(i)
        (y * nd.tensor(g)).sum().backward()
        return y

    for idx in (np.array([[1, 1, 2], [1, 5, 2]]), np.array([[0, 3, 3], [4, 4, 4]])):
        y = grads(nd.tensor(idx))
        np.testing.assert_array_equal(arr(y), arr(emb.weight)[idx])
        np.testing.assert_allclose(emb.weight.grad.numpy(), np_freq_grad(idx, g, 6), rtol=1e-12)
    assert grads.trace_count == 1


def test_compiled_max_norm_needs_a_variable_weight():
    plain = nd.tensor(table(5, 3))  # not a Variable: a trace would bake it in as a constant
    param = nn.Parameter(nd.tensor(table(5, 3)))

    @nd.function
    def on_plain(i):
        return F.embedding(i, plain, max_norm=1.0)

    @nd.function
    def on_computed(i):
        return F.embedding(i, param * 1.0, max_norm=1.0)

    for f in (on_plain, on_computed):
        with pytest.raises(NotImplementedError, match=r"only to a Variable \(an nn.Parameter"):
            f(nd.tensor([0, 1]))
    # eagerly, a plain tensor is renormalized in place as in torch
    w0 = arr(plain).copy()
    F.embedding(nd.tensor([0, 1]), plain, max_norm=1.0)
    np.testing.assert_allclose(arr(plain), np_renorm(w0, [0, 1], 1.0, 2.0), rtol=1e-12)


# ------------------------------------------------------------------- errors

def test_sparse_is_refused_with_a_clear_message():
    msg = r"sparse=True is not supported: ndflow has no sparse tensors.*push_rows"
    with pytest.raises(NotImplementedError, match=msg):
        nn.Embedding(4, 2, sparse=True)
    with pytest.raises(NotImplementedError, match=msg):
        nn.Embedding.from_pretrained(nd.ones(4, 2), sparse=True)
    with pytest.raises(NotImplementedError, match=msg):
        F.embedding(nd.tensor([0]), nd.ones(4, 2), sparse=True)
    assert nn.Embedding(4, 2, sparse=False).sparse is False


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1", True, None])
def test_bad_max_norm_and_norm_type(bad):
    if bad is not None:
        with pytest.raises(ValueError, match="max_norm must be a non-negative number"):
            nn.Embedding(4, 2, max_norm=bad)
        with pytest.raises(ValueError, match="max_norm must be a non-negative number"):
            F.embedding(nd.tensor([0]), nd.ones(4, 2), max_norm=bad)
    if bad is not None and not isinstance(bad, float):
        with pytest.raises(ValueError, match="norm_type must be a number"):
            nn.Embedding(4, 2, max_norm=1.0, norm_type=bad)
    with pytest.raises(ValueError, match="norm_type must be a number"):
        F.embedding(nd.tensor([0]), nd.ones(4, 2), max_norm=1.0, norm_type=float("nan"))


def test_functional_padding_idx_counts_from_the_end_and_repr():
    w = nn.Parameter(nd.tensor(table(5, 2)))
    y = F.embedding(nd.tensor([4, 1]), w, padding_idx=-1)
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy()[4], np.zeros(2))  # row 4 is the padding row, as in torch
    np.testing.assert_array_equal(w.grad.numpy()[1], np.ones(2))
    with pytest.raises(ValueError, match="padding_idx 5 is out of range"):
        F.embedding(nd.tensor([0]), w, padding_idx=5)
    assert repr(nn.Embedding(5, 3)) == "Embedding(5, 3)"
    assert repr(nn.Embedding(5, 3, padding_idx=0, max_norm=1, norm_type=1, scale_grad_by_freq=True)) == \
        "Embedding(5, 3, padding_idx=0, max_norm=1.0, norm_type=1.0, scale_grad_by_freq=True)"


# ------------------------------------------------------------------ helpers

def _check_fd(loss_fn, t, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Central differences of loss_fn() over every entry of t against t.grad."""
    analytic = arr(t.grad).ravel()
    base = arr(t).copy()
    num = []
    for i in range(base.size):
        vals = []
        for sign in (1, -1):
            v = base.ravel().copy()
            v[i] += sign * eps
            with nd.no_grad():
                t.copy_(nd.tensor(v.reshape(base.shape)))
                vals.append(loss_fn().item())
        num.append((vals[0] - vals[1]) / (2 * eps))
    with nd.no_grad():
        t.copy_(nd.tensor(base))
    np.testing.assert_allclose(analytic, np.array(num), rtol=rtol, atol=atol)
