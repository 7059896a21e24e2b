"""ndflow.Tensor from Python: NumPy and DLPack interop (zero-copy both ways),
attributes and repr, operators, indexing and assignment against NumPy,
gradients through indexing and in-place writes, grad mode and seeding."""
import gc

import numpy as np
import pytest

import ndflow as nd

RNG = np.random.default_rng(7)
DTYPES = [(np.float32, nd.float32), (np.float64, nd.float64), (np.float16, nd.float16), (np.int32, nd.int32),
          (np.int64, nd.int64), (np.uint8, nd.uint8), (np.bool_, nd.bool)]


def arr(*shape, dtype=np.float64):
    return RNG.uniform(-2, 2, size=shape).astype(dtype)


def A(t):
    return np.asarray(t.detach())


# ------------------------------------------------------------------ NumPy

@pytest.mark.parametrize("np_dtype,dtype", DTYPES)
def test_tensor_copies_numpy_and_keeps_its_dtype(np_dtype, dtype):
    a = (np.arange(6).reshape(2, 3) % 3).astype(np_dtype)
    t = nd.tensor(a)
    assert t.dtype == dtype and t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6
    np.testing.assert_array_equal(t.numpy(), a)
    a[0, 0] = 1
    assert t.numpy()[0, 0] == 0  # a copy
    back = nd.from_numpy(a)
    assert back.dtype == dtype and np.shares_memory(back.numpy(), a)


def test_tensor_from_python_data_follows_pytorch_defaults():
    assert nd.tensor([1.0, 2.0]).dtype == nd.float32
    assert nd.tensor([[1, 2], [3, 4]]).dtype == nd.int64
    assert nd.tensor([True, False]).dtype == nd.bool
    assert nd.tensor(2.5).shape == () and nd.tensor(2.5).item() == 2.5
    assert nd.tensor([0.1], dtype=nd.float64).numpy()[0] == 0.1  # no detour through float32
    assert nd.tensor(np.float64(1.5)).dtype == nd.float64
    t = nd.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf
    c = nd.tensor(t)
    assert not c.requires_grad and not np.shares_memory(A(c), A(t))


def test_from_numpy_is_zero_copy_both_ways():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    t = nd.from_numpy(a)
    a[1, 2] = -5
    assert t[1, 2].item() == -5
    t[0, 0] = 42.0
    t.add_(nd.ones(1, dtype=nd.float64))
    assert a[0, 0] == 43 and a[2, 3] == 12
    assert np.shares_memory(t.numpy(), a) and np.shares_memory(np.asarray(t), a)
    # strided NumPy views stay views
    v = nd.from_numpy(a[:, ::2])
    assert v.shape == (3, 2) and not v.is_contiguous()
    np.testing.assert_array_equal(v.numpy(), a[:, ::2])
    tt = nd.from_numpy(a.T)
    a[2, 1] = 99
    assert tt[1, 2].item() == 99
    # the tensor keeps the array alive
    b = np.arange(5.0)
    tb = nd.from_numpy(b)
    del b
    gc.collect()
    np.testing.assert_array_equal(tb.numpy(), np.arange(5.0))


def test_read_only_arrays_are_copied_not_aliased():
    b = bytes(8)
    t = nd.from_numpy(np.frombuffer(b, dtype=np.uint8))
    t.add_(nd.ones(1, dtype=nd.uint8))  # must not write into the immutable bytes
    assert b == bytes(8) and t.tolist() == [1] * 8
    ro = np.arange(3.0)
    ro.flags.writeable = False
    for u in (nd.from_numpy(ro), nd.from_dlpack(ro), nd.as_tensor(ro)):
        u.fill_(5.0)
        assert ro.tolist() == [0.0, 1.0, 2.0]
    bc = nd.from_numpy(np.broadcast_to(np.arange(3.0), (2, 3)))
    assert bc.tolist() == [[0.0, 1.0, 2.0]] * 2


