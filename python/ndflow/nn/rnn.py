"""Recurrent layers (torch.nn spellings): LSTM and LSTMCell, written with
ndflow's ops (matmul, split, sigmoid, tanh, stack), so autograd and
@ndflow.function handle them like any other code. In a traced function the
time loop unrolls over the (fixed) sequence length into one graph.

The equations, as torch.nn.LSTM (gate order i, f, g, o in the weights):

    i, f, g, o = split(x_t @ W_ih^T + b_ih + h_{t-1} @ W_hh^T + b_hh, 4)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

With ``proj_size = P > 0`` (LSTM with projections, Sak et al. 2014) the
hidden state is projected down: h_t = (sigmoid(o) * tanh(c_t)) @ W_hr^T,
W_hr [P, H], so h_t is [B, P] while c_t stays [B, H].

Each step is two matmuls (x_t @ W_ih^T and h_{t-1} @ W_hh^T) and the gate
nonlinearities, plus the projection matmul with proj_size; a step without a
given initial state skips the h and c terms.
"""
import math

from .. import _C
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


def _gates_step(gx, h, c, w_hh_t, hidden, w_hr_t=None):
    """One LSTM step from the precomputed input part of the gates ``gx`` [B, 4H].
    h and c None mean a zero state (the first step without an initial state).
    ``w_hr_t`` [H, P], when given, projects the new h: h = (o * tanh(c)) @ w_hr_t."""
    gates = gx if h is None else _C.add(gx, _C.matmul(h, w_hh_t))
    i, f, g, o = _C.split(gates, [hidden] * 4, gates.ndim - 1)
    i, g = _C.sigmoid(i), _C.tanh(g)
    ig = _C.mul(i, g)
    c = ig if c is None else _C.add(_C.mul(_C.sigmoid(f), c), ig)
    h = _C.mul(_C.sigmoid(o), _C.tanh(c))
    if w_hr_t is not None:
        h = _C.matmul(h, w_hr_t)
    return h, c


def _unstack(t):
    """The [B, H] slices of a [n, B, H] state."""
    return [_C.squeeze(_C.slice(t, 0, i, i + 1, 1), [0]) for i in range(t.shape[0])]


