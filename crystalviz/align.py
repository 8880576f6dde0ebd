"""Optimal rigid superposition (Kabsch) of a predicted cluster onto the ground truth."""

from __future__ import annotations

import numpy as np


def kabsch(mobile: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> tuple:
    """Proper rotation R [3, 3] and translation t [3] minimising sum_i w_i |R mobile_i + t - target_i|^2.

    mobile, target [N, 3]; weights [N] (uniform when None). det(R) = +1 always: when the best orthogonal
    map would be a reflection, the axis of the smallest singular value is flipped.
    """
    mobile = np.asarray(mobile, dtype=float)
    target = np.asarray(target, dtype=float)
    w = np.ones(len(mobile)) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    mobile_center = w @ mobile
    target_center = w @ target
    covariance = (mobile - mobile_center).T @ ((target - target_center) * w[:, None])
    u, _, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    translation = target_center - rotation @ mobile_center
    return rotation, translation


def superimpose(mobile: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Return mobile [N, 3] rigidly aligned onto target [N, 3] (proper rotation + translation)."""
    mobile = np.asarray(mobile, dtype=float)
    rotation, translation = kabsch(mobile, target, weights)
    return mobile @ rotation.T + translation


def rmsd(x: np.ndarray, y: np.ndarray) -> float:
    """Root-mean-square deviation between two [N, 3] arrays without any alignment."""
    return float(np.sqrt(np.mean(np.sum((np.asarray(x) - np.asarray(y)) ** 2, axis=-1))))
