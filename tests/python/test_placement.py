"""Device placement from Python: ndflow.device scopes in traced functions,
logical CPU devices, placement reports whose send/recv counts match the
partitioned graph, and multi-device results equal to single-device ones."""
import numpy as np
import pytest

import ndflow as nd
import ndflow.nn as nn
import ndflow.nn.functional as F


@pytest.fixture
def two_devices():
    before = nd.config.get_num_cpu_devices()
    nd.config.set_num_cpu_devices(2)
    yield
    nd.config.set_num_cpu_devices(before)


class Split(nn.Module):
    """Two layers; with devices given, each runs under its own scope."""

    def __init__(self, devices=("", "")):
        super().__init__()
        self.l1 = nn.Linear(6, 16)
        self.l2 = nn.Linear(16, 3)
        self.devices = devices

    def forward(self, x):
        with nd.device(self.devices[0]):
            h = F.relu(self.l1(x))
        with nd.device(self.devices[1]):
            return self.l2(h)


def make_step(model, opt, return_grads=False):
    @nd.function
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        opt.step()
        return (loss, grads) if return_grads else loss
    return step


def test_device_names_are_checked_where_written():
    assert nd.device("worker:1/cpu:0").name == "/worker:1/cpu:0"
    assert nd.device("cpu:1").name == "cpu:1"
    with pytest.raises(ValueError, match="bad device name 'tpu:0'"):
        nd.device("tpu:0")
    with pytest.raises(TypeError, match="device name"):
        nd.device(1)
    with pytest.raises(ValueError, match="1 to 64"):
        nd.config.set_num_cpu_devices(0)


def test_scopes_nest_and_restore():
    assert nd._C.current_device_request() == ""
    with nd.device("cpu:1"):
        with nd.device("cpu:0"):
            assert nd._C.current_device_request() == "cpu:0"
        assert nd._C.current_device_request() == "cpu:1"
    assert nd._C.current_device_request() == ""


def test_split_training_equals_one_device(two_devices):
    rng = np.random.default_rng(0)
    nd.manual_seed(0)
    ref = Split()
    split = Split(("cpu:0", "cpu:1"))
    split.load_state_dict(ref.state_dict())
    opt_a = nd.optim.Adam(ref.parameters(), lr=0.01)
    opt_b = nd.optim.Adam(split.parameters(), lr=0.01)
    step_a, step_b = make_step(ref, opt_a), make_step(split, opt_b)
    for _ in range(5):
        x = nd.tensor(rng.standard_normal((8, 6)).astype(np.float32))
        y = nd.tensor(rng.integers(0, 3, 8))
        la, lb = step_a(x, y), step_b(x, y)
        np.testing.assert_allclose(lb.numpy(), la.numpy(), rtol=1e-6, atol=1e-7)
    for (name, a), (_, b) in zip(ref.named_parameters(), split.named_parameters()):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name)

    placement = nd.placement.placement(step_b)
    assert set(placement.values()) == {"/worker:0/cpu:0", "/worker:0/cpu:1"}
    pairs, reported = nd.placement.transfer_counts(step_b)
    assert pairs == reported > 0
    report = nd.placement_report(step_b)
    assert "/worker:0/cpu:0 -> /worker:0/cpu:1" in report
    assert "/worker:0/cpu:1 -> /worker:0/cpu:0" in report  # gradients flow back
    assert f"{pairs} send/recv pairs" in report
    # The unsplit step runs as one partition.
    assert nd.placement.transfer_counts(step_a) == (0, 0)
    assert "1 partition (no send/recv)" in nd.placement_report(step_a)


def test_impossible_request_names_node_and_devices(two_devices):
    @nd.function
    def f(x):
        with nd.device("cpu:7"):
            return x * 2

    with pytest.raises(ValueError, match=r"requests 'cpu:7'.*no device matches.*/worker:0/cpu:1"):
        f(nd.ones(2))

    @nd.function
    def g(x):
        with nd.device("worker:3/cpu:0"):
            return x * 2

    with pytest.raises(ValueError, match="no device matches"):
        g(nd.ones(2))


def test_placement_report_before_a_call_is_a_clear_error():
    @nd.function
    def f(x):
        return x + 1

    with pytest.raises(RuntimeError, match="call the function once"):
        nd.placement_report(f)
