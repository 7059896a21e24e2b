"""Helpers shared by the nn tests (test_conv_rnn.py, test_nn_padding_modes.py,
test_lstm_proj.py): finite-difference gradient checks, and eager training
against the same steps compiled with @ndflow.function."""
import numpy as np

import ndflow as nd
import ndflow.nn as nn
import ndflow.optim as optim


def check_fd(loss_fn, t, eps=1e-6, rtol=1e-5, atol=1e-7, max_entries=40):
    """Central differences of loss_fn() over (up to max_entries, evenly
    spread) entries of t against t.grad, which a backward of loss_fn() left."""
    analytic = t.grad.detach().numpy().ravel()
    base = t.detach().numpy().copy()
    flat = base.ravel()
    idx = np.linspace(0, flat.size - 1, min(max_entries, flat.size)).astype(int)
    num = []
    for i in idx:
        for sign in (1, -1):
            v = flat.copy()
            v[i] += sign * eps
            with nd.no_grad():
                t.copy_(nd.tensor(v.reshape(base.shape)))
                val = loss_fn().item()
            num.append(val)
    with nd.no_grad():
        t.copy_(nd.tensor(base))
    num = np.array(num).reshape(-1, 2)
    numeric = (num[:, 0] - num[:, 1]) / (2 * eps)
    np.testing.assert_allclose(analytic[idx], numeric, rtol=rtol, atol=atol)


def params_of(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def check_eager_training_equals_compiled(make, batches):
    """Trains make() with SGD (momentum) on batches [(x, y), ...] eagerly and
    as one traced step: the losses and the parameters must agree, the step
    must trace once, and every parameter must have changed. Returns the
    trained parameters by name."""
    results = []
    for compiled in (False, True):
        model = make()
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def step(x, y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = nd.function(step)
        losses = [step(nd.tensor(x), nd.tensor(y)).item() for x, y in batches]
        if compiled:
            assert step.trace_count == 1
        results.append((losses, params_of(model)))
    (l0, p0), (l1, p1) = results
    np.testing.assert_allclose(l0, l1, rtol=1e-10)
    start = params_of(make())
    for k in p0:
        assert not np.allclose(p0[k], start[k]), k  # every parameter trained
        np.testing.assert_allclose(p0[k], p1[k], rtol=1e-9, atol=1e-12, err_msg=k)
    return p0


def pool_out(size, k, s, p, ceil_mode):
    """torch's pooling output size along one axis."""
    if ceil_mode:
        out = -(-(size + 2 * p - k) // s) + 1
        if (out - 1) * s >= size + p:  # the last window must start inside the input or left padding
            out -= 1
        return out
    return (size + 2 * p - k) // s + 1
