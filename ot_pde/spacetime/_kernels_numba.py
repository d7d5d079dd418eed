"""numba kernels of the Benamou-Brenier solver (imported only when numba is installed).

No ``fastmath``: these kernels are checked by the convergence tests and must agree with the
numpy reference to round-off.
"""
from __future__ import annotations

import numba
import numpy as np

from ._prox import MAX_NEWTON, kinetic_prox_numpy


def _threaded_and_serial(make):
    """``(threaded, serial)`` compilations of ``make(loop)``, a kernel whose outer loop is
    ``loop`` (``numba.prange`` or ``range``).

    Small grids run the serial one: there, waking the threads costs more than the loop (and
    far more on a loaded machine: 30-55 ms instead of 3 ms per iteration measured on a
    32-cell 1D grid with two threads at load average ~10). ``loop`` is a closure cell on
    purpose: numba's on-disk cache keys a kernel by its bytecode and closure values, not by
    its compile flags, so the two variants get distinct cache entries.
    """
    return (numba.njit(cache=True, parallel=True)(make(numba.prange)),
            numba.njit(cache=True)(make(range)))


#: entries per block of the blocked reductions: every sum is formed block by block in a fixed
#: order, so it is the same bits with any number of threads (it feeds the stopping rule)
BLOCK = 1 << 14


@numba.njit(cache=True, inline="always")
def _block_bounds(k, n):
    """Entries ``[lo, hi)`` of block ``k`` of ``n``; signed arithmetic (prange's index is
    unsigned, and unsigned index arithmetic ran the prox 1.45x slower per thread, measured)."""
    b = np.int64(k)
    return b * BLOCK, min(n, (b + 1) * BLOCK)


#: cells whose Newton iterations run interleaved: one Newton step of every unfinished cell
#: per pass, so the division chains of neighbouring cells overlap instead of waiting on each
#: other (each cell still takes exactly the steps of _prox.cubic_root_numpy's loop, so the bits
#: are those of the scalar loop this replaced)
SUB = 256


@numba.njit(cache=True)
def _prox_block(b, ft, m0, m1, m2, d, gamma, f_out, o0, o1, o2):
    # The bracket and the Newton steps of _prox.cubic_root_numpy (see its docstring), per
    # cell of block b; returns the kinetic sum |m|^2 / f of the output over its cells f > 0.
    # m1, m2 (o1, o2) are ignored beyond d components.
    lo, hi = _block_bounds(b, ft.shape[0])
    x = np.empty(SUB)
    c = np.empty(SUB)
    active = np.empty(SUB, dtype=np.bool_)
    energy = 0.0
    for s0 in range(lo, hi, SUB):
        cnt = min(hi, s0 + SUB) - s0
        for j in range(cnt):
            i = s0 + j
            msq = 0.0 + m0[i] * m0[i]
            if d > 1:
                msq += m1[i] * m1[i]
            if d > 2:
                msq += m2[i] * m2[i]
            fi = ft[i]
            cj = 0.5 * gamma * msq
            f0 = fi if fi > 0.0 else 0.0
            c[j] = cj
            active[j] = False
            if fi < 0.0 and -fi * gamma * gamma - cj >= 0.0:
                x[j] = 0.0
            elif cj <= 0.0:
                x[j] = f0
            else:
                # min(a, cbrt(c)) as in numpy; cbrt (a third of the kernel's time)
                # only where a < c^(1/3) is not certain despite the rounding of a^3 (certain
                # for every normal c; a subnormal c below ~1e-312 could in theory keep an a
                # one ulp above cbrt(c): still a start above the root, the result then possibly an
                # ulp off numpy's)
                a = cj / ((f0 + gamma) * (f0 + gamma))
                if not a * a * a < cj * (1.0 - 1e-12):
                    a = min(a, np.cbrt(cj))
                x[j] = f0 + a
                active[j] = True
        for _ in range(MAX_NEWTON):
            moved = False
            for j in range(cnt):
                if active[j]:
                    xj = x[j]
                    fi = ft[s0 + j]
                    xg = xj + gamma
                    p = (xj - fi) * xg * xg - c[j]
                    dp = xg * (3.0 * xj + gamma - 2.0 * fi)
                    xn = xj - p / dp
                    if xn < xj:
                        x[j] = xn
                        moved = True
                    else:
                        active[j] = False
            if not moved:
                break
        for j in range(cnt):
            i = s0 + j
            f = x[j]
            f_out[i] = f
            scale = f / (f + gamma)
            a0 = scale * m0[i]
            o0[i] = a0
            msq = 0.0 + a0 * a0
            if d > 1:
                a1 = scale * m1[i]
                o1[i] = a1
                msq += a1 * a1
            if d > 2:
                a2 = scale * m2[i]
                o2[i] = a2
                msq += a2 * a2
            if f > 0.0:
                energy += msq / f
    return energy


