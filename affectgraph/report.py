"""The HTML report: one self-contained file a user opens to see what was found and why.

:func:`write_report` writes the verdict (or the abstention and its reason), the timeline of the
face, voice and text tracks with the probabilities under it (inline SVG), the verified rationale
with every citation a link to its row in the evidence tables, the steps the verifier rejected
(marked "not verified", never presented as fact), the retrieved exemplars, and what was skipped
or failed. No scripts, no external styles or fonts, no network: the file can be mailed.

Size stays bounded for long recordings: face records are shown per track and second (wider
windows past :data:`FACE_ROWS` rows), the plot draws at most a few hundred shapes per track, and
the exemplar table keeps the cited exemplars plus the :data:`EXEMPLAR_ROWS` most similar others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from affectgraph import __version__
from affectgraph.analysis import Analysis
from affectgraph.errors import InputError
from affectgraph.evidence import (
    Evidence,
    FaceEvidence,
    TranscriptEvidence,
    VoiceEvidence,
)
from affectgraph.labels import LABELS
from affectgraph.plots import COLOURS, shade, svg, timeline_figure
from affectgraph.summary import describe_valence_arousal, split_steps, unverified_reason
from affectgraph.tracks import Stretch, face_runs, short_ids, window_for
from affectgraph.verdict import Exemplar, Verdict

FACE_ROWS = 2000
"""The most rows of the face table; longer recordings get windows wider than a second."""
EXEMPLAR_ROWS = 30
_BRACKET = re.compile(r"\[([^\]]+)\]")
_CITE_SPLIT = re.compile(r"[,;\s]+")
_UNSAFE = re.compile(r"[^\w:./-]")


def write_report(analysis: Analysis, path: str | Path) -> Path:
    """Write the HTML report of ``analysis`` to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    if not out.parent.is_dir():
        raise InputError(f"cannot write the report to {out}: the folder {out.parent} does not "
                         "exist (create it or choose another path)")
    out.write_text(render_html(analysis), encoding="utf-8")
    return out


def render_html(analysis: Analysis) -> str:
    """The report as one HTML document (see :func:`write_report`)."""
    anchors = Anchors(analysis)
    name = Path(analysis.media.path).name
    body = [
        _header(analysis),
        _verdict(analysis.verdict),
        _modalities(analysis),
        _timeline(analysis, anchors),
        _rationale(analysis.verdict, anchors),
        _evidence(analysis, anchors),
        _exemplars(analysis, anchors),
        f'<footer>affectgraph {escape(__version__)} · schema {escape(analysis.schema_version)}'
        " · the full evidence is in the JSON output (<code>--json</code>)</footer>",
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(name)} · affectgraph report</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


# -- citations ---------------------------------------------------------------------------------

def anchor_id(kind: str, name: str) -> str:
    """An HTML id for a record (``kind`` ``ev``) or an exemplar (``ex``): safe, readable."""
    return f"{kind}-{_UNSAFE.sub('_', name)}"


class Anchors:
    """Where each citable id is shown: the anchor of its evidence row or exemplar row.

    Face records share rows (one per track and second), so several ids lead to one anchor; a
    cited run ``face:4-9`` leads to the row of its first record.
    """

    def __init__(self, analysis: Analysis) -> None:
        faces = analysis.of("face")
        n_tracks = len({f.track_id for f in faces if f.decided}) or 1  # type: ignore[union-attr]
        self.face_window = window_for(analysis.media.duration * n_tracks, FACE_ROWS)
        self.rows: dict[str, str] = {}
        for record in analysis.evidence:
            if not isinstance(record, FaceEvidence) or not record.decided:
                self.rows[record.id] = anchor_id("ev", record.id)
        for run in face_runs(faces, self.face_window):  # type: ignore[arg-type]
            for evidence_id in run.ids:
                self.rows[evidence_id] = anchor_id("ev", run.ids[0])
        self.exemplars = {e.citation: anchor_id("ex", e.id) for e in analysis.exemplars}

    def target(self, cite: str) -> str | None:
        """The anchor a citation leads to, or ``None`` when nothing in the report has that id."""
        if cite in self.exemplars:
            return self.exemplars[cite]
        match = re.match(r"^([a-z]+):(\d+)-(\d+)$", cite)
        return self.rows.get(f"{match[1]}:{match[2]}" if match else cite)

    def link(self, cite: str) -> str:
        """A citation as a link to its row; an unknown id is shown as such, not linked."""
        target = self.target(cite)
        if target is None:
            return f'<span class="cite missing" title="no such evidence">{escape(cite)}</span>'
        return f'<a class="cite" href="#{escape(target)}">{escape(cite)}</a>'


