"""nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d against NumPy loops; nn.LSTM and
nn.LSTMCell against a NumPy implementation of the same equations, their
gradients against finite differences, and eager training == @nd.function
training for small CNN and LSTM models."""
import math

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn
from ndflow.nn import functional as F
from nn_test_util import check_eager_training_equals_compiled, check_fd as _check_fd, pool_out as _pool_out

F64 = np.float64


def rng(seed=0):
    return np.random.default_rng(seed)


def arr(t):
    return t.detach().numpy()


# ------------------------------------------------------------ NumPy oracles

def np_conv2d(x, w, b, stride, padding, dilation, groups):
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((N, O, OH, OW), x.dtype)
    Og = O // groups
    for n in range(N):
        for o in range(O):
            g = o // Og
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0
                    for c in range(Cg):
                        for ki in range(KH):
                            for kj in range(KW):
                                acc += xp[n, g * Cg + c, i * sh + ki * dh, j * sw + kj * dw] * w[o, c, ki, kj]
                    y[n, o, i, j] = acc + (0.0 if b is None else b[o])
    return y


def np_pool2d(x, k, s, p, ceil_mode, kind, count_include_pad=True):
    N, C, H, W = x.shape
    OH, OW = _pool_out(H, k[0], s[0], p[0], ceil_mode), _pool_out(W, k[1], s[1], p[1], ceil_mode)
    y = np.zeros((N, C, OH, OW), x.dtype)
    for i in range(OH):
        for j in range(OW):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])  # window clipped to the padded input
            hs, ws = max(h0, 0), max(w0, 0)
            he, we = min(h1, H), min(w1, W)
            win = x[:, :, hs:he, ws:we]
            if kind == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                count = (h1 - h0) * (w1 - w0) if count_include_pad else (he - hs) * (we - ws)
                y[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return y


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_lstm(x, params, num_layers, hidden, h0=None, c0=None, bidirectional=False):
    """x [T, B, in] (time-major); params: the module's state dict as arrays."""
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    hs, cs = [], []
    inp = x
    for k in range(num_layers):
        outs = []
        for d, suffix in enumerate(["", "_reverse"][:D]):
            wi, wh = params[f"weight_ih_l{k}{suffix}"], params[f"weight_hh_l{k}{suffix}"]
            bi = params.get(f"bias_ih_l{k}{suffix}", 0.0)
            bh = params.get(f"bias_hh_l{k}{suffix}", 0.0)
            j = k * D + d
            h = np.zeros((B, hidden)) if h0 is None else h0[j]
            c = np.zeros((B, hidden)) if c0 is None else c0[j]
            out = np.zeros((T, B, hidden))
            for t in (range(T - 1, -1, -1) if d else range(T)):
                z = inp[t] @ wi.T + bi + h @ wh.T + bh
                i, f, g, o = (z[:, q * hidden:(q + 1) * hidden] for q in range(4))
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
                out[t] = h
            outs.append(out)
            hs.append(h)
            cs.append(c)
        inp = np.concatenate(outs, axis=2)
    return inp, np.stack(hs), np.stack(cs)


# ---------------------------------------------------------------- Conv2d

@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    dict(groups=2, padding=1, bias=False),
])
def test_conv2d_matches_numpy(kw):
    m = nn.Conv2d(4, 6, (3, 2), dtype=nd.float64, **kw)
    x = rng(1).standard_normal((2, 4, 7, 6))
    y = m(nd.tensor(x))
    stride = m.stride
    ref = np_conv2d(x, arr(m.weight), None if m.bias is None else arr(m.bias), stride, m.padding, m.dilation,
                    m.groups)
    assert y.shape == ref.shape
    np.testing.assert_allclose(arr(y), ref, rtol=1e-12, atol=1e-12)
    # the functional form, and fused ReLU
    np.testing.assert_allclose(arr(F.conv2d(nd.tensor(x), m.weight, m.bias, stride, m.padding, m.dilation,
                                            m.groups)), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(m(nd.tensor(x), activation="relu")), np.maximum(ref, 0), rtol=1e-12,
                               atol=1e-12)