def _make_prox_cells(loop):
    def kernel(ft, m0, m1, m2, d, gamma, f_out, o0, o1, o2, sums):
        for k in loop(sums.shape[0]):
            # a signed block index: compiled for an unsigned one, the whole block ran slower
            sums[k] = _prox_block(np.int64(k), ft, m0, m1, m2, d, gamma, f_out, o0, o1, o2)
    return kernel


_prox_cells = _threaded_and_serial(_make_prox_cells)


def kinetic_prox_energy_numba(ft, mt, gamma, parallel: bool = True):
    """:func:`._prox.kinetic_prox_numpy`'s ``(f, ms)`` (to round-off) and the kinetic sum of the
    result (:func:`kinetic_sum_numba`'s bits) from one pass; ``parallel``: threaded kernel.
    More than three momentum components (grids of d > 3, which no case file makes) take
    numpy's prox and the numba sum."""
    if len(mt) > 3:
        f, ms = kinetic_prox_numpy(ft, mt, gamma)
        return f, ms, kinetic_sum_numba(f, ms, parallel)
    shape = ft.shape
    ms = [_flat(m) for m in mt]
    outs = [np.empty(ft.size) for _ in range(len(mt) + 1)]
    padded_in = ms + [ms[0]] * (3 - len(ms))
    padded_out = outs[1:] + [outs[1]] * (3 - len(ms))
    sums = np.empty(_blocks(ft.size))
    _prox_cells[0 if parallel else 1](_flat(ft), *padded_in, len(ms), float(gamma), outs[0],
                                      *padded_out, sums)
    return outs[0].reshape(shape), [m.reshape(shape) for m in outs[1:]], float(sums.sum())


def _make_dr_update(loop):
    def kernel(z, y, x, x_prev, alpha, sums):
        # z += alpha (y - x) in place (the bits of numpy's z + alpha * (y - x)), and per block
        # the sums |x|^2, |y - x|^2, |x - x_prev|^2
        n = z.size
        for k in loop(sums.shape[0]):
            lo, hi = _block_bounds(k, n)
            sx = 0.0
            sg = 0.0
            sc = 0.0
            for i in range(lo, hi):
                xi = x[i]
                g = y[i] - xi
                z[i] = z[i] + alpha * g
                sx += xi * xi
                sg += g * g
                c = xi - x_prev[i]
                sc += c * c
            sums[k, 0] = sx
            sums[k, 1] = sg
            sums[k, 2] = sc
    return kernel


_dr_update = _threaded_and_serial(_make_dr_update)


