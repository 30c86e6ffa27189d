"""``affectgraph train voice|text|face``: train a head from the bundled data, reproducibly.

Each writes its artefact (by default the one shipped in the package) and prints its held-out
scores; ``--evaluate`` adds the comparisons its module offers.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from affectgraph.commands import user_errors

app = typer.Typer(help="Train the emotion heads from labelled data.", no_args_is_help=True)

# modality -> (module, function): each function is train_<modality>(data, out, evaluate).
TRAINERS = {
    "voice": ("affectgraph.commands.train_voice", "train_voice"),
    "text": ("affectgraph.commands.train_text", "train_text"),
    "face": ("affectgraph.commands.train_face", "train_face"),
    "fusion": ("affectgraph.commands.train_fusion", "train_fusion"),
}

Data = Annotated[Path | None, typer.Option(help="Data folder (default: $AFFECTGRAPH_DATA or ../shared/data).")]
Out = Annotated[Path | None, typer.Option(help="Where to write the head (default: the shipped one).")]
Evaluate = Annotated[bool, typer.Option("--evaluate", help="Also print the held-out comparisons.")]


def _run(modality: str, data: Path | None, out: Path | None, evaluate: bool, **extra) -> None:
    module, function = TRAINERS[modality]
    getattr(importlib.import_module(module), function)(data, out, evaluate, **extra)


@app.command()
@user_errors
def voice(data: Data = None, out: Out = None, evaluate: Evaluate = False,
          encoder: Annotated[str | None, typer.Option(help="whisper-base: heads that also read "
                             "the Whisper encoder's embedding of each clip (30-40 minutes of "
                             "encoding when not cached).")] = None) -> None:
    """The voice head on eGeMAPS functionals of RAVDESS + TESS (actors held out)."""
    from affectgraph.cli import _voice_encoder

    _run("voice", data, out, evaluate, encoder=_voice_encoder(encoder))


@app.command()
@user_errors
def text(data: Data = None, out: Out = None, evaluate: Evaluate = False) -> None:
    """The text head on MiniLM embeddings of GoEmotions, MELD and EmoryNLP train."""
    _run("text", data, out, evaluate)


@app.command()
@user_errors
def face(data: Data = None, out: Out = None, evaluate: Evaluate = False) -> None:
    """The face head on fer features of FER2013 and faces_web (people held out)."""
    _run("face", data, out, evaluate)


@app.command()
@user_errors
def fusion(
    data: Data = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the fusion model (default: the shipped one).")] = None,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="Also run the 7 RAVDESS audio-visual clips through the graph, their actor held out.")] = False,
    table: Annotated[Path | None, typer.Option(help="Held-out table: read it if it exists, else build it (about an hour) and write it here.")] = None,
) -> None:
    """The fusion aggregator on cross-fitted held-out predictions of every specialist."""
    _run("fusion", data, out, evaluate, table=table)
