"""Every registered op through the Python API: forward values against NumPy
and gradients against central finite differences in float64.

The test is driven by the registry (``ndflow._C.op_names()``): a registered
op without a sample in op_samples.py fails ``test_every_registered_op_has_a_sample``, and
a differentiable one without a gradient-checked sample fails
``test_every_differentiable_op_is_gradchecked``. Shapes and attributes mirror
tests/cpp/samples_*.cc where practical; inputs are seeded random values kept
away from kinks (relu at 0, ties of max, bounds of clamp).
"""
import math

import numpy as np
import pytest

import ndflow as nd
from op_samples import *  # noqa: F401,F403  (SAMPLES, S, the inputs and NumPy references)
from op_samples import SAMPLES, S

GRAPH_ONLY = {
    # These exist only inside a graph (a feed and a Variable read); eagerly a
    # tensor is simply the value. tests/python/test_function.py and the C++
    # graph tests cover them.
    "placeholder", "variable",
}
INTERNAL = {
    # Registered ops that are not part of the public ndflow.<op> surface
    # (backward kernels, the fusion pass's op, optimizer updates, graph
    # constants): callable as ndflow.ops.<name>, sampled above through it.
    "relu_grad", "leaky_relu_grad", "gelu_grad", "slice_backward", "index_select_backward", "pad_backward",
    "softmax_backward", "log_softmax_backward", "cross_entropy_backward", "conv2d_backward_data",
    "conv2d_backward_weight", "max_pool2d_backward", "avg_pool2d_backward", "constant", "fused_elementwise",
    "apply_sgd", "apply_momentum", "apply_adagrad", "apply_rmsprop", "apply_adam",
    "batch_norm_inference", "batch_norm_backward", "batch_norm_update_stats", "layer_norm_backward",
    "embedding_backward",
}
# Registered ops that are also torch.Tensor methods (checked with PyTorch 2;
# listed here because CI has no torch). bernoulli is left out on purpose:
# torch's x.bernoulli() draws with probabilities x, ndflow.bernoulli(shape, p)
# has no tensor to be a method of.
TORCH_METHODS = {
    "neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "square", "sin", "cos", "tanh", "sigmoid", "relu",
    "sign", "floor", "ceil", "round", "logical_not", "add", "sub", "mul", "div", "pow", "maximum", "minimum",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "clamp", "sum", "prod", "max", "min",
    "argmax", "argmin", "matmul", "contiguous", "reshape", "permute", "squeeze", "unsqueeze", "expand",
    "broadcast_to", "index_select", "gather", "scatter_add", "softmax", "log_softmax",
    # composites with a torch.Tensor method
    "mean", "var", "std", "logsumexp", "transpose", "flatten", "split", "chunk", "subtract", "multiply",
    "divide", "true_divide",
}

REGISTERED = set(nd._C.op_names())
# Ops whose kernels wait for a peer (send/recv between devices, collectives
# between ranks): they run only in graphs and are tested there
# (tests/python/test_placement.py, tests/dist/).
ASYNCHRONOUS = {n for n in REGISTERED if nd._C.op_schema(n)["asynchronous"]}


def _schema(op):
    return nd._C.op_schema(op) if op in REGISTERED else None


def _differentiable(s):
    sch = _schema(s.op)
    return sch["differentiable"] if sch else bool(s.diff)


def _ids(samples):
    seen = {}
    out = []
    for s in samples:
        seen[s.op] = seen.get(s.op, -1) + 1
        out.append(f"{s.op}-{seen[s.op]}")
    return out


def _tensors(s, requires_grad=()):
    return [nd.tensor(a, requires_grad=i in requires_grad) for i, a in enumerate(s.inputs)]


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _compare(got, want, s, what="output"):
    got, want = _as_list(got), _as_list(want)
    assert len(got) == len(want), f"{s.op}: {len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert isinstance(g, nd.Tensor), f"{s.op}: {what} {i} is {type(g).__name__}, not a Tensor"
        w = np.asarray(w)
        a = np.asarray(g)
        assert a.shape == w.shape, f"{s.op}: {what} {i} has shape {a.shape}, NumPy gives {w.shape}"
        assert a.dtype == w.dtype, f"{s.op}: {what} {i} has dtype {a.dtype}, NumPy gives {w.dtype}"
        np.testing.assert_allclose(a, w, rtol=s.rtol, atol=s.atol, err_msg=f"{s.op}: {what} {i}")


def test_every_registered_op_has_a_sample():
    sampled = {s.op for s in SAMPLES}
    missing = sorted(REGISTERED - sampled - GRAPH_ONLY - ASYNCHRONOUS)
    assert not missing, f"registered ops without a Python sample in tests/python/test_ops.py: {missing}"


def test_skip_list_is_graph_only():
    graph_only = {n for n in REGISTERED if nd._C.op_schema(n)["graph_only"]}
    assert GRAPH_ONLY == graph_only


def test_every_differentiable_op_is_gradchecked():
    missing = sorted(n for n in REGISTERED - GRAPH_ONLY if nd._C.op_schema(n)["differentiable"]
                     and not any(s.op == n and s.grad for s in SAMPLES))
    assert not missing, f"differentiable ops without a gradient-checked sample: {missing}"


