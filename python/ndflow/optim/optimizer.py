"""Optimizer base: parameter groups, state as Variables, fused C++ updates.

Every piece of optimizer state — momentum buffers, moments, step counts and
each group's learning rate — is a Variable created when the optimizer is, so
a traced training step updates it in place and ``group['lr'] = x`` (what a
scheduler does) is seen by the compiled step without retracing. The updates
themselves are the fused ops of ops/optim.cc, shared with the C++ API.
"""
from .. import _C
from ..autograd import no_grad


class ParamGroup(dict):
    """A dict of hyperparameters whose 'lr' entry writes the lr Variable."""

    def __init__(self, values):
        super().__init__()
        self.lr_var = _C.scalar(float(values["lr"]), _C.dtype.float64).mark_variable("lr")
        for k, v in values.items():
            self[k] = v

    def __setitem__(self, key, value):
        if key == "lr":
            value = float(value)
            if value < 0:
                raise ValueError(f"learning rate must be >= 0, got {value}")
            with no_grad():
                self.lr_var.fill_(value)
        super().__setitem__(key, value)


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # tensor id -> {slot name: Variable}
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
        values = {**self.defaults, **group}
        values["params"] = list(group["params"])
        for p in values["params"]:
            if not p.is_variable:
                raise TypeError("optimizer parameters must be Variables (nn.Parameter or "
                                "tensor.mark_variable()) so that updates reach them")
            if not p.dtype.is_floating_point:
                raise TypeError(f"optimizer parameters must be floating point, got {p.dtype!r}")
        self._check(values)
        g = ParamGroup(values)
        self.param_groups.append(g)
        for p in g["params"]:
            self.state[p._id()] = {k: v.mark_variable(k) for k, v in self._init_state(p, g).items()}

    # Subclasses: validate hyperparameters, create slots, apply one update.
    def _check(self, group):
        if group["lr"] < 0:
            raise ValueError(f"learning rate must be >= 0, got {group['lr']}")

    def _init_state(self, p, group):
        return {}

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none or p.grad.is_symbolic:
                    p.grad = None
                else:
                    with no_grad():
                        p.grad.zero_()

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        with no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    self._update(p, grad, self.state[p._id()], g)
        return loss

    # -------------------------------------------------------------- state
    def state_dict(self):
        index = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(p._id(), len(index))
                ids.append(index[p._id()])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                state[index[p._id()]] = {k: v.clone() for k, v in self.state[p._id()].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Copies slots and hyperparameters into this optimizer's Variables."""
        from .._ops import as_tensor
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: {len(groups)} parameter groups in the state dict, "
                             f"{len(self.param_groups)} in the optimizer")
        params = [p for g in self.param_groups for p in g["params"]]
        for g, saved in zip(self.param_groups, groups):
            if len(saved["params"]) != len(g["params"]):
                raise ValueError("load_state_dict: a parameter group has another number of parameters")
            for k, v in saved.items():
                if k != "params":
                    g[k] = v
        with no_grad():
            for i, p in enumerate(params):
                for k, v in state_dict["state"].get(i, {}).items():
                    dst = self.state[p._id()][k]
                    dst.copy_(as_tensor(v))

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"
