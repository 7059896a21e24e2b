"""The op API as Python functions: PyTorch/NumPy spellings over ndflow._C.

Every function here is a thin adapter: Python numbers become 0-d tensors of
the right dtype, axis arguments accept ``axis=``/``dim=`` and ints or tuples,
shapes accept ``f(2, 3)`` and ``f((2, 3))``. The math is in C++ (ops/).
"""
import numbers

import numpy as np

from . import _C
from ._C import Tensor, dtype
from ._embedding import (_EmbeddingNoGrad, _embedding_check_max_norm, _embedding_count_dtype,
                         _embedding_counts, _embedding_renorm_)

__all__ = []  # filled by _export


def _export(fn):
    __all__.append(fn.__name__)
    return fn


# ----------------------------------------------------------------- helpers

def _is_scalar(x):
    return isinstance(x, (numbers.Number, np.number, np.bool_)) and not isinstance(x, Tensor)


def _as_tensor(x, like=None):
    """Tensor as is; a Python number as a 0-d tensor matching ``like``."""
    if isinstance(x, Tensor):
        return x
    if _is_scalar(x):
        if like is not None:
            if isinstance(x, (bool, np.bool_)) and like.dtype == dtype.bool:
                return _C.scalar(float(x), dtype.bool)
            if isinstance(x, (float, np.floating)) and not like.dtype.is_floating_point:
                return _C.scalar(float(x), dtype.float32)  # int tensor + 2.0 is float32, as in PyTorch
            return _C.scalar_like(float(x), like)
        if isinstance(x, (bool, np.bool_)):
            return _C.scalar(float(x), dtype.bool)
        if isinstance(x, numbers.Integral):
            return _C.scalar(float(x), dtype.int64)
        return _C.scalar(float(x), dtype.float32)
    if isinstance(x, (list, tuple, np.ndarray)):
        return tensor(x)
    raise TypeError(f"expected a Tensor or a number, got {type(x).__name__}")


def _pair(a, b):
    if isinstance(a, Tensor):
        return a, _as_tensor(b, a)
    if isinstance(b, Tensor):
        return _as_tensor(a, b), b
    return _as_tensor(a), _as_tensor(b)


def _axes(axis):
    if axis is None:
        return []
    if isinstance(axis, (list, tuple)):
        return [int(a) for a in axis]
    return [int(axis)]


def _axis_arg(axis, dim, default=None):
    if axis is not None and dim is not None:
        raise TypeError("pass either axis= or dim=, not both")
    return dim if axis is None and dim is not None else (axis if axis is not None else default)


def _shape_args(shape):
    """f(2, 3), f((2, 3)) and f([2, 3]) all mean the shape (2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        return [int(s) for s in shape[0]]
    return [int(s) for s in shape]


_NP_TO_DT = {np.dtype(np.float32): dtype.float32, np.dtype(np.float64): dtype.float64,
             np.dtype(np.float16): dtype.float16, np.dtype(np.int32): dtype.int32,
             np.dtype(np.int64): dtype.int64, np.dtype(np.uint8): dtype.uint8, np.dtype(np.bool_): dtype.bool}


def _np_dtype_for(d):
    return np.dtype(_C.numpy_dtype(d))


# ---------------------------------------------------------------- creation

@_export
def tensor(data, dtype=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (array, nested lists, number,
    Tensor). NumPy arrays keep their dtype; Python floats give float32, ints
    int64 and bools bool, as in PyTorch."""
    if isinstance(data, Tensor):
        t = data.detach().clone()
    else:
        if isinstance(data, np.ndarray):
            a = data
        else:
            a = np.asarray(data)
            if a.dtype == np.float64 and not isinstance(data, np.generic):
                # Python floats give float32 (PyTorch's default), converted
                # once: straight to the requested dtype when there is one.
                a = a.astype(_np_dtype_for(dtype) if dtype is not None and dtype != _C.dtype.bfloat16
                             else np.float32)
        if a.dtype not in _NP_TO_DT:
            if a.dtype.kind == "f":
                a = a.astype(np.float32)
            elif a.dtype.kind in "iu":
                a = a.astype(np.int64)
            else:
                raise TypeError(f"ndflow.tensor: unsupported data of dtype {a.dtype}")
        t = _C.from_numpy(np.array(a, copy=True, order="C"))
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if requires_grad:
        t.requires_grad = True
    return t


