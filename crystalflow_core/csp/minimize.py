"""Lattice-energy minimisation of a rigid-molecule crystal over its cell and its molecule's pose, the space group
kept: L-BFGS (SciPy's L-BFGS-B) on the free parameters of :class:`~.rigid_crystal.RigidCrystal`, with the energy
and its gradient from :class:`~.lattice_energy.LatticeEnergy` by autograd."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.data import atomic_masses
from scipy.optimize import minimize as scipy_minimize

from crystalflow_core.data.molecules import MolecularCrystal

from .lattice_energy import LatticeEnergy
from .rigid_crystal import RigidCrystal

#: L-BFGS iterations and the energy change (kcal/mol per molecule, relative) that ends a minimisation.
MAX_ITERATIONS = 300
TOLERANCE = 1e-7
#: A metric coordinate may not shrink the metric by more than this nor grow it beyond that: outside, a cell is
#: flat or its molecules no longer touch.
METRIC_BOUNDS = (-0.8, 2.0)
#: Energy returned where the metric is not positive definite (the line search then steps back).
_INFEASIBLE = 1e6
#: g/cm³ of one (g/mol) per Å³: 1e24 / Avogadro's number.
_GRAMS_PER_CUBIC_CENTIMETRE = 1.66054


def mass_density(numbers: np.ndarray, z: float, volume: float) -> float:
    """Density (g/cm³) of ``z`` molecules of atoms ``numbers`` in ``volume`` Å³, Z·M/V."""
    return z * float(atomic_masses[np.asarray(numbers)].sum()) * _GRAMS_PER_CUBIC_CENTIMETRE / volume


def density(numbers: np.ndarray, z: int, lattice: np.ndarray) -> float:
    """Crystal density (g/cm³): ``z`` molecules of atoms ``numbers`` in the cell ``lattice``."""
    return mass_density(numbers, z, abs(float(np.linalg.det(lattice))))


@dataclass
class Minimized:
    """A minimised crystal: its ``lattice`` and reference ``molecule [n, 3]`` (Cartesian), the lattice energy per
    molecule before and after (kcal/mol), the L-BFGS iterations used and whether it converged."""

    crystal: RigidCrystal
    lattice: np.ndarray
    molecule: np.ndarray
    start_energy: float
    energy: float
    iterations: int
    converged: bool

    @property
    def density(self) -> float:
        return density(self.crystal.numbers, self.crystal.z, self.lattice)

    @property
    def start_density(self) -> float:
        return density(self.crystal.numbers, self.crystal.z, self.crystal.lattice)

    def molecular_crystal(self) -> MolecularCrystal:
        """The minimised crystal with every molecule of its cell."""
        return self.crystal.to_molecular_crystal(self.lattice, self.molecule)


def minimize_crystal(
    crystal: RigidCrystal,
    energy: LatticeEnergy,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> Minimized:
    """Minimise ``energy`` over ``crystal``'s cell and pose from its start (float64 on the CPU: a few hundred
    atoms, where launching kernels on a GPU costs more than the arithmetic)."""
    n_metric = len(crystal.metric_basis)
    bounds = [METRIC_BOUNDS] * n_metric + [(None, None)] * (crystal.n_parameters - n_metric)

    def energy_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        parameters = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        try:
            value = energy(*crystal.geometry(parameters))
        except torch.linalg.LinAlgError:
            return _INFEASIBLE, np.zeros_like(x)
        (gradient,) = torch.autograd.grad(value, parameters)
        return float(value.detach()), gradient.numpy()

    start = np.zeros(crystal.n_parameters)
    start_energy, _ = energy_and_gradient(start)
    result = scipy_minimize(
        energy_and_gradient,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iterations, "ftol": tolerance, "gtol": 1e-4},
    )
    with torch.no_grad():
        lattice, molecule = crystal.geometry(torch.as_tensor(result.x, dtype=torch.float64))
    return Minimized(
        crystal=crystal,
        lattice=lattice.numpy(),
        molecule=molecule.numpy(),
        start_energy=start_energy,
        energy=float(result.fun),
        iterations=int(result.nit),
        converged=bool(result.success),
    )
