"""Draw a run's ratios and issue 5's targets as a PNG (matplotlib, imported only when asked).

Usage::

    python -m benchmarks.chart results.json chart.png   # redraw from a --json file

``python -m benchmarks.run --png FILE`` draws the same chart at the end of a run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["require_matplotlib", "write_png"]

#: Bar colour per comparison.
SERIES = {
    "websockets": ("vs websockets 17 (with its C speed-up)", "#3b73b9"),
    "wsproto": ("vs wsproto (pure Python)", "#f28e2b"),
    "copy": ("share of a plain 1 MiB copy's speed", "#8c8c8c"),
}
XMIN, XMAX = 0.1, 60.0


def require_matplotlib() -> Any:
    """Import matplotlib with a file-only backend, or exit with what to install."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "--png needs matplotlib, which is not installed: pip install matplotlib "
            "(the benchmark numbers need nothing else)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ratio(row: Mapping[str, Any], other: str) -> float | None:
    rates = row["rates"]
    mine, theirs = rates.get("wsmachine"), rates.get(other)
    if not mine or not theirs:
        return None
    return float(mine / theirs if row["higher_is_better"] else theirs / mine)


def _bars(row: Mapping[str, Any]) -> list[tuple[str, float]]:
    bars = [(lib, r) for lib in ("websockets", "wsproto") if (r := _ratio(row, lib)) is not None]
    bars += [
        ("copy", float(c["measured"]))
        for c in row["checks"]
        if c["kind"] == "fraction" and c["measured"] is not None
    ]
    return bars


def _label(row: Mapping[str, Any]) -> str:
    title = str(row["title"]).strip().replace(" (tracemalloc)", "")
    for check in row["checks"]:
        if check["kind"] == "at_most" and check["measured"] is not None:
            title += f": {check['measured']:,.0f} B (≤ {check['bound']:g} B)"
    mark = {True: "  ✓", False: "  ✗", None: ""}[row.get("met")]
    return title + mark


def _footer(env: Mapping[str, Any]) -> str:
    versions = env.get("versions", {})
    load = env.get("load_average_start")
    load_end = env.get("load_average_end")
    return (
        f"{env.get('cpu')} ({env.get('usable_cpus')} CPUs), {env.get('python')}, "
        f"wsmachine {versions.get('wsmachine')}, websockets {versions.get('websockets')}, "
        f"wsproto {versions.get('wsproto')}, h11 {versions.get('h11')}\n"
        f"{env.get('mode')} run, {env.get('repetitions')} interleaved rounds, medians; "
        f"{env.get('date')}; load average {load[0] if load else '?'} at start, "
        f"{load_end[0] if load_end else '?'} at end"
    )


def write_png(payload: Mapping[str, Any], path: str) -> None:
    """One horizontal bar group per row: wsmachine's ratios, with the targets as black ticks."""
    plt = require_matplotlib()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows: Sequence[Mapping[str, Any]] = [
        r for r in payload["results"] if r["libraries"] != ["reference"] and _bars(r)
    ]
    height_in = 0.62 * len(rows) + 2.4
    fig, ax = plt.subplots(figsize=(11.5, height_in), dpi=110)
    for index, row in enumerate(rows):
        bars = _bars(row)
        height = 0.8 / len(bars)
        for j, (key, value) in enumerate(bars):
            y = index + (j - (len(bars) - 1) / 2) * height
            ax.barh(y, value - XMIN, height * 0.92, left=XMIN, color=SERIES[key][1], zorder=2)
            right, text = value, f"{value:.0%}" if key == "copy" else f"{value:.2f}×"
            for check in row["checks"]:
                against = "copy" if check["kind"] == "fraction" else check["against"]
                if check["kind"] != "at_most" and against == key:
                    right = max(right, check["bound"])
                    text = check["shown"].replace("x", "×")
                    ax.plot(
                        [check["bound"]] * 2,
                        [y - height / 2, y + height / 2],
                        color="black",
                        linewidth=2.2,
                        zorder=4,
                    )
            ax.text(min(right, XMAX) * 1.05, y, text, va="center", fontsize=7.5, zorder=3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_label(r) for r in rows], fontsize=8.5)
    for tick, row in zip(ax.get_yticklabels(), rows, strict=True):
        met = row.get("met")
        tick.set_color("black" if met is None else "#1a7f37" if met else "#b42318")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(XMIN, XMAX)
    ticks = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50]
    ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.axvline(1.0, color="#555555", linestyle="--", linewidth=0.8, zorder=1)
    ax.grid(axis="x", which="major", color="#dddddd", zorder=0)
    ax.set_xlabel(
        "wsmachine ÷ peer, medians (log scale; > 1: wsmachine is better — for memory, "
        "peer bytes ÷ wsmachine bytes)",
        fontsize=8.5,
    )
    ax.set_title(
        "wsmachine against its Python peers, one run (✓ / ✗: issue 5's target met or not)",
        fontsize=10.5,
    )
    handles: list[Any] = [Patch(color=color, label=label) for label, color in SERIES.values()]
    handles.append(Line2D([], [], color="black", linewidth=2.2, label="target"))
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.42 / height_in),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    fig.text(0.01, 0.005, _footer(payload["environment"]), fontsize=7, color="#444444", va="bottom")
    fig.tight_layout(rect=(0, 0.75 / height_in, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Redraw a chart from a ``--json`` file."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m benchmarks.chart RESULTS.json CHART.png", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        payload = json.load(handle)
    write_png(payload, args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
