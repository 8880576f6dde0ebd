"""Crystal structure prediction of rigid molecules: crystals, not clusters.

A molecular crystal with one molecule in the asymmetric unit (Z' = 1, or 0.5 on a special position) is fixed by
a space group, a cell and one molecule's pose. This package searches those unknowns and ranks what it finds:

- ``rigid_crystal.py``  the crystal as a space group, a cell and one rigid molecule; its symmetry images and the
  free parameters that keep the space group (cell metric, site-symmetric pose);
- ``lattice_energy.py`` MMFF94 non-bonded lattice energy per molecule, periodic (Ewald electrostatics), plus D3
  dispersion, in torch;
- ``dispersion.py``    D3(BJ) pair coefficients of a rigid molecule (tad-dftd3): the r⁻⁶ attraction MMFF94 lacks;
- ``minimize.py``       L-BFGS over the cell and the pose, the space group kept;
- ``candidates.py``     random symmetric crystals of the molecule (pyxtal), stratified over space groups;
- ``merge.py``          candidates that relaxed to the same crystal become one;
- ``search.py``         generate, minimise, merge, rank: the crystals behind ``crystalflow predict``;
- ``compare.py``        a candidate against a known crystal: shell molecules matched of 15 and RMSD_15;
- ``cif_writer.py``     a candidate as a CIF with its symmetry operations;
- ``pxrd.py``           simulated powder patterns and ranking by agreement with a measured one.
- ``cluster_lattice.py`` reading a weak cluster: centroids and handedness to ranked cell and space-group guesses.
- ``cluster_fit.py``    how well a crystal explains a weak cluster: its cut superposed on ``x_w``'s centroids.

``crystalflow_core.solve`` composes them into ``crystalflow solve`` (a crystal for every weak cluster of a split).
"""
