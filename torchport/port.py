"""`torchport port MODEL`: write model.py, weights.pt, summary.txt, side_by_side.md and, with TensorFlow
installed, parity.md.

The porting itself is `porting.plan` (no TensorFlow, nothing of training); this command adds the files and
the parity checks against Keras, whose results it returns as data for the CLI's exit code.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

import torch

from .outputs import OutputSet, save_torch, write_atomic
from .porting.build import Plan
from .porting.plan import plan_file
from .porting.side_by_side import side_by_side
from .porting.standalone import keras_layers_source, standalone_model_source


@dataclass
class Ported:
    """What `port` did: the plan, and the parity results (None when parity was not checked)."""

    plan: Plan
    parity: list | None = None          # the parity Results, when Keras ran them
    parity_note: str | None = None      # why nothing was compared against Keras, when it was not
    standalone: bool = False            # keras_layers.py written beside model.py instead of importing torchport

    @property
    def passed(self) -> bool:
        return self.parity is None or all(r.passed for r in self.parity)

    @property
    def files(self) -> list[str]:
        uses_kc = self.standalone and "kc." in self.plan.source
        return ["model.py"] + (["keras_layers.py"] if uses_kc else []) + [
            "weights.pt", "summary.txt", "side_by_side.md"] + self.user_files + (
            ["parity.md"] if self.parity is not None or self.parity_note else [])

    @property
    def user_files(self) -> list[str]:
        """The user's converters files the model imports, copied beside it."""
        return [f"{m}.py" for m in sorted(self.plan.ctx.user_modules)]


def port(path: str, out: str, parity: bool = True, log=print, standalone: bool = False) -> Ported:
    """Write OUT/model.py, weights.pt, summary.txt, side_by_side.md (and parity.md when TensorFlow is
    installed); `standalone`: keras_layers.py too, which model.py imports instead of torchport."""
    plan = plan_file(path)
    ported = Ported(plan, standalone=standalone)
    with OutputSet(out) as files:
        source = standalone_model_source(plan.source) if standalone else plan.source
        write_atomic(files.path("model.py"), lambda f: f.write(source.encode()))
        if standalone and "kc." in plan.source:
            layers = keras_layers_source(plan.source).encode()
            write_atomic(files.path("keras_layers.py"), lambda f: f.write(layers))
        save_torch(files.path("weights.pt"), {k: torch.from_numpy(v.copy()) for k, v in plan.state.items()})
        write_atomic(files.path("summary.txt"), lambda f: f.write(plan.summary.encode()))
        table = side_by_side(plan).encode()
        write_atomic(files.path("side_by_side.md"), lambda f: f.write(table))
        for module in sorted(plan.ctx.user_modules):  # model.py imports it: the port runs where it is copied
            source = open(sys.modules[module].__file__, "rb").read()
            write_atomic(files.path(f"{module}.py"), lambda f, b=source: f.write(b))
        if parity and importlib.util.find_spec("tensorflow") is not None:
            from .parity.model import port_parity, port_report  # TensorFlow is imported only here
            ported.parity, ported.parity_note = port_parity(path, plan)
            report = port_report(plan, ported.parity, ported.parity_note)
            write_atomic(files.path("parity.md"), lambda f: f.write(report.encode()))
        elif parity:
            log("torchport: parity skipped: TensorFlow is not installed (pip install 'torchport[keras]' for parity.md)")
    return ported
