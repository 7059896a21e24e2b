"""Methods and operators of ndflow.Tensor, installed on the C++ class.

Operators follow PyTorch (a Python number takes the tensor's dtype when that
is floating; NumPy operands on the left defer to the tensor), indexing
follows NumPy basic and advanced indexing (reads; writes and ``+=`` where
PyTorch allows them, also under autograd), and a tensor that is being traced
refuses to give up a value (``bool()``, ``item()``, ``numpy()``) with a
TracingError.
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

class _Mask:
    """A boolean index (NumPy array) spanning ``arr.ndim`` axes; 0-d for a
    Python/NumPy bool, which adds an axis of length 1 (True) or 0 (False)."""
    __slots__ = ("arr",)

    def __init__(self, arr):
        self.arr = arr


def _index_tensor(idx):
    """An integer index array (list, NumPy, Tensor) as an integer tensor."""
    if isinstance(idx, Tensor):
        if idx.dtype.is_floating_point:
            raise IndexError(f"tensors used as indices must be integer or boolean, got {idx.dtype!r}")
        return idx
    a = np.asarray(idx)
    if a.size == 0:
        a = a.astype(np.int64)  # x[[]] selects nothing, as in NumPy
    if a.dtype.kind not in "iu":
        raise IndexError(f"tensors can be indexed with integer or boolean arrays, not {a.dtype}")
    return _ops.tensor(a.astype(np.int64))


def _normalize_index(idx, n, axis):
    """Negative entries of an index tensor count from the end of the axis."""
    if idx.is_symbolic:
        zero = _C.scalar_like(0.0, idx)
        return _C.where(_C.lt(idx, zero), _C.add(idx, _C.scalar_like(float(n), idx)), idx)
    a = idx.numpy()
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < -n or hi >= n:
            bad = int(lo) if lo < -n else int(hi)
            raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
        if lo < 0:
            return _ops.tensor(np.where(a < 0, a + n, a))
    return idx


def _is_array_key(k):
    return isinstance(k, (Tensor, np.ndarray, list, tuple)) or (isinstance(k, _Mask) and k.arr.ndim > 0)


def _expand_key(t, key):
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if k is None or k is Ellipsis or isinstance(k, _py_slice):
            out.append(k)
        elif isinstance(k, (bool, np.bool_)):
            out.append(_Mask(np.asarray(bool(k))))
        elif isinstance(k, Tensor):
            if k.dtype == _C.dtype.bool:
                _require_eager(k, "indexing with a boolean mask")
                out.append(_Mask(k.numpy()))
            else:
                out.append(k)
        elif isinstance(k, (np.ndarray, list, tuple)) and np.asarray(k).dtype == np.bool_:
            out.append(_Mask(np.asarray(k)))
        else:
            out.append(k)
    key = tuple(out)
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(k.arr.ndim if isinstance(k, _Mask) else 1 for k in key if k is not None and k is not Ellipsis)
    if used > t.ndim:
        raise IndexError(f"too many indices for tensor of dimension {t.ndim} (shape {t.shape})")
    if n_ellipsis:
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (_py_slice(None),) * (t.ndim - used) + key[i + 1:]
    else:
        key = key + (_py_slice(None),) * (t.ndim - used)
    return key


def _is_int(k):
    return isinstance(k, (numbers.Integral, np.integer)) and not isinstance(k, (bool, np.bool_))


def _getitem(self, key):
    key = _expand_key(self, key)
    # NumPy's rule (PyTorch's too): the dimensions of the advanced indices
    # (arrays, and integers when arrays are present) take the place of the
    # indexed axes when those indices are adjacent in the key, and go first
    # otherwise.
    adv_first = False
    if any(_is_array_key(k) for k in key):
        pos = [i for i, k in enumerate(key) if _is_array_key(k) or _is_int(k)]
        adv_first = pos[-1] - pos[0] + 1 != len(pos)
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
        elif _is_int(k):
            n = x.shape[axis]
            i = int(k)
            if i < -n or i >= n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            i %= n
            x = _C.squeeze(_C.slice(x, axis, i, i + 1, 1), [axis])
        elif isinstance(k, _Mask):
            m = k.arr
            if m.ndim == 0:
                x = _C.unsqueeze(x, axis)
                if not m:
                    x = _C.slice(x, axis, 0, 0, 1)
                axis += 1
                continue
            dims = tuple(x.shape[axis:axis + m.ndim])
            if tuple(m.shape) != dims:
                raise IndexError(f"boolean index of shape {tuple(m.shape)} does not match the indexed axes "
                                 f"{axis}..{axis + m.ndim - 1} of shape {dims} (tensor shape {self.shape})")
            for i, nz in enumerate(np.nonzero(m)):
                advanced.append((axis + i, _ops.tensor(nz.astype(np.int64))))
            axis += m.ndim
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
        idx = _normalize_index(idx, x.shape[ax], ax)
        flat = _C.reshape(idx, [-1]) if idx.ndim != 1 else idx
        y = _C.index_select(x, ax, flat)
        if idx.ndim != 1:
            shape = list(y.shape[:ax]) + list(idx.shape) + list(y.shape[ax + 1:])
            y = _C.reshape(y, shape)
        if adv_first and ax != 0:
            k = idx.ndim
            y = _C.permute(y, list(range(ax, ax + k)) + list(range(ax)) + list(range(ax + k, y.ndim)))
        return y
    # Several index arrays: broadcast them together and combine them into one
    # flat index over the indexed axes.
    axes = [a for a, _ in advanced]
    idx_np = [i.numpy() if not i.is_symbolic else None for _, i in advanced]
    if any(i is None for i in idx_np):
        raise TracingError("indexing with several index arrays needs their values; trace with one index array")
    try:
        b = np.broadcast_arrays(*idx_np)
    except ValueError:
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together with shapes "
                         + " ".join(str(tuple(i.shape)) for i in idx_np)) from None
    dims = [x.shape[a] for a in axes]
    for arr, d, a in zip(b, dims, axes):
        if arr.size and (arr.min() < -d or arr.max() >= d):
            bad = int(arr.min()) if arr.min() < -d else int(arr.max())
            raise IndexError(f"index {bad} is out of bounds for axis {a} with size {d}")
    b = [np.where(arr < 0, arr + d, arr) for arr, d in zip(b, dims)]
    lin = np.ravel_multi_index(tuple(b), dims).astype(np.int64)
    rest = [a for a in range(x.ndim) if a not in axes]
    front = 0 if adv_first else axes[0]
    order = rest[:front] + axes + rest[front:]
    xp = _C.permute(x, order) if order != list(range(x.ndim)) else x
    merged_shape = list(xp.shape[:front]) + [int(np.prod(dims))] + list(xp.shape[front + len(axes):])
    xm = _C.reshape(xp, merged_shape)
    y = _C.index_select(xm, front, _ops.tensor(lin.reshape(-1)))
    return _C.reshape(y, list(y.shape[:front]) + list(lin.shape) + list(y.shape[front + 1:]))


# ------------------------------------------------------ in-place updates
#
# A write into a tensor that autograd tracks (a non-leaf that requires grad,
# or a value that requires grad) is done as in PyTorch: the tensor's memory is
# updated in place and its history is rebased onto an out-of-place
# equivalent of the update, so gradients flow to the value written and not to
# the overwritten elements. Saved tensors keep their version check: an op
# that saved the old values fails at backward instead of using new ones.

class _NoGrad:
    def __enter__(self):
        self.prev = _C.is_grad_enabled()
        _C.set_grad_enabled(False)

    def __exit__(self, *exc):
        _C.set_grad_enabled(self.prev)


def _needs_tracking(self, value):
    return _C.is_grad_enabled() and (self.requires_grad or (isinstance(value, Tensor) and value.requires_grad))


def _check_tracked_write(self, what):
    if self.requires_grad and self.is_leaf:
        raise RuntimeError(f"{what}: a leaf tensor that requires grad cannot be written in place; "
                           "wrap the write in `with ndflow.no_grad():`")
    if self._storage_use_count() > 1:
        raise RuntimeError(f"{what}: this tensor shares its memory with another tensor (a view of it, the "
                           "tensor it is a view of, or a copy saved for backward), so autograd cannot follow "
                           "an in-place write; write into a clone() instead, or build the result out of place "
                           "(e.g. with ndflow.where)")


def _commit(self, r):
    """Writes the out-of-place result ``r`` into ``self`` and gives ``self``
    r's autograd history."""
    with _NoGrad():
        self.copy_(r)
    if r.requires_grad:
        self._rebase_history(r)
    return self


