"""@ndflow.function: trace a Python function into a static graph once per
input signature, then run it in C++ with the GIL released (DESIGN.md §5).

A training step written as in PyTorch traces into one graph:

    @ndflow.function
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()      # symbolic: gradient nodes from the ops' grad functions
        opt.step()           # fused update nodes that write the Variables in place
        return loss

Parameters, buffers and optimizer state are Variables, captured by
reference, so the compiled step updates the very tensors Python sees, and a
learning-rate change (which writes the lr Variable) takes effect without
retracing. Other tensors the function closes over are baked in as constants.
"""
import functools
import inspect
import json
import weakref

import numpy as np

from . import _C
from ._C import Tensor, TracingError

# The traces in progress on this thread (innermost last).
_active = []


class _TraceState:
    def __init__(self):
        self.grad_params = []       # Variables whose .grad a symbolic backward set
        self.saved_grads = {}       # id -> (param, .grad before the trace)
        self.modules = []           # modules whose forward ran, for the training flags


def current_trace():
    return _active[-1] if _active else None


def _symbolic_backward(loss, gradient=None):
    """loss.backward() on a symbolic loss: gradient nodes for every Variable
    that requires grad and that the loss depends on, accumulated into .grad."""
    params = _C.trainable_variables([loss])
    grads = _C.gradients([loss], params, [] if gradient is None else [gradient])
    state = current_trace()
    for p, g in zip(params, grads):
        if g is None:
            continue
        # Python wrappers of one C++ tensor differ: key on the tensor itself.
        if state is not None and p._id() not in state.saved_grads:
            state.saved_grads[p._id()] = (p, p.grad)
        old = p.grad
        if old is None:
            p.grad = g
        elif old.is_symbolic:
            p.grad = old + g
        else:
            raise TracingError(
                f"a parameter (shape {list(p.shape)}) already holds an eager gradient when the traced "
                "function calls backward(); gradients cannot accumulate across compiled calls. Call "
                "opt.zero_grad() (or set .grad = None) before the traced step or inside it.")
        if state is not None and all(q._id() != p._id() for q in state.grad_params):
            state.grad_params.append(p)


_eager_backward = Tensor.backward


def _backward(self, gradient=None, retain_graph=False):
    if self.is_symbolic:
        if gradient is not None and not isinstance(gradient, Tensor):
            from ._ops import _as_tensor
            gradient = _as_tensor(gradient, self)
        return _symbolic_backward(self, gradient)
    return _eager_backward(self, gradient, retain_graph)


Tensor.backward = _backward


# ------------------------------------------------------------- signatures

def _flatten(obj, tensors, path):
    """Replaces tensors in a nested structure by markers; returns a hashable
    template. NumPy arrays count as tensors."""
    if isinstance(obj, np.ndarray):
        from ._ops import as_tensor
        obj = as_tensor(obj)
    if isinstance(obj, Tensor):
        tensors.append((path, obj))
        return ("T", tuple(obj.shape), int(obj.dtype))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(_flatten(v, tensors, f"{path}_{i}") for i, v in enumerate(obj)))
    if isinstance(obj, dict):
        return ("dict", tuple((k, _flatten(obj[k], tensors, f"{path}_{k}")) for k in sorted(obj)))
    try:
        hash(obj)
    except TypeError:
        raise TypeError(f"@ndflow.function arguments must be tensors, arrays, numbers, strings or "
                        f"nested lists/tuples/dicts of them; got an unhashable {type(obj).__name__}") from None
    return ("V", obj)


def _rebuild(template, tensors, it):
    kind = template[0]
    if kind == "T":
        return tensors[next(it)]
    if kind in ("list", "tuple"):
        vals = [_rebuild(t, tensors, it) for t in template[1]]
        return vals if kind == "list" else tuple(vals)
    if kind == "dict":
        return {k: _rebuild(t, tensors, it) for k, t in template[1]}
    return template[1]


def _flatten_outputs(out, tensors):
    if out is None:
        return ("N",)
    if isinstance(out, Tensor):
        tensors.append(out)
        return ("T",)
    if isinstance(out, (list, tuple)):
        return (type(out).__name__, tuple(_flatten_outputs(o, tensors) for o in out))
    if isinstance(out, dict):
        return ("dict", tuple((k, _flatten_outputs(out[k], tensors)) for k in out))
    raise TypeError(f"a traced function may return tensors, None, or lists/tuples/dicts of them; "
                    f"got {type(out).__name__}")


