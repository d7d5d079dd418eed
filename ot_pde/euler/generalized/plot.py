"""Standard figure of a ``generalized_geodesic`` result."""
from __future__ import annotations

import numpy as np


def plot(result, png_path) -> None:
    """1D: law of x(t) given x(0) ~ 0.2 over (t, x) with the exact envelope, the same at
    t = 1/2 against the exact arcsine law, pressure vs exact, marginal error history.
    2D: the law of x(1/2) for one start point, pressure at the middle time vs exact, history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .problem import exact_conditional_cdf

    grid = result.grid()
    summary = result.summary()
    hist = result.history()
    gamma = result.field("coupling")
    pressure = result.field("pressure")
    exact_p = result.field("pressure_exact") if "pressure_exact" in result.field_names() else None
    t, ti = grid["t"], grid["t_interior"]
    title = f"action = {summary.get('action', float('nan')):.5g}"
    if "action_exact_discrete" in summary:
        title += (f" (exact, K steps: {summary['action_exact_discrete']:.5g}; "
                  f"continuous {summary['action_exact']:.5g})")
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    mid = len(t) // 2
    if "y" not in grid:
        x = grid["x"]
        n = len(x)
        start = int(round(0.2 * n - 0.5))
        a = x[start]
        law = gamma[:, start, :]  # density of x(t) given x(0) = a (x(0) has density 1)
        ax = axes[0]
        ax.pcolormesh(t, x, law.T, shading="nearest", cmap="viridis", vmin=0,
                      vmax=law[1:-1].max() if len(t) > 2 else None)
        tt = np.linspace(0, 1, 200)
        c = a - 0.5
        centre = 0.5 + c * np.cos(np.pi * tt)
        half = np.sqrt(0.25 - c * c) * np.sin(np.pi * tt)
        for curve in (centre - half, centre + half):
            ax.plot(tt, curve, "w--", lw=1)
        ax.set_xlabel("t")
        ax.set_ylabel("x")
        ax.set_title(f"law of x(t) | x(0) = {a:.3f} (exact support dashed)", fontsize=9)
        ax = axes[1]
        faces = np.arange(n + 1) / n
        exact_density = np.diff(exact_conditional_cdf(a, faces, t[mid])) * n
        ax.step(x, law[mid], where="mid", label="computed")
        ax.plot(x, exact_density, "k--", lw=1, label="exact (arcsine)")
        ax.set_xlabel("x")
        ax.set_title(f"density of x({t[mid]:.2f}) | x(0) = {a:.3f}", fontsize=9)
        ax.legend(fontsize=8)
        ax = axes[2]
        for j in sorted({0, (len(ti) - 1) // 2, len(ti) - 1}):
            ax.plot(x, pressure[j], label=f"t = {ti[j]:.2f}")
        if exact_p is not None:
            ax.plot(x, exact_p[0], "k--", lw=1, label="exact")
        ax.set_xlabel("x")
        ax.set_title("pressure (zero mean)", fontsize=9)
        ax.legend(fontsize=8)
    else:
        x, y = grid["x"], grid["y"]
        n = len(x)
        i0 = (int(round(0.2 * n - 0.5)), int(round(0.3 * n - 0.5)))
        ax = axes[0]
        ax.pcolormesh(x, y, gamma[mid, i0[0], i0[1]].T, shading="nearest")
        ax.plot([x[i0[0]]], [y[i0[1]]], "wo")
        ax.set_aspect("equal")
        ax.set_title(f"law of x(t = {t[mid]:.2f}) from the white dot", fontsize=9)
        ax = axes[1]
        pm = pressure[(len(ti) - 1) // 2]
        mesh = ax.pcolormesh(x, y, pm.T, shading="nearest")
        fig.colorbar(mesh, ax=ax)
        ax.set_aspect("equal")
        ax.set_title(f"pressure at t = {ti[(len(ti) - 1) // 2]:.2f}", fontsize=9)
        ax = axes[2]
        ax.plot(x, pm[:, n // 2], label="computed, y = mid")
        if exact_p is not None:
            ax.plot(x, exact_p[0][:, n // 2], "k--", lw=1, label="exact")
        ax.set_xlabel("x")
        ax.legend(fontsize=8)
        ax.set_title("pressure cut", fontsize=9)
    ax = axes[3]
    if "marginal_error" in hist:
        ax.semilogy(hist["iteration"], hist["marginal_error"], lw=0.8, label="marginal error (L1)")
        ax.semilogy(hist["iteration"], hist["epsilon"], lw=0.8, label="epsilon")
        ax.set_xlabel("Sinkhorn sweep")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