def test_from_numpy_rejects_what_it_cannot_view():
    with pytest.raises(ValueError, match="negative"):
        nd.from_numpy(np.arange(4.0)[::-1])
    with pytest.raises(TypeError, match="byte order"):
        nd.from_numpy(np.arange(4.0).astype(">f8"))
    with pytest.raises(TypeError, match="complex"):
        nd.from_numpy(np.zeros(2, np.complex64))


def test_numpy_views_and_copies():
    t = nd.tensor(arr(2, 3))
    n = t.numpy()
    n[0, 0] = 7.0
    assert t[0, 0].item() == 7.0  # numpy() shares memory, like torch
    c = np.array(t)
    c[0, 1] = 8.0
    assert t[0, 1].item() != 8.0  # np.array copies
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert np.asarray(t.T).shape == (3, 2)
    m = memoryview(t)
    assert m.format == "d" and m.shape == (2, 3) and m.strides == (24, 8)
    g = nd.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="detach"):
        g.numpy()
    np.testing.assert_array_equal(g.detach().numpy(), [1.0, 2.0])
    with pytest.raises(TypeError, match="bfloat16"):
        nd.ones(2, dtype=nd.bfloat16).numpy()
    assert nd.ones(2, dtype=nd.bfloat16).float().tolist() == [1.0, 1.0]


# ----------------------------------------------------------------- DLPack

def test_dlpack_to_and_from_numpy_is_zero_copy():
    t = nd.tensor(arr(3, 4))
    assert t.__dlpack_device__() == (1, 0)  # kDLCPU, device 0
    a = np.from_dlpack(t)
    a[0, 0] = 11.0
    assert t[0, 0].item() == 11.0
    t[1] = 0.0
    assert (a[1] == 0).all()
    # views keep their strides
    np.testing.assert_array_equal(np.from_dlpack(t.T), A(t).T)
    np.testing.assert_array_equal(np.from_dlpack(t[:, 1::2]), A(t)[:, 1::2])
    np.testing.assert_array_equal(np.from_dlpack(nd.tensor([True, False])), [True, False])
    b = np.arange(6, dtype=np.int32).reshape(2, 3)
    u = nd.from_dlpack(b)
    assert u.dtype == nd.int32
    b[1, 1] = -1
    assert u[1, 1].item() == -1
    u[0, 0] = 9
    assert b[0, 0] == 9
    # DLPack 1.x (what NumPy 2 asks for) gives a writable view; copy=True a copy
    assert "dltensor_versioned" in repr(t.__dlpack__(max_version=(1, 0)))
    assert "dltensor_versioned" not in repr(t.__dlpack__())
    assert np.from_dlpack(t).flags.writeable
    c = np.from_dlpack(t, copy=True)
    c[0, 0] = -1.0
    assert t[0, 0].item() == 11.0
    with pytest.raises(BufferError, match="CPU"):
        t.__dlpack__(dl_device=(2, 0))
    # a capsule is consumed once
    cap = nd.tensor([1.0]).__dlpack__()
    assert nd.from_dlpack(cap).tolist() == [1.0]
    with pytest.raises(TypeError, match="capsule"):
        nd.from_dlpack(cap)


def test_dlpack_with_torch():
    torch = pytest.importorskip("torch")
    t = nd.tensor(arr(2, 3))
    pt = torch.from_dlpack(t)
    pt[0, 1] = 5.0
    assert t[0, 1].item() == 5.0
    t[1, 2] = -3.0
    assert pt[1, 2].item() == -3.0
    assert torch.from_dlpack(t.T).shape == (3, 2)
    src = torch.arange(12.0).reshape(3, 4)
    v = nd.from_dlpack(src.T)  # a strided view
    assert v.shape == (4, 3) and v.dtype == nd.float32
    np.testing.assert_array_equal(v.numpy(), src.T.numpy())
    src[0, 1] = 100.0
    assert v[1, 0].item() == 100.0
    bf = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    assert nd.from_dlpack(bf).dtype == nd.bfloat16
    assert torch.equal(torch.from_dlpack(nd.from_dlpack(bf)), bf)
    with pytest.raises(TypeError, match="DLPack dtype"):
        nd.from_dlpack(torch.zeros(2, dtype=torch.int16))