def test_conv2d_float32_and_shapes():
    m = nn.Conv2d(1, 8, 3)
    assert tuple(m.weight.shape) == (8, 1, 3, 3) and tuple(m.bias.shape) == (8,)
    assert m.weight.dtype == nd.float32 and m.weight.requires_grad
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    x = rng(2).standard_normal((3, 1, 28, 28)).astype(np.float32)
    y = m(nd.tensor(x))
    assert tuple(y.shape) == (3, 8, 26, 26)
    ref = np_conv2d(x[:1].astype(F64), arr(m.weight).astype(F64), arr(m.bias).astype(F64), (1, 1), (0, 0),
                    (1, 1), 1)
    np.testing.assert_allclose(arr(y)[:1], ref, rtol=1e-5, atol=1e-5)
    assert "Conv2d(1, 8, kernel_size=(3, 3)" in repr(m)
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, groups=2)


def test_conv2d_default_init_is_torch_kaiming_uniform():
    nd.manual_seed(3)
    m = nn.Conv2d(16, 64, 3)
    fan_in = 16 * 9
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform with a = sqrt(5): gain sqrt(1/3) * sqrt(3/fan_in)
    w, b = arr(m.weight), arr(m.bias)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert np.abs(b).max() <= bound and np.abs(b).std() > 0
    g = nn.Conv2d(8, 4, (2, 3), groups=4)
    assert tuple(g.weight.shape) == (4, 2, 2, 3)
    assert np.abs(arr(g.bias)).max() <= 1 / math.sqrt(2 * 6)


def test_conv2d_gradients_match_finite_differences():
    m = nn.Conv2d(2, 3, 2, stride=(1, 2), padding=1, dtype=nd.float64)
    x = nd.tensor(rng(4).standard_normal((2, 2, 4, 5)), requires_grad=True)
    r = rng(5).standard_normal(tuple(m(x).shape))

    def loss():
        return nd.sum(nd.relu(m(x)) * nd.tensor(r))

    loss().backward()
    for t in (x, m.weight, m.bias):
        _check_fd(loss, t)


# ---------------------------------------------------------------- pooling

@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k,s,p,ceil", [(2, None, 0, False), (3, 2, 1, False), ((3, 2), (2, 1), (1, 0), True),
                                        (2, 2, 0, True)])
def test_pools_match_numpy(kind, k, s, p, ceil):
    x = rng(6).standard_normal((2, 3, 7, 6))
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    m = cls(k, s, p, ceil_mode=ceil)
    kk = m.kernel_size
    ref = np_pool2d(x, kk, m.stride, m.padding, ceil, kind)
    y = m(nd.tensor(x))
    assert tuple(y.shape) == ref.shape
    np.testing.assert_allclose(arr(y), ref, rtol=1e-12, atol=1e-12)
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    np.testing.assert_allclose(arr(fn(nd.tensor(x), k, s, p, ceil_mode=ceil)), ref, rtol=1e-12, atol=1e-12)
    if kind == "avg":
        m2 = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=False)
        np.testing.assert_allclose(arr(m2(nd.tensor(x))), np_pool2d(x, kk, m.stride, m.padding, ceil, kind, False),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [nn.MaxPool2d, nn.AvgPool2d])
def test_pool_gradients_match_finite_differences(cls):
    x = nd.tensor(rng(7).standard_normal((1, 2, 5, 5)), requires_grad=True)  # ties have probability 0
    m = cls(3, 2, 1)
    r = nd.tensor(rng(8).standard_normal(tuple(m(x).shape)))

    def loss():
        return nd.sum(m(x) * r)

    loss().backward()
    _check_fd(loss, x)


def test_pool_defaults_and_errors():
    m = nn.MaxPool2d(2)
    assert m.stride == (2, 2) and m.padding == (0, 0)
    assert tuple(m(nd.zeros(1, 1, 5, 5)).shape) == (1, 1, 2, 2)
    assert tuple(nn.MaxPool2d(2, ceil_mode=True)(nd.zeros(1, 1, 5, 5)).shape) == (1, 1, 3, 3)
    with pytest.raises(ValueError):
        nn.MaxPool2d(2, padding=2)
    x = nd.randn(1, 2, 6, 6)
    # torch's positional order: (input, kernel_size, stride, padding, dilation, ceil_mode)
    np.testing.assert_array_equal(arr(F.max_pool2d(x, 2, 2, 0, 1)), arr(m(x)))
    with pytest.raises(ValueError, match="dilation"):
        F.max_pool2d(x, 2, dilation=0)
    assert "kernel_size=(2, 2)" in repr(m)


