"""Which aggregator an ``--aggregator`` spelling means, and loading its language model.

The spellings (the same in ``affectgraph analyze``, ``chat`` and ``eval``)::

    fusion            the trained fusion model (the default)
    mllm              the tuned MLLM shipped with the package (affectgraph/assets/mllm/)
    mllm:FOLDER       a model saved by ``affectgraph finetune CONFIG``
    mllm:zero-shot    the base LM alone, no adapter and no connectors: the same evidence lines
                      as text and the answer schema spelled out (the baseline the tuning must beat)

A folder literally named ``zero-shot`` is ``mllm:./zero-shot``. The graph reads the choice as
``AnalyzeOptions.mllm`` (``None`` for fusion, else the folder or :data:`ZERO_SHOT`) and takes the
loaded model from its toolbox under ``("mllm", target)``; :func:`provide_mllm` loads it there
before any clip is analysed, so a bad model fails first and the zero-shot baseline needs no
folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from affectgraph.errors import ConfigError

__all__ = ["AGGREGATOR_HELP", "ZERO_SHOT", "Aggregator", "load_mllm", "parse_aggregator",
           "provide_mllm", "shipped_folder"]

ZERO_SHOT = "zero-shot"
AGGREGATOR_HELP = ("fusion (the trained fusion model), mllm (the tuned multimodal LLM shipped "
                   "with affectgraph), mllm:FOLDER (a model saved by 'affectgraph finetune') or "
                   "mllm:zero-shot (the base SmolLM2 with no adapter: a baseline).")
_VALID = "fusion, mllm, mllm:FOLDER, mllm:zero-shot"


@dataclass(frozen=True)
class Aggregator:
    """A parsed ``--aggregator``: ``kind`` and, for an MLLM, ``target`` (a folder, or
    :data:`ZERO_SHOT`), which is what ``AnalyzeOptions.mllm`` holds."""

    kind: Literal["fusion", "mllm", "zero-shot"]
    target: str | None = None

    @property
    def spelling(self) -> str:
        if self.kind == "fusion":
            return "fusion"
        if self.kind == "zero-shot":
            return f"mllm:{ZERO_SHOT}"
        return "mllm" if self.target == str(shipped_folder()) else f"mllm:{self.target}"


def shipped_folder() -> Path:
    """Where the package's own tuned MLLM lives (``adapter/``, ``connectors.pt``, manifest)."""
    return Path(str(resources.files("affectgraph"))) / "assets" / "mllm"


def parse_aggregator(spelling: str) -> Aggregator:
    """The aggregator ``spelling`` names; :class:`ConfigError` naming the valid spellings, or
    the missing model and how to get one."""
    text = spelling.strip()
    if text == "fusion":
        return Aggregator("fusion")
    kind, colon, target = text.partition(":")
    if kind != "mllm" or (colon and not target):
        raise ConfigError(f"unknown aggregator {spelling!r}; valid: {_VALID} (FOLDER: a model "
                          "saved by 'affectgraph finetune CONFIG')")
    if not colon:
        folder = shipped_folder()
        if not (folder / "manifest.json").is_file():
            raise ConfigError(f"--aggregator mllm: no tuned MLLM is shipped in {folder} (this "
                              "install lacks the asset); give mllm:FOLDER, a model saved by "
                              "'affectgraph finetune configs/mllm-cpu.yaml'")
        return Aggregator("mllm", str(folder))
    if target == ZERO_SHOT:
        return Aggregator("zero-shot", ZERO_SHOT)
    if not Path(target, "manifest.json").is_file():
        raise ConfigError(f"{target}: no fine-tuned model there (no manifest.json); train one "
                          "with 'affectgraph finetune configs/mllm-cpu.yaml', or use mllm (the "
                          "shipped one)")
    return Aggregator("mllm", target)


def load_mllm(target: str) -> tuple[Any, Any]:
    """(model, :class:`~affectgraph.agents.mllm.model.Manifest`) of ``target``: a saved folder
    or :data:`ZERO_SHOT` (the base LM the shipped adapter was tuned on)."""
    if target == ZERO_SHOT:
        from affectgraph.agents.mllm.zero_shot import ZeroShotLM

        model = ZeroShotLM.load()
        return model, model.manifest
    from affectgraph.agents.mllm.model import AffectMLLM

    return AffectMLLM.load(target)


def provide_mllm(toolbox: Any, target: str | None, *, wrap: Any = None) -> Any:
    """Load the model of ``target`` now and hand it to ``toolbox`` (the analysis context's
    :class:`~affectgraph.graphs.context.Toolbox`) under the key the aggregate node reads;
    ``wrap(model)`` replaces the model (e.g. by one recording its answers). Returns the model
    the graph will use (``None`` for fusion)."""
    if target is None:
        return None
    model, manifest = load_mllm(target)
    if wrap is not None:
        model = wrap(model)
    toolbox.provide(("mllm", target), (model, manifest))
    return model
