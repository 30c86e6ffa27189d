"""Composed graphs: the specialist registry, the builder, a swapped aggregator, the review step,
and the two examples in examples/ run for real on a RAVDESS clip."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from affectgraph.errors import ConfigError
from affectgraph.evidence import ModelRef, TimeSpan, VoiceEvidence
from affectgraph.graphs.checkpoints import serializer
from affectgraph.graphs.compose import compose_analysis_graph, resolve
from affectgraph.graphs.context import AnalysisContext
from affectgraph.graphs.review import ReviewRequest
from affectgraph.graphs.specialists import (
    BUILTINS,
    ENTRY_POINTS,
    Specialist,
    load_specialist,
    specialist_registry,
)
from affectgraph.verdict import RationaleStep, Verdict

from .conftest import REPO

EXAMPLES = REPO / "examples"
SNAPSHOT = REPO / "tests" / "reference" / "analysis_graph.mmd"
BUILTIN_ENTRY_POINTS = {"face": "affectgraph.graphs.specialists:FACE",
                        "voice": "affectgraph.graphs.specialists:VOICE",
                        "transcript": "affectgraph.graphs.specialists:TRANSCRIPT"}
WAV = "ravdess_speech/wav/Actor_01/03-01-{}-01-01-01.wav"  # actor 01, "Kids are talking..."


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the example's specialist is also loaded by its entry point
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An installed-looking distribution registering the example's ``arousal`` specialist as a
    plugin package would, and the built-ins as pyproject.toml does (so the tests do not depend
    on when the editable install last read pyproject.toml)."""
    folder = tmp_path_factory.mktemp("plugins")
    info = folder / "affectgraph_test_plugins-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: affectgraph-test-plugins\n"
                                   "Version: 0\n")
    lines = [f"{n} = {target}" for n, target in BUILTIN_ENTRY_POINTS.items()]
    lines.append("arousal = custom_specialist:AROUSAL")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINTS}]\n" + "\n".join(lines) + "\n")
    sys.path[:0] = [str(folder), str(EXAMPLES)]
    yield folder
    sys.path.remove(str(folder))
    sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def custom(plugins: Path) -> ModuleType:
    return _example("custom_specialist")


@pytest.fixture(scope="module")
def review_example(plugins: Path) -> ModuleType:
    return _example("review_step")


@pytest.fixture(scope="module")
def angry(data_dir: Path) -> str:
    return str(data_dir / WAV.format("05-02"))


@pytest.fixture(scope="module")
def neutral(data_dir: Path) -> str:
    return str(data_dir / WAV.format("01-01"))


# -- the registry ------------------------------------------------------------------------------

def test_pyproject_registers_the_builtins_under_the_entry_points() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"].get(ENTRY_POINTS) == BUILTIN_ENTRY_POINTS


def test_a_plugin_is_found_by_name_beside_the_builtins(plugins: Path, custom: ModuleType
                                                       ) -> None:
    registry = specialist_registry()
    assert {"face", "voice", "transcript", "arousal"} <= set(registry)
    assert load_specialist("arousal") is custom.AROUSAL
    assert [s.name for s in resolve(["voice", "arousal"])] == ["voice", "arousal"]
    for name, spec in BUILTINS.items():
        assert load_specialist(name) is spec


