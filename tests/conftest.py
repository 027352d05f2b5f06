import os

import pytest
import torch

import extra_sdes  # noqa: F401 - registers an SDE defined in the tests (oracle tests run on it)

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tests run two workers on two cores


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
