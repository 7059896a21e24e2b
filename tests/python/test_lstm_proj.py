"""nn.LSTM(proj_size=P), LSTM with projections (Sak et al. 2014) as
torch.nn.LSTM: parameters (names, order, shapes, init), outputs and final
states against a NumPy implementation of the equations, gradients against
finite differences, eager == @nd.function, and the argument/shape errors."""
import math

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn
from nn_test_util import check_eager_training_equals_compiled, check_fd

F64 = nd.float64


def rng(seed=0):
    return np.random.default_rng(seed)


def arr(t):
    return t.detach().numpy()


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_params(m):
    return {k: arr(v) for k, v in m.state_dict().items()}


def np_lstm_proj(x, params, num_layers, hidden, proj, h0=None, c0=None, bidirectional=False):
    """x [T, B, in] (time-major); params: the module's state dict as arrays.
    h_t = W_hr (o * tanh(c_t)) with W_hr [proj, hidden] (proj = 0: no projection).
    Returns output [T, B, D*R], h_n [L*D, B, R], c_n [L*D, B, H]."""
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    R = proj or hidden
    hs, cs = [], []
    inp = x
    for k in range(num_layers):
        outs = []
        for d, suffix in enumerate(["", "_reverse"][:D]):
            wi, wh = params[f"weight_ih_l{k}{suffix}"], params[f"weight_hh_l{k}{suffix}"]
            bi = params.get(f"bias_ih_l{k}{suffix}", 0.0)
            bh = params.get(f"bias_hh_l{k}{suffix}", 0.0)
            wr = params.get(f"weight_hr_l{k}{suffix}")
            assert (wr is None) == (proj == 0)
            j = k * D + d
            h = np.zeros((B, R)) if h0 is None else h0[j]
            c = np.zeros((B, hidden)) if c0 is None else c0[j]
            out = np.zeros((T, B, R))
            for t in (range(T - 1, -1, -1) if d else range(T)):
                z = inp[t] @ wi.T + bi + h @ wh.T + bh
                i, f, g, o = (z[:, q * hidden:(q + 1) * hidden] for q in range(4))
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
                if wr is not None:
                    h = h @ wr.T
                out[t] = h
            outs.append(out)
            hs.append(h)
            cs.append(c)
        inp = np.concatenate(outs, axis=2)
    return inp, np.stack(hs), np.stack(cs)


# ------------------------------------------------------------ parameters

def test_parameter_names_order_shapes_init():
    nd.manual_seed(3)
    I, H, P = 10, 32, 12
    m = nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P)
    assert m.proj_size == P
    got = [(k, tuple(v.shape)) for k, v in m.named_parameters()]
    want = []
    for k in range(2):
        for suffix in ("", "_reverse"):
            want += [(f"weight_ih_l{k}{suffix}", (4 * H, I if k == 0 else 2 * P)),
                     (f"weight_hh_l{k}{suffix}", (4 * H, P)),
                     (f"bias_ih_l{k}{suffix}", (4 * H,)),
                     (f"bias_hh_l{k}{suffix}", (4 * H,)),
                     (f"weight_hr_l{k}{suffix}", (P, H))]
    assert got == want  # names, shapes and torch's registration order
    assert list(m.state_dict().keys()) == [k for k, _ in want]
    bound = 1 / math.sqrt(H)  # every parameter, W_hr included, U(-1/sqrt(H), 1/sqrt(H))
    for name, p in m.named_parameters():
        a = arr(p)
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.8 * bound, name
    assert repr(m) == "LSTM(10, 32, proj_size=12, num_layers=2, bidirectional=True)"

    nb = nn.LSTM(3, 4, proj_size=2, bias=False)
    assert [(k, tuple(v.shape)) for k, v in nb.named_parameters()] == [
        ("weight_ih_l0", (16, 3)), ("weight_hh_l0", (16, 2)), ("weight_hr_l0", (2, 4))]
    assert repr(nb) == "LSTM(3, 4, proj_size=2, bias=False)"
    # proj_size=0 is the plain LSTM: no weight_hr, no proj_size in the repr
    plain = nn.LSTM(3, 4, proj_size=0)
    assert plain.proj_size == 0
    assert not any("weight_hr" in k for k, _ in plain.named_parameters())
    assert repr(plain) == "LSTM(3, 4)"


def test_state_dict_round_trip():
    a = nn.LSTM(4, 6, num_layers=2, proj_size=3, dtype=F64)
    b = nn.LSTM(4, 6, num_layers=2, proj_size=3, dtype=F64)
    b.load_state_dict(a.state_dict())
    x = nd.tensor(rng(1).standard_normal((5, 2, 4)))
    (oa, (ha, ca)), (ob, (hb, cb)) = a(x), b(x)
    np.testing.assert_array_equal(arr(oa), arr(ob))
    np.testing.assert_array_equal(arr(ha), arr(hb))
    np.testing.assert_array_equal(arr(ca), arr(cb))


# ------------------------------------------------------------ forward

