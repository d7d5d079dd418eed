"""Incompressible Euler equations: spectral (torus) and Lagrangian particle (OT) solvers."""
