"""Standard figure of a ``benamou_brenier`` result: the geodesic and the residual history."""
from __future__ import annotations

import numpy as np


def plot(result, png_path) -> None:
    """Snapshots of rho(t) at t = 0, 1/4, 1/2, 3/4, 1 and the residual history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.grid()
    rho = result.field("rho")
    dims = result.field_dims("rho")
    space = [d for d in dims[1:]]
    t = grid["t"]
    picks = sorted({int(round(q * (len(t) - 1))) for q in (0, 0.25, 0.5, 0.75, 1)})
    hist = result.history()
    summary = result.summary()
    title = f"W2^2 = {summary.get('W2_squared', float('nan')):.6g}"
    if "W2_squared_exact" in summary:
        title += f" (exact {summary['W2_squared_exact']:.6g})"

    if len(space) == 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        x = grid[space[0]]
        for j in picks:
            axes[0].plot(x, rho[j], label=f"t = {t[j]:.2f}")
        axes[0].set_xlabel(space[0])
        axes[0].set_ylabel("rho")
        axes[0].legend()
        axes[0].set_title(title)
        ax_hist = axes[1]
    else:
        fig, axes = plt.subplots(1, len(picks) + 1, figsize=(3.2 * (len(picks) + 1), 3.4))
        for ax, j in zip(axes, picks):
            frame = rho[j]
            if frame.ndim == 3:  # 3D: the middle slice along the last axis
                frame = frame[..., frame.shape[-1] // 2]
            x, y = grid[space[0]], grid[space[1]]
            ax.pcolormesh(x, y, frame.T, shading="auto")
            ax.set_aspect("equal")
            ax.set_title(f"t = {t[j]:.2f}")
        fig.suptitle(title)
        ax_hist = axes[-1]
    it = hist.get("iteration", np.array([]))
    for name in ("primal_residual", "dual_residual"):
        if name in hist:
            ax_hist.semilogy(it, hist[name], label=name.replace("_", " "))
    ax_hist.set_xlabel("iteration")
    ax_hist.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
