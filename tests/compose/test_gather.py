import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import modnets.compose._gather as gather_module
from modnets.compose._gather import gather_rows


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(0, 12), st.integers(0, 100))
def test_gather_rows_matches_index_select_in_values_and_gradients(rows, n, seed):
    torch.manual_seed(seed)
    x = torch.randn(rows, 3, 2, requires_grad=True)
    index = torch.randint(0, rows, (n,))
    w = torch.randn(n, 3, 2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gather_module, "_CUSTOM_MIN_ELEMENTS", 0)  # the custom path even for small gathers
        y = gather_rows(x, index)
    y_ref = x.index_select(0, index)
    torch.testing.assert_close(y, y_ref)
    (g,) = torch.autograd.grad((y * w).sum(), x)
    (g_ref,) = torch.autograd.grad((y_ref * w).sum(), x)
    torch.testing.assert_close(g, g_ref)


def test_gather_rows_gradient_in_another_memory_layout(monkeypatch):
    monkeypatch.setattr(gather_module, "_CUSTOM_MIN_ELEMENTS", 0)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    index = torch.tensor([4, 0, 0, 2])
    w = torch.randn(4, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    (g,) = torch.autograd.grad((gather_rows(x, index) * w).sum(), x)
    (g_ref,) = torch.autograd.grad((x.index_select(0, index) * w).sum(), x)
    torch.testing.assert_close(g, g_ref)