def linked_claim(claim: str, anchors: Anchors) -> str:
    """The claim, escaped, with the ids inside its ``[brackets]`` turned into links."""
    out, start = [], 0
    for match in _BRACKET.finditer(claim):
        out.append(escape(claim[start:match.start()]))
        cites = [c for c in _CITE_SPLIT.split(match[1]) if c]
        if cites and all(":" in c for c in cites):
            out.append("[" + ", ".join(anchors.link(c) for c in cites) + "]")
        else:
            out.append(escape(match[0]))
        start = match.end()
    return "".join(out) + escape(claim[start:])


# -- sections ----------------------------------------------------------------------------------

def _header(analysis: Analysis) -> str:
    info = analysis.media
    streams = []
    if info.has_video:
        fps = f" at {info.fps:.3g} fps" if info.fps else ""
        streams.append(f"video {info.video_codec or ''} {info.width}×{info.height}{fps}")
    if info.has_audio:
        rate = f", {info.audio_sample_rate} Hz" if info.audio_sample_rate else ""
        streams.append(f"audio {info.audio_codec or ''} {info.audio_channels} ch{rate}")
    facts = [info.kind, clock(info.duration) if info.duration else "still",
             *streams, f"{info.size_bytes / 1e6:.1f} MB"]
    spent = sum(analysis.seconds.values())
    if spent:
        facts.append(f"analysed in {spent:.1f} s of compute")
    return (f"<header><h1>{escape(Path(info.path).name)}</h1>"
            f'<p class="path">{escape(info.path)}</p>'
            f'<p class="facts">{" · ".join(escape(f) for f in facts)}</p></header>')


def _verdict(verdict: Verdict | None) -> str:
    if verdict is None:
        return ('<section class="verdict none"><h2>Verdict</h2><p class="big">No verdict</p>'
                "<p>No aggregator ran on this analysis: below is the evidence only.</p></section>")
    if verdict.abstained:
        head = ('<p class="big">No single emotion <span class="tag">abstained</span></p>'
                f'<p class="why"><b>Why:</b> {escape(verdict.abstention or "no reason given")}</p>')
    else:
        head = (f'<p class="big">{_swatch(verdict.label)}{escape(verdict.label or "")}'  # type: ignore[arg-type]
                f' <span class="conf">confidence {verdict.confidence:.2f}</span></p>')
    parts = [head, '<div class="cols">',
             f"<div><h3>Distribution</h3>{_bars(_sorted(verdict.distribution), COLOURS)}</div>",
             f"<div><h3>Valence and arousal</h3>{_circumplex(verdict.valence, verdict.arousal)}"]
    if verdict.modality_weights:
        weights = sorted(verdict.modality_weights.items(), key=lambda kv: -kv[1])
        parts.append(f"<h3>Modality weights used</h3>{_bars(weights, {})}")
    parts.append(f"</div></div>{_grounding(verdict)}")
    if verdict.note:
        parts.append(f'<p class="note">{escape(verdict.note)}</p>')
    parts.append(f'<p class="muted">aggregator: {escape(verdict.aggregator)}</p>')
    return f'<section class="verdict"><h2>Verdict</h2>{"".join(parts)}</section>'


