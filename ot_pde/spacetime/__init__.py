"""Dynamic optimal transport on staggered space-time grids (a library).

The grid (:class:`SpaceTimeGrid`), the checks of a space-time case (:mod:`.checks`), the
Benamou-Brenier solver by Douglas-Rachford splitting (:mod:`.solver`, with its proximal maps and
kernels), its coarse-to-fine driver (:mod:`.multilevel`) and its affine warm start
(:mod:`.start`). The ``benamou_brenier`` kind solves a case with it; ``entropic_potentials``
and ``flow_comparison`` use the grid and the solver too, which is why they live here and not in
a kind.
"""
from .box import Box
from .checks import check_marginals, checked_box
from .multilevel import MultilevelSolver
from .solver import BenamouBrenierSolver, SpaceTimeGrid
from .start import affine_start

__all__ = ["BenamouBrenierSolver", "Box", "MultilevelSolver", "SpaceTimeGrid", "affine_start",
           "check_marginals", "checked_box"]
