"""SGD (momentum, Nesterov), Adagrad, RMSprop, Adam, AdamW with torch.optim's semantics."""
from .. import _C
from .optimizer import Optimizer


def _zeros(p):
    return _C.zeros_like(p)


def _step():
    return _C.zeros([], _C.dtype.int64)


def _nonneg(name, g, *keys):
    for k in keys:
        if not float(g[k]) >= 0:
            raise ValueError(f"{name}: {k} must be >= 0, got {g[k]}")


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _check(self, g):
        super()._check(g)
        _nonneg("SGD", g, "momentum", "weight_decay")
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")

    def _init_state(self, p, g):
        if g["momentum"] == 0:
            return {}
        return {"momentum_buffer": _zeros(p), "step": _step()}

    def _update(self, p, grad, s, g):
        if g["momentum"] == 0:
            _C.apply_sgd(p, grad, g.lr_var, float(g["weight_decay"]))
        else:
            _C.apply_momentum(p, grad, s["momentum_buffer"], s["step"], g.lr_var, float(g["momentum"]),
                              float(g["dampening"]), bool(g["nesterov"]), float(g["weight_decay"]))


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _check(self, g):
        super()._check(g)
        _nonneg("Adagrad", g, "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def _init_state(self, p, g):
        return {"sum": _C.full_like(p, float(g["initial_accumulator_value"])), "step": _step()}

    def _update(self, p, grad, s, g):
        _C.apply_adagrad(p, grad, s["sum"], s["step"], g.lr_var, float(g["eps"]), float(g["weight_decay"]),
                         float(g["lr_decay"]))


class RMSprop(Optimizer):
    _optional_slots = ("momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered))

    def _check(self, g):
        super()._check(g)
        _nonneg("RMSprop", g, "alpha", "eps", "weight_decay", "momentum")

    def _init_state(self, p, g):
        s = {"square_avg": _zeros(p)}
        if g["momentum"] > 0:
            s["momentum_buffer"] = _zeros(p)
        if g["centered"]:
            s["grad_avg"] = _zeros(p)
        return s

    def _update(self, p, grad, s, g):
        _C.apply_rmsprop(p, grad, s["square_avg"], g.lr_var, float(g["alpha"]), float(g["eps"]),
                         float(g["weight_decay"]), float(g["momentum"]), bool(g["centered"]),
                         self._slot(p, s, "momentum_buffer", g["momentum"] > 0),
                         self._slot(p, s, "grad_avg", bool(g["centered"])))


class Adam(Optimizer):
    _decoupled = False
    _optional_slots = ("max_exp_avg_sq",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check(self, g):
        super()._check(g)
        b1, b2 = g["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {g['betas']}")
        _nonneg(type(self).__name__, g, "eps", "weight_decay")

    def _init_state(self, p, g):
        s = {"exp_avg": _zeros(p), "exp_avg_sq": _zeros(p), "step": _step()}
        if g["amsgrad"]:
            s["max_exp_avg_sq"] = _zeros(p)
        return s

    def _update(self, p, grad, s, g):
        b1, b2 = g["betas"]
        _C.apply_adam(p, grad, s["exp_avg"], s["exp_avg_sq"], s["step"], g.lr_var, float(b1), float(b2),
                      float(g["eps"]), float(g["weight_decay"]), self._decoupled, bool(g["amsgrad"]),
                      self._slot(p, s, "max_exp_avg_sq", bool(g["amsgrad"])))


class AdamW(Adam):
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
