"""A box of uniform cells, the spatial part of every grid solver (a library module)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """``shape`` uniform cells on the box ``[lower, upper]``, their values at cell centres."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple((b - a) / n for a, b, n in zip(self.lower, self.upper, self.shape))

    @property
    def cell_volume(self) -> float:
        """Volume of one spatial cell."""
        return float(np.prod(self.spacing))

    def centers(self, axis: int) -> np.ndarray:
        a, h, n = self.lower[axis], self.spacing[axis], self.shape[axis]
        return a + h * (np.arange(n) + 0.5)

    def mesh(self) -> list[np.ndarray]:
        """Cell-centre coordinates, one array of ``shape`` per axis."""
        return np.meshgrid(*[self.centers(k) for k in range(self.ndim)], indexing="ij")
