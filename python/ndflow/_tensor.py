"""Methods and operators of ndflow.Tensor, installed on the C++ class.

Operators follow PyTorch (a Python number takes the tensor's dtype when that
is floating), indexing follows NumPy basic and advanced indexing (reads;
writes where PyTorch allows them), and a tensor that is being traced refuses
to give up a value (``bool()``, ``item()``, ``numpy()``) with a TracingError.
"""
import numbers

import numpy as np

from . import _C, _ops
from ._C import Tensor, TracingError

_py_slice = slice


def _require_eager(t, what):
    if t.is_symbolic:
        raise TracingError(
            f"{what} needs a value, but this tensor is symbolic: the function is being traced into a "
            "graph, where values exist only when it runs. Python control flow on tensor values cannot "
            "be traced: compute both branches and select with ndflow.where(cond, a, b), or move the "
            "decision outside the @ndflow.function.")


# ------------------------------------------------------------------ indexing

def _index_tensor(idx):
    """An integer index array (list, NumPy, Tensor) as an i64 tensor."""
    if isinstance(idx, Tensor):
        return idx
    a = np.asarray(idx)
    if a.dtype == np.bool_:
        return _ops.tensor(a)
    if a.dtype.kind not in "iu":
        raise IndexError(f"tensors can be indexed with integer or boolean arrays, not {a.dtype}")
    return _ops.tensor(a.astype(np.int64))


def _mask_to_indices(mask, what):
    _require_eager(mask, what)
    return np.nonzero(mask.numpy())


def _expand_key(t, key):
    if not isinstance(key, tuple):
        key = (key,)
    # Boolean masks spanning several axes become one integer array per axis.
    out = []
    for k in key:
        if isinstance(k, (Tensor, np.ndarray, list)) and not isinstance(k, Tensor) and \
                np.asarray(k).dtype == np.bool_:
            out.extend(np.nonzero(np.asarray(k)))
        elif isinstance(k, Tensor) and k.dtype == _C.dtype.bool:
            out.extend(_mask_to_indices(k, "indexing with a boolean mask"))
        else:
            out.append(k)
    key = tuple(out)
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > t.ndim:
        raise IndexError(f"too many indices for tensor of dimension {t.ndim} (shape {t.shape})")
    if n_ellipsis:
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (_py_slice(None),) * (t.ndim - used) + key[i + 1:]
    else:
        key = key + (_py_slice(None),) * (t.ndim - used)
    return key


