"""Finite groups of signed coordinate permutations: spin flip and the symmetries of a periodic
square lattice."""
from __future__ import annotations

from collections import deque

import numpy as np


def _check_element(element, dim: int, where: str):
    """Validate one signed permutation; returns (perm int64, signs int8) numpy arrays."""
    try:
        perm, signs = element
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a pair (perm, signs), got {element!r}") from None
    perm = np.asarray(perm)
    signs = np.asarray(signs)
    if perm.shape != (dim,):
        raise ValueError(f"{where}: perm must have length {dim}, got shape {perm.shape}")
    if signs.shape != (dim,):
        raise ValueError(f"{where}: signs must have length {dim}, got shape {signs.shape}")
    if not np.all(np.equal(np.mod(perm, 1), 0)) or \
            not np.array_equal(np.sort(perm.astype(np.int64)), np.arange(dim)):
        raise ValueError(f"{where}: perm is not a permutation of range({dim}): {perm.tolist()}")
    if not np.all((signs == 1) | (signs == -1)):
        bad = sorted({float(v) for v in signs.ravel() if v not in (1, -1)})
        raise ValueError(f"{where}: signs must all be +1 or -1, got {bad}")
    return perm.astype(np.int64), signs.astype(np.int8)


def _compose(g1, g2):
    r""":math:`g_1\circ g_2`, with :math:`g x = s\odot x[\pi]`:
    :math:`g_1(g_2 x) = s_1\odot s_2[\pi_1]\odot x[\pi_2[\pi_1]]`."""
    (p1, s1), (p2, s2) = g1, g2
    return p2[p1], s1 * s2[p1]


def signed_permutation_group(generators, dim: int, max_size: int = 4096):
    r"""Close signed coordinate permutations under composition.

    An element is a pair ``(perm, signs)`` acting by :math:`g x = s\odot x[\pi]`. The group
    is found by breadth-first search over right-multiplications by the generators; a
    generator already in the group found so far is skipped, so at most
    :math:`\log_2 |G|` generators take part and a full group given as its own generating
    list closes in :math:`O(|G|\log|G|)` compositions.

    Parameters
    ----------
    generators : iterable of (perm, signs)
        ``perm`` a permutation of ``range(dim)``, ``signs`` entries :math:`\pm1`.
    dim : int
    max_size : int
        Largest group accepted.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        The elements, identity first, in BFS order (deterministic): ``perm`` int64,
        ``signs`` float64.

    Raises
    ------
    ValueError
        A generator is malformed, or the group has more than ``max_size`` elements.
    """
    gens = [_check_element(g, dim, f"generator {k}") for k, g in enumerate(generators)]

    def key(e):
        return e[0].tobytes() + e[1].tobytes()

    identity = (np.arange(dim, dtype=np.int64), np.ones(dim, dtype=np.int8))
    elements = [identity]
    seen = {key(identity)}
    used = []

    def add(e, queue):
        k = key(e)
        if k not in seen:
            seen.add(k)
            elements.append(e)
            queue.append(e)
            if len(elements) > max_size:
                raise ValueError(f"the group generated has more than max_size={max_size} "
                                 f"elements; pass fewer generators or raise max_size")

    for gen in gens:
        if key(gen) in seen:
            continue
        used.append(gen)
        # The elements so far are closed under the earlier generators: multiply them by the
        # new one, then every new element by all generators.
        queue = deque()
        for e in list(elements):
            add(_compose(e, gen), queue)
        while queue:
            e = queue.popleft()
            for g in used:
                add(_compose(e, g), queue)
    return [(perm, signs.astype(np.float64)) for perm, signs in elements]


def spin_flip(dim: int):
    r"""The generator :math:`x\mapsto -x` (as a one-element list)."""
    return [(np.arange(dim), -np.ones(dim))]


def _lattice_perm(L: int, fn):
    r, c = np.divmod(np.arange(L * L), L)
    rr, cc = fn(r, c)
    return rr * L + cc


def translations_2d(L: int):
    r"""Generators of the periodic translations of an :math:`L\times L` lattice (row-major).

    Site :math:`(r, c)` has index :math:`rL + c`; the two generators shift by one column and
    by one row: :math:`(g x)_{r,c} = x_{r, c+1}` and :math:`x_{r+1, c}` (indices mod :math:`L`).
    They generate the :math:`L^2` translations.
    """
    ones = np.ones(L * L)
    return [(_lattice_perm(L, lambda r, c: (r, (c + 1) % L)), ones),
            (_lattice_perm(L, lambda r, c: ((r + 1) % L, c)), ones)]


def reflections_2d(L: int):
    r"""Generators of the point symmetries of an :math:`L\times L` lattice (row-major).

    The mirror :math:`c\mapsto L-1-c` and the diagonal mirror :math:`(r, c)\mapsto(c, r)`;
    two mirrors at 45 degrees generate the dihedral group of the square, of order 8. With
    :func:`translations_2d` they generate the wallpaper group p4m of the periodic lattice,
    of order :math:`8L^2` (for :math:`L\ge3`; 128 for :math:`L = 4`), and with
    :func:`spin_flip` as well :math:`16L^2` (256 for :math:`L = 4`).
    """
    ones = np.ones(L * L)
    return [(_lattice_perm(L, lambda r, c: (r, L - 1 - c)), ones),
            (_lattice_perm(L, lambda r, c: (c, r)), ones)]


