"""Device selection and thread configuration."""

import pytest
import torch

from annotation.ml.device import configure_threads, select_device


def test_auto_picks_cuda_when_available_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device().type == expected


def test_cpu_is_always_available():
    assert select_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_rejects_cuda_when_unavailable_with_a_clear_message():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        select_device("cuda:1")


def test_rejects_unknown_preference():
    with pytest.raises(ValueError, match="unknown device preference"):
        select_device("tpu")


def test_configure_threads_sets_torch_threads_and_rejects_zero():
    before = torch.get_num_threads()
    try:
        configure_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError):
        configure_threads(0)