def _grounding(verdict: Verdict) -> str:
    verified, unverified = split_steps(verdict)
    total = len(verified) + len(unverified)
    if not total:
        return '<p class="grounding">No reasoning steps were given.</p>'
    score = f" (grounding {verdict.grounding:.2f})" if verdict.grounding is not None else ""
    text = f"{len(verified)} of {total} reasoning steps verified against the evidence{score}."
    if unverified:
        text += f" {len(unverified)} could not be verified: listed apart below, not as fact."
    return f'<p class="grounding">{escape(text)}</p>'


def _modalities(analysis: Analysis) -> str:
    items = []
    for modality, unit in (("face", "record"), ("voice", "speech turn"),
                           ("text", "transcript segment")):
        records = analysis.of(modality)  # type: ignore[arg-type]
        if records:
            undecided = sum(not r.decided for r in records)
            plural = "s" if len(records) != 1 else ""
            items.append(f"<li><b>{modality}</b>: {len(records)} {unit}{plural}"
                         + (f", {undecided} without an estimate" if undecided else "") + "</li>")
    items += [f'<li class="skip"><b>{escape(n)}</b>: skipped: {escape(why)}</li>'
              for n, why in analysis.skipped.items()]
    items += [f'<li class="fail"><b>{escape(n)}</b>: failed: {escape(why)}</li>'
              for n, why in analysis.failures.items()]
    return f'<section><h2>What was analysed</h2><ul class="mods">{"".join(items)}</ul></section>'


def _timeline(analysis: Analysis, anchors: Anchors) -> str:
    links: dict[str, tuple[str, str]] = {}

    def href(stretch: Stretch) -> str | None:
        target = next(filter(None, (anchors.target(i) for i in stretch.ids)), None)
        if target is None:
            return None
        token = f"#link-{len(links)}"
        links[token] = (f"#{target}", stretch_title(stretch))
        return token

    fig = timeline_figure(analysis, href)
    if fig is None:
        return ('<section><h2>Timeline</h2><p class="muted">Nothing to draw over time '
                "(a still image, or no evidence).</p></section>")
    return ('<section><h2>Timeline</h2><figure>' + svg(fig, "timeline", links)
            + "<figcaption>Each bar is a stretch of evidence coloured by its most probable "
            "emotion; paler means less sure. Hover a bar for its values, click it to jump to "
            "its evidence. Below: the probability of every emotion over time, per modality."
            "</figcaption></figure></section>")


def stretch_title(stretch: Stretch) -> str:
    """A bar's tooltip: when, what and which evidence."""
    what = f"{stretch.label} {stretch.probability:.2f}" if stretch.label else (stretch.note or "")
    return f"{stretch.start:.2f}-{stretch.end:.2f} s: {what} [{short_ids(stretch.ids)}]"


def _rationale(verdict: Verdict | None, anchors: Anchors) -> str:
    if verdict is None:
        return ""
    verified, unverified = split_steps(verdict)
    parts = ["<section><h2>Why: the verified reasoning</h2>"]
    if verified:
        parts.append('<ol class="steps">')
        for step in verified:
            parts.append(f'<li class="step"><p class="claim">{linked_claim(step.claim, anchors)}'
                         f"</p>{_cites(step.cites, anchors)}"
                         f'<p class="check" title="{escape(step.check or "")}">✓ verified'
                         "</p></li>")
        parts.append("</ol>")
    else:
        parts.append('<p class="muted">No step of the reasoning could be verified.</p>')
    if unverified:
        parts.append('<h3 class="rejected-head">Not verified: claims the evidence does not '
                     'back up (not facts)</h3><ul class="rejected">')
        for step in unverified:
            reason = unverified_reason(step)
            parts.append(f'<li class="step rejected"><span class="badge">not verified</span> '
                         f'<span class="claim">{linked_claim(step.claim, anchors)}</span>'
                         f"{_cites(step.cites, anchors)}"
                         f'<p class="check">✗ {escape(reason)}</p></li>')
        parts.append("</ul>")
    return "".join(parts) + "</section>"


