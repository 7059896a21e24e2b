"""Tensor.register_post_accumulate_grad_hook (runtime/autograd.h): a leaf's
hook runs once per backward, after the last contribution was accumulated,
and sees the final .grad."""
import numpy as np
import pytest

import ndflow as nd


def leaf(*shape, seed=0):
    rng = np.random.default_rng(seed)
    t = nd.from_numpy(rng.standard_normal(shape).astype(np.float32))
    t.requires_grad = True
    return t


def test_hook_sees_the_final_gradient_of_a_leaf_used_twice():
    w = leaf(3, 2)
    x = nd.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    # w feeds two branches that meet at the end: its gradient has two parts,
    # and the hook must run once, after both.
    a = nd.matmul(x, w).sum()
    b = (w * w).sum()
    (a + b).backward()
    assert len(seen) == 1
    want = np.repeat(x.numpy().sum(0)[:, None], 2, axis=1) + 2 * w.detach().numpy()
    np.testing.assert_allclose(seen[0], want, rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-6)


def test_hook_runs_once_per_backward_after_accumulation_into_an_existing_grad():
    w = leaf(4)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (w * 3).sum().backward()
    (w * 3).sum().backward()
    assert len(seen) == 2
    np.testing.assert_allclose(seen[0], np.full(4, 3.0))
    np.testing.assert_allclose(seen[1], np.full(4, 6.0))  # accumulated, then called


def test_hooks_fire_as_each_leaf_becomes_ready_in_reverse_order():
    # A chain x -> l1 -> l2 -> loss: l2's gradient is final before l1's
    # backward starts, so its hook must run first; both before backward returns.
    w1, w2 = leaf(3, 3, seed=1), leaf(3, 3, seed=2)
    order = []
    w1.register_post_accumulate_grad_hook(lambda t: order.append("w1"))
    w2.register_post_accumulate_grad_hook(lambda t: order.append("w2"))
    x = nd.ones((2, 3))
    nd.matmul(nd.matmul(x, w1).relu(), w2).sum().backward()
    assert order == ["w2", "w1"]


def test_several_hooks_run_in_registration_order_and_removal_works():
    w = leaf(2)
    calls = []
    h1 = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    w.register_post_accumulate_grad_hook(lambda t: calls.append(2))
    (w * 2).sum().backward()
    assert calls == [1, 2]
    assert h1.remove() is True
    assert h1.remove() is False  # already gone
    calls.clear()
    (w * 2).sum().backward()
    assert calls == [2]


def test_no_hook_for_a_leaf_the_backward_does_not_reach_or_for_grad():
    w, unused = leaf(2), leaf(2, seed=3)
    calls = []
    w.register_post_accumulate_grad_hook(lambda t: calls.append("w"))
    unused.register_post_accumulate_grad_hook(lambda t: calls.append("unused"))
    loss = (w * 2).sum()
    nd.autograd.grad(loss, [w], retain_graph=True)  # leaves .grad alone: no hook
    assert calls == []
    loss.backward()
    assert calls == ["w"]


def test_hook_on_a_root_leaf():
    w = leaf(1)
    calls = []
    w.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad.numpy().copy()))
    w.backward(nd.ones((1,)))
    assert len(calls) == 1 and calls[0][0] == 1.0


def test_exception_in_a_hook_propagates_from_backward():
    w = leaf(2)

    def bad(t):
        raise RuntimeError("hook failed on purpose")

    h = w.register_post_accumulate_grad_hook(bad)
    with pytest.raises(RuntimeError, match="hook failed on purpose"):
        (w * 2).sum().backward()
    h.remove()
    (w * 2).sum().backward()  # the engine is usable afterwards


def test_hook_only_on_leaves_that_require_grad():
    with pytest.raises(ValueError, match="does not require grad"):
        nd.ones((2,)).register_post_accumulate_grad_hook(lambda t: None)
    w = leaf(2)
    with pytest.raises(ValueError, match="produced by"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)


def test_backward_callback_runs_after_every_hook():
    w1, w2 = leaf(2), leaf(2, seed=1)
    events = []

    def hook(name):
        def fn(t):
            events.append(name)
            if name == "w2":
                nd._C._queue_backward_callback(lambda: events.append("end"))
        return fn

    w1.register_post_accumulate_grad_hook(hook("w1"))
    w2.register_post_accumulate_grad_hook(hook("w2"))
    (w1 * w2).sum().backward()
    assert sorted(events[:2]) == ["w1", "w2"] and events[2:] == ["end"]
    assert not nd._C._in_backward()
    with pytest.raises(ValueError, match="no backward"):
        nd._C._queue_backward_callback(lambda: None)


def test_hook_of_a_dead_tensor_goes_away():
    import gc
    import weakref

    class Marker:
        pass

    m = Marker()
    ref = weakref.ref(m)
    w = leaf(2)
    w.register_post_accumulate_grad_hook(lambda t, m=m: None)
    del m, w
    gc.collect()
    leaf(2).register_post_accumulate_grad_hook(lambda t: None)  # registering prunes dead leaves
    assert ref() is None
