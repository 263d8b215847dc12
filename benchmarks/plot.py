"""The benchmark plot: the ratios each section measured side by side, as grouped bars (matplotlib Agg).

Owns: ``plot(sections, path, title)``. Two panels: on the left, modelplex as a fraction of its floor
(raw aiohttp, the pass-through gateway, both providers up; 1.0 is the floor); on the right, how many
times LiteLLM (the Router, the proxy, its import and start-up, its memory) on a log scale. Bars are
grouped and coloured by section and carry their values.

Must not touch: the measurements or the report text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import Section

COLORS = {"library": "#1f77b4", "gateway": "#ff7f0e", "selection": "#2ca02c", "startup": "#d62728",
          "memory": "#9467bd", "sinks": "#8c564b", "failure": "#e377c2"}


def plot(sections: Sequence[Section], path: Path, title: str) -> Path | None:
    """Write the PNG (panels without ratios say "not measured"); ``None`` when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = {"floor": [], "litellm": []}  # type: dict[str, list[tuple[str, str, float]]]
    for sec in sections:
        for group, label, value in sec.ratios:
            if group in panels and value == value and value > 0:
                panels[group].append((sec.key, label.replace("\n", " "), value))
    height = max(3.0, 0.42 * max(len(v) for v in panels.values()) + 1.6)
    fig, axes = plt.subplots(1, 2, figsize=(15, height))
    specs = (("floor", "modelplex as a fraction of its floor (1.0 = the floor)", False),
             ("litellm", "modelplex vs LiteLLM (times better; log scale)", True))
    for ax, (group, heading, log) in zip(axes, specs, strict=True):
        rows = panels[group]
        ax.set_title(heading, fontsize=11)
        if not rows:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        ys = list(range(len(rows)))[::-1]
        colors = [COLORS.get(key, "#7f7f7f") for key, _, _ in rows]
        ax.barh(ys, [v for _, _, v in rows], color=colors)
        ax.set_yticks(ys, [lbl for _, lbl, _ in rows], fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        top = max(v for _, _, v in rows)
        for y, (_, _, v) in zip(ys, rows, strict=True):
            ax.text(v * (1.03 if log else 1.0) + (0 if log else top * 0.01), y, f"{v:.2f}x" if v < 10 else f"{v:.0f}x",
                    va="center", fontsize=8)
        if not log:
            ax.set_xlim(0, max(1.15, top * 1.2))
        else:
            ax.set_xlim(0.5, top * 3)
        ax.grid(axis="x", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for k, c in COLORS.items()
               if any(key == k for rows in panels.values() for key, _, _ in rows)]
    names = [k for k in COLORS if any(key == k for rows in panels.values() for key, _, _ in rows)]
    if names:
        fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