def _unflatten_outputs(template, it):
    kind = template[0]
    if kind == "N":
        return None
    if kind == "T":
        return next(it)
    if kind in ("list", "tuple"):
        vals = [_unflatten_outputs(t, it) for t in template[1]]
        return vals if kind == "list" else tuple(vals)
    return {k: _unflatten_outputs(t, it) for k, t in template[1]}


def _sanitize(name):
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)


class _Entry:
    """One traced signature: its graph and compiled step."""

    def __init__(self, graph, input_names, out_template, num_outputs, grad_params, modules, compiled):
        self.graph = graph
        self.input_names = input_names
        self.out_template = out_template
        self.num_outputs = num_outputs
        self.grad_params = grad_params
        self.modules = modules  # [(weakref to module, training flag at trace time)]
        self.compiled = compiled

    def modes_match(self):
        for ref, flag in self.modules:
            m = ref()
            if m is not None and m.training != flag:
                return False
        return True


class Function:
    """A Python function compiled per input signature; see the module doc."""

    def __init__(self, fn, optimize=True):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._optimize = optimize
        self._cache = {}
        self._last = None
        self.trace_count = 0  # how often the Python body ran (once per signature)
        try:
            self._param_names = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            self._param_names = []

    def __get__(self, obj, objtype=None):  # used as a method
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    # ---------------------------------------------------------------- calls
    def _signature(self, args, kwargs):
        tensors = []
        names = self._param_names
        arg_t = tuple(_flatten(a, tensors, names[i] if i < len(names) else f"arg{i}") for i, a in enumerate(args))
        kw_t = tuple((k, _flatten(kwargs[k], tensors, k)) for k in sorted(kwargs))
        key = (arg_t, kw_t, _C.is_grad_enabled())
        return key, tensors

    def __call__(self, *args, **kwargs):
        if _active:  # called from inside another trace: inline it
            return self._fn(*args, **kwargs)
        key, tensors = self._signature(args, kwargs)
        entries = self._cache.setdefault(key, [])
        entry = next((e for e in entries if e.modes_match()), None)
        if entry is None:
            entry = self._trace(args, kwargs, key, tensors)
            entries.append(entry)
        self._last = entry
        outs = entry.compiled([t for _, t in tensors])
        n = entry.num_outputs
        for p, g in zip(entry.grad_params, outs[n:]):
            p.grad = g
        return _unflatten_outputs(entry.out_template, iter(outs[:n]))

    # -------------------------------------------------------------- tracing
    def _build(self, args, kwargs, key, tensors, batch_dynamic=False):
        graph = _C.Graph()
        state = _TraceState()
        input_names = []
        used = set()
        _active.append(state)
        try:
            with _C.GraphScope(graph):
                placeholders = []
                for path, t in tensors:
                    name = _sanitize(path)
                    while name in used:
                        name += "_"
                    used.add(name)
                    shape = list(t.shape)
                    if batch_dynamic and shape:
                        shape[0] = -1
                    placeholders.append(graph.placeholder(name, shape, t.dtype))
                    input_names.append(name)
                arg_t, kw_t, _ = key
                it = iter(range(len(placeholders)))
                a = [_rebuild(t, placeholders, it) for t in arg_t]
                k = {name: _rebuild(t, placeholders, it) for name, t in kw_t}
                self.trace_count += 1
                out = self._fn(*a, **k)
                flat = []
                template = _flatten_outputs(out, flat)
                for i, t in enumerate(flat):
                    if not t.is_symbolic:  # a constant or a Variable returned as is
                        t = _C.identity(t)
                    graph.mark_output(f"output_{i}", t)
                grad_params = list(state.grad_params)
                for j, p in enumerate(grad_params):
                    graph.mark_output(f"grad_{j}", p.grad)
        finally:
            _active.pop()
            for p, before in state.saved_grads.values():
                p.grad = before
        modules = [(weakref.ref(m), m.training) for m in dict.fromkeys(state.modules)]
        return graph, input_names, template, len(flat), grad_params, modules

    def _trace(self, args, kwargs, key, tensors):
        graph, input_names, template, n_out, grad_params, modules = self._build(args, kwargs, key, tensors)
        fetches = [f"output_{i}" for i in range(n_out)] + [f"grad_{j}" for j in range(len(grad_params))]
        session = _C.Session(graph, optimize=self._optimize)
        compiled = _C.CompiledFunction(session, input_names, fetches, graph.side_effect_nodes())
        return _Entry(graph, input_names, template, n_out, grad_params, modules, compiled)

    # ------------------------------------------------------------ inspection
    @property
    def graph(self):
        """The graph of the most recent call's signature."""
        if self._last is None:
            raise RuntimeError("the function has not been called yet: call it once to trace it")
        return self._last.graph

    def export_graph(self, *args, dynamic_batch=True, **kwargs):
        """A graph for saving: traced again with the leading dimension of
        every input left unknown (any batch size), falling back to the
        traced shapes when the function needs them."""
        if args or kwargs:
            key, tensors = self._signature(args, kwargs)
        elif self._last is not None:
            key, tensors = self._last_key, self._last_tensors
        else:
            raise RuntimeError("call the function once (or pass example inputs) before saving it")
        count = self.trace_count
        try:
            if not dynamic_batch:
                raise ValueError("static shapes requested")
            graph, names, template, n_out, _, _ = self._build(args, kwargs, key, tensors, batch_dynamic=True)
        except (ValueError, TypeError, TracingError):
            graph, names, template, n_out, _, _ = self._build(args, kwargs, key, tensors)
        self.trace_count = count  # exporting is not a call
        return graph, names, template

    def _remember(self, key, tensors):
        self._last_key, self._last_tensors = key, tensors


