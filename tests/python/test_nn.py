"""ndflow.nn: Module bookkeeping (parameters, buffers, submodules, modes,
state dicts), the layers and losses against NumPy, and initialization with
torch.nn's distributions."""

import math
from collections import OrderedDict

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn
from ndflow.nn import functional as F
from ndflow.nn import init


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.scale = nn.Parameter(nd.ones([3]))
        self.register_buffer("count", nd.zeros([]))
        self.register_buffer("scratch", nd.zeros([2]), persistent=False)
        self.note = "plain attribute"

    def forward(self, x):
        nd.assign_add(self.count, nd.ones([]))
        return self.act(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.head(self.block(x))


# ------------------------------------------------------------------- Module

def test_registration_and_traversal():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["block.scale", "block.fc.weight", "block.fc.bias",
                                                      "head.weight"]
    assert [n for n, _ in net.named_buffers()] == ["block.count", "block.scratch"]
    assert [n for n, _ in net.named_modules()] == ["", "block", "block.fc", "block.act", "head"]
    assert [n for n, _ in net.named_children()] == ["block", "head"]
    assert net.head.bias is None and "bias" in net.head._parameters
    assert all(isinstance(p, nn.Parameter) and p.is_variable and p.requires_grad for p in net.parameters())
    assert all(b.is_variable and not b.requires_grad for b in net.buffers())
    assert not isinstance(nd.ones([1]), nn.Parameter)
    assert net.block.note == "plain attribute"
    # Reassigning a buffer keeps it a Variable (compiled functions read it by reference).
    net.block.count = nd.full([], 5.0)
    assert net.block.count.is_variable and float(net.block.count.item()) == 5.0
    with pytest.raises(TypeError, match="buffer 'count'"):
        net.block.count = 3.0
    assert float(net.block.count.item()) == 5.0
    with pytest.raises(TypeError, match="parameter 'weight'"):
        net.head.weight = nd.ones([2, 3])  # a plain tensor would silently drop the parameter
    net.block.fc.bias = None
    assert net.block.fc.bias is None and "bias" in net.block.fc._parameters
    net.block.fc.bias = nn.Parameter(nd.zeros([3]))
    # A parameter shared by two modules is listed once.
    net.head.weight = nn.Parameter(nd.ones([2, 3]))
    net.block.extra = net.head.weight
    assert [n for n, _ in net.named_parameters()] == ["block.scale", "block.extra", "block.fc.weight",
                                                      "block.fc.bias"]
    del net.block.extra
    assert [n for n, _ in net.named_parameters()][-1] == "head.weight"
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        net.missing
    assert "Linear(in_features=4, out_features=3, bias=True)" in repr(net)


def test_parameter_shares_memory_and_module_needs_init():
    t = nd.zeros([3])
    p = nn.Parameter(t)
    t.fill_(2.0)
    assert np.array_equal(p.detach().numpy(), [2.0, 2.0, 2.0])
    assert not nn.Parameter(nd.ones([1]), requires_grad=False).requires_grad

    class Bad(nn.Module):
        def __init__(self):
            self.w = 1

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_train_eval_recursive():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.block.train(False)
    assert net.training and not net.block.fc.training


def test_zero_grad_and_requires_grad():
    net = Net()
    net(nd.ones([2, 4])).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_state_dict_round_trip(tmp_path):
    nd.manual_seed(0)
    a = Net()
    a.block.count.fill_(7.0)
    sd = a.state_dict()
    assert list(sd) == ["block.scale", "block.count", "block.fc.weight", "block.fc.bias", "head.weight"]
    assert "block.scratch" not in sd  # not persistent
    b = Net()
    params_before = list(b.parameters())
    result = b.load_state_dict({k: v.numpy() for k, v in sd.items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert all(p is q for p, q in zip(params_before, b.parameters()))  # copied in, never rebound
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), sd[k].numpy())
    x = nd.randn(5, 4)
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())

    # Through ndflow's .ndf container.
    path = str(tmp_path / "net.ndf")
    nd._C.save_tensors(path, list(sd.items()), {"kind": "state_dict"})
    tensors, meta = nd._C.load_tensors(path)
    assert meta["kind"] == "state_dict"
    c = Net()
    c.load_state_dict(dict(tensors))
    np.testing.assert_array_equal(a(x).detach().numpy(), c(x).detach().numpy())


