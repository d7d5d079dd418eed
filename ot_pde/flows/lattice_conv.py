r"""A translation-invariant potential of local patches on a periodic lattice (a convolution).

On an :math:`L\times L` periodic lattice (:math:`N = L^2` sites, row-major index :math:`rL+c`)
take the :math:`k\times k` patch of sites around each site :math:`p`,
:math:`(P_p x)_q = x_{p\oplus q}` for the offsets :math:`q\in\{-r..r\}^2`, :math:`k = 2r+1`
(:math:`\oplus`: addition mod :math:`L` in each coordinate), and sum one hidden layer of
:math:`m` channels over every site:

.. math::

    \varphi(x, t) = \sum_p\sum_{j=1}^m w_j\,\sigma(z_{pj}), \qquad
    z_{pj} = W_j\cdot P_p x + c_j t + b_j.

It is the one-hidden-layer potential of width :math:`mN` whose units are the :math:`N`
translates of :math:`m` filters: every formula of
:class:`~ot_pde.flows.potentials.one_hidden_layer.OneHiddenLayer` holds with the unit index
:math:`(p, j)` and the parameter cotangents summed over :math:`p`. With :math:`k\le L` the
:math:`k^2` sites of a patch are distinct, so a unit's weight vector has the norm
:math:`n_j = |W_j|^2` and the Laplacian is exact:

.. math::

    \nabla_x\varphi = \sum_p P_p^T\,W^T(w\odot\sigma'_p), \qquad
    \Delta_x\varphi = \sum_{p,j} w_j\,\sigma''_{pj}\,n_j .

For :math:`\mathcal L = \sum_i a_i\cdot\nabla\varphi(x_i) + b_i\Delta\varphi(x_i)`, with
:math:`\pi_{ipj} = W_j\cdot P_p a_i` and the cotangent of :math:`z_{ipj}`,
:math:`g_{ipj} = w_j(\pi_{ipj}\sigma''_{ipj} + b_i n_j\sigma'''_{ipj})`:

.. math::

    \frac{\partial\mathcal L}{\partial x_i} = \sum_p P_p^T W^T g_{ip}, \qquad
    \frac{\partial\mathcal L}{\partial W_j} = \sum_{i,p} g_{ipj}P_p x_i
        + w_j\sigma'_{ipj}P_p a_i + 2 w_j b_i\sigma''_{ipj} W_j,

    \frac{\partial\mathcal L}{\partial w_j} = \sum_{i,p}\pi_{ipj}\sigma'_{ipj}
        + b_i n_j\sigma''_{ipj}, \qquad
    \frac{\partial\mathcal L}{\partial b_j} = \sum_{i,p} g_{ipj}, \qquad
    \frac{\partial\mathcal L}{\partial c_j} = t\sum_{i,p} g_{ipj}.

Why: the Ising relaxation is a lattice of bimodal sites coupled to their neighbours. A dense
potential must learn each local feature once per site; here one filter serves every site and
its gradient pools the signal of all :math:`N` sites of every sample. The potential is exactly
invariant under the translations; it is invariant under the point group when composed with it
(:mod:`ot_pde.flows.composition`).

Cost, for a batch of :math:`B`: two matrix products of :math:`BN\times k^2` by
:math:`k^2\times m` per evaluation and elementwise work on :math:`BNm` numbers; the patches
are gathered once per evaluation (:math:`BNk^2` reads) and scattered back by :math:`k^2`
permutations. Memory: arrays of :math:`B\times N\times\max(m, k^2)`.
"""
from __future__ import annotations


import numpy as np

from ..backends import NUMBA
from .potentials import Potential
from .potentials.one_hidden_layer import (
    declare_hidden_layer,
    hidden_layer_cotangent,
    hidden_preactivations,
)


def _numba_kernels():
    """The kernels of the numba backend: the OneHiddenLayer elementwise kernels (which take
    any rows of pre-activations) and the patch gather/scatter."""
    from . import _kernels_numba

    return _kernels_numba


def patch_indices(L: int, k: int) -> np.ndarray:
    """``idx[p, q]``: the site of offset ``q`` (row-major in the ``k x k`` patch) from site
    ``p`` on the periodic ``L x L`` lattice, shape ``(L^2, k^2)``."""
    r = k // 2
    rows, cols = np.divmod(np.arange(L * L), L)
    dr, dc = np.divmod(np.arange(k * k), k)
    return ((rows[:, None] + dr[None, :] - r) % L) * L + (cols[:, None] + dc[None, :] - r) % L


