"""Standard figure of a ``monge_ampere_flow`` result."""
from __future__ import annotations

import numpy as np


def plot(result, png_path) -> None:
    """Loss history, flow samples, the particle density and (2D) its finite-volume twin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary()
    hist = result.history()
    fields = result.field_names()
    panels = 2 + ("rho_particle" in fields) + ("rho" in fields)
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels, 3.6))

    ax = axes[0]
    if "loss" in hist and len(hist["loss"]):
        ax.plot(hist["iteration"], hist["loss"], lw=0.6)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
    elif "phi" in fields:  # a fixed potential: show it instead of a loss curve
        grid = result.grid()
        mesh = ax.pcolormesh(grid["x"], grid["y"], result.field("phi").T, shading="auto")
        fig.colorbar(mesh, ax=ax)
        ax.set_aspect("equal")
        ax.set_title("phi(x, T) (fixed potential)", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no training", ha="center", va="center", transform=ax.transAxes)
    title = ax.get_title() + "\n" if ax.get_title() else ""
    title += f"nll_test = {summary.get('nll_test', float('nan')):.4f}"
    if "entropy_exact" in summary:
        title += f"\n(entropy {summary['entropy_exact']:.4f})"
    ax.set_title(title, fontsize=9)

    samples = result.particles("samples")
    ax = axes[1]
    ax.scatter(samples[:, 0], samples[:, 1] if samples.shape[1] > 1 else np.zeros(len(samples)),
               s=1, alpha=0.4)
    ax.set_title("samples x_T" + ("" if samples.shape[1] <= 2 else " (first 2 coords)"),
                 fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")

    grid = result.grid()
    k = 2
    if "rho_particle" in fields:
        rho_p = result.field("rho_particle")
        mesh = axes[k].pcolormesh(grid["x"], grid["y"], rho_p.T, shading="auto")
        fig.colorbar(mesh, ax=axes[k])
        axes[k].set_aspect("equal")
        axes[k].set_title(f"exp(ln p_T), particles\nmass on grid "
                          f"{summary.get('particle_mass_on_grid', float('nan')):.6f}", fontsize=9)
        k += 1
    if "rho" in fields:
        diff = result.field("rho") - result.field("rho_particle")
        lim = float(np.abs(diff).max()) or 1.0
        mesh = axes[k].pcolormesh(grid["x"], grid["y"], diff.T, shading="auto", cmap="RdBu_r",
                                  vmin=-lim, vmax=lim)
        fig.colorbar(mesh, ax=axes[k])
        axes[k].set_aspect("equal")
        axes[k].set_title(f"finite volume - particles\nL1 = "
                          f"{summary.get('fv_particle_L1', float('nan')):.2e}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
