"""Converters of the merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

Every input is brought to the first input's layout; Concatenate's axis is mapped to torch's dimension
(Keras' channel axis -1 of an image is torch's dimension 1). Masks merge as Keras merges them: an
elementwise merge keeps a step where any input's mask does in Keras 3 (`logical_or`), where every one does
in tf.keras 2 (`all`).
"""
from __future__ import annotations

from ..convert import Converter, Out, torch_dim
from ..registry import converter


class _Merge(Converter):
    n_inputs = (2, 64)
    takes_mask = True  # the inputs' masks merge into the output's

    def setup(self):
        """Inputs of one rank whose shapes broadcast (a squeeze-and-excite scale (1, 1, C) times the (H, W, C)
        features, as MobileNetV3 and EfficientNet multiply them): the output has the broadcast shape."""
        shapes = [t.shape for t in self.inputs]
        if len({len(s) for s in shapes}) != 1:
            self.fail(f"inputs of different ranks {sorted(map(str, set(shapes)))} are not supported")
        self.shape = []
        for dims in zip(*shapes, strict=True):
            sizes = {d for d in dims if d != 1}
            if len(sizes - {None}) > 1:
                self.bad(f"inputs of shapes {sorted(map(str, set(shapes)))} do not broadcast together")
            known = sizes - {None}
            self.shape.append(known.pop() if known else (None if None in sizes else 1))
        self.shape = tuple(self.shape)
        if len(set(shapes)) > 1 and self.masks():
            self.fail("masked inputs of different shapes are not supported")

    def wanted_layout(self, i, t):
        return self.inputs[0].layout

    def masks(self) -> list[str]:
        return [t.mask for t in self.inputs if t.mask is not None]

    def outputs(self):
        t = self.inputs[0]
        return [Out(self.shape, t.layout, bool(self.masks()))]

    def mask_line(self) -> list[str]:
        masks = self.masks()
        if not masks:
            return []
        if self.ctx.keras2:  # tf.keras 2's Merge.compute_mask: all()
            return [f"{self.out_masks[0]} = {' & '.join(masks)}  # a step counts where every input's mask keeps it"]
        return [f"{self.out_masks[0]} = {' | '.join(masks)}  # Keras 3: a step counts where any input's mask keeps it"]


@converter("Add")
class Add(_Merge):
    def forward(self, ins, outs):
        return [f"{outs[0]} = {' + '.join(ins)}"] + self.mask_line()


@converter("Subtract")
class Subtract(_Merge):
    n_inputs = (2, 2)

    def forward(self, ins, outs):
        return [f"{outs[0]} = {ins[0]} - {ins[1]}"] + self.mask_line()


@converter("Multiply")
class Multiply(_Merge):
    def forward(self, ins, outs):
        return [f"{outs[0]} = {' * '.join(ins)}"] + self.mask_line()


@converter("Average")
class Average(_Merge):
    def forward(self, ins, outs):
        return [f"{outs[0]} = ({' + '.join(ins)}) / {len(ins)}"] + self.mask_line()


@converter("Maximum", "Minimum")
class Extremum(_Merge):
    def forward(self, ins, outs):
        fn = "torch.maximum" if self.layer.class_name == "Maximum" else "torch.minimum"
        expr = ins[0]
        for other in ins[1:]:
            expr = f"{fn}({expr}, {other})"
        return [f"{outs[0]} = {expr}"] + self.mask_line()


@converter("Concatenate")
class Concatenate(_Merge):
    def setup(self):
        rank = self.inputs[0].rank
        axis = self.opt("axis", -1)
        if not isinstance(axis, int) or isinstance(axis, bool) or not -rank <= axis < rank or axis % rank == 0:
            self.bad(f"axis = {axis!r}")
        self.axis = axis % rank
        for t in self.inputs:
            if t.rank != rank or any(a != b for i, (a, b) in enumerate(zip(t.shape, self.inputs[0].shape,
                                                                          strict=True)) if i != self.axis - 1):
                self.bad(f"inputs {[t.shape for t in self.inputs]} do not fit together along axis {axis}")
        if self.masks() and self.axis != rank - 1:
            self.fail("masked inputs concatenated along a non-feature axis are not supported")

    def outputs(self):
        t = self.inputs[0]
        sizes = [x.shape[self.axis - 1] for x in self.inputs]
        total = None if None in sizes else sum(sizes)
        shape = tuple(total if i == self.axis - 1 else d for i, d in enumerate(t.shape))
        return [Out(shape, t.layout, bool(self.masks()))]

    def forward(self, ins, outs):
        t = self.inputs[0]
        dim = torch_dim(self.axis, t.rank, t.layout)
        return [f"{outs[0]} = torch.cat([{', '.join(ins)}], dim={dim if dim < t.rank - 1 else -1})"] + self.mask_line()
