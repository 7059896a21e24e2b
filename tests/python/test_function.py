"""@ndflow.function: tracing once per signature, compiled training steps,
TracingError on value-dependent Python, random ops and train/eval in
traces, export to .ndf for ndflow-run and ndflow.load."""

import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn, optim

REPO = Path(__file__).resolve().parents[2]
NDFLOW_RUN = Path(os.environ.get("NDFLOW_RUN", REPO / "build" / "tools" / "ndflow-run"))


def _mlp(dropout=0.0):
    layers = [nn.Flatten(), nn.Linear(12, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(16, 3))


def _batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 4)).astype(np.float32), rng.integers(0, 3, n)


# ------------------------------------------------------------- tracing cache

def test_body_runs_once_per_signature():
    calls = []

    @nd.function
    def f(x, y, scale=1.0):
        calls.append(1)
        return x * scale + y

    a, b = nd.ones([2, 3]), nd.ones([3])
    for _ in range(5):
        out = f(a, b)
    np.testing.assert_array_equal(out.numpy(), np.full((2, 3), 2.0))
    assert f.trace_count == 1 == len(calls)
    f(nd.ones([4, 3]), b)                    # new shape: traced again
    f(a.to(nd.float64), b.to(nd.float64))   # new dtype
    f(a, b, scale=3.0)                       # new Python value
    f(a, b, scale=3)                         # an int is not the float 3.0
    assert f.trace_count == 5
    np.testing.assert_array_equal(f(a, b, scale=3.0).numpy(), np.full((2, 3), 4.0))
    f(a, b)
    f(np.ones((4, 3), np.float32), b)        # NumPy arrays are inputs like tensors
    assert f.trace_count == 5 == len(calls)
    with nd.no_grad():                       # grad mode is part of the signature
        f(a, b)
    assert f.trace_count == 6


def test_structured_inputs_and_outputs():
    @nd.function
    def f(pair, opts):
        x, y = pair
        return {"sum": x + y, "both": (x * opts["k"], None)}

    out = f((nd.ones([2]), nd.full([2], 2.0)), {"k": nd.full([2], 5.0)})
    np.testing.assert_array_equal(out["sum"].numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(out["both"][0].numpy(), [5.0, 5.0])
    assert out["both"][1] is None
    assert f.graph.input_names() == ["pair_0", "pair_1", "opts_k"]

    @nd.function
    def bad(x):
        return "not a tensor"

    with pytest.raises(TypeError, match="may return tensors"):
        bad(nd.ones([1]))
    with pytest.raises(TypeError, match="unhashable"):
        f((nd.ones([2]), nd.ones([2])), {"k": [np.ones(2)], "z": {1}})


def test_graph_property_and_repr():
    @nd.function
    def f(x):
        return nd.relu(x) * 2

    with pytest.raises(RuntimeError, match="not been called"):
        f.graph
    f(nd.ones([2, 2]))
    text = str(f.graph)
    assert "placeholder" in text and "relu" in text and "output output_0" in text
    assert "1 trace" in repr(f)


def test_nested_functions_inline_and_methods():
    @nd.function
    def inner(x):
        return x + 1

    @nd.function
    def outer(x):
        return inner(x) * 2

    np.testing.assert_array_equal(outer(nd.zeros([2])).numpy(), [2.0, 2.0])
    assert inner.trace_count == 0  # inlined into outer's trace

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        @nd.function
        def forward(self, x):
            return self.fc(x)

    m1, m2 = Model(), Model()
    x = nd.ones([1, 2])
    np.testing.assert_allclose(m1(x).numpy(), (nd.ones([1, 2]) @ m1.fc.weight.T + m1.fc.bias).detach().numpy(),
                               rtol=1e-6)
    assert not np.allclose(m1(x).numpy(), m2(x).numpy())


def test_closed_over_variables_are_read_by_reference():
    var = nd.full([2], 1.0).mark_variable("v")

    @nd.function
    def f(x):
        return x + var * 2

    np.testing.assert_array_equal(f(nd.zeros([2])).numpy(), [2.0, 2.0])
    var.fill_(10.0)
    np.testing.assert_array_equal(f(nd.zeros([2])).numpy(), [20.0, 20.0])


def test_closed_over_plain_tensors_are_baked_in():
    const = nd.full([2], 1.0)

    @nd.function
    def f(x):
        return x + const * 2 + const

    np.testing.assert_array_equal(f(nd.zeros([2])).numpy(), [3.0, 3.0])
    const.fill_(10.0)
    np.testing.assert_array_equal(f(nd.zeros([2])).numpy(), [3.0, 3.0])


def test_compiled_functions_run_from_several_threads():
    lin = nn.Linear(32, 32)

    @nd.function
    def f(x):
        return nd.relu(lin(x)).sum(1)

    xs = [nd.randn(16, 32) for _ in range(4)]
    want = [f(x).numpy().copy() for x in xs]
    bad = []

    def run(i):
        for _ in range(50):
            if not np.array_equal(f(xs[i]).numpy(), want[i]):
                bad.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad and f.trace_count == 1


# ------------------------------------------------------------ training steps

def test_training_step_traces_once_and_trains():
    nd.manual_seed(0)
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    @nd.function
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = _batch(32)
    losses = [step(x, y).item() for _ in range(30)]
    assert step.trace_count == 1
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None and not p.grad.is_symbolic for p in model.parameters())
    # Eager evaluation agrees with what the compiled step left in the Variables.
    with nd.no_grad():
        eager = loss_fn(model(nd.tensor(x)), nd.tensor(y)).item()
    np.testing.assert_allclose(step(x, y).item(), eager, rtol=1e-5)