class LSTMCell(Module):
    """One LSTM step: (h', c') = cell(x [B, in], (h [B, H], c [B, H]));
    parameters weight_ih [4H, in], weight_hh [4H, H], bias_ih, bias_hh [4H],
    all U(-1/sqrt(H), 1/sqrt(H)) as in PyTorch."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=_C.dtype.float32):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        h4 = 4 * self.hidden_size
        self.weight_ih = Parameter(_C.zeros([h4, self.input_size], dtype))
        self.weight_hh = Parameter(_C.zeros([h4, self.hidden_size], dtype))
        if bias:
            self.bias_ih = Parameter(_C.zeros([h4], dtype))
            self.bias_hh = Parameter(_C.zeros([h4], dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def forward(self, x, hx=None):
        if x.ndim not in (1, 2):
            raise ValueError(f"LSTMCell: expected an input [batch, {self.input_size}] or [{self.input_size}], "
                             f"got shape {list(x.shape)}")
        unbatched = x.ndim == 1
        if unbatched:
            x = _C.unsqueeze(x, 0)
        gx = _C.matmul(x, _C.transpose(self.weight_ih, 0, 1))
        if self.bias:
            gx = _C.add(gx, _C.add(self.bias_ih, self.bias_hh))
        h = c = None
        if hx is not None:
            h, c = hx
            if unbatched:
                h, c = _C.unsqueeze(h, 0), _C.unsqueeze(c, 0)
        h, c = _gates_step(gx, h, c, _C.transpose(self.weight_hh, 0, 1), self.hidden_size)
        if unbatched:
            h, c = _C.squeeze(h, [0]), _C.squeeze(c, [0])
        return h, c

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTM(Module):
    """Multi-layer LSTM over a sequence, as torch.nn.LSTM.

    Input [T, B, in] ([B, T, in] with batch_first, [T, in] unbatched) and an
    optional initial state (h_0, c_0), h_0 [num_layers * D, B, R] and c_0
    [num_layers * D, B, H] (D = 2 when bidirectional; R = proj_size if
    proj_size > 0 else H; without the batch dim when unbatched). Returns
    (output, (h_n, c_n)): output [T, B, D*R] holds the last layer's h_t for
    every t ([B, T, D*R] with batch_first); h_n [num_layers * D, B, R] and c_n
    [num_layers * D, B, H] the final states of every layer and direction.

    Parameters per layer k (suffix ``_reverse`` for the backward direction),
    registered in this order as in PyTorch: weight_ih_l{k} [4H, in_k] (in_0 =
    input_size, in_k = D*R for k > 0), weight_hh_l{k} [4H, R], bias_ih_l{k}
    and bias_hh_l{k} [4H] (with bias), and with proj_size > 0 weight_hr_l{k}
    [P, H], the projection h_t = W_hr (o_t * tanh(c_t)) (LSTM with
    projections, Sak et al. 2014; requires 0 < proj_size < hidden_size).
    Gates in the order i, f, g, o; all parameters U(-1/sqrt(H), 1/sqrt(H)).
    ``dropout`` applies to the outputs of every layer but the last in training
    mode.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=_C.dtype.float32):
        super().__init__()
        if int(proj_size) < 0:
            raise ValueError(f"LSTM: proj_size should be a positive integer or zero to disable projections, "
                             f"got {proj_size}")
        if int(proj_size) >= int(hidden_size):
            raise ValueError(f"LSTM: proj_size has to be smaller than hidden_size, "
                             f"got proj_size={proj_size} and hidden_size={hidden_size}")
        if int(num_layers) < 1:
            raise ValueError(f"LSTM: num_layers must be >= 1, got {num_layers}")
        if not 0 <= dropout < 1:
            raise ValueError(f"LSTM: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bias, self.batch_first = int(num_layers), bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.proj_size = int(proj_size)
        D, H = (2 if bidirectional else 1), self.hidden_size
        R = self.proj_size or H  # the size of h_t
        for k in range(self.num_layers):
            layer_in = self.input_size if k == 0 else D * R
            for suffix in ([""] + (["_reverse"] if bidirectional else [])):
                # registration order (hence state_dict order) as torch.nn.LSTM
                setattr(self, f"weight_ih_l{k}{suffix}", Parameter(_C.zeros([4 * H, layer_in], dtype)))
                setattr(self, f"weight_hh_l{k}{suffix}", Parameter(_C.zeros([4 * H, R], dtype)))
                if bias:
                    setattr(self, f"bias_ih_l{k}{suffix}", Parameter(_C.zeros([4 * H], dtype)))
                    setattr(self, f"bias_hh_l{k}{suffix}", Parameter(_C.zeros([4 * H], dtype)))
                if self.proj_size:
                    setattr(self, f"weight_hr_l{k}{suffix}", Parameter(_C.zeros([self.proj_size, H], dtype)))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """No-op (PyTorch compacts cuDNN weights here)."""

    def _direction(self, steps, k, suffix, reverse, h, c):
        """Runs layer k in one direction over the per-step inputs ``steps``
        (a list of [B, in]); returns (list of h_t in time order, h_T, c_T)."""
        H = self.hidden_size
        w_ih_t = _C.transpose(getattr(self, f"weight_ih_l{k}{suffix}"), 0, 1)
        w_hh_t = _C.transpose(getattr(self, f"weight_hh_l{k}{suffix}"), 0, 1)
        w_hr_t = _C.transpose(getattr(self, f"weight_hr_l{k}{suffix}"), 0, 1) if self.proj_size else None
        b = None
        if self.bias:
            b = _C.add(getattr(self, f"bias_ih_l{k}{suffix}"), getattr(self, f"bias_hh_l{k}{suffix}"))
        T = len(steps)
        outs = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            gx = _C.matmul(steps[t], w_ih_t)
            if b is not None:
                gx = _C.add(gx, b)
            h, c = _gates_step(gx, h, c, w_hh_t, H, w_hr_t)
            outs[t] = h
        return outs, h, c

    def forward(self, x, hx=None):
        if x.ndim not in (2, 3):
            layout = "[batch, seq, feature]" if self.batch_first else "[seq, batch, feature]"
            raise ValueError(f"LSTM: expected an input of 3 dims ({layout}) or 2 (unbatched [seq, feature]), "
                             f"got shape {list(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: input has {x.shape[-1]} features, expected input_size={self.input_size}")
        unbatched = x.ndim == 2
        if unbatched:
            x = _C.unsqueeze(x, 1)
        time_axis = 1 if self.batch_first and not unbatched else 0
        T, B = x.shape[time_axis], x.shape[1 - time_axis]
        if T == 0:
            raise ValueError("LSTM: the sequence is empty")
        D, H = (2 if self.bidirectional else 1), self.hidden_size
        R = self.proj_size or H
        h0 = c0 = None
        if hx is not None:
            h0_all, c0_all = hx
            LD = self.num_layers * D
            for name, s, size in (("h_0", h0_all, R), ("c_0", c0_all, H)):
                want = [LD, size] if unbatched else [LD, B, size]
                if list(s.shape) != want:
                    what = "hidden_size" if size == H else "proj_size"
                    raise ValueError(f"LSTM: {name} must have shape {want} ([num_layers * num_directions, "
                                     f"{'' if unbatched else 'batch, '}{what}]), got {list(s.shape)}")
            if unbatched:
                h0_all, c0_all = _C.unsqueeze(h0_all, 1), _C.unsqueeze(c0_all, 1)
            h0, c0 = _unstack(h0_all), _unstack(c0_all)
        # Per-step inputs as views of x; later layers take the h_t of the layer
        # below directly. (Slicing one [T, B, 4H] projection of all steps instead
        # would make the backward pass add T zero-padded [T, B, 4H] gradients.)
        steps = [_C.squeeze(_C.slice(x, time_axis, t, t + 1, 1), [time_axis]) for t in range(T)]
        hs, cs = [], []
        for k in range(self.num_layers):
            dir_outs = []
            for d, suffix in enumerate([""] + (["_reverse"] if self.bidirectional else [])):
                j = k * D + d
                outs, h, c = self._direction(steps, k, suffix, d == 1,
                                             None if h0 is None else h0[j], None if c0 is None else c0[j])
                dir_outs.append(outs)
                hs.append(h)
                cs.append(c)
            steps = dir_outs[0] if D == 1 else [_C.concat([a, b], 1) for a, b in zip(*dir_outs)]
            if self.dropout and self.training and k < self.num_layers - 1:
                steps = [F.dropout(s, self.dropout, True) for s in steps]
        output = _C.stack(steps, time_axis)
        h_n, c_n = _C.stack(hs, 0), _C.stack(cs, 0)
        if unbatched:
            output = _C.squeeze(output, [1])
            h_n, c_n = _C.squeeze(h_n, [1]), _C.squeeze(c_n, [1])
        return output, (h_n, c_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


__all__ = ["LSTM", "LSTMCell"]
