"""nn.BatchNorm1d/2d, nn.LayerNorm, nn.Embedding and their functional forms
against NumPy: outputs, running statistics over several steps, eval mode,
gradients, and a compiled training step whose BatchNorm statistics match an
eager one (the graph-mode update path)."""

import numpy as np
import pytest

import ndflow as nd
from ndflow import nn, optim
from ndflow.nn import functional as F

RNG = np.random.default_rng(7)


def np_bn(x, mean, var, w=None, b=None, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y if w is None else y * w.reshape(shape) + b.reshape(shape)


def axes(x):
    return (0,) + tuple(range(2, x.ndim))


def arr(t):
    return np.asarray(t.detach().numpy())


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (8, 4)), (nn.BatchNorm1d, (6, 4, 5)),
                                       (nn.BatchNorm2d, (3, 4, 5, 2))])
def test_batch_norm_running_stats_over_steps_then_eval(cls, shape):
    bn = cls(4, momentum=0.3, dtype=nd.float64)
    with nd.no_grad():
        bn.weight.copy_(nd.tensor(RNG.uniform(0.5, 1.5, 4)))
        bn.bias.copy_(nd.tensor(RNG.uniform(-1, 1, 4)))
    w, b = arr(bn.weight), arr(bn.bias)
    rm, rv = np.zeros(4), np.ones(4)
    for step in range(4):
        x = RNG.normal(1.0, 2.0, shape)
        y = bn(nd.tensor(x))
        np.testing.assert_allclose(arr(y), np_bn(x, x.mean(axes(x)), x.var(axes(x)), w, b), rtol=1e-10, atol=1e-12)
        rm = 0.7 * rm + 0.3 * x.mean(axes(x))
        rv = 0.7 * rv + 0.3 * x.var(axes(x), ddof=1)
        np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-12)
        assert int(bn.num_batches_tracked.item()) == step + 1
    bn.eval()
    x = RNG.normal(size=shape)
    np.testing.assert_allclose(arr(bn(nd.tensor(x))), np_bn(x, rm, rv, w, b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)  # eval leaves them alone
    assert int(bn.num_batches_tracked.item()) == 4


def test_batch_norm_options_and_state_dict():
    bn = nn.BatchNorm2d(3)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert bn.running_mean.dtype == nd.float32 and bn.num_batches_tracked.dtype == nd.int64
    assert all(b.is_variable for b in bn.buffers())
    assert "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)" in repr(bn)

    # affine=False: no parameters; track_running_stats=False: batch statistics in eval too.
    bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False, dtype=nd.float64)
    assert list(bn.parameters()) == [] and list(bn.buffers()) == []
    x = RNG.normal(size=(5, 3))
    bn.eval()
    np.testing.assert_allclose(arr(bn(nd.tensor(x))), np_bn(x, x.mean(0), x.var(0)), rtol=1e-10, atol=1e-12)

    # momentum=None: the cumulative average of the batch statistics.
    bn = nn.BatchNorm1d(3, momentum=None, dtype=nd.float64)
    xs = [RNG.normal(size=(6, 3)) for _ in range(3)]
    for x in xs:
        bn(nd.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([x.mean(0) for x in xs], 0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([x.var(0, ddof=1) for x in xs], 0), rtol=1e-12)

    bn.reset_running_stats()
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(3))
    assert int(bn.num_batches_tracked.item()) == 0
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(nd.ones(2, 3))
    with pytest.raises(ValueError, match="expected 3 channels"):
        nn.BatchNorm1d(3)(nd.ones(2, 4))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.BatchNorm1d(3)(nd.ones(1, 3))


