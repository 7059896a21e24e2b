"""The nn samples of tests/python/test_ops.py (activations, losses, conv and
pooling, normalization, embedding), the state and optimizer-update ops, the
Python-level composites and the collectives; op_samples.py imports this
module last, so SAMPLES keeps one order. See op_samples.py for S and add."""
from op_samples import *  # noqa: F401,F403  (add, S, rnd, the NumPy references, np, nd, ...)


# ------------------------------------------------------------------- nn

add("softmax", [rnd(2, 3, lo=-3, hi=3)], lambda a: np_softmax(a, -1))
add("softmax", [rnd(3, 4, lo=-3, hi=3)], lambda a: np_softmax(a, 0), 0)
add("softmax", [rnd(2, 3, 4, lo=-3, hi=3)], lambda a: np_softmax(a, 1), dim=1)
add("softmax", [np.array([[1000.0, -1000.0, 999.0]])], lambda a: np_softmax(a, -1), grad=False)
add("softmax", [rnd(2, 3, dtype=np.float32)], lambda a: np_softmax(a, -1).astype(np.float32), atol=1e-7, rtol=1e-5)
add("log_softmax", [rnd(2, 3, lo=-3, hi=3)], lambda a: np_log_softmax(a, -1))
add("log_softmax", [rnd(3, 4, lo=-3, hi=3)], lambda a: np_log_softmax(a, 0), axis=0)
add("log_softmax", [rnd(2, 3, 4, lo=-3, hi=3)], lambda a: np_log_softmax(a, 1), dim=1)
add("log_softmax", [np.array([[1000.0, -1000.0, 999.0]])], lambda a: np_log_softmax(a, -1), grad=False)
Y = np_softmax(rnd(2, 3, 4), 1)
add("softmax_backward", [Y, rnd(2, 3, 4)], lambda y, g: y * (g - (g * y).sum(1, keepdims=True)),
    call=lambda y, g: nd.ops.softmax_backward(y, g, axis=1))
add("log_softmax_backward", [np.log(Y), rnd(2, 3, 4)], lambda y, g: g - np.exp(y) * g.sum(1, keepdims=True),
    call=lambda y, g: nd.ops.log_softmax_backward(y, g, axis=1))
LOGITS = rnd(4, 5, lo=-2, hi=2)
LABELS = np.array([1, 2, 4, 0])
for red in ["mean", "sum", "none"]:
    add("cross_entropy", [LOGITS, LABELS], lambda a, l, red=red: np_cross_entropy(a, l, red), reduction=red)
add("cross_entropy", [rnd(2, 3, 2), np.array([[2, 0], [1, 1]])], lambda a, l: np_cross_entropy(a, l, "none"),
    reduction="none")
add("cross_entropy", [rnd(2, 3, 2), np.array([[2, 0], [1, 1]])], np_cross_entropy)
add("cross_entropy", [rnd(3), np.array(2)], lambda a, l: np_cross_entropy(a, l, "none"), reduction="none")
add("cross_entropy", [rnd(2, 5, dtype=np.float32), np.array([4, 2], np.int32)],
    lambda a, l: np_cross_entropy(a.astype(F64), l).astype(np.float32), atol=1e-6, rtol=1e-6)
for red, g in [("mean", np.array(0.75)), ("sum", np.array(0.75)), ("none", rnd(4))]:
    add("cross_entropy_backward", [LOGITS, LABELS, g],
        lambda a, l, g, red=red: np_cross_entropy_backward(a, l, g, red),
        call=lambda a, l, g, red=red: nd.ops.cross_entropy_backward(a, l, g, reduction=red))
add("cross_entropy_backward", [rnd(2, 3, 2), np.array([[2, 0], [1, 1]]), rnd(2, 2)],
    lambda a, l, g: np_cross_entropy_backward(a, l, g, "none"),
    call=lambda a, l, g: nd.ops.cross_entropy_backward(a, l, g, reduction="none"))

# convolution and pooling (NCHW)
CX = rnd(2, 3, 5, 6)
CW = rnd(4, 3, 3, 2)
CB = rnd(4)
add("conv2d", [CX, CW, CB], lambda x, w, b: np_conv2d(x, w, b), call=lambda x, w, b: nd.conv2d(x, w, b))
add("conv2d", [CX, CW], lambda x, w: np_conv2d(x, w, None, (2, 1), (1, 2), (1, 2)),
    call=lambda x, w: nd.conv2d(x, w, stride=(2, 1), padding=(1, 2), dilation=(1, 2)))
