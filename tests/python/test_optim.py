"""ndflow.optim: each optimizer against a NumPy transcription of torch.optim's
update rule, eager against @ndflow.function training, learning-rate
schedules seen by compiled steps, state dicts, parameter groups."""

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn, optim

# (optimizer, settings): every branch of every update rule.
CONFIGS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, weight_decay=0.05)),
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.Adagrad, dict(lr=0.1)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.2, eps=1e-6)),
    (optim.RMSprop, dict(lr=0.01)),
    (optim.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.8)),
    (optim.RMSprop, dict(lr=0.01, centered=True, weight_decay=0.01)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01, eps=1e-6)),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.05)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    (optim.AdamW, dict(lr=0.01)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]
IDS = [f"{c.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "lr") for c, kw in CONFIGS]
IDS = [i.rstrip("-") for i in IDS]


# --------------------------------------------------- NumPy reference (torch.optim)

class Ref:
    """torch.optim's single-tensor update rules, transcribed in NumPy (float64)."""

    def __init__(self, name, hp):
        self.name, self.hp, self.s = name, dict(hp), {"step": 0}

    def step(self, p, g):
        h, s = self.hp, self.s
        lr, wd = h["lr"], h.get("weight_decay", 0.0)
        s["step"] += 1
        t = s["step"]
        if self.name == "SGD":
            g = g + wd * p
            mom = h.get("momentum", 0.0)
            if mom:
                if "buf" not in s:
                    s["buf"] = g.copy()
                else:
                    s["buf"] = mom * s["buf"] + (1 - h.get("dampening", 0.0)) * g
                g = g + mom * s["buf"] if h.get("nesterov") else s["buf"]
            return p - lr * g
        if self.name == "Adagrad":
            g = g + wd * p
            clr = lr / (1 + (t - 1) * h.get("lr_decay", 0.0))
            s["sum"] = s.get("sum", np.full_like(p, h.get("initial_accumulator_value", 0.0))) + g * g
            return p - clr * g / (np.sqrt(s["sum"]) + h.get("eps", 1e-10))
        if self.name == "RMSprop":
            alpha, eps, mom = h.get("alpha", 0.99), h.get("eps", 1e-8), h.get("momentum", 0.0)
            g = g + wd * p
            s["sq"] = alpha * s.get("sq", 0.0) + (1 - alpha) * g * g
            if h.get("centered"):
                s["ga"] = alpha * s.get("ga", 0.0) + (1 - alpha) * g
                avg = np.sqrt(s["sq"] - s["ga"] * s["ga"]) + eps
            else:
                avg = np.sqrt(s["sq"]) + eps
            if mom > 0:
                s["buf"] = mom * s.get("buf", 0.0) + g / avg
                return p - lr * s["buf"]
            return p - lr * g / avg
        # Adam / AdamW
        b1, b2 = h.get("betas", (0.9, 0.999))
        eps = h.get("eps", 1e-8)
        if self.name == "AdamW":
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        v = s["v"]
        if h.get("amsgrad"):
            s["vmax"] = np.maximum(s.get("vmax", 0.0), v)
            v = s["vmax"]
        return p - (lr / bc1) * s["m"] / (np.sqrt(v) / np.sqrt(bc2) + eps)


def _defaults(cls):
    """The settings the class uses when not given (to tell the reference)."""
    import inspect
    return {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items()
            if v.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_matches_torch_update_rule(cls, kw, compiled):
    """Six steps of loss = sum(c*p + d*p^2/2) (gradient c + d*p) in float64
    against the reference; the learning rate changes after step 3 (the
    compiled step sees it without retracing)."""
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((3, 4))
    c, d = rng.standard_normal((3, 4)), rng.uniform(0.5, 2.0, (3, 4))
    p = nn.Parameter(nd.tensor(p0.copy()))
    opt = cls([p], **kw)
    ct, dt = nd.tensor(c), nd.tensor(d)

    def step():
        opt.zero_grad()
        loss = (ct * p + dt * p * p * 0.5).sum()
        loss.backward()
        opt.step()
        return loss

    if compiled:
        step = nd.function(step)
    hp = {**_defaults(cls), **kw}
    ref, q = Ref(cls.__name__, hp), p0.copy()
    for i in range(6):
        if i == 3:
            opt.param_groups[0]["lr"] = kw["lr"] / 2
            ref.hp["lr"] = kw["lr"] / 2
        q_grad = c + d * q
        step()
        q = ref.step(q, q_grad)
        np.testing.assert_allclose(p.detach().numpy(), q, rtol=1e-10, atol=1e-12, err_msg=f"step {i}")
        np.testing.assert_allclose(p.grad.numpy(), q_grad, rtol=1e-12, atol=1e-12)
    if compiled:
        assert step.trace_count == 1


def _mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 6)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    nd.manual_seed(3)
    init = {k: v.numpy().copy() for k, v in _mlp().state_dict().items()}
    return nd.tensor(x), nd.tensor(y), init


def _train(cls, kw, data, compiled, steps=10):
    x, y, init = data
    model = _mlp()
    model.load_state_dict(init)
    opt = cls(model.parameters(), **kw)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if compiled:
        step = nd.function(step)
    losses = [step(x, y).item() for _ in range(steps)]
    step.opt = opt
    return losses, model, opt.state_dict()["state"], step


@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_eager_and_compiled_training_agree(cls, kw, data):
    """Ten PyTorch-style training steps, eagerly and as one traced graph:
    the same losses, parameters, gradients and optimizer slots to float32
    rounding, and the body ran once."""
    l_e, m_e, s_e, _ = _train(cls, kw, data, compiled=False)
    l_c, m_c, s_c, step = _train(cls, kw, data, compiled=True)
    assert step.trace_count == 1
    np.testing.assert_allclose(l_c, l_e, rtol=1e-5, atol=1e-6)
    assert l_e[-1] < l_e[0]
    for (name, pe), pc in zip(m_e.named_parameters(), m_c.parameters()):
        np.testing.assert_allclose(pc.detach().numpy(), pe.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(pc.grad.numpy(), pe.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert s_e.keys() == s_c.keys()
    for i in s_e:
        assert s_e[i].keys() == s_c[i].keys()
        for k in s_e[i]:
            np.testing.assert_allclose(s_c[i][k].numpy(), s_e[i][k].numpy(), rtol=1e-5, atol=1e-6)


def test_compiled_step_is_one_graph_updating_variables_in_place(data):
    x, y, init = data
    model = _mlp()
    model.load_state_dict(init)
    params = list(model.parameters())
    before = [p.detach().numpy().copy() for p in params]
    opt = optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    @nd.function
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step(x, y)
    counts = step.graph.op_counts()
    assert counts.get("apply_adam") == len(params)
    assert "cross_entropy_backward" in counts
    # The very Parameter objects changed, and the step counts are Variables too.
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert all(not np.array_equal(b, p.detach().numpy()) for b, p in zip(before, params))
    assert all(int(s["step"].item()) == 1 for s in opt.state_dict()["state"].values())
    step(x, y)
    assert all(int(s["step"].item()) == 2 for s in opt.state_dict()["state"].values())


def test_gradients_fetched_after_each_call_are_fresh_tensors(data):
    x, y, init = data
    _, model, _, step = _train(optim.SGD, dict(lr=0.1), data, compiled=True, steps=1)
    g1 = model[0].weight.grad
    snapshot = g1.numpy().copy()
    step(x, y)
    g2 = model[0].weight.grad
    assert np.array_equal(g1.numpy(), snapshot)  # not overwritten by the next run
    assert not np.array_equal(g2.numpy(), snapshot)


# ------------------------------------------------------------- learning rates

def test_lr_change_and_step_lr_seen_by_compiled_step():
    p = nn.Parameter(nd.zeros([2]))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    @nd.function
    def step():
        opt.zero_grad()
        (p * nd.tensor([1.0, 2.0])).sum().backward()  # gradient [1, 2]
        opt.step()

    expected = np.zeros(2)
    for epoch in range(6):
        lr = 1.0 * 0.5 ** (epoch // 2)
        assert sched.get_last_lr() == [lr]
        step()
        expected -= lr * np.array([1.0, 2.0])
        np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-6)
        sched.step()
    opt.param_groups[0]["lr"] = 0.0
    step()
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-6)
    assert step.trace_count == 1


def test_cosine_annealing_lr():
    p = nn.Parameter(nd.zeros([1]))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = []
    for _ in range(5):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    want = [0.1 + 0.9 * (1 + np.cos(np.pi * t / 4)) / 2 for t in range(5)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)


def test_lr_or_settings_changed_inside_a_trace_raise():
    p = nn.Parameter(nd.zeros([2]))
    opt = optim.SGD([p], lr=0.1, momentum=0.5)

    @nd.function
    def bad_lr():
        opt.param_groups[0]["lr"] = 0.5
        return p * 2

    @nd.function
    def bad_momentum():
        opt.param_groups[0]["momentum"] = 0.9
        return p * 2

    with pytest.raises(nd.TracingError, match="outside the @ndflow.function"):
        bad_lr()
    with pytest.raises(nd.TracingError, match="outside the @ndflow.function"):
        bad_momentum()
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.5


def test_other_hyperparameter_change_retraces():
    """momentum, betas, weight decay... are attributes of the update nodes:
    changing one makes the next call trace again (lr does not)."""
    p = nn.Parameter(nd.tensor([1.0, -1.0]))
    opt = optim.SGD([p], lr=0.1)

    @nd.function
    def step():
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()

    ref, q = Ref("SGD", dict(lr=0.1)), np.array([1.0, -1.0])
    for i in range(6):
        if i == 2:  # momentum 0 -> 0.9 needs a momentum buffer: created now, starting fresh
            opt.param_groups[0]["momentum"] = 0.9
            ref.hp["momentum"] = 0.9
        if i == 4:
            opt.param_groups[0]["weight_decay"] = 0.1
            ref.hp["weight_decay"] = 0.1
        step()
        q = ref.step(q, 2 * q)
        np.testing.assert_allclose(p.detach().numpy(), q, rtol=1e-6)
    assert step.trace_count == 3
    assert len(step._cache) == 1 and len(next(iter(step._cache.values()))) == 1  # stale traces dropped
    opt.param_groups[0]["lr"] = 0.05
    step()
    assert step.trace_count == 3


# ------------------------------------------------------------- state and groups

@pytest.mark.parametrize("cls,kw", [CONFIGS[4], CONFIGS[6], CONFIGS[10], CONFIGS[13], CONFIGS[15]],
                         ids=[IDS[4], IDS[6], IDS[10], IDS[13], IDS[15]])
def test_state_dict_round_trip_continues_identically(cls, kw, data):
    x, y, init = data
    _, model, _, step = _train(cls, kw, data, compiled=True, steps=3)
    # Snapshot model and optimizer, then continue two ways.
    model_sd = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt_sd = step.opt.state_dict()
    for _ in range(3):
        step(x, y)
    want = [p.detach().numpy().copy() for p in model.parameters()]

    model2 = _mlp()
    model2.load_state_dict(model_sd)
    opt2 = cls(model2.parameters(), **{**kw, "lr": 123.0})
    opt2.load_state_dict(opt_sd)
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    loss_fn = nn.CrossEntropyLoss()

    @nd.function
    def step2(x, y):
        opt2.zero_grad()
        loss_fn(model2(x), y).backward()
        opt2.step()

    for _ in range(3):
        step2(x, y)
    for a, b in zip(model2.parameters(), want):
        np.testing.assert_allclose(a.detach().numpy(), b, rtol=1e-6, atol=1e-7)


def test_state_dict_is_a_snapshot_and_load_checks_shapes():
    p = nn.Parameter(nd.ones([3]))
    opt = optim.Adam([p], lr=0.1)
    (p * p).sum().backward()
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0]
    assert set(sd["state"][0]) == {"exp_avg", "exp_avg_sq", "step"}
    snap = sd["state"][0]["exp_avg"].numpy().copy()
    opt.step()
    assert np.array_equal(sd["state"][0]["exp_avg"].numpy(), snap)
    bad = {"state": {0: {"exp_avg": nd.zeros([4])}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    with pytest.raises(KeyError, match="slot 'nope'"):
        opt.load_state_dict({"state": {0: {"nope": nd.zeros([3])}}, "param_groups": sd["param_groups"]})
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})


def test_param_groups_with_their_own_lr():
    a, b = nn.Parameter(nd.ones([2])), nn.Parameter(nd.ones([2]))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]

    @nd.function
    def step():
        opt.zero_grad()
        (a.sum() + b.sum()).backward()
        opt.step()

    step()
    np.testing.assert_allclose(a.detach().numpy(), [0.9, 0.9], rtol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), [0.5, 0.5], rtol=1e-6)
    opt.param_groups[1]["lr"] = 0.25
    step()
    np.testing.assert_allclose(b.detach().numpy(), [0.25, 0.25], rtol=1e-6)
    assert step.trace_count == 1


