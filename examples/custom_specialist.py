"""A custom specialist: arousal from how loud each speech turn is, in a composed analysis graph.

The ``arousal`` specialist measures the RMS level of each speech turn (dB re full scale, over
the turn's 25 ms frames within 30 dB of its loudest) and reads an arousal in [-1, 1] off it:
``tanh((level - REFERENCE_DBFS) / SCALE_DB)``. Its class distribution spreads that arousal over
the canonical labels by how close each label sits on the arousal axis of the circumplex
(:data:`affectgraph.labels.VALENCE_AROUSAL`), so an aroused voice is angry, fearful or surprised
alike: loudness alone cannot tell them apart, and the record does not pretend it can.

Measured with this file on the RAVDESS speech clips of high (angry, happy, fearful, surprised)
or low (neutral, calm, sad) arousal in ../shared/data/ravdess_speech (18 actors, 126 clips; voice
activity detection finds no turn in 3 of them): the level separates the two groups with ROC AUC
0.93; the midpoint of their medians on actors 1-12 (-39.8 dBFS, rounded to -40) classifies the
42 clips of actors 13-18 right 81% of the time. A speaking rate counted from energy peaks did
not separate them (AUC 0.58), so it is not used. The level depends on the recording's gain:
set ``REFERENCE_DBFS`` for your microphones.

Its records are :class:`ArousalEvidence`, a :class:`~affectgraph.evidence.VoiceEvidence` with the
measured level and arousal, ids ``arousal:0``, ``arousal:1``...; the fusion aggregator pools them
with the voice and the verifier checks the rationale that cites them. (An ``Analysis`` written to
JSON keeps the fields of ``VoiceEvidence`` only.)

Run it (``--alone`` leaves the built-in voice specialist out)::

    python examples/custom_specialist.py CLIP.wav [--alone]

A package registers it for everyone by name, the way affectgraph registers its own::

    [project.entry-points."affectgraph.specialists"]
    arousal = "my_package.arousal:AROUSAL"

and then ``compose_analysis_graph(["voice", "arousal"])`` finds it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from affectgraph import media
from affectgraph.analysis import Analysis
from affectgraph.api import to_analysis
from affectgraph.evidence import ModelRef, TimeSpan, VoiceEvidence, normalise, top
from affectgraph.graphs.compose import compose_analysis_graph
from affectgraph.graphs.context import AnalysisContext
from affectgraph.graphs.specialists import Specialist
from affectgraph.graphs.state import AnalysisState
from affectgraph.labels import VALENCE_AROUSAL
from affectgraph.segments import turn_signal

FRAME, HOP = 400, 160  # 25 ms frames every 10 ms at 16 kHz
FLOOR_DB = 30.0  # frames this far below the turn's loudest are pauses
REFERENCE_DBFS = -40.0  # the level of arousal 0 (see the module docstring)
SCALE_DB = 10.0  # dB per unit of tanh's argument
WIDTH = 0.35  # how far on the arousal axis a label still gets weight
MIN_SECONDS = 0.25
MODEL = ModelRef(name="rms-level-arousal", revision="1")


class ArousalEvidence(VoiceEvidence):
    """One speech turn's loudness and the arousal read off it.

    ``level_dbfs``: mean RMS level of the turn's active frames (dB re full scale);
    ``active_share``: the share of its frames within ``FLOOR_DB`` of its loudest;
    ``arousal``: in [-1, 1].
    """

    level_dbfs: float | None = None
    active_share: float | None = None
    arousal: float | None = None


def level_of(signal: np.ndarray) -> tuple[float, float] | None:
    """``(level dBFS, active share)`` of a (n,) float signal at 16 kHz; None when silent."""
    if signal.size < FRAME:
        return None
    starts = np.arange(0, signal.size - FRAME + 1, HOP)
    frames = signal[starts[:, None] + np.arange(FRAME)[None, :]]
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    if db.max() < -90:  # digital silence
        return None
    active = db > db.max() - FLOOR_DB
    return float(db[active].mean()), float(active.mean())


def arousal_distribution(arousal: float) -> dict[str, float]:
    """Canonical labels weighted by how near their circumplex arousal is to ``arousal``."""
    return normalise({e.value: math.exp(-((arousal - a) / WIDTH) ** 2 / 2)
                      for e, (_, a) in VALENCE_AROUSAL.items()})


def measure_turn(index: int, span: TimeSpan, channel: int | None,
                 signal: np.ndarray) -> ArousalEvidence:
    """The record of one turn: level, arousal and distribution, or why there are none."""
    record: dict[str, Any] = {"id": f"arousal:{index}", "span": span, "specialist": "arousal",
                              "model": MODEL, "channel": channel}
    if signal.size / media.SAMPLE_RATE < MIN_SECONDS:
        return ArousalEvidence(**record, reason=f"turn shorter than {MIN_SECONDS} s")
    measured = level_of(signal)
    if measured is None:
        return ArousalEvidence(**record, reason="the turn is silent")
    level, share = measured
    arousal = math.tanh((level - REFERENCE_DBFS) / SCALE_DB)
    distribution = arousal_distribution(arousal)
    return ArousalEvidence(**record, level_dbfs=level, active_share=share, arousal=arousal,
                           distribution=distribution, confidence=top(distribution)[1])


def arousal(state: AnalysisState, runtime: Runtime[AnalysisContext]) -> dict[str, Any]:
    """The arousal specialist's node: one :class:`ArousalEvidence` per speech turn."""
    path, turns = state["path"], state.get("turns", [])
    if not turns:
        whole = TimeSpan(start=0.0, end=state["media"].duration)
        return {"evidence": [ArousalEvidence(id="arousal:0", span=whole, specialist="arousal",
                                             model=MODEL, reason="no speech turns found")]}
    ordered = sorted(turns, key=lambda t: (t.span.start, t.span.end))
    records = []
    for i, samples in media.iter_spans(path, [(t.span.start, t.span.end) for t in ordered]):
        turn = ordered[i]
        records.append(measure_turn(i, turn.span, turn.channel, turn_signal(samples, turn, path)))
        runtime.context.progress("arousal", turn.span.end)
    return {"evidence": sorted(records, key=lambda r: int(r.id.split(":")[1]))}


AROUSAL = Specialist("arousal", "voice", arousal, needs_turns=True, stream="audio",
                     description="arousal from the RMS level of each speech turn")


def main(argv: Sequence[str] | None = None) -> Analysis:
    """Analyse a clip with the arousal specialist (and the built-in voice one, unless
    ``--alone``); print the verdict and the arousal records; return the whole analysis."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("clip", help="an audio or video file with speech")
    parser.add_argument("--alone", action="store_true", help="leave out the voice specialist")
    args = parser.parse_args(argv)
    specialists: list[str | Specialist] = [AROUSAL] if args.alone else ["voice", AROUSAL]
    graph = compose_analysis_graph(specialists).compile()
    analysis = to_analysis(graph.invoke({"path": args.clip}, context=AnalysisContext()))
    verdict = analysis.verdict
    assert verdict is not None
    print(f"verdict: {verdict.label or 'abstains'} (confidence {verdict.confidence:.2f}, "
          f"arousal {verdict.arousal:+.2f}, grounding {verdict.grounding})")
    for record in analysis.evidence:
        if isinstance(record, ArousalEvidence):
            print(f"  {record.id} {record.span}: " + (
                record.reason or f"{record.level_dbfs:.1f} dBFS -> arousal {record.arousal:+.2f}"))
    for step in verdict.rationale:
        print(f"  - {step.claim}")
    return analysis


if __name__ == "__main__":
    main()
