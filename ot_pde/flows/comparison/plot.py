"""Standard figure of a ``flow_comparison`` result."""
from __future__ import annotations

import numpy as np

from ..discrete_ot import rate

_ARROWS = 400


def _quiver(ax, a, b, title, color):
    k = min(_ARROWS, a.shape[0])
    a2, b2 = a[:k, :2], b[:k, :2]
    ax.quiver(a2[:, 0], a2[:, 1], b2[:, 0] - a2[:, 0], b2[:, 1] - a2[:, 1], angles="xy",
              scale_units="xy", scale=1.0, width=0.003, color=color, alpha=0.6)
    ax.scatter(b2[:, 0], b2[:, 1], s=2, c="k", alpha=0.5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title, fontsize=9)


def plot(result, png_path) -> None:
    """Displacement of the flow beside the OT matching's, the OT extrapolation, (2D) densities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.summary()
    fields = result.field_names()
    grid = result.grid()
    panels = 3 + ("flow_density" in fields) + ("bb_density_mid" in fields)
    fig, axes = plt.subplots(1, panels, figsize=(3.9 * panels, 3.9))
    z, x = result.particles("latent"), result.particles("flow_image")
    d = z.shape[1]
    coords = "" if d <= 2 else " (first 2 of %d coords)" % d
    _quiver(axes[0], z, x, f"flow: z -> T(z){coords}\nE|T(z)-z|^2 = "
            f"{s['transport_cost']:.4f}", "tab:blue")
    _quiver(axes[1], result.particles("ot_latent"), result.particles("ot_image"),
            f"exact discrete OT matching{coords}\nW2^2 (extrapolated) = "
            f"{s['ot_lower_bound']:.4f} +- {s['ot_lower_bound_stderr']:.4f}", "tab:red")
    ax = axes[2]
    n = grid["n_ot"]
    r = rate(n, d)
    ax.errorbar(r, result.field("ot_plain"), yerr=result.field("ot_plain_stderr"), fmt="o",
                ms=3, label="plain discrete OT")
    ax.errorbar(r, result.field("ot_estimate"), yerr=result.field("ot_estimate_stderr"),
                fmt="s", ms=3, label="estimator")
    rr = np.linspace(0.0, r.max() * 1.05, 50)
    slope = s.get("ot_extrapolation_slope", 0.0)
    ax.plot(rr, s["ot_lower_bound"] + slope * rr, "k--", lw=0.8, label="extrapolation")
    ax.errorbar([0.0], [s["ot_lower_bound"]], yerr=[s["ot_lower_bound_stderr"]], fmt="k*",
                ms=8)
    ax.axhline(s["transport_cost"], color="tab:blue", lw=1, label="flow's cost")
    ax.set_xlabel("r(n) (bias model; 0 = infinite samples)")
    ax.set_ylabel("W2^2")
    ax.legend(fontsize=7)
    ax.set_title(f"gap = {s['optimality_gap']:.4f} +- {s['optimality_gap_stderr']:.4f}\n"
                 f"mean log-likelihood {s['mean_log_likelihood']:.3f}", fontsize=9)
    k = 3
    for name, title in (("flow_density", f"flow density, mass on grid "
                                         f"{s.get('flow_mass_on_grid', float('nan')):.5f}"),
                        ("bb_density_mid", f"Benamou-Brenier rho(1/2)\nW2^2 = "
                                           f"{s.get('bb_W2_squared', float('nan')):.4f}")):
        if name in fields:
            mesh = axes[k].pcolormesh(grid["x"], grid["y"], result.field(name).T,
                                      shading="auto")
            fig.colorbar(mesh, ax=axes[k])
            axes[k].set_aspect("equal")
            axes[k].set_title(title, fontsize=9)
            k += 1
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
