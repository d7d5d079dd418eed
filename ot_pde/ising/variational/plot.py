"""Standard figure of an ``ising_variational`` result."""
from __future__ import annotations

import numpy as np


def plot(result, png_path) -> None:
    """Training curve of the batch ln Z / N against the exact value; log-weight histogram.
    A beta scan gets :func:`plot_scan` instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "beta" in result.grid():
        plot_scan(result, png_path, plt)
        return
    s = result.summary()
    hist = result.history()
    exact = s.get("lnZ_per_site_exact", float("nan"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    if "lnZ_per_site_batch" in hist and len(hist["lnZ_per_site_batch"]):
        ax.plot(hist["iteration"], hist["lnZ_per_site_batch"], lw=0.5, alpha=0.7,
                label="batch variational estimate")
    ax.axhline(exact, color="k", lw=1, label="exact")
    v, ve = s.get("lnZ_per_site_variational"), s.get("lnZ_per_site_variational_stderr")
    i, ie = s.get("lnZ_per_site_importance"), s.get("lnZ_per_site_importance_stderr")
    x_end = hist["iteration"][-1] if "iteration" in hist and len(hist["iteration"]) else 0
    if v is not None:
        ax.errorbar([x_end], [v], [ve], fmt="o", color="C1", label="variational (final)")
        ax.errorbar([x_end], [i], [ie], fmt="s", color="C2", label="importance (final)")
    lo = exact - max(0.05 * abs(exact), 5 * (ve or 0))
    ax.set_ylim(lo, exact + 0.02 * abs(exact))
    ax.set_xlabel("iteration")
    ax.set_ylabel("ln Z / N")
    ax.set_title(f"L = {s.get('L')}, beta = {s.get('beta', float('nan')):.5f}: variational "
                 f"ln Z/N {s.get('relative_error_variational', float('nan')):.2%} below "
                 "exact\n(a lower bound: the gap is bias, not noise)", fontsize=9)
    ax.legend(fontsize=7)
    lw = result.particles("log_weights")
    axes[1].hist(lw - np.max(lw), bins=60)
    axes[1].set_xlabel("ln w - max ln w")
    ess = s.get("ess_fraction", float("nan"))
    warn = ("\nheavy-tailed: distrust the importance error bars" if ess < 0.01 else "")
    axes[1].set_title(f"importance log-weights; ESS fraction {ess:.3f}{warn}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def plot_scan(result, png_path, plt) -> None:
    """ln Z / N and E / N against beta: estimates with error bars on the exact curves."""
    from ...config import load_case_text
    from ..exact import brute_force, kaufman_energy_per_site, kaufman_lnZ

    betas = result.grid()["beta"]
    case = load_case_text(result.case_toml)
    L, J = case.get("lattice.L"), case.get("lattice.J")
    fine = np.linspace(0.9 * betas.min(), 1.1 * betas.max(), 200)
    if L <= 4:
        ref = [brute_force(L, b, J) for b in fine]
        ln_z = np.array([r["lnZ"] for r in ref]) / L ** 2
        energy = np.array([r["energy_per_site"] for r in ref])
    else:
        ln_z = np.array([kaufman_lnZ(L, b, J) for b in fine]) / L ** 2
        energy = np.array([kaufman_energy_per_site(L, b, J) for b in fine])
    f = {name: result.field(name) for name in result.field_names()}
    # Top: the curves. Bottom: estimate - exact with error bars (the curves hide the gaps).
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True,
                             gridspec_kw={"height_ratios": [2, 1]})
    ax = axes[0, 0]
    ax.plot(fine, ln_z, "k-", lw=1, label="exact")
    ax.errorbar(betas, f["lnZ_per_site_variational"], f["lnZ_per_site_variational_stderr"],
                fmt="o", label="variational (lower bound)")
    ax.errorbar(betas, f["lnZ_per_site_importance"], f["lnZ_per_site_importance_stderr"],
                fmt="s", mfc="none", label="importance")
    ax.set_ylabel("ln Z / N")
    ax.set_title(f"L = {L}", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    ax.axhline(0.0, color="k", lw=1)
    ax.errorbar(betas, f["lnZ_per_site_variational"] - f["lnZ_per_site_exact"],
                f["lnZ_per_site_variational_stderr"], fmt="o")
    ax.errorbar(betas, f["lnZ_per_site_importance"] - f["lnZ_per_site_exact"],
                f["lnZ_per_site_importance_stderr"], fmt="s", mfc="none")
    ax.set_ylabel("estimate - exact")
    ax.set_xlabel("beta")
    ax = axes[0, 1]
    ax.plot(fine, energy, "k-", lw=1, label="exact")
    ax.errorbar(betas, f["energy_per_site_importance"], f["energy_per_site_importance_stderr"],
                fmt="s", mfc="none", color="C1", label="importance")
    ax.set_ylabel("E / N")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    ax.axhline(0.0, color="k", lw=1)
    ax.errorbar(betas, f["energy_per_site_importance"] - f["energy_per_site_exact"],
                f["energy_per_site_importance_stderr"], fmt="s", mfc="none", color="C1")
    ax.set_ylabel("estimate - exact")
    ax.set_xlabel("beta")
    # say where an error bar cannot be trusted: more than 3 standard errors from exact
    z = np.abs(f["energy_per_site_importance"] - f["energy_per_site_exact"]) / np.where(
        f["energy_per_site_importance_stderr"] > 0, f["energy_per_site_importance_stderr"],
        np.nan)
    far = np.flatnonzero(np.nan_to_num(z) > 3)
    if far.size:
        ax.set_title(f"at beta >= {betas[far].min():.3g}: up to {np.nanmax(z):.0f} standard "
                     "errors from exact\n(heavy-tailed weights: the bars are too small)",
                     fontsize=8, color="C3")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
