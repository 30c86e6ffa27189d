"""Plots of an analysis over time: the timeline of every track and the probabilities under it.

Figures are built with matplotlib's object API (no ``pyplot``: no global state, no GUI
backend), from :mod:`affectgraph.tracks`, so their size does not grow with the length of the
recording. :func:`svg` turns a figure into inline SVG for the HTML report; ``fig.savefig`` writes
a PNG. Every emotion keeps one colour everywhere (:data:`COLOURS`).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from affectgraph.analysis import Analysis
from affectgraph.labels import LABELS
from affectgraph.tracks import Stretch, Track, grid, grid_edges, tracks

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

COLOURS: dict[str, str] = {
    "neutral": "#9aa0a6",
    "happy": "#f2b701",
    "sad": "#3b6fb6",
    "angry": "#d62728",
    "fearful": "#8e44ad",
    "disgusted": "#2e8b57",
    "surprised": "#ff7f0e",
}
"""One colour per canonical label, used by every plot and the HTML report."""

NO_ESTIMATE = "#d9d9d9"
_MIN_ALPHA = 0.18
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

Href = Callable[[Stretch], str | None]


def alpha(probability: float) -> float:
    """Opacity of a stretch: its top label's probability, floored so that faint ones still show."""
    return float(min(1.0, max(_MIN_ALPHA, probability)))


def timeline_figure(
    analysis: Analysis, href: Href | None = None, *, probabilities: bool = True
) -> Figure | None:
    """The timeline: one row per track (face, voice, text, verdict), x in seconds, each stretch
    coloured by its top label with opacity by its probability; under it (``probabilities``)
    one panel per modality with the stacked probabilities of the 7 labels, on the same time axis.

    ``href`` gives each stretch a link target in SVG. ``None`` when there is nothing over time
    to draw (a still image, no evidence).
    """
    rows = tracks(analysis)
    extent = _extent(analysis, rows) if rows else 0.0
    if extent <= 0:
        return None
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    modalities = [m for m in ("face", "voice", "text") if any(r.modality == m for r in rows)]
    panels = modalities if probabilities else []
    heights = [0.5 * len(rows) + 0.2, *[0.75] * len(panels)]
    with rc_context(_RC):
        fig = Figure(figsize=(11, sum(heights) + 1.1), layout="constrained")
        axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False,
                            height_ratios=heights)[:, 0]
        _draw_tracks(axes[0], rows, extent, href)
        for ax, modality in zip(axes[1:], panels, strict=True):
            _draw_probabilities(ax, [s for r in rows if r.modality == modality
                                     for s in r.stretches], extent, modality)
        if panels:
            axes[1].set_title("probability of each emotion over time (blank: no evidence)",
                              loc="left", fontsize=8, color="#444444")
        _time_axis(axes[-1], extent)
        _legend(fig)
    return fig


def _draw_tracks(ax, rows: Sequence[Track], extent: float, href: Href | None) -> None:
    for y, row in enumerate(reversed(rows)):
        _draw_row(ax, row, y, extent, href)
    ax.set_yticks(range(len(rows)), [r.name for r in reversed(rows)])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)


def _draw_probabilities(ax, stretches: Sequence[Stretch], extent: float, name: str) -> None:
    edges = grid_edges(extent)
    x = np.repeat(edges, 2)[1:-1]  # step outline: each bin's value held over its width
    values = np.repeat(grid(stretches, edges), 2, axis=0)
    # Rasterised: 7 stepped bands per panel would cost hundreds of kB as vector paths.
    ax.stackplot(x, values.T, colors=[COLOURS[label] for label in LABELS], linewidth=0,
                 rasterized=True)
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 1])
    ax.set_ylabel(name, rotation=0, ha="right", va="center")


