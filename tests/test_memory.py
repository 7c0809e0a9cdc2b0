"""What a process does to keep its memory small (digitlab.memory), checked in this test process and in a training
process: the CUDA code torch's wheel loads is handed back where there is no CUDA device, and torch computes as before."""

import pytest
import torch

from digitlab.memory import gpu_code_mappings, without_gpu_code_pages


def gpu_code_kb(pid: int | str = "self") -> int:
    """kB resident in the never-written read-only mappings of the CUDA libraries (those without_gpu_code_pages hands
    back; a mapping the loader wrote into, relocated, is kept and not counted)."""
    return sum(m["rss"] for m in gpu_code_mappings(pid) if m.get("written") == 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a CUDA device the CUDA code is used and kept")
def test_the_cuda_code_torch_loads_is_handed_back_and_torch_computes_as_before():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
    x = torch.randn(16, 1, 28, 28)

    def step() -> torch.Tensor:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.arange(16) % 10).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    before, held = step(), gpu_code_kb()
    assert without_gpu_code_pages() >= held  # (this machine's CUDA build of torch: about 125 MB)
    assert gpu_code_kb() == 0
    assert torch.equal(step(), before)
    assert gpu_code_kb() < 1024  # a conv and a linear layer, forward and backward, read back a few pages at most