@pytest.mark.parametrize("cfg", [
    dict(num_layers=1),
    dict(num_layers=1, state=True),
    dict(num_layers=2),
    dict(num_layers=2, state=True),
    dict(num_layers=1, bidirectional=True, state=True),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, bidirectional=True, state=True),
    dict(num_layers=2, batch_first=True, state=True),
    dict(num_layers=2, batch_first=True, bidirectional=True, state=True),
    dict(num_layers=1, bias=False, batch_first=True, state=True),
    dict(num_layers=1, unbatched=True, state=True),
    dict(num_layers=2, bidirectional=True, unbatched=True, state=True),
    dict(num_layers=2, bidirectional=True, unbatched=True),
    dict(num_layers=2, batch_first=True, unbatched=True, state=True),
    dict(num_layers=2, proj_size=1, bidirectional=True, state=True),
])
def test_matches_numpy(cfg):
    cfg = dict(cfg)
    state, unbatched = cfg.pop("state", False), cfg.pop("unbatched", False)
    P = cfg.pop("proj_size", 3)
    T, B, I, H = 5, 3, 4, 6
    nd.manual_seed(7)
    m = nn.LSTM(I, H, proj_size=P, dtype=F64, **cfg)
    g = rng(9)
    x = g.standard_normal((T, B, I))
    D = 2 if cfg.get("bidirectional") else 1
    L = cfg["num_layers"]
    h0, c0 = g.standard_normal((L * D, B, P)), g.standard_normal((L * D, B, H))
    ref_out, ref_h, ref_c = np_lstm_proj(x, np_params(m), L, H, P, h0 if state else None,
                                         c0 if state else None, D == 2)
    assert ref_out.shape == (T, B, D * P) and ref_h.shape == (L * D, B, P) and ref_c.shape == (L * D, B, H)
    if unbatched:
        xin, hx = x[:, 0], (nd.tensor(h0[:, 0]), nd.tensor(c0[:, 0]))
        ref_out, ref_h, ref_c = ref_out[:, 0], ref_h[:, 0], ref_c[:, 0]
    else:
        xin = x.transpose(1, 0, 2) if cfg.get("batch_first") else x
        hx = (nd.tensor(h0), nd.tensor(c0))
    out, (h, c) = m(nd.tensor(np.ascontiguousarray(xin)), hx if state else None)
    out = arr(out)
    if cfg.get("batch_first") and not unbatched:
        out = out.transpose(1, 0, 2)
    assert out.shape == ref_out.shape
    assert tuple(h.shape) == ref_h.shape and tuple(c.shape) == ref_c.shape
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(h), ref_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(c), ref_c, rtol=1e-12, atol=1e-12)


def test_float32_shapes():
    m = nn.LSTM(5, 8, num_layers=2, batch_first=True, bidirectional=True, proj_size=3)
    out, (h, c) = m(nd.randn(4, 7, 5))
    assert tuple(out.shape) == (4, 7, 6)
    assert tuple(h.shape) == (4, 4, 3) and tuple(c.shape) == (4, 4, 8)
    assert out.dtype == nd.float32


def test_dropout():
    T, B, I, H, P = 6, 4, 3, 8, 5
    nd.manual_seed(2)
    m = nn.LSTM(I, H, num_layers=2, proj_size=P, dropout=0.5, dtype=F64)
    x_np = rng(4).standard_normal((T, B, I))
    x = nd.tensor(x_np)
    ref_out, ref_h, ref_c = np_lstm_proj(x_np, np_params(m), 2, H, P)
    m.eval()  # no dropout in eval mode: the reference
    out, (h, c) = m(x)
    np.testing.assert_allclose(arr(out), ref_out, rtol=1e-12, atol=1e-12)
    m.train()
    out_t, (h_t, c_t) = m(x)
    assert tuple(out_t.shape) == (T, B, P) and tuple(h_t.shape) == (2, B, P) and tuple(c_t.shape) == (2, B, H)
    # the first layer's output is not dropped: its final states match eval mode
    np.testing.assert_allclose(arr(h_t)[0], ref_h[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(c_t)[0], ref_c[0], rtol=1e-12, atol=1e-12)
    # ... while the second layer sees dropped inputs
    assert not np.allclose(arr(out_t), ref_out)
    # gradients flow through dropout
    (out_t * out_t).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and np.isfinite(arr(p.grad)).all(), name
    # a one-layer LSTM never applies dropout (it is between layers)
    one = nn.LSTM(I, H, proj_size=P, dropout=0.5, dtype=F64)
    o1, _ = one(x)
    one.eval()
    o2, _ = one(x)
    np.testing.assert_array_equal(arr(o1), arr(o2))


# ------------------------------------------------------------ gradients

@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_match_finite_differences(bidirectional):
    nd.manual_seed(11)
    L, T, B, I, H, P = 2, 4, 2, 3, 3, 2
    D = 2 if bidirectional else 1
    m = nn.LSTM(I, H, num_layers=L, batch_first=True, bidirectional=bidirectional, proj_size=P, dtype=F64)
    g = rng(11)
    x = nd.tensor(g.standard_normal((B, T, I)), requires_grad=True)
    h0 = nd.tensor(g.standard_normal((L * D, B, P)), requires_grad=True)
    c0 = nd.tensor(g.standard_normal((L * D, B, H)), requires_grad=True)
    ro = nd.tensor(g.standard_normal((B, T, D * P)))
    rh, rc = nd.tensor(g.standard_normal((L * D, B, P))), nd.tensor(g.standard_normal((L * D, B, H)))

    def loss():
        out, (h, c) = m(x, (h0, c0))
        return nd.sum(out * ro) + nd.sum(h * rh) + nd.sum(c * rc)

    loss().backward()
    params = list(m.parameters())
    assert sum(1 for n, _ in m.named_parameters() if "weight_hr" in n) == L * D
    for t in [x, h0, c0] + params:
        check_fd(loss, t, max_entries=12)


def test_gradients_unbatched_no_state():
    nd.manual_seed(12)
    m = nn.LSTM(2, 4, proj_size=3, dtype=F64)
    g = rng(12)
    x = nd.tensor(g.standard_normal((3, 2)), requires_grad=True)
    ro = nd.tensor(g.standard_normal((3, 3)))

    def loss():
        out, (h, c) = m(x)
        return nd.sum(out * ro) + nd.sum(h) + nd.sum(c * c)

    loss().backward()
    for t in [x] + list(m.parameters()):
        check_fd(loss, t, max_entries=12)


# ------------------------------------------------- eager == @nd.function

def test_forward_eager_equals_compiled():
    nd.manual_seed(6)
    m = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True, proj_size=3, dtype=F64)
    g = rng(6)
    x = nd.tensor(g.standard_normal((2, 5, 4)))
    h0, c0 = nd.tensor(g.standard_normal((4, 2, 3))), nd.tensor(g.standard_normal((4, 2, 6)))

    @nd.function
    def f(x, h0, c0):
        out, (h, c) = m(x, (h0, c0))
        return out, h, c

    with nd.no_grad():
        eo, (eh, ec) = m(x, (h0, c0))
        co, ch, cc = f(x, h0, c0)
    for a, b in ((eo, co), (eh, ch), (ec, cc)):
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(arr(a), arr(b), rtol=1e-12, atol=1e-12)