def test_every_op_is_callable_by_name():
    """ndflow.ops.<name> for every registered op; ndflow.<name> for the public ones (collectives are
    ndflow.distributed.functional.*; send/recv exist only in partitioned graphs)."""
    for n in REGISTERED:
        assert callable(getattr(nd.ops, n)), n
        assert nd.ops.schema(n)["name"] == n
    missing = sorted(n for n in REGISTERED - GRAPH_ONLY - INTERNAL - ASYNCHRONOUS if not callable(getattr(nd, n, None)))
    assert not missing, f"registered ops without an ndflow.<op> function: {missing}"
    assert INTERNAL <= REGISTERED, f"stale INTERNAL entries: {sorted(INTERNAL - REGISTERED)}"


def test_torch_style_methods_exist():
    missing = sorted(n for n in TORCH_METHODS if not callable(getattr(nd.Tensor, n, None)))
    assert not missing, f"ops PyTorch has as Tensor methods but ndflow.Tensor lacks: {missing}"


@pytest.mark.parametrize("s", SAMPLES, ids=_ids(SAMPLES))
def test_forward_matches_numpy(s):
    out = s.run(_tensors(s))
    if s.check is not None:
        assert s.check(out, *s.inputs) is not False
    if s.ref is not None:
        _compare(out, s.ref(*s.inputs), s)


METHOD_SAMPLES = [s for s in SAMPLES if s.op in TORCH_METHODS and (s.call is None or s.method is not None)]


def test_every_method_is_sampled():
    missing = sorted(TORCH_METHODS - {s.op for s in METHOD_SAMPLES})
    assert not missing, f"no sample calls these as Tensor methods: {missing}"


@pytest.mark.parametrize("s", METHOD_SAMPLES, ids=_ids(METHOD_SAMPLES))
def test_method_matches_function(s):
    want = [np.asarray(o) for o in _as_list(s.run(_tensors(s)))]
    _compare(s.run_method(_tensors(s)), want, s, "method output")


GRAD_SAMPLES = [s for s in SAMPLES if s.grad and _differentiable(s)]


def _weighted_sum(outs, weights):
    total = None
    for o, w in zip(outs, weights):
        if w is None:
            continue
        term = (o * nd.tensor(w)).sum()
        total = term if total is None else total + term
    return total