@_export
def as_tensor(data, dtype=None):
    """Shares memory with a NumPy array or Tensor when possible, else copies."""
    if isinstance(data, Tensor):
        return data if dtype is None or data.dtype == dtype else data.to(dtype)
    if isinstance(data, np.ndarray) and data.dtype in _NP_TO_DT:
        t = _C.from_numpy(data)
        return t if dtype is None or t.dtype == dtype else t.to(dtype)
    return tensor(data, dtype)


@_export
def zeros(*shape, dtype=dtype.float32, requires_grad=False):
    t = _C.zeros(_shape_args(shape), dtype)
    t.requires_grad = requires_grad
    return t


@_export
def ones(*shape, dtype=dtype.float32, requires_grad=False):
    t = _C.ones(_shape_args(shape), dtype)
    t.requires_grad = requires_grad
    return t


@_export
def full(shape, fill_value, dtype=dtype.float32):
    return _C.full(_shape_args((shape,)), float(fill_value), dtype)


@_export
def empty(*shape, dtype=dtype.float32):
    return _C.zeros(_shape_args(shape), dtype)


@_export
def zeros_like(x, dtype=None):
    t = _C.zeros_like(x)
    return t if dtype is None else t.to(dtype)


@_export
def ones_like(x, dtype=None):
    t = _C.ones_like(x)
    return t if dtype is None else t.to(dtype)


@_export
def full_like(x, fill_value):
    return _C.full_like(x, float(fill_value))


@_export
def arange(start, end=None, step=1, dtype=None):
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = _C.dtype.int64 if ints else _C.dtype.float32
    return _C.arange(float(start), float(end), float(step), dtype)


@_export
def linspace(start, end, steps, dtype=dtype.float32):
    return _C.linspace(float(start), float(end), int(steps), dtype)


@_export
def eye(n, m=None, dtype=dtype.float32):
    return _C.eye(int(n), None if m is None else int(m), dtype)


# ------------------------------------------------------------------ random

@_export
def manual_seed(seed):
    """Seeds the default generator (eager draws and traced graphs alike)."""
    _C.manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)


@_export
def rand(*shape, dtype=dtype.float32, generator=None):
    return _C.uniform(_shape_args(shape), 0.0, 1.0, dtype, generator)


@_export
def randn(*shape, dtype=dtype.float32, generator=None):
    return _C.normal(_shape_args(shape), 0.0, 1.0, dtype, generator)


@_export
def uniform(shape, low=0.0, high=1.0, dtype=dtype.float32, generator=None):
    return _C.uniform(_shape_args((shape,)), float(low), float(high), dtype, generator)


@_export
def normal(shape, mean=0.0, std=1.0, dtype=dtype.float32, generator=None):
    return _C.normal(_shape_args((shape,)), float(mean), float(std), dtype, generator)


@_export
def bernoulli(shape, p=0.5, dtype=dtype.float32, generator=None):
    return _C.bernoulli(_shape_args((shape,)), float(p), dtype, generator)


@_export
def randint(low, high=None, size=(), dtype=dtype.int64, generator=None):
    if high is None:
        low, high = 0, low
    return _C.randint(int(low), int(high), _shape_args((size,)), dtype, generator)


@_export
def randperm(n, generator=None):
    """A random permutation of 0..n-1 (argsort of uniform draws)."""
    keys = _C.uniform([int(n)], 0.0, 1.0, dtype.float64, generator).numpy()
    return tensor(np.argsort(keys, kind="stable").astype(np.int64))


# -------------------------------------------------------------- elementwise

def _unary(name):
    f = getattr(_C, name)

    def op(x):
        return f(x)
    op.__name__ = name
    op.__doc__ = f"Elementwise {name} (ops/math.cc)."
    return _export(op)


for _name in ["neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "square", "sin", "cos", "tanh",
              "sigmoid", "relu", "gelu", "silu", "softplus", "sign", "floor", "ceil", "round",
              "logical_not", "identity", "stop_gradient", "contiguous"]:
    globals()[_name] = _unary(_name)


def _binary(name):
    f = getattr(_C, name)

    def op(a, b):
        a, b = _pair(a, b)
        return f(a, b)
    op.__name__ = name
    op.__doc__ = f"Elementwise {name} with broadcasting and type promotion."
    return _export(op)


for _name in ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
              "logical_and", "logical_or"]:
    globals()[_name] = _binary(_name)
