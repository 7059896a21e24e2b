"""Every registered op by name, including those without a friendlier
wrapper (backward ops, fused kernels): ``ndflow.ops.relu_backward(y, g)``.

Each function takes the op's inputs positionally and its attributes as
keywords, and returns one tensor or a tuple; ``schema(name)`` describes an op.
"""
from . import _C


def _make(name):
    info = _C.op_schema(name)

    def op(*inputs, **attrs):
        outs = _C.call_op(name, list(inputs), attrs)
        return outs[0] if len(outs) == 1 else tuple(outs)
    op.__name__ = name
    attrs = ", ".join(f"{a}: {t}" + (" = default" if has else "") for a, t, has in info["attrs"])
    op.__doc__ = f"{info['doc']}\n\ninputs: {', '.join(info['inputs'])}; attributes: {attrs or 'none'}"
    return op


def names():
    """The names of all registered ops."""
    return list(_C.op_names())


def schema(name):
    return _C.op_schema(name)


for _n in _C.op_names():
    globals()[_n] = _make(_n)