@pytest.mark.parametrize("k,s", list(enumerate(GRAD_SAMPLES)), ids=_ids(GRAD_SAMPLES))
def test_gradient_matches_finite_differences(k, s):
    """d(sum_j w_j·out_j)/d input against central differences (eps 1e-6), in float64.
    Even samples take the gradient with ndflow.grad, odd ones with .backward()."""
    ts = _tensors(s, requires_grad=s.grad)
    outs = _as_list(s.run(ts))
    rng = np.random.default_rng(k)
    weights = [rng.uniform(-1, 1, o.shape) if o.dtype == nd.float64 else None for o in outs]
    loss = _weighted_sum(outs, weights)
    assert loss is not None and loss.requires_grad, f"{s.op}: no float64 output requires grad"
    xs = [ts[i] for i in s.grad]
    if k % 2 == 0:
        grads = nd.grad(loss, xs)
    else:
        loss.backward()
        grads = [x.grad for x in xs]

    def f(arrays):
        with nd.no_grad():
            return float(np.asarray(_weighted_sum(_as_list(s.run([nd.tensor(a) for a in arrays])), weights)))

    eps = 1e-6
    for i, g in zip(s.grad, grads):
        assert g is not None, f"{s.op}: no gradient for input {i}"
        assert g.shape == ts[i].shape and g.dtype == nd.float64
        arrays = [a.copy() for a in s.inputs]
        x = arrays[i].reshape(-1)  # a view: perturbs arrays[i] in place
        num = np.empty(x.size)
        for j in range(x.size):
            old = x[j]
            x[j] = old + eps
            hi = f(arrays)
            x[j] = old - eps
            lo = f(arrays)
            x[j] = old
            num[j] = (hi - lo) / (2 * eps)
        np.testing.assert_allclose(np.asarray(g).reshape(-1), num, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{s.op}: gradient of input {i}")


def test_dropout_scales_kept_elements_and_routes_gradient():
    x = nd.tensor(rnd(50, 40) + 2.0, requires_grad=True)
    y = nd.dropout(x, 0.25)
    kept = np.asarray(y.detach()) != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(np.asarray(y.detach())[kept], np.asarray(x.detach())[kept] / 0.75)
    (g,) = nd.grad(y.sum(), x)
    np.testing.assert_allclose(np.asarray(g), kept / 0.75)


def test_random_draws_follow_the_seed():
    for draw in [lambda: nd.rand(5), lambda: nd.randn(2, 3, dtype=nd.float64), lambda: nd.randint(0, 100, (7,)),
                 lambda: nd.bernoulli((9,), 0.5), lambda: nd.dropout(nd.ones(8), 0.5), lambda: nd.randperm(6)]:
        nd.manual_seed(123)
        a = draw().numpy().copy()
        b = draw().numpy().copy()
        nd.manual_seed(123)
        np.testing.assert_array_equal(draw().numpy(), a)
        assert not np.array_equal(a, b) or a.size < 2
    g1, g2 = nd.Generator(7), nd.Generator(7)
    np.testing.assert_array_equal(nd.rand(4, generator=g1).numpy(), nd.rand(4, generator=g2).numpy())
    # the stateless registered op: same seed and offset, same numbers
    a = nd.ops.normal(shape=[5], seed=3, offset=0).numpy()
    np.testing.assert_array_equal(nd.ops.normal(shape=[5], seed=3, offset=0).numpy(), a)
    assert not np.array_equal(nd.ops.normal(shape=[5], seed=4, offset=0).numpy(), a)


# ------------------------------------------------------------ bad input

@pytest.mark.parametrize("call,exc,words", [
    (lambda: nd.add(nd.ones(2, 3), nd.ones(4)), ValueError, ["add", "[2,3]", "[4]"]),
    (lambda: nd.ones(2, 3) * nd.ones(2, 2), ValueError, ["mul", "[2,3]", "[2,2]"]),
    (lambda: nd.matmul(nd.ones(2, 3), nd.ones(4, 5)), ValueError, ["matmul", "[2,3]", "[4,5]"]),
    (lambda: nd.ones(2, 3).reshape(4), ValueError, ["reshape", "[2,3]", "[4]"]),
    (lambda: nd.concat([nd.ones(2, 3), nd.ones(3, 2)]), ValueError, ["concat", "[3,2]", "[2,3]"]),
    (lambda: nd.ones(2, 3).squeeze(0), ValueError, ["squeeze", "[2,3]"]),
    (lambda: nd.ones(2, 3).expand(4, 5), ValueError, ["expand"]),
    (lambda: nd.pad(nd.ones(2, 3), [1, 1], mode="bogus"), ValueError, ["pad", "bogus"]),
    (lambda: nd.arange(0, 5, 0), ValueError, ["arange", "step"]),
    (lambda: nd.randint(5, 2), ValueError, ["randint"]),
    (lambda: nd.ops.add(nd.ones(2)), ValueError, ["add", "2 inputs"]),
    (lambda: nd.exp(nd.tensor([1, 2])), TypeError, ["exp", "i64"]),
    (lambda: nd.where(nd.ones(2), nd.ones(2), nd.ones(2)), TypeError, ["where", "bool"]),
    (lambda: nd.cross_entropy(nd.ones(2, 3), nd.tensor([0.5, 1.0])), TypeError, ["cross_entropy", "integer"]),
    (lambda: nd.tensor(np.array(["a"])), TypeError, ["dtype"]),
    (lambda: nd.tensor([1, 2], requires_grad=True), TypeError, ["floating"]),
    (lambda: nd.cast(nd.ones(2), nd.bfloat16).numpy(), TypeError, ["bfloat16"]),
    (lambda: nd.ones(2) + "a", TypeError, []),
    (lambda: nd.ops.sum(nd.ones(2, 3), axes=[1], bogus=2), TypeError, ["sum", "bogus", "axes, keepdims"]),
    (lambda: nd.ops.sum(nd.ones(2, 3), axes=1), TypeError, ["sum", "axes", "list of ints"]),
    (lambda: nd.ops.pad(nd.ones(2, 3), pads=[1, 1], mode=3), TypeError, ["pad", "mode", "str"]),
    (lambda: nd.ops.leaky_relu(nd.ones(2), negative_slope="x"), TypeError, ["leaky_relu", "float"]),
    (lambda: nd.index_select(nd.ones(2, 3), 0, nd.tensor([5])), IndexError, ["index_select", "5", "[2,3]"]),
    (lambda: nd.gather(nd.ones(2, 3), 1, nd.tensor([[5]])), IndexError, ["gather", "5"]),
    (lambda: nd.softmax(nd.ones(2, 3), axis=3), IndexError, ["softmax", "axis 3"]),
    (lambda: nd.sum(nd.ones(2, 3), axis=-3), IndexError, ["sum", "-3"]),
    (lambda: nd.one_hot(nd.tensor([0, 3]), 3), IndexError, ["one_hot", "3"]),
    (lambda: nd.cross_entropy(nd.ones(2, 3), nd.tensor([0, 3])), IndexError, ["cross_entropy", "3"]),
    (lambda: nd.ops.schema("no_such_op"), KeyError, ["no_such_op"]),
    (lambda: nd._C.call_op("no_such_op", [], {}), KeyError, ["no_such_op"]),
    (lambda: nd.ones(2).backward(), ValueError, ["require grad"]),
    (lambda: (nd.ones(2, requires_grad=True) * 2).backward(), ValueError, ["shape [2]"]),
    (lambda: nd.ones(2, 3).item(), ValueError, ["6 elements"]),
    (lambda: bool(nd.ones(2)), RuntimeError, ["ambiguous"]),
])
def test_bad_input_raises_a_python_exception_naming_the_problem(call, exc, words):
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in the message: {msg}"