def test_load_state_dict_errors_write_nothing():
    net = Net()
    sd = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    with pytest.raises(KeyError, match="missing keys \\['head.weight'\\]"):
        net.load_state_dict({k: v for k, v in sd.items() if k != "head.weight"})
    with pytest.raises(KeyError, match="unexpected keys \\['bogus'\\]"):
        net.load_state_dict({**sd, "bogus": np.zeros(1)})
    r = net.load_state_dict({"bogus": np.zeros(1)}, strict=False)
    assert r.unexpected_keys == ["bogus"] and "head.weight" in r.missing_keys
    bad = {k: np.full_like(v, 9.0) for k, v in sd.items()}
    bad["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="head.weight"):
        net.load_state_dict(bad)
    for k, v in net.state_dict().items():  # the valid entries were not written either
        np.testing.assert_array_equal(v.numpy(), sd[k])


def test_load_state_dict_seen_by_compiled_function():
    net = Net()
    x = nd.randn(3, 4)

    @nd.function
    def predict(x):
        return net(x)

    y0 = predict(x).numpy().copy()
    other = Net()
    net.load_state_dict(other.state_dict())
    np.testing.assert_allclose(predict(x).numpy(), other(x).detach().numpy(), rtol=1e-6)
    assert not np.allclose(predict(x).numpy(), y0)
    assert predict.trace_count == 1


def test_buffers_updated_by_compiled_function():
    net = Net()

    @nd.function
    def f(x):
        return net(x)

    for _ in range(3):
        f(nd.ones([2, 4]))
    assert float(net.block.count.item()) == 3.0
    assert f.trace_count == 1


# ------------------------------------------------------------------- layers

def test_linear_matches_numpy():
    lin = nn.Linear(5, 3)
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    np.testing.assert_allclose(lin(nd.tensor(x)).detach().numpy(), x @ w.T + b, rtol=1e-5, atol=1e-6)
    nobias = nn.Linear(5, 3, bias=False)
    assert len(list(nobias.parameters())) == 1
    np.testing.assert_allclose(nobias(nd.tensor(x)).detach().numpy(), x @ nobias.weight.detach().numpy().T,
                               rtol=1e-5, atol=1e-6)
    # Leading batch axes broadcast, as torch.nn.Linear.
    assert lin(nd.ones([2, 3, 5])).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="inner dimensions"):
        lin(nd.ones([2, 4]))


def test_linear_default_init_is_torch_kaiming_uniform():
    """torch.nn.Linear: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))."""
    nd.manual_seed(0)
    fan_in, fan_out = 400, 300
    lin = nn.Linear(fan_in, fan_out)
    bound = 1 / math.sqrt(fan_in)
    for t, n in ((lin.weight.detach().numpy(), fan_in * fan_out), (lin.bias.detach().numpy(), fan_out)):
        assert t.dtype == np.float32
        assert np.abs(t).max() <= bound
        assert np.abs(t).max() > bound * (1 - 20 / n)  # P(fail) < 1e-8
        sd = bound / math.sqrt(3)  # of U(-b, b)
        assert abs(t.mean()) < 5 * sd / math.sqrt(n)
        assert abs(t.std() - sd) < 5 * 0.45 * sd / math.sqrt(n)  # std of the estimate: 0.45 sd / sqrt(n)
    w = lin.weight.detach().numpy()
    # Uniform: each quarter of [-b, b] holds about a quarter of the values.
    hist, _ = np.histogram(w, bins=4, range=(-bound, bound))
    np.testing.assert_allclose(hist / w.size, 0.25, atol=0.01)
    # Seeded draws repeat; unseeded ones differ.
    nd.manual_seed(0)
    again = nn.Linear(fan_in, fan_out)
    np.testing.assert_array_equal(again.weight.detach().numpy(), w)
    assert not np.array_equal(nn.Linear(fan_in, fan_out).weight.detach().numpy(), w)