def _own_copy(self):
    """A fresh copy of ``self`` on the tape (the contiguous op saves nothing,
    so the in-place write that follows does not invalidate it)."""
    return _C.call_op("contiguous", [self], {})[0]


def _numpy_key(key):
    keys = key if isinstance(key, tuple) else (key,)
    return tuple(k.numpy() if isinstance(k, Tensor) else k for k in keys)


def _assign_tracked(self, key, value):
    _check_tracked_write(self, "assigning into a tensor")
    n = self.numel()
    try:
        pos = np.arange(n, dtype=np.int64).reshape(self.shape)[_numpy_key(key)]
    except IndexError:
        _getitem(self, key)  # raises the same error as reading with this key
        raise
    pos = np.asarray(pos)
    v = _ops._as_tensor(value, self)
    if v.dtype != self.dtype:
        v = v.to(self.dtype)
    v = _C.reshape(_C.contiguous(_C.broadcast_to(v, list(pos.shape))), [-1])
    flat = pos.reshape(-1)
    # Several writes to one element: the last one wins, as in NumPy.
    uniq, first_rev = np.unique(flat[::-1], return_index=True)
    if len(uniq) != len(flat):
        keep = len(flat) - 1 - first_rev
        v = _C.index_select(v, 0, _ops.tensor(keep.astype(np.int64)))
        flat = flat[keep]
    mask = np.zeros(n, dtype=np.bool_)
    mask[flat] = True
    placed = _C.scatter_add(_C.zeros([n], self.dtype), 0, _ops.tensor(flat.astype(np.int64)), v)
    r = _C.where(_ops.tensor(mask.reshape(self.shape)), _C.reshape(placed, list(self.shape)), _own_copy(self))
    _commit(self, r)


