"""Optimizer base: parameter groups, state as Variables, fused C++ updates.

Every piece of optimizer state — momentum buffers, moments, step counts and
each group's learning rate — is a Variable created eagerly (when the
optimizer is, or when a hyperparameter change needs a new slot), so a traced
training step updates it in place and ``group['lr'] = x`` (what a scheduler
does) is seen by the compiled step without retracing. Other hyperparameters
(momentum, betas, weight decay, ...) are attributes of the update nodes: a
change bumps the optimizer's ``hyperparameter_version``, and a compiled
function whose trace ran ``step()`` traces again on its next call. The
updates themselves are the fused ops of ops/optim.cc, shared with the C++ API.
"""
import weakref

from .. import _C
from ..autograd import no_grad


class ParamGroup(dict):
    """A dict of hyperparameters. Writing 'lr' fills the group's lr Variable
    (no retrace); writing anything else tells the optimizer, which checks
    the values, creates any slots the new setting needs and invalidates
    compiled steps."""

    def __init__(self, values, owner=None):
        super().__init__()
        self._owner = owner
        self.lr_var = _C.scalar(float(values["lr"]), _C.dtype.float64).mark_variable("lr")
        for k, v in values.items():
            dict.__setitem__(self, k, v)
        dict.__setitem__(self, "lr", self._check_lr(values["lr"]))

    @staticmethod
    def _check_lr(value):
        if hasattr(value, "is_symbolic"):
            raise TypeError("a learning rate must be a Python number (the group's lr Variable holds it); "
                            "set group['lr'] = float(...) outside the traced function")
        value = float(value)
        if not value >= 0:
            raise ValueError(f"learning rate must be >= 0, got {value}")
        return value

    def __setitem__(self, key, value):
        if key == "lr":
            value = self._check_lr(value)
            from ..function import current_trace
            if current_trace() is not None:
                raise _C.TracingError(
                    "setting a learning rate inside a traced function would run once, at trace time; "
                    "set group['lr'] (or call scheduler.step()) outside the @ndflow.function")
            with no_grad():
                self.lr_var.fill_(value)
            dict.__setitem__(self, key, value)
            return
        old = self.get(key, _MISSING)
        dict.__setitem__(self, key, value)
        owner = self._owner() if self._owner is not None else None
        if owner is not None and (old is _MISSING or not _same(old, value)):
            try:
                owner._group_changed(self, key)
            except Exception:
                if old is _MISSING:
                    dict.__delitem__(self, key)
                else:
                    dict.__setitem__(self, key, old)
                raise

    def update(self, *args, **kwargs):
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def __reduce__(self):  # copies and pickles are plain dicts
        return (dict, (dict(self),))


_MISSING = object()


def _same(a, b):
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


class _State(dict):
    """Slots per parameter, keyed by the tensor's identity; ``opt.state[p]``
    works with the parameter itself, as in torch."""

    @staticmethod
    def _key(k):
        return k._id() if hasattr(k, "_id") else k

    def __getitem__(self, k):
        return dict.__getitem__(self, self._key(k))

    def __contains__(self, k):
        return dict.__contains__(self, self._key(k))

    def get(self, k, default=None):
        return dict.get(self, self._key(k), default)


