import torch
from hypothesis import given, settings, strategies as st

from torchport import TensorLoader


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), batch=st.integers(1, 64), seed=st.integers(0, 2**31))
def test_each_epoch_is_a_permutation_with_the_last_partial_batch_kept(n, batch, seed):
    x = torch.arange(n)
    loader = TensorLoader(x, x.clone(), batch, shuffle=True, seed=seed)
    assert len(loader) == -(-n // batch)
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        sizes = [len(b) for b, _ in batches]
        assert sizes[:-1] == [batch] * (len(sizes) - 1)
        assert sizes[-1] == n - batch * (len(sizes) - 1)
        seen = torch.cat([b for b, _ in batches])
        assert sorted(seen.tolist()) == list(range(n))  # every sample exactly once
        assert all(torch.equal(a, b) for a, b in batches)  # x and y stay paired


def test_epochs_draw_fresh_permutations_and_the_seed_reproduces_them():
    x = torch.arange(1000)
    a, b = TensorLoader(x, x, 1000, shuffle=True, seed=3), TensorLoader(x, x, 1000, shuffle=True, seed=3)
    e1, e2 = next(iter(a))[0], next(iter(a))[0]
    assert not torch.equal(e1, e2)
    assert torch.equal(e1, next(iter(b))[0])


def test_unshuffled_order_and_transform_applied_per_batch():
    x = torch.arange(10, dtype=torch.uint8)
    loader = TensorLoader(x, x.long(), 4, transform=lambda a, b: (a.float() / 255, b * 2))
    out = list(loader)
    assert [len(a) for a, _ in out] == [4, 4, 2]
    assert out[2][0].dtype == torch.float32 and torch.allclose(out[2][0], torch.tensor([8.0, 9.0]) / 255)
    assert out[2][1].tolist() == [16, 18]


def test_bad_construction_is_refused():
    import pytest
    with pytest.raises(ValueError):
        TensorLoader(torch.zeros(3), torch.zeros(2), 1)
    with pytest.raises(ValueError):
        TensorLoader(torch.zeros(3), torch.zeros(3), 0)
