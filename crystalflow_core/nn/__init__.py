"""Equivariant networks: PaiNN velocity field and its radial building blocks."""

from crystalflow_core.nn.painn import PaiNNVelocity, radius_edges
from crystalflow_core.nn.radial import CosineCutoff, GaussianRBF

__all__ = ["CosineCutoff", "GaussianRBF", "PaiNNVelocity", "radius_edges"]
