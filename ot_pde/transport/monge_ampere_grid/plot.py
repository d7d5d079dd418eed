"""Standard figure of a ``monge_ampere_grid`` result: the geodesic, the map, the residual."""
from __future__ import annotations


def plot(result, png_path) -> None:
    """McCann's interpolation at t = 0, 1/2, 1, the image of a grid under the map, and the
    residual history (Newton iterations or flow time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.grid()
    rho = result.field("rho")
    dims = result.field_dims("rho")
    space = list(dims[1:])
    t = grid["t"]
    picks = sorted({int(round(q * (len(t) - 1))) for q in (0, 0.5, 1)})
    summary = result.summary()
    hist = result.history()
    title = f"W2^2 = {summary.get('W2_squared', float('nan')):.6g}"
    if "W2_squared_exact" in summary:
        title += f" (exact {summary['W2_squared_exact']:.6g})"

    fig, axes = plt.subplots(1, len(picks) + 2, figsize=(3.3 * (len(picks) + 2), 3.5))
    x = grid[space[0]]
    for ax, j in zip(axes, picks):
        frame = rho[j]
        if len(space) == 1:
            ax.plot(x, frame)
        else:
            while frame.ndim > 2:  # 3D: the middle slice along the last axis
                frame = frame[..., frame.shape[-1] // 2]
            ax.pcolormesh(x, grid[space[1]], frame.T, shading="auto")
            ax.set_aspect("equal")
        ax.set_title(f"rho(t = {t[j]:.2f})")
    ax = axes[len(picks)]
    if len(space) == 1:
        ax.plot(x, result.field(f"map_{space[0]}"))
        ax.set_title("map grad u")
    else:
        mx, my = result.field(f"map_{space[0]}"), result.field(f"map_{space[1]}")
        while mx.ndim > 2:
            mx, my = mx[..., mx.shape[-1] // 2], my[..., my.shape[-1] // 2]
        step = max(1, mx.shape[0] // 24)
        for i in range(0, mx.shape[0], step):
            ax.plot(mx[i, :], my[i, :], "k-", lw=0.5)
        for j in range(0, mx.shape[1], step):
            ax.plot(mx[:, j], my[:, j], "k-", lw=0.5)
        ax.set_aspect("equal")
        ax.set_title("image of the grid under grad u")
    ax = axes[-1]
    if "residual" in hist:
        xs = hist["time"] if "time" in hist else hist["iteration"]
        ax.semilogy(xs, hist["residual"], "o-", ms=3)
        ax.set_xlabel("time" if "time" in hist else "Newton iteration")
        ax.set_ylabel("max |residual|")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
