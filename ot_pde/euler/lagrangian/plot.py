"""Standard figure of an ``euler_lagrangian`` result: particles at t = 0 and t = T, errors."""
from __future__ import annotations

import numpy as np


def _colours(x0: np.ndarray) -> np.ndarray:
    """One colour per particle from its initial position (red ~ x, blue ~ y)."""
    lo, hi = x0.min(axis=0), x0.max(axis=0)
    s = (x0 - lo) / np.where(hi > lo, hi - lo, 1.0)
    return np.column_stack([s[:, 0], 0.35 + 0.0 * s[:, 0], s[:, 1]])


def plot(result, png_path) -> None:
    """Particles coloured by initial position at t = 0, at t = T, the exact flow at T, and the
    history of the RMS error and of the energy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x0 = result.particles("x0")
    x = result.particles("x")
    exact = result.particles("x_exact")
    hist = result.history()
    summary = result.summary()
    colours = _colours(x0)
    size = max(0.5, min(20.0, 6000.0 / len(x0)))
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.3))
    t_end = summary.get("time", float("nan"))
    for ax, pts, title in ((axes[0], x0, "t = 0"),
                           (axes[1], x, f"computed, t = {t_end:g}"),
                           (axes[2], exact, f"exact flow, t = {t_end:g}")):
        ax.scatter(pts[:, 0], pts[:, 1], c=colours, s=size, linewidths=0)
        ax.plot([0, 1, 1, 0, 0], [0, 0, 1, 1, 0], "k-", lw=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_title(title)
    fig.suptitle(f"N = {len(x0)}, eps = {summary.get('epsilon', float('nan')):.3g}, "
                 f"RMS error {summary.get('rms_error', float('nan')):.4f}")
    ax = axes[3]
    t = hist.get("time", np.array([]))
    if "rms_error" in hist:
        ax.plot(t, hist["rms_error"], "C0-", label="RMS error")
    ax.set_xlabel("t")
    ax.set_ylabel("RMS distance to the exact flow")
    ax2 = ax.twinx()
    if "energy_drift" in hist:
        ax2.plot(t, hist["energy_drift"], "C1--", label="energy drift (relative)")
    ax2.set_ylabel("relative energy drift")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
