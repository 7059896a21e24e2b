"""Convolution and pooling layers (torch.nn spellings) over the conv2d,
max_pool2d and avg_pool2d ops (ops/conv.cc), on NCHW images."""
import math
import numbers

from .. import _C, _ops
from . import functional as F, init
from .module import Module
from .parameter import Parameter


def _pair(v, name):
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {v}")
    return v


def _conv2d(x, weight, bias, stride, padding, dilation, groups, activation="none"):
    inputs = [x, weight] + ([] if bias is None else [bias])
    attrs = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": int(groups)}
    if activation != "none":
        attrs["activation"] = activation
    return _C.call_op("conv2d", inputs, attrs)[0]


class Conv2d(Module):
    """2-d convolution (cross-correlation) of x [N, C, H, W] with weight
    [out_channels, in_channels / groups, kh, kw] plus bias [out_channels],
    initialized as torch.nn.Conv2d: Kaiming-uniform weight with a = sqrt(5),
    bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in/groups * kh * kw.

    ``padding``: an int, a (height, width) pair, 'valid' (none) or 'same'
    (output size = input size; stride 1 only; an odd total padding puts the
    extra row/column at the bottom/right, as torch does). ``padding_mode``:
    what the padding holds: 'zeros', 'reflect', 'replicate' or 'circular'
    (the input is padded with nn.functional.pad first, then convolved with
    padding 0, as torch.nn.Conv2d does)."""

    PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=_C.dtype.float32):
        super().__init__()
        in_channels, out_channels, groups = int(in_channels), int(out_channels), int(groups)
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if padding_mode not in self.PADDING_MODES:
            raise ValueError(f"Conv2d: padding_mode must be one of {', '.join(repr(m) for m in self.PADDING_MODES)}"
                             f", got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        # torch keeps a string padding as given ('same'/'valid'); the widths
        # per side, ((top, bottom), (left, right)), are resolved once here.
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
        self._pads = F._conv_padding(self.padding, self.kernel_size, self.stride, self.dilation, "Conv2d")
        self.padding_mode = padding_mode
        self.weight = Parameter(_C.zeros([out_channels, in_channels // groups, *self.kernel_size], dtype))
        if bias:
            self.bias = Parameter(_C.zeros([out_channels], dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    fuses_relu = True  # nn.Sequential hands a following ReLU to forward(activation="relu")

    def forward(self, x, activation="none"):
        """``activation='relu'`` applies ReLU inside the convolution (one
        fused op); nn.Sequential's Conv2d, ReLU pairs may use it."""
        x, padding = F._pad_for_conv(x, self._pads, self.padding_mode)
        return _conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups, activation)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"  # a string as torch prints it: padding=same
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.ceil_mode = bool(ceil_mode)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size}")

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")


class MaxPool2d(_Pool2d):
    """Maximum over kh x kw windows (padding counts as -inf), as
    torch.nn.MaxPool2d; dilation spaces the window's taps. return_indices:
    forward returns (values, indices), the indices for MaxUnpool2d."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = _pair(dilation, "dilation")
        if min(self.dilation) < 1:
            raise ValueError(f"MaxPool2d: dilation must be >= 1, got {dilation}")
        self.return_indices = bool(return_indices)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (f", dilation={self.dilation}" if self.dilation != (1, 1) else "")


class MaxUnpool2d(Module):
    """The partial inverse of MaxPool2d, as torch.nn.MaxUnpool2d: forward(x,
    indices, output_size=None) puts each value of x where indices say in a
    zero tensor (see nn.functional.max_unpool2d)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")

    def forward(self, x, indices, output_size=None):
        return F.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_Pool2d):
    """Mean over kh x kw windows, as torch.nn.AvgPool2d. ``divisor_override``
    (a positive int): each window's sum is divided by it instead, whatever
    padding, ceil_mode and count_include_pad say."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        if divisor_override is not None:
            divisor_override = F._check_divisor_override(divisor_override, "AvgPool2d")
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            self.divisor_override)

    def extra_repr(self):
        s = super().extra_repr() + f", count_include_pad={self.count_include_pad}"
        if self.divisor_override is not None:
            s += f", divisor_override={self.divisor_override}"
        return s


__all__ = ["Conv2d", "MaxPool2d", "MaxUnpool2d", "AvgPool2d"]
