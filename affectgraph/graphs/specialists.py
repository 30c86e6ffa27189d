"""Specialists as graph parts: a descriptor per specialist, found through one registry.

A :class:`Specialist` says what a composed analysis graph needs to know to run one: its name
(the graph node, and the key of its timing and failure), the modality of the evidence it
returns, its node function, whether it waits for the speech turns, and which media stream it
reads. Specialists are registered under the entry-point group ``affectgraph.specialists``
(name -> a :class:`Specialist`); the built-in face, voice and transcript specialists are
registered there the same way a plugin package registers its own::

    [project.entry-points."affectgraph.specialists"]
    arousal = "my_package.arousal:AROUSAL"

:func:`load_specialist` finds one by name; an unknown name fails with a "did you mean" and the
registered names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from affectgraph.errors import ConfigError, unknown_name
from affectgraph.evidence import Modality
from affectgraph.graphs import nodes
from affectgraph.graphs.context import SPECIALISTS
from affectgraph.media import MediaInfo

ENTRY_POINTS = "affectgraph.specialists"
Stream = Literal["video", "audio"]
SpecialistRegistry = Mapping[str, Callable[[], Any]]
"""Name -> a function returning the registered object (``EntryPoint.load``)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PREFIX = re.compile(r"^[a-z]+$")


@dataclass(frozen=True)
class Specialist:
    """How to run one specialist in an analysis graph.

    ``node(state, runtime) -> {"evidence": [...]}`` is a plain LangGraph node: it reads the clip
    (``state["path"]``, and ``state["turns"]`` when ``needs_turns``) and its models from
    ``runtime.context`` (:class:`~affectgraph.graphs.context.AnalysisContext`; load them through
    ``runtime.context.toolbox`` so they are loaded once). It returns evidence records of
    ``modality`` (:class:`~affectgraph.evidence.FaceEvidence`, ``VoiceEvidence`` or
    ``TranscriptEvidence``, or subclasses) whose ids start with ``id_prefix`` (default: the
    name), e.g. ``arousal:0``, so they cannot clash with another specialist's ids. The graph
    times the node and records its failure without sinking the other specialists
    (:func:`affectgraph.graphs.nodes.guarded`); ``needs_turns`` specialists run after voice
    activity detection, the others beside it. A clip without ``stream`` skips the specialist,
    with that reason.
    """

    name: str
    modality: Modality
    node: nodes.Node
    needs_turns: bool = False
    stream: Stream = "audio"
    id_prefix: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"a specialist's name is lower-case letters, digits and _ "
                              f"starting with a letter (it names a graph node); got {self.name!r}")
        if not self.id_prefix:
            object.__setattr__(self, "id_prefix", self.name)
        if not _PREFIX.match(self.id_prefix):
            raise ConfigError(f"specialist {self.name!r}: evidence ids look like 'arousal:3', so "
                              f"id_prefix must be lower-case letters; got {self.id_prefix!r}")
        if self.needs_turns and self.stream != "audio":
            raise ConfigError(f"specialist {self.name!r} needs speech turns, which come from the "
                              f"audio; set stream='audio' (got {self.stream!r})")
        if not callable(self.node):
            raise ConfigError(f"specialist {self.name!r}: node must be a function "
                              f"(state, runtime) -> dict, got {type(self.node).__name__}")

    def unavailable(self, info: MediaInfo) -> str | None:
        """Why this specialist cannot run on a clip, or ``None`` when it can."""
        has = info.has_video if self.stream == "video" else info.has_audio
        return None if has else f"the file has no {self.stream} stream"


def _plain(node: nodes.Node) -> nodes.Node:
    """A built-in node without its :func:`~affectgraph.graphs.nodes.guarded` wrapper (a composed
    graph wraps every specialist's node itself)."""
    return getattr(node, "__wrapped__", node)


FACE = Specialist("face", "face", _plain(nodes.face), needs_turns=False, stream="video",
                  description="face detection, tracking and expression per sampled frame")
VOICE = Specialist("voice", "voice", _plain(nodes.voice), needs_turns=True, stream="audio",
                   description="eGeMAPS functionals, prosody and a voice emotion head per turn")
TRANSCRIPT = Specialist("transcript", "text", _plain(nodes.transcript), needs_turns=True,
                        stream="audio", id_prefix="text",
                        description="speech recognition (or a given transcript) and text "
                                    "emotion per segment")
BUILTINS: Mapping[str, Specialist] = {s.name: s for s in (FACE, VOICE, TRANSCRIPT)}
assert tuple(BUILTINS) == SPECIALISTS


def specialist_registry() -> dict[str, Callable[[], Any]]:
    """Every registered specialist: name -> a function importing its :class:`Specialist`."""
    from importlib.metadata import entry_points

    return {ep.name: ep.load for ep in entry_points(group=ENTRY_POINTS)}


def load_specialist(name: str, registry: SpecialistRegistry | None = None) -> Specialist:
    """The specialist registered as ``name`` (in ``registry``, default: the entry points).

    Raises :class:`~affectgraph.errors.ConfigError` for an unknown name (with a "did you mean"),
    for a built-in missing from a stale install, and for an entry point that does not name a
    :class:`Specialist` of that name.
    """
    registry = specialist_registry() if registry is None else registry
    if name not in registry:
        if name in BUILTINS:
            raise ConfigError(
                f"the built-in specialist {name!r} is not registered under the entry points "
                f"{ENTRY_POINTS!r}: affectgraph's installed metadata is older than its "
                "pyproject.toml; reinstall it (pip install -e .)")
        raise unknown_name("specialist", name, registry)
    found = registry[name]()
    if not isinstance(found, Specialist):
        raise ConfigError(f"the entry point {name!r} in {ENTRY_POINTS!r} names a "
                          f"{type(found).__name__}, not an affectgraph Specialist")
    if found.name != name:
        raise ConfigError(f"the entry point {name!r} in {ENTRY_POINTS!r} names the specialist "
                          f"{found.name!r}; register it under its own name")
    return found