add("conv2d", [rnd(1, 4, 4, 4), rnd(6, 2, 2, 2), rnd(6)], lambda x, w, b: np_conv2d(x, w, b, groups=2),
    call=lambda x, w, b: nd.conv2d(x, w, b, groups=2))
add("conv2d", [CX, CW, CB], lambda x, w, b: np.maximum(np_conv2d(x, w, b, padding=(1, 1)), 0),
    call=lambda x, w, b: nd.ops.conv2d(x, w, b, padding=[1, 1], activation="relu"), grad=False)
add("conv2d", [CX.astype(np.float32), CW.astype(np.float32)],
    lambda x, w: np_conv2d(x.astype(F64), w.astype(F64)).astype(np.float32), atol=1e-5, rtol=1e-5,
    call=lambda x, w: nd.conv2d(x, w))
CGY = rnd(2, 4, 3, 5)  # the output gradient of conv2d(CX, CW) at stride 1, padding 0
add("conv2d_backward_data", [CGY, CW, CX], lambda g, w, like: adjoint(lambda a: np_conv2d(a, w), like.shape, g),
    grad=[0, 1], call=lambda g, w, like: nd.ops.conv2d_backward_data(g, w, like, stride=[1, 1], padding=[0, 0]))
add("conv2d_backward_weight", [CX, CGY], lambda x, g: adjoint(lambda a: np_conv2d(x, a), CW.shape, g),
    call=lambda x, g: nd.ops.conv2d_backward_weight(x, g, kernel_size=[3, 2]))
PX = distinct(2, 2, 5, 6)
add("max_pool2d", [PX], lambda x: np_pool2d(x, (2, 2), (2, 2), (0, 0), "max"),
    call=lambda x: nd.max_pool2d(x, 2))
add("max_pool2d", [PX], lambda x: np_pool2d(x, (3, 2), (1, 2), (1, 1), "max"),
    call=lambda x: nd.max_pool2d(x, (3, 2), stride=(1, 2), padding=1))
add("avg_pool2d", [PX], lambda x: np_pool2d(x, (2, 2), (2, 2), (0, 0), "avg"),
    call=lambda x: nd.avg_pool2d(x, 2))
add("avg_pool2d", [PX], lambda x: np_pool2d(x, (3, 3), (2, 2), (1, 1), "avg", False),
    call=lambda x: nd.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))


