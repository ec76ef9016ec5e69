"""make bench's PNGs: matplotlib without a display, and one way to finish a figure."""
from __future__ import annotations

from pathlib import Path


def figure(*grid: int, figsize: tuple[float, float]):
    """A figure and its axes (plt.subplots(*grid)), drawn with the Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*grid, figsize=figsize)


def finish(axes, fig, path: Path, *, xlabel: str, ylabels: list[str], title: str) -> None:
    """Label, grid and legend every axis, title the figure, write it to path (PNG) and free it."""
    import matplotlib.pyplot as plt

    for ax, ylabel in zip(axes, ylabels):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