# ------------------------------------------------------ attributes, repr

def test_attributes():
    t = nd.tensor(arr(2, 3, 4))
    assert t.shape == (2, 3, 4) and t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.ndim == 3 and t.dim() == 3 and t.numel() == 24 and len(t) == 2
    assert t.device == "cpu:0" and t.dtype == nd.float64 and t.dtype.itemsize == 8
    assert t.T.shape == (4, 3, 2) and t.mT.shape == (2, 4, 3)
    assert [r.shape for r in t] == [(3, 4), (3, 4)]
    b = arr(2, 2)
    assert nd.tensor(b).tolist() == b.tolist() and nd.tensor(3).tolist() == 3
    assert float(nd.tensor(2.5)) == 2.5 and int(nd.tensor(3)) == 3 and [10, 20, 30][nd.tensor(1)] == 20
    with pytest.raises(TypeError):
        len(nd.tensor(1.0))
    assert nd.is_tensor(t) and not nd.is_tensor(A(t))


def test_repr_shows_values():
    t = nd.tensor(np.array([[1.5, -2.25], [0.0, 3.0]]))
    r = repr(t)
    assert "1.5" in r and "-2.25" in r and "3." in r and "float64" in r
    assert str(t) == r
    assert "requires_grad=True" in repr(nd.tensor([1.0], requires_grad=True))
    assert "requires_grad" not in r
    assert "True" in repr(nd.tensor([True, False])) and "7" in repr(nd.arange(8))
    assert all(str(v) in repr(nd.arange(10)) for v in range(10))  # short tensors in full
    big = repr(nd.arange(5000))
    assert "..." in big and "4999" in big and len(big) < 400
    assert "size=(0, 3)" in repr(nd.zeros(0, 3))
    assert "0.5" in repr(nd.full((2,), 0.5, dtype=nd.bfloat16))
    assert "2.5" in repr(nd.tensor(2.5))


# -------------------------------------------------------------- operators

def test_operators_match_numpy():
    a, b = arr(2, 3), arr(3) + 3.0
    x, y = nd.tensor(a), nd.tensor(b)
    for got, want in [(x + y, a + b), (x - y, a - b), (x * y, a * b), (x / y, a / b), (abs(x) ** y, abs(a) ** b),
                      (x @ y, a @ b), (-x, -a), (+x, a), (abs(x), abs(a)), (x + 2, a + 2), (2 + x, 2 + a),
                      (1 - x, 1 - a), (x * 0.5, a * 0.5), (3 / y, 3 / b), (2 ** x, 2 ** a), (x ** 2, a ** 2),
                      (x < y, a < b), (x <= 0.5, a <= 0.5), (x > y, a > b), (x >= y, a >= b), (x == x, a == a),
                      (x != y, a != b), (1 > x, 1 > a), ((x > 0) & (x < 1), (a > 0) & (a < 1)),
                      ((x > 1) | (x < -1), (a > 1) | (a < -1)), (~(x > 0), ~(a > 0)), (x @ x.T, a @ a.T)]:
        np.testing.assert_allclose(A(got), want, rtol=1e-12)
        assert A(got).dtype == np.asarray(want).dtype


def test_operator_dtypes_follow_pytorch():
    f = nd.ones(2)
    i = nd.tensor([1, 2])
    assert (f + 1).dtype == nd.float32 and (f * 2.5).dtype == nd.float32  # a Python number takes the tensor's dtype
    assert (nd.ones(2, dtype=nd.float64) + 1.5).dtype == nd.float64
    assert (i * 2).dtype == nd.int64 and (i + 1.5).dtype == nd.float32 and (i * 2.0).dtype == nd.float32
    assert (i / 2).dtype == nd.float32
    assert (nd.tensor([1, 2], dtype=nd.int32) + 2).dtype == nd.int32
    assert (nd.tensor([True, False]) + 1).dtype == nd.int64
    assert (f + i).dtype == nd.float32 and (nd.ones(2, dtype=nd.float64) + f).dtype == nd.float64
    assert (f == None) is False and (f != None) is True  # noqa: E711
    # NumPy operands on the left defer to the tensor (__array_priority__)
    for r in (np.float64(2.0) * f, np.ones(2) + f, np.ones(2) < f, np.ones(2) @ f, 3 - f):
        assert isinstance(r, nd.Tensor)
    assert (np.float64(2.0) * f).dtype == nd.float32 and (np.ones(2) + f).dtype == nd.float64
    assert 1.0 in f and 3.0 not in f
    with pytest.raises(TypeError, match="unsupported operand"):
        f + "a"
    with pytest.raises(TypeError):
        f @ None