def test_backward_without_step_sets_grads_and_autograd_grad_works():
    lin = nn.Linear(3, 1)
    x = nd.randn(4, 3)
    xe = x.detach().requires_grad_()
    le = (lin(xe) ** 2).mean()
    le.backward()
    want_w, want_x = lin.weight.grad.numpy().copy(), xe.grad.numpy().copy()
    lin.zero_grad()

    @nd.function
    def grads(x):
        lin.zero_grad()
        loss = (lin(x) ** 2).mean()
        (gx,) = nd.grad(loss, [x])
        loss.backward()
        return loss, gx

    for _ in range(2):
        loss, gx = grads(x)
        np.testing.assert_allclose(loss.item(), le.item(), rtol=1e-6)
        np.testing.assert_allclose(gx.numpy(), want_x, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(lin.weight.grad.numpy(), want_w, rtol=1e-5, atol=1e-7)
    assert grads.trace_count == 1


def test_gradients_cannot_silently_accumulate_across_calls():
    lin = nn.Linear(3, 1)

    @nd.function
    def only_backward(x):  # no zero_grad inside
        lin(x).sum().backward()

    x = nd.ones([2, 3])
    only_backward(x)
    with pytest.raises(RuntimeError, match="zero_grad"):
        only_backward(x)
    lin.zero_grad()
    only_backward(x)  # fine again

    lin.zero_grad()
    lin(x).sum().backward()  # an eager gradient is present when tracing

    @nd.function
    def traced_after(x):
        lin(x).sum().backward()

    with pytest.raises(nd.TracingError, match="zero_grad"):
        traced_after(x)

    @nd.function
    def resets(x):
        for p in lin.parameters():
            p.grad = None  # counts as zeroing, like opt.zero_grad()
        lin(x).sum().backward()

    resets(x)
    resets(x)
    np.testing.assert_allclose(lin.bias.grad.numpy(), [2.0])


# ------------------------------------------------------------- TracingError

def test_value_dependent_python_raises_tracing_error():
    lin = nn.Linear(3, 1)

    @nd.function
    def branch(x):
        loss = lin(x).sum()
        if loss > 0:
            return loss
        return -loss

    with pytest.raises(nd.TracingError, match="ndflow.where") as e:
        branch(nd.ones([2, 3]))
    assert "while tracing branch(x: float32[2, 3])" in "".join(getattr(e.value, "__notes__", []))

    def call(body):
        return nd.function(body)(nd.ones([2, 3]))

    with pytest.raises(nd.TracingError, match="item"):
        call(lambda x: lin(x).sum().item())
    with pytest.raises(nd.TracingError, match="numpy"):
        call(lambda x: lin(x).numpy())
    with pytest.raises(nd.TracingError, match="float"):
        call(lambda x: float(lin(x).sum()))
    with pytest.raises(nd.TracingError, match="tolist"):
        call(lambda x: lin(x).tolist())
    assert issubclass(nd.TracingError, Exception)
    # The failed traces left no symbolic gradients behind.
    assert lin.weight.grad is None


def test_escaped_symbolic_tensor_raises_when_used():
    leaked = []

    @nd.function
    def f(x):
        y = x * 2
        leaked.append(y)
        return y

    f(nd.ones([2]))
    with pytest.raises(ValueError, match="outside of its graph"):
        leaked[0] + 1
    with pytest.raises(nd.TracingError, match="concrete"):
        f(leaked[0])


# ----------------------------------------------------- randomness and modes

def test_dropout_draws_a_new_mask_each_call_like_eager():
    drop = nn.Dropout(0.5)
    x = nd.ones([8, 16])
    nd.manual_seed(0)
    eager = [drop(x).numpy().copy() for _ in range(3)]

    @nd.function
    def f(x):
        return drop(x)

    nd.manual_seed(0)
    compiled = [f(x).numpy().copy() for _ in range(3)]
    assert f.trace_count == 1
    assert not np.array_equal(compiled[0], compiled[1])
    for e, c in zip(eager, compiled):  # the generator state is a Variable the graph reads and advances
        np.testing.assert_array_equal(c, e)


def test_train_and_eval_select_different_traces():
    nd.manual_seed(0)
    model = _mlp(dropout=0.5)

    @nd.function
    def predict(x):
        return model(x)

    x, _ = _batch(16)
    a, b = predict(x).numpy().copy(), predict(x).numpy().copy()
    assert not np.array_equal(a, b)  # dropout active
    model.eval()
    c, d = predict(x).numpy().copy(), predict(x).numpy().copy()
    np.testing.assert_array_equal(c, d)
    with nd.no_grad():
        np.testing.assert_allclose(c, model(nd.tensor(x)).numpy(), rtol=1e-6)
    assert predict.trace_count == 2
    assert "bernoulli" not in predict.graph.op_counts()  # the eval trace has no dropout
    model.train()
    predict(x)
    assert "bernoulli" in predict.graph.op_counts()
    model.eval()
    predict(x)
    assert predict.trace_count == 2


def test_traced_dropout_training_step_matches_eager():
    x, y = _batch(8)
    results = []
    for compiled in (False, True):
        nd.manual_seed(1)
        model = _mlp(dropout=0.3)
        opt = optim.Adam(model.parameters(), lr=0.01)
        loss_fn = nn.CrossEntropyLoss()

        def step(x, y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = nd.function(step)
        results.append([step(nd.tensor(x), nd.tensor(y)).item() for _ in range(5)])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5)


# ------------------------------------------------------------ export / load

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    nd.manual_seed(0)
    model = _mlp(dropout=0.5)
    opt = optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    @nd.function
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = _batch(32)
    for _ in range(5):
        step(x, y)
    model.eval()

    @nd.function
    def predict(x):
        return nd.softmax(model(x), -1)

    predict(x[:4])
    path = tmp_path_factory.mktemp("export") / "model.ndf"
    nd.save(predict, path)
    assert predict.trace_count == 1  # exporting traced again, but is not a call
    return path, predict, model


def test_load_round_trip_any_batch_size(exported):
    path, predict, _ = exported
    loaded = nd.load(path)
    assert loaded.input_names == ["x"] and loaded.output_names == ["output_0"]
    assert loaded.input_specs[0][0] == [-1, 3, 4]
    for n in (4, 7, 1):
        x, _ = _batch(n, seed=n)
        np.testing.assert_allclose(loaded(x).numpy(), predict(x).numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(loaded(x=x).numpy(), predict(x).numpy(), rtol=1e-6, atol=1e-7)
    assert "predict(x: float32[-1, 3, 4])" in repr(loaded)


def test_loaded_function_errors(exported):
    loaded = nd.load(exported[0])
    x, _ = _batch(2)
    with pytest.raises(TypeError, match=r"takes 1 input\(s\), got 2"):
        loaded(x, x)
    with pytest.raises(TypeError, match="missing input"):
        loaded()
    with pytest.raises(TypeError, match="no input 'y'"):
        loaded(y=x)
    with pytest.raises(TypeError, match="twice"):
        loaded(x, x=x)
    with pytest.raises(ValueError, match=r"shape \[-1, 3, 4\].*got \[2, 12\]"):
        loaded(x.reshape(2, 12))
    with pytest.raises(TypeError, match="dtype float32, got float64"):
        loaded(x.astype(np.float64))
    with pytest.raises(Exception, match="model.ndf|NDFLOW|magic|file"):
        nd.load(Path(exported[0]).with_name("missing.ndf"))


def test_compiled_function_input_errors():
    lin = nn.Linear(3, 2)

    @nd.function
    def f(x):
        return lin(x)

    f(nd.ones([2, 3]))
    with pytest.raises(TypeError, match="positional argument"):
        f(nd.ones([2, 3]), nd.ones([2, 3]))
    with pytest.raises(ValueError, match="inner dimensions") as e:
        f(nd.ones([2, 4]))  # a new signature is traced, and the op says what is wrong
    assert "while tracing f(x: float32[2, 4])" in "".join(e.value.__notes__)
    with pytest.raises(TypeError, match="arguments must be tensors"):
        f(object.__new__(type("Unhashable", (), {"__hash__": None})))
    compiled = f._last.compiled
    with pytest.raises(TypeError, match="takes 1 tensors, got 0"):
        compiled([])


def test_save_needs_a_traced_function(tmp_path):
    with pytest.raises(TypeError, match="@ndflow.function"):
        nd.save(lambda x: x, tmp_path / "f.ndf")

    @nd.function
    def f(x):
        return x + 1

    with pytest.raises(RuntimeError, match="call the function once"):
        nd.save(f, tmp_path / "f.ndf")
    nd.save(f, tmp_path / "f.ndf", nd.ones([2, 2]))  # or pass example inputs
    np.testing.assert_array_equal(nd.load(tmp_path / "f.ndf")(np.zeros((5, 2), np.float32)).numpy(),
                                  np.ones((5, 2)))

    @nd.function
    def needs_batch(x):
        return x.reshape(x.shape[0] * 2, -1)  # uses the batch size: exported with the traced shape

    needs_batch(nd.ones([4, 6]))
    nd.save(needs_batch, tmp_path / "g.ndf")
    g = nd.load(tmp_path / "g.ndf")
    assert g.input_specs[0][0] == [4, 6]
    assert g(np.ones((4, 6), np.float32)).shape == (8, 3)


@pytest.mark.skipif(not NDFLOW_RUN.exists(), reason="ndflow-run not built (cmake --build build --target ndflow-run)")
def test_ndflow_run_matches_in_process(exported, tmp_path):
    path, predict, _ = exported
    for n in (3, 10):
        x, _ = _batch(n, seed=100 + n)
        np.save(tmp_path / "x.npy", x)
        r = subprocess.run([str(NDFLOW_RUN), str(path), "--input", f"x={tmp_path / 'x.npy'}",
                            "--output", f"output_0={tmp_path / 'y.npy'}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), predict(x).numpy(), rtol=1e-6, atol=1e-7)
    np.save(tmp_path / "bad.npy", np.ones((3, 5), np.float32))
    r = subprocess.run([str(NDFLOW_RUN), str(path), "--input", f"x={tmp_path / 'bad.npy'}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "x" in r.stderr