subtract, multiply, divide, true_divide = sub, mul, div, div  # noqa: F821
__all__ += ["subtract", "multiply", "divide", "true_divide"]


@_export
def matmul(a, b):
    a, b = _pair(a, b)
    return _C.matmul(a, b)


@_export
def sum_to_like(x, like):
    """Sums ``x`` over the axes that broadcasting ``like`` to x's shape added."""
    return _C.sum_to_like(x, like)


@_export
def broadcast_like(x, like):
    return _C.broadcast_like(x, like)


@_export
def leaky_relu(x, negative_slope=0.01):
    return _C.leaky_relu(x, float(negative_slope))


@_export
def where(cond, a, b):
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = _as_tensor(a)
    a, b = _pair(a, b)
    return _C.where(cond, a, b)


@_export
def clamp(x, min=None, max=None):
    return _C.clamp(x, None if min is None else float(min), None if max is None else float(max))


clip = clamp
__all__.append("clip")


# -------------------------------------------------------------- reductions

def _reduction(name):
    f = getattr(_C, name)

    def op(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        ax = _axis_arg(axis, dim)
        return f(x, _axes(ax), bool(keepdim if keepdim is not None else keepdims))
    op.__name__ = name
    op.__doc__ = f"{name} over ``axis`` (all axes when None)."
    return _export(op)


for _name in ["sum", "mean", "prod", "logsumexp"]:
    globals()[_name] = _reduction(name=_name)


@_export
def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None):  # noqa: A001
    """With one tensor: the maximum over ``axis``; with two: elementwise."""
    if isinstance(axis, Tensor):
        return maximum(x, axis)
    ax = _axis_arg(axis, dim)
    return _C.max(x, _axes(ax), bool(keepdim if keepdim is not None else keepdims))


@_export
def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None):  # noqa: A001
    if isinstance(axis, Tensor):
        return minimum(x, axis)
    ax = _axis_arg(axis, dim)
    return _C.min(x, _axes(ax), bool(keepdim if keepdim is not None else keepdims))


@_export
def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    ax = _axis_arg(axis, dim)
    return _C.argmax(x, None if ax is None else int(ax), bool(keepdim if keepdim is not None else keepdims))


@_export
def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    ax = _axis_arg(axis, dim)
    return _C.argmin(x, None if ax is None else int(ax), bool(keepdim if keepdim is not None else keepdims))


@_export
def var(x, axis=None, keepdims=False, correction=1, *, dim=None, keepdim=None, unbiased=None):
    ax = _axis_arg(axis, dim)
    if unbiased is not None:
        correction = 1 if unbiased else 0
    return _C.var(x, _axes(ax), bool(keepdim if keepdim is not None else keepdims), int(correction))


@_export
def std(x, axis=None, keepdims=False, correction=1, *, dim=None, keepdim=None, unbiased=None):
    ax = _axis_arg(axis, dim)
    if unbiased is not None:
        correction = 1 if unbiased else 0
    return _C.std(x, _axes(ax), bool(keepdim if keepdim is not None else keepdims), int(correction))


# ------------------------------------------------------------ shape / array

@_export
def reshape(x, *shape):
    return _C.reshape(x, _shape_args(shape))


@_export
def transpose(x, dim0=-2, dim1=-1):
    return _C.transpose(x, int(dim0), int(dim1))


@_export
def permute(x, *axes):
    return _C.permute(x, _shape_args(axes))


@_export
def squeeze(x, axis=None, *, dim=None):
    return _C.squeeze(x, _axes(_axis_arg(axis, dim)))


@_export
def unsqueeze(x, axis=None, *, dim=None):
    return _C.unsqueeze(x, int(_axis_arg(axis, dim)))


@_export
def expand(x, *shape):
    return _C.expand(x, _shape_args(shape))


@_export
def broadcast_to(x, shape):
    return _C.broadcast_to(x, _shape_args((shape,)))


@_export
def flatten(x, start_dim=0, end_dim=-1):
    return _C.flatten(x, int(start_dim), int(end_dim))


@_export
def concat(tensors, axis=None, *, dim=None):
    return _C.concat(list(tensors), int(_axis_arg(axis, dim, 0)))


cat = concatenate = concat
__all__ += ["cat", "concatenate"]


@_export
def stack(tensors, axis=None, *, dim=None):
    return _C.stack(list(tensors), int(_axis_arg(axis, dim, 0)))


