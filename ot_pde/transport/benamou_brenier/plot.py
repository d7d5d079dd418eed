"""Standard figure of a ``benamou_brenier`` result: the geodesic, its momentum, the exact
geodesic where one is known, and the convergence history."""
from __future__ import annotations

import numpy as np


def _exact_rho(result):
    """The exact rho(t) on the written grid (Bures, translation, 1D quantiles, products), or
    None where the case has no closed form (then the figure says so)."""
    from ...config import load_case_text
    from ...core.registry import get_kind
    from ...errors import InputError

    try:
        case = load_case_text(result.case_toml, source=str(result.path))
        reference = get_kind(result.problem).build(case).reference()
    except InputError:  # e.g. a density file that moved since the run
        return None
    if reference is None or "rho" not in reference.fields:
        return None
    exact = reference.fields["rho"][0]
    return exact if exact.shape == result.h5["fields/rho"].shape else None


def plot(result, png_path) -> None:
    """rho(t) at t = 0, 1/4, 1/2, 3/4, 1 on one colour scale, with the momentum (arrows, 2D)
    and the exact geodesic (dashed) where the case has one; the residuals and the W2^2
    estimate against the iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.grid()
    rho = result.field("rho")
    space = list(result.field_dims("rho")[1:])
    t = grid["t"]
    picks = sorted({int(round(q * (len(t) - 1))) for q in (0, 0.25, 0.5, 0.75, 1)})
    hist = result.history()
    summary = result.summary()
    exact = _exact_rho(result)
    title = f"$W_2^2$ = {summary.get('W2_squared', float('nan')):.6g}"
    if "W2_squared_exact" in summary:
        title += (f" (exact {summary['W2_squared_exact']:.6g}, relative error "
                  f"{summary.get('relative_error', float('nan')):.2g})")
    caption = ("dashed: exact geodesic" if exact is not None else
               "no closed-form geodesic for this case: nothing to overlay")

    if len(space) == 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        x = grid[space[0]]
        for j in picks:
            line, = axes[0].plot(x, rho[j], label=f"t = {t[j]:.2f}")
            if exact is not None:
                axes[0].plot(x, exact[j], "--", color="k", lw=0.8)
        axes[0].set_xlabel(space[0])
        axes[0].set_ylabel(r"density $\rho(t, x)$")
        axes[0].legend(fontsize=8)
        axes[0].set_title(caption, fontsize=9)
        ax_hist = axes[1]
    else:
        fig, axes = plt.subplots(1, len(picks) + 1, figsize=(3.3 * (len(picks) + 1), 3.9),
                                 gridspec_kw={"width_ratios": [1] * len(picks) + [1.3]},
                                 layout="constrained")
        frames = [rho[j] if rho.ndim == 3 else rho[j][..., rho.shape[-1] // 2] for j in picks]
        vmax = max(float(f.max()) for f in frames)
        x, y = grid[space[0]], grid[space[1]]
        t_mid = grid.get("t_mid")
        has_m = t_mid is not None and {"m_x", "m_y"} <= set(result.field_names()) \
            and rho.ndim == 3
        step = max(1, len(x) // 12)
        if has_m:  # one scale for every panel: the largest arrow spans two arrow spacings
            m_max = float(np.hypot(result.field("m_x"), result.field("m_y")).max()) or 1.0
            scale = m_max / (2 * step * (x[1] - x[0]))
        for ax, j, frame in zip(axes, picks, frames):
            mesh = ax.pcolormesh(x, y, frame.T, shading="auto", vmin=0, vmax=vmax,
                                 cmap="viridis")
            if exact is not None:
                ref = exact[j] if exact.ndim == 3 else exact[j][..., exact.shape[-1] // 2]
                ax.contour(x, y, ref.T, levels=vmax * np.array([0.25, 0.5, 0.75]),
                           colors="w", linestyles="--", linewidths=0.8)
            if has_m:  # the momentum at the nearest cell-centre time
                k = int(np.argmin(np.abs(t_mid - t[j])))
                mx, my = result.field("m_x")[k], result.field("m_y")[k]
                ax.quiver(x[::step], y[::step], mx[::step, ::step].T, my[::step, ::step].T,
                          color="w", alpha=0.8, width=0.006, angles="xy",
                          scale_units="xy", scale=scale)
            ax.set_aspect("equal")
            ax.set_title(f"t = {t[j]:.2f}", fontsize=10)
            ax.set_xlabel(space[0])
        # 3D: the panels are the slice through the middle of the third axis
        axes[0].set_ylabel(space[1] if rho.ndim == 3 else
                           f"{space[1]}  (slice {space[2]} = middle of its range)")
        fig.colorbar(mesh, ax=list(axes[:len(picks)]), label=r"density $\rho$",
                     fraction=0.02, pad=0.01)
        arrows = "; arrows: momentum m at the nearest t_mid" if has_m else ""
        fig.suptitle(f"{title}\n{caption}{arrows}", fontsize=10)
        ax_hist = axes[-1]
    it = hist.get("iteration", np.array([]))
    for name in ("primal_residual", "dual_residual", "accuracy_estimate"):
        if name in hist:
            ax_hist.semilogy(it, hist[name], label=name.replace("_", " "))
    ax_hist.set_xlabel("iteration")
    ax_hist.set_title("convergence", fontsize=10)
    ax_hist.legend(fontsize=8)
    ax_hist.grid(True, which="both", alpha=0.3)
    if len(space) == 1:
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
    fig.savefig(png_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