def function(fn=None, *, optimize=True):
    """Decorator: compile ``fn`` into a static graph per input signature."""
    if fn is None:
        return lambda f: Function(f, optimize=optimize)
    return Function(fn, optimize=optimize)


# Keep the example inputs of the latest call for export.
_orig_call = Function.__call__


def _call_and_remember(self, *args, **kwargs):
    if not _active:
        key, tensors = self._signature(args, kwargs)
        self._remember(key, [(p, t) for p, t in tensors])
    return _orig_call(self, *args, **kwargs)


Function.__call__ = _call_and_remember


# ------------------------------------------------------------ save / load

def save(f, path, *example_inputs, dynamic_batch=True):
    """Exports a traced function with its Variables to an .ndf file that
    ``ndflow-run`` and ``ndflow.load`` run. Inputs are named after the
    function's parameters; outputs are output_0, output_1, ..."""
    if not isinstance(f, Function):
        raise TypeError("ndflow.save exports an @ndflow.function; wrap the function first")
    graph, names, template = f.export_graph(*example_inputs, dynamic_batch=dynamic_batch)
    meta = {"ndflow.outputs": json.dumps(template), "ndflow.function": getattr(f, "__name__", "function")}
    _C.save_graph(str(path), graph, meta)


class LoadedFunction:
    """A graph loaded from an .ndf file, callable like the function it came from."""

    def __init__(self, path):
        self.graph, self.metadata = _C.load_graph(str(path))
        self.input_names = self.graph.input_names()
        self.output_names = self.graph.output_names()
        session = _C.Session(self.graph)
        self._compiled = _C.CompiledFunction(session, self.input_names, self.output_names, [])
        tmpl = self.metadata.get("ndflow.outputs")
        self._template = _to_tuple(json.loads(tmpl)) if tmpl else None

    def __call__(self, *args, **kwargs):
        from ._ops import as_tensor
        if kwargs:
            args = list(args) + [kwargs.pop(n) for n in self.input_names[len(args):] if n in kwargs]
            if kwargs:
                raise TypeError(f"unknown inputs {sorted(kwargs)}; the graph takes {self.input_names}")
        outs = self._compiled([as_tensor(a) for a in args])
        if self._template is not None:
            return _unflatten_outputs(self._template, iter(outs))
        return outs[0] if len(outs) == 1 else tuple(outs)


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def load(path):
    """Loads an exported function (see ``save``) as a callable."""
    return LoadedFunction(path)
