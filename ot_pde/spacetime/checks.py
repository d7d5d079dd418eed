"""Checks of a space-time case shared by the kinds on the grid: the box and the marginals."""
from __future__ import annotations

import logging

from ..errors import InputError

log = logging.getLogger("ot_pde")


def checked_box(case) -> tuple[list, list]:
    """``grid.lower`` and ``grid.upper`` of a 1D-3D box, checked (same length, upper > lower)."""
    where = case.source
    lower, upper = case.get("grid.lower"), case.get("grid.upper")
    if not 1 <= len(lower) <= 3:
        raise InputError(f"expected 1 to 3 values, got {len(lower)}", source=where,
                         key="grid.lower")
    if len(upper) != len(lower):
        raise InputError(f"expected {len(lower)} values like grid.lower, got {len(upper)}",
                         source=where, key="grid.upper")
    if any(b <= a for a, b in zip(lower, upper)):
        raise InputError("expected upper > lower on every axis", source=where, key="grid.upper")
    return lower, upper


def check_marginals(source, target, cell_volume: float, where: str, *,
                    exact_truncation: bool = False) -> None:
    """Equal masses on the grid (an error naming ``target.normalize`` otherwise); a warning
    for either density with mass outside the box, unless ``exact_truncation`` (the exact
    reference transports the truncated densities, as the product reference does)."""
    m0 = source.values.sum() * cell_volume
    m1 = target.values.sum() * cell_volume
    if abs(m0 - m1) > 1e-12 * max(m0, m1):
        raise InputError(f"source and target masses differ ({m0:.12g} vs {m1:.12g}); set "
                         "normalize = true or give equal masses", source=where,
                         key="target.normalize")
    for name, dens in (("source", source), ("target", target)):
        if dens.truncated_mass > 1e-6 and not exact_truncation:
            log.warning("%s: %.2e of the mass lies outside the box; the closed-form "
                        "reference ignores the truncation", name, dens.truncated_mass)