def test_unknown_names_fail_with_did_you_mean(plugins: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown specialist 'voise'; did you mean 'voice'\?"):
        compose_analysis_graph(["voise"])
    with pytest.raises(ConfigError, match=r"did you mean 'arousal'\?.*Valid: arousal, face"):
        compose_analysis_graph(["face", "arousl"])


def test_a_stale_install_and_bad_registrations_are_named() -> None:
    with pytest.raises(ConfigError, match=r"built-in specialist 'voice'.*pip install -e \."):
        load_specialist("voice", registry={})
    with pytest.raises(ConfigError, match="names a dict, not an affectgraph Specialist"):
        load_specialist("odd", registry={"odd": dict})
    with pytest.raises(ConfigError, match="names the specialist 'voice'"):
        load_specialist("speech_rate", registry={"speech_rate": lambda: BUILTINS["voice"]})


def _node(state: Any, runtime: Any) -> dict[str, Any]:
    return {"evidence": []}


def test_descriptors_and_choices_are_checked() -> None:
    with pytest.raises(ConfigError, match="lower-case letters"):
        Specialist("speech-rate", "voice", _node)
    with pytest.raises(ConfigError, match="needs speech turns"):
        Specialist("lips", "face", _node, needs_turns=True, stream="video")
    with pytest.raises(ConfigError, match="the graph's own nodes"):
        resolve([Specialist("collect", "voice", _node)])
    with pytest.raises(ConfigError, match="more than once"):
        resolve([BUILTINS["voice"], BUILTINS["voice"]])
    with pytest.raises(ConfigError, match="share the evidence id prefix"):
        resolve([BUILTINS["voice"], Specialist("pitch", "voice", _node, id_prefix="voice")])
    with pytest.raises(ConfigError, match="at least one specialist"):
        resolve([])


def test_the_builtins_compose_into_the_built_in_graph() -> None:
    graph = compose_analysis_graph(BUILTINS.values())  # type: ignore[arg-type]
    assert graph.compile().get_graph().draw_mermaid() == SNAPSHOT.read_text()


# -- a custom specialist ----------------------------------------------------------------------

def test_custom_specialist_example_beside_the_voice(custom: ModuleType, angry: str) -> None:
    analysis = custom.main([angry])
    (record,) = [e for e in analysis.evidence if isinstance(e, custom.ArousalEvidence)]
    assert record.id == "arousal:0" and record.modality == "voice" and record.decided
    assert -30 < record.level_dbfs < -10 and record.arousal > 0.5  # a loud, angry turn
    voice = [e for e in analysis.of("voice") if e.specialist == "voice"]
    assert len(voice) == 1 and voice[0].span == record.span  # both speak for the same turn
    verdict = analysis.verdict
    assert verdict.label == "angry" and verdict.grounding == 1.0 and not verdict.rejected
    cited = [s for s in verdict.rationale if "arousal:0" in s.cites]
    assert cited and all(s.grounded for s in cited)  # the verifier checked them
    assert set(analysis.seconds) >= {"voice", "arousal"} and analysis.failures == {}


def test_custom_specialist_alone_reads_arousal_from_loudness(custom: ModuleType, angry: str,
                                                              neutral: str) -> None:
    loud, calm = custom.main([angry, "--alone"]), custom.main([neutral, "--alone"])
    for analysis in (loud, calm):
        assert [e.specialist for e in analysis.evidence] == ["arousal"]
        assert analysis.verdict.modality_weights == {"voice": 1.0}
        assert analysis.verdict.grounding == 1.0
    (a,), (b,) = loud.evidence, calm.evidence
    assert a.level_dbfs - b.level_dbfs > 15  # the angry take is far louder
    assert a.arousal > 0.5 > 0 > b.arousal
    assert loud.verdict.arousal > calm.verdict.arousal + 0.5


def test_custom_specialist_example_runs_as_a_script(plugins: Path, angry: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(EXAMPLES)])}
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_specialist.py"), angry],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verdict: angry") and "arousal:0 0.79-3.44 s" in done.stdout


def test_a_specialist_must_return_its_own_ids(angry: str) -> None:
    def clashing(state: Any, runtime: Any) -> dict[str, Any]:
        span = TimeSpan(start=0.0, end=1.0)
        return {"evidence": [VoiceEvidence(id="voice:0", span=span, specialist="pitch",
                                           model=ModelRef(name="pitch"))]}

    graph = compose_analysis_graph([Specialist("pitch", "voice", clashing)]).compile()
    with pytest.raises(ConfigError, match=r"evidence id 'voice:0'; its ids must look like "
                                          r"'pitch:0'"):
        graph.invoke({"path": angry}, context=AnalysisContext())


def test_a_failing_specialist_is_recorded_and_the_others_deliver(custom: ModuleType,
                                                                 angry: str) -> None:
    def broken(state: Any, runtime: Any) -> dict[str, Any]:
        raise RuntimeError("the model file is corrupt")

    graph = compose_analysis_graph([custom.AROUSAL, Specialist("broken", "voice", broken)])
    state = graph.compile().invoke({"path": angry}, context=AnalysisContext())
    assert state["failures"] == {"broken": "RuntimeError: the model file is corrupt"}
    assert [e.id for e in state["evidence"]] == ["arousal:0"]
    assert state["verdict"].label is not None and "broken" in state["verdict"].note