def _setitem(self, key, value):
    _require_eager(self, "assigning into a tensor")
    if _needs_tracking(self, value):
        _assign_tracked(self, key, value)
        return
    keys = key if isinstance(key, tuple) else (key,)
    basic = all(k is None or k is Ellipsis or isinstance(k, (_py_slice, numbers.Integral, np.integer))
                for k in keys)
    if basic:
        view = _getitem(self, key)
        view.copy_(_ops._as_tensor(value, self))
        return
    # Advanced indices: write through NumPy, then mark the tensor changed.
    if isinstance(value, Tensor):
        value = value.detach().numpy()
    arr = self.detach().numpy()
    arr[_numpy_key(key)] = value
    self.add_(_C.zeros_like(self))  # bumps the version counter (autograd's staleness check)


def _inplace(op, name):
    """``x op= y``: in place like PyTorch (also under autograd); functional
    while tracing."""
    def f(self, other):
        if not isinstance(other, (Tensor, numbers.Number, np.number, np.bool_, np.ndarray, list, tuple)):
            return NotImplemented
        if self.is_symbolic:
            return op(self, other)
        other = _ops._as_tensor(other, self)
        if _needs_tracking(self, other):
            _check_tracked_write(self, f"in-place {name}")
            r = op(_own_copy(self), other)
        elif op is _ops.add:  # one pass, straight into self's memory
            return self.add_(other)
        elif op is _ops.sub:
            return self.add_(other, -1.0)
        elif op is _ops.mul:
            return self.mul_(other)
        else:
            r = op(self, other)
        if r.shape != self.shape:
            raise ValueError(f"in-place {name}: the result has shape {list(r.shape)} but the tensor written "
                             f"into has shape {list(self.shape)}")
        return _commit(self, r)
    return f


# --------------------------------------------------------------- operators

_OPERAND_TYPES = (Tensor, numbers.Number, np.number, np.bool_, np.ndarray, list, tuple)


def _binop(fn, reflected=False):
    """An operator method; other operand types are left to Python
    (NotImplemented), so ``t == None`` is False and ``t + "a"`` a TypeError."""
    if reflected:
        def op(self, other):
            return fn(other, self) if isinstance(other, _OPERAND_TYPES) else NotImplemented
    else:
        def op(self, other):
            return fn(self, other) if isinstance(other, _OPERAND_TYPES) else NotImplemented
    return op


def _bool(self):
    _require_eager(self, "bool(tensor)")
    if self.numel() != 1:
        raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous; "
                           "use .any() or .all()")
    return bool(self.item())


