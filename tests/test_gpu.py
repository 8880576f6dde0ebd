"""The CUDA path, checked against the CPU: pairs built on the device, pinned batches, precision modes, training and
rigid sampling. Skipped where no GPU is present (CI); `benchmarks/gpu.sh` runs them on a GPU machine."""

import pytest
import torch
from torch_geometric.data import Batch

from crystalflow_core.data.dataset import ClusterDataset, to_device
from crystalflow_core.nn import PaiNNVelocity, radius_edges
from crystalflow_core.nn.precision import PrecisionNetwork, set_matmul_precision
from crystalflow_core.packing import integrity, prepare_reference
from crystalflow_core.paths import get_path
from crystalflow_core.sampling import sample_rigid
from crystalflow_core.train import TrainConfig, load_model, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture
def strict_fp32():
    """Plain float32 matrix products for the comparison, whatever an earlier test left set."""
    set_matmul_precision("fp32")
    yield
    set_matmul_precision("fp32")


def _batch(small_data, count=4):
    dataset = ClusterDataset(small_data, progress=False)
    return dataset, Batch.from_data_list([dataset[i] for i in range(count)])


def test_batches_go_to_the_gpu_through_pinned_memory(small_data):
    _, batch = _batch(small_data)
    x_s, graph = batch.x_s.clone(), batch.batch.clone()  # PyG moves a batch in place
    moved = to_device(batch, CUDA)
    torch.cuda.synchronize()
    assert moved.x_w.is_cuda and moved.molecule.is_cuda
    assert torch.equal(moved.x_s.cpu(), x_s) and torch.equal(moved.batch.cpu(), graph)


def test_pairs_are_built_on_the_gpu_and_equal_the_cpu_pairs(small_data):
    _, batch = _batch(small_data)
    on_gpu = radius_edges(batch.x_s.to(CUDA), batch.batch.to(CUDA), 5.0, batch.num_graphs)
    assert on_gpu.is_cuda
    on_cpu = radius_edges(batch.x_s, batch.batch, 5.0, batch.num_graphs)
    assert set(map(tuple, on_gpu.cpu().T.tolist())) == set(map(tuple, on_cpu.T.tolist()))


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-4), ("tf32", 2e-2), ("bf16", 6e-2)])
def test_gpu_velocity_matches_the_cpu(small_data, strict_fp32, dense, precision, tolerance):
    _, batch = _batch(small_data)
    torch.manual_seed(0)
    model = PaiNNVelocity(hidden=64, layers=3, cutoff=6.0, molecular_frame=True, molecule_cutoff=20.0)
    model.dense_pairs = dense
    inputs = (batch.z, batch.x_s, batch.x_w, torch.full((batch.num_graphs,), 0.3), batch.batch, batch.molecule)
    with torch.no_grad():
        reference = model(*inputs)
        set_matmul_precision(precision)
        gpu_model = model.to(CUDA)
        network = PrecisionNetwork(gpu_model, precision) if precision == "bf16" else gpu_model
        result = network(*(tensor.to(CUDA) for tensor in inputs)).cpu()
    error = float((result - reference).norm() / reference.norm())
    assert error < tolerance, error


@pytest.mark.parametrize(("precision", "compiled"), [("auto", False), ("bf16", False), ("fp32", True)])
def test_training_on_the_gpu_runs_and_its_model_samples_exact_molecules(small_data, tmp_path, precision, compiled):
    config = TrainConfig(
        data=str(small_data),
        out=str(tmp_path / "run"),
        path="rigid",
        epochs=3,
        batch_size=2,
        device="cuda",
        precision=precision,
        compile=compiled,
        progress=False,
    )
    history = train(config)
    assert len(history) == 3 and history["train_loss"].notna().all()
    model, config = load_model(tmp_path / "run", "cuda")
    dataset, batch = _batch(small_data, count=2)
    frames = sample_rigid(model, get_path("rigid"), batch.z, batch.x_w, batch.batch, batch.molecule, steps=4)
    assert frames.is_cuda and torch.isfinite(frames).all()
    for graph, cluster_id in enumerate(batch.cluster_id):
        item = dataset[dataset.ids.index(cluster_id)]
        reference = prepare_reference(item.x_s.double().numpy(), item.z.numpy(), item.mol_index.numpy())
        assert integrity(frames[-1][batch.batch.cuda() == graph].cpu().double().numpy(), reference) < 1e-3
