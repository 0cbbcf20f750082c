"""The optimizers' whole-model updates (torch._foreach_*: one kernel per operation for every parameter)
against the same update written parameter by parameter: bit for bit, in float32 and float64."""
import pytest
import torch

from torchport.keras_compat.optim import Adam, KerasOptimizer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_foreach_is_the_loop_bit_for_bit(dtype, amsgrad):
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (5,), (2, 3, 4, 4), (7,)]
    start = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    grads = [[torch.randn(s, generator=g, dtype=dtype) for s in shapes] for _ in range(20)]
    runs = []
    for whole_model in (True, False):
        params = [p.clone().requires_grad_() for p in start]
        opt = Adam(params, learning_rate=0.01, amsgrad=amsgrad, lr_dtype="float32")
        if whole_model:  # (what update_all takes on CUDA)
            opt.update_all = opt.update_foreach
        else:  # the parameter-by-parameter loop of the base class
            opt.update_all = lambda ps, gs, lr, group, opt=opt: KerasOptimizer.update_all(opt, ps, gs, lr, group)
        for step in grads:
            for p, s in zip(params, step, strict=True):
                p.grad = s.clone()
            opt.step()
        runs.append([p.detach() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    assert not torch.equal(runs[0][0], start[0])
