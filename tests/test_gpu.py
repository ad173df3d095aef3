"""CUDA paths (run by `make gpu-check` on a machine with a GPU; skipped elsewhere): the real
training step forward/backward, bf16 autocast, channels_last, and a one-process NCCL DDP step."""

from __future__ import annotations

import socket

import pytest
import torch

from rsis.core.criterion import RSISCriterion, weighted_total
from rsis.core.model import RSIS
from rsis.datasets.convert import convert
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.training.engine import forward_with_loss, prepare_images, to_device

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
WEIGHTS = {"mask": 1.0, "cls": 1.0, "stop": 0.5, "box": 0.5}


@pytest.fixture
def batch(data_cfg, tiny_paths, tiny_model_cfg):
    convert(data_cfg, tiny_paths.data)
    dataset = InstanceDataset(tiny_paths.data, "train", tiny_model_cfg.input_size, 6)
    images, targets = collate([dataset[i] for i in range(4)])
    return images, targets, dataset.num_classes


def _step(model, images, targets, amp=False, channels_last=False):
    device = torch.device("cuda")
    images, targets = prepare_images(images, device, channels_last), to_device(targets, device)
    losses = forward_with_loss(model, RSISCriterion(), images, targets, 6, amp=amp)
    total = weighted_total(losses, WEIGHTS)
    total.backward()
    return total


def test_training_step_forward_backward_on_cuda(batch, tiny_model_cfg):
    images, targets, num_classes = batch
    model = RSIS(tiny_model_cfg, num_classes).cuda()
    total = _step(model, images, targets)
    assert torch.isfinite(total)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_bf16_autocast_and_channels_last_agree_with_fp32(batch, tiny_model_cfg):
    images, targets, num_classes = batch
    torch.manual_seed(0)
    reference = RSIS(tiny_model_cfg, num_classes).cuda()
    fp32 = float(_step(reference, images, targets))
    bf16 = float(_step(reference, images, targets, amp=True))
    model_cl = RSIS(tiny_model_cfg, num_classes).cuda().to(memory_format=torch.channels_last)
    model_cl.load_state_dict(reference.state_dict())
    cl = float(_step(model_cl, images, targets, channels_last=True))
    assert abs(bf16 - fp32) < 0.05 * abs(fp32) and abs(cl - fp32) < 1e-3 * abs(fp32)


def test_one_process_nccl_ddp_step(batch, tiny_model_cfg):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    images, targets, num_classes = batch
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        model = DistributedDataParallel(RSIS(tiny_model_cfg, num_classes).cuda(), device_ids=[0])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        before = [p.detach().clone() for p in model.parameters()]
        assert torch.isfinite(_step(model, images, targets))
        optimizer.step()
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    finally:
        dist.destroy_process_group()
