"""nn.Parameter: a tensor that is a trainable Variable (DESIGN.md §5)."""
from .. import _C
from .._C import Tensor


class _ParameterMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and getattr(obj, "_is_parameter", False)


class Parameter(metaclass=_ParameterMeta):
    """``Parameter(t)`` returns a tensor sharing t's memory, marked as a
    Variable (graphs read and update it by reference) that requires grad.
    ``isinstance(p, nn.Parameter)`` holds for such tensors."""

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = _C.zeros([0])
        if data.is_symbolic:
            raise ValueError("a Parameter needs a concrete tensor, not a symbolic one")
        p = data.detach()
        p.mark_variable("")
        p.requires_grad = requires_grad
        p._is_parameter = True
        return p


def make_buffer(data):
    """A non-trainable Variable (batch-norm statistics and the like)."""
    b = data.detach()
    b.mark_variable("")
    return b