def test_reductions_and_shapes_as_methods():
    a = arr(2, 3, 4)
    x = nd.tensor(a)
    np.testing.assert_allclose(A(x.sum(axis=1, keepdims=True)), a.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(A(x.sum(dim=(0, 2))), a.sum(axis=(0, 2)))
    np.testing.assert_allclose(A(x.mean()), a.mean())
    np.testing.assert_allclose(A(x.max(-1)), a.max(-1))
    np.testing.assert_allclose(A(x.reshape(4, 6)), a.reshape(4, 6))
    np.testing.assert_allclose(A(x.reshape((-1,))), a.reshape(-1))
    np.testing.assert_allclose(A(x.view(6, -1)), a.reshape(6, -1))
    np.testing.assert_allclose(A(x.flatten(1)), a.reshape(2, 12))
    np.testing.assert_allclose(A(x.transpose(0, 2)), a.transpose(2, 1, 0))
    np.testing.assert_allclose(A(x.permute(2, 0, 1)), a.transpose(2, 0, 1))
    assert x.unsqueeze(0).shape == (1, 2, 3, 4) and x.unsqueeze(dim=-1).shape == (2, 3, 4, 1)
    assert x.any().item() and not (x > 10).any().item() and (x < 10).all().item()
    np.testing.assert_array_equal(A((x > 0).any(axis=1)), (a > 0).any(axis=1))
    assert [c.shape for c in x.chunk(2, dim=2)] == [(2, 3, 2), (2, 3, 2)]
    assert [c.shape for c in x.split([1, 2], dim=1)] == [(2, 1, 4), (2, 2, 4)]
    np.testing.assert_allclose(A(x.where(x > 0, 0.0)), np.where(a > 0, a, 0.0))
    assert x.double().dtype == nd.float64 and x.float().dtype == nd.float32 and x.long().dtype == nd.int64
    assert x.int().dtype == nd.int32 and x.half().dtype == nd.float16 and x.bool().dtype == nd.bool
    assert x.type_as(nd.ones(1)).dtype == nd.float32
    assert x.to("cpu") is x and x.cpu() is x and x.to("cpu:0", nd.float32).dtype == nd.float32
    assert x.to(dtype=nd.int32).dtype == nd.int32 and x.to(nd.ones(1)).dtype == nd.float32
    with pytest.raises(ValueError, match="CPU"):
        x.to("cuda:0")


# --------------------------------------------------------------- indexing

KEYS = [
    "1", "-1", "(0, 2)", "(-1, -2, -3)", "slice(1, None)", "(slice(None), slice(None, None, 2))",
    "(slice(-3, -1), 0)", "(slice(5, 1),)", "(slice(0, 100), slice(-100, 2))", "Ellipsis", "(Ellipsis, 1)",
    "(0, Ellipsis)", "(Ellipsis, None)", "(None, 1, None)", "(slice(None), None, 1)", "True", "False",
    "[1, 0]", "[[1], [0]]", "[-1, 0, -2]", "([0, 1], [2, 0])", "(slice(None), [2, 0, 2])", "(Ellipsis, [3, -1])",
    "([0, 1], slice(None), [1, 3])", "(1, slice(None), [0, 3])", "(slice(None), 1, [0, 3])", "([1, 0], 2)",
    "([[0, 1], [1, 0]], [[0], [2]], 1)", "(None, [0, 1], None, [0, 1])", "(np.array([1, 0]), slice(1, 3))",
    "np.int64(1)", "[]", "(slice(None), [])",
    "A_ > 0", "A_[..., 0] > 0", "(A_[:, :, 0] > 0,)", "(1, A_[1, :, 0] > 0)", "(Ellipsis, [True, False, True, False])",
    "(slice(None), [True, False, True], 1)", "(np.array([True, False]), [0, 2])",
    "T_idx", "(T_mask,)", "(slice(None), T_idx2)", "(T_scalar,)",
]
A_ = np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 10.0


def _key(src, tensors):
    env = {"np": np, "A_": A_}
    if tensors:
        env.update(T_idx=nd.tensor([1, 0, 1]), T_mask=nd.tensor(A_[..., 0] > 0), T_idx2=nd.tensor([[2], [0]]),
                   T_scalar=nd.tensor(1))
    else:
        env.update(T_idx=np.array([1, 0, 1]), T_mask=A_[..., 0] > 0, T_idx2=np.array([[2], [0]]),
                   T_scalar=np.array(1))
    return eval(src, env)


@pytest.mark.parametrize("src", KEYS)
def test_getitem_matches_numpy(src):
    x = nd.tensor(A_)
    want = A_[_key(src, False)]
    got = x[_key(src, True)]
    assert got.shape == want.shape, f"x[{src}]: shape {got.shape}, NumPy {want.shape}"
    np.testing.assert_array_equal(A(got), want)


def test_basic_indexing_gives_views():
    a = np.zeros((3, 4))
    x = nd.from_numpy(a)
    row = x[1]
    row.fill_(2.0)
    x[:, 1:3][0].fill_(5.0)
    assert a[1].tolist() == [2.0] * 4 and a[0].tolist() == [0.0, 5.0, 5.0, 0.0]


@pytest.mark.parametrize("key,exc,msg", [
    ((5,), IndexError, "out of bounds"), ((0, -5), IndexError, "out of bounds"), ((0, 0, 0, 0), IndexError, "too many"),
    (([0, 2],), IndexError, "out of bounds"), (([0, -3],), IndexError, "out of bounds"),
    ((slice(None), [4]), IndexError, "out of bounds"), (([0, 1], [0, 1, 2]), IndexError, "broadcast"),
    ((np.array([True, False, True]),), IndexError, "boolean index"), ((1.5,), IndexError, "integers"),
    (("a",), IndexError, "integers"), ((Ellipsis, Ellipsis), IndexError, "ellipsis"),
    ((slice(None, None, -1),), ValueError, "step"), (([0.5],), IndexError, "integer or boolean"),
])
def test_bad_index_raises(key, exc, msg):
    with pytest.raises(exc, match=msg):
        nd.tensor(A_)[key]


SET_KEYS = [
    ("(0, 1)", "100.0"), ("(slice(None), 0)", "np.array([7.0, 8.0, 9.0, 10.0])"), ("(1, Ellipsis, 2)", "T_val3"),
    ("A_ > 0", "-1.0"), ("([0, 1], [2, 0])", "5.0"), ("([1],)", "3.0"),
    ("(slice(None), [0, 2])", "np.zeros((2, 2, 4))"),
    ("0", "1"), ("(Ellipsis, -1)", "np.arange(3.0)"), ("(slice(None), slice(None, None, 2))", "T_val2"),
    ("(None, 1)", "np.ones((1, 3, 4))"), ("([-1, 0], slice(1, 3), [0, -1])", "np.array([[1.0, 2.0], [3.0, 4.0]])"),
    ("(A_[..., 0] > 0, slice(None))", "np.arange(4.0)"), ("(T_idx, 1)", "T_val4"),
]


@pytest.mark.parametrize("track", [False, True], ids=["plain", "autograd"])
@pytest.mark.parametrize("key_src,val_src", SET_KEYS)
def test_setitem_matches_numpy(key_src, val_src, track):
    env_np = {"np": np, "A_": A_, "T_idx": np.array([1, 0]), "T_val3": np.array([1.0, 2.0, 3.0]),
              "T_val2": np.array(-4.0), "T_val4": np.array([6.0, 7.0, 8.0, 9.0])}
    env_nd = dict(env_np, T_idx=nd.tensor([1, 0]), T_val3=nd.tensor(np.array([1.0, 2.0, 3.0])),
                  T_val2=nd.tensor(np.array(-4.0)), T_val4=nd.tensor(np.array([6.0, 7.0, 8.0, 9.0])))
    want = A_.copy()
    want[eval(key_src, env_np)] = eval(val_src, env_np)
    if track:  # a non-leaf that requires grad takes the autograd path
        leaf = nd.tensor(A_.copy(), requires_grad=True)
        x = leaf * 1.0
    else:
        x = nd.tensor(A_.copy())
    x[eval(key_src, env_nd)] = eval(val_src, env_nd)
    np.testing.assert_array_equal(A(x), want)
    if track:
        (g,) = nd.grad(x.sum(), leaf)
        written = want != A_
        untouched = np.ones_like(A_)
        untouched[eval(key_src, env_np)] = 0.0
        np.testing.assert_array_equal(A(g), untouched)
        assert not written[untouched == 1].any()


def test_setitem_casts_and_broadcasts_like_torch():
    i = nd.tensor(np.arange(5))
    i[1] = 2.7
    i[[2, 3]] = nd.tensor([9, 9])
    assert i.tolist() == [0, 2, 9, 9, 4]
    x = nd.zeros(2, 3)
    x[:] = nd.tensor([1.0, 2.0, 3.0])
    x[1] = [4, 5, 6]
    assert x.tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError):
        x[0] = nd.ones(4)