def test_batch_norm_gradients_match_numpy():
    bn = nn.BatchNorm2d(3, dtype=nd.float64)
    with nd.no_grad():
        bn.weight.copy_(nd.tensor([0.5, 1.0, 2.0]))
    x = nd.tensor(RNG.normal(size=(4, 3, 2, 3)), requires_grad=True)
    g = RNG.normal(size=(4, 3, 2, 3))
    (bn(x) * nd.tensor(g)).sum().backward()
    xv, w = arr(x), np.array([0.5, 1.0, 2.0])
    ax, n = axes(xv), xv.size / 3
    invstd = 1 / np.sqrt(xv.var(ax) + 1e-5)
    xhat = (xv - xv.mean(ax).reshape(1, 3, 1, 1)) * invstd.reshape(1, 3, 1, 1)
    db, dw = g.sum(ax), (g * xhat).sum(ax)
    dx = (w * invstd).reshape(1, 3, 1, 1) * (g - (db / n).reshape(1, 3, 1, 1) - xhat * (dw / n).reshape(1, 3, 1, 1))
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad.numpy(), dw, rtol=1e-9)
    np.testing.assert_allclose(bn.bias.grad.numpy(), db, rtol=1e-9)
    # eval mode: dx = g * w / sqrt(running_var + eps)
    bn.eval()
    x.grad = None
    (bn(x) * nd.tensor(g)).sum().backward()
    rv = bn.running_var.numpy()
    np.testing.assert_allclose(x.grad.numpy(), g * (w / np.sqrt(rv + 1e-5)).reshape(1, 3, 1, 1), rtol=1e-10)


