"""nn.Module: parameters, buffers and submodules, train/eval, state dicts."""
from collections import OrderedDict, namedtuple

from .. import _C
from .._C import Tensor
from ..autograd import no_grad
from ..function import current_trace, training_flags_changed
from .parameter import Parameter, make_buffer

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models, as torch.nn.Module."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())

    # ------------------------------------------------------------ attributes
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call super().__init__() before assigning attributes of a Module")
        if name == "training":
            training_flags_changed()
        is_buffer = name in self.__dict__.get("_buffer_names", ())
        if name in self._parameters and value is not None and not isinstance(value, (Parameter, Module)):
            raise TypeError(f"cannot assign a {type(value).__name__} to parameter '{name}' "
                            "(an nn.Parameter or None; to change its values, use "
                            "`with ndflow.no_grad(): m.{name}.copy_(...)`)")
        if is_buffer and value is not None and not isinstance(value, (Tensor, Module)):
            raise TypeError(f"cannot assign a {type(value).__name__} to buffer '{name}' (a Tensor or None)")
        if name in self._parameters and value is None:
            self._parameters[name] = None
            return
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif is_buffer:
            # A buffer stays a Variable, so compiled functions read and update it by reference.
            self._buffers[name] = value if value is None or value.is_variable else make_buffer(value)
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is None:
            for d in (self._buffers, self._modules):
                d.pop(name, None)
            self.__dict__.pop(name, None)
            self._parameters[name] = None
        else:
            setattr(self, name, param if isinstance(param, Parameter) else Parameter(param))

    def register_buffer(self, name, tensor, persistent=True):
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: '{name}' must be a Tensor or None, got {type(tensor).__name__}")
        for d in (self._parameters, self._modules):
            d.pop(name, None)
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)
        self._buffers[name] = None if tensor is None else make_buffer(tensor)
        self.__dict__.pop(name, None)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: '{name}' must be a Module or None, got {type(module).__name__}")
        for d in (self._parameters, self._buffers):
            d.pop(name, None)
        self.__dict__.pop(name, None)
        self._modules[name] = module

    # --------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        state = current_trace()
        if state is not None:
            state.modules.append(self)
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------- traversal
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_children(self):
        for n, m in self._modules.items():
            if m is not None:
                yield n, m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for n, p in m._parameters.items():
                if p is None or p._id() in seen:
                    continue
                seen.add(p._id())
                yield (f"{mp}.{n}" if mp else n), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for n, b in m._buffers.items():
                if b is not None:
                    yield (f"{mp}.{n}" if mp else n), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        training_flags_changed()  # compiled functions re-check the flags they were traced with
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        from ..function import _note_zeroed
        tracing = current_trace() is not None
        for p in self.parameters():
            if tracing:  # the compiled step starts these gradients from zero
                _note_zeroed(p)
            if p.grad is None:
                continue
            if set_to_none or tracing or p.grad.is_symbolic:
                p.grad = None
            else:
                with no_grad():
                    p.grad.zero_()

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------ state dicts
    def state_dict(self, prefix=""):
        """Name -> tensor (the parameters and persistent buffers themselves,
        detached; clone them to keep a snapshot)."""
        out = OrderedDict()
        for mp, m in self.named_modules(prefix):
            skip = m.__dict__.get("_non_persistent", set())
            for n, p in m._parameters.items():
                if p is not None:
                    out[f"{mp}.{n}" if mp else n] = p.detach()
            for n, b in m._buffers.items():
                if b is not None and n not in skip:
                    out[f"{mp}.{n}" if mp else n] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copies values into the existing parameters and buffers (never
        rebinds them, so compiled functions keep seeing them). Every entry
        is checked before any is written. Returns (missing_keys,
        unexpected_keys)."""
        from .._ops import as_tensor
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        copies = []
        for k, dst in own.items():
            if k not in state_dict:
                continue
            src = as_tensor(state_dict[k])
            if src.is_symbolic:
                raise TypeError(f"load_state_dict: '{k}' is a symbolic tensor; load outside traced functions")
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(f"load_state_dict: '{k}' has shape {tuple(src.shape)} in the state dict "
                                 f"but {tuple(dst.shape)} in the model")
            copies.append((dst, src))
        with no_grad():
            for dst, src in copies:
                dst.copy_(src if src.dtype == dst.dtype else src.to(dst.dtype))
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            lines[0] = lines[0].rstrip("(") + "(" if self.extra_repr() else lines[0]
            for n, m in self._modules.items():
                body = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({n}): {body}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"
