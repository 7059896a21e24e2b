"""The per-op samples of tests/python/test_ops.py: inputs, attributes and a
NumPy reference (or a check) for every registered op and for the Python-level
composites, mirroring tests/cpp/samples_*.cc where practical. Inputs are
seeded random values kept away from kinks (relu at 0, ties of max, bounds of
clamp). ``SAMPLES`` lists them; ``add`` appends one.
"""
import math

import numpy as np
import pytest

import ndflow as nd

RNG = np.random.default_rng(20240601)
F64 = np.float64


def rnd(*shape, lo=-1.0, hi=1.0, dtype=F64):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def distinct(*shape, dtype=F64):
    """Values at least 0.05 apart (no ties for max/min/sort-like ops)."""
    n = int(np.prod(shape))
    return (RNG.permutation(n) * 0.1 - n * 0.05 + RNG.uniform(0, 0.05, n)).reshape(shape).astype(dtype)


def away(x, points, margin=0.1):
    """Moves entries of x that are near any of ``points`` by ``margin``."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin)
    return x


def ints(*shape, lo, hi, dtype=np.int64):
    return RNG.integers(lo, hi, size=shape).astype(dtype)


class S:
    """One sample: ``op`` is the registered op (or, for the Python-level
    composites, the ndflow function) it covers. It runs
    ``call(*tensors)`` (default ``getattr(ndflow, op)(*tensors, *args,
    **kw)``) on ``nd.tensor`` copies of ``inputs`` and compares with
    ``ref(*inputs)`` (or runs ``check(out, *inputs)``). ``grad`` lists the
    inputs to gradcheck (True: every float64 input, False: none)."""

    def __init__(self, op, inputs, ref=None, *args, call=None, check=None, grad=True, method=None,
                 atol=1e-9, rtol=1e-7, diff=None, **kw):
        self.op, self.inputs, self.ref, self.args, self.kw = op, list(inputs), ref, args, kw
        self.call, self.check, self.method, self.atol, self.rtol = call, check, method, atol, rtol
        self.diff = diff  # differentiable? (registered ops: from the schema)
        if grad is True:
            grad = [i for i, a in enumerate(self.inputs) if a.dtype == F64]
        self.grad = list(grad or [])

    def run(self, ts):
        if self.call is not None:
            return self.call(*ts)
        return getattr(nd, self.op)(*ts, *self.args, **self.kw)

    def run_method(self, ts):
        if self.method is not None:
            return self.method(*ts)
        return getattr(ts[0], self.op)(*ts[1:], *self.args, **self.kw)


SAMPLES = []


def add(*a, **k):
    SAMPLES.append(S(*a, **k))


# ------------------------------------------------------- NumPy references

_erf = np.vectorize(math.erf)


def np_sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def np_gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def np_gelu_grad(x, g):
    return g * (0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi))


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_cross_entropy(logits, labels, reduction="mean"):
    ax = 0 if logits.ndim == 1 else 1
    lsm = np_log_softmax(logits, ax)
    loss = -np.take_along_axis(lsm, np.expand_dims(labels, ax), ax).squeeze(ax)
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def np_cross_entropy_backward(logits, labels, g, reduction="mean"):
    ax = 0 if logits.ndim == 1 else 1
    onehot = np.moveaxis(np.eye(logits.shape[ax])[labels], -1, ax)
    scale = g / labels.size if reduction == "mean" else g
    if reduction == "none":
        scale = np.expand_dims(scale, ax)
    return (np_softmax(logits, ax) - onehot) * scale


def adjoint(f, x_shape, g):
    """The vector-Jacobian product g·J of a linear NumPy function f."""
    n = int(np.prod(x_shape))
    out = np.zeros(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1
        out[i] = (f(e.reshape(x_shape)) * g).sum()
    return out.reshape(x_shape)


def np_scatter_add(x, axis, index, src):
    out = x.copy()
    idx = list(np.indices(index.shape))
    idx[axis] = index
    np.add.at(out, tuple(idx), src)
    return out


def np_pad(x, pads, mode="constant", value=0.0):
    """``pads``: (before, after) per axis from the first (the op's layout)."""
    widths = [(pads[i], pads[i + 1]) for i in range(0, len(pads), 2)]
    widths += [(0, 0)] * (x.ndim - len(widths))
    if mode == "constant":
        return np.pad(x, widths, constant_values=value)
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


def np_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    og = o // groups
    for gi in range(groups):
        xs = xp[:, gi * cg:(gi + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dilation[0]:i * dilation[0] + stride[0] * (oh - 1) + 1:stride[0],
                           j * dilation[1]:j * dilation[1] + stride[1] * (ow - 1) + 1:stride[1]]
                y[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[gi * og:(gi + 1) * og, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def np_pool2d(x, k, stride, padding, kind, count_include_pad=True):
    n, c, h, w = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=fill)
    ones = np.pad(np.ones((h, w)), ((padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - k[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - k[1]) // stride[1] + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * stride[0]:i * stride[0] + k[0], j * stride[1]:j * stride[1] + k[1]]
            if kind == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                cnt = k[0] * k[1] if count_include_pad else ones[i * stride[0]:i * stride[0] + k[0],
                                                                 j * stride[1]:j * stride[1] + k[1]].sum()
                y[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return y


def np_max_pool2d_backward(x, g, k):
    """g routed to the (first) maximum of each window; stride = k, no padding."""
    dx = np.zeros_like(x)
    n, c, oh, ow = g.shape
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * k[0]:(i + 1) * k[0], j * k[1]:(j + 1) * k[1]].reshape(n, c, -1)
            r, q = np.divmod(win.argmax(-1), k[1])
            for a in range(n):
                for b in range(c):
                    dx[a, b, i * k[0] + r[a, b], j * k[1] + q[a, b]] += g[a, b, i, j]
    return dx


# ------------------------------------------------------------ math samples

X23 = rnd(2, 3, lo=-2, hi=2)
POS23 = rnd(2, 3, lo=0.3, hi=3.0)
for name, ref, x in [
        ("neg", np.negative, X23), ("abs", np.abs, away(X23, [0])), ("exp", np.exp, X23),
        ("log", np.log, POS23), ("log1p", np.log1p, rnd(2, 3, lo=-0.8, hi=2)), ("sqrt", np.sqrt, POS23),
        ("rsqrt", lambda a: 1 / np.sqrt(a), POS23), ("square", np.square, X23), ("sin", np.sin, X23),
        ("cos", np.cos, X23), ("tanh", np.tanh, X23), ("sigmoid", np_sigmoid, X23),
        ("relu", lambda a: np.maximum(a, 0), away(X23, [0])), ("gelu", np_gelu, X23),
        ("softplus", lambda a: np.logaddexp(0, a), X23), ("identity", lambda a: a, X23)]:
    add(name, [x], ref)
# sigmoid/softplus stay finite at extremes (forward only)
EXT = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
add("sigmoid", [EXT], np_sigmoid, grad=False)
add("softplus", [EXT], lambda a: np.logaddexp(0, a), grad=False)
# float32 goes through the vectorized kernels
add("exp", [rnd(3, 5, dtype=np.float32)], np.exp, atol=1e-6, rtol=1e-6)
add("tanh", [rnd(3, 5, dtype=np.float32)], np.tanh, atol=1e-6, rtol=1e-6)
add("neg", [ints(2, 3, lo=-5, hi=5, dtype=np.int32)], np.negative)
add("abs", [ints(2, 3, lo=-5, hi=5)], np.abs)
# no gradient: piecewise constant, or not differentiable by definition
HALVES = np.array([[-1.5, -0.5, 0.5], [1.5, 2.5, -2.7]])
add("sign", [X23], np.sign)
add("floor", [HALVES], np.floor)
add("ceil", [HALVES], np.ceil)
add("round", [HALVES], np.round)  # half to even, as NumPy
add("logical_not", [np.array([[0.5, 0.0], [-1.0, 0.0]])], np.logical_not)
add("logical_not", [np.array([True, False])], np.logical_not)
add("stop_gradient", [X23], lambda a: a)
add("leaky_relu", [away(X23, [0])], lambda a: np.where(a > 0, a, 0.2 * a), 0.2)
add("leaky_relu", [away(X23, [0])], lambda a: np.where(a > 0, a, 0.01 * a))
add("relu_grad", [away(X23, [0]), rnd(2, 3)], lambda a, g: np.where(a > 0, g, 0.0),
    call=lambda x, g: nd.ops.relu_grad(x, g))
add("leaky_relu_grad", [away(X23, [0]), rnd(2, 3)], lambda a, g: np.where(a > 0, g, 0.2 * g),
    call=lambda x, g: nd.ops.leaky_relu_grad(x, g, negative_slope=0.2))
add("gelu_grad", [X23, rnd(2, 3)], np_gelu_grad, call=lambda x, g: nd.ops.gelu_grad(x, g))

# binary ops, broadcasting [2,3]x[3], [2,1]x[1,3] and [4,1,3]x[2,1]
BROADCAST = [((2, 3), (3,)), ((2, 1), (1, 3)), ((4, 1, 3), (2, 1))]
for name, ref in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide),
                  ("pow", np.power), ("maximum", np.maximum), ("minimum", np.minimum)]:
    for sa, sb in BROADCAST:
        if name == "pow":
            a, b = rnd(*sa, lo=0.5, hi=2.0), rnd(*sb, lo=-1.5, hi=2.0)
        elif name == "div":
            a, b = rnd(*sa), away(rnd(*sb, lo=-2, hi=2), [0], 0.3)
        elif name in ("maximum", "minimum"):
            a, b = distinct(*sa), distinct(*sb) + 0.025
        else:
            a, b = rnd(*sa), rnd(*sb)
        add(name, [a, b], ref)
add("add", [ints(3, lo=-5, hi=5, dtype=np.int32), ints(3, lo=-5, hi=5, dtype=np.int32)], np.add)
add("mul", [ints(3, lo=-5, hi=5, dtype=np.int32), np.array([0.5], np.float32)],
    lambda a, b: (a * b).astype(np.float32))
add("div", [np.array([7, -3, 4], np.int32), np.array([2, 2, 8], np.int32)],
    lambda a, b: (a / b).astype(np.float32))  # true division of integers gives float32
add("maximum", [np.array([7, -3, 4], np.int32), np.array([0])], np.maximum)  # i32 with i64 -> i64
add("add", [np.zeros((0, 3)), rnd(3)], np.add)
add("sub", [X23], lambda a: 2.5 - a, call=lambda x: 2.5 - x)

CMP_A = ints(2, 3, lo=-2, hi=3).astype(F64)
CMP_B = ints(3, lo=-2, hi=3).astype(F64)
for name, ref in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                  ("gt", np.greater), ("ge", np.greater_equal)]:
    add(name, [CMP_A, CMP_B], ref)
add("ge", [CMP_A, CMP_B.astype(np.int32)], np.greater_equal)
P = np.array([[True, True], [False, False]])
Q = np.array([True, False])
add("logical_and", [P, Q], np.logical_and)
add("logical_or", [P, Q], np.logical_or)
add("logical_and", [CMP_A, CMP_B], np.logical_and)  # nonzero is true
add("where", [np.array([[True], [False]]), rnd(2, 3), rnd(3)], np.where)
add("where", [rnd(2, 3) > 0, rnd(2, 3), rnd(1)], np.where)
add("clamp", [away(X23, [-1, 1])], lambda a: np.clip(a, -1, 1), call=lambda x: nd.clamp(x, -1.0, 1.0),
    method=lambda x: x.clamp(-1.0, 1.0))
add("clamp", [away(X23, [0.5])], lambda a: np.minimum(a, 0.5), max=0.5)
add("clamp", [away(X23, [0.5])], lambda a: np.maximum(a, 0.5), call=lambda x: nd.clip(x, min=0.5),
    method=lambda x: x.clip(min=0.5))

# ------------------------------------------------------- reductions, linalg

X234 = distinct(2, 3, 4)
for name, ref in [("sum", np.sum), ("prod", np.prod), ("max", np.max), ("min", np.min)]:
    x = rnd(2, 3, 4, lo=0.5, hi=1.5) if name == "prod" else X234
    add(name, [x], lambda a, ref=ref: ref(a, axis=1), axis=1)
    add(name, [x], lambda a, ref=ref: ref(a, axis=(0, 2), keepdims=True), axis=(0, 2), keepdims=True)
    add(name, [x], lambda a, ref=ref: ref(a))
    add(name, [x], lambda a, ref=ref: ref(a, axis=-1, keepdims=True), dim=-1, keepdim=True)
add("sum", [ints(2, 3, lo=-3, hi=3, dtype=np.int32)], lambda a: a.sum(axis=1), axis=1)  # int32 sums in int64
add("sum", [np.array([[True, False], [True, True]])], lambda a: a.sum(axis=0), axis=0)
add("sum", [np.zeros((0, 3))], lambda a: a.sum(axis=0), axis=0)
add("prod", [np.zeros((2, 0))], lambda a: a.prod(axis=1), axis=1)
add("sum", [X234], lambda a: a.sum(axis=(0, 2), keepdims=True),
    call=lambda x: nd.ops.sum(x, axes=[0, 2], keepdims=True), method=lambda x: x.sum((0, 2), True))
for name, ref in [("argmax", np.argmax), ("argmin", np.argmin)]:
    add(name, [X234], lambda a, ref=ref: ref(a, axis=1), axis=1)
    add(name, [X234], lambda a, ref=ref: ref(a, axis=-1, keepdims=True), axis=-1, keepdims=True)
    add(name, [X234], lambda a, ref=ref: np.asarray(ref(a)))
    add(name, [ints(3, 4, lo=0, hi=50, dtype=np.int32)], lambda a, ref=ref: ref(a, axis=0), axis=0)

for sa, sb in [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((2, 1, 2, 3), (3, 3, 2)),
               ((2, 2, 3), (3,)), ((3,), (2, 3, 2))]:
    add("matmul", [rnd(*sa), rnd(*sb)], np.matmul)
add("matmul", [rnd(3, 2), rnd(4, 3)], lambda a, b: a.T @ b.T, call=lambda a, b: a.T @ b.T,
    method=lambda a, b: a.T.matmul(b.T))
add("matmul", [rnd(2, 3, 4, dtype=np.float32), rnd(4, 2, dtype=np.float32)], np.matmul, atol=1e-5, rtol=1e-5)
add("matmul", [np.array([[1, 2], [-1, 0]], np.int32), rnd(2, 2)], np.matmul, grad=[1])
add("matmul", [np.zeros((2, 0)), np.zeros((0, 3))], np.matmul)

# ------------------------------------------------------------- array ops

X34 = rnd(3, 4)
X43 = rnd(4, 3)
add("reshape", [X234], lambda a: a.reshape(4, -1, 2), 4, -1, 2)
add("reshape", [X234], lambda a: a.reshape(6, 4), (6, 4))
add("reshape", [np.array(7.5)], lambda a: a.reshape(1, 1), [1, 1])
add("reshape", [X234.transpose(2, 0, 1)], lambda a: a.transpose(1, 0, 2).reshape(3, 8),
    call=lambda x: x.permute(1, 0, 2).reshape(3, -1), method=lambda x: x.permute(1, 0, 2).reshape(3, -1))
add("permute", [X234], lambda a: a.transpose(2, 0, 1), 2, 0, 1)
add("permute", [X23], lambda a: a.T, (-1, 0))
add("squeeze", [rnd(1, 3, 1)], np.squeeze)
add("squeeze", [rnd(1, 3, 1)], lambda a: a.squeeze(-1), -1)
add("squeeze", [rnd(1, 3, 1)], lambda a: a.squeeze((0, 2)), axis=(0, 2))
add("unsqueeze", [X23], lambda a: a[:, :, None], -1)
add("unsqueeze", [X23], lambda a: a[None], dim=0)
add("expand", [rnd(3, 1)], lambda a: np.broadcast_to(a, (2, 3, 4)), 2, 3, 4)
add("expand", [rnd(3, 1)], lambda a: np.broadcast_to(a, (3, 2)), (-1, 2))
add("broadcast_to", [rnd(3, 1)], lambda a: np.broadcast_to(a, (2, 3, 4)), (2, 3, 4))
add("broadcast_to", [rnd(3)], lambda a: np.broadcast_to(a, (2, 3)), [2, 3])
add("broadcast_like", [rnd(3, 1), rnd(2, 3, 4)], lambda a, b: np.broadcast_to(a, b.shape), grad=[0])
add("broadcast_like", [np.array(4.0), rnd(2, 2)], lambda a, b: np.broadcast_to(a, b.shape), grad=[0])
add("sum_to_like", [rnd(2, 3, 4), rnd(3, 1)], lambda a, b: a.sum(0).sum(-1, keepdims=True), grad=[0])
add("sum_to_like", [rnd(2, 3), np.array(0.0)], lambda a, b: a.sum(), grad=[0])
add("slice", [rnd(4, 5)], lambda a: a[:, 1:-1:2], 1, 1, -1, 2)
add("slice", [rnd(4, 5)], lambda a: a[-3:100], 0, -3, 100)
add("slice", [rnd(4, 5)], lambda a: a[3:1], 0, 3, 1)
add("slice_backward", [rnd(4, 2), rnd(4, 5)],
    lambda g, like: adjoint(lambda a: a[:, 1:-1:2], like.shape, g), grad=[0],
    call=lambda g, like: nd.ops.slice_backward(g, like, axis=1, start=1, stop=-1, step=2))
add("concat", [X23, rnd(2, 1)], lambda a, b: np.concatenate([a, b], -1), call=lambda a, b: nd.concat([a, b], -1))
add("concat", [X23, np.zeros((0, 3)), rnd(1, 3)], lambda *a: np.concatenate(a), call=lambda *t: nd.cat(t))
add("concat", [np.array([1, 2], np.int32), np.array([0.5])], lambda a, b: np.concatenate([a, b]),
    call=lambda a, b: nd.concatenate([a, b], axis=0))
add("concat", [X23, rnd(2, 2)], lambda a, b: np.concatenate([a, b], 1), call=lambda a, b: nd.cat([a, b], dim=1))
IDX = np.array([3, 0, 3])
add("index_select", [X43, IDX], lambda a, i: a[i], call=lambda x, i: nd.index_select(x, 0, i),
    method=lambda x, i: x.index_select(0, i))
add("index_select", [X43, np.array([2, 0], np.int32)], lambda a, i: a[:, i],
    call=lambda x, i: nd.index_select(x, -1, i))
add("index_select", [X43, np.zeros(0, np.int64)], lambda a, i: a[i], call=lambda x, i: nd.index_select(x, 0, i))
add("index_select_backward", [rnd(3, 3), IDX, X43], lambda g, i, like: adjoint(lambda a: a[i], like.shape, g),
    grad=[0], call=lambda g, i, like: nd.ops.index_select_backward(g, i, like, axis=0))
GI = np.array([[0, 3], [1, 1], [2, 0]])
add("gather", [X34, GI], lambda a, i: np.take_along_axis(a, i, 1), call=lambda x, i: nd.gather(x, 1, i),
    method=lambda x, i: x.gather(1, i))
add("gather", [X34, np.array([[2, 0, 1, 2], [0, 0, 2, 1]])], lambda a, i: np.take_along_axis(a, i, 0),
    call=lambda x, i: nd.gather(x, -2, i))
add("scatter_add", [X34, GI, rnd(3, 2)], lambda x, i, s: np_scatter_add(x, 1, i, s),
    call=lambda x, i, s: nd.scatter_add(x, 1, i, s), method=lambda x, i, s: x.scatter_add(1, i, s))
add("scatter_add", [np.zeros(3, np.int64), np.array([2, 2, 0, 2]), np.array([1, 2, 3, 4])],
    lambda x, i, s: np_scatter_add(x, 0, i, s), call=lambda x, i, s: nd.scatter_add(x, 0, i, s))
# pad: torch's spelling in ndflow.pad (last axis first); the op's layout in ndflow.ops.pad
add("pad", [X23], lambda a: np_pad(a, [0, 1, 1, 2], value=0.5), call=lambda x: nd.pad(x, [1, 2, 0, 1], value=0.5))
add("pad", [X23], lambda a: np_pad(a, [1, 1, 2, 2], "reflect"), call=lambda x: nd.pad(x, [2, 2, 1, 1], "reflect"))
add("pad", [X23], lambda a: np_pad(a, [1, 3, 2, 0], "replicate"),
    call=lambda x: nd.pad(x, (2, 0, 1, 3), mode="replicate"))
add("pad", [rnd(2, 1, 2)], lambda a: np_pad(a, [0, 1], value=9.0),
    call=lambda x: nd.ops.pad(x, pads=[0, 1], value=9.0))
add("pad", [np.array([1, 2, 3], np.int32)], lambda a: np_pad(a, [1, 1], "reflect"),
    call=lambda x: nd.pad(x, [1, 1], mode="reflect"))
for mode, pads in [("reflect", [1, 1, 2, 2]), ("replicate", [2, 0, 1, 3]), ("constant", [1, 2, 0, 1])]:
    g_shape = tuple(d + pads[2 * i] + pads[2 * i + 1] for i, d in enumerate((2, 3)))
    add("pad_backward", [rnd(*g_shape), X23],
        lambda g, like, pads=pads, mode=mode: adjoint(lambda a: np_pad(a, pads, mode), like.shape, g),
        grad=[0], call=lambda g, like, pads=pads, mode=mode: nd.ops.pad_backward(g, like, pads=pads, mode=mode))
add("one_hot", [np.array([[0, 2], [1, 2]])], lambda l: np.eye(3, dtype=np.float32)[l], 3)
add("one_hot", [np.array([1, 0], np.int32)], lambda l: np.eye(2, dtype=bool)[l], 2, dtype=nd.bool)
add("one_hot", [np.zeros(0, np.int64)], lambda l: np.zeros((0, 3), np.float32), 3)
add("cast", [X23], lambda a: a, nd.float64)
add("cast", [np.array([-1.5, -0.5, 0, 0.5, 2.7, 300])], lambda a: a.astype(np.int32), nd.int32, grad=False)
add("cast", [np.array([1, 0.1, -2.5])], lambda a: a.astype(np.float32), call=lambda x: x.to(nd.float32), grad=False)
add("cast", [np.array([True, False])], lambda a: a.astype(np.float32), call=lambda x: x.float())
add("cast", [np.array([[0, -7], [256, 1]])], lambda a: a.astype(bool), call=lambda x: x.bool())
add("cast", [np.array([0.1, -3.0])], lambda a: np.array([0.10009765625, -3.0]),
    call=lambda x: x.to(nd.bfloat16).double(), grad=False)  # bf16 rounds to nearest even
add("contiguous", [rnd(3, 2)], lambda a: a.T, call=lambda x: nd.contiguous(x.T), method=lambda x: x.T.contiguous())

# ------------------------------------------------------- creation, random

add("full", [], lambda: np.full((2, 3), 1.5), call=lambda: nd.full((2, 3), 1.5, dtype=nd.float64))
add("full", [], lambda: np.full((2, 2), -7, np.int32), call=lambda: nd.full([2, 2], -7.9, dtype=nd.int32))
add("full", [], lambda: np.full((), -2.25, np.float32), call=lambda: nd.full((), -2.25))
add("full", [], lambda: np.zeros((2, 0, 3), np.float32), call=lambda: nd.zeros(2, 0, 3))
add("full", [], lambda: np.ones((1, 2), bool), call=lambda: nd.ones((1, 2), dtype=nd.bool))
add("full_like", [X23], lambda a: np.full_like(a, 3.0), 3.0)
add("full_like", [np.array([9, 8], np.int32)], lambda a: np.array([3, 3], np.int32), 3)
add("full_like", [X23], lambda a: np.zeros_like(a), call=nd.zeros_like)
add("full_like", [X23], lambda a: np.ones((2, 3), np.float32), call=lambda x: nd.ones_like(x, dtype=nd.float32))
add("arange", [], lambda: np.arange(0, 1, 0.1), call=lambda: nd.arange(0, 1, 0.1, dtype=nd.float64))
add("arange", [], lambda: np.arange(5, -1, -2), call=lambda: nd.arange(5, -1, -2))
add("arange", [], lambda: np.arange(4), call=lambda: nd.arange(4))
add("arange", [], lambda: np.arange(0.5, 2.0, 0.5, dtype=np.float32), call=lambda: nd.arange(0.5, 2.0, 0.5))
add("linspace", [], lambda: np.linspace(-1, 2, 7), call=lambda: nd.linspace(-1, 2, 7, dtype=nd.float64))
add("linspace", [], lambda: np.linspace(0, 1, 4, dtype=np.float32), call=lambda: nd.linspace(0, 1, 4))
add("linspace", [], lambda: np.zeros(0, np.float32), call=lambda: nd.linspace(3, 5, 0))
add("eye", [], lambda: np.eye(3, dtype=np.float32), call=lambda: nd.eye(3))
add("eye", [], lambda: np.eye(2, 4, dtype=np.int32), call=lambda: nd.eye(2, 4, dtype=nd.int32))
add("eye", [], lambda: np.eye(3, 2, dtype=bool), call=lambda: nd.eye(3, 2, dtype=nd.bool))
add("constant", [X23], lambda a: a, call=lambda x: nd.ops.constant(value=x))
add("constant", [np.arange(6, dtype=np.int32).reshape(2, 3)], lambda a: a.T, call=lambda x: nd.ops.constant(value=x.T))


def _uniform_check(lo, hi, dtype, n):
    def check(out):
        a = out.numpy()
        assert out.dtype == dtype and a.shape == (n,)
        assert a.min() >= lo and a.max() < hi
        assert abs(a.mean() - (lo + hi) / 2) < 0.05 * (hi - lo)
    return check


def _normal_check(mean, std, dtype, n):
    def check(out):
        a = out.numpy()
        assert out.dtype == dtype and a.shape == (n,)
        assert abs(a.mean() - mean) < 0.1 * std and abs(a.std() - std) < 0.1 * std
    return check


def _bernoulli_check(p, dtype, n):
    def check(out):
        a = out.numpy()
        assert out.dtype == dtype and a.shape == (n,)
        assert set(np.unique(a).tolist()) <= {0, 1}
        assert abs(a.mean() - p) < 0.05
    return check


def _randint_check(lo, hi, dtype, shape):
    def check(out):
        a = out.numpy()
        assert out.dtype == dtype and a.shape == shape
        if a.size:
            assert a.min() >= lo and a.max() < hi and len(np.unique(a)) == hi - lo
    return check


add("uniform", [], call=lambda: nd.rand(2000), check=_uniform_check(0, 1, nd.float32, 2000))
add("uniform", [], call=lambda: nd.uniform(2000, -2, 3, dtype=nd.float64),
    check=_uniform_check(-2, 3, nd.float64, 2000))
add("uniform", [], call=lambda: nd.ops.uniform(shape=[2000], low=-1.0, high=1.0, seed=5, offset=8),
    check=_uniform_check(-1, 1, nd.float32, 2000))
add("normal", [], call=lambda: nd.randn(4000), check=_normal_check(0, 1, nd.float32, 4000))
add("normal", [], call=lambda: nd.normal(4000, 1.0, 0.5, dtype=nd.float64),
    check=_normal_check(1, 0.5, nd.float64, 4000))
add("bernoulli", [], call=lambda: nd.bernoulli(4000, 0.3), check=_bernoulli_check(0.3, nd.float32, 4000))
add("bernoulli", [], call=lambda: nd.bernoulli(6, 1.0, dtype=nd.bool), check=lambda out: out.numpy().all())
add("randint", [], call=lambda: nd.randint(-5, 5, (1000,)), check=_randint_check(-5, 5, nd.int64, (1000,)))
add("randint", [], call=lambda: nd.randint(7, 8, 4, dtype=nd.uint8), check=_randint_check(7, 8, nd.uint8, (4,)))
add("randint", [], call=lambda: nd.randint(10, size=(0, 3), dtype=nd.int32),
    check=_randint_check(0, 10, nd.int32, (0, 3)))

# ------------------------------------------------------------------- nn

add("softmax", [rnd(2, 3, lo=-3, hi=3)], lambda a: np_softmax(a, -1))
add("softmax", [rnd(3, 4, lo=-3, hi=3)], lambda a: np_softmax(a, 0), 0)
add("softmax", [rnd(2, 3, 4, lo=-3, hi=3)], lambda a: np_softmax(a, 1), dim=1)
add("softmax", [np.array([[1000.0, -1000.0, 999.0]])], lambda a: np_softmax(a, -1), grad=False)
add("softmax", [rnd(2, 3, dtype=np.float32)], lambda a: np_softmax(a, -1).astype(np.float32), atol=1e-7, rtol=1e-5)
add("log_softmax", [rnd(2, 3, lo=-3, hi=3)], lambda a: np_log_softmax(a, -1))
add("log_softmax", [rnd(3, 4, lo=-3, hi=3)], lambda a: np_log_softmax(a, 0), axis=0)
add("log_softmax", [rnd(2, 3, 4, lo=-3, hi=3)], lambda a: np_log_softmax(a, 1), dim=1)
add("log_softmax", [np.array([[1000.0, -1000.0, 999.0]])], lambda a: np_log_softmax(a, -1), grad=False)
Y = np_softmax(rnd(2, 3, 4), 1)
add("softmax_backward", [Y, rnd(2, 3, 4)], lambda y, g: y * (g - (g * y).sum(1, keepdims=True)),
    call=lambda y, g: nd.ops.softmax_backward(y, g, axis=1))
add("log_softmax_backward", [np.log(Y), rnd(2, 3, 4)], lambda y, g: g - np.exp(y) * g.sum(1, keepdims=True),
    call=lambda y, g: nd.ops.log_softmax_backward(y, g, axis=1))
LOGITS = rnd(4, 5, lo=-2, hi=2)
LABELS = np.array([1, 2, 4, 0])
for red in ["mean", "sum", "none"]:
    add("cross_entropy", [LOGITS, LABELS], lambda a, l, red=red: np_cross_entropy(a, l, red), reduction=red)
add("cross_entropy", [rnd(2, 3, 2), np.array([[2, 0], [1, 1]])], lambda a, l: np_cross_entropy(a, l, "none"),
    reduction="none")
add("cross_entropy", [rnd(2, 3, 2), np.array([[2, 0], [1, 1]])], np_cross_entropy)
add("cross_entropy", [rnd(3), np.array(2)], lambda a, l: np_cross_entropy(a, l, "none"), reduction="none")
add("cross_entropy", [rnd(2, 5, dtype=np.float32), np.array([4, 2], np.int32)],
    lambda a, l: np_cross_entropy(a.astype(F64), l).astype(np.float32), atol=1e-6, rtol=1e-6)
for red, g in [("mean", np.array(0.75)), ("sum", np.array(0.75)), ("none", rnd(4))]:
    add("cross_entropy_backward", [LOGITS, LABELS, g],
        lambda a, l, g, red=red: np_cross_entropy_backward(a, l, g, red),
        call=lambda a, l, g, red=red: nd.ops.cross_entropy_backward(a, l, g, reduction=red))
add("cross_entropy_backward", [rnd(2, 3, 2), np.array([[2, 0], [1, 1]]), rnd(2, 2)],
    lambda a, l, g: np_cross_entropy_backward(a, l, g, "none"),
    call=lambda a, l, g: nd.ops.cross_entropy_backward(a, l, g, reduction="none"))

# convolution and pooling (NCHW)
CX = rnd(2, 3, 5, 6)
CW = rnd(4, 3, 3, 2)
CB = rnd(4)
add("conv2d", [CX, CW, CB], lambda x, w, b: np_conv2d(x, w, b), call=lambda x, w, b: nd.conv2d(x, w, b))
add("conv2d", [CX, CW], lambda x, w: np_conv2d(x, w, None, (2, 1), (1, 2), (1, 2)),
    call=lambda x, w: nd.conv2d(x, w, stride=(2, 1), padding=(1, 2), dilation=(1, 2)))
add("conv2d", [rnd(1, 4, 4, 4), rnd(6, 2, 2, 2), rnd(6)], lambda x, w, b: np_conv2d(x, w, b, groups=2),
    call=lambda x, w, b: nd.conv2d(x, w, b, groups=2))
add("conv2d", [CX, CW, CB], lambda x, w, b: np.maximum(np_conv2d(x, w, b, padding=(1, 1)), 0),
    call=lambda x, w, b: nd.ops.conv2d(x, w, b, padding=[1, 1], activation="relu"), grad=False)
add("conv2d", [CX.astype(np.float32), CW.astype(np.float32)],
    lambda x, w: np_conv2d(x.astype(F64), w.astype(F64)).astype(np.float32), atol=1e-5, rtol=1e-5,
    call=lambda x, w: nd.conv2d(x, w))
CGY = rnd(2, 4, 3, 5)  # the output gradient of conv2d(CX, CW) at stride 1, padding 0
add("conv2d_backward_data", [CGY, CW, CX], lambda g, w, like: adjoint(lambda a: np_conv2d(a, w), like.shape, g),
    grad=[0, 1], call=lambda g, w, like: nd.ops.conv2d_backward_data(g, w, like, stride=[1, 1], padding=[0, 0]))
add("conv2d_backward_weight", [CX, CGY], lambda x, g: adjoint(lambda a: np_conv2d(x, a), CW.shape, g),
    call=lambda x, g: nd.ops.conv2d_backward_weight(x, g, kernel_size=[3, 2]))
PX = distinct(2, 2, 5, 6)
add("max_pool2d", [PX], lambda x: np_pool2d(x, (2, 2), (2, 2), (0, 0), "max"),
    call=lambda x: nd.max_pool2d(x, 2))
add("max_pool2d", [PX], lambda x: np_pool2d(x, (3, 2), (1, 2), (1, 1), "max"),
    call=lambda x: nd.max_pool2d(x, (3, 2), stride=(1, 2), padding=1))
add("avg_pool2d", [PX], lambda x: np_pool2d(x, (2, 2), (2, 2), (0, 0), "avg"),
    call=lambda x: nd.avg_pool2d(x, 2))
add("avg_pool2d", [PX], lambda x: np_pool2d(x, (3, 3), (2, 2), (1, 1), "avg", False),
    call=lambda x: nd.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))


def np_max_pool2d_indices(x, k, stride, padding, dilation=(1, 1)):
    """Flat h * W + w of each window's first maximum (padding never wins)."""
    n, c, h, w = x.shape
    span = [dilation[d] * (k[d] - 1) + 1 for d in range(2)]
    oh = (h + 2 * padding[0] - span[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - span[1]) // stride[1] + 1
    out = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride[0] - padding[0], j * stride[1] - padding[1]
            rs = [r0 + a * dilation[0] for a in range(k[0]) if 0 <= r0 + a * dilation[0] < h]
            cs = [c0 + b * dilation[1] for b in range(k[1]) if 0 <= c0 + b * dilation[1] < w]
            cells = [(r, q) for r in rs for q in cs]  # row-major: argmax takes the first maximum
            vals = np.stack([x[:, :, r, q] for r, q in cells], axis=-1)
            best = vals.argmax(-1)
            out[:, :, i, j] = np.array([cells[b][0] * w + cells[b][1] for b in best.ravel()]).reshape(n, c)
    return out


add("max_pool2d_indices", [PX], lambda x: np_max_pool2d_indices(x, (2, 2), (2, 2), (0, 0)), 2)
add("max_pool2d_indices", [PX], lambda x: np_max_pool2d_indices(x, (3, 2), (1, 2), (1, 1)), (3, 2),
    stride=(1, 2), padding=1)
add("max_pool2d_indices", [PX], lambda x: np_max_pool2d_indices(x, (2, 2), (1, 1), (1, 0), (2, 3)), 2,
    stride=1, padding=(1, 0), dilation=(2, 3))
add("max_pool2d", [PX], lambda x: np.take_along_axis(
    x.reshape(2, 2, -1), np_max_pool2d_indices(x, (2, 2), (1, 1), (1, 0), (2, 3)).reshape(2, 2, -1), 2
).reshape(2, 2, 5, 3), 2, stride=1, padding=(1, 0), dilation=(2, 3))
PG = rnd(2, 2, 2, 3)
add("max_pool2d_backward", [PX, PG], lambda x, g: np_max_pool2d_backward(x, g, (2, 2)),
    call=lambda x, g: nd.ops.max_pool2d_backward(x, g, kernel_size=[2, 2]))
add("avg_pool2d_backward", [PX, PG], lambda x, g: adjoint(
    lambda a: np_pool2d(a, (2, 2), (2, 2), (0, 0), "avg"), x.shape, g), grad=[1],
    call=lambda x, g: nd.ops.avg_pool2d_backward(x, g, kernel_size=[2, 2]))

# normalization and embedding (ops/norm.cc)


def np_bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def np_bc(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def np_batch_norm(x, m, v, w=None, b=None, eps=1e-5):
    y = (x - np_bc(m, x)) / np.sqrt(np_bc(v, x) + eps)
    return y if w is None else y * np_bc(w, x) + np_bc(b, x)


def np_bn_stats(x):
    return x.mean(np_bn_axes(x)), x.var(np_bn_axes(x))


def np_bn_backward(g, x, m, v, w, gm=None, gv=None, eps=1e-5, training=True):
    ax, n = np_bn_axes(x), x.size / x.shape[1]
    invstd = 1 / np.sqrt(v + eps)
    xhat = (x - np_bc(m, x)) * np_bc(invstd, x)
    db, dw = g.sum(ax), (g * xhat).sum(ax)
    if not training:
        return g * np_bc(w * invstd, x), dw, db
    dx = np_bc(w * invstd, x) * (g - np_bc(db / n, x) - xhat * np_bc(dw / n, x))
    if gm is not None:
        dx = dx + np_bc(gm / n, x) + np_bc(gv, x) * 2 * (x - np_bc(m, x)) / n
    return dx, dw, db


def np_layer_norm(x, k, w=None, b=None, eps=1e-5):
    ax = tuple(range(x.ndim - k, x.ndim))
    y = (x - x.mean(ax, keepdims=True)) / np.sqrt(x.var(ax, keepdims=True) + eps)
    return y if w is None else y * w + b


def np_layer_norm_backward(g, x, k, w=None, eps=1e-5):
    ax, lead = tuple(range(x.ndim - k, x.ndim)), tuple(range(x.ndim - k))
    xhat = np_layer_norm(x, k, eps=eps)
    rstd = 1 / np.sqrt(x.var(ax, keepdims=True) + eps)
    gw = g if w is None else g * w
    dx = rstd * (gw - gw.mean(ax, keepdims=True) - xhat * (gw * xhat).mean(ax, keepdims=True))
    return dx, (g * xhat).sum(lead), g.sum(lead)


def np_embedding_backward(g, idx, num_rows, pad=-1):
    out = np.zeros((num_rows, g.shape[-1]))
    for i, k in enumerate(idx.reshape(-1)):
        if k != pad:
            out[k] += g.reshape(-1, g.shape[-1])[i]
    return out


BNX, BNW, BNB = rnd(4, 3, 2, 2), rnd(3, lo=0.5, hi=1.5), rnd(3)
BNM, BNV = rnd(3, lo=-0.5, hi=0.5), rnd(3, lo=0.5, hi=2.0)
add("batch_norm", [BNX, BNW, BNB], lambda x, w, b: (np_batch_norm(x, *np_bn_stats(x), w, b), *np_bn_stats(x)),
    call=lambda x, w, b: nd.ops.batch_norm(x, w, b, eps=1e-5))
add("batch_norm", [rnd(5, 3)], lambda x: (np_batch_norm(x, *np_bn_stats(x), eps=1e-3), *np_bn_stats(x)),
    call=lambda x: nd.ops.batch_norm(x, eps=1e-3))
add("batch_norm", [BNX, BNW, BNB], lambda x, w, b: np_batch_norm(x, *np_bn_stats(x), w, b),
    call=lambda x, w, b: nd.batch_norm(x, nd.zeros(3), nd.ones(3), w, b, training=True))
add("batch_norm", [BNX, BNM, BNV, BNW, BNB], lambda x, m, v, w, b: np_batch_norm(x, m, v, w, b),
    call=lambda x, m, v, w, b: nd.batch_norm(x, m, v, w, b, training=False))
add("batch_norm_inference", [rnd(4, 3), BNM, BNV], lambda x, m, v: np_batch_norm(x, m, v, eps=1e-2),
    call=lambda x, m, v: nd.ops.batch_norm_inference(x, m, v, eps=1e-2))
add("batch_norm_inference", [rnd(2, 3, 4), BNM, BNV, BNW, BNB], np_batch_norm,
    call=lambda *a: nd.ops.batch_norm_inference(*a))
BNG = rnd(4, 3, 2, 2)
add("batch_norm_backward", [BNG, BNX, *np_bn_stats(BNX), BNW, rnd(3), rnd(3)],
    lambda g, x, m, v, w, gm, gv: np_bn_backward(g, x, m, v, w, gm, gv),
    call=lambda *a: nd.ops.batch_norm_backward(*a, eps=1e-5, training=True))
add("batch_norm_backward", [BNG, BNX, BNM, BNV, BNW],
    lambda g, x, m, v, w: np_bn_backward(g, x, m, v, w, training=False),
    call=lambda *a: nd.ops.batch_norm_backward(*a, training=False))


def _bn_update(rm, rv, m, v, x):
    nd.ops.batch_norm_update_stats(rm, rv, m, v, x, momentum=0.25)
    return rm, rv


add("batch_norm_update_stats", [BNM, BNV, rnd(3), rnd(3, lo=0, hi=1), BNX],
    lambda rm, rv, m, v, x: (0.75 * rm + 0.25 * m, 0.75 * rv + 0.25 * v * 16 / 15), call=_bn_update)
LNX = rnd(2, 3, 4)
add("layer_norm", [LNX, rnd(4, lo=0.5, hi=1.5), rnd(4)], lambda x, w, b: np_layer_norm(x, 1, w, b),
    call=lambda x, w, b: nd.layer_norm(x, 4, w, b))
add("layer_norm", [LNX], lambda x: np_layer_norm(x, 2, eps=1e-3), call=lambda x: nd.layer_norm(x, (3, 4), eps=1e-3))
add("layer_norm_backward", [rnd(2, 3, 4), LNX, rnd(4, lo=0.5, hi=1.5)],
    lambda g, x, w: np_layer_norm_backward(g, x, 1, w),
    call=lambda g, x, w: nd.ops.layer_norm_backward(g, x, w, normalized_shape=[4]))
add("layer_norm_backward", [rnd(2, 3, 4), LNX], lambda g, x: np_layer_norm_backward(g, x, 2),
    call=lambda g, x: nd.ops.layer_norm_backward(g, x, normalized_shape=[3, 4]))
EMB = rnd(5, 3)
EIDX = np.array([[0, 4, 1], [1, 1, 0]])
add("embedding", [EIDX, EMB], lambda i, w: w[i], grad=[1], call=lambda i, w: nd.embedding(i, w))
add("embedding", [EIDX.astype(np.int32), EMB], lambda i, w: w[i], grad=False,
    call=lambda i, w: nd.embedding(i, w, padding_idx=1))  # the padding row's gradient is 0, not the FD one
add("embedding_backward", [rnd(2, 3, 3), EIDX], lambda g, i: np_embedding_backward(g, i, 5, 1), grad=[0],
    call=lambda g, i: nd.ops.embedding_backward(g, i, num_rows=5, padding_idx=1))

# ------------------------------------------------------- state and updates


def _assigned(fn):
    """Runs an in-place op and returns the tensors it wrote."""
    def call(*ts):
        fn(*ts)
        return ts[0]
    return call


add("assign", [X23, rnd(3)], lambda v, x: np.broadcast_to(x, v.shape), call=_assigned(nd.assign))
add("assign_add", [X23, np.array([1], np.int32)], lambda v, x: v + x, call=_assigned(nd.assign_add))
add("assign_add", [X23], lambda v: v + 0.5, call=_assigned(lambda v: nd.assign_add(v, 0.5)))

# fused_elementwise: programs in kernels/fused_ops.h's format, compared with the unfused expression
FA, FB, FC = rnd(2, 3), rnd(3), rnd(2, 1)
add("fused_elementwise", [FA, FB, FC], lambda a, b, c: np.maximum(a * b + c, 0),
    call=lambda a, b, c: nd.ops.fused_elementwise(a, b, c, ops="mul add relu", args=[0, 1, 3, 2, 4], params=[0.0] * 6))
add("fused_elementwise", [FA], lambda a: np.exp(a) * np.exp(a) - a,
    call=lambda a: nd.ops.fused_elementwise(a, ops="exp mul sub", args=[0, 1, 1, 2, 0], params=[0.0] * 6))
add("fused_elementwise", [rnd(3, 4, lo=-2, hi=2)], lambda x: np.tanh(np.clip(np.where(x > 0, x, 0.2 * x), -0.5, 0.5)),
    call=lambda x: nd.ops.fused_elementwise(x, ops="leaky_relu clamp tanh", args=[0, 1, 2],
                                            params=[0.2, 0, -0.5, 0.5, 0, 0]))


def _opt(name, **attrs):
    """Runs ndflow.ops.<name> (it updates param, its slots and the step
    counter in place) and returns its inputs but the gradient and the
    empty (unused) slots."""
    def call(*ts):
        getattr(nd.ops, name)(*ts, **attrs)
        return tuple(t for i, t in enumerate(ts) if i != 1 and t.numel())  # all but the gradient
    return call


P0, G0, LR = rnd(2, 3), rnd(2, 3), np.array(0.1)
S1, S2, S3 = rnd(2, 3, lo=0, hi=1), rnd(2, 3, lo=0, hi=1), rnd(2, 3, lo=0, hi=1)
STEP0, NONE = np.array(0), np.zeros(0)
add("apply_sgd", [P0, G0, LR], lambda p, g, lr: (p - lr * (g + 0.01 * p), lr),
    call=_opt("apply_sgd", weight_decay=0.01))


def np_momentum(p, g, v, step, lr, mu, damp=0.0, nesterov=False, wd=0.0):
    g = g + wd * p
    buf = g if step == 0 or mu == 0 else mu * v + (1 - damp) * g
    return p - lr * (g + mu * buf if nesterov else buf), buf, step + 1, lr


add("apply_momentum", [P0, G0, S1, STEP0, LR], lambda *a: np_momentum(*a, 0.9),
    call=_opt("apply_momentum", momentum=0.9))
add("apply_momentum", [P0, G0, S1, np.array(4), LR], lambda *a: np_momentum(*a, 0.9, 0.0, True, 0.1),
    call=_opt("apply_momentum", momentum=0.9, nesterov=True, weight_decay=0.1))
add("apply_momentum", [P0, G0, S1, np.array(4), LR], lambda *a: np_momentum(*a, 0.5, 0.3),
    call=_opt("apply_momentum", momentum=0.5, dampening=0.3))


def np_adagrad(p, g, acc, step, lr, eps=1e-10, wd=0.0, lr_decay=0.0):
    g = g + wd * p
    acc = acc + g * g
    clr = lr / (1 + step * lr_decay)
    return p - clr * g / (np.sqrt(acc) + eps), acc, step + 1, lr


add("apply_adagrad", [P0, G0, S1, np.array(3), LR], lambda *a: np_adagrad(*a, 1e-10, 0.1, 0.01),
    call=_opt("apply_adagrad", lr_decay=0.01, weight_decay=0.1))


def np_rmsprop(p, g, sq, buf, ga, lr, alpha=0.99, eps=1e-8, wd=0.0, mu=0.0, centered=False):
    g = g + wd * p
    sq = alpha * sq + (1 - alpha) * g * g
    out = [sq]
    if centered:
        ga = ga + (1 - alpha) * (g - ga)
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if mu > 0:
        buf = mu * buf + g / avg
        p = p - lr * buf
        out.append(buf)
    else:
        p = p - lr * g / avg
    if centered:
        out.append(ga)
    return (p, *out, lr)


add("apply_rmsprop", [P0, G0, S1, NONE, NONE, np.array(0.01)], np_rmsprop, call=_opt("apply_rmsprop"))
add("apply_rmsprop", [P0, G0, S1 + 1, S2, S3, np.array(0.01)], lambda *a: np_rmsprop(*a, 0.9, 1e-8, 0.1, 0.9, True),
    call=_opt("apply_rmsprop", alpha=0.9, momentum=0.9, centered=True, weight_decay=0.1))


def np_adam(p, g, m, v, vmax, step, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False, amsgrad=False):
    t = step + 1
    if decoupled:
        p = p * (1 - lr * wd)
    elif wd:
        g = g + wd * p
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    second = np.maximum(v, vmax) if amsgrad else v
    p = p - lr / (1 - b1 ** t) * m / (np.sqrt(second) / np.sqrt(1 - b2 ** t) + eps)
    return (p, m, v) + ((second,) if amsgrad else ()) + (t, lr)


add("apply_adam", [P0, G0, S1, S2, NONE, STEP0, np.array(1e-3)], np_adam, call=_opt("apply_adam"))
add("apply_adam", [P0, G0, S1, S2, S3, np.array(2.0), np.array(1e-3)],
    lambda *a: np_adam(*a, 0.8, 0.99, 1e-8, 0.01, True, True),
    call=_opt("apply_adam", beta1=0.8, beta2=0.99, amsgrad=True, decoupled_weight_decay=True, weight_decay=0.01))

# --------------------------------------- Python-level composites (not registered)

add("mean", [X234], lambda a: a.mean(axis=(0, 2)), axis=(0, 2), diff=True)
add("mean", [X234], lambda a: a.mean(), diff=True)
add("var", [X234], lambda a: a.var(axis=1, ddof=1), axis=1, diff=True)
add("var", [X234], lambda a: a.var(axis=-1, keepdims=True), dim=-1, keepdim=True, unbiased=False, diff=True)
add("std", [X234], lambda a: a.std(ddof=1), diff=True)
add("std", [X234], lambda a: a.std(axis=0, ddof=0), axis=0, correction=0, diff=True)
add("logsumexp", [X234], lambda a: np.log(np.exp(a).sum(axis=1)), axis=1, diff=True)
add("silu", [X23], lambda a: a * np_sigmoid(a), diff=True)
add("mse_loss", [X23, rnd(2, 3)], lambda a, b: ((a - b) ** 2).mean(), diff=True)
add("mse_loss", [X23, rnd(2, 3)], lambda a, b: ((a - b) ** 2).sum(), reduction="sum", diff=True)
add("mse_loss", [X23, rnd(2, 3)], lambda a, b: (a - b) ** 2, reduction="none", diff=True,
    method=lambda a, b: nd.mse_loss(a, b, "none"))
add("transpose", [X234], lambda a: a.swapaxes(0, 2), 0, 2, diff=True)
add("transpose", [X23], lambda a: a.T, diff=True)
add("flatten", [X234], lambda a: a.reshape(-1), diff=True)
add("flatten", [rnd(2, 3, 4, 5)], lambda a: a.reshape(2, 12, 5), 1, 2, diff=True)
add("stack", [X23, rnd(2, 3)], lambda a, b: np.stack([a, b], 1), call=lambda a, b: nd.stack([a, b], dim=1), diff=True)
add("split", [rnd(5, 2)], lambda a: tuple(np.split(a, [2, 4])), 2, diff=True)
add("split", [rnd(2, 6)], lambda a: tuple(np.split(a, [1, 4], axis=1)), [1, 3, 2], dim=1, diff=True)
add("chunk", [rnd(2, 6)], lambda a: tuple(np.split(a, 3, axis=1)), 3, dim=1, diff=True)
add("subtract", [X23, rnd(3)], np.subtract, diff=True)
add("multiply", [X23, rnd(3)], np.multiply, diff=True)
add("divide", [X23, away(rnd(3), [0], 0.3)], np.divide, diff=True)
add("true_divide", [X23, np.array(2.0)], np.divide, diff=True)
add("dropout", [X23], lambda a: a, 0.5, training=False, diff=True)
add("randperm", [], call=lambda: nd.randperm(10), check=lambda out: sorted(out.tolist()) == list(range(10)) or
    pytest.fail(f"not a permutation: {out.tolist()}"))
add("zeros", [], lambda: np.zeros((2, 3), np.float32), call=lambda: nd.zeros(2, 3))
add("ones", [], lambda: np.ones((2, 3), np.int32), call=lambda: nd.ones((2, 3), dtype=nd.int32))
add("empty", [], call=lambda: nd.empty(2, 3), check=lambda out: out.shape == (2, 3) or pytest.fail("shape"))
add("tensor", [X23], lambda a: a, call=lambda x: nd.tensor(x.numpy()), grad=False)
add("as_tensor", [X23], lambda a: a.astype(np.float32), call=lambda x: nd.as_tensor(x, nd.float32), grad=False)

# ---------------------------------------- collectives (in a world of one)
# ops/collective.cc: copies here, so the samples check the copy (of strided
# inputs too) and gradcheck each gradient formula at N = 1; the N-rank
# behaviour is tests/dist/test_graph_collectives.py.
add("all_reduce", [X23], lambda a: a, call=lambda x: nd.ops.all_reduce(x, op="sum"))
add("all_reduce", [X23], lambda a: a.T, call=lambda x: nd.ops.all_reduce(x.T, op="mean"))
add("all_reduce_coalesced", [X23, rnd(4)], lambda a, b: (a, b),
    call=lambda a, b: nd.ops.all_reduce_coalesced(a, b, op="mean"))
add("broadcast", [X23], lambda a: a, call=lambda x: nd.ops.broadcast(x, root=0))
add("all_gather", [X23], lambda a: a[None], call=lambda x: nd.ops.all_gather(x))