def test_zero_grad_and_params_without_grad():
    a, b = nn.Parameter(nd.ones([2])), nn.Parameter(nd.ones([2]))
    opt = optim.SGD([a, b], lr=0.1)
    a.sum().backward()
    opt.step()  # b has no gradient: left alone
    np.testing.assert_allclose(a.detach().numpy(), [0.9, 0.9], rtol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), [1.0, 1.0])
    opt.zero_grad(set_to_none=False)
    assert np.array_equal(a.grad.numpy(), [0.0, 0.0])
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_state_by_parameter_and_params_appended_directly():
    a, b = nn.Parameter(nd.ones([2])), nn.Parameter(nd.ones([2]))
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    assert set(opt.state[a]) == {"momentum_buffer", "step"} and a in opt.state and b not in opt.state
    opt.param_groups[0]["params"].append(b)  # as torch allows; state is created on the next eager step
    (a.sum() + b.sum()).backward()
    opt.step()
    np.testing.assert_allclose(b.detach().numpy(), [0.9, 0.9], rtol=1e-6)
    np.testing.assert_allclose(opt.state[b]["momentum_buffer"].numpy(), [1.0, 1.0])


def test_bad_settings_and_parameters_raise():
    p = nn.Parameter(nd.ones([2]))
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="eps"):
        optim.RMSprop([p], eps=-1.0)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Variables"):
        optim.SGD([nd.ones([2], requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p, lr=0.1)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        opt.param_groups[0]["dampening"] = 0.5  # refused, and the old value kept
    assert opt.param_groups[0]["dampening"] == 0.0
    opt.param_groups[0]["nesterov"] = False
    opt.param_groups[0]["dampening"] = 0.5
    with pytest.raises(ValueError, match="learning rate"):
        opt.param_groups[0]["lr"] = -0.1
    assert opt.param_groups[0]["lr"] == 0.1


def test_optimizer_sees_new_param_group_after_trace():
    a, b = nn.Parameter(nd.ones([2])), nn.Parameter(nd.ones([2]))
    opt = optim.SGD([a], lr=0.1)

    @nd.function
    def step():
        opt.zero_grad()
        (a.sum() + b.sum()).backward()
        opt.step()

    step()
    opt.add_param_group({"params": [b], "lr": 1.0})
    step()
    assert step.trace_count == 2
    np.testing.assert_allclose(a.detach().numpy(), [0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), [0.0, 0.0], atol=1e-6)