# ------------------------------------------------------------------- LSTM

def _np_params(m):
    return {k: arr(v) for k, v in m.state_dict().items()}


def test_lstm_parameters_names_shapes_init():
    nd.manual_seed(1)
    m = nn.LSTM(10, 32, num_layers=2)
    shapes = {k: tuple(v.shape) for k, v in m.named_parameters()}
    assert shapes == {"weight_ih_l0": (128, 10), "weight_hh_l0": (128, 32), "bias_ih_l0": (128,),
                      "bias_hh_l0": (128,), "weight_ih_l1": (128, 32), "weight_hh_l1": (128, 32),
                      "bias_ih_l1": (128,), "bias_hh_l1": (128,)}
    bound = 1 / math.sqrt(32)
    for _, p in m.named_parameters():
        a = arr(p)
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    b = nn.LSTM(3, 4, bidirectional=True, bias=False)
    assert sorted(k for k, _ in b.named_parameters()) == ["weight_hh_l0", "weight_hh_l0_reverse", "weight_ih_l0",
                                                           "weight_ih_l0_reverse"]
    assert repr(m) == "LSTM(10, 32, num_layers=2)"


@pytest.mark.parametrize("cfg", [
    dict(num_layers=1),
    dict(num_layers=2, batch_first=True),
    dict(num_layers=2, state=True),
    dict(num_layers=1, bias=False, batch_first=True, state=True),
    dict(num_layers=2, bidirectional=True, state=True),
    dict(num_layers=1, unbatched=True, state=True),
])
def test_lstm_matches_numpy(cfg):
    cfg = dict(cfg)
    state, unbatched = cfg.pop("state", False), cfg.pop("unbatched", False)
    T, B, I, H = 5, 3, 4, 6
    m = nn.LSTM(I, H, dtype=nd.float64, **cfg)
    g = rng(9)
    x = g.standard_normal((T, B, I))
    D = 2 if cfg.get("bidirectional") else 1
    L = cfg["num_layers"]
    h0, c0 = g.standard_normal((L * D, B, H)), g.standard_normal((L * D, B, H))
    ref_out, ref_h, ref_c = np_lstm(x, _np_params(m), L, H, h0 if state else None, c0 if state else None,
                                    D == 2)
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
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(h), ref_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(c), ref_c, rtol=1e-12, atol=1e-12)


