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

A trace is reused while the input signature (shapes, dtypes, non-tensor
arguments, grad mode) is the same, the modules it ran have the same
train/eval flags and the optimizers it stepped have the same settings
(other than lr); otherwise the Python body runs again (``trace_count``).
After a call, ``p.grad`` of every parameter the step differentiated holds
the gradient that call computed (fetched from the graph).

Data parallel: under ``mpirun``, a step whose model is wrapped in
``ndflow.distributed.DataParallel`` is rewritten by the graph data-parallel
pass (runtime/passes/data_parallel.h): the gradients the optimizer reads are
averaged over the ranks by bucketed ``all_reduce_coalesced`` nodes inserted
right after backward produces them, which the executor overlaps with the
rest of backward. ``@ndflow.function(data_parallel=True)`` asks for it
without the wrapper (and in a world of one, where the buckets are copies);
``data_parallel=False`` turns it off; ``bucket_mb`` sets the bucket size
(default: the DataParallel module's, else 25). The step then reads exactly
like PyTorch DDP's (no sync call); ``p.grad`` holds the averaged gradient.
"""
import functools
import inspect
import json
import threading
import weakref

import numpy as np

from . import _C
from ._C import Tensor, TracingError

_local = threading.local()


def _stack():
    s = getattr(_local, "stack", None)
    if s is None:
        s = _local.stack = []
    return s


class _TraceState:
    def __init__(self):
        self.grad_params = []       # Variables whose .grad a symbolic backward set
        self.saved_grads = {}       # id -> (param, .grad before the trace)
        self.zeroed = set()         # ids of tensors whose .grad the function reset (zero_grad)
        self.modules = []           # modules whose forward ran, for the training flags
        self.optimizers = []        # optimizers whose step() ran, for their hyperparameter versions


def current_trace():
    """The innermost trace in progress on this thread, or None."""
    s = _stack()
    return s[-1] if s else None


def _note_zeroed(t):
    """Called by zero_grad (and ``t.grad = None``) inside a trace: the
    compiled function then starts that gradient from zero on every call."""
    state = current_trace()
    if state is not None:
        state.zeroed.add(t._id())


# ``t.grad = None`` inside a trace counts as zeroing the gradient.
_grad_property = Tensor.__dict__["grad"]


def _set_grad(self, value):
    if value is None:
        _note_zeroed(self)
    _grad_property.fset(self, value)


Tensor.grad = property(_grad_property.fget, _set_grad, doc=_grad_property.__doc__)


def _symbolic_backward(loss, gradient=None):
    """loss.backward() on a symbolic loss: gradient nodes for every Variable
    that requires grad and that the loss depends on, accumulated into .grad."""
    params = _C.trainable_variables([loss])
    grads = _C.gradients([loss], params, [] if gradient is None else [gradient])
    state = current_trace()
    for p, g in zip(params, grads):
        if g is None:
            continue
        old = p.grad
        if old is not None and not old.is_symbolic:
            raise TracingError(
                f"a parameter (shape {list(p.shape)}) already holds an eager gradient when the traced "
                "function calls backward(); gradients cannot accumulate across compiled calls. Call "
                "opt.zero_grad() (or set .grad = None) before the traced step or inside it.")
        # Python wrappers of one C++ tensor differ: key on the tensor itself.
        if state is not None and p._id() not in state.saved_grads:
            state.saved_grads[p._id()] = (p, old)
            state.grad_params.append(p)
        _grad_property.fset(p, g if old is None else old + g)


_eager_backward = Tensor.backward


def _backward(self, gradient=None, retain_graph=False, inputs=None):
    if self.is_symbolic:
        if inputs is not None:
            raise NotImplementedError("backward(inputs=...) is not supported inside a traced function; "
                                      "use ndflow.grad(loss, inputs)")
        if gradient is not None and not isinstance(gradient, Tensor):
            from ._ops import _as_tensor
            gradient = _as_tensor(gradient, self)
        return _symbolic_backward(self, gradient)
    if inputs is not None:
        raise NotImplementedError("backward(inputs=...) is not supported; use ndflow.grad(loss, inputs)")
    return _eager_backward(self, gradient, retain_graph)


Tensor.backward = _backward


# ------------------------------------------------------------- signatures

class _Spec:
    """What a trace needs of an input tensor: its shape and dtype."""
    __slots__ = ("shape", "dtype")

    def __init__(self, t):
        self.shape, self.dtype = tuple(t.shape), t.dtype


def _flatten(obj, tensors, path):
    """Replaces tensors in a nested structure by markers; returns a hashable
    template. NumPy arrays count as tensors."""
    if isinstance(obj, np.ndarray):
        from ._ops import as_tensor
        obj = as_tensor(obj)
    if isinstance(obj, Tensor):
        if obj.is_symbolic:
            raise TracingError("a symbolic tensor (from a trace that has ended, or from a graph scope) was "
                               "passed to a compiled function; pass concrete tensors")
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
    # The type is part of the key: f(x, 1), f(x, 1.0) and f(x, True) trace separately.
    return ("V", type(obj), obj)


def _rebuild(template, tensors, it):
    kind = template[0]
    if kind == "T":
        return tensors[next(it)]
    if kind in ("list", "tuple"):
        vals = [_rebuild(t, tensors, it) for t in template[1]]
        return vals if kind == "list" else tuple(vals)
    if kind == "dict":
        return {k: _rebuild(t, tensors, it) for k, t in template[1]}
    return template[2]


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


def _describe(specs):
    return ", ".join(f"{path}: {s.dtype.name}{list(s.shape)}" for path, s in specs)


class _Trace:
    """The result of running the Python body once on placeholders."""

    def __init__(self, graph, input_names, template, num_outputs, grad_params, zeroed, modules, optimizers):
        self.data_parallel_report = None  # the pass's report line, when it ran
        self.graph = graph
        self.input_names = input_names
        self.template = template
        self.num_outputs = num_outputs
        self.grad_params = grad_params
        self.zeroed = zeroed
        self.modules = modules
        self.optimizers = optimizers


# Bumped whenever a module's training flag changes, so that a cached trace
# re-checks the flags it was traced with only after such a change.
_mode_epoch = [0]


def training_flags_changed():
    _mode_epoch[0] += 1


class _Entry:
    """One traced signature: its graph and compiled step."""

    def __init__(self, trace, compiled):
        self.graph = trace.graph
        self.data_parallel_report = trace.data_parallel_report
        self.input_names = trace.input_names
        self.out_template = trace.template
        self.num_outputs = trace.num_outputs
        self.grad_params = trace.grad_params
        # Gradients the function does not reset itself: they must be None when it
        # is called, since the compiled step cannot add to an existing .grad.
        self.unzeroed = [p for p in trace.grad_params if p._id() not in trace.zeroed]
        self.modules = [(weakref.ref(m), m.training) for m in dict.fromkeys(trace.modules)]
        self.optimizers = [(weakref.ref(o), o.hyperparameter_version) for o in dict.fromkeys(trace.optimizers)]
        self.compiled = compiled
        self.mode_epoch = -1

    def stale(self):
        """An optimizer the trace stepped has other settings now (versions only grow)."""
        for ref, version in self.optimizers:
            o = ref()
            if o is not None and o.hyperparameter_version != version:
                return True
        return False

    def valid(self):
        """Traced with the current training flags and optimizer settings."""
        if self.mode_epoch != _mode_epoch[0]:
            if not self.modes_match():
                return False
            self.mode_epoch = _mode_epoch[0]
        return not self.optimizers or not self.stale()

    def modes_match(self):
        for ref, flag in self.modules:
            m = ref()
            if m is not None and m.training != flag:
                return False
        return True


class Function:
    """A Python function compiled per input signature; see the module doc."""

    def __init__(self, fn, optimize=True, data_parallel=None, bucket_mb=None):
        functools.update_wrapper(self, fn)
        if data_parallel not in (None, True, False):
            raise TypeError(f"data_parallel must be None (automatic), True or False, got {data_parallel!r}")
        if bucket_mb is not None and not (isinstance(bucket_mb, (int, float)) and bucket_mb > 0):
            raise ValueError(f"bucket_mb must be a positive number, got {bucket_mb!r}")
        self._fn = fn
        self._optimize = optimize
        self._data_parallel = data_parallel
        self._bucket_mb = bucket_mb
        self._cache = {}
        self._last = None
        self._last_call = None  # (key, [(path, _Spec)]) of the latest call, for export
        self._fast = {}         # (shapes, dtypes, grad mode) of all-tensor calls -> entry
        self.trace_count = 0  # how often the Python body ran (once per signature)
        try:
            self._param_names = [p.name for p in inspect.signature(fn).parameters.values()
                                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            self._param_names = []

    def __get__(self, obj, objtype=None):  # used as a method
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    def __repr__(self):
        return f"<ndflow.function {getattr(self, '__qualname__', self._fn)}: {self.trace_count} trace(s)>"

    # ---------------------------------------------------------------- calls
    def _signature(self, args, kwargs):
        tensors = []
        names = self._param_names
        arg_t = tuple(_flatten(a, tensors, names[i] if i < len(names) else f"arg{i}") for i, a in enumerate(args))
        kw_t = tuple((k, _flatten(kwargs[k], tensors, k)) for k in sorted(kwargs))
        key = (arg_t, kw_t, _C.is_grad_enabled())
        return key, tensors

    def __call__(self, *args, **kwargs):
        if _stack():  # called from inside another trace: inline it
            return self._fn(*args, **kwargs)
        # Fast path, the common training-step call f(x, y): only tensors,
        # positionally, with a signature seen before.
        fast = None
        if not kwargs and all(type(a) is Tensor for a in args):
            fast = (tuple([a.shape for a in args]), tuple([a.dtype for a in args]), _C.is_grad_enabled())
            entry = self._fast.get(fast)
            if entry is not None and entry.valid() and not any(a.is_symbolic for a in args):
                self._last = entry
                self._last_call = entry.call_spec
                return self._run(entry, args)
        key, tensors = self._signature(args, kwargs)
        specs = [(p, _Spec(t)) for p, t in tensors]
        self._last_call = (key, specs)
        entries = self._cache.get(key)
        entry = next((e for e in entries or () if e.modes_match() and not e.stale()), None)
        if entry is None:
            self._prune()
            trace = self._build(key, specs)
            self._apply_data_parallel(trace)
            fetches = [f"output_{i}" for i in range(trace.num_outputs)] + \
                      [f"grad_{j}" for j in range(len(trace.grad_params))]
            session = _C.Session(trace.graph, optimize=self._optimize)
            compiled = _C.CompiledFunction(session, trace.input_names, fetches, trace.graph.side_effect_nodes())
            entry = _Entry(trace, compiled)
            self._cache.setdefault(key, []).append(entry)
        entry.call_spec = (key, specs)
        if fast is not None:
            self._fast[fast] = entry
        self._last = entry
        return self._run(entry, [t for _, t in tensors])

    def _run(self, entry, tensors):
        for p in entry.unzeroed:
            if p.grad is not None:
                raise RuntimeError(
                    f"a parameter (shape {list(p.shape)}) holds a gradient from an earlier call, and "
                    f"{self.__name__} does not reset it before backward(): a compiled step cannot add to an "
                    "existing .grad. Call opt.zero_grad() inside the traced function (as in a PyTorch training "
                    "step) or before each call.")
        outs = entry.compiled(list(tensors))
        n = entry.num_outputs
        if entry.grad_params:
            _C.set_grads(entry.grad_params, outs[n:])
        return _unflatten_outputs(entry.out_template, iter(outs[:n]))

    def _prune(self):
        """Drops traces whose optimizer settings changed (they never match again)."""
        self._fast = {k: e for k, e in self._fast.items() if not e.stale()}
        for k in list(self._cache):
            live = [e for e in self._cache[k] if not e.stale()]
            if live:
                self._cache[k] = live
            else:
                del self._cache[k]

    # -------------------------------------------------------------- tracing
    def _build(self, key, specs, batch_dynamic=False, for_export=False):
        graph = _C.Graph()
        state = _TraceState()
        input_names = []
        used = set()
        stack = _stack()
        stack.append(state)
        try:
            with _C.GraphScope(graph):
                placeholders = []
                for path, spec in specs:
                    name = _sanitize(path)
                    while name in used:
                        name += "_"
                    used.add(name)
                    shape = list(spec.shape)
                    if batch_dynamic and shape:
                        shape[0] = -1
                    placeholders.append(graph.placeholder(name, shape, spec.dtype))
                    input_names.append(name)
                arg_t, kw_t, _ = key
                it = iter(range(len(placeholders)))
                a = [_rebuild(t, placeholders, it) for t in arg_t]
                k = {name: _rebuild(t, placeholders, it) for name, t in kw_t}
                self.trace_count += 1
                try:
                    out = self._fn(*a, **k)
                except Exception as e:
                    if hasattr(e, "add_note"):
                        e.add_note(f"(while tracing {self.__name__}({_describe(specs)}) into a graph)")
                    raise
                flat = []
                template = _flatten_outputs(out, flat)
                for i, t in enumerate(flat):
                    if not t.is_symbolic:  # a constant or a Variable returned as is
                        t = _C.identity(t)
                    graph.mark_output(f"output_{i}", t)
                grad_params = [] if for_export else list(state.grad_params)
                for j, p in enumerate(grad_params):
                    graph.mark_output(f"grad_{j}", p.grad)
        finally:
            stack.pop()
            for p, before in state.saved_grads.values():
                _grad_property.fset(p, before)
        return _Trace(graph, input_names, template, len(flat), grad_params, state.zeroed, state.modules,
                      state.optimizers)

    def _apply_data_parallel(self, trace):
        """Runs the graph data-parallel pass on a new trace when asked for
        (data_parallel=True) or, automatically, when the step ran a
        DataParallel module in a world of several ranks."""
        if self._data_parallel is False:
            return
        from .distributed.data_parallel import DataParallel
        wrappers = [m for m in trace.modules if isinstance(m, DataParallel)]
        if self._data_parallel is None and not (wrappers and wrappers[0].world_size > 1):
            return
        if self._bucket_mb is not None:
            bucket_bytes = int(self._bucket_mb * (1 << 20))
        elif wrappers:
            bucket_bytes = wrappers[0].bucket_bytes
        else:
            bucket_bytes = 25 << 20
        trace.data_parallel_report = _C._distributed.data_parallel_pass(trace.graph, max(1, bucket_bytes))

    # ------------------------------------------------------------ inspection
    @property
    def data_parallel_report(self):
        """What the data-parallel pass did to the most recent call's graph
        (one line, like the other passes' reports), or None if it did not run."""
        return None if self._last is None else self._last.data_parallel_report

    @property
    def graph(self):
        """The graph of the most recent call's signature."""
        if self._last is None:
            raise RuntimeError("the function has not been called yet: call it once to trace it")
        return self._last.graph

    def export_graph(self, *args, dynamic_batch=True, **kwargs):
        """A graph for saving, traced again (the Python body runs, but
        ``trace_count`` does not change) with the leading dimension of every
        input left unknown (any batch size), falling back to the traced
        shapes when the function needs them. Returns (graph, input names,
        output template)."""
        if args or kwargs:
            key, tensors = self._signature(args, kwargs)
            specs = [(p, _Spec(t)) for p, t in tensors]
        elif self._last_call is not None:
            key, specs = self._last_call
        else:
            raise RuntimeError("call the function once (or pass example inputs) before saving it")
        count = self.trace_count
        try:
            trace = None
            if dynamic_batch and any(s.shape for _, s in specs):
                try:
                    trace = self._build(key, specs, batch_dynamic=True, for_export=True)
                except (ValueError, TypeError, IndexError, TracingError):
                    trace = None
            if trace is None:
                trace = self._build(key, specs, for_export=True)
        finally:
            self.trace_count = count  # exporting is not a call
        return trace.graph, trace.input_names, trace.template


def function(fn=None, *, optimize=True, data_parallel=None, bucket_mb=None):
    """Decorator: compile ``fn`` into a static graph per input signature.
    ``data_parallel``/``bucket_mb``: see the module doc (None: automatic)."""
    if fn is None:
        return lambda f: Function(f, optimize=optimize, data_parallel=data_parallel, bucket_mb=bucket_mb)
    return Function(fn, optimize=optimize, data_parallel=data_parallel, bucket_mb=bucket_mb)


# ------------------------------------------------------------ save / load

def save(f, path, *example_inputs, dynamic_batch=True):
    """Exports a traced function with its Variables to an .ndf file that
    ``ndflow-run`` and ``ndflow.load`` run. Inputs are named after the
    function's parameters; outputs are output_0, output_1, ... The leading
    dimension of every input is left open (any batch size) unless
    ``dynamic_batch=False`` or the function needs the traced size."""
    if not isinstance(f, Function):
        raise TypeError("ndflow.save exports an @ndflow.function; wrap the function first")
    graph, names, template = f.export_graph(*example_inputs, dynamic_batch=dynamic_batch)
    meta = {"ndflow.outputs": json.dumps(template), "ndflow.function": getattr(f, "__name__", "function")}
    _C.save_graph(str(path), graph, meta)


class LoadedFunction:
    """A graph loaded from an .ndf file, callable like the function it came from."""

    def __init__(self, path):
        self.path = str(path)
        self.graph, self.metadata = _C.load_graph(self.path)
        self.input_names = self.graph.input_names()
        self.input_specs = [(list(shape), dtype) for shape, dtype in self.graph.input_shapes()]
        self.output_names = self.graph.output_names()
        self.__name__ = self.metadata.get("ndflow.function", "function")
        session = _C.Session(self.graph)
        self._compiled = _C.CompiledFunction(session, self.input_names, self.output_names,
                                             self.graph.side_effect_nodes())
        tmpl = self.metadata.get("ndflow.outputs")
        self._template = _to_tuple(json.loads(tmpl)) if tmpl else None

    def signature(self):
        return ", ".join(f"{n}: {d.name}{s}" for n, (s, d) in zip(self.input_names, self.input_specs))

    def __repr__(self):
        return f"<ndflow.LoadedFunction {self.__name__}({self.signature()}) from {self.path}>"

    def __call__(self, *args, **kwargs):
        from ._ops import as_tensor
        n = len(self.input_names)
        where = f"{self.__name__}({self.signature()}) loaded from {self.path}"
        if len(args) > n:
            raise TypeError(f"{where} takes {n} input(s), got {len(args)}")
        vals = list(args) + [None] * (n - len(args))
        for k, v in kwargs.items():
            if k not in self.input_names:
                raise TypeError(f"{where} has no input '{k}'")
            i = self.input_names.index(k)
            if i < len(args):
                raise TypeError(f"{where} got input '{k}' twice (by position and by name)")
            vals[i] = v
        missing = [name for name, v in zip(self.input_names, vals) if v is None]
        if missing:
            raise TypeError(f"{where}: missing input(s) {missing}")
        tensors = []
        for name, v, (shape, dtype) in zip(self.input_names, vals, self.input_specs):
            t = as_tensor(v)
            if t.dtype != dtype:
                raise TypeError(f"{where}: input '{name}' must have dtype {dtype.name}, got {t.dtype.name}")
            got = list(t.shape)
            if len(got) != len(shape) or any(s != -1 and s != g for s, g in zip(shape, got)):
                raise ValueError(f"{where}: input '{name}' must have shape {shape} (-1: any size), got {got}")
            tensors.append(t)
        outs = self._compiled(tensors)
        if self._template is not None:
            return _unflatten_outputs(self._template, iter(outs))
        return outs[0] if len(outs) == 1 else tuple(outs)


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def load(path):
    """Loads an exported function (see ``save``) as a callable."""
    return LoadedFunction(path)