class ProjSeqNet(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2, batch_first=True, bidirectional=True, proj_size=4, dtype=dtype)
        self.fc = nn.Linear(2 * 4, 3, dtype=dtype)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.fc(out[:, -1] + out[:, 0])  # the last step of both directions


def test_training_eager_equals_compiled():
    def make():
        nd.manual_seed(5)
        return ProjSeqNet(F64)

    g = rng(12)
    batches = [(g.standard_normal((8, 7, 6)), g.integers(0, 3, 8)) for _ in range(4)]
    trained = check_eager_training_equals_compiled(make, batches)  # every parameter trained, W_hr included
    assert any("weight_hr" in k for k in trained)


# ------------------------------------------------------------ errors

def test_constructor_errors():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(4, 5, proj_size=5)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(4, 5, proj_size=9)
    with pytest.raises(ValueError, match="proj_size should be a positive integer or zero"):
        nn.LSTM(4, 5, proj_size=-1)


def test_initial_state_shape_errors():
    m = nn.LSTM(4, 5, num_layers=2, proj_size=2)
    x = nd.zeros(3, 2, 4)
    # h_0 sized by hidden_size instead of proj_size
    with pytest.raises(ValueError, match=r"h_0 must have shape \[2, 2, 2\].*proj_size.*got \[2, 2, 5\]"):
        m(x, (nd.zeros(2, 2, 5), nd.zeros(2, 2, 5)))
    # c_0 sized by proj_size instead of hidden_size
    with pytest.raises(ValueError, match=r"c_0 must have shape \[2, 2, 5\].*hidden_size.*got \[2, 2, 2\]"):
        m(x, (nd.zeros(2, 2, 2), nd.zeros(2, 2, 2)))
    # wrong number of layers / batch
    with pytest.raises(ValueError, match=r"h_0 must have shape \[2, 2, 2\]"):
        m(x, (nd.zeros(1, 2, 2), nd.zeros(2, 2, 5)))
    with pytest.raises(ValueError, match=r"c_0 must have shape \[2, 2, 5\]"):
        m(x, (nd.zeros(2, 2, 2), nd.zeros(2, 3, 5)))
    # unbatched: states without the batch dim
    with pytest.raises(ValueError, match=r"h_0 must have shape \[2, 2\]"):
        m(nd.zeros(3, 4), (nd.zeros(2, 1, 2), nd.zeros(2, 1, 5)))
    out, (h, c) = m(nd.zeros(3, 4), (nd.zeros(2, 2), nd.zeros(2, 5)))
    assert tuple(out.shape) == (3, 2) and tuple(h.shape) == (2, 2) and tuple(c.shape) == (2, 5)
    # a correct state works
    out, (h, c) = m(x, (nd.zeros(2, 2, 2), nd.zeros(2, 2, 5)))
    assert tuple(out.shape) == (3, 2, 2)
    # the layer-1 input is D * proj_size wide; the module input is still input_size
    with pytest.raises(ValueError):
        m(nd.zeros(3, 2, 2))