def _getitem(self, key):
    key = _expand_key(self, key)
    x = self
    axis = 0
    advanced = []  # (axis in x, index tensor)
    for k in key:
        if k is None:
            x = _C.unsqueeze(x, axis)
            axis += 1
        elif isinstance(k, _py_slice):
            start, stop, step = k.start, k.stop, k.step
            step = 1 if step is None else int(step)
            if step <= 0:
                raise ValueError(f"slice step must be positive, got {step} (negative steps are not supported)")
            n = x.shape[axis]
            start = 0 if start is None else int(start)
            stop = n if stop is None else int(stop)
            if not (start == 0 and stop >= n and step == 1):
                x = _C.slice(x, axis, start, stop, step)
            axis += 1
        elif isinstance(k, (numbers.Integral, np.integer)) and not isinstance(k, bool):
            n = x.shape[axis]
            i = int(k)
            if i < -n or i >= n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            i %= n
            x = _C.squeeze(_C.slice(x, axis, i, i + 1, 1), [axis])
        elif isinstance(k, (Tensor, np.ndarray, list, tuple)):
            advanced.append((axis, _index_tensor(k)))
            axis += 1
        else:
            raise IndexError(f"only integers, slices, None, Ellipsis and integer or boolean arrays are valid "
                             f"indices, got {type(k).__name__}")
    if not advanced:
        return x
    if len(advanced) == 1:
        ax, idx = advanced[0]
        flat = _C.reshape(idx, [-1]) if idx.ndim != 1 else idx
        y = _C.index_select(x, ax, flat)
        if idx.ndim != 1:
            shape = list(y.shape[:ax]) + list(idx.shape) + list(y.shape[ax + 1:])
            y = _C.reshape(y, shape)
        return y
    # Several index arrays: NumPy broadcasts them together and puts the result
    # first when the indexed axes are not adjacent; combine them into one flat
    # index over the indexed axes.
    axes = [a for a, _ in advanced]
    idx_np = [i.numpy() if not i.is_symbolic else None for _, i in advanced]
    if any(i is None for i in idx_np):
        raise TracingError("indexing with several index arrays needs their values; trace with one index array")
    b = np.broadcast_arrays(*idx_np)
    dims = [x.shape[a] for a in axes]
    for arr, d in zip(b, dims):
        if arr.size and (arr.min() < -d or arr.max() >= d):
            raise IndexError(f"index out of bounds for an axis of size {d}")
    b = [np.where(arr < 0, arr + d, arr) for arr, d in zip(b, dims)]
    lin = np.ravel_multi_index(tuple(b), dims).astype(np.int64)
    contiguous_axes = axes == list(range(axes[0], axes[0] + len(axes)))
    rest = [a for a in range(x.ndim) if a not in axes]
    front = axes[0] if contiguous_axes else 0
    order = rest[:front] + axes + rest[front:]
    xp = _C.permute(x, order) if order != list(range(x.ndim)) else x
    merged_shape = list(xp.shape[:front]) + [int(np.prod(dims))] + list(xp.shape[front + len(axes):])
    xm = _C.reshape(xp, merged_shape)
    y = _C.index_select(xm, front, _ops.tensor(lin.reshape(-1)))
    return _C.reshape(y, list(y.shape[:front]) + list(lin.shape) + list(y.shape[front + 1:]))


def _setitem(self, key, value):
    _require_eager(self, "assigning into a tensor")
    if self.requires_grad and self.is_leaf and _C.is_grad_enabled():
        raise RuntimeError("a leaf tensor that requires grad cannot be written in place; "
                           "wrap the write in `with ndflow.no_grad():`")
    keys = key if isinstance(key, tuple) else (key,)
    basic = all(k is None or k is Ellipsis or isinstance(k, (_py_slice, numbers.Integral)) for k in keys)
    if basic:
        view = _getitem(self, key)
        view.copy_(_ops._as_tensor(value, self))
        return
    # Advanced indices: write through NumPy, then mark the tensor changed.
    if isinstance(value, Tensor):
        value = value.numpy()
    arr = self.numpy()
    np_key = tuple(k.numpy() if isinstance(k, Tensor) else k for k in keys)
    arr[np_key] = value
    self.add_(_C.zeros_like(self))  # bumps the version counter (autograd's staleness check)


# --------------------------------------------------------------- operators

def _binop(fn, reflected=False):
    if reflected:
        return lambda self, other: fn(other, self)
    return lambda self, other: fn(self, other)


def _bool(self):
    _require_eager(self, "bool(tensor)")
    if self.numel() != 1:
        raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous; "
                           "use .any() or .all()")
    return bool(self.item())


def _repr(self):
    if self.is_symbolic:
        return f"Tensor(<symbolic>, shape={list(self.shape)}, dtype={self.dtype!r})"
    body = self._str()
    return body + (", requires_grad=True" if self.requires_grad else "")


def _size(self, dim=None):
    return self.shape if dim is None else self.shape[dim]


