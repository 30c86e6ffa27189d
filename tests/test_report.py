"""Outputs a user reads: the HTML report, the terminal summary and the ``--stream`` lines.

The evidence is real (the analysis graph streamed on a RAVDESS clip, up to the retrieved
exemplars); the verdict is written by hand from that evidence, so these tests pin how a verdict
is shown, not what the aggregator decides. A synthetic 30-minute analysis with 10k face records
checks that the report stays small.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from affectgraph.analysis import Analysis
from affectgraph.evidence import (
    FaceEvidence,
    ModelRef,
    Prosody,
    TimeSpan,
    TranscriptEvidence,
    Turn,
    VoiceEvidence,
    top,
)
from affectgraph.labels import LABELS
from affectgraph.media import MediaInfo
from affectgraph.report import render_html, write_report
from affectgraph.summary import follow, render, stream_lines
from affectgraph.tracks import face_runs, tracks
from affectgraph.verdict import Exemplar, RationaleStep, TimelineEntry, Verdict, expand_ids

# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streamed(ravdess_clip: Path) -> tuple[Analysis, list[dict]]:
    """The real clip streamed through the whole analysis graph: the Analysis of its final
    state (with the aggregator's verified verdict) and the update chunks seen on the way."""
    from affectgraph.api import Analyzer, to_analysis
    from affectgraph.graphs.context import AnalyzeOptions

    defaults = AnalyzeOptions()
    options = AnalyzeOptions(transcript=defaults.transcript.model_copy(
        update={"model": "whisper-tiny.en"}))
    analyzer = Analyzer(options)
    updates, state = [], None
    for mode, chunk in analyzer.graph.stream(analyzer.inputs(ravdess_clip),
                                             context=analyzer.context(),
                                             stream_mode=["updates", "values"]):
        if mode == "updates":
            updates.append(chunk)
        else:
            state = chunk
    assert state is not None
    return to_analysis(state), updates


@pytest.fixture(scope="module")
def evidence(streamed) -> Analysis:
    return streamed[0].model_copy(update={"verdict": None})


def _hand_verdict(a: Analysis) -> Verdict:
    """A verdict whose rationale cites real ids with values measured from them, one step the
    verifier rejected, and one that cites an id that does not exist."""
    faces = [f for f in a.of("face") if f.decided]
    face_label, _ = top({k: float(np.mean([f.distribution[k] for f in faces])) for k in LABELS})
    n_top = sum(f.label == face_label for f in faces)
    voice, text = a.of("voice")[0], a.of("text")[0]
    face_ids = f"face:{faces[0].id.split(':')[1]}-{faces[-1].id.split(':')[1]}"
    exemplar = a.exemplars[0].citation if a.exemplars else None
    steps = [
        RationaleStep(claim=f"The face shows {face_label} in {n_top} of {len(faces)} sampled "
                            f"frames [{face_ids}]", cites=[face_ids], grounded=True,
                      check="ids exist; times, emotions and numbers match the cited evidence"),
        RationaleStep(claim=f"The pitch range is {voice.prosody.pitch_range_st:.1f} semitones "
                            f"at {voice.span.start:.1f}-{voice.span.end:.1f} s [voice:0]",
                      cites=["voice:0"], grounded=True, check="ok"),
        RationaleStep(claim=f'The words "{text.text}" read as {text.label} [text:0]',
                      cites=["text:0", *([exemplar] if exemplar else [])], grounded=True,
                      check="ok"),
    ]
    rejected = [
        RationaleStep(claim="The voice sounds furious at 9.5 s [voice:0]", cites=["voice:0"],
                      grounded=False, check="time 9.5 s lies outside voice:0 (0.79-2.80 s)"),
        RationaleStep(claim="A second face frowns [face:999]", cites=["face:999"],
                      grounded=False, check="cites unknown evidence face:999"),
    ]
    dist = {k: (0.55 if k == face_label else 0.45 / 6) for k in LABELS}
    return Verdict(label=face_label, distribution=dist, confidence=0.55, valence=0.4,
                   arousal=0.2, modality_weights={"face": 0.6, "voice": 0.25, "text": 0.15},
                   timeline=[TimelineEntry(span=voice.span, label=face_label, distribution=dist,
                                           evidence=[face_ids, "voice:0", "text:0"])],
                   rationale=steps, rejected=rejected, grounding=0.6)


@pytest.fixture(scope="module")
def analysis(evidence: Analysis) -> Analysis:
    return evidence.model_copy(update={"verdict": _hand_verdict(evidence)})


@pytest.fixture(scope="module")
def html(analysis: Analysis) -> str:
    return render_html(analysis)


class _Page(HTMLParser):
    """Ids, links, rows and the text of selected elements of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (href, link text)
        self.rows: dict[str, str] = {}  # tr id -> its text
        self._row: str | None = None
        self._link: str | None = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "tr" and a.get("id"):
            self._row, self.rows[a["id"]] = a["id"], ""
        href = a.get("href") or a.get("xlink:href")
        if tag == "a" and href is not None:
            self._link, self._text = href, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            self.links.append((self._link, "".join(self._text)))
            self._link = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        if self._row:
            self.rows[self._row] += data + " "


# -- the HTML report ---------------------------------------------------------------------------

def test_report_is_one_self_contained_file(analysis: Analysis, tmp_path: Path) -> None:
    path = write_report(analysis, tmp_path / "out.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text and "<link" not in text and "@import" not in text
    inline = re.sub(r'\sxmlns(:\w+)?="[^"]*"|"data:image/png;base64,[^"]*"', "", text)
    assert not re.search(r"https?:|//[a-z]|ftp:|file:", inline), "an external URL"
    hrefs = re.findall(r'(?:href|src)="([^"]*)"', text)
    assert hrefs and all(h.startswith(("#", "data:image/png")) for h in hrefs)
    assert all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", text))


def test_report_shows_media_and_verdict(analysis: Analysis, html: str) -> None:
    v = analysis.verdict
    assert Path(analysis.media.path).name in html and "3.24 s" in html
    assert f"{v.label}" in html and "confidence 0.55" in html
    assert "valence +0.40" in html and "arousal +0.20" in html
    assert "3 of 5 reasoning steps verified" in html and "grounding 0.60" in html
    for modality in ("face", "voice", "text"):
        assert re.search(rf"<span>{modality}</span>.*?0\.\d\d", html)  # weight bars


def test_timeline_plot_links_each_bar_to_its_evidence(analysis: Analysis, html: str) -> None:
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    timeline = max(svgs, key=len)
    page = _Page(timeline)
    bars = [href for href, _ in page.links]
    rows = tracks(analysis)
    assert [r.name for r in rows] == ["face", "voice", "text", "verdict"]
    assert len(bars) == sum(len([s for s in r.stretches if s.label]) for r in rows)
    assert "<title>" in timeline and "[voice:0]" in timeline  # hover text names the evidence
    for label in LABELS:
        assert f">{label}<" in timeline  # the legend


def test_every_citation_links_to_the_row_showing_it(analysis: Analysis, html: str) -> None:
    page = _Page(html)
    assert all(href[1:] in page.ids for href, _ in page.links), "a link to a missing anchor"
    cites = {c for s in analysis.verdict.rationale for c in s.cites}
    linked = {text: href[1:] for href, text in page.links if text}
    for cite in cites:
        assert cite in linked, f"{cite} is not a link"
        target = linked[cite]
        if cite.startswith("exemplar:"):
            assert cite.removeprefix("exemplar:") in page.rows[target]
            continue
        first = analysis.get(expand_ids([cite])[0])
        start, end = map(float, re.findall(r"(\d+\.\d+)-(\d+\.\d+)", page.rows[target])[0])
        assert start - 0.01 <= first.span.start <= end + 0.01, f"{cite} leads to the wrong row"


def test_rejected_steps_are_marked_not_verified_and_never_linked_as_fact(
        analysis: Analysis, html: str) -> None:
    verified = html[html.index('<ol class="steps">'):html.index("</ol>")]
    rejected = html[html.index('<ul class="rejected">'):]
    rejected = rejected[:rejected.index("</ul>")]
    for step in analysis.verdict.rejected:
        claim_start = step.claim.split("[")[0].strip()
        assert claim_start not in verified
        assert claim_start in rejected and step.check in rejected
    assert rejected.count("not verified</span>") == 2
    assert 'class="cite missing"' in rejected and "face:999" in rejected
    assert 'href="#ev-face:999"' not in html


def test_face_runs_are_compressed_per_second(analysis: Analysis, html: str) -> None:
    page = _Page(html)
    face_rows = [i for i in page.rows if i.startswith("ev-face:")]
    seconds = {int(f.span.start) for f in analysis.of("face") if f.decided}
    assert len(face_rows) == len(seconds) < len(analysis.of("face"))


def test_abstention_and_missing_verdict(analysis: Analysis) -> None:
    v = analysis.verdict.model_copy(update={
        "label": None, "abstention": "the face and the voice disagree (happy vs disgusted)",
        "rationale": [], "timeline": [], "grounding": None})
    text = render_html(analysis.model_copy(update={"verdict": v}))
    assert "No single emotion" in text and "abstained" in text
    assert "the face and the voice disagree (happy vs disgusted)" in text
    assert "Why: the verified reasoning" in text and "No step of the reasoning" in text
    bare = render_html(analysis.model_copy(update={
        "verdict": None, "failures": {"voice": "opensmile crashed"},
        "skipped": {"transcript": "switched off"}}))
    assert "No verdict" in bare and "<svg" in bare
    assert "failed: opensmile crashed" in bare and "skipped: switched off" in bare


def test_unwritable_report_path_names_the_folder(analysis: Analysis, tmp_path: Path) -> None:
    from affectgraph.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        write_report(analysis, tmp_path / "nowhere" / "out.html")


def test_the_aggregators_own_verdict_renders_with_working_citations(streamed) -> None:
    analysis = streamed[0]
    assert analysis.verdict is not None and analysis.verdict.rationale
    page = _Page(render_html(analysis))
    assert all(href[1:] in page.ids for href, _ in page.links)
    linked = {text for _, text in page.links}
    assert {c for s in analysis.verdict.rationale for c in s.cites} <= linked
    assert "Verdict: " in _terminal(analysis)


# -- the terminal ------------------------------------------------------------------------------

def _terminal(analysis: Analysis) -> str:
    buffer = io.StringIO()
    render(analysis, Console(file=buffer, width=140, color_system=None))
    return buffer.getvalue()


def test_summary_prints_the_verdict_first(analysis: Analysis) -> None:
    out = _terminal(analysis)
    v = analysis.verdict
    assert out.index(f"Verdict: {v.label} (confidence 0.55)") < out.index("Face (per track")
    assert f"distribution: {v.label} 0.55" in out
    assert "weights: face 0.60, voice 0.25, text 0.15" in out
    assert "3 of 5 reasoning steps verified (grounding 0.60)" in out
    why, rejected = out.index("Why:"), out.index("Not verified (not facts):")
    for step in v.rationale:
        assert why < out.index(step.claim) < rejected  # brackets printed, not eaten as markup
    for step in v.rejected:
        line = next(x for x in out.splitlines() if step.claim in x)
        assert line.strip().startswith("✗") and step.check in line


def test_summary_of_an_abstention(analysis: Analysis) -> None:
    v = analysis.verdict.model_copy(update={"label": None, "abstention": "too little evidence"})
    out = _terminal(analysis.model_copy(update={"verdict": v}))
    assert "no single emotion (abstained): too little evidence" in out


def test_stream_lines_from_the_real_graph(streamed) -> None:
    analysis, updates = streamed
    lines = [line for update in updates for line in stream_lines(update)]
    assert lines[0].startswith("media ") and analysis.media.path in lines[0]
    faces = face_runs(analysis.of("face"))
    assert sum(" face track " in line for line in lines) == len(faces)
    assert any(line.startswith("voice:0 ") and "pitch" in line for line in lines)
    assert any(line.startswith("text:0 ") and analysis.of("text")[0].text in line
               for line in lines)
    if analysis.exemplars:
        assert sum(line.startswith("exemplars ") for line in lines) == 1
    verdicts = [line for line in lines if line.startswith("verdict ")]
    assert len(verdicts) == 2 and "unverified" in verdicts[0]  # aggregate, then verify
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == len(analysis.verdict.rationale) + len(analysis.verdict.rejected)


def test_stream_shows_steps_only_once_checked(analysis: Analysis) -> None:
    v = analysis.verdict
    unchecked = v.model_copy(update={"rationale": [s.model_copy(update={"grounded": None})
                                                   for s in [*v.rationale, *v.rejected]],
                                     "rejected": [], "grounding": None})
    lines = stream_lines({"aggregate": {"verdict": unchecked.model_dump(mode="json")}})
    assert lines == [f"verdict     {v.label} (confidence 0.55) (unverified; checking 5 reasoning "
                     "steps)"]
    lines = stream_lines({"verify": {"verdict": v}, "collect": None})
    assert lines[0] == f"verdict     {v.label} (confidence 0.55), grounding 0.60"
    assert [line.split()[1] for line in lines[1:]] == ["✓"] * 3 + ["✗"] * 2
    assert all("not verified:" in line for line in lines[-2:])


def test_follow_prints_updates_and_returns_the_last_state(analysis: Analysis) -> None:
    buffer = io.StringIO()
    chunks = [("values", {"path": "a"}), ("updates", {"voice": {"evidence": analysis.of("voice")}}),
              ("values", {"path": "b"}), ("updates", {"verify": {"verdict": analysis.verdict}})]
    state = follow(chunks, Console(file=buffer, width=200, color_system=None))
    assert state == {"path": "b"}
    assert "voice:0" in buffer.getvalue() and "✗ not verified" in buffer.getvalue()
    assert follow([{"voice": {"failures": {"voice": "boom"}}}], Console(file=io.StringIO())) is None


# -- a long recording --------------------------------------------------------------------------

def long_analysis(minutes: float = 30, faces: int = 10_000, seed: int = 0) -> Analysis:
    """A synthetic recording: ``faces`` face records (two tracks, runs without a face), a speech
    turn every ~4.5 s with its words, a verdict per turn and a cited rationale."""
    rng = np.random.default_rng(seed)
    duration = minutes * 60.0
    mood = rng.integers(0, len(LABELS), size=int(duration // 40) + 1)  # changes every ~40 s

    def dist(t: float) -> dict[str, float]:
        alpha = np.full(len(LABELS), 0.6)
        alpha[mood[int(t // 40)]] += 4.0
        p = rng.dirichlet(alpha)
        return dict(zip(LABELS, (p / p.sum()).tolist(), strict=True))

    model = ModelRef(name="synthetic", revision="0")
    step = duration / faces
    records: list = []
    for i in range(faces):
        t = i * step
        span = TimeSpan(start=t, end=t + step)
        if i % 997 == 0:
            records.append(FaceEvidence(id=f"face:{i}", span=span, specialist="face", model=model,
                                        reason="no face in the frame"))
        else:
            records.append(FaceEvidence(id=f"face:{i}", span=span, specialist="face", model=model,
                                        distribution=dist(t), frame_index=i, track_id=i % 3 // 2))
    turns, t = [], 1.0
    while t < duration - 5:
        turns.append(TimeSpan(start=t, end=t + rng.uniform(1.5, 4.0)))
        t = turns[-1].end + rng.uniform(0.3, 2.0)
    for i, span in enumerate(turns):
        prosody = Prosody(pitch_mean_hz=180.0, pitch_mean_st=35.0, pitch_range_st=5.0,
                          loudness=0.3, speaking_rate=3.5, pause_ratio=0.3)
        records.append(VoiceEvidence(id=f"voice:{i}", span=span, specialist="voice", model=model,
                                     distribution=dist(span.start), prosody=prosody))
        records.append(TranscriptEvidence(id=f"text:{i}", span=span, specialist="text",
                                          model=model, distribution=dist(span.start),
                                          text="and then we talked about the order again"))
    timeline = [TimelineEntry(span=s, label=top(d := dist(s.start))[0], distribution=d,
                              evidence=[f"voice:{i}", f"text:{i}"]) for i, s in enumerate(turns)]
    overall = dist(0)
    verdict = Verdict(label=top(overall)[0], distribution=overall, confidence=0.5, valence=-0.5,
                      arousal=0.6, timeline=timeline, grounding=1.0, rationale=[
                          RationaleStep(claim="The voice sounds angry [voice:3]",
                                        cites=["voice:3"], grounded=True),
                          RationaleStep(claim="The face shows anger [face:100-160]",
                                        cites=["face:100-160", "exemplar:lib/7"], grounded=True)])
    exemplars = [Exemplar(id=f"lib/{i}", label=LABELS[i % 7], similarity=0.5 + i / 1000,
                          evidence_id=f"voice:{i % len(turns)}") for i in range(300)]
    media = MediaInfo(path="/recordings/call.mp4", kind="video", container="mp4",
                      duration=duration, has_video=True, has_audio=True, width=1280, height=720,
                      fps=25.0, audio_channels=1, size_bytes=400_000_000)
    return Analysis(media=media, turns=[Turn(span=s) for s in turns], evidence=records,
                    exemplars=exemplars, verdict=verdict)


def test_a_30_minute_report_stays_small(tmp_path: Path) -> None:
    analysis = long_analysis()
    assert len(analysis.of("face")) == 10_000 and len(analysis.of("voice")) > 300
    path = write_report(analysis, tmp_path / "long.html")
    size = path.stat().st_size
    assert size < 3_000_000, f"{size / 1e6:.1f} MB"
    page = _Page(path.read_text(encoding="utf-8"))
    assert all(href[1:] in page.ids for href, _ in page.links)
    assert "exemplar:lib/7" in {text for _, text in page.links}  # cited: kept in the table
    assert len([i for i in page.ids if i.startswith("ex-")]) == 31  # cited + the 30 nearest
    assert max(len(r.stretches) for r in tracks(analysis)) <= 600


def test_a_still_image_has_no_timeline_but_a_report() -> None:
    media = MediaInfo(path="face.jpg", kind="image", container="image", duration=0.0,
                      has_video=True, has_audio=False, width=250, height=250)
    face = FaceEvidence(id="face:0", span=TimeSpan(start=0, end=0), specialist="face",
                        model=ModelRef(name="fer"), distribution={"angry": 0.7, "sad": 0.3})
    analysis = Analysis(media=media, evidence=[face],
                        skipped={"voice": "the file has no audio stream"})
    text = render_html(analysis)
    assert "Nothing to draw over time" in text and 'id="ev-face:0"' in text
    assert "skipped: the file has no audio stream" in text
    out = _terminal(analysis)
    assert "angry" in out and "voice: skipped" in out