def test_a_swapped_aggregator_still_goes_through_the_verifier(custom: ModuleType,
                                                              angry: str) -> None:
    def loudest(state: Any, runtime: Any) -> dict[str, Any]:
        """A toy aggregator: the label of the most aroused record, with one true and one false
        step."""
        best = max((e for e in state["evidence"] if e.distribution),
                   key=lambda e: e.arousal)
        steps = [RationaleStep(claim=f"The voice sounds {best.label} [{best.id}]"),
                 RationaleStep(claim=f"The voice sounds sad [{best.id}]")]
        verdict = Verdict(label=best.label, distribution=best.distribution,
                          confidence=best.confidence, valence=0.0, arousal=best.arousal,
                          rationale=steps, aggregator="loudest")
        return {"verdict": verdict}

    graph = compose_analysis_graph([custom.AROUSAL], aggregator=loudest).compile()
    verdict = graph.invoke({"path": angry}, context=AnalysisContext())["verdict"]
    assert verdict.aggregator == "loudest" and verdict.label == "angry"
    assert [s.claim for s in verdict.rationale] == ["The voice sounds angry [arousal:0]"]
    assert [s.claim for s in verdict.rejected] == ["The voice sounds sad [arousal:0]"]
    assert verdict.grounding == 0.5


# -- the review step ---------------------------------------------------------------------------

def test_review_example_edits_the_label_and_drops_a_step(review_example: ModuleType,
                                                         angry: str) -> None:
    request, state = review_example.main([angry, "--specialists", "voice", "--label", "sad",
                                          "--drop", "1", "--reviewer", "ana"])
    assert request.verified and request.label == "angry" and len(request.rationale) == 3
    assert all(step.grounded for step in request.rationale)
    review, verdict = state["review"], state["verdict"]
    assert (review.label_before, review.label_after, review.reviewer) == ("angry", "sad", "ana")
    assert not review.accepted
    assert [s.claim for s in review.dropped] == [request.rationale[1].claim]
    assert verdict.label == "sad" and len(verdict.rationale) == 2
    assert request.rationale[1].claim not in [s.claim for s in verdict.rationale]
    assert verdict.note.endswith("reviewed by ana: label changed from angry to sad, "
                                 "1 rationale step(s) dropped")


def test_review_example_accepts_and_can_review_before_verifying(review_example: ModuleType,
                                                                angry: str) -> None:
    request, state = review_example.main([angry, "--specialists", "voice"])
    assert state["review"].accepted and state["verdict"].label == request.label == "angry"
    assert state["verdict"].note.endswith("reviewed: accepted as it is")
    early, state = review_example.main([angry, "--specialists", "voice", "--before-verify",
                                        "--drop", "0"])
    assert not early.verified and {s.grounded for s in early.rationale} == {None}
    verdict = state["verdict"]  # the verifier checked what the reviewer kept
    assert [s.claim for s in verdict.rationale] == [s.claim for s in early.rationale[1:]]
    assert verdict.grounding == 1.0 and all(s.grounded for s in verdict.rationale)


def test_a_refused_decision_pauses_again_with_the_problem(angry: str) -> None:
    graph = compose_analysis_graph([BUILTINS["voice"]], review="after_verify").compile(
        checkpointer=InMemorySaver(serde=serializer()))
    config = {"configurable": {"thread_id": "review"}}
    context = AnalysisContext()
    state = graph.invoke({"path": angry}, config, context=context)
    asked = [ReviewRequest.model_validate(state["__interrupt__"][0].value)]
    for answer in ({"label": "saad"}, {"drop": [3]}, {"labels": ["sad"]}):
        state = graph.invoke(Command(resume=answer), config, context=context)
        asked.append(ReviewRequest.model_validate(state["__interrupt__"][0].value))
    assert [r.problem is None for r in asked] == [True, False, False, False]
    assert "unknown label 'saad'; did you mean 'sad'?" in asked[1].problem
    assert "cannot drop step(s) [3]: the rationale's steps are numbered 0-2" in asked[2].problem
    assert "labels: Extra inputs are not permitted" in asked[3].problem
    state = graph.invoke(Command(resume={"label": "neutral"}), config, context=context)
    assert "__interrupt__" not in state and state["verdict"].label == "neutral"
    assert graph.get_state(config).next == ()
    assert graph.get_state(config).values["review"].label_before == "angry"