def _iter(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    for i in range(self.shape[0]):
        yield self[i]


def _len(self):
    if self.ndim == 0:
        raise TypeError("len() of a 0-d tensor")
    return self.shape[0]


def _any(self, axis=None, keepdims=False):
    return _ops.max(_C.cast(self, _C.dtype.bool).to(_C.dtype.uint8), axis, keepdims).to(_C.dtype.bool)


def _all(self, axis=None, keepdims=False):
    return _ops.min(_C.cast(self, _C.dtype.bool).to(_C.dtype.uint8), axis, keepdims).to(_C.dtype.bool)


def _view(self, *shape):
    return _ops.reshape(self, *shape)


def _array(self, dtype=None, copy=None):
    a = self.detach().numpy()
    return a if dtype is None else a.astype(dtype)


def _install():
    T = Tensor
    o = _ops
    T.__add__, T.__radd__ = _binop(o.add), _binop(o.add, True)
    T.__sub__, T.__rsub__ = _binop(o.sub), _binop(o.sub, True)
    T.__mul__, T.__rmul__ = _binop(o.mul), _binop(o.mul, True)
    T.__truediv__, T.__rtruediv__ = _binop(o.div), _binop(o.div, True)
    T.__pow__, T.__rpow__ = _binop(o.pow), _binop(o.pow, True)
    T.__matmul__, T.__rmatmul__ = _binop(o.matmul), _binop(o.matmul, True)
    T.__eq__, T.__ne__ = _binop(o.eq), _binop(o.ne)
    T.__lt__, T.__le__, T.__gt__, T.__ge__ = _binop(o.lt), _binop(o.le), _binop(o.gt), _binop(o.ge)
    T.__and__, T.__or__ = _binop(o.logical_and), _binop(o.logical_or)
    T.__invert__ = lambda self: o.logical_not(self)
    T.__neg__ = lambda self: o.neg(self)
    T.__pos__ = lambda self: self
    T.__abs__ = lambda self: o.abs(self)
    T.__hash__ = object.__hash__
    T.__bool__ = _bool
    T.__float__ = lambda self: (_require_eager(self, "float(tensor)"), float(self.item()))[1]
    T.__int__ = lambda self: (_require_eager(self, "int(tensor)"), int(self.item()))[1]
    T.__index__ = lambda self: (_require_eager(self, "using a tensor as an index"), int(self.item()))[1]
    T.__getitem__ = _getitem
    T.__setitem__ = _setitem
    T.__len__ = _len
    T.__iter__ = _iter
    T.__repr__ = T.__str__ = _repr
    T.__array__ = _array
    T.__iadd__ = lambda self, other: self.add_(o._as_tensor(other, self)) if not self.is_symbolic else o.add(self, other)
    T.__isub__ = lambda self, other: self.add_(o._as_tensor(other, self), -1.0) if not self.is_symbolic else o.sub(self, other)
    T.__imul__ = lambda self, other: self.mul_(o._as_tensor(other, self)) if not self.is_symbolic else o.mul(self, other)

    T.T = property(lambda self: _C.permute(self, list(range(self.ndim))[::-1]))
    T.mT = property(lambda self: _C.transpose(self, -2, -1))
    T.size = _size
    T.dim = lambda self: self.ndim
    T.any = _any
    T.all = _all
    T.view = _view
    T.reshape = lambda self, *shape: o.reshape(self, *shape)
    T.float = lambda self: self.to(_C.dtype.float32)
    T.double = lambda self: self.to(_C.dtype.float64)
    T.half = lambda self: self.to(_C.dtype.float16)
    T.long = lambda self: self.to(_C.dtype.int64)
    T.int = lambda self: self.to(_C.dtype.int32)
    T.bool = lambda self: self.to(_C.dtype.bool)
    T.tolist = lambda self: (_require_eager(self, "Tensor.tolist()"), self.detach().numpy().tolist())[1]
    T.requires_grad_ = lambda self, r=True: (setattr(self, "requires_grad", r), self)[1]
    T.zero_grad = lambda self: setattr(self, "grad", None)
    for name in ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "logsumexp",
                 "transpose", "permute", "squeeze", "unsqueeze", "expand", "flatten", "exp", "log", "log1p",
                 "sqrt", "rsqrt", "square", "sin", "cos", "tanh", "sigmoid", "relu", "abs", "neg", "sign",
                 "floor", "ceil", "round", "clamp", "clip", "matmul", "softmax", "log_softmax", "pow",
                 "maximum", "minimum", "split", "chunk", "gather", "index_select", "broadcast_to", "add",
                 "sub", "mul", "div", "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "gelu", "silu"]:
        setattr(T, name, getattr(o, name))


_install()
