"""A generated module deploys: torch.export.export and torch.jit.trace give its outputs bit for bit, and
torch.compile within float32 rounding, on three models of different kinds (the seed CNN, a branching
Functional model, a masked BiLSTM text model). torch.jit.script is not supported: the generated forward
is plain Python, but torchport's Keras-semantics modules (masked RNN loops, the softmax that carries its
logits on the output tensor) use Python features TorchScript does not compile; export and trace replace it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from torchport.originals.keras_zoo import build
from torchport.parity import model as pm
from torchport.porting.plan import plan_file


@pytest.mark.parametrize("name", ["seed_cnn", "functional_merges", "text_bilstm"])
def test_generated_modules_export_trace_and_compile(keras, tmp_path, name):
    model = build(keras, name)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    plan = plan_file(path)
    tm = plan.module().eval()
    args = tuple(pm.torch_inputs(plan, pm.make_inputs(plan, 4, 0)))
    with torch.no_grad():
        want = tm(*args)
        exported = torch.export.export(tm, args).module()(*args)
        traced = torch.jit.trace(tm, args, check_trace=False)(*args)
    def listed(out):
        return list(out) if isinstance(out, (tuple, list)) else [out]
    for got in (exported, traced):
        assert all(torch.equal(g, w) for g, w in zip(listed(got), listed(want), strict=True))
    keras_out = listed(model(pm.make_inputs(plan, 4, 0)))
    for w, k in zip(listed(want), keras_out, strict=True):
        np.testing.assert_allclose(w.numpy(), np.asarray(k), atol=1e-5)
    compiled = torch.compile(tm, dynamic=False)
    with torch.no_grad():
        for g, w in zip(listed(compiled(*args)), listed(want), strict=True):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
