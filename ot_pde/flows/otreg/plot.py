"""Standard figure of an ``otreg_flow`` result: loss terms, the map, the model density."""
from __future__ import annotations

import numpy as np


def plot(result, png_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary()
    hist = result.history()
    fields = result.field_names()
    panels = 2 + ("log_density" in fields)
    fig, axes = plt.subplots(1, panels, figsize=(3.9 * panels, 3.6))
    ax = axes[0]
    for name in ("transport_term", "nll_term", "hjb_term"):
        if name in hist and len(hist[name]):
            ax.plot(hist["iteration"], hist[name], lw=0.6, label=name)
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_xlabel("iteration")
    ax.legend(fontsize=7)
    ax.set_title(f"nll_test {summary.get('nll_test', np.nan):.3f}, transport cost "
                 f"{summary.get('transport_cost', np.nan):.3f}\nOT bound "
                 f"{summary.get('ot_bound', np.nan):.3f}, paired gap "
                 f"{summary.get('paired_gap', np.nan):.4f}", fontsize=8)
    x, z = result.particles("test_data"), result.particles("test_latent")
    ax = axes[1]
    k = min(300, x.shape[0])
    for i in range(k):
        ax.plot([x[i, 0], z[i, 0]], [x[i, 1], z[i, 1]], lw=0.3, color="0.6")
    ax.scatter(x[:k, 0], x[:k, 1], s=2, label="data x")
    ax.scatter(z[:k, 0], z[:k, 1], s=2, label="T(x)")
    ax.legend(fontsize=7)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("the map T (first 2 coords)", fontsize=9)
    if "log_density" in fields:
        grid = result.grid()
        mesh = axes[2].pcolormesh(grid["x"], grid["y"], np.exp(result.field("log_density")).T,
                                  shading="auto")
        fig.colorbar(mesh, ax=axes[2])
        axes[2].set_aspect("equal")
        axes[2].set_title("model density p(x)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
