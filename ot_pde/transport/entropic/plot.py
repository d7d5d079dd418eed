"""Standard figure of an ``entropic_potentials`` result: rho_t snapshots and the history."""
from __future__ import annotations


def plot(result, png_path) -> None:
    """rho_t at t = 0, 1/4, 1/2, 3/4, 1 (pushed samples over t = 1 when present) and the
    marginal-error history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.grid()
    rho = result.field("rho")
    space = list(result.field_dims("rho")[1:])
    t = grid["t"]
    picks = sorted({int(round(q * (len(t) - 1))) for q in (0, 0.25, 0.5, 0.75, 1)})
    summary = result.summary()
    title = (f"eps = {summary.get('epsilon', float('nan')):.3g}, entropic cost = "
             f"{summary.get('entropic_cost', float('nan')):.6g}")
    if "entropic_cost_exact" in summary:
        title += f" (exact {summary['entropic_cost_exact']:.6g})"
    x1 = result.particles("x1") if "particles/x1" in result.h5 else None
    if len(space) == 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for j in picks:
            axes[0].plot(grid[space[0]], rho[j], label=f"t = {t[j]:.2f}")
        axes[0].legend()
        axes[0].set_title(title, fontsize=9)
        ax_hist = axes[1]
    else:
        fig, axes = plt.subplots(1, len(picks) + 1, figsize=(3.2 * (len(picks) + 1), 3.4))
        for ax, j in zip(axes, picks):
            frame = rho[j]
            if frame.ndim == 3:
                frame = frame[..., frame.shape[-1] // 2]
            ax.pcolormesh(grid[space[0]], grid[space[1]], frame.T, shading="auto")
            ax.set_aspect("equal")
            ax.set_title(f"t = {t[j]:.2f}")
        if x1 is not None:
            axes[len(picks) - 1].plot(x1[:400, 0], x1[:400, 1], "w.", ms=1)
        fig.suptitle(title, fontsize=9)
        ax_hist = axes[-1]
    hist = result.history()
    if "marginal_error" in hist:
        ax_hist.semilogy(hist["iteration"], hist["marginal_error"])
    ax_hist.set_xlabel("Sinkhorn iteration")
    ax_hist.set_ylabel("marginal L1 error")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