def np_max_pool2d_indices(x, k, stride, padding, dilation=(1, 1)):
    """Flat h * W + w of each window's first maximum (padding never wins)."""
    n, c, h, w = x.shape
    span = [dilation[d] * (k[d] - 1) + 1 for d in range(2)]
    oh = (h + 2 * padding[0] - span[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - span[1]) // stride[1] + 1
    out = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride[0] - padding[0], j * stride[1] - padding[1]
            rs = [r0 + a * dilation[0] for a in range(k[0]) if 0 <= r0 + a * dilation[0] < h]
            cs = [c0 + b * dilation[1] for b in range(k[1]) if 0 <= c0 + b * dilation[1] < w]
            cells = [(r, q) for r in rs for q in cs]  # row-major: argmax takes the first maximum
            vals = np.stack([x[:, :, r, q] for r, q in cells], axis=-1)
            best = vals.argmax(-1)
            out[:, :, i, j] = np.array([cells[b][0] * w + cells[b][1] for b in best.ravel()]).reshape(n, c)
    return out


add("max_pool2d_indices", [PX], lambda x: np_max_pool2d_indices(x, (2, 2), (2, 2), (0, 0)), 2)
add("max_pool2d_indices", [PX], lambda x: np_max_pool2d_indices(x, (3, 2), (1, 2), (1, 1)), (3, 2),
    stride=(1, 2), padding=1)
add("max_pool2d_indices", [PX], lambda x: np_max_pool2d_indices(x, (2, 2), (1, 1), (1, 0), (2, 3)), 2,
    stride=1, padding=(1, 0), dilation=(2, 3))
add("max_pool2d", [PX], lambda x: np.take_along_axis(
    x.reshape(2, 2, -1), np_max_pool2d_indices(x, (2, 2), (1, 1), (1, 0), (2, 3)).reshape(2, 2, -1), 2
).reshape(2, 2, 5, 3), 2, stride=1, padding=(1, 0), dilation=(2, 3))
PG = rnd(2, 2, 2, 3)
add("max_pool2d_backward", [PX, PG], lambda x, g: np_max_pool2d_backward(x, g, (2, 2)),
    call=lambda x, g: nd.ops.max_pool2d_backward(x, g, kernel_size=[2, 2]))
add("avg_pool2d_backward", [PX, PG], lambda x, g: adjoint(
    lambda a: np_pool2d(a, (2, 2), (2, 2), (0, 0), "avg"), x.shape, g), grad=[1],
    call=lambda x, g: nd.ops.avg_pool2d_backward(x, g, kernel_size=[2, 2]))

# normalization and embedding (ops/norm.cc)


def np_bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def np_bc(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def np_batch_norm(x, m, v, w=None, b=None, eps=1e-5):
    y = (x - np_bc(m, x)) / np.sqrt(np_bc(v, x) + eps)
    return y if w is None else y * np_bc(w, x) + np_bc(b, x)


def np_bn_stats(x):
    return x.mean(np_bn_axes(x)), x.var(np_bn_axes(x))


def np_bn_backward(g, x, m, v, w, gm=None, gv=None, eps=1e-5, training=True):
    ax, n = np_bn_axes(x), x.size / x.shape[1]
    invstd = 1 / np.sqrt(v + eps)
    xhat = (x - np_bc(m, x)) * np_bc(invstd, x)
    db, dw = g.sum(ax), (g * xhat).sum(ax)
    if not training:
        return g * np_bc(w * invstd, x), dw, db
    dx = np_bc(w * invstd, x) * (g - np_bc(db / n, x) - xhat * np_bc(dw / n, x))
    if gm is not None:
        dx = dx + np_bc(gm / n, x) + np_bc(gv, x) * 2 * (x - np_bc(m, x)) / n
    return dx, dw, db


def np_layer_norm(x, k, w=None, b=None, eps=1e-5):
    ax = tuple(range(x.ndim - k, x.ndim))
    y = (x - x.mean(ax, keepdims=True)) / np.sqrt(x.var(ax, keepdims=True) + eps)
    return y if w is None else y * w + b


def np_layer_norm_backward(g, x, k, w=None, eps=1e-5):
    ax, lead = tuple(range(x.ndim - k, x.ndim)), tuple(range(x.ndim - k))
    xhat = np_layer_norm(x, k, eps=eps)
    rstd = 1 / np.sqrt(x.var(ax, keepdims=True) + eps)
    gw = g if w is None else g * w
    dx = rstd * (gw - gw.mean(ax, keepdims=True) - xhat * (gw * xhat).mean(ax, keepdims=True))
    return dx, (g * xhat).sum(lead), g.sum(lead)


def np_embedding_backward(g, idx, num_rows, pad=-1):
    out = np.zeros((num_rows, g.shape[-1]))
    for i, k in enumerate(idx.reshape(-1)):
        if k != pad:
            out[k] += g.reshape(-1, g.shape[-1])[i]
    return out


BNX, BNW, BNB = rnd(4, 3, 2, 2), rnd(3, lo=0.5, hi=1.5), rnd(3)
BNM, BNV = rnd(3, lo=-0.5, hi=0.5), rnd(3, lo=0.5, hi=2.0)
add("batch_norm", [BNX, BNW, BNB], lambda x, w, b: (np_batch_norm(x, *np_bn_stats(x), w, b), *np_bn_stats(x)),
    call=lambda x, w, b: nd.ops.batch_norm(x, w, b, eps=1e-5))
add("batch_norm", [rnd(5, 3)], lambda x: (np_batch_norm(x, *np_bn_stats(x), eps=1e-3), *np_bn_stats(x)),
    call=lambda x: nd.ops.batch_norm(x, eps=1e-3))
add("batch_norm", [BNX, BNW, BNB], lambda x, w, b: np_batch_norm(x, *np_bn_stats(x), w, b),
    call=lambda x, w, b: nd.batch_norm(x, nd.zeros(3), nd.ones(3), w, b, training=True))
add("batch_norm", [BNX, BNM, BNV, BNW, BNB], lambda x, m, v, w, b: np_batch_norm(x, m, v, w, b),
    call=lambda x, m, v, w, b: nd.batch_norm(x, m, v, w, b, training=False))
add("batch_norm_inference", [rnd(4, 3), BNM, BNV], lambda x, m, v: np_batch_norm(x, m, v, eps=1e-2),
    call=lambda x, m, v: nd.ops.batch_norm_inference(x, m, v, eps=1e-2))
add("batch_norm_inference", [rnd(2, 3, 4), BNM, BNV, BNW, BNB], np_batch_norm,
    call=lambda *a: nd.ops.batch_norm_inference(*a))
BNG = rnd(4, 3, 2, 2)
add("batch_norm_backward", [BNG, BNX, *np_bn_stats(BNX), BNW, rnd(3), rnd(3)],
    lambda g, x, m, v, w, gm, gv: np_bn_backward(g, x, m, v, w, gm, gv),
    call=lambda *a: nd.ops.batch_norm_backward(*a, eps=1e-5, training=True))
add("batch_norm_backward", [BNG, BNX, BNM, BNV, BNW],
    lambda g, x, m, v, w: np_bn_backward(g, x, m, v, w, training=False),
    call=lambda *a: nd.ops.batch_norm_backward(*a, training=False))


def _bn_update(rm, rv, m, v, x):
    nd.ops.batch_norm_update_stats(rm, rv, m, v, x, momentum=0.25)
    return rm, rv


add("batch_norm_update_stats", [BNM, BNV, rnd(3), rnd(3, lo=0, hi=1), BNX],
    lambda rm, rv, m, v, x: (0.75 * rm + 0.25 * m, 0.75 * rv + 0.25 * v * 16 / 15), call=_bn_update)
LNX = rnd(2, 3, 4)
add("layer_norm", [LNX, rnd(4, lo=0.5, hi=1.5), rnd(4)], lambda x, w, b: np_layer_norm(x, 1, w, b),
    call=lambda x, w, b: nd.layer_norm(x, 4, w, b))
add("layer_norm", [LNX], lambda x: np_layer_norm(x, 2, eps=1e-3), call=lambda x: nd.layer_norm(x, (3, 4), eps=1e-3))
add("layer_norm_backward", [rnd(2, 3, 4), LNX, rnd(4, lo=0.5, hi=1.5)],
    lambda g, x, w: np_layer_norm_backward(g, x, 1, w),
    call=lambda g, x, w: nd.ops.layer_norm_backward(g, x, w, normalized_shape=[4]))
add("layer_norm_backward", [rnd(2, 3, 4), LNX], lambda g, x: np_layer_norm_backward(g, x, 2),
    call=lambda g, x: nd.ops.layer_norm_backward(g, x, normalized_shape=[3, 4]))
EMB = rnd(5, 3)
EIDX = np.array([[0, 4, 1], [1, 1, 0]])
add("embedding", [EIDX, EMB], lambda i, w: w[i], grad=[1], call=lambda i, w: nd.embedding(i, w))
add("embedding", [EIDX.astype(np.int32), EMB], lambda i, w: w[i], grad=False,
    call=lambda i, w: nd.embedding(i, w, padding_idx=1))  # the padding row's gradient is 0, not the FD one
add("embedding_backward", [rnd(2, 3, 3), EIDX], lambda g, i: np_embedding_backward(g, i, 5, 1), grad=[0],
    call=lambda g, i: nd.ops.embedding_backward(g, i, num_rows=5, padding_idx=1))

# ------------------------------------------------------- state and updates


def _assigned(fn):
    """Runs an in-place op and returns the tensors it wrote."""
    def call(*ts):
        fn(*ts)
        return ts[0]
    return call


add("assign", [X23, rnd(3)], lambda v, x: np.broadcast_to(x, v.shape), call=_assigned(nd.assign))
add("assign_add", [X23, np.array([1], np.int32)], lambda v, x: v + x, call=_assigned(nd.assign_add))
add("assign_add", [X23], lambda v: v + 0.5, call=_assigned(lambda v: nd.assign_add(v, 0.5)))

# fused_elementwise: programs in kernels/fused_ops.h's format, compared with the unfused expression
FA, FB, FC = rnd(2, 3), rnd(3), rnd(2, 1)
add("fused_elementwise", [FA, FB, FC], lambda a, b, c: np.maximum(a * b + c, 0),
    call=lambda a, b, c: nd.ops.fused_elementwise(a, b, c, ops="mul add relu", args=[0, 1, 3, 2, 4], params=[0.0] * 6))
add("fused_elementwise", [FA], lambda a: np.exp(a) * np.exp(a) - a,
    call=lambda a: nd.ops.fused_elementwise(a, ops="exp mul sub", args=[0, 1, 1, 2, 0], params=[0.0] * 6))
add("fused_elementwise", [rnd(3, 4, lo=-2, hi=2)], lambda x: np.tanh(np.clip(np.where(x > 0, x, 0.2 * x), -0.5, 0.5)),
    call=lambda x: nd.ops.fused_elementwise(x, ops="leaky_relu clamp tanh", args=[0, 1, 2],
                                            params=[0.2, 0, -0.5, 0.5, 0, 0]))


def _opt(name, **attrs):
    """Runs ndflow.ops.<name> (it updates param, its slots and the step
    counter in place) and returns its inputs but the gradient and the
    empty (unused) slots."""
    def call(*ts):
        getattr(nd.ops, name)(*ts, **attrs)
        return tuple(t for i, t in enumerate(ts) if i != 1 and t.numel())  # all but the gradient
    return call


P0, G0, LR = rnd(2, 3), rnd(2, 3), np.array(0.1)
S1, S2, S3 = rnd(2, 3, lo=0, hi=1), rnd(2, 3, lo=0, hi=1), rnd(2, 3, lo=0, hi=1)
STEP0, NONE = np.array(0), np.zeros(0)
add("apply_sgd", [P0, G0, LR], lambda p, g, lr: (p - lr * (g + 0.01 * p), lr),
    call=_opt("apply_sgd", weight_decay=0.01))


def np_momentum(p, g, v, step, lr, mu, damp=0.0, nesterov=False, wd=0.0):
    g = g + wd * p
    buf = g if step == 0 or mu == 0 else mu * v + (1 - damp) * g
    return p - lr * (g + mu * buf if nesterov else buf), buf, step + 1, lr


add("apply_momentum", [P0, G0, S1, STEP0, LR], lambda *a: np_momentum(*a, 0.9),
    call=_opt("apply_momentum", momentum=0.9))
add("apply_momentum", [P0, G0, S1, np.array(4), LR], lambda *a: np_momentum(*a, 0.9, 0.0, True, 0.1),
    call=_opt("apply_momentum", momentum=0.9, nesterov=True, weight_decay=0.1))
add("apply_momentum", [P0, G0, S1, np.array(4), LR], lambda *a: np_momentum(*a, 0.5, 0.3),
    call=_opt("apply_momentum", momentum=0.5, dampening=0.3))


def np_adagrad(p, g, acc, step, lr, eps=1e-10, wd=0.0, lr_decay=0.0):
    g = g + wd * p
    acc = acc + g * g
    clr = lr / (1 + step * lr_decay)
    return p - clr * g / (np.sqrt(acc) + eps), acc, step + 1, lr


add("apply_adagrad", [P0, G0, S1, np.array(3), LR], lambda *a: np_adagrad(*a, 1e-10, 0.1, 0.01),
    call=_opt("apply_adagrad", lr_decay=0.01, weight_decay=0.1))


def np_rmsprop(p, g, sq, buf, ga, lr, alpha=0.99, eps=1e-8, wd=0.0, mu=0.0, centered=False):
    g = g + wd * p
    sq = alpha * sq + (1 - alpha) * g * g
    out = [sq]
    if centered:
        ga = ga + (1 - alpha) * (g - ga)
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if mu > 0:
        buf = mu * buf + g / avg
        p = p - lr * buf
        out.append(buf)
    else:
        p = p - lr * g / avg
    if centered:
        out.append(ga)
    return (p, *out, lr)


add("apply_rmsprop", [P0, G0, S1, NONE, NONE, np.array(0.01)], np_rmsprop, call=_opt("apply_rmsprop"))
add("apply_rmsprop", [P0, G0, S1 + 1, S2, S3, np.array(0.01)], lambda *a: np_rmsprop(*a, 0.9, 1e-8, 0.1, 0.9, True),
    call=_opt("apply_rmsprop", alpha=0.9, momentum=0.9, centered=True, weight_decay=0.1))


def np_adam(p, g, m, v, vmax, step, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False, amsgrad=False):
    t = step + 1
    if decoupled:
        p = p * (1 - lr * wd)
    elif wd:
        g = g + wd * p
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    second = np.maximum(v, vmax) if amsgrad else v
    p = p - lr / (1 - b1 ** t) * m / (np.sqrt(second) / np.sqrt(1 - b2 ** t) + eps)
    return (p, m, v) + ((second,) if amsgrad else ()) + (t, lr)


add("apply_adam", [P0, G0, S1, S2, NONE, STEP0, np.array(1e-3)], np_adam, call=_opt("apply_adam"))
add("apply_adam", [P0, G0, S1, S2, S3, np.array(2.0), np.array(1e-3)],
    lambda *a: np_adam(*a, 0.8, 0.99, 1e-8, 0.01, True, True),
    call=_opt("apply_adam", beta1=0.8, beta2=0.99, amsgrad=True, decoupled_weight_decay=True, weight_decay=0.01))

# --------------------------------------- Python-level composites (not registered)

add("mean", [X234], lambda a: a.mean(axis=(0, 2)), axis=(0, 2), diff=True)
add("mean", [X234], lambda a: a.mean(), diff=True)
add("var", [X234], lambda a: a.var(axis=1, ddof=1), axis=1, diff=True)
add("var", [X234], lambda a: a.var(axis=-1, keepdims=True), dim=-1, keepdim=True, unbiased=False, diff=True)
add("std", [X234], lambda a: a.std(ddof=1), diff=True)
add("std", [X234], lambda a: a.std(axis=0, ddof=0), axis=0, correction=0, diff=True)
add("logsumexp", [X234], lambda a: np.log(np.exp(a).sum(axis=1)), axis=1, diff=True)
add("silu", [X23], lambda a: a * np_sigmoid(a), diff=True)
add("mse_loss", [X23, rnd(2, 3)], lambda a, b: ((a - b) ** 2).mean(), diff=True)
add("mse_loss", [X23, rnd(2, 3)], lambda a, b: ((a - b) ** 2).sum(), reduction="sum", diff=True)
add("mse_loss", [X23, rnd(2, 3)], lambda a, b: (a - b) ** 2, reduction="none", diff=True,
    method=lambda a, b: nd.mse_loss(a, b, "none"))
add("transpose", [X234], lambda a: a.swapaxes(0, 2), 0, 2, diff=True)
add("transpose", [X23], lambda a: a.T, diff=True)
add("flatten", [X234], lambda a: a.reshape(-1), diff=True)
add("flatten", [rnd(2, 3, 4, 5)], lambda a: a.reshape(2, 12, 5), 1, 2, diff=True)
add("stack", [X23, rnd(2, 3)], lambda a, b: np.stack([a, b], 1), call=lambda a, b: nd.stack([a, b], dim=1), diff=True)
add("split", [rnd(5, 2)], lambda a: tuple(np.split(a, [2, 4])), 2, diff=True)
add("split", [rnd(2, 6)], lambda a: tuple(np.split(a, [1, 4], axis=1)), [1, 3, 2], dim=1, diff=True)
add("chunk", [rnd(2, 6)], lambda a: tuple(np.split(a, 3, axis=1)), 3, dim=1, diff=True)
add("subtract", [X23, rnd(3)], np.subtract, diff=True)
add("multiply", [X23, rnd(3)], np.multiply, diff=True)
add("divide", [X23, away(rnd(3), [0], 0.3)], np.divide, diff=True)
add("true_divide", [X23, np.array(2.0)], np.divide, diff=True)
add("dropout", [X23], lambda a: a, 0.5, training=False, diff=True)
add("randperm", [], call=lambda: nd.randperm(10), check=lambda out: sorted(out.tolist()) == list(range(10)) or
    pytest.fail(f"not a permutation: {out.tolist()}"))
add("zeros", [], lambda: np.zeros((2, 3), np.float32), call=lambda: nd.zeros(2, 3))
add("ones", [], lambda: np.ones((2, 3), np.int32), call=lambda: nd.ones((2, 3), dtype=nd.int32))
add("empty", [], call=lambda: nd.empty(2, 3), check=lambda out: out.shape == (2, 3) or pytest.fail("shape"))
add("tensor", [X23], lambda a: a, call=lambda x: nd.tensor(x.numpy()), grad=False)
add("as_tensor", [X23], lambda a: a.astype(np.float32), call=lambda x: nd.as_tensor(x, nd.float32), grad=False)

# ---------------------------------------- collectives (in a world of one)
# ops/collective.cc: copies here, so the samples check the copy (of strided
# inputs too) and gradcheck each gradient formula at N = 1; the N-rank
# behaviour is tests/dist/test_graph_collectives.py.
add("all_reduce", [X23], lambda a: a, call=lambda x: nd.ops.all_reduce(x, op="sum"))
add("all_reduce", [X23], lambda a: a.T, call=lambda x: nd.ops.all_reduce(x.T, op="mean"))
add("all_reduce_coalesced", [X23, rnd(4)], lambda a, b: (a, b),
    call=lambda a, b: nd.ops.all_reduce_coalesced(a, b, op="mean"))
add("broadcast", [X23], lambda a: a, call=lambda x: nd.ops.broadcast(x, root=0))
add("all_gather", [X23], lambda a: a[None], call=lambda x: nd.ops.all_gather(x))