def _cites(cites: Sequence[str], anchors: Anchors) -> str:
    if not cites:
        return '<p class="cites muted">cites nothing</p>'
    return f'<p class="cites">cites {" ".join(anchors.link(c) for c in cites)}</p>'


def _exemplars(analysis: Analysis, anchors: Anchors) -> str:
    if not analysis.exemplars:
        return ""
    shown = shown_exemplars(analysis)
    rows = [Row(anchor_id("ex", e.id), [escape(e.id), _label(e.label), f"{e.similarity:.2f}",
                                        anchors.link(e.evidence_id), escape(e.library),
                                        escape(e.speaker or ""), escape(e.text or "")])
            for e in shown]
    more = len(analysis.exemplars) - len(shown)
    note = f'<p class="muted">{more} more exemplars are in the JSON output.</p>' if more else ""
    head = ("exemplar", "label", "similarity", "retrieved for", "library", "speaker", "text")
    return ('<section><h2>Retrieved exemplars</h2><p class="muted">Labelled clips most '
            "similar to the evidence: the cited ones first, then the nearest.</p>"
            + _table(head, rows, scroll=True) + note + "</section>")


def shown_exemplars(analysis: Analysis) -> list[Exemplar]:
    """The exemplars the report lists: every cited one, then the most similar others."""
    verdict = analysis.verdict
    steps = [*verdict.rationale, *verdict.rejected] if verdict else []
    cited = {c for s in steps for c in s.cites} | {
        c for s in steps for m in _BRACKET.finditer(s.claim) for c in _CITE_SPLIT.split(m[1])}
    keep = [e for e in analysis.exemplars if e.citation in cited]
    rest = sorted((e for e in analysis.exemplars if e.citation not in cited),
                  key=lambda e: -e.similarity)
    return keep + rest[:EXEMPLAR_ROWS]


def _evidence(analysis: Analysis, anchors: Anchors) -> str:
    parts = ["<section><h2>Evidence</h2>"]
    for modality, table in (("face", _face_table), ("voice", _voice_table),
                            ("text", _text_table)):
        records = analysis.of(modality)  # type: ignore[arg-type]
        if records:
            parts.append(table(records, anchors))
    return "".join(parts) + "</section>"


def _face_table(records: list[Evidence], anchors: Anchors) -> str:
    faces = [r for r in records if isinstance(r, FaceEvidence)]
    rows = [(run.start, Row(anchor_id("ev", run.ids[0]), [
        f"{run.start:.1f}-{run.end:.1f}", str(run.track), str(run.frames),
        f"{_label(run.label)} {run.votes}/{len(run.records)}, p={run.mean_p:.2f}",
        escape(run.ids_text)])) for run in face_runs(faces, anchors.face_window)]
    rows += [(r.span.start, Row(anchor_id("ev", r.id), [
        f"{r.span.start:.1f}-{r.span.end:.1f}", "", str(r.frames), escape(r.reason or ""),
        escape(r.id)], "undecided")) for r in faces if not r.decided]
    window = anchors.face_window
    per = "second" if window == 1 else f"{window} seconds"
    head = ("time (s)", "track", "frames", "expression (votes, mean p)", "ids")
    return (f"<h3>Face, per track and {per}</h3>"
            + _table(head, [row for _, row in sorted(rows, key=lambda r: r[0])], scroll=True))


def _voice_table(records: list[Evidence], anchors: Anchors) -> str:
    rows = []
    for r in records:
        assert isinstance(r, VoiceEvidence)
        p = r.prosody
        values = ["-"] * 5 if p is None else [
            f"{p.pitch_mean_hz:.0f} Hz" if p.pitch_mean_hz else "-",
            f"{p.pitch_range_st:.1f} st" if p.pitch_range_st is not None else "-",
            f"{p.loudness:.2f} sone", f"{p.speaking_rate:.1f}/s", f"{p.pause_ratio:.0%}"]
        rows.append(_record_row(r, [_speaker(r), *values], r.reason))
    head = ("id", "time (s)", "speaker", "pitch", "pitch range", "loudness", "rate", "pauses",
            "emotion")
    return "<h3>Voice, per speech turn</h3>" + _table(head, rows, scroll=True)