def _bn_net(seed):
    nd.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_compiled_training_step_updates_running_stats_like_eager():
    data = [(RNG.normal(size=(16, 6)).astype(np.float32), RNG.integers(0, 3, 16)) for _ in range(5)]
    models, steps = [], []
    for compiled in (False, True):
        model = _bn_net(3)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def step(x, y, model=model, opt=opt, loss_fn=loss_fn):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = nd.function(step)
        losses = [step(nd.tensor(x), nd.tensor(y)).item() for x, y in data]
        models.append(model)
        steps.append((step, losses))
    assert steps[1][0].trace_count == 1
    np.testing.assert_allclose(steps[1][1], steps[0][1], rtol=1e-5)
    eager, compiled = (dict(m.state_dict()) for m in models)
    for k in eager:
        np.testing.assert_allclose(compiled[k].numpy(), eager[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert int(compiled["1.num_batches_tracked"].item()) == 5
    assert not np.allclose(compiled["1.running_mean"].numpy(), 0)

    # A compiled eval-mode forward reads the running statistics by reference.
    model = models[1]
    model.eval()

    @nd.function
    def predict(x):
        return model(x)

    x = nd.tensor(data[0][0])
    with nd.no_grad():
        np.testing.assert_allclose(predict(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
        model[1].running_mean.fill_(0.5)
        np.testing.assert_allclose(predict(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert predict.trace_count == 1
    assert int(model[1].num_batches_tracked.item()) == 5


def test_functional_batch_norm():
    x = RNG.normal(size=(5, 2, 3))
    rm, rv = nd.zeros(2, dtype=nd.float64), nd.ones(2, dtype=nd.float64)
    y = F.batch_norm(nd.tensor(x), rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(y.numpy(), np_bn(x, x.mean((0, 2)), x.var((0, 2))), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm.numpy(), 0.5 * x.mean((0, 2)), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.5 + 0.5 * x.var((0, 2), ddof=1), rtol=1e-12)
    y = F.batch_norm(nd.tensor(x), rm, rv, weight=nd.tensor([2.0, 3.0]))  # bias defaults to zeros
    np.testing.assert_allclose(y.numpy(), np_bn(x, rm.numpy(), rv.numpy(), np.array([2.0, 3.0]), np.zeros(2)),
                               rtol=1e-10)
    assert nd.batch_norm is F.batch_norm


# ---------------------------------------------------------------- layer norm

def test_layer_norm_matches_numpy_with_gradients():
    ln = nn.LayerNorm((3, 4), dtype=nd.float64)
    with nd.no_grad():
        ln.weight.copy_(nd.tensor(RNG.uniform(0.5, 1.5, (3, 4))))
        ln.bias.copy_(nd.tensor(RNG.uniform(-1, 1, (3, 4))))
    x = RNG.normal(size=(2, 5, 3, 4))
    g = RNG.normal(size=x.shape)
    xt = nd.tensor(x, requires_grad=True)
    y = ln(xt)
    (y * nd.tensor(g)).sum().backward()
    w, b = arr(ln.weight), arr(ln.bias)
    mean, var = x.mean((2, 3), keepdims=True), x.var((2, 3), keepdims=True)
    rstd = 1 / np.sqrt(var + 1e-5)
    xhat = (x - mean) * rstd
    np.testing.assert_allclose(arr(y), xhat * w + b, rtol=1e-10, atol=1e-12)
    gw = g * w
    dx = rstd * (gw - gw.mean((2, 3), keepdims=True) - xhat * (gw * xhat).mean((2, 3), keepdims=True))
    np.testing.assert_allclose(xt.grad.numpy(), dx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ln.weight.grad.numpy(), (g * xhat).sum((0, 1)), rtol=1e-9)
    np.testing.assert_allclose(ln.bias.grad.numpy(), g.sum((0, 1)), rtol=1e-9)

    plain = nn.LayerNorm(4, elementwise_affine=False)
    assert list(plain.parameters()) == []
    x32 = RNG.normal(size=(3, 4)).astype(np.float32)
    want = (x32 - x32.mean(-1, keepdims=True)) / np.sqrt(x32.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(plain(nd.tensor(x32)).numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.layer_norm(nd.tensor(x32), 4).numpy(), want, rtol=1e-5, atol=1e-6)
    assert [n for n, _ in nn.LayerNorm(4, bias=False).named_parameters()] == ["weight"]
    with pytest.raises(ValueError, match=r"\[layer_norm\] input of shape \[2,4,3\] does not end with "
                                         r"normalized_shape \[3,4\]"):
        ln(nd.ones(2, 4, 3, dtype=nd.float64))


# ----------------------------------------------------------------- embedding

def test_embedding_forward_gradient_and_padding():
    nd.manual_seed(0)
    emb = nn.Embedding(10, 4, padding_idx=-1, dtype=nd.float64)  # row 9
    assert emb.padding_idx == 9
    w = arr(emb.weight)
    np.testing.assert_array_equal(w[9], np.zeros(4))
    idx = np.array([[1, 9, 3], [3, 3, 0]])
    y = emb(nd.tensor(idx))
    assert y.shape == (2, 3, 4)
    np.testing.assert_array_equal(arr(y), w[idx])
    g = RNG.normal(size=(2, 3, 4))
    (y * nd.tensor(g)).sum().backward()
    want = np.zeros((10, 4))
    np.add.at(want, idx.reshape(-1), g.reshape(-1, 4))
    want[9] = 0  # the padding row gets no gradient
    np.testing.assert_allclose(emb.weight.grad.numpy(), want, rtol=1e-12)
    untouched = [r for r in range(10) if r not in (0, 1, 3)]
    assert not emb.weight.grad.numpy()[untouched].any()  # only looked-up rows are nonzero
    # int32 indices work too; F.embedding takes (input, weight) as torch.
    np.testing.assert_array_equal(F.embedding(nd.tensor(idx.astype(np.int32)), emb.weight).detach().numpy(),
                                  w[idx])


def test_embedding_init_errors_and_pretrained():
    nd.manual_seed(1)
    w = nn.Embedding(400, 50).weight.detach().numpy()
    assert w.dtype == np.float32 and abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # N(0, 1) as torch
    emb = nn.Embedding(5, 3)
    with pytest.raises(IndexError, match=r"\[embedding\] index 7 at position 1 is out of range for 5 embeddings"):
        emb(nd.tensor([0, 7]))
    with pytest.raises(IndexError, match=r"index -1"):
        emb(nd.tensor([-1]))
    with pytest.raises(TypeError, match="indices must be i32 or i64"):
        emb(nd.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx 5 is out of range"):
        nn.Embedding(5, 3, padding_idx=5)
    table = nd.tensor(RNG.normal(size=(4, 2)).astype(np.float32))
    pre = nn.Embedding.from_pretrained(table)
    assert not pre.weight.requires_grad
    np.testing.assert_array_equal(pre(nd.tensor([3, 0])).numpy(), table.numpy()[[3, 0]])
    assert "Embedding(5, 3)" in repr(emb)


def test_compiled_embedding_step_matches_eager():
    idx = [RNG.integers(0, 12, (4, 5)) for _ in range(3)]
    results = []
    for compiled in (False, True):
        nd.manual_seed(2)
        emb, ln = nn.Embedding(12, 6, padding_idx=0), nn.LayerNorm(6)
        params = list(emb.parameters()) + list(ln.parameters())
        opt = optim.SGD(params, lr=0.5)

        def step(i, emb=emb, ln=ln, opt=opt):
            opt.zero_grad()
            loss = (ln(emb(i)) * ln(emb(i))).sum() * 0.01 + emb(i).sum()
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = nd.function(step)
        losses = [step(nd.tensor(i)).item() for i in idx]
        results.append((losses, emb.weight.detach().numpy().copy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(results[1][1][0], np.zeros(6))  # padding row never moved
