"""PaiNN velocity field: radius graph, E(3) equivariance, translation invariance, batching, dtypes."""

import pytest
import torch

from crystalflow_core.nn import CosineCutoff, GaussianRBF, PaiNNVelocity, radius_edges


def _rotation(seed: int, dtype=torch.float64) -> torch.Tensor:
    """A random proper rotation `[3, 3]` (det +1) from the QR decomposition of a Gaussian matrix."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def _graphs(sizes=(5, 8), seed=0, dtype=torch.float64):
    """Random atoms of several graphs in one box: numbers `[N]`, x_t, x_w `[N, 3]`, t `[B]`, batch `[N]`."""
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    numbers = torch.randint(1, 10, (n,), generator=gen)
    x_t = 2.0 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    x_w = x_t + torch.randn(n, 3, generator=gen, dtype=torch.float64)
    t = torch.rand(len(sizes), generator=gen, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return numbers, x_t.to(dtype), x_w.to(dtype), t.to(dtype), batch


def _model(dtype=torch.float64, cutoff=4.0, seed=0) -> PaiNNVelocity:
    torch.manual_seed(seed)
    model = PaiNNVelocity(hidden=16, layers=2, n_rbf=8, cutoff=cutoff, time_embedding=8)
    return model.to(dtype)


def test_radial_basis_and_cutoff_values():
    rbf = GaussianRBF(n_rbf=5, cutoff=4.0)
    d = torch.tensor([0.0, 1.0, 2.5])
    expected = torch.exp(-0.5 * (d[:, None] - torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])) ** 2)
    torch.testing.assert_close(rbf(d), expected)
    cut = CosineCutoff(2.0)
    torch.testing.assert_close(cut(torch.tensor([0.0, 1.0, 2.0, 3.0])), torch.tensor([1.0, 0.5, 0.0, 0.0]))


def test_radius_edges_match_brute_force_and_never_cross_graphs():
    _, x_t, _, _, batch = _graphs(sizes=(4, 1, 7, 6), seed=3)
    cutoff = 3.0
    edges = radius_edges(x_t, batch, cutoff, num_graphs=4)
    expected = {
        (j, i)
        for i in range(len(batch))
        for j in range(len(batch))
        if i != j and batch[i] == batch[j] and torch.dist(x_t[i], x_t[j]) < cutoff
    }
    found = {tuple(edge) for edge in edges.T.tolist()}
    assert found == expected and edges.shape[1] == len(expected)
    assert 0 < len(expected) < sum(n * (n - 1) for n in (4, 1, 7, 6))


def test_large_cutoff_connects_all_pairs_within_each_graph():
    _, x_t, _, _, batch = _graphs(sizes=(5, 8))
    edges = radius_edges(x_t, batch, cutoff=50.0, num_graphs=2)
    assert edges.shape[1] == 5 * 4 + 8 * 7
    out = _model(cutoff=50.0)(*_graphs(sizes=(5, 8)))
    assert out.shape == (13, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("proper", [True, False])
def test_rotation_and_reflection_equivariance_translation_invariance_float64(proper):
    model = _model()
    numbers, x_t, x_w, t, batch = _graphs()
    rotation = _rotation(1)
    transform = rotation if proper else -rotation
    shift = torch.tensor([3.0, -7.0, 11.0], dtype=torch.float64)
    out = model(numbers, x_t, x_w, t, batch)
    moved = model(numbers, x_t @ transform.T + shift, x_w @ transform.T + shift, t, batch)
    assert out.abs().max() > 1e-3
    torch.testing.assert_close(moved, out @ transform.T, rtol=0.0, atol=1e-5)


def test_rotation_equivariance_float32_relative():
    model = _model(dtype=torch.float32)
    numbers, x_t, x_w, t, batch = _graphs(dtype=torch.float32)
    rotation = _rotation(2, dtype=torch.float32)
    shift = torch.tensor([1.0, 2.0, -3.0])
    out = model(numbers, x_t, x_w, t, batch)
    moved = model(numbers, x_t @ rotation.T + shift, x_w @ rotation.T + shift, t, batch)
    assert out.dtype == torch.float32
    assert (moved - out @ rotation.T).norm() / out.norm() < 1e-4


def test_batched_graphs_give_the_same_output_as_each_graph_alone():
    model = _model()
    numbers, x_t, x_w, t, batch = _graphs(sizes=(5, 8))
    together = model(numbers, x_t, x_w, t, batch)
    for g, atoms in enumerate((slice(0, 5), slice(5, 13))):
        alone = model(
            numbers[atoms],
            x_t[atoms],
            x_w[atoms],
            t[g : g + 1],
            torch.zeros(atoms.stop - atoms.start, dtype=torch.long),
        )
        torch.testing.assert_close(together[atoms], alone, rtol=0.0, atol=1e-12)


def test_output_depends_on_time_condition_and_atom_types():
    model = _model()
    numbers, x_t, x_w, t, batch = _graphs()
    out = model(numbers, x_t, x_w, t, batch)
    assert not torch.allclose(out, model(numbers, x_t, x_w, t + 0.3, batch))
    assert not torch.allclose(out, model(numbers, x_t, x_w + 0.5 * torch.randn_like(x_w), t, batch))
    assert not torch.allclose(out, model(numbers % 5 + 1, x_t, x_w, t, batch))


def _molecules(batch: torch.Tensor, atoms_per_molecule: int = 2) -> torch.Tensor:
    """Global molecule ids: consecutive atoms of a graph grouped in pairs (an odd last atom alone)."""
    start = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(batch).cumsum(0)[:-1]])
    local = torch.arange(len(batch)) - start[batch]
    return torch.unique(batch * 1000 + local // atoms_per_molecule, return_inverse=True)[1]


@pytest.mark.parametrize("proper", [True, False])
def test_molecule_pooling_keeps_equivariance_and_changes_the_output(proper):
    model = _model()
    numbers, x_t, x_w, t, batch = _graphs()
    molecule = _molecules(batch)
    transform = _rotation(4) if proper else -_rotation(4)
    shift = torch.tensor([-2.0, 5.0, 1.0], dtype=torch.float64)
    out = model(numbers, x_t, x_w, t, batch, molecule=molecule)
    moved = model(numbers, x_t @ transform.T + shift, x_w @ transform.T + shift, t, batch, molecule=molecule)
    torch.testing.assert_close(moved, out @ transform.T, rtol=0.0, atol=1e-5)
    assert (out - model(numbers, x_t, x_w, t, batch)).abs().max() > 1e-4


@pytest.mark.parametrize("axis_readout", [False, True])
@pytest.mark.parametrize("proper", [True, False])
def test_molecular_frame_and_molecule_graph_keep_equivariance_and_change_the_output(proper, axis_readout):
    torch.manual_seed(0)
    model = PaiNNVelocity(
        hidden=16,
        layers=2,
        n_rbf=8,
        cutoff=2.0,
        time_embedding=8,
        molecular_frame=True,
        molecule_cutoff=20.0,
        axis_readout=axis_readout,
    ).double()
    if axis_readout:  # it starts at zero (unturned axes); give it weights so that it contributes
        torch.nn.init.normal_(model.axis_turn.weight)
    numbers, x_t, x_w, t, batch = _graphs(sizes=(9, 12))
    molecule = _molecules(batch, atoms_per_molecule=4)  # single atoms and pairs too: axes that fade out
    transform = _rotation(5) if proper else -_rotation(5)
    shift = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    out = model(numbers, x_t, x_w, t, batch, molecule=molecule)
    moved = model(numbers, x_t @ transform.T + shift, x_w @ transform.T + shift, t, batch, molecule=molecule)
    torch.testing.assert_close(moved, out @ transform.T, rtol=0.0, atol=1e-5)
    # the molecule graph carries information past the 2 Å atom cutoff: moving one far molecule changes the rest
    far = molecule == int(molecule[batch == 0].max())
    displaced = x_t.clone()
    displaced[far] += torch.tensor([0.0, 0.0, 8.0], dtype=torch.float64)
    changed = model(numbers, displaced, x_w, t, batch, molecule=molecule)
    assert (changed - out)[~far & (batch == 0)].abs().max() > 1e-4
    assert (changed - out)[batch == 1].abs().max() < 1e-10
    with pytest.raises(ValueError, match="molecule ids"):
        model(numbers, x_t, x_w, t, batch)


def test_axis_readout_turns_each_molecule_with_its_pooled_vectors():
    torch.manual_seed(1)
    options = dict(hidden=16, layers=2, n_rbf=8, cutoff=2.0, time_embedding=8, molecular_frame=True)
    plain = PaiNNVelocity(**options).double()
    turned = PaiNNVelocity(**options, axis_readout=True).double()
    turned.load_state_dict(plain.state_dict(), strict=False)
    numbers, x_t, x_w, t, batch = _graphs(sizes=(9, 12))
    molecule = _molecules(batch, atoms_per_molecule=4)
    out = plain(numbers, x_t, x_w, t, batch, molecule=molecule)
    torch.testing.assert_close(turned(numbers, x_t, x_w, t, batch, molecule=molecule), out)  # zero at the start
    torch.nn.init.normal_(turned.axis_turn.weight)
    assert (turned(numbers, x_t, x_w, t, batch, molecule=molecule) - out).abs().max() > 1e-3
    with pytest.raises(ValueError, match="molecular_frame"):
        PaiNNVelocity(axis_readout=True)


def test_gradients_are_finite_when_x_t_equals_x_w():
    model = _model()
    numbers, x_t, _, t, batch = _graphs()
    out = model(numbers, x_t, x_t.clone(), torch.zeros_like(t), batch, molecule=_molecules(batch))
    out.pow(2).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_describe_reports_hyperparameters():
    model = PaiNNVelocity(hidden=8, layers=1, n_rbf=4, cutoff=20.0, time_embedding=4)
    info = model.describe()
    assert info["hidden"] == 8 and info["cutoff"] == 20.0 and info["layers"] == 1
    assert info["parameters"] == sum(p.numel() for p in model.parameters())


def _pair_message_by_loops(message, h_s, h_v, x, cutoff, n_rbf):
    """Eq. (1) summed pair by pair with Python loops: the independent reference for both pair layouts."""
    rbf, cut = GaussianRBF(n_rbf, cutoff).to(x.dtype), CosineCutoff(cutoff)
    phi = message.scalar_mlp(h_s)
    f = h_s.shape[1]
    d_s, d_v = torch.zeros_like(h_s), torch.zeros_like(h_v)
    for i in range(len(x)):
        for j in range(len(x)):
            distance = torch.sqrt(((x[j] - x[i]) ** 2).sum() + 1e-8)
            if i == j or distance >= cutoff:
                continue
            w = message.filter(rbf(distance[None]))[0] * cut(distance)
            m = phi[j] * w
            d_s[i] += m[:f]
            d_v[i] += m[None, f : 2 * f] * h_v[j] + m[None, 2 * f :] * ((x[j] - x[i]) / distance)[:, None]
    return d_s, d_v


@pytest.mark.parametrize("dense", [True, False])
def test_message_sums_match_a_pair_by_pair_loop(dense):
    from crystalflow_core.nn.painn import PaiNNMessage, PairGeometry

    torch.manual_seed(0)
    cutoff, n_rbf, f = 3.0, 6, 4
    _, x, _, _, batch = _graphs(sizes=(6, 1, 5), seed=5)
    message = PaiNNMessage(f, n_rbf).double()
    h_s, h_v = torch.randn(len(x), f, dtype=torch.float64), torch.randn(len(x), 3, f, dtype=torch.float64)
    pairs = PairGeometry(n_rbf, cutoff).double()(x, batch, 3, dense=dense)
    got_s, got_v = message(h_s, h_v, pairs)
    want_s, want_v = torch.zeros_like(h_s), torch.zeros_like(h_v)
    for graph in range(3):
        rows = batch == graph
        want_s[rows], want_v[rows] = _pair_message_by_loops(message, h_s[rows], h_v[rows], x[rows], cutoff, n_rbf)
    assert want_s.abs().max() > 1e-2 and want_v.abs().max() > 1e-2
    torch.testing.assert_close(got_s, want_s, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_v, want_v, rtol=1e-10, atol=1e-10)


def test_dense_pair_blocks_and_edge_lists_give_the_same_velocity_and_gradients():
    torch.manual_seed(0)
    model = PaiNNVelocity(
        hidden=16, layers=2, n_rbf=8, cutoff=3.0, time_embedding=8, molecular_frame=True, molecule_cutoff=6.0
    ).double()
    numbers, x_t, x_w, t, batch = _graphs(sizes=(7, 1, 9), seed=2)
    molecule = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5])
    results = []
    for dense in (True, False):
        model.dense_pairs = dense
        model.zero_grad()
        out = model(numbers, x_t, x_w, t, batch, molecule)
        (out**2).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (dense_out, dense_grads), (edge_out, edge_grads) = results
    assert edge_out.abs().max() > 1e-3
    torch.testing.assert_close(dense_out, edge_out, rtol=1e-9, atol=1e-12)
    assert len(dense_grads) == len(edge_grads) > 10
    for a, b in zip(dense_grads, edge_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_pair_layout_is_dense_for_dense_cutoffs_while_the_basis_fits(monkeypatch):
    from crystalflow_core.nn import painn, pair_blocks

    _, x, _, _, batch = _graphs(sizes=(5, 8))
    assert pair_blocks.dense_basis_bytes(batch, 2, 8, 8) == 2 * 2 * 8 * 8 * 9 * 8
    assert isinstance(painn.PairGeometry(8, 50.0)(x, batch, 2), pair_blocks.PairBlocks)
    edges = radius_edges(x, batch, 1.0, num_graphs=2).shape[1]
    assert edges < pair_blocks.DENSE_PAIR_FRACTION * 2 * 8 * 8  # few pairs within 1 Å: edge lists
    assert isinstance(painn.PairGeometry(8, 1.0)(x, batch, 2), painn.EdgeGraph)
    monkeypatch.setattr(pair_blocks, "DENSE_BASIS_LIMIT_BYTES", 1000)
    assert isinstance(painn.PairGeometry(8, 50.0)(x, batch, 2), painn.EdgeGraph)


def test_edge_lists_are_sorted_by_target_and_their_segment_sums_have_exact_gradients():
    from crystalflow_core.nn.painn import PairGeometry

    _, x, _, _, batch = _graphs(sizes=(6, 1, 5), seed=5)
    pairs = PairGeometry(6, 3.0).double()(x, batch, 3, dense=False)
    source, target = pairs.edges
    assert torch.equal(target * len(x) + source, (target * len(x) + source).sort().values)
    features = torch.randn(len(x), 2, 3, dtype=torch.float64, requires_grad=True)
    rows = torch.randn(source.shape[0], 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(pairs.gather, (features,))
    torch.autograd.gradcheck(pairs.sum, (rows,))
    torch.autograd.gradgradcheck(pairs.gather, (features,))
    summed = torch.zeros(len(x), 4, dtype=torch.float64).index_add_(0, target, rows)
    torch.testing.assert_close(pairs.sum(rows), summed)  # atom 6 (a graph of one) has no edges: zeros
    torch.testing.assert_close(pairs.gather(features), features[source])


def _layout_steps(model, steps, sizes=(7, 9), seed=2):
    """`steps` forward and backward passes on one batch: the velocity and gradients of each, and each step's layout
    (True: dense blocks), seen through the type of the atom pairs."""
    from crystalflow_core.nn.pair_blocks import PairBlocks

    numbers, x_t, x_w, t, batch = _graphs(sizes=sizes, seed=seed)
    molecule = _molecules(batch, atoms_per_molecule=3)
    layouts = []
    model.atom_geometry.register_forward_hook(lambda module, args, pairs: layouts.append(isinstance(pairs, PairBlocks)))
    results = []
    for _ in range(steps):
        model.zero_grad()
        out = model(numbers, x_t, x_w, t, batch, molecule)
        (out**2).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    return results, layouts


def _layout_model(dense=None):
    torch.manual_seed(0)
    model = PaiNNVelocity(hidden=16, layers=2, n_rbf=8, cutoff=3.0, time_embedding=8, molecule_cutoff=6.0).double()
    model.dense_pairs = dense
    return model


@pytest.mark.parametrize("slower", [True, False])
def test_pair_layout_is_chosen_by_timing_both_and_the_choice_never_changes_results(monkeypatch, capsys, slower):
    from crystalflow_core.nn import pair_blocks

    seconds = {"now": 0.0}

    def now(trial):  # each look at the clock advances it by 1 s, by 10 s in a step of dense blocks if `slower`
        seconds["now"] += 10.0 if (trial.layout == pair_blocks.DENSE) == slower else 1.0
        return seconds["now"]

    monkeypatch.setattr(pair_blocks.LayoutTrial, "_now", now)
    model = _layout_model()
    trials = pair_blocks.PairLayoutChooser.trials
    results, layouts = _layout_steps(model, 2 * trials + 2)
    assert layouts == [False, True] * trials + [not slower] * 2  # both timed in turn, then the faster kept
    ((key, kept),) = model.pair_layout.choices.items()
    assert kept == (pair_blocks.EDGES if slower else pair_blocks.DENSE) and key[0] is True  # a training step's class
    printed = capsys.readouterr().err
    assert "pair layout for 2 cluster(s) of up to 9 atoms" in printed and "per step" in printed
    assert f": {kept} (edge lists " in printed
    for out, grads in results[1:]:  # every step exact, whichever layout it took
        torch.testing.assert_close(out, results[0][0], rtol=1e-9, atol=1e-12)
        for a, b in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)
    numbers, x_t, x_w, t, batch = _graphs(sizes=(7, 9), seed=2)
    with torch.no_grad():  # inference is a size class of its own, timed on its forward passes
        for _ in range(2 * trials + 1):
            model(numbers, x_t, x_w, t, batch, _molecules(batch, atoms_per_molecule=3))
    assert len(model.pair_layout.choices) == 2 and "per forward pass" in capsys.readouterr().err


@pytest.mark.parametrize("dense", [True, False])
def test_a_forced_pair_layout_is_respected_and_gives_the_chosen_results(dense):
    forced, forced_layouts = _layout_steps(_layout_model(dense), 3)
    assert forced_layouts == [dense] * 3
    chosen, _ = _layout_steps(_layout_model(None), 1)
    torch.testing.assert_close(forced[-1][0], chosen[0][0], rtol=1e-9, atol=1e-12)
    for a, b in zip(forced[-1][1], chosen[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_only_layouts_that_fit_are_timed(monkeypatch):
    from crystalflow_core.nn import pair_blocks
    from crystalflow_core.nn.pair_blocks import COMPILED_EDGES, DENSE, EDGES

    _, _, _, _, batch = _graphs(sizes=(5, 8))
    assert pair_blocks.layouts_to_try(30, batch, 2, 8, 16, 2, 8) == (EDGES, DENSE)
    assert pair_blocks.layouts_to_try(30, batch, 2, 8, 16, 2, 8, compile_edges=None) == (EDGES, DENSE)
    assert pair_blocks.layouts_to_try(30, batch, 2, 8, 16, 2, 8, compile_edges=True) == (COMPILED_EDGES, DENSE)
    many = pair_blocks.COMPILE_MIN_EDGES
    assert pair_blocks.layouts_to_try(many, batch, 2, 8, 16, 2, 8, compile_edges=None) == (COMPILED_EDGES, DENSE)
    assert pair_blocks.layouts_to_try(many, batch, 2, 8, 16, 2, 8) == (EDGES, DENSE)
    assert pair_blocks.layouts_to_try(10**9, batch, 2, 8, 16, 2, 8) == (DENSE,)  # edge lists would not fit
    # 4.6 GB of eager per-edge tensors, a third of that compiled: only the compiled edge lists are tried
    assert pair_blocks.layouts_to_try(10**6, batch, 2, 8, 16, 2, 8, compile_edges=None) == (COMPILED_EDGES, DENSE)
    monkeypatch.setattr(pair_blocks, "DENSE_BASIS_LIMIT_BYTES", 1000)
    assert pair_blocks.layouts_to_try(10**9, batch, 2, 8, 16, 2, 8) == (EDGES,)
    chooser = pair_blocks.PairLayoutChooser()
    assert chooser.pick(("k",), (EDGES,), torch.device("cpu"), "a batch") == (EDGES, None)
    assert chooser.choices == {("k",): EDGES}


def test_compiled_edge_lists_give_the_eager_velocity_and_gradients():
    results = []
    for compiled in (False, True):
        model = _layout_model(dense=False)
        model.compile_edges = compiled
        results.append(_layout_steps(model, 1)[0][0])
    from crystalflow_core.nn import painn

    if painn._COMPILED_EDGE_MESSAGES.failed:
        pytest.skip("torch.compile is not available here (the eager edge lists ran twice)")
    (eager_out, eager_grads), (compiled_out, compiled_grads) = results
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-9, atol=1e-12)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_the_chooser_times_every_layout_in_turn_and_keeps_the_fastest_step(capsys):
    from crystalflow_core.nn.pair_blocks import COMPILED_EDGES, DENSE, EDGES, PairLayoutChooser

    chooser, layouts, cpu = PairLayoutChooser(), (EDGES, COMPILED_EDGES, DENSE), torch.device("cpu")
    step = {EDGES: (1.0, 2.5), COMPILED_EDGES: (5.0, 0.5), DENSE: (0.2, 3.0)}  # forward, backward seconds
    taken = []
    for _ in range(len(layouts) * chooser.trials):
        layout, trial = chooser.pick(("k",), layouts, cpu, "a batch")
        trial.forward, trial.backward = step[layout]
        taken.append(layout)
    assert taken == list(layouts) * chooser.trials
    assert chooser.pick(("k",), layouts, cpu, "a batch") == (DENSE, None)  # 3.2 s against 3.5 and 5.5
    report = "a batch: dense blocks (edge lists 3.5 s, compiled edge lists 5.5 s, dense blocks 3.2 s per step)"
    assert chooser.reports[("k",)].endswith(report) and report in capsys.readouterr().err
    forward_only = PairLayoutChooser()  # no backward pass followed (inference): forward times decide
    for _ in range(len(layouts) * forward_only.trials):
        layout, trial = forward_only.pick(("k",), layouts, cpu, "a batch")
        trial.forward = step[layout][0]
    assert forward_only.pick(("k",), layouts, cpu, "a batch")[0] == DENSE
    assert forward_only.reports[("k",)].endswith("per forward pass)")


def test_kept_pair_layouts_survive_a_checkpoint(monkeypatch, tmp_path):
    """A resumed run keeps the layouts the interrupted one chose (through a weights-only checkpoint), so it takes
    the same steps instead of timing again."""
    from crystalflow_core.nn import pair_blocks

    seconds = {"now": 0.0}

    def now(trial):
        seconds["now"] += 10.0 if trial.layout == pair_blocks.DENSE else 1.0
        return seconds["now"]

    monkeypatch.setattr(pair_blocks.LayoutTrial, "_now", now)
    model = _layout_model()
    _layout_steps(model, 2 * pair_blocks.PairLayoutChooser.trials + 1)
    assert list(model.pair_layout.choices.values()) == [pair_blocks.EDGES]
    torch.save({"pair_layouts": model.pair_layout.state()}, tmp_path / "state.pt")
    resumed = _layout_model()
    resumed.pair_layout.load_state(torch.load(tmp_path / "state.pt", weights_only=True)["pair_layouts"])
    assert resumed.pair_layout.choices == model.pair_layout.choices
    _, layouts = _layout_steps(resumed, 2)
    assert layouts == [False, False]  # edge lists at once: nothing timed again