class Optimizer:
    _optional_slots = ()  # slots the fused op takes even when a setting leaves them unused

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = _State()  # tensor id -> {slot name: Variable}
        self._empty = {}  # (tensor id, slot) -> an empty Variable standing in for unused optional slots
        self.hyperparameter_version = 0
        if hasattr(params, "is_symbolic"):
            raise TypeError("params must be an iterable of tensors or of dicts (parameter groups), "
                            "not a single tensor")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group is a dict with a 'params' entry")
        values = {**self.defaults, **group}
        ps = group["params"]
        values["params"] = [ps] if hasattr(ps, "is_symbolic") else list(ps)
        self._check_params(values["params"], exclude=None)
        self._check(values)
        g = ParamGroup(values, weakref.ref(self))
        self.param_groups.append(g)
        self._ensure_state(g)
        self.hyperparameter_version += 1

    def _check_params(self, params, exclude):
        seen = {p._id() for grp in self.param_groups if grp is not exclude for p in grp["params"]}
        for p in params:
            if not hasattr(p, "is_variable"):
                raise TypeError(f"optimizer parameters must be tensors, got {type(p).__name__}")
            if not p.is_variable:
                raise TypeError("optimizer parameters must be Variables (nn.Parameter or "
                                "tensor.mark_variable()) so that updates reach them")
            if not p.dtype.is_floating_point:
                raise TypeError(f"optimizer parameters must be floating point, got {p.dtype!r}")
            if p._id() in seen:
                raise ValueError("a parameter appears more than once in the optimizer's parameter groups")
            seen.add(p._id())

    def _ensure_state(self, g):
        """Creates the slots the group's settings need and that do not exist
        yet (eagerly: a slot is a Variable with a value)."""
        from ..function import current_trace
        for p in g["params"]:
            slots = self.state.setdefault(p._id(), {})
            new = {k: v for k, v in self._init_state(p, g).items() if k not in slots}
            if new and current_trace() is not None:
                raise _C.TracingError("an optimizer setting that needs new state slots was changed inside a "
                                      "traced function; change it outside the @ndflow.function")
            for k, v in new.items():
                slots[k] = v.mark_variable(k)
            for name in self._optional_slots:
                if (p._id(), name) not in self._empty:
                    self._empty[(p._id(), name)] = _C.zeros([0], p.dtype).mark_variable("unused_" + name)

    def _group_changed(self, g, key):
        from ..function import current_trace
        if current_trace() is not None:
            raise _C.TracingError(
                f"changing the optimizer setting '{key}' inside a traced function would take effect only "
                "at trace time; change it outside the @ndflow.function (the next call then retraces)")
        if key == "params":
            ps = g["params"]
            dict.__setitem__(g, "params", [ps] if hasattr(ps, "is_symbolic") else list(ps))
            self._check_params(g["params"], exclude=g)
        self._check(g)
        self._ensure_state(g)
        self.hyperparameter_version += 1

    def _slot(self, p, s, name, used):
        """The slot when the setting uses it, else an empty Variable of the
        param's dtype (the fused op lists its optional slots among the
        tensors it writes, so they must be Variables even when empty)."""
        return s[name] if used else self._empty[(p._id(), name)]

    # Subclasses: validate hyperparameters, create slots, apply one update.
    def _check(self, group):
        ParamGroup._check_lr(group["lr"])

    def _init_state(self, p, group):
        return {}

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    def zero_grad(self, set_to_none=True):
        from ..function import current_trace, _note_zeroed
        tracing = current_trace() is not None
        for g in self.param_groups:
            for p in g["params"]:
                if tracing:  # the compiled step starts these gradients from zero
                    _note_zeroed(p)
                if p.grad is None:
                    continue
                if set_to_none or tracing or p.grad.is_symbolic:
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
        from ..function import current_trace
        trace = current_trace()
        if trace is not None:
            trace.optimizers.append(self)
        with no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    if trace is None and grad.is_symbolic:
                        raise RuntimeError("a parameter's .grad is a symbolic tensor left over from a trace; "
                                           "call opt.zero_grad() first")
                    slots = self.state.get(p._id())
                    if slots is None:  # appended to group['params'] directly
                        if trace is not None:
                            raise _C.TracingError(
                                "a parameter without optimizer state (appended to group['params'] directly?) "
                                "reached step() inside a traced function; use opt.add_param_group() or call "
                                "opt.step() once outside the trace")
                        self._ensure_state(g)
                        slots = self.state[p._id()]
                    self._update(p, grad, slots, g)
        return loss

    # -------------------------------------------------------------- state
    def state_dict(self):
        """{'state': {param index: {slot: tensor copy}}, 'param_groups': [hyperparameters with
        'params' as indices]}, as torch.optim.Optimizer.state_dict."""
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
                slots = self.state.get(p._id(), {})
                if slots:
                    state[index[p._id()]] = {k: v.clone() for k, v in slots.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Copies slots and hyperparameters into this optimizer's Variables
        (never rebinds them, so compiled steps keep seeing them)."""
        from .._ops import as_tensor
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: {len(groups)} parameter groups in the state dict, "
                             f"{len(self.param_groups)} in the optimizer")
        for g, saved in zip(self.param_groups, groups):
            if len(saved["params"]) != len(g["params"]):
                raise ValueError("load_state_dict: a parameter group has another number of parameters")
        params = [p for g in self.param_groups for p in g["params"]]
        saved_index = [i for saved in groups for i in saved["params"]]
        pending = []
        for g, saved in zip(self.param_groups, groups):
            for k, v in saved.items():
                if k != "params":
                    pending.append((g, k, v))
        for g, k, v in pending:
            g[k] = v  # creates any slots the loaded settings need
        copies = []  # every slot is checked before any is written
        for p, i in zip(params, saved_index):
            slots = state_dict["state"].get(i, state_dict["state"].get(str(i), {}))
            own = self.state.get(p._id(), {})
            for k, v in slots.items():
                if k not in own:
                    raise KeyError(f"load_state_dict: slot '{k}' of parameter {i} does not exist in this "
                                   f"{type(self).__name__} (its slots: {sorted(own)})")
                src = as_tensor(v)
                if tuple(src.shape) != tuple(own[k].shape):
                    raise ValueError(f"load_state_dict: slot '{k}' of parameter {i} has shape "
                                     f"{tuple(src.shape)}, expected {tuple(own[k].shape)}")
                copies.append((own[k], src))
        with no_grad():
            for dst, src in copies:
                dst.copy_(src if src.dtype == dst.dtype else src.to(dst.dtype))

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"