def _repr(self):
    """PyTorch-style: ``tensor([[1., 2.], [3., 4.]], dtype=ndflow.float64)``;
    values formatted by NumPy (long tensors summarized per its print options)."""
    if self.is_symbolic:
        return f"tensor(<symbolic>, shape={list(self.shape)}, dtype={self.dtype!r})"
    t = self.detach()
    if t.dtype == _C.dtype.bfloat16:
        t = t.to(_C.dtype.float32)
    body = np.array2string(t.numpy(), separator=", ", prefix="tensor(")
    extra = ""
    if self.numel() == 0 and self.ndim != 1:
        extra += f", size={tuple(self.shape)}"
    extra += f", dtype={self.dtype!r}"
    if self.requires_grad:
        extra += ", requires_grad=True"
    return f"tensor({body}{extra})"


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
    _require_eager(self, "np.asarray(tensor)")
    a = self.detach().numpy()
    if dtype is not None and a.dtype != np.dtype(dtype):
        if copy is False:
            raise ValueError(f"np.asarray(tensor, dtype={dtype}, copy=False): converting from {a.dtype} needs a copy")
        return a.astype(dtype)
    return a.copy() if copy else a


_C_to = Tensor.to


def _to(self, *args, dtype=None, device=None, copy=False):
    """t.to(dtype), t.to(device), t.to(device, dtype), t.to(other) as in
    PyTorch; tensors live on the CPU here, so a device must be "cpu"."""
    for a in args:
        if isinstance(a, _C.dtype):
            dtype = a
        elif isinstance(a, Tensor):
            dtype = a.dtype
        elif isinstance(a, str):
            device = a
        else:
            raise TypeError(f"Tensor.to: expected a dtype, a device string or a tensor, got {type(a).__name__}")
    if device is not None and str(device).split(":")[0] != "cpu":
        raise ValueError(f"Tensor.to: device {device!r} is not available from Python; tensors live on the CPU")
    if dtype is None or dtype == self.dtype:
        return self.clone() if copy else self
    return _C_to(self, dtype)


def _install():
    # ndflow.float32 prints as it is spelled (pybind11's enum repr would win
    # over one defined in C++).
    _C.dtype.__repr__ = _C.dtype.__str__ = lambda self: f"ndflow.{self.name}"
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
    T.__array_priority__ = 1000  # ndarray and NumPy scalars defer: np.float64(2) * t is a Tensor
    T.__contains__ = lambda self, v: bool(o.eq(self, v).any())
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
    T.__iadd__ = _inplace(o.add, "+=")
    T.__isub__ = _inplace(o.sub, "-=")
    T.__imul__ = _inplace(o.mul, "*=")
    T.__itruediv__ = _inplace(o.div, "/=")
    T.__ipow__ = _inplace(o.pow, "**=")

    T.T = property(lambda self: _C.permute(self, list(range(self.ndim))[::-1]))
    T.mT = property(lambda self: _C.transpose(self, -2, -1))
    T.size = _size
    T.dim = lambda self: self.ndim
    T.any = _any
    T.all = _all
    T.view = _view
    T.reshape = lambda self, *shape: o.reshape(self, *shape)
    T.to = _to
    T.cpu = lambda self: self
    T.float = lambda self: self.to(_C.dtype.float32)
    T.double = lambda self: self.to(_C.dtype.float64)
    T.half = lambda self: self.to(_C.dtype.float16)
    T.long = lambda self: self.to(_C.dtype.int64)
    T.int = lambda self: self.to(_C.dtype.int32)
    T.bool = lambda self: self.to(_C.dtype.bool)
    T.tolist = lambda self: (_require_eager(self, "Tensor.tolist()"), self.detach().numpy().tolist())[1]
    T.requires_grad_ = lambda self, r=True: (setattr(self, "requires_grad", r), self)[1]
    T.zero_grad = lambda self: setattr(self, "grad", None)
    T.where = lambda self, condition, other: o.where(condition, self, other)  # torch's x.where(cond, y)
    T.type_as = lambda self, other: self.to(other.dtype)
    for name in ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "logsumexp",
                 "transpose", "permute", "squeeze", "unsqueeze", "expand", "flatten", "exp", "log", "log1p",
                 "sqrt", "rsqrt", "square", "sin", "cos", "tanh", "sigmoid", "relu", "abs", "neg", "sign",
                 "floor", "ceil", "round", "clamp", "clip", "matmul", "softmax", "log_softmax", "pow",
                 "maximum", "minimum", "split", "chunk", "gather", "index_select", "broadcast_to", "add",
                 "sub", "mul", "div", "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "gelu", "silu",
                 "logical_and", "logical_or", "subtract", "multiply", "divide", "true_divide", "scatter_add"]:
        setattr(T, name, getattr(o, name))


_install()