class LatticeConvolution(Potential):
    r"""One hidden layer of ``channels`` filters on the ``kernel x kernel`` patches of a
    periodic ``L x L`` lattice, summed over the sites (formulas in the module docstring).

    Parameters
    ----------
    L : int
        Lattice side; :math:`d = L^2`.
    kernel : int
        Odd patch side :math:`k`, :math:`1\le k\le L`.
    channels : int
        Filters :math:`m`.
    activation : {"logcosh", "softplus", "tanh"}
    bias, time_dependent : bool
        Hidden biases :math:`b`; the time term :math:`c_j t`.
    backend : Backend, optional
    rng : numpy.random.Generator or int
        Initialization: :math:`W_{jq}\sim N(0, 1/k^2)`, :math:`w_j\sim N(0, 1/(mN))`,
        :math:`b_j, c_j\sim N(0, 1/4)` (the output scale of a dense layer of width
        :math:`mN`).

    Notes
    -----
    Parameter blocks: ``W1`` (m, k^2), ``b`` (m,) if ``bias``, ``c`` (m,) if
    ``time_dependent``, ``w2`` (m,).
    """

    supports_float32 = True

    def __init__(self, L: int, kernel: int, channels: int, activation: str = "logcosh",
                 bias: bool = True, time_dependent: bool = False, backend=None, rng=0):
        if int(L) != L or L < 1:
            raise ValueError(f"L must be a positive integer, got {L!r}")
        super().__init__(int(L) * int(L), backend)
        if int(kernel) != kernel or kernel < 1 or kernel % 2 == 0 or kernel > L:
            raise ValueError(f"kernel must be an odd integer from 1 to L = {L}, got {kernel!r}")
        if int(channels) != channels or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.L, self.kernel, self.channels = int(L), int(kernel), int(channels)
        m, Q, N = self.channels, self.kernel ** 2, self.dim
        declare_hidden_layer(self, activation, m, Q, bias, time_dependent, rng,
                             output_fan=m * N)
        idx = patch_indices(self.L, self.kernel)
        # the scatter P^T as k^2 gathers: offset q maps p to idx[p, q], a permutation of the
        # sites, so (sum_p P_p^T G_p)_s = sum_q G[inv_q(s), q]
        inv = np.argsort(idx, axis=0)
        xp = self.xp
        self._gather = xp.asarray(idx)
        self._scatter = xp.asarray(inv)
        self._offsets = xp.asarray(np.broadcast_to(np.arange(Q), (N, Q)).copy())
        self._kernels = self.backend.bind({NUMBA: _numba_kernels}, default=lambda: None)

    # -- patches ------------------------------------------------------------------------------
    def _patches(self, v):
        """:math:`P_p v_i` for every sample and site, as rows ``(B N, k^2)`` (sample-major):
        every product with the filters is then one 2D matrix product, not ``B`` small ones."""
        if self._kernels is not None:
            return self._kernels.gather_patches(self.xp.ascontiguousarray(v), self._gather)
        return v[:, self._gather].reshape(-1, self.kernel ** 2)

    def _unpatch(self, G):
        r""":math:`\sum_p P_p^T G_{ip}` for rows ``G`` ``(B N, k^2)``, shape ``(B, N)``."""
        if self._kernels is not None:
            return self._kernels.scatter_patches(self.xp.ascontiguousarray(G), self._gather,
                                                 G.shape[0] // self.dim)
        G = G.reshape(-1, self.dim, self.kernel ** 2)
        return G[:, self._scatter, self._offsets].sum(axis=2)

    def _site_sum(self, v):
        """Sum rows ``(B N,)`` over the sites: shape ``(B,)``."""
        return v.reshape(-1, self.dim).sum(axis=1)

    def _pre(self, X, t):
        return hidden_preactivations(self, X, t)

    def _norms(self):
        W1 = self._views["W1"]
        return (W1 * W1).sum(axis=1)

    # -- interface ----------------------------------------------------------------------------
    def value(self, x, t):
        x = self._x(x)
        z = self._pre(self._patches(x), t)
        return self._site_sum(self._sigma(self.xp, z) @ self._views["w2"])

    def grad_and_laplacian(self, x, t):
        x = self._x(x)
        W1, w2 = self._views["W1"], self._views["w2"]
        z = self._pre(self._patches(x), t)
        if self._kernels is not None:
            u, lap = self._kernels.grad_lap_rows(z, w2, self._norms(), self._code)
            return self._unpatch(u @ W1), self._site_sum(lap)
        d1, d2, _ = self._derivs(self.xp, z, False)
        return self._unpatch((d1 * w2) @ W1), self._site_sum(d2 @ (w2 * self._norms()))

    def value_grad_and_laplacian(self, x, t):
        x = self._x(x)
        W1, w2 = self._views["W1"], self._views["w2"]
        z = self._pre(self._patches(x), t)
        d1, d2, _ = self._derivs(self.xp, z, False)
        return (self._site_sum(self._sigma(self.xp, z) @ w2), self._unpatch((d1 * w2) @ W1),
                self._site_sum(d2 @ (w2 * self._norms())))

    def _vjp(self, x, t, a, b, want_params):
        xp = self.xp
        X = self._patches(x)
        z = self._pre(X, t)
        W1, w2 = self._views["W1"], self._views["w2"]
        n = self._norms()
        A = None if a is None else self._patches(a)
        pi = xp.zeros_like(z) if A is None else A @ W1.T
        if b is None:
            b = xp.zeros(x.shape[0], dtype=self.dtype)
        bb = xp.repeat(b, self.dim)  # b_i on the rows of sample i
        if self._kernels is not None:
            g, s1, dw2, q = self._kernels.vjp_cols(z, pi, bb, w2, n, self._code)
        else:
            d1, d2, d3 = self._derivs(xp, z, True)
            g = w2 * (pi * d2 + bb[:, None] * n * d3)
            s1 = w2 * d1
            q = bb @ d2
            dw2 = (pi * d1).sum(axis=0) + n * q
        x_bar = self._unpatch(g @ W1)
        if not want_params:
            return x_bar, None
        return x_bar, hidden_layer_cotangent(self, t, g, g.T @ X + 2.0 * (w2 * q)[:, None] * W1,
                                             dw2, None if A is None else s1.T @ A)

    def param_vjp_value(self, x, t, c):
        xp = self.xp
        x = self._x(x)
        c = self._rows(c, x.shape[0], "c")
        X = self._patches(x)
        z = self._pre(X, t)
        w2 = self._views["w2"]
        cc = xp.repeat(c, self.dim)
        g = (cc[:, None] * self._derivs(xp, z, False)[0]) * w2
        return hidden_layer_cotangent(self, t, g, g.T @ X, cc @ self._sigma(xp, z))
