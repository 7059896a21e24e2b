"""Functional forms of the layers (torch.nn.functional spellings)."""
from .. import _C, _ops
from .._ops import softmax, log_softmax, relu, gelu, sigmoid, tanh, silu, leaky_relu  # noqa: F401
from .._ops import conv2d  # noqa: F401


def linear(x, weight, bias=None):
    """x @ weight.T + bias; the transposed weight is a view handed to GEMM as 'T'."""
    y = _C.matmul(x, _C.transpose(weight, 0, 1))
    return y if bias is None else _C.add(y, bias)


def cross_entropy(logits, target, reduction="mean"):
    return _C.cross_entropy(logits, target, reduction)


def nll_loss(log_probs, target, reduction="mean"):
    if log_probs.ndim != 2 or target.ndim != 1:
        raise ValueError(f"nll_loss: expected log_probs [N, C] and target [N], got {list(log_probs.shape)} "
                         f"and {list(target.shape)}")
    picked = _C.squeeze(_C.gather(log_probs, 1, _C.unsqueeze(target, 1)), [1])
    loss = _C.neg(picked)
    if reduction == "mean":
        return _C.mean(loss, [], False)
    if reduction == "sum":
        return _C.sum(loss, [], False)
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got '{reduction}'")


def mse_loss(pred, target, reduction="mean"):
    return _C.mse_loss(pred, target, reduction)


def dropout(x, p=0.5, training=True, generator=None):
    return _C.dropout(x, float(p), bool(training), generator)


def one_hot(labels, num_classes):
    return _ops.one_hot(labels, num_classes, _C.dtype.int64)


from .._ops import batch_norm, layer_norm, embedding  # noqa: E402,F401  (ops/norm.cc)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool2d's signature (dilation 1, no indices)."""
    if dilation not in (1, (1, 1), [1, 1]):
        raise NotImplementedError("max_pool2d: dilation other than 1")
    if return_indices:
        raise NotImplementedError("max_pool2d: return_indices")
    return _ops.max_pool2d(input, kernel_size, stride, padding, ceil_mode)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """torch.nn.functional.avg_pool2d's signature (no divisor_override)."""
    if divisor_override is not None:
        raise NotImplementedError("avg_pool2d: divisor_override")
    return _ops.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad)