@_export
def split(x, split_size_or_sections, axis=None, *, dim=None):
    """torch.split: an int is the size of each piece (the last may be
    smaller); a list gives the sizes."""
    ax = int(_axis_arg(axis, dim, 0))
    if isinstance(split_size_or_sections, numbers.Integral):
        n = x.shape[ax]
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: the piece size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        return tuple(_C.split(x, sizes, ax))
    return tuple(_C.split(x, [int(s) for s in split_size_or_sections], ax))


@_export
def chunk(x, chunks, axis=None, *, dim=None):
    ax = int(_axis_arg(axis, dim, 0))
    n = x.shape[ax]
    size = -(-n // int(chunks))
    return split(x, size, ax)


@_export
def index_select(x, axis, index):
    return _C.index_select(x, int(axis), _as_tensor(index))


@_export
def gather(x, axis, index):
    return _C.gather(x, int(axis), _as_tensor(index))


@_export
def scatter_add(x, axis, index, src):
    return _C.scatter_add(x, int(axis), _as_tensor(index), _as_tensor(src, x))


@_export
def pad(x, pad, mode="constant", value=0.0):
    """torch.nn.functional.pad spelling: ``pad`` lists (before, after) pairs
    from the LAST axis backwards."""
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]
    widths = [(0, 0)] * (x.ndim - len(pairs)) + list(reversed(pairs))
    return _C.pad(x, widths, mode, float(value))


@_export
def one_hot(labels, num_classes, dtype=dtype.float32):
    return _C.one_hot(labels, int(num_classes), dtype)


@_export
def cast(x, dtype):
    return _C.cast(x, dtype)


@_export
def slice(x, axis, start, stop, step=1):  # noqa: A001
    return _C.slice(x, int(axis), int(start), int(stop), int(step))


# -------------------------------------------------------------- nn & state

@_export
def softmax(x, axis=None, *, dim=None):
    return _C.softmax(x, int(_axis_arg(axis, dim, -1)))


@_export
def log_softmax(x, axis=None, *, dim=None):
    return _C.log_softmax(x, int(_axis_arg(axis, dim, -1)))


@_export
def cross_entropy(logits, labels, reduction="mean"):
    return _C.cross_entropy(logits, labels, reduction)


@_export
def mse_loss(pred, target, reduction="mean"):
    return _C.mse_loss(pred, target, reduction)


@_export
def dropout(x, p=0.5, training=True, generator=None):
    return _C.dropout(x, float(p), bool(training), generator)


@_export
def assign(var, value):
    _C.assign(var, _as_tensor(value, var))


@_export
def assign_add(var, value):
    _C.assign_add(var, _as_tensor(value, var))


# ------------------------------------------------ convolution and pooling
# torch.nn.functional's spellings over the registered ops (ops/conv.cc);
# sizes are an int or an (height, width) pair.

def _pair2(v, name):
    if isinstance(v, numbers.Integral):
        return [int(v), int(v)]
    v = [int(a) for a in v]
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {v}")
    return v


@_export
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d cross-correlation of input [N, C, H, W] with weight [O, C/groups, kh, kw]."""
    inputs = [input, weight] + ([] if bias is None else [bias])
    return _C.call_op("conv2d", inputs, {"stride": _pair2(stride, "stride"), "padding": _pair2(padding, "padding"),
                                         "dilation": _pair2(dilation, "dilation"), "groups": int(groups)})[0]


def _max_pool_attrs(kernel_size, stride, padding, ceil_mode, dilation):
    k = _pair2(kernel_size, "kernel_size")
    return {"kernel_size": k, "stride": k if stride is None else _pair2(stride, "stride"),
            "padding": _pair2(padding, "padding"), "ceil_mode": bool(ceil_mode),
            "dilation": _pair2(dilation, "dilation")}


@_export
def max_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, dilation=1):
    return _C.call_op("max_pool2d", [input], _max_pool_attrs(kernel_size, stride, padding, ceil_mode, dilation))[0]


@_export
def max_pool2d_indices(input, kernel_size, stride=None, padding=0, ceil_mode=False, dilation=1):
    """Where max_pool2d's maxima come from (i64, max_pool2d's output shape):
    per output, the flat index h * W + w of its window's first maximum in
    the input plane, as torch's return_indices gives it."""
    attrs = _max_pool_attrs(kernel_size, stride, padding, ceil_mode, dilation)
    return _C.call_op("max_pool2d_indices", [input], attrs)[0]


