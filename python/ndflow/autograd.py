"""Gradient mode and functional gradients (runtime/autograd.h)."""
import functools

from . import _C
from ._C import Tensor


class _GradMode:
    def __init__(self, enabled):
        self._enabled = enabled

    def __enter__(self):
        self._prev = _C.is_grad_enabled()
        _C.set_grad_enabled(self._enabled)
        return self

    def __exit__(self, *exc):
        _C.set_grad_enabled(self._prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _GradMode(self._enabled):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager and decorator: ops inside are not recorded for autograd."""

    def __init__(self):
        super().__init__(False)


class enable_grad(_GradMode):
    def __init__(self):
        super().__init__(True)


class set_grad_enabled(_GradMode):
    def __init__(self, mode):
        super().__init__(bool(mode))


def is_grad_enabled():
    return _C.is_grad_enabled()


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def grad(outputs, inputs, grad_outputs=None, retain_graph=False, allow_unused=False, materialize_grads=False):
    """d(sum outputs·grad_outputs)/d inputs, without touching ``.grad``.

    An input the outputs do not depend on raises unless ``allow_unused``; it
    then gets None (or zeros with ``materialize_grads``). Works eagerly and,
    on symbolic tensors, inside a traced function."""
    outs, ins = _as_list(outputs), _as_list(inputs)
    gos = [g for g in _as_list(grad_outputs)]
    if outs and outs[0].is_symbolic:
        gs = _C.gradients(outs, ins, gos, materialize_grads)
    else:
        gs = _C.grad(outs, ins, gos, retain_graph, materialize_grads)
    result = []
    for i, g in enumerate(gs):
        if g is None:
            if not allow_unused:
                raise RuntimeError(f"input {i} (shape {ins[i].shape}) was not used to compute the outputs; "
                                   "pass allow_unused=True if this is expected")
            result.append(None)
        else:
            result.append(g)
    return tuple(result)


def backward(tensors, grad_tensors=None, retain_graph=False):
    _C.backward(_as_list(tensors), _as_list(grad_tensors), retain_graph)
