"""Standard figure of an ``entropic_potentials`` result: rho_t snapshots and the history."""
from __future__ import annotations


def plot(result, png_path) -> None:
    """rho_t at t = 0, 1/4, 1/2, 3/4, 1 (pushed samples over t = 1 when present) and the
    marginal-error history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "fields/rho" not in result.h5:
        return plot_samples(result, png_path, plt)
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


def plot_samples(result, png_path, plt) -> None:
    """Neural potentials: like figure 2 of Finlay et al. (2020): the true log-density (when
    known), the flow's model log-density at t = 0, samples of the model (target samples pushed
    back by the flow), and the dual's history."""
    import numpy as np

    summary = result.summary()
    h5 = result.h5
    panels = [name for name in ("true_log_density", "model_log_density")
              if f"fields/{name}" in h5]
    fig, axes = plt.subplots(1, len(panels) + 2, figsize=(3.6 * (len(panels) + 2), 3.6))
    if panels:
        grid = result.grid()
        x, y = grid["x"], grid["y"]
        model = result.field("model_log_density")
        lo = float(np.nanmax(model)) - 12.0
        for ax, name in zip(axes, panels):
            frame = np.where(np.isfinite(result.field(name)), result.field(name), lo)
            ax.pcolormesh(x, y, np.clip(frame, lo, None).T, shading="auto")
            ax.set_aspect("equal")
            ax.set_title(name.replace("_", " "), fontsize=9)
    ax = axes[len(panels)]
    if "particles/x0" in h5:
        x0 = result.particles("x0")
        ax.plot(x0[:4000, 0], x0[:4000, 1], "k.", ms=1, alpha=0.5)
        if panels:
            ax.set_xlim(x[0], x[-1])
            ax.set_ylim(y[0], y[-1])
        ax.set_aspect("equal")
    ax.set_title("model samples (coordinates 0, 1)", fontsize=9)
    hist = result.history()
    axes[-1].plot(hist["iteration"], hist["dual"], lw=0.6)
    axes[-1].set_xlabel("iteration")
    axes[-1].set_ylabel("dual estimate (mini-batch)")
    title = f"eps = {summary.get('epsilon', float('nan')):.3g}"
    if "nll_test" in summary:
        title += (f", held-out NLL {summary['nll_test']:.3f} +- "
                  f"{summary['nll_test_se']:.3f}")
    if "nll_test_exact" in summary:
        title += f" (entropy {summary['nll_test_exact']:.3f})"
    if "entropic_cost" in summary:
        title += f", entropic cost {summary['entropic_cost']:.4g}"
    if "entropic_cost_exact" in summary:
        title += f" (exact {summary['entropic_cost_exact']:.4g})"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
