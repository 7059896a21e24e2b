"""Checkpoints: everything needed to resume training, in one .ndf container.

``save_checkpoint`` writes parameters and buffers, optimizer slots and
hyperparameters, the random generator's state, the data loader's position
and the step to a temporary file, fsyncs it and renames it over ``path``
(core/format_writer.cc), so a crash during a save leaves the previous
checkpoint intact. ``load_checkpoint`` copies everything back into the
existing objects (Variables are updated in place, never rebound, so compiled
training steps keep working).
"""
import json

from . import _C

_FORMAT = "ndflow.checkpoint/1"


def save_checkpoint(path, *, model=None, optimizer=None, loader=None, step=None, extra=None, generator=None):
    tensors = []
    meta = {"format": _FORMAT}
    if model is not None:
        tensors += [(f"model/{k}", v) for k, v in model.state_dict().items()]
    if optimizer is not None:
        sd = optimizer.state_dict()
        for i, slots in sd["state"].items():
            tensors += [(f"optimizer/{i}/{k}", v) for k, v in slots.items()]
        meta["optimizer.param_groups"] = json.dumps(sd["param_groups"])
    gen = generator if generator is not None else _C.default_generator()
    tensors.append(("rng/state", gen.get_state()))
    if loader is not None:
        meta["loader"] = json.dumps(loader.state_dict())
    if step is not None:
        meta["step"] = str(int(step))
    if extra is not None:
        meta["extra"] = json.dumps(extra)
    _C.save_tensors(str(path), tensors, meta)


def load_checkpoint(path, *, model=None, optimizer=None, loader=None, generator=None, strict=True):
    """Restores what ``save_checkpoint`` wrote into the given objects and
    returns ``{"step": int or None, "extra": ...}``."""
    tensors, meta = _C.load_tensors(str(path))
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: not an ndflow checkpoint (format {meta.get('format')!r}, "
                         f"expected {_FORMAT!r})")
    by_name = dict(tensors)
    if model is not None:
        sd = {k[len("model/"):]: v for k, v in by_name.items() if k.startswith("model/")}
        model.load_state_dict(sd, strict=strict)
    if optimizer is not None:
        if "optimizer.param_groups" not in meta:
            raise ValueError(f"{path}: the checkpoint holds no optimizer state")
        state = {}
        for k, v in by_name.items():
            if k.startswith("optimizer/"):
                _, i, slot = k.split("/", 2)
                state.setdefault(int(i), {})[slot] = v
        groups = json.loads(meta["optimizer.param_groups"])
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    gen = generator if generator is not None else _C.default_generator()
    if "rng/state" in by_name:
        gen.set_state(by_name["rng/state"])
    if loader is not None:
        if "loader" not in meta:
            raise ValueError(f"{path}: the checkpoint holds no data loader position")
        loader.load_state_dict(json.loads(meta["loader"]))
    return {"step": int(meta["step"]) if "step" in meta else None,
            "extra": json.loads(meta["extra"]) if "extra" in meta else None}