def _numeric_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    flat, gf = a.reshape(-1), g.reshape(-1)
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + eps
        hi = f(a)
        flat[j] = old - eps
        lo = f(a)
        flat[j] = old
        gf[j] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("src", ["(1, slice(None), 2)", "(slice(None), slice(1, None, 2))", "(None, Ellipsis, -1)",
                                 "[1, 1, 0]", "(slice(None), [2, 0, 2])", "([0, 1, 1], slice(None), [3, 0, 3])",
                                 "(1, slice(None), [0, 3])", "A_ > 0", "(Ellipsis, [True, False, True, False])"])
def test_gradient_through_indexing(src):
    a = arr(2, 3, 4)
    key = _key(src, True)
    w = arr(*A_[_key(src, False)].shape)
    x = nd.tensor(a, requires_grad=True)
    (x[key] * nd.tensor(w)).sum().backward()
    num = _numeric_grad(lambda v: float((v[_key(src, False)] * w).sum()), a.copy())
    np.testing.assert_allclose(A(x.grad), num, rtol=1e-6, atol=1e-8)


# ------------------------------------------------ in-place writes, autograd

def test_writes_under_autograd_route_gradients_like_pytorch():
    v = nd.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    out = nd.zeros(3, 3, dtype=nd.float64)
    for i in range(3):
        out[i] = v * (i + 1)  # builds a matrix row by row, as in an RNN loop
    assert out.requires_grad and not out.is_leaf
    (out * out).sum().backward()
    np.testing.assert_allclose(A(v.grad), 2 * A(v) * (1 + 4 + 9))

    x = nd.tensor(arr(2, 3), requires_grad=True)
    y = x * 2.0
    y[0, 1] = 0.0
    y += x
    y *= 3.0
    y /= 2.0
    y -= 1.0
    (g,) = nd.grad(y.sum(), x)
    want = np.full((2, 3), 1.5 * 3)
    want[0, 1] = 1.5
    np.testing.assert_allclose(A(g), want)


