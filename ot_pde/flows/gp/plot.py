"""Standard figure of a ``gp_flow`` result."""
from __future__ import annotations

import numpy as np

_ARROWS = 400


def _quiver(ax, a, b, title, color):
    k = min(_ARROWS, a.shape[0])
    ax.quiver(a[:k, 0], a[:k, 1], b[:k, 0] - a[:k, 0], b[:k, 1] - a[:k, 1], angles="xy",
              scale_units="xy", scale=1.0, width=0.003, color=color, alpha=0.6)
    ax.scatter(b[:k, 0], b[:k, 1], s=2, c="k", alpha=0.5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title, fontsize=9)


def plot(result, png_path) -> None:
    """Displacements z -> T(z) and z -> T(G(z)), the map G on a lattice, the history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.summary()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.1))
    z = result.particles("latent")
    _quiver(axes[0], z, result.particles("flow_image"),
            f"before: z -> T(z)\nE|T(z)-z|^2 = {s['transport_cost_before']:.4f}", "tab:blue")
    _quiver(axes[1], z, result.particles("gp_image"),
            f"after: z -> T(G(z))\nE|T(G(z))-z|^2 = {s['transport_cost_after']:.4f} "
            f"(W2^2 >= {s['ot_lower_bound']:.3f})", "tab:green")
    ax = axes[2]
    lat, img = result.particles("lattice"), result.particles("lattice_image")
    half = lat.shape[0] // 2
    # lines of constant y (first half) and of constant x (second half), in any point order
    for part, fixed in ((slice(0, half), 1), (slice(half, None), 0)):
        a, b = lat[part], img[part]
        for value in np.unique(a[:, fixed]):
            sel = np.flatnonzero(a[:, fixed] == value)
            sel = sel[np.argsort(a[sel, 1 - fixed])]
            ax.plot(a[sel, 0], a[sel, 1], color="0.8", lw=0.6)
            ax.plot(b[sel, 0], b[sel, 1], color="tab:purple", lw=0.8)
    t = np.linspace(0, 2 * np.pi, 200)
    for r in (1.0, 2.0, 3.0):
        ax.plot(r * np.cos(t), r * np.sin(t), "k:", lw=0.5)
    ax.set_aspect("equal")
    ax.set_xlim(-3.6, 3.6)
    ax.set_ylim(-3.6, 3.6)
    ax.set_title(f"Gaussian-preserving map G on a lattice\nmean dlogp = "
                 f"{s['log_likelihood_change']:.1e}, Euler residual {s['euler_residual']:.2f}",
                 fontsize=9)
    ax = axes[3]
    h = result.history()
    if h and "cost" in h and len(h["cost"]):
        ax.plot(h.get("lbfgs_iterations", h["iteration"]), h["cost"], "o-", ms=3, label="training cost")
    ax.axhline(s["ot_lower_bound"], color="tab:red", ls="--", label="discrete-OT bound")
    ax.axhline(s["transport_cost_before"], color="tab:blue", lw=0.8, label="flow before")
    ax.set_xlabel("L-BFGS iteration")
    ax.set_ylabel("E|T(G(z)) - z|^2")
    ax.legend(fontsize=7)
    ax.set_title(f"gap closed: {100 * s['gap_closed_fraction']:.0f} %", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
