"""Functional forms of the layers (torch.nn.functional spellings)."""
import numbers

from .. import _C, _ops
from .._ops import softmax, log_softmax, relu, gelu, sigmoid, tanh, silu, leaky_relu  # noqa: F401


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
    """torch.nn.functional.max_pool2d. return_indices: also the i64 flat
    index h * W + w of each maximum in its input plane, which max_unpool2d
    takes."""
    y = _ops.max_pool2d(input, kernel_size, stride, padding, ceil_mode, dilation)
    if return_indices:
        return y, _ops.max_pool2d_indices(input, kernel_size, stride, padding, ceil_mode, dilation)
    return y


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """torch.nn.functional.max_unpool2d: the partial inverse of max_pool2d.
    Each value of input [N, C, H, W] goes to position indices (max_pool2d's
    return_indices) of its plane in a zero output of [N, C, Ho, Wo], with
    Ho = (H - 1) * stride - 2 * padding + kernel_size unless output_size
    (the last two dims, or the whole shape) says otherwise; its gradient
    gathers the output gradient back from those positions."""
    k = _ops._pair2(kernel_size, "kernel_size")
    s = k if stride is None else _ops._pair2(stride, "stride")
    p = _ops._pair2(padding, "padding")
    if input.ndim != 4 or list(indices.shape) != list(input.shape) or indices.dtype != _C.dtype.int64:
        raise ValueError(f"max_unpool2d: input [N, C, H, W] and int64 indices of the same shape expected, got input "
                         f"{list(input.shape)} and indices {list(indices.shape)} of {indices.dtype}")
    n, c, h, w = input.shape
    default = [(h - 1) * s[0] - 2 * p[0] + k[0], (w - 1) * s[1] - 2 * p[1] + k[1]]
    size = default if output_size is None else [int(d) for d in list(output_size)[-2:]]
    for d in range(2):
        if not default[d] - s[d] < size[d] < default[d] + s[d]:
            raise ValueError(f"max_unpool2d: output_size {size} is not between {[a - b + 1 for a, b in zip(default, s)]} "
                             f"and {[a + b - 1 for a, b in zip(default, s)]} for input {list(input.shape)}, "
                             f"kernel {list(k)}, stride {list(s)}, padding {list(p)}")
    planes = size[0] * size[1]
    flat_idx = _ops.reshape(indices, [n, c, h * w])
    zeros = _ops.zeros(n, c, planes, dtype=input.dtype)
    # Overlapping windows can pick one input element twice; the copies are
    # equal, so the sum over them divided by their count is the value. The
    # division is kept out of the gradient, which gathers like torch's.
    summed = _ops.scatter_add(zeros, 2, flat_idx, _ops.reshape(input, [n, c, h * w]))
    count = _ops.stop_gradient(_ops.scatter_add(zeros, 2, flat_idx, _ops.ones(n, c, h * w, dtype=input.dtype)))
    exact = _ops.stop_gradient(summed / _ops.clamp(count, min=1.0))
    y = exact + (summed - _ops.stop_gradient(summed))  # the value of exact (the difference is 0)
    return _ops.reshape(y, [n, c, size[0], size[1]])


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """torch.nn.functional.avg_pool2d. ``divisor_override`` (a positive int):
    every window's sum is divided by it instead of by the window's size,
    whatever padding, ceil_mode and count_include_pad say."""
    divisor = 0 if divisor_override is None else _check_divisor_override(divisor_override, "avg_pool2d")
    return _ops.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor)