def test_lstm_cell_matches_one_lstm_step():
    cell = nn.LSTMCell(4, 5, dtype=nd.float64)
    lstm = nn.LSTM(4, 5, dtype=nd.float64)
    lstm.load_state_dict({f"{k}_l0": v for k, v in _np_params(cell).items()})
    g = rng(10)
    x, h0, c0 = g.standard_normal((3, 4)), g.standard_normal((3, 5)), g.standard_normal((3, 5))
    h, c = cell(nd.tensor(x), (nd.tensor(h0), nd.tensor(c0)))
    _, (hl, cl) = lstm(nd.tensor(x[None]), (nd.tensor(h0[None]), nd.tensor(c0[None])))
    np.testing.assert_allclose(arr(h), arr(hl)[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(arr(c), arr(cl)[0], rtol=1e-13, atol=1e-13)
    h1, _ = cell(nd.tensor(x))  # no state: zeros
    h2, _ = cell(nd.tensor(x), (nd.zeros(3, 5, dtype=nd.float64), nd.zeros(3, 5, dtype=nd.float64)))
    np.testing.assert_allclose(arr(h1), arr(h2), rtol=1e-14, atol=1e-14)


def test_lstm_errors():
    m = nn.LSTM(4, 5)
    with pytest.raises(ValueError):
        m(nd.zeros(3, 2, 7))
    with pytest.raises(ValueError):
        m(nd.zeros(3, 2, 4), (nd.zeros(2, 2, 5), nd.zeros(2, 2, 5)))
    with pytest.raises(ValueError, match="smaller than hidden_size"):
        nn.LSTM(4, 5, proj_size=5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_gradients_match_finite_differences(bidirectional):
    m = nn.LSTM(3, 2, num_layers=2, batch_first=True, bidirectional=bidirectional, dtype=nd.float64)
    g = rng(11)
    D = 2 if bidirectional else 1
    x = nd.tensor(g.standard_normal((2, 4, 3)), requires_grad=True)
    h0 = nd.tensor(g.standard_normal((2 * D, 2, 2)), requires_grad=True)
    c0 = nd.tensor(g.standard_normal((2 * D, 2, 2)), requires_grad=True)
    ro = nd.tensor(g.standard_normal((2, 4, 2 * D)))
    rh, rc = nd.tensor(g.standard_normal((2 * D, 2, 2))), nd.tensor(g.standard_normal((2 * D, 2, 2)))

    def loss():
        out, (h, c) = m(x, (h0, c0))
        return nd.sum(out * ro) + nd.sum(h * rh) + nd.sum(c * rc)

    loss().backward()
    for t in [x, h0, c0] + list(m.parameters()):
        _check_fd(loss, t, max_entries=12)


# ------------------------------------------------- eager == @nd.function

class SeqNet(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2, batch_first=True, dtype=dtype)
        self.fc = nn.Linear(8, 3, dtype=dtype)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.fc(h[-1])


def _cnn(dtype):
    return nn.Sequential(nn.Conv2d(1, 4, 3, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1, dtype=dtype), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 3, dtype=dtype))


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_eager_training_equals_compiled(kind):
    dt = nd.float64

    def make():
        nd.manual_seed(5)
        return _cnn(dt) if kind == "cnn" else SeqNet(dt)

    g = rng(12)
    shape = (8, 1, 10, 10) if kind == "cnn" else (8, 7, 6)
    batches = [(g.standard_normal(shape), g.integers(0, 3, 8)) for _ in range(4)]
    check_eager_training_equals_compiled(make, batches)


def test_lstm_exported_graph_runs_with_any_batch(tmp_path):
    model = SeqNet(nd.float32)
    model.eval()

    @nd.function
    def classify(x):
        return model(x)

    g = rng(13)
    x = g.standard_normal((4, 7, 6)).astype(np.float32)
    with nd.no_grad():
        ref = arr(classify(nd.tensor(x)))
    path = tmp_path / "lstm.ndf"
    nd.save(classify, path)
    loaded = nd.load(path)
    np.testing.assert_allclose(arr(loaded(nd.tensor(x))), ref, rtol=1e-5, atol=1e-6)
    x9 = g.standard_normal((9, 7, 6)).astype(np.float32)
    with nd.no_grad():
        np.testing.assert_allclose(arr(loaded(nd.tensor(x9))), arr(model(nd.tensor(x9))), rtol=1e-5, atol=1e-6)


def _example(name):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_models_shapes():
    cnn = _example("fashion_mnist").make_model("cnn")
    assert tuple(cnn(nd.zeros(2, 1, 28, 28)).shape) == (2, 10)
    assert tuple(cnn[7].weight.shape) == (128, 64 * 5 * 5)
    seq = _example("sequence_classification").RowLSTM()
    assert tuple(seq(nd.zeros(3, 28, 28)).shape) == (3, 10)


def test_sequential_fuses_conv2d_relu_into_one_op():
    nd.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3)
    seq = nn.Sequential(conv, nn.ReLU(), nn.Flatten())
    x = nd.randn(2, 2, 6, 6)
    want = nd.relu(conv(x)).detach().numpy().reshape(2, -1)
    np.testing.assert_array_equal(seq(x).detach().numpy(), want)

    @nd.function
    def f(x):
        return seq(x)

    np.testing.assert_array_equal(f(x).numpy(), want)
    counts = f.graph.op_counts()
    assert counts.get("conv2d") == 1 and "relu" not in counts
