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


#: the 2D layout, in inches: panel side, gaps, margins (fixed: a layout engine measured every
#: tick label of six axes twice, 3-5 s of a 5.4 s figure)
PANEL, GAP, LEFT, BOTTOM, TOP, RIGHT = 2.9, 0.3, 0.6, 0.5, 0.8, 0.15
COLORBAR, COLORBAR_ROOM, HISTORY_GAP, HISTORY = 0.12, 0.1, 1.35, 3.6


def _history(ax, hist) -> None:
    """Residuals and the W2^2 accuracy estimate against the iterations, on a log scale."""
    from matplotlib.ticker import LogFormatter

    it = hist.get("iteration", np.array([]))
    for name in ("primal_residual", "dual_residual", "accuracy_estimate"):
        if name in hist:
            ax.semilogy(it, hist[name], label=name.replace("_", " "))
    # 1e-05, 6e-04: plain text, no mathtext parser
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set_xlabel("iteration")
    ax.set_title("convergence", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)


def plot(result, png_path) -> None:
    """rho(t) at t = 0, 1/4, 1/2, 3/4, 1 on one colour scale, with the momentum (arrows, 2D)
    and the exact geodesic (dashed) where the case has one; the residuals and the W2^2
    estimate against the iterations.

    Drawn on a bare Agg figure (no pyplot), with a fixed layout and Unicode instead of
    mathtext: what costs time in a figure of small images is the machinery, not the
    pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = result.grid()
    rho = result.field("rho")
    space = list(result.field_dims("rho")[1:])
    t = grid["t"]
    picks = sorted({int(round(q * (len(t) - 1))) for q in (0, 0.25, 0.5, 0.75, 1)})
    hist = result.history()
    summary = result.summary()
    exact = _exact_rho(result)
    title = f"W\u2082\u00b2 = {summary.get('W2_squared', float('nan')):.6g}"
    if "W2_squared_exact" in summary:
        title += (f" (exact {summary['W2_squared_exact']:.6g}, relative error "
                  f"{summary.get('relative_error', float('nan')):.2g})")
    caption = ("dashed: exact geodesic" if exact is not None else
               "no closed-form geodesic for this case: nothing to overlay")

    if len(space) == 1:
        fig = Figure(figsize=(11, 4.2))
        axes = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.84, wspace=0.22)
        x = grid[space[0]]
        for j in picks:
            axes[0].plot(x, rho[j], label=f"t = {t[j]:.2f}")
            if exact is not None:
                axes[0].plot(x, exact[j], "--", color="k", lw=0.8)
        axes[0].set_xlabel(space[0])
        axes[0].set_ylabel("density \u03c1(t, x)")
        axes[0].legend(fontsize=8)
        axes[0].set_title(caption, fontsize=9)
        _history(axes[1], hist)
        fig.suptitle(title, fontsize=10)
    else:
        panels = len(picks)
        width = (LEFT + panels * PANEL + (panels - 1) * GAP + COLORBAR_ROOM + COLORBAR
                 + HISTORY_GAP + HISTORY + RIGHT)
        height = BOTTOM + PANEL + TOP
        fig = Figure(figsize=(width, height))

        def rect(left, w):  # inches -> figure fractions
            return [left / width, BOTTOM / height, w / width, PANEL / height]

        axes = [fig.add_axes(rect(LEFT + i * (PANEL + GAP), PANEL)) for i in range(panels)]
        right_of_panels = LEFT + panels * PANEL + (panels - 1) * GAP
        cax = fig.add_axes(rect(right_of_panels + COLORBAR_ROOM, COLORBAR))
        ax_hist = fig.add_axes(rect(right_of_panels + COLORBAR_ROOM + COLORBAR + HISTORY_GAP,
                                    HISTORY))
        frames = [rho[j] if rho.ndim == 3 else rho[j][..., rho.shape[-1] // 2] for j in picks]
        vmax = max(float(f.max()) for f in frames)
        x, y = grid[space[0]], grid[space[1]]
        # the cells' outer edges: x, y are the (uniform) cell centres
        extent = (1.5 * x[0] - 0.5 * x[1], 1.5 * x[-1] - 0.5 * x[-2],
                  1.5 * y[0] - 0.5 * y[1], 1.5 * y[-1] - 0.5 * y[-2])
        t_mid = grid.get("t_mid")
        has_m = t_mid is not None and {"m_x", "m_y"} <= set(result.field_names()) \
            and rho.ndim == 3
        step = max(1, len(x) // 12)
        if has_m:  # one scale for every panel: the largest arrow spans two arrow spacings
            m_x, m_y = result.field("m_x"), result.field("m_y")  # read once: gzip-compressed
            m_max = float(np.hypot(m_x, m_y).max()) or 1.0
            scale = m_max / (2 * step * (x[1] - x[0]))
        for i, (ax, j, frame) in enumerate(zip(axes, picks, frames)):
            image = ax.imshow(frame.T, origin="lower", extent=extent, vmin=0, vmax=vmax,
                              cmap="viridis", interpolation="nearest", aspect="equal")
            if exact is not None:
                ref = exact[j] if exact.ndim == 3 else exact[j][..., exact.shape[-1] // 2]
                ax.contour(x, y, ref.T, levels=vmax * np.array([0.25, 0.5, 0.75]),
                           colors="w", linestyles="--", linewidths=0.8)
            if has_m:  # the momentum at the nearest cell-centre time
                k = int(np.argmin(np.abs(t_mid - t[j])))
                ax.quiver(x[::step], y[::step], m_x[k][::step, ::step].T,
                          m_y[k][::step, ::step].T,
                          color="w", alpha=0.8, width=0.006, angles="xy",
                          scale_units="xy", scale=scale)
            ax.set_title(f"t = {t[j]:.2f}", fontsize=10)
            ax.set_xlabel(space[0])
            if i:  # one y axis for the row: every panel shows the same box
                ax.tick_params(labelleft=False)
        # 3D: the panels are the slice through the middle of the third axis
        axes[0].set_ylabel(space[1] if rho.ndim == 3 else
                           f"{space[1]}  (slice {space[2]} = middle of its range)")
        fig.colorbar(image, cax=cax, label="density \u03c1")
        arrows = "; arrows: momentum m at the nearest t_mid" if has_m else ""
        fig.suptitle(f"{title}\n{caption}{arrows}", fontsize=10)
        _history(ax_hist, hist)
    FigureCanvasAgg(fig)
    fig.savefig(png_path, dpi=110)
