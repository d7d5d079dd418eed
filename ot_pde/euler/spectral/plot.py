"""Standard figure of an ``euler_spectral`` result: final vorticity and the diagnostics."""
from __future__ import annotations

import numpy as np


def plot(result, png_path) -> None:
    """Vorticity at t_final (markers on top, wrapped into the torus) and the history of the
    relative drifts of energy, enstrophy, int omega^4 and of the flow map's ``|det F - 1|``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.grid()
    omega = result.field("omega")
    hist = result.history()
    summary = result.summary()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11.5, 4.8))
    x, y = grid["x"], grid["y"]
    lim = float(np.abs(omega).max()) or 1.0
    mesh = ax0.pcolormesh(x, y, omega.T, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
    fig.colorbar(mesh, ax=ax0, label="vorticity")
    if "flow_map_x" in result.field_names():
        px = np.mod(result.field("flow_map_x"), 2 * np.pi).ravel()
        py = np.mod(result.field("flow_map_y"), 2 * np.pi).ravel()
        ax0.plot(px, py, "k.", ms=1.5, alpha=0.6)
    ax0.set_xlim(0, 2 * np.pi)
    ax0.set_ylim(0, 2 * np.pi)
    ax0.set_aspect("equal")
    ax0.set_xlabel("x")
    ax0.set_ylabel("y")
    ax0.set_title(f"omega at t = {summary.get('t_final', float('nan')):.4g} "
                  f"({summary.get('steps', 0)} RK4 steps)")
    t = hist.get("t", np.array([]))
    for name, label in (("energy_drift", "energy drift"), ("enstrophy_drift", "enstrophy drift"),
                        ("casimir_drift", "int omega^4 drift"),
                        ("jacobian_error", "max |det F - 1|"),
                        ("max_divergence", "max |div u|")):
        if name in hist and np.any(hist[name] != 0):
            ax1.semilogy(t, np.abs(hist[name]), label=label)
    ax1.set_xlabel("t")
    ax1.set_title("conservation and flow-map diagnostics")
    ax1.legend(fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
