"""Run the sae tests on one CPU thread: their tensors are tiny, and on a machine whose cores
are shared with other work, two-thread kernels mostly wait for each other."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