def test_in_place_writes_that_autograd_cannot_follow_raise():
    x = nd.tensor(arr(2, 3), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        x[0] = 1.0
    with pytest.raises(RuntimeError, match="leaf"):
        x += 1.0
    with nd.no_grad():
        x[0, 0] = 1.0  # allowed: an update outside autograd
        x += 1.0
    assert x[0, 0].item() == 2.0
    e = x.exp()  # exp saves its output for backward
    with pytest.raises(RuntimeError, match="shares its memory"):
        e[0] = 0.0
    y = x * 1.0
    view = y[0]
    with pytest.raises(RuntimeError, match="shares its memory"):
        view[1] = 0.0
    del view
    # a saved input changed outside autograd fails at backward, naming the op
    w = x * 1.0
    s = w * w
    with nd.no_grad():
        w[0, 0] = 3.0
    with pytest.raises(ValueError, match=r"\[mul\].*modified in place"):
        s.sum().backward()


# -------------------------------------------------------------- autograd

def test_backward_grad_detach_and_accumulation():
    a = arr(2, 3)
    x = nd.tensor(a, requires_grad=True)
    loss = (x * x).sum()
    assert loss.requires_grad and not loss.is_leaf and x.is_leaf and x.grad is None
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(A(x.grad), 2 * a)
    loss.backward()
    np.testing.assert_allclose(A(x.grad), 4 * a)  # gradients accumulate
    x.grad = None
    (x * 3).backward(nd.ones(2, 3, dtype=nd.float64))
    np.testing.assert_allclose(A(x.grad), 3.0)
    x.zero_grad()
    assert x.grad is None
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.numpy(), A(x))
    (g,) = nd.grad((x ** 3).sum(), x)
    np.testing.assert_allclose(A(g), 3 * a * a)
    assert x.grad is None  # ndflow.grad leaves .grad alone
    gx, gy = nd.grad([(x * 2).sum()], [x, nd.ones(1, requires_grad=True)], allow_unused=True)
    assert gy is None and np.allclose(A(gx), 2.0)
    gs = nd.grad(x * 2, x, grad_outputs=nd.tensor(np.full((2, 3), 0.5)))
    np.testing.assert_allclose(A(gs[0]), 1.0)
    with pytest.raises(RuntimeError, match="allow_unused"):
        nd.grad((x * 2).sum(), nd.ones(1, requires_grad=True))
    y = (x * x).sum()
    y.backward()
    with pytest.raises(Exception):
        y.backward()  # the graph was freed


