"""PyTorch-parity padding in ndflow.nn: Conv2d's padding_mode ('reflect',
'replicate', 'circular') and string padding ('same', 'valid'),
nn.functional.pad's 'circular' mode and avg_pool2d's divisor_override,
against NumPy references (np.pad and direct window sums), their gradients
against finite differences, and @nd.function graphs against eager."""
import numpy as np
import pytest

import ndflow as nd
from ndflow import nn
from ndflow.nn import functional as F
from nn_test_util import check_fd as _check_fd, pool_out as _pool_out

NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def rng(seed=0):
    return np.random.default_rng(seed)


def arr(t):
    return t.detach().numpy()


def np_conv2d(x, w, b, stride=(1, 1), dilation=(1, 1), groups=1):
    """Unpadded 2-d cross-correlation in NumPy (pad x beforehand)."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    OH = (H - dh * (KH - 1) - 1) // sh + 1
    OW = (W - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((N, O, OH, OW))
    Og = O // groups
    for o in range(O):
        g = o // Og
        for ki in range(KH):
            for kj in range(KW):
                patch = x[:, g * Cg:(g + 1) * Cg, ki * dh:ki * dh + (OH - 1) * sh + 1:sh,
                          kj * dw:kj * dw + (OW - 1) * sw + 1:sw]
                y[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, ki, kj])
    return y + (0.0 if b is None else b[None, :, None, None])


def same_widths(k, d):
    """'same''s (before, after) padding per axis: the odd unit goes after."""
    total = d * (k - 1)
    return (total // 2, total - total // 2)


def np_pad_nchw(x, widths, mode):
    return np.pad(x, [(0, 0), (0, 0), *widths], mode=NP_MODE[mode])


def copy_weights(dst, src):
    with nd.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)


# ------------------------------------------------------- Conv2d padding_mode

CONV_CASES = [  # (padding, kernel_size, dilation, groups, stride)
    (1, 3, 1, 1, 1),
    ((2, 1), (3, 2), 1, 2, 1),
    (2, 3, 2, 1, 1),
    ((1, 3), 3, (1, 2), 2, 2),
    (0, 2, 1, 1, 1),
    ("same", 3, 1, 1, 1),
    ("same", 4, 1, 2, 1),
    ("same", (2, 5), (2, 1), 1, 1),
    ("valid", 3, 1, 2, 1),
]