def _blocks(n: int) -> int:
    return max(1, -(-n // BLOCK))


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def dr_update_numba(zs, ys, xs, x_prevs, alpha, parallel: bool = True):
    """Douglas-Rachford update ``z += alpha (y - x)`` of every array of ``zs`` (in place where
    contiguous) and ``(|x|^2, |y - x|^2, |x - x_prev|^2)`` summed over the lists, in one pass.

    The update has numpy's bits; the sums are blocked (:data:`BLOCK`), so they agree with
    numpy's to round-off and do not depend on the thread count. Returns ``(zs, sums)``.
    """
    total = np.zeros(3)
    out = []
    for z, y, x, xp in zip(zs, ys, xs, x_prevs):
        z = np.ascontiguousarray(z)
        sums = np.empty((_blocks(z.size), 3))
        _dr_update[0 if parallel else 1](z.reshape(-1), _flat(y), _flat(x), _flat(xp),
                                         float(alpha), sums)
        total += sums.sum(axis=0)
        out.append(z)
    return out, total


def _make_kinetic(loop):
    def kernel(f, m, sums):
        # sum over cells with f > 0 of |m|^2 / f, per block
        n = f.size
        d = m.shape[0]
        for k in loop(sums.shape[0]):
            lo, hi = _block_bounds(k, n)
            s = 0.0
            for i in range(lo, hi):
                if f[i] > 0.0:
                    msq = 0.0
                    for c in range(d):
                        msq += m[c, i] * m[c, i]
                    s += msq / f[i]
            sums[k] = s
    return kernel


_kinetic = _threaded_and_serial(_make_kinetic)


def kinetic_sum_numba(f, ms, parallel: bool = True):
    r""":math:`\sum_{\bar f > 0} |\bar m|^2 / \bar f` over the cells (blocked, see
    :func:`dr_update_numba`)."""
    sums = np.empty(_blocks(f.size))
    _kinetic[0 if parallel else 1](_flat(f), np.stack([_flat(m) for m in ms]), sums)
    return float(sums.sum())


def thomas_factors(n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward-sweep factors of the Thomas algorithm for ``Id + A^T A`` (``n_faces`` unknowns).

    The matrix is tridiagonal with 1/4 off the diagonal and diagonal 5/4, 3/2, ..., 3/2, 5/4
    (``A`` averages neighbouring faces); it is diagonally dominant, so no pivoting is needed.
    """
    diag = np.full(n_faces, 1.5)
    diag[0] = diag[-1] = 1.25
    c_prime = np.empty(n_faces)
    inv = np.empty(n_faces)
    inv[0] = 1.0 / diag[0]
    c_prime[0] = 0.25 * inv[0]
    for i in range(1, n_faces):
        inv[i] = 1.0 / (diag[i] - 0.25 * c_prime[i - 1])
        c_prime[i] = 0.25 * inv[i]
    return c_prime, inv


#: contiguous entries of the `after` index per task of the line kernels: the time axis has a
#: single `before` index, so the tasks are (before, chunk of after) pairs
CHUNK = 512


@numba.njit(cache=True, inline="always")
def _line_task(k, chunks, after):
    """Task ``k`` of a line kernel: ``(before index, first and end after index)``; signed
    arithmetic, as in :func:`_block_bounds`."""
    task = np.int64(k)
    a0 = (task % chunks) * CHUNK
    return task // chunks, a0, min(after, a0 + CHUNK)


def _make_interp_project_lines(loop):
    def kernel(zu, zv, c_prime, inv, u, v, wu, wv):
        # Arrays viewed as (before, axis, after): zu, u, wu have n + 1 faces on the middle axis,
        # zv, v, wv n centres. Solves (Id + A^T A) u = zu + A^T zv along the middle axis, then
        # v = A u, and the reflections wu = 2 u - zu, wv = 2 v - zv (numpy's bits) while the
        # lines are in cache. The innermost loop runs over the contiguous `after` index, so no
        # transposition is needed.
        before, nf, after = zu.shape
        chunks = (after + CHUNK - 1) // CHUNK
        for k in loop(before * chunks):
            b, a0, a1 = _line_task(k, chunks, after)
            for i in range(nf):
                for a in range(a0, a1):
                    rhs = zu[b, i, a]
                    if i > 0:
                        rhs += 0.5 * zv[b, i - 1, a]
                    if i < nf - 1:
                        rhs += 0.5 * zv[b, i, a]
                    if i > 0:
                        rhs -= 0.25 * u[b, i - 1, a]
                    u[b, i, a] = rhs * inv[i]
            for a in range(a0, a1):
                wu[b, nf - 1, a] = 2.0 * u[b, nf - 1, a] - zu[b, nf - 1, a]
            for i in range(nf - 2, -1, -1):
                for a in range(a0, a1):
                    u[b, i, a] -= c_prime[i] * u[b, i + 1, a]
                    wu[b, i, a] = 2.0 * u[b, i, a] - zu[b, i, a]
            for i in range(nf - 1):
                for a in range(a0, a1):
                    vi = 0.5 * (u[b, i, a] + u[b, i + 1, a])
                    v[b, i, a] = vi
                    wv[b, i, a] = 2.0 * vi - zv[b, i, a]
    return kernel


_interp_project_lines = _threaded_and_serial(_make_interp_project_lines)


def _three_axes(shape, axis):
    return (int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:])))


def interpolation_projection_numba(zu, zv, axis, factors, parallel: bool = True):
    """Same result as the sign-flipped DCT solve of the solver, along ``axis``, in O(n), and
    the Douglas-Rachford reflections: ``(u, v, 2 u - zu, 2 v - zv)``; ``parallel``: threaded
    kernel."""
    zu = np.ascontiguousarray(zu)
    zv = np.ascontiguousarray(zv)
    out = (np.empty_like(zu), np.empty_like(zv), np.empty_like(zu), np.empty_like(zv))
    views = [a.reshape(_three_axes(a.shape, axis)) for a in (zu, zv) + out]
    _interp_project_lines[0 if parallel else 1](views[0], views[1], factors[0], factors[1],
                                                *views[2:])
    return out


def _make_divergence_lines(loop):
    def kernel(u, inv_h, first, div):
        # div (+)= (u[:, i + 1] - u[:, i]) * inv_h on (before, n, after) views, u with n + 1
        # faces; `first`: div = 0.0 + ..., numpy's bits (0.0 + -0.0 is +0.0)
        before, n, after = div.shape
        chunks = (after + CHUNK - 1) // CHUNK
        for k in loop(before * chunks):
            b, a0, a1 = _line_task(k, chunks, after)
            for i in range(n):
                for a in range(a0, a1):
                    d = (u[b, i + 1, a] - u[b, i, a]) * inv_h
                    div[b, i, a] = (0.0 if first else div[b, i, a]) + d
    return kernel


_divergence_lines = _threaded_and_serial(_make_divergence_lines)


def divergence_numba(u, inv_h, parallel: bool = True):
    """Staggered space-time divergence of ``u`` (a list, axis ``k`` staggered along ``k``), with
    numpy's bits: ``sum_k (u_k[i + 1] - u_k[i]) * inv_h[k]`` summed in axis order."""
    shape = list(u[0].shape)
    shape[0] -= 1
    div = np.empty(shape)
    for axis, (ua, h) in enumerate(zip(u, inv_h)):
        _divergence_lines[0 if parallel else 1](
            np.ascontiguousarray(ua).reshape(_three_axes(ua.shape, axis)), float(h), axis == 0,
            div.reshape(_three_axes(div.shape, axis)))
    return div


def _make_add_gradient_lines(loop):
    def kernel(u, lam, inv_h):
        # u[:, i] += (lam[:, i] - lam[:, i - 1]) * inv_h on the interior faces 1..n-1
        before, n, after = lam.shape
        chunks = (after + CHUNK - 1) // CHUNK
        for k in loop(before * chunks):
            b, a0, a1 = _line_task(k, chunks, after)
            for i in range(1, n):
                for a in range(a0, a1):
                    u[b, i, a] += (lam[b, i, a] - lam[b, i - 1, a]) * inv_h
    return kernel


_add_gradient_lines = _threaded_and_serial(_make_add_gradient_lines)


def add_gradient_numba(u, lam, inv_h, parallel: bool = True):
    """``u_k`` on its interior faces ``+= (lam[i] - lam[i - 1]) * inv_h[k]`` along axis ``k``,
    in place (contiguous arrays), numpy's bits."""
    lam = np.ascontiguousarray(lam)
    for axis, (ua, h) in enumerate(zip(u, inv_h)):
        if not ua.flags.c_contiguous:
            raise ValueError("add_gradient_numba updates contiguous arrays only")
        _add_gradient_lines[0 if parallel else 1](
            ua.reshape(_three_axes(ua.shape, axis)), lam.reshape(_three_axes(lam.shape, axis)),
            float(h))
