"""The report's figures, drawn with matplotlib and embedded as SVG text (no files, no network at
view time): a swimmer plot like the paper's Fig. 2 and Kaplan-Meier curves.

Categories are coloured by the order the response pack gives them (its `rank` output, best
first) when it declares one, else by name: no category is named here. SVG output is made
deterministic (fixed hash salt, no date) so that the same trail gives the same report.
"""
from __future__ import annotations

import io
import re
from typing import Any

MARKERS = {"hsct": ("^", "#1f4e79", "allo-HSCT"), "dli": ("D", "#7b3294", "DLI"),
           "relapse": ("X", "#c0392b", "relapse (course)"), "death": ("s", "#000000", "death")}


def _mpl() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.hashsalt": "adjudicator", "svg.fonttype": "none", "font.size": 9,
                                "font.family": "sans-serif", "axes.spines.top": False,
                                "axes.spines.right": False})
    import matplotlib.pyplot as plt
    return plt


def to_svg(fig: Any) -> str:
    """The figure as an inline <svg> element (XML prolog and DOCTYPE dropped)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    _mpl().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def palette(categories: list[str]) -> dict[str, str]:
    """Category -> colour, categories given best first (green .. red through the viridis map)."""
    plt = _mpl()
    cmap = plt.get_cmap("viridis_r")
    n = max(len(categories) - 1, 1)
    return {c: _hex(cmap(0.08 + 0.84 * i / n)) for i, c in enumerate(categories)}


def _hex(rgba: tuple) -> str:
    return "#" + "".join(f"{round(255 * v):02x}" for v in rgba[:3])


def swimmer(bars: list[dict[str, Any]], order: list[str], title: str) -> str:
    """One bar per subject from day 1 to the last follow-up (months); each marrow a dot coloured by
    its category in force; transplant, DLI, relapse and death marked; an arrow when alive.

    bars: {subject, end, alive, marrows: [(months, category)], events: [(months, kind)]}."""
    plt = _mpl()
    colours = palette(order)
    h = max(3.0, 0.16 * len(bars) + 1.2)
    fig, ax = plt.subplots(figsize=(9.5, h))
    for y, b in enumerate(bars):
        ax.barh(y, b["end"], left=0, height=0.55, color="#d9d9d9", edgecolor="none", zorder=1)
        if b["alive"]:
            ax.annotate("", xy=(b["end"] + 0.9, y), xytext=(b["end"], y),
                        arrowprops={"arrowstyle": "->", "color": "#7f7f7f", "lw": 0.8}, zorder=2)
        for m, cat in b["marrows"]:
            ax.scatter(m, y, s=24, color=colours.get(cat, "#999999"), edgecolors="#333333", linewidths=0.3, zorder=3)
        for m, kind in b["events"]:
            mk, col, _ = MARKERS[kind]
            ax.scatter(m, y, s=20 if kind != "death" else 14, marker=mk, color=col, zorder=4)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([b["subject"] for b in bars], fontsize=5)
    ax.set_ylim(-0.8, len(bars) - 0.2)
    ax.invert_yaxis()
    ax.set_xlabel("months from day 1")
    ax.set_xlim(left=0)
    ax.set_title(title, loc="left")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[c], label=c) for c in order]
    handles += [plt.Line2D([], [], marker=mk, ls="", color=col, label=lab) for mk, col, lab in MARKERS.values()]
    handles.append(plt.Line2D([], [], marker=r"$\rightarrow$", ls="", color="#7f7f7f", label="alive at last contact"))
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=True, ncol=2)
    return to_svg(fig)


def km(estimates: list[dict[str, Any]], title: str) -> str:
    """Kaplan-Meier curves with 95 % bands and censoring ticks, one panel per endpoint."""
    plt = _mpl()
    shown = [e for e in estimates if "curve" in e]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(3.4 * max(len(shown), 1), 3.2), squeeze=False)
    for ax, e in zip(axes[0], shown):
        c = e["curve"]
        ax.step(c["t"], c["s"], where="post", color="#1f4e79", lw=1.3)
        ax.fill_between(c["t"], c["lo"], c["hi"], step="post", color="#1f4e79", alpha=0.15, lw=0)
        cens = [(m, _s_at(c, m)) for m in c["censored"]]
        if cens:
            ax.scatter([m for m, _ in cens], [s for _, s in cens], marker="|", s=25, color="#1f4e79", lw=0.8)
        med = e.get("median_months")
        ax.axhline(0.5, color="#bbbbbb", lw=0.6, ls="--")
        ax.axvline(12, color="#bbbbbb", lw=0.6, ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.set_xlabel("months")
        ax.set_title(f"{e['label']}\nn={e['n']}, events={e['events']}, median "
                     f"{'NR' if med is None else f'{med:.1f}'} mo, 1-year {e['one_year_pct']:.1f} %",
                     fontsize=8, loc="left")
    axes[0][0].set_ylabel("probability")
    fig.suptitle(title, x=0.01, ha="left", fontsize=9)
    fig.tight_layout()
    return to_svg(fig)


def _s_at(c: dict[str, Any], m: float) -> float:
    s = 1.0
    for t, v in zip(c["t"], c["s"]):
        if t > m:
            break
        s = v
    return s


def strip_ids(svg: str, prefix: str) -> str:
    """Prefix the ids (and their references) of one SVG so that several can share a page."""
    return re.sub(r'(id="|url\(#|href="#)', lambda m: m.group(1) + prefix, svg)