def _text_table(records: list[Evidence], anchors: Anchors) -> str:
    rows = []
    for r in records:
        assert isinstance(r, TranscriptEvidence)
        source = f"asr {r.asr_confidence:.2f}" if r.asr_confidence is not None else r.source
        rows.append(_record_row(r, [_speaker(r), escape(r.text) or "-", source],
                                r.reason if not r.distribution else None))
    head = ("id", "time (s)", "speaker", "text", "source", "emotion")
    return "<h3>Words, per transcript segment</h3>" + _table(head, rows, scroll=True)


def _record_row(r: Evidence, cells: list[str], reason: str | None) -> Row:
    emotion = _dist_cell(r.distribution) if r.distribution else ""
    if reason:
        emotion = f'{emotion} <span class="muted">{escape(reason)}</span>'.strip()
    return Row(anchor_id("ev", r.id),
               [escape(r.id), f"{r.span.start:.2f}-{r.span.end:.2f}", *cells, emotion or "-"],
               "" if r.decided else "undecided")


def _speaker(r: VoiceEvidence | TranscriptEvidence) -> str:
    name = getattr(r, "speaker", None) or (f"ch{r.channel}" if r.channel is not None else "")
    return escape(name)


# -- small pieces ------------------------------------------------------------------------------

def clock(seconds: float) -> str:
    """``83.4`` -> ``1:23.4``; under a minute, plain seconds."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


def _sorted(distribution: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(((k, distribution.get(k, 0.0)) for k in LABELS), key=lambda kv: -kv[1])


def _swatch(label: str) -> str:
    return f'<i class="sw" style="background:{COLOURS.get(label, "#999")}"></i>'


def _label(label: str) -> str:
    return f'<span class="lab">{_swatch(label)}{escape(label)}</span>'


def _dist_cell(distribution: Mapping[str, float], n: int = 2) -> str:
    best = _sorted(distribution)[:n]
    return ", ".join(f'<span class="lab" style="background:{shade(k, p)}">{escape(k)} {p:.2f}'
                     "</span>" for k, p in best)


def _bars(items: Iterable[tuple[str, float]], colours: Mapping[str, str]) -> str:
    rows = [f'<div class="bar"><span>{escape(name)}</span><span class="track"><span '
            f'style="width:{max(0.0, min(1.0, v)) * 100:.1f}%;background:'
            f'{colours.get(name, "#5f6b7a")}"></span></span><span>{v:.2f}</span></div>'
            for name, v in items]
    return f'<div class="bars">{"".join(rows)}</div>'


def _circumplex(valence: float, arousal: float) -> str:
    """Valence and arousal as numbers with words and a dot on a small circumplex (inline SVG)."""
    x, y = 50 + 40 * valence, 50 - 40 * arousal
    words = describe_valence_arousal(valence, arousal)
    return ('<div class="va"><svg viewBox="0 0 100 100" width="110" height="110" role="img">'
            f"<title>{escape(words)}</title>"
            '<circle cx="50" cy="50" r="40" fill="none" stroke="#ccc"/>'
            '<line x1="8" y1="50" x2="92" y2="50" stroke="#ccc"/>'
            '<line x1="50" y1="8" x2="50" y2="92" stroke="#ccc"/>'
            '<text x="93" y="47" font-size="7" text-anchor="end">+V</text>'
            '<text x="53" y="13" font-size="7">+A</text>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="#333"/></svg>'
            f"<p>{escape(words)}</p></div>")


@dataclass(frozen=True)
class Row:
    """A table row: its anchor, its cells (HTML) and a CSS class."""

    anchor: str
    cells: list[str]
    cls: str = ""

    def html(self, keep: Sequence[int]) -> str:
        cls = f' class="{self.cls}"' if self.cls else ""
        cells = "".join(f"<td>{self.cells[i]}</td>" for i in keep)
        return f'<tr id="{escape(self.anchor)}"{cls}>{cells}</tr>'


def _table(head: Sequence[str], rows: Sequence[Row], *, scroll: bool = False) -> str:
    """A table without the columns that are empty in every row; long ones scroll in a box."""
    keep = [i for i in range(len(head)) if any(r.cells[i] for r in rows)]
    cls = ' class="scroll"' if scroll and len(rows) > 25 else ""
    header = "".join(f"<th>{escape(head[i])}</th>" for i in keep)
    body = "".join(row.html(keep) for row in rows)
    return f"<div{cls}><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>"


_CSS = """
:root{--fg:#1d2329;--muted:#68737d;--line:#e3e6e8;--bad:#b3261e;--good:#1e7d32}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;color:var(--fg);background:#fafbfc}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid
var(--line);padding-bottom:4px}h3{font-size:15px;margin:14px 0 6px}
.path{color:var(--muted);margin:2px 0;font-size:13px;word-break:break-all}.facts{margin:4px 0}
.big{font-size:28px;font-weight:600;margin:6px 0}.conf{font-size:16px;font-weight:400;
color:var(--muted)}.tag{font-size:14px;font-weight:600;background:#fff3cd;padding:2px 8px;
border-radius:10px;vertical-align:middle}.why{font-size:16px}
.cols{display:flex;gap:40px;flex-wrap:wrap}.cols>div{min-width:300px;flex:1}
.bars{display:grid;gap:3px}.bar{display:grid;grid-template-columns:80px 1fr 44px;gap:8px;
align-items:center;font-size:13px}.bar .track{background:#f0f2f4;height:12px;border-radius:2px;
overflow:hidden}.bar .track span{display:block;height:100%}
.va{display:flex;gap:12px;align-items:center}.va p{margin:0;font-size:13px}
.grounding{font-weight:600}.note{background:#fff8e1;padding:6px 10px}
.muted{color:var(--muted);font-size:13px}.mods{padding-left:20px;margin:4px 0}
.mods .skip{color:var(--muted)}.mods .fail{color:var(--bad)}
figure{margin:0}figure svg{display:block;height:auto}
figcaption{color:var(--muted);font-size:13px;margin-top:4px}
.steps{padding-left:24px}.step{margin:10px 0}.claim{margin:0;font-size:15px}
.cites{margin:2px 0;font-size:12px}.check{margin:2px 0;font-size:12px;color:var(--good)}
a.cite{font:12px ui-monospace,Menlo,Consolas,monospace;background:#eef3fb;padding:0 4px;
border-radius:3px;text-decoration:none;color:#1a4f9c}a.cite:hover{text-decoration:underline}
.cite.missing{font:12px ui-monospace,monospace;background:#fde8e7;padding:0 4px;
color:var(--bad)}
.rejected-head{color:var(--bad)}ul.rejected{list-style:none;padding:0}
li.rejected{border-left:4px solid var(--bad);background:#fdf3f2;padding:6px 10px;margin:8px 0}
li.rejected .claim{font-style:italic;color:#555}li.rejected .check{color:var(--bad)}
.badge{font-size:11px;font-weight:700;text-transform:uppercase;color:#fff;
background:var(--bad);padding:1px 6px;border-radius:3px;margin-right:6px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;
padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{position:sticky;top:0;background:#f5f7f8}
.scroll{max-height:480px;overflow:auto;border:1px solid var(--line)}
tr:target{background:#fff2a8;outline:2px solid #e0b400}td:first-child{white-space:nowrap}
tr.undecided td{color:var(--muted)}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;
vertical-align:-1px}.lab{white-space:nowrap;padding:0 3px;border-radius:3px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
"""