def test_init_functions():
    nd.manual_seed(1)
    t = nd.zeros([200, 100])
    init.kaiming_normal_(t, nonlinearity="relu")
    assert abs(t.numpy().std() - math.sqrt(2 / 100)) < 0.03 * math.sqrt(2 / 100)
    init.kaiming_uniform_(t, nonlinearity="relu", mode="fan_out")
    b = math.sqrt(2) * math.sqrt(3 / 200)
    assert np.abs(t.numpy()).max() <= b and np.abs(t.numpy()).max() > 0.98 * b
    init.xavier_uniform_(t, gain=2.0)
    b = 2.0 * math.sqrt(6 / 300)
    assert np.abs(t.numpy()).max() <= b and np.abs(t.numpy()).max() > 0.98 * b
    init.xavier_normal_(t)
    assert abs(t.numpy().std() - math.sqrt(2 / 300)) < 0.03 * math.sqrt(2 / 300)
    init.normal_(t, 3.0, 0.5)
    assert abs(t.numpy().mean() - 3.0) < 0.01 and abs(t.numpy().std() - 0.5) < 0.01
    init.uniform_(t, 2.0, 4.0)
    assert t.numpy().min() >= 2.0 and t.numpy().max() <= 4.0
    init.constant_(t, 1.5)
    assert np.all(t.numpy() == 1.5)
    init.zeros_(t)
    assert not t.numpy().any()
    init.ones_(t)
    assert np.all(t.numpy() == 1.0)
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.xavier_uniform_(nd.zeros([3]))
    # Initializing a parameter that requires grad works (no autograd record).
    p = nn.Parameter(nd.zeros([4, 4]))
    init.uniform_(p, -1, 1)
    assert p.requires_grad and p.is_leaf and p.detach().numpy().any()
    g = nd.Generator(5)
    a = init.normal_(nd.zeros([10]), generator=g).numpy().copy()
    b = init.normal_(nd.zeros([10]), generator=nd.Generator(5)).numpy()
    np.testing.assert_array_equal(a, b)


def test_activations_flatten_sequential():
    x = np.array([[-1.0, 0.5], [2.0, -3.0]], np.float32)
    np.testing.assert_array_equal(nn.ReLU()(nd.tensor(x)).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Sigmoid()(nd.tensor(x)).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(nn.Tanh()(nd.tensor(x)).numpy(), np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(nn.LeakyReLU(0.1)(nd.tensor(x)).numpy(), np.where(x > 0, x, 0.1 * x), rtol=1e-6)
    assert nn.Flatten()(nd.ones([2, 3, 4, 5])).shape == (2, 60)
    assert nn.Flatten(0, 1)(nd.ones([2, 3, 4])).shape == (6, 4)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
    assert len(seq) == 4 and isinstance(seq[1], nn.Linear) and isinstance(seq[-1], nn.Linear)
    assert isinstance(seq[1:3], nn.Sequential) and len(seq[1:3]) == 2
    assert [n for n, _ in seq.named_parameters()] == ["1.weight", "1.bias", "3.weight", "3.bias"]
    y = seq(nd.ones([3, 3, 4]))
    assert y.shape == (3, 2)
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_children()] == ["fc", "act"]
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(list(ml.parameters())) == 6


def test_dropout_train_and_eval():
    nd.manual_seed(0)
    drop = nn.Dropout(0.25)
    y = drop(nd.ones([100, 100])).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    drop.eval()
    assert np.all(drop(nd.ones([10, 10])).numpy() == 1.0)
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)


# ------------------------------------------------------------------- losses

def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_numpy(reduction):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)).astype(np.float64)
    y = rng.integers(0, 4, 6)
    red = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]
    ce_ref = red(-_log_softmax(z)[np.arange(6), y])
    logits = nd.tensor(z, requires_grad=True)
    ce = nn.CrossEntropyLoss(reduction=reduction)(logits, nd.tensor(y))
    np.testing.assert_allclose(ce.detach().numpy(), ce_ref, rtol=1e-10)
    nll = nn.NLLLoss(reduction=reduction)(F.log_softmax(logits, 1), nd.tensor(y))
    np.testing.assert_allclose(nll.detach().numpy(), ce_ref, rtol=1e-10)
    t = rng.standard_normal((6, 4))
    mse = nn.MSELoss(reduction=reduction)(nd.tensor(z), nd.tensor(t))
    np.testing.assert_allclose(mse.numpy(), red((z - t) ** 2), rtol=1e-10)
    if reduction == "mean":
        ce.backward()
        p = np.exp(_log_softmax(z))
        p[np.arange(6), y] -= 1
        np.testing.assert_allclose(logits.grad.numpy(), p / 6, rtol=1e-8, atol=1e-12)


def test_loss_errors():
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="nll_loss"):
        nn.NLLLoss()(nd.ones([2, 3, 4]), nd.tensor([0, 1]))
    with pytest.raises(IndexError, match="out of range"):
        nn.CrossEntropyLoss()(nd.ones([2, 3]), nd.tensor([0, 3]))
