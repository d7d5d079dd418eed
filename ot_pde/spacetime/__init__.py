"""Dynamic optimal transport on staggered space-time grids (a library).

The grid (:class:`SpaceTimeGrid`), the checks of a space-time case (:mod:`.checks`), the
Benamou-Brenier solver by Douglas-Rachford splitting (:mod:`.solver`, with its proximal maps and
kernels), its coarse-to-fine driver (:mod:`.multilevel`) and its warm starts (:mod:`.start`:
the affine transport, and the displacement interpolation of the grid Monge-Ampere map). The
Monge-Ampere equation on a cell grid (:mod:`ot_pde.spacetime.cellgrid`,
:mod:`ot_pde.spacetime.monge_ampere`: Newton and the parabolic flow for the Brenier potential)
is here because both the ``monge_ampere_grid`` kind and that start use it. The
``benamou_brenier`` kind solves a case with it; ``entropic_potentials`` and
``flow_comparison`` use the grid and the solver too, which is why they live here and not in a
kind.
"""
from .box import Box
from .checks import check_marginals, checked_box
from .multilevel import MultilevelSolver
from .solver import BenamouBrenierSolver, SpaceTimeGrid
from .start import affine_start, monge_ampere_start

__all__ = ["BenamouBrenierSolver", "Box", "MultilevelSolver", "SpaceTimeGrid", "affine_start",
           "check_marginals", "checked_box", "monge_ampere_start"]
