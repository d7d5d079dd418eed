"""2D Ising model: exact references and the continuous relaxation used by variational flows."""
