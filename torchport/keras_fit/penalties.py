"""A model file's weight regularizers and constraints, over the ported module's parameters.

Each regularized or constrained Keras variable is found inside the torch parameters by sending numbered
arrays through its layer's converter (`to_torch`: every element's id lands where the port puts it: a Dense
kernel transposed, a convolution's permuted, an LSTM's gates reordered). That gives, for each Keras
variable, the positions of its elements in Keras' own order, so Keras' formulas apply unchanged (a MaxNorm
over Keras' axis 0, an orthogonal regularizer over Keras' rows) and a constrained weight is written back to
the same places. A converter that does more than move elements (no one-to-one ids) is refused by name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UnsupportedError
from ..keras_compat import constraints, regularizers

# the config key of each Keras variable's regularizer (constraint: `_constraint`), where it is not `<name>_`
KEYS = {"recurrent_kernel": "recurrent", "depthwise_kernel": "depthwise", "pointwise_kernel": "pointwise"}


@dataclass
class KerasVariable:
    """A Keras variable living in torch parameters: `index` holds, in Keras' order, each element's position in
    the concatenation of the flattened `params`; `places[j]` = (positions in params[j], the Keras elements
    that go there), computed once so that writing back needs no search (no host sync in the step)."""

    name: str
    shape: tuple
    params: list
    index: torch.Tensor
    whole: bool  # it fills its parameters exactly, in any order (a layout-free penalty needs no gather)
    places: list

    def value(self) -> torch.Tensor:
        flat = torch.cat([p.reshape(-1) for p in self.params]) if len(self.params) > 1 else self.params[0].reshape(-1)
        return flat[self.index].reshape(self.shape)

    @torch.no_grad()
    def assign(self, w: torch.Tensor) -> None:
        flat = w.reshape(-1)
        for p, (positions, sources) in zip(self.params, self.places, strict=True):
            logical = p.reshape(-1).clone()  # (a channels-last kernel's storage is not in logical order)
            logical[positions] = flat[sources].to(p.dtype)
            p.copy_(logical.reshape(p.shape))


def _setting(config: dict, weight: str, kind: str):
    return config.get(f"{KEYS.get(weight, weight)}_{kind}")


def _nested_settings(config, top: bool = True) -> str | None:
    """The first regularizer, constraint or activity regularizer set in a config nested inside a layer's (a
    Bidirectional's or TimeDistributed's layer): those are not trained here."""
    if isinstance(config, dict):
        for key, value in config.items():
            if not top and key.endswith(("_regularizer", "_constraint")) and value not in (None, {}):
                return key
            found = _nested_settings(value, top=False) if isinstance(value, (dict, list)) else None
            if found:
                return found
    elif isinstance(config, list):
        for v in config:
            found = _nested_settings(v, top=False)
            if found:
                return found
    return None


# settings Keras ignores because the variable they name does not exist
ABSENT = {"bias": ("use_bias", False), "beta": ("center", False), "gamma": ("scale", False)}


def _refuse_unplaced(layer, expected) -> None:
    """A regularizer or constraint set for a variable this layer's port does not know by that name is refused
    by name rather than dropped (one Keras ignores for a variable the layer has not is ignored too)."""
    names = {KEYS.get(w.name, w.name) for w in expected if w.trainable}
    for key, value in layer.config.items():
        if not key.endswith(("_regularizer", "_constraint")) or key == "activity_regularizer" or value in (None, {}):
            continue
        base = key.rsplit("_", 1)[0]
        option, off = ABSENT.get(base, (None, None))
        if base not in names and not (option and layer.config.get(option) is off):
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): {key} is not trained by torchport "
                                   "fit (no variable of the port takes it)")


def _locate(conv, expected, model: torch.nn.Module) -> dict[int, KerasVariable]:
    """Every trainable Keras variable of a layer by its place in `expected` (MultiHeadAttention has four
    `kernel`s), found in the module's parameters (see the module's doc)."""
    sizes = [int(np.prod(w.shape)) for w in expected]
    starts = np.cumsum([1, *sizes])  # ids from 1: 0 is "no Keras element"
    arrays = [np.arange(starts[i], starts[i] + sizes[i], dtype=np.float64).reshape(w.shape)
              for i, w in enumerate(expected)]
    placed = conv.to_torch(arrays)
    params, ids = [], []
    for key, a in placed.items():
        try:
            p = model.get_parameter(conv.state_prefix + key)
        except AttributeError:
            continue  # a buffer (moving statistics): never regularized
        params.append(p)
        ids.append(np.asarray(a, np.float64).reshape(-1))
    flat = np.concatenate(ids) if ids else np.zeros(0)
    out = {}
    for i, w in enumerate(expected):
        if not w.trainable:
            continue
        lo, hi = starts[i], starts[i] + sizes[i]
        where = np.flatnonzero((flat >= lo) & (flat < hi))
        if len(where) != sizes[i] or not np.array_equal(np.sort(flat[where]), np.arange(lo, hi)):
            raise UnsupportedError(f"layer '{conv.name}' ({conv.layer.class_name}): its {w.name}'s regularizer or "
                                   "constraint cannot be placed on the port's parameters")
        order = where[np.argsort(flat[where], kind="stable")]
        mine = [j for j, (p, a) in enumerate(zip(params, ids, strict=True))
                if ((a >= lo) & (a < hi)).any()]
        offsets = np.cumsum([0, *[len(a) for a in ids]])
        whole = all(((ids[j] >= lo) & (ids[j] < hi)).all() for j in mine)
        # positions relative to the concatenation of this variable's own parameters
        local = np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in mine])
        remap = np.full(offsets[-1], -1, np.int64)
        remap[local] = np.arange(len(local))
        device = params[mine[0]].device
        index = remap[order]  # Keras element k sits at index[k] of the concatenation of its parameters
        bounds = np.cumsum([0, *[len(ids[j]) for j in mine]])
        places = []
        for k in range(len(mine)):
            inside = np.flatnonzero((index >= bounds[k]) & (index < bounds[k + 1]))
            places.append((torch.as_tensor(index[inside] - bounds[k], device=device),
                           torch.as_tensor(inside, device=device)))
        out[i] = KerasVariable(w.name, tuple(w.shape), [params[j] for j in mine],
                               torch.as_tensor(index, device=device), whole, places)
    return out


@dataclass
class Penalties:
    """The regularizers (their sum: `penalty()`) and the constraints (`constrain()`, after each update)."""

    terms: list   # (regularizer, KerasVariable)
    limits: list  # (constraint, KerasVariable)

    def penalty(self) -> torch.Tensor:
        total = None
        for reg, var in self.terms:
            if getattr(reg, "layout_free", False) and var.whole:
                value = sum(reg(p) for p in var.params)  # the elements themselves, no gather
            else:
                value = reg(var.value())
            total = value if total is None else total + value
        return total

    @torch.no_grad()
    def constrain(self, *_) -> None:
        for con, var in self.limits:
            var.assign(con(var.value()))

    def regularized(self) -> list:
        """The parameters a regularizer reads."""
        return [p for _, var in self.terms for p in var.params]

    def __bool__(self) -> bool:
        return bool(self.terms or self.limits)


def find(plan, model: torch.nn.Module) -> Penalties:
    """The model file's regularizers and constraints on `model` (the plan's module). Activity regularizers,
    and settings inside a wrapped layer's config, are refused by name (`UnsupportedError`)."""
    terms, limits = [], []
    for conv, expected in plan.weighted:
        layer = conv.layer
        active = layer.config.get("activity_regularizer")
        if active not in (None, {}):
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): activity_regularizer is not trained "
                                   "by torchport fit")
        nested = _nested_settings(layer.config)
        if nested:
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): {nested} inside its wrapped layer is "
                                   "not trained by torchport fit")
        _refuse_unplaced(layer, expected)
        wanted = [(i, w, _setting(layer.config, w.name, "regularizer"), _setting(layer.config, w.name, "constraint"))
                  for i, w in enumerate(expected) if w.trainable]
        wanted = [(i, w, r, c) for i, w, r, c in wanted if r not in (None, {}) or c not in (None, {})]
        if not wanted:
            continue
        found = _locate(conv, expected, model)
        for i, w, reg, con in wanted:
            what = "regularizer"
            try:
                if reg not in (None, {}):
                    terms.append((regularizers.from_config(reg), found[i]))
                what = "constraint"
                if con not in (None, {}):
                    limits.append((constraints.from_config(con), found[i]))
            except ValueError as e:
                raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): {w.name} {what} {e} is not "
                                       "supported (L1, L2, L1L2, OrthogonalRegularizer; MaxNorm, NonNeg, UnitNorm, "
                                       "MinMaxNorm)") from None
    return Penalties(terms, limits)


def attach(penalties: Penalties, optimizer) -> Callable | None:
    """The constraints run after every optimizer step (Keras: inside `apply`, after the update)."""
    if penalties.limits:
        return optimizer.register_step_post_hook(penalties.constrain)
    return None