@_export
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=0):
    """divisor_override > 0: every window's sum is divided by it instead of the window's size."""
    k = _pair2(kernel_size, "kernel_size")
    s = k if stride is None else _pair2(stride, "stride")
    return _C.call_op("avg_pool2d", [input], {"kernel_size": k, "stride": s, "padding": _pair2(padding, "padding"),
                                              "ceil_mode": bool(ceil_mode),
                                              "count_include_pad": bool(count_include_pad),
                                              "divisor_override": int(divisor_override)})[0]


# ------------------------------------------------ normalization and embedding
# torch.nn.functional's spellings over the registered ops (ops/norm.cc).

@_export
def batch_norm(input, running_mean=None, running_var=None, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Per-channel normalization of input [N, C, *]. training: batch statistics, and running_mean/var
    (Variables) updated in place with ``momentum`` and the unbiased variance; else the running ones."""
    if momentum is None:
        raise NotImplementedError("batch_norm: momentum=None (a cumulative average) is supported by "
                                  "nn.BatchNorm*d, not by the functional form; pass a number")
    return _C.batch_norm(input, weight, bias, running_mean, running_var, bool(training), float(momentum), float(eps))


@_export
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalizes over the trailing dims ``normalized_shape`` (an int or a sequence)."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = [normalized_shape]
    return _C.layer_norm(input, [int(d) for d in normalized_shape], weight, bias, float(eps))


@_export
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of weight [V, D] at the integer indices ``input``: [*input.shape, D], as
    torch.nn.functional.embedding (same arguments, input first).

    padding_idx: that row (negative: counted from the end) gets no gradient.
    max_norm: before the lookup, every row the indices reference whose ``norm_type``-norm (p of the
    p-norm; inf for the largest magnitude) exceeds max_norm is rescaled IN PLACE, outside autograd, to
    norm max_norm (scale max_norm / (norm + 1e-7), as torch.embedding_renorm_); rows not referenced are
    untouched and a repeated index renormalizes its row once. This writes ``weight`` (bumping its
    version, so an op that saved it earlier cannot backpropagate), and costs a pass over the whole
    table. Inside @ndflow.function the weight must then be a Variable (an nn.Parameter).
    scale_grad_by_freq: the weight gradient of each row is divided by how often its index occurs in
    ``input`` (the forward value is unchanged).
    sparse: not supported (ndflow has no sparse tensors): the dense weight gradient is already
    nonzero only in the rows looked up; for sparse row updates use the parameter server's push_rows."""
    if sparse:
        raise NotImplementedError(
            "embedding: sparse=True is not supported: ndflow has no sparse tensors, so it cannot return a "
            "sparse weight gradient. Use sparse=False: the dense gradient is already nonzero only in the rows "
            "looked up (and zero in padding_idx); to send only those rows, use the parameter server's "
            "push_rows (ndflow.distributed.ps).")
    if not isinstance(input, Tensor):
        input = as_tensor(input)
    v = int(weight.shape[0])
    if padding_idx is not None:
        p = int(padding_idx)
        if not -v <= p < v:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {v} embeddings")
        padding_idx = p + v if p < 0 else p
    flat = None
    if max_norm is not None:
        _embedding_check_max_norm(max_norm, norm_type)
        flat = _C.reshape(input, [-1])
        _embedding_renorm_(weight, flat, max_norm, norm_type)
    y = _C.embedding(weight, input, padding_idx)
    if scale_grad_by_freq and _C.is_grad_enabled() and (y.requires_grad or y.is_symbolic):
        # y_s + (y / c - stop(y / c)): the value of y (the difference is exactly 0), the gradient of
        # y / c, where c is how often each position's index occurs in input.
        flat = _C.reshape(input, [-1]) if flat is None else flat
        with _EmbeddingNoGrad():
            ct = _embedding_count_dtype(weight)
            per_pos = _C.index_select(_embedding_counts(flat, v, ct, weight), 0, flat)
            inv = _C.div(_C.ones_like(per_pos), per_pos)
            if inv.dtype != y.dtype:
                inv = _C.cast(inv, y.dtype)
            inv = _C.unsqueeze(_C.reshape(inv, list(input.shape)), -1)
        scaled = _C.mul(y, inv)
        y = _C.add(_C.stop_gradient(y), _C.sub(scaled, _C.stop_gradient(scaled)))
    return y