def svg(fig: Figure, salt: str, links: Mapping[str, tuple[str, str]] | None = None) -> str:
    """The figure as an inline ``<svg>`` element that scales to its container.

    ``salt`` keeps the element ids of two figures in one page apart; metadata (which would name
    URLs) and the XML prologue are left out. ``links`` maps the placeholder hrefs the figure was
    drawn with to the real in-page href and a tooltip, so each stretch links to its evidence
    and names it on hover.
    """
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context({**_RC, "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", dpi=SVG_RASTER_DPI,
                    metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    text = head + ' width="100%" role="img"' + text[head_end:]
    return _ANCHOR.sub(lambda m: _link(m[1], links or {}), text)


SVG_RASTER_DPI = 150
_ANCHOR = re.compile(r'<a xlink:href="([^"]*)" target="_blank">')


def _link(token: str, links: Mapping[str, tuple[str, str]]) -> str:
    href, title = links.get(token, (token, ""))
    tip = f"<title>{html.escape(title)}</title>" if title else ""
    return f'<a xlink:href="{html.escape(href)}">{tip}'


def _extent(analysis: Analysis, rows: Sequence[Track]) -> float:
    ends = [s.end for r in rows for s in r.stretches]
    return max([analysis.media.duration, *ends]) if ends else analysis.media.duration


def _draw_row(ax, row: Track, y: int, extent: float, href: Href | None) -> None:
    thin = extent * 0.002  # a point in time (a still, a word) still shows as a sliver
    seam = extent * 0.0008  # neighbours overlap a hair so no white seam shows between them
    bars, colours, links, gaps = [], [], [], []
    for s in row.stretches:
        width = max(s.end - s.start, thin)
        if s.label is None:
            gaps.append((s.start, width))
            if row.modality != "face" and s.note and width >= 0.06 * extent:
                ax.text((s.start + s.end) / 2, y, s.note, ha="center", va="center", fontsize=8,
                        color="#555555", clip_on=True)
            continue
        bars.append((s.start, width + seam))
        colours.append(shade(s.label, s.probability))
        links.append(href(s) if href else None)
        if row.modality != "face" and width >= 0.06 * extent:
            _bar_text(ax, s, y, colours[-1])
    if gaps:
        ax.broken_barh(gaps, (y - 0.32, 0.64), facecolors="white", edgecolors=NO_ESTIMATE,
                       hatch="////", linewidth=0.5)
    if bars:
        collection = ax.broken_barh(bars, (y - 0.36, 0.72), facecolors=colours, linewidth=0)
        if any(links):
            collection.set_urls(links)


def shade(label: str, probability: float) -> str:
    """The label's colour at opacity :func:`alpha`, blended onto white (opaque, so that
    overlapping neighbours do not darken), as ``#rrggbb``."""
    from matplotlib.colors import to_hex, to_rgb

    a = alpha(probability)
    r, g, b = (a * c + (1 - a) for c in to_rgb(COLOURS[label]))
    return to_hex((r, g, b))


def _bar_text(ax, s: Stretch, y: int, colour: str) -> None:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    ax.text((s.start + s.end) / 2, y, f"{s.label} {s.probability:.2f}", ha="center",
            va="center", fontsize=8, color="black" if luminance > 0.55 else "white", clip_on=True)


def _time_axis(ax, extent: float) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    ax.set_xlim(0, extent)
    if extent > 120:  # ticks on whole minutes (or 30 s), 6 to 15 of them
        step = next((s for s in _CLOCK_STEPS if extent / s <= 15), _CLOCK_STEPS[-1])
        ax.xaxis.set_major_locator(MultipleLocator(step))
        ax.xaxis.set_major_formatter(FuncFormatter(_clock))
        ax.set_xlabel("time (min:s)")
    else:
        ax.set_xlabel("time (s)")


_CLOCK_STEPS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def _clock(seconds: float, _position: int = 0) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _legend(fig: Figure) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=COLOURS[label], label=label) for label in LABELS]
    handles.append(Patch(facecolor="white", edgecolor=NO_ESTIMATE, hatch="////",
                         label="no estimate"))
    fig.legend(handles=handles, loc="outside upper left", ncols=len(handles), frameon=False,
               title="colour: most probable emotion; opacity: its probability",
               title_fontsize=8, alignment="left")