def _widths(padding, k, d):
    k = (k, k) if isinstance(k, int) else k
    d = (d, d) if isinstance(d, int) else d
    if padding == "same":
        return [same_widths(k[0], d[0]), same_widths(k[1], d[1])]
    if padding == "valid":
        return [(0, 0), (0, 0)]
    p = (padding, padding) if isinstance(padding, int) else padding
    return [(p[0], p[0]), (p[1], p[1])]


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding,k,d,groups,stride", CONV_CASES)
def test_conv2d_padding_mode_equals_np_pad_then_unpadded_conv(mode, padding, k, d, groups, stride):
    x = rng(1).standard_normal((2, 4, 7, 8))
    m = nn.Conv2d(4, 6, k, stride=stride, padding=padding, dilation=d, groups=groups, padding_mode=mode,
                  dtype=nd.float64)
    plain = nn.Conv2d(4, 6, k, stride=stride, padding=0, dilation=d, groups=groups, dtype=nd.float64)
    copy_weights(plain, m)
    xp = np_pad_nchw(x, _widths(padding, k, d), mode)
    want = arr(plain(nd.tensor(xp)))
    got = arr(m(nd.tensor(x)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # ... and the unpadded convolution itself is NumPy's
    np.testing.assert_allclose(want, np_conv2d(xp, arr(m.weight), arr(m.bias), plain.stride, plain.dilation, groups),
                               rtol=1e-10, atol=1e-10)
    # the fused-ReLU path (nn.Sequential's) pads the same way
    np.testing.assert_allclose(arr(m(nd.tensor(x), activation="relu")), np.maximum(want, 0), rtol=1e-12, atol=1e-12)
    if padding == "same":
        assert got.shape[2:] == x.shape[2:]


@pytest.mark.parametrize("k,d", [(3, 1), (4, 1), ((2, 5), 1), (3, 2), ((4, 3), (2, 3))])
def test_same_padding_keeps_size_and_pads_extra_bottom_right(k, d):
    x = rng(2).standard_normal((2, 3, 6, 9))
    m = nn.Conv2d(3, 5, k, padding="same", dilation=d, dtype=nd.float64)
    y = arr(m(nd.tensor(x)))
    assert y.shape == (2, 5, 6, 9)
    kk, dd = m.kernel_size, m.dilation
    xp = np.pad(x, [(0, 0), (0, 0), same_widths(kk[0], dd[0]), same_widths(kk[1], dd[1])])
    np.testing.assert_allclose(y, np_conv2d(xp, arr(m.weight), arr(m.bias), (1, 1), dd), rtol=1e-10, atol=1e-10)
    # the functional form takes the same strings
    np.testing.assert_allclose(arr(F.conv2d(nd.tensor(x), m.weight, m.bias, 1, "same", d)), y, rtol=1e-12,
                               atol=1e-12)


def test_valid_padding_is_no_padding():
    x = nd.tensor(rng(3).standard_normal((1, 2, 6, 5)))
    m = nn.Conv2d(2, 3, 3, padding="valid", dtype=nd.float64)
    plain = nn.Conv2d(2, 3, 3, dtype=nd.float64)
    copy_weights(plain, m)
    np.testing.assert_array_equal(arr(m(x)), arr(plain(x)))
    np.testing.assert_array_equal(arr(F.conv2d(x, m.weight, m.bias, padding="valid")), arr(plain(x)))
    assert m.padding == "valid" and "padding=valid" in repr(m)


def test_conv2d_padding_errors_and_repr():
    with pytest.raises(ValueError, match=r"padding='same' is not supported for strided convolutions.*stride=\(2, 2\)"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(1, 1, 3, stride=(1, 2), padding="same")
    with pytest.raises(ValueError, match="strided"):
        F.conv2d(nd.zeros(1, 1, 5, 5), nd.zeros(1, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="'same' or 'valid'"):
        nn.Conv2d(1, 1, 3, padding="full")
    with pytest.raises(ValueError, match="'zeros', 'reflect', 'replicate', 'circular'"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")
    m = nn.Conv2d(2, 2, 4, padding="same", padding_mode="circular")
    assert m.padding == "same" and m.padding_mode == "circular"
    assert "padding=same" in repr(m) and "padding_mode=circular" in repr(m)
    assert "padding_mode" not in repr(nn.Conv2d(2, 2, 3, padding=1))
    # reflect needs the padding to be smaller than the input, as in torch
    with pytest.raises(Exception):
        nn.Conv2d(1, 1, 5, padding=3, padding_mode="reflect")(nd.zeros(1, 1, 3, 3))


# ----------------------------------------------------------- F.pad circular

@pytest.mark.parametrize("shape,pad", [
    ((5,), (2, 3)),
    ((5,), (5, 0)),
    ((3, 4), (1, 2)),
    ((3, 4), (0, 4, 3, 1)),
    ((2, 3, 4), (1, 1, 2, 0)),
    ((2, 3, 4), (4, 4, 3, 3, 2, 1)),
    ((2, 3, 4, 5), (2, 1, 0, 3)),
    ((2, 3, 4, 5), (1, 2, 3, 4, 0, 1, 1, 0)),
])
def test_pad_circular_matches_np_wrap(shape, pad):
    x = rng(4).standard_normal(shape)
    widths = [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)][::-1]
    want = np.pad(x, [(0, 0)] * (len(shape) - len(widths)) + widths, mode="wrap")
    np.testing.assert_array_equal(arr(F.pad(nd.tensor(x), pad, mode="circular")), want)


def test_functional_pad_is_the_circular_capable_one():
    assert nn.functional.pad is F.pad and F.pad is not nd.pad
    assert F.pad.__module__ == "ndflow.nn.functional"


def test_pad_circular_negative_widths_crop_then_wrap():
    x = np.arange(12.0).reshape(1, 3, 4)
    # torch: crop first, then wrap the rest
    np.testing.assert_array_equal(arr(F.pad(nd.tensor(x), (-1, 2), mode="circular")),
                                  np.pad(x[..., 1:], [(0, 0), (0, 0), (0, 2)], mode="wrap"))
    np.testing.assert_array_equal(arr(F.pad(nd.tensor(x), (2, -1), mode="circular")),
                                  np.pad(x[..., :3], [(0, 0), (0, 0), (2, 0)], mode="wrap"))


@pytest.mark.parametrize("mode,np_mode", [("constant", "constant"), ("reflect", "reflect"),
                                          ("replicate", "edge")])
def test_pad_other_modes_delegate_to_the_pad_op(mode, np_mode):
    x = rng(5).standard_normal((2, 3, 4, 5))
    want = np.pad(x, [(0, 0), (0, 0), (1, 2), (2, 1)], mode=np_mode)
    np.testing.assert_array_equal(arr(F.pad(nd.tensor(x), (2, 1, 1, 2), mode=mode)), want)
    if mode == "constant":
        np.testing.assert_array_equal(arr(F.pad(nd.tensor(x), (1, 1), value=2.5)),
                                      np.pad(x, [(0, 0)] * 3 + [(1, 1)], constant_values=2.5))


def test_pad_errors():
    x = nd.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="wrap around more than once"):
        F.pad(x, (5, 0), mode="circular")
    with pytest.raises(ValueError, match="wrap around more than once"):
        F.pad(x, (0, 0, 0, 4), mode="circular")
    with pytest.raises(ValueError, match="leave nothing"):
        F.pad(x, (-2, -2), mode="circular")
    with pytest.raises(ValueError, match="pairs"):
        F.pad(x, (1, 1, 1), mode="circular")
    with pytest.raises(ValueError, match="at most one pair per axis"):
        F.pad(x, (1,) * 8, mode="circular")
    with pytest.raises(ValueError, match="'constant', 'reflect', 'replicate', 'circular'"):
        F.pad(x, (1, 1), mode="wrap")
    with pytest.raises(ValueError, match="no fill value"):
        F.pad(x, (1, 1), mode="circular", value=1.0)


# ------------------------------------------------ avg_pool2d divisor_override

def np_window_sums(x, k, s, p, ceil_mode):
    """Sum of the input elements in each pooling window (padding adds 0)."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    N, C, H, W = x.shape
    OH, OW = _pool_out(H, kh, sh, ph, ceil_mode), _pool_out(W, kw, sw, pw, ceil_mode)
    y = np.zeros((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            r0, c0 = i * sh - ph, j * sw - pw
            y[:, :, i, j] = x[:, :, max(r0, 0):max(r0 + kh, 0), max(c0, 0):max(c0 + kw, 0)].sum(axis=(2, 3))
    return y


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 0)), (2, 2, 1), (3, 3, 1),
                                   (3, 1, 1)])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor", [1, 3, 7])
def test_avg_pool2d_divisor_override_is_window_sum_over_divisor(k, s, p, ceil_mode, count_include_pad, divisor):
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    kk = pair(k)
    ss = kk if s is None else pair(s)
    for shape in [(2, 3, 7, 6), (1, 2, 5, 8)]:
        x = rng(6).standard_normal(shape)
        want = np_window_sums(x, kk, ss, pair(p), ceil_mode) / divisor
        got = arr(F.avg_pool2d(nd.tensor(x), k, s, p, ceil_mode, count_include_pad, divisor))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        m = nn.AvgPool2d(k, s, p, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                         divisor_override=divisor)
        np.testing.assert_allclose(arr(m(nd.tensor(x))), want, rtol=1e-12, atol=1e-12)


def test_avg_pool2d_divisor_override_float32_and_errors():
    x = rng(7).standard_normal((1, 2, 5, 5)).astype(np.float32)
    y = F.avg_pool2d(nd.tensor(x), 3, 2, 1, divisor_override=4)
    assert y.dtype == nd.float32
    np.testing.assert_allclose(arr(y), np_window_sums(x.astype(np.float64), (3, 3), (2, 2), (1, 1), False) / 4, rtol=1e-5,
                               atol=1e-6)
    for bad in (0, -2, 2.5, True, "2"):
        with pytest.raises(ValueError, match="divisor_override must be a positive int"):
            F.avg_pool2d(nd.tensor(x), 2, divisor_override=bad)
        with pytest.raises(ValueError, match="divisor_override must be a positive int"):
            nn.AvgPool2d(2, divisor_override=bad)
    assert "divisor_override=3" in repr(nn.AvgPool2d(2, divisor_override=3))
    assert "divisor_override" not in repr(nn.AvgPool2d(2))


# --------------------------------------------------------------- gradients

@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [(1, 2), "same"])
def test_conv2d_padding_mode_gradients_match_finite_differences(mode, padding):
    m = nn.Conv2d(2, 3, (2, 3), padding=padding, dilation=(2, 1), padding_mode=mode, dtype=nd.float64)
    x = nd.tensor(rng(8).standard_normal((2, 2, 5, 6)), requires_grad=True)
    r = nd.tensor(rng(9).standard_normal(tuple(m(x).shape)))

    def loss():
        return nd.sum(m(x) * r)

    loss().backward()
    for t in (x, m.weight, m.bias):
        _check_fd(loss, t)


def test_pad_circular_gradient_matches_finite_differences():
    x = nd.tensor(rng(10).standard_normal((2, 3, 4)), requires_grad=True)
    r = nd.tensor(rng(11).standard_normal((2, 3 + 3 + 2, 4 + 4 + 1)))

    def loss():
        return nd.sum(F.pad(x, (4, 1, 3, 2), mode="circular") * r)

    loss().backward()
    _check_fd(loss, x)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avg_pool2d_divisor_override_gradient_matches_finite_differences(ceil_mode):
    x = nd.tensor(rng(12).standard_normal((1, 2, 6, 5)), requires_grad=True)
    m = nn.AvgPool2d(3, 2, 1, ceil_mode=ceil_mode, divisor_override=5)
    r = nd.tensor(rng(13).standard_normal(tuple(m(x).shape)))

    def loss():
        return nd.sum(m(x) * r)

    loss().backward()
    _check_fd(loss, x)


# -------------------------------------------------------------- graph mode

@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_graph_mode_matches_eager(mode):
    conv = nn.Conv2d(3, 4, 4, padding="same", padding_mode=mode, dtype=nd.float64)
    conv2 = nn.Conv2d(4, 2, 3, padding=(2, 1), padding_mode=mode, dtype=nd.float64)
    pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=4)

    def forward(x):
        y = pool(conv2(nd.relu(conv(x))))
        return y + F.pad(y, (1, 1, 1, 1), mode="circular")[:, :, 1:-1, 2:]

    x = nd.tensor(rng(14).standard_normal((2, 3, 7, 6)))
    want = arr(forward(x))
    compiled = nd.function(forward)
    np.testing.assert_allclose(arr(compiled(x)), want, rtol=1e-12, atol=1e-12)
    x2 = nd.tensor(rng(15).standard_normal((2, 3, 7, 6)))
    np.testing.assert_allclose(arr(compiled(x2)), arr(forward(x2)), rtol=1e-12, atol=1e-12)


def test_graph_mode_training_step_matches_eager():
    """Gradients through the padded paths in a traced training step."""
    def make():
        nd.manual_seed(3)
        return nn.Sequential(nn.Conv2d(2, 3, 3, padding="same", padding_mode="circular", dtype=nd.float64),
                             nn.ReLU(), nn.AvgPool2d(2, divisor_override=3),
                             nn.Conv2d(3, 2, 2, padding="same", padding_mode="reflect", dtype=nd.float64))

    x = nd.tensor(rng(16).standard_normal((2, 2, 6, 6)))
    eager, traced = make(), make()

    def step(model):
        for p in model.parameters():
            p.grad = None
        loss = nd.sum(model(x) ** 2)
        loss.backward()
        return loss

    want = step(eager).item()

    @nd.function
    def traced_step(x_in):
        for p in traced.parameters():
            p.grad = None
        loss = nd.sum(traced(x_in) ** 2)
        loss.backward()
        return loss

    assert abs(traced_step(x).item() - want) <= 1e-10 * max(1.0, abs(want))
    for pe, pt in zip(eager.parameters(), traced.parameters()):
        np.testing.assert_allclose(arr(pt.grad), arr(pe.grad), rtol=1e-10, atol=1e-12)
