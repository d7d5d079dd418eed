"""Monge-Ampère flows: potentials, fixed-step integrators, discrete-adjoint training."""
