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


# The nn, state/update, composite and collective samples (appended in this order).
from op_samples_nn import *  # noqa: E402,F401,F403
