r"""Potentials :math:`\varphi(x, t)` of Monge-Ampère flows, with exact derivatives.

A Monge-Ampère flow (Zhang, E & Wang 2018) moves particles and their log-density by

.. math::

    \frac{dx}{dt} = \nabla_x \varphi(x, t), \qquad
    \frac{d \ln p}{dt} = -\Delta_x \varphi(x, t).

Training by the discrete adjoint of a Runge-Kutta scheme needs, besides :math:`\nabla_x\varphi`
and :math:`\Delta_x\varphi`, the cotangent maps of the right-hand side
:math:`f(x) = (\nabla_x\varphi, -\Delta_x\varphi)`: the Hessian-vector product
:math:`\nabla_x^2\varphi\, v`, the gradient of the Laplacian :math:`\nabla_x\Delta_x\varphi`, and
the parameter gradients of :math:`\sum_i a_i\cdot\nabla_x\varphi(x_i) + b_i\,\Delta_x\varphi(x_i)`.
Every family here computes them in closed form (no automatic differentiation), and the tests
check each one against finite differences.

Families:

* :class:`OneHiddenLayer`: :math:`\varphi = \sum_j w_j\,\sigma(W_j\cdot x + c_j t + b_j)`, the
  potential of the original paper (logcosh, no bias, not time-dependent: exactly even in
  :math:`x`);
* :class:`OTFlowResNet`: the potential of OT-Flow (Onken et al. 2021), a ResNet plus a
  quadratic, with the exact Hessian trace of that paper;
* :class:`Summed`: a sum of potentials (e.g. a lattice convolution plus a dense layer);
* :class:`GroupAveraged`: the exact average of a potential over a finite group of signed
  coordinate permutations (e.g. the symmetries of an Ising lattice).

Arrays live on the backend's array module ``xp`` (numpy for the ``numpy`` and ``numba``
backends, cupy for ``cupy``): inputs ``x`` of shape ``(B, d)``, outputs of shapes ``(B,)``,
``(B, d)`` and, for parameter gradients, ``(n_params,)``. Parameters are one flat float64
vector ``params`` of ``xp`` owned by the potential; the weights of the layers are views into it.
With the ``numba`` backend, :class:`OneHiddenLayer` runs its elementwise work in the kernels of
``ot_pde.flows._kernels_numba`` (matrix products stay with BLAS); the other families use the ``xp``
code on every backend. Nothing here reads files or prints.
"""
from .base import ACTIVATIONS, Potential
from .group_averaged import GroupAveraged
from .groups import reflections_2d, signed_permutation_group, spin_flip, translations_2d
from .one_hidden_layer import OneHiddenLayer
from .summed import Summed
from .otflow_resnet import OTFlowResNet

__all__ = ["ACTIVATIONS", "Potential", "OneHiddenLayer", "OTFlowResNet", "GroupAveraged", "Summed",
           "signed_permutation_group", "spin_flip", "translations_2d", "reflections_2d"]