def test_grad_mode():
    x = nd.tensor([1.0, 2.0], requires_grad=True)
    assert nd.is_grad_enabled()
    with nd.no_grad():
        assert not nd.is_grad_enabled() and not (x * 2).requires_grad
        with nd.enable_grad():
            assert (x * 2).requires_grad
    assert nd.is_grad_enabled() and (x * 2).requires_grad

    @nd.no_grad()
    def f():
        return x * 2
    assert not f().requires_grad and nd.is_grad_enabled()
    with nd.set_grad_enabled(False):
        assert not (x + 1).requires_grad
    with pytest.raises(ZeroDivisionError):
        with nd.no_grad():
            1 / 0
    assert nd.is_grad_enabled()  # restored after an exception


def test_values_of_a_traced_tensor_raise_tracing_error():
    @nd.function
    def f(x):
        if x.sum() > 0:  # Python control flow on a value
            return x
        return -x
    with pytest.raises(nd.TracingError, match="symbolic") as e:
        f(nd.ones(2))
    assert isinstance(e.value, RuntimeError) and "ndflow.where" in str(e.value)


def test_manual_seed_and_threads():
    nd.manual_seed(42)
    a = nd.randn(3, 4).numpy().copy()
    b = nd.rand(5).numpy().copy()
    nd.manual_seed(42)
    np.testing.assert_array_equal(nd.randn(3, 4).numpy(), a)
    np.testing.assert_array_equal(nd.rand(5).numpy(), b)
    nd.manual_seed(43)
    assert not np.array_equal(nd.randn(3, 4).numpy(), a)
    n = nd.get_num_threads()
    x = nd.tensor(arr(64, 300))
    try:
        nd.set_num_threads(1)
        assert nd.get_num_threads() == 1
        one = A(nd.exp(x).sum(axis=1))
        nd.set_num_threads(2)
        np.testing.assert_allclose(A(nd.exp(x).sum(axis=1)), one, rtol=1e-12)
    finally:
        nd.set_num_threads(n)
