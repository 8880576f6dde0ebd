"""Arithmetic precision of the network's training step, and the optional compiled form of the network.

``fp32`` is plain float32. ``tf32`` lets CUDA's matrix units round float32 operands to TF32 (10-bit mantissa) in
every matrix product. ``bf16`` runs the atom-wise layers (the linear maps of the message and update MLPs) in
bfloat16 under autocast, while the geometry stays in float32: distances, radial basis, cutoff weights and the
neighbour sums of the message layers (:mod:`~crystalflow_core.nn.pair_blocks` subtracts two large products to
form the direction messages, x_j − x_i, which bfloat16's 8-bit mantissa would not resolve). Parameters, optimiser
state and the loss stay in float32 in every mode. ``auto`` is ``fp32`` on the CPU and ``tf32`` on CUDA
(``benchmarks/gpu.sh`` measures the error and speed of each mode on a GPU).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

#: The precision modes a run may ask for.
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """The mode ``precision`` stands for on ``device`` (``auto`` → ``tf32`` on CUDA, ``fp32`` elsewhere); TF32 is
    a CUDA feature, so ``tf32`` on the CPU is plain ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "tf32" if device.type == "cuda" else "fp32"
    if precision == "tf32" and device.type != "cuda":
        return "fp32"
    return precision


def set_matmul_precision(precision: str) -> None:
    """Let float32 matrix products use TF32 (``tf32``) or not (every other mode); process-wide, as CUDA has it."""
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"


def reduced_precision(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast region of a ``bf16`` forward pass on ``device`` (nothing for the other modes)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def full_precision(device: torch.device) -> AbstractContextManager:
    """A region that computes in float32 even inside :func:`reduced_precision` (the geometry and neighbour sums)."""
    return torch.autocast(device.type, enabled=False)


class PrecisionNetwork(nn.Module):
    """``network`` called in a precision mode: its forward pass runs under :func:`reduced_precision` and returns
    float32, so the objectives' losses, Kabsch fits and relabellings never see bfloat16."""

    def __init__(self, network: nn.Module, precision: str) -> None:
        super().__init__()
        self.network = network
        self.precision = precision

    def forward(self, *args, **kwargs) -> torch.Tensor:
        device = args[1].device  # x_t
        with reduced_precision(device, self.precision):
            return self.network(*args, **kwargs).float()


def training_network(model: nn.Module, precision: str, compile_network: bool) -> nn.Module:
    """``model`` as a training step calls it: in its precision mode and, with ``compile_network``, compiled by
    ``torch.compile`` with dynamic shapes (clusters differ in size; data-dependent steps such as building the
    neighbour pairs stay eager). The parameters are ``model``'s own, so checkpoints save ``model`` unchanged."""
    network = model if precision != "bf16" else PrecisionNetwork(model, precision)
    return torch.compile(network, dynamic=True) if compile_network else network