def _check_divisor_override(value, op):
    """value as an int; torch takes a nonzero int, ndflow a positive one (a
    negative divisor flipping the sign is surely a mistake)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{op}: divisor_override must be a positive int, got {value!r}")
    return int(value)


# ---------------------------------------------------------------- padding

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad, mode="constant", value=None):
    """torch.nn.functional.pad: ``pad`` lists (before, after) widths from the
    LAST axis backwards, e.g. (left, right, top, bottom) for an image.
    'constant' fills with ``value`` (default 0); 'reflect' mirrors without
    repeating the edge; 'replicate' repeats the edge; 'circular' wraps around
    (each width at most the axis size). Negative widths crop. Differentiable."""
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(repr(m) for m in _PAD_MODES)}, got {mode!r}")
    pad = [int(w) for w in pad]
    if len(pad) % 2:
        raise ValueError(f"pad: the widths come in (before, after) pairs, got {len(pad)} numbers: {pad}")
    if len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: {len(pad) // 2} (before, after) pairs for a {input.ndim}-d input; "
                         f"at most one pair per axis")
    if mode != "constant" and value not in (None, 0):
        raise ValueError(f"pad: mode {mode!r} takes no fill value (got value={value!r}); only 'constant' does")
    if mode == "circular":
        return _pad_circular(input, pad)
    return _ops.pad(input, pad, mode, 0.0 if value is None else value)


def _pad_circular(x, pad):
    """Circular padding from slices and a concat per axis, so that autograd
    and graph tracing come for free: before = the axis' last elements, after =
    its first ones."""
    for i in range(len(pad) // 2):
        axis = x.ndim - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        n = x.shape[axis]
        if before < 0 or after < 0:  # torch crops first, then wraps what is left
            lo, hi = max(-before, 0), n - max(-after, 0)
            if hi <= lo:
                raise ValueError(f"pad: circular widths ({before}, {after}) leave nothing of axis {axis} "
                                 f"(size {n})")
            x = _ops.slice(x, axis, lo, hi)
            n, before, after = hi - lo, max(before, 0), max(after, 0)
        if before > n or after > n:
            raise ValueError(f"pad: circular widths ({before}, {after}) on axis {axis} of size {n} would wrap "
                             f"around more than once; each must be at most {n}")
        parts = ([_ops.slice(x, axis, n - before, n)] if before else []) + [x] + \
                ([_ops.slice(x, axis, 0, after)] if after else [])
        if len(parts) > 1:
            x = _ops.concat(parts, axis)
    return x


# ------------------------------------------------------------ convolution

def _conv_padding(padding, kernel_size, stride, dilation, op):
    """The ((top, bottom), (left, right)) zero padding a 2-d convolution's
    ``padding`` asks for: numbers, 'valid' (none) or 'same' (output size =
    input size, stride 1 only; the odd unit of an even total goes to the
    bottom/right, as in torch)."""
    if not isinstance(padding, str):
        ph, pw = _ops._pair2(padding, "padding")
        return (ph, ph), (pw, pw)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"{op}: padding must be a number, a (height, width) pair, 'same' or 'valid', "
                         f"got {padding!r}")
    stride = tuple(_ops._pair2(stride, "stride"))
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride={stride}); "
                         f"use stride=1, or give the padding sizes")
    pads = []
    for k, d in zip(_ops._pair2(kernel_size, "kernel_size"), _ops._pair2(dilation, "dilation")):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def _pad_for_conv(x, pads, padding_mode="zeros"):
    """x and the (symmetric) padding to give the conv2d op: the op pads with
    zeros symmetrically itself; other modes and 'same''s uneven zero padding
    are padded here first, and the op then gets padding 0."""
    (top, bottom), (left, right) = pads
    if padding_mode == "zeros":
        if top == bottom and left == right:
            return x, (top, left)
        mode = "constant"
    else:
        mode = padding_mode
    if top or bottom or left or right:
        x = pad(x, [left, right, top, bottom], mode)
    return x, (0, 0)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d: 2-d cross-correlation of input [N, C, H, W]
    with weight [O, C/groups, kh, kw]; ``padding`` may also be 'same' or 'valid'."""
    pads = _conv_padding(padding, tuple(weight.shape[-2:]), stride, dilation, "conv2d")
    x, padding = _pad_for_conv(input, pads)
    return _ops.conv2d(x, weight, bias, stride, padding, dilation, groups)
