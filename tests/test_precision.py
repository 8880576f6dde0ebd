"""Precision modes and the compiled network: bfloat16 only where it is safe, float32 geometry, same training."""

import pytest
import torch

from crystalflow_core.nn import PaiNNVelocity
from crystalflow_core.nn.painn import PairGeometry
from crystalflow_core.nn.precision import PrecisionNetwork, reduced_precision, resolve_precision, training_network
from crystalflow_core.train import TrainConfig, train


def _clusters(seed=0, sizes=(60, 45)):
    """Two clusters of 5-atom molecules: numbers, x_t, x_w `[N, 3]`, t `[B]`, batch and molecule ids `[N]`."""
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    numbers = torch.randint(1, 9, (n,), generator=gen)
    x_t = 4.0 * torch.randn(n, 3, generator=gen)
    x_w = x_t + torch.randn(n, 3, generator=gen)
    t = torch.rand(len(sizes), generator=gen)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return numbers, x_t, x_w, t, batch, torch.arange(n) // 5


def _rigid_network(dense: bool) -> PaiNNVelocity:
    torch.manual_seed(0)
    model = PaiNNVelocity(hidden=32, layers=2, cutoff=6.0, molecular_frame=True, molecule_cutoff=20.0)
    model.dense_pairs = dense
    return model


def test_auto_is_tf32_on_cuda_and_fp32_on_the_cpu():
    assert resolve_precision("auto", torch.device("cuda")) == "tf32"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("tf32", torch.device("cpu")) == "fp32"  # TF32 is a CUDA feature
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("dense", [True, False])
def test_bf16_velocity_is_close_to_fp32_but_not_equal(dense):
    model, inputs = _rigid_network(dense), _clusters()
    with torch.no_grad():
        reference = model(*inputs)
        reduced = PrecisionNetwork(model, "bf16")(*inputs)
    assert reduced.dtype == torch.float32
    error = float((reduced - reference).norm() / reference.norm())
    assert 1e-4 < error < 6e-2  # bfloat16 did run (an 8-bit mantissa on every layer), and the result holds


@pytest.mark.parametrize("dense", [True, False])
def test_geometry_stays_float32_inside_a_bf16_region(dense):
    numbers, x_t, x_w, t, batch, molecule = _clusters()
    geometry = PairGeometry(n_rbf=20, cutoff=6.0)
    plain = geometry(x_t, batch, 2, dense=dense)
    with reduced_precision(x_t.device, "bf16"):
        autocast = geometry(x_t, batch, 2, dense=dense)
    basis = ("filter_basis", "direction_basis") if dense else ("basis", "unit", "weight")
    for name in (*basis, "inverse_degree"):
        assert getattr(autocast, name).dtype == torch.float32
        assert torch.equal(getattr(autocast, name), getattr(plain, name)), name


def test_compiled_network_computes_the_same_velocity_and_gradients():
    model, inputs = _rigid_network(dense=False), _clusters()
    compiled = training_network(model, "fp32", compile_network=True)
    eager = model(*inputs)
    fast = compiled(*inputs)
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)
    (grad_eager,) = torch.autograd.grad(eager.square().sum(), model.readout.weight)
    (grad_fast,) = torch.autograd.grad(compiled(*inputs).square().sum(), model.readout.weight)
    torch.testing.assert_close(grad_fast, grad_eager, rtol=1e-4, atol=1e-5)
    other_sizes = _clusters(seed=1, sizes=(35, 50))  # dynamic shapes: no recompilation is needed, none may be wrong
    torch.testing.assert_close(compiled(*other_sizes), model(*other_sizes), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_bf16_training_follows_fp32_training(small_data, tmp_path):
    settings = dict(data=str(small_data), path="rigid", epochs=3, batch_size=2, progress=False, seed=0)
    full = train(TrainConfig(out=str(tmp_path / "fp32"), precision="fp32", **settings))
    reduced = train(TrainConfig(out=str(tmp_path / "bf16"), precision="bf16", **settings))
    assert not full["train_loss"].equals(reduced["train_loss"])
    ratio = reduced["train_loss"] / full["train_loss"]
    assert ratio.between(0.9, 1.1).all(), ratio.tolist()
