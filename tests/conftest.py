import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tests run two workers on two cores


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
