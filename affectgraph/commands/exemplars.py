"""``affectgraph exemplars``: build, inspect, list, search and evaluate exemplar libraries."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from affectgraph.commands import user_errors
from affectgraph.errors import InputError
from affectgraph.retrieval.search import TEMPERATURE

if TYPE_CHECKING:
    from affectgraph.datasets import Item

app = typer.Typer(
    help="Labelled exemplar libraries: build, inspect, search, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)

Modality = Annotated[str | None, typer.Option(help="voice, text or face.")]
Data = Annotated[
    Path | None,
    typer.Option("--data", help="The data folder (default: $AFFECTGRAPH_DATA or ../shared/data)."),
]
Threads = Annotated[int, typer.Option(help="CPU threads for models and FAISS.")]


@app.command()
@user_errors
def build(
    manifest: Annotated[
        Path | None,
        typer.Argument(help="A labelled manifest CSV (label + path or text, optional speaker)."),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="A bundled data set, NAME or NAME:SPLIT (repeatable)."),
    ] = None,
    modality: Modality = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Library folder (default: $AFFECTGRAPH_HOME/exemplars/NAME)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Library name (default: the folder's or manifest's name).")
    ] = None,
    licence: Annotated[
        str | None, typer.Option(help="Licence of the manifest's data, recorded in the library.")
    ] = None,
    index: Annotated[str, typer.Option(help="auto, flat, ivf or ivfpq.")] = "auto",
    dtype: Annotated[str, typer.Option(help="Stored vectors: float32 or float16.")] = "float32",
    max_per_label: Annotated[
        int | None, typer.Option(help="At most this many exemplars per label (random sample).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the per-label sample.")] = 0,
    face_cropped: Annotated[
        bool,
        typer.Option("--face-cropped", help="The manifest's images are face crops: no detection."),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--restart",
            help="Resume an interrupted build (default), or discard it and recompute every vector.",
        ),
    ] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a library already in --out.")
    ] = False,
    data: Data = None,
    threads: Threads = 1,
) -> None:
    """Build a library from a manifest CSV or bundled data sets (interrupted builds resume)."""
    from affectgraph.retrieval.build import BuildOptions, Vectorisers, build_library
    from affectgraph.retrieval.defaults import user_folder
    from affectgraph.retrieval.library import partial_of

    items, modality, licences = _items(manifest, dataset or [], modality, licence, data)
    name = name or _default_name(out, manifest, dataset or [])
    folder = out or user_folder() / name
    if folder.exists() and not overwrite:  # before any model loads
        raise InputError(f"{folder} already exists; choose another --out or --overwrite")
    options = BuildOptions.model_validate(
        {
            "name": name,
            "index": {"kind": index, "threads": threads},
            "dtype": dtype,
            "max_per_label": max_per_label,
            "seed": seed,
        }
    )
    if resume and partial_of(folder).exists():
        err.print(f"resuming the interrupted build in {partial_of(folder)}")
    _threads(threads)
    parts = Vectorisers(modality, cropped=face_cropped).parts(items)
    with _bar(f"{modality} vectors") as progress:
        library = build_library(
            parts,
            folder,
            options,
            licences=licences,
            data_root=data,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
        )
    skipped = sum(library.manifest.skipped.values())
    err.print(
        f"{library.name}: {len(library)} exemplars ({library.manifest.index.kind} index) "
        f"in {folder}" + (f"; {skipped} items gave no vector" if skipped else "")
    )


@app.command("build-defaults")
@user_errors
def build_defaults(
    modality: Annotated[
        list[str] | None,
        typer.Option("--modality", help="voice, text or face (repeatable; default: all)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write <modality>/ into (default: the package's assets)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--restart",
            help="Resume interrupted builds (default) or recompute every vector.",
        ),
    ] = True,
    data: Data = None,
    threads: Threads = 1,
) -> None:
    """Rebuild the shipped default libraries from the data folder."""
    from affectgraph.retrieval import defaults

    _threads(threads)
    for name in modality or defaults.MODALITIES:
        with _bar(f"{name} vectors") as progress:
            (library,) = defaults.build_defaults(
                [name], root=data, out=out, resume=resume, progress=lambda _: progress
            )
        err.print(f"{name}: {len(library)} exemplars in {library.folder}")


@app.command()
@user_errors
def info(
    library: Annotated[str, typer.Argument(help="A library folder or name (see `list`).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """A library's manifest: sources and licences, counts per label, vectoriser, index, size."""
    from rich.table import Table

    from affectgraph.retrieval.defaults import resolve_library
    from affectgraph.retrieval.manifest import read_manifest

    folder = resolve_library(library)
    m = read_manifest(folder)
    if json_out:
        sys.stdout.write(m.model_dump_json(indent=2) + "\n")
        return
    out = Console(soft_wrap=True)
    v = m.vectoriser
    out.print(f"[bold]{m.name}[/bold] ({m.modality}) {folder}\n{m.description}")
    out.print(
        f"{m.size} exemplars; vectoriser {v.name} {v.revision} ({v.dim}-d, "
        f"{'standardised, ' if v.standardised else ''}{m.vectors_dtype}); index "
        f"{m.index.kind}; {_size(folder) / 1e6:.1f} MB on disk; built {m.created}"
    )
    out.print("counts: " + ", ".join(f"{k} {n}" for k, n in m.counts.items()))
    if m.skipped:
        out.print("skipped: " + ", ".join(f"{n} {why}" for why, n in m.skipped.items()))
    table = Table("source", "exemplars", "licence", "labels", "note")
    for s in m.sources:
        note = s.note + ("" if s.text_stored else ("; " if s.note else "") + "text not stored")
        table.add_row(s.dataset, str(s.count), s.licence, s.scheme or "canonical", note)
    out.print(table)


@app.command("list")
@user_errors
def list_libraries() -> None:
    """The shipped default libraries and those under $AFFECTGRAPH_HOME/exemplars."""
    from rich.table import Table

    from affectgraph.errors import AffectGraphError
    from affectgraph.retrieval.defaults import library_folders
    from affectgraph.retrieval.manifest import MANIFEST, LibraryManifest

    table = Table("name", "modality", "exemplars", "licences", "folder")
    for name, folder in library_folders().items():
        try:
            m = LibraryManifest.model_validate_json((folder / MANIFEST).read_text())
        except (OSError, ValueError, AffectGraphError) as exc:
            table.add_row(name, "?", "?", f"unreadable: {exc}", str(folder))
            continue
        licences = "; ".join(sorted({s.licence for s in m.sources}))
        table.add_row(name, m.modality, str(m.size), licences, str(folder))
    Console().print(table)


@app.command()
@user_errors
def search(
    library: Annotated[str, typer.Argument(help="A library folder or name (see `list`).")],
    text: Annotated[str | None, typer.Option(help="Query text (text libraries).")] = None,
    path: Annotated[
        Path | None, typer.Option(help="Query audio or image file (voice and face libraries).")
    ] = None,
    k: Annotated[int, typer.Option(min=1, max=100, help="Neighbours to show.")] = 10,
    exclude_group: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-group",
            help="Leave out an exemplar group (ravdess_speech/actor07) or data set (repeatable).",
        ),
    ] = None,
    face_cropped: Annotated[
        bool, typer.Option("--face-cropped", help="The query image is a face crop: no detection.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    threads: Threads = 1,
) -> None:
    """The k exemplars nearest a query text or file, and their label vote."""
    from affectgraph.retrieval.defaults import resolve_library
    from affectgraph.retrieval.library import ExemplarLibrary
    from affectgraph.retrieval.search import search as nearest

    _threads(threads)
    lib = ExemplarLibrary.load(resolve_library(library), threads=threads)
    groups = tuple(exclude_group or ())
    for group in groups:
        if not lib.rows_of([group]).size:
            err.print(f"note: no exemplar of {lib.name!r} is in group {group!r}")
    found = nearest(lib, _query(lib, text, path, face_cropped), k=k, exclude_groups=groups)[0]
    if json_out:
        sys.stdout.write(found.model_dump_json(indent=2) + "\n")
        return
    _print_retrieval(found)


@app.command()
@user_errors
def evaluate(
    protocol: Annotated[
        str,
        typer.Argument(help="voice-ravdess, text-meld, text-emorynlp, face-fer2013 or face-web."),
    ],
    k: Annotated[int, typer.Option(min=1, help="Neighbours that vote.")] = 10,
    temperature: Annotated[float, typer.Option(min=0.001, help="Vote temperature.")] = TEMPERATURE,
    speaker_norm: Annotated[
        bool,
        typer.Option(
            "--speaker-norm", help="Z-score each vector by its speaker's other items first."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    data: Data = None,
    threads: Threads = 1,
) -> None:
    """Score the kNN vote with speakers held out (WAR, UAR, macro-F1, weighted-F1)."""
    from affectgraph.retrieval import evaluate as ev
    from affectgraph.retrieval.build import Vectorisers

    _threads(threads)
    chosen = ev.protocol(protocol)
    folds = chosen.folds(data)
    with _bar(f"{chosen.modality} vectors") as progress:
        result = ev.knn_scores(
            folds,
            Vectorisers(chosen.modality),
            k=k,
            temperature=temperature,
            standardise=chosen.standardise,
            speaker_norm=speaker_norm,
            progress=progress,
        )
    if json_out:
        payload: dict[str, Any] = {
            "protocol": protocol,
            "k": k,
            "scored": result.scored,
            "total": result.total,
            **result.scores.model_dump(),
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    Console(soft_wrap=True).print(
        f"{protocol} kNN vote (k={k}{', speaker-normalised' if speaker_norm else ''}"
        f"): {result.scores.headline()} ({result.scored}/{result.total} with a vector)"
    )


def _default_name(out: Path | None, manifest: Path | None, datasets: list[str]) -> str:
    if out is not None:
        return out.name
    if manifest is not None:
        return manifest.stem
    return "-".join(d.split(":")[0] for d in datasets)


def _items(
    manifest: Path | None,
    datasets: list[str],
    modality: str | None,
    licence: str | None,
    data: Path | None,
) -> tuple[list[Item], str, dict[str, str]]:
    from affectgraph.datasets import load_dataset, read_manifest
    from affectgraph.retrieval.catalogue import CATALOGUE

    if (manifest is None) == (not datasets):
        raise InputError("give either a manifest CSV or --dataset NAME (not both)")
    if manifest is not None:
        if modality is None:
            raise InputError("--modality voice|text|face is needed with a manifest")
        return (
            read_manifest(manifest, modality=modality),
            modality,
            {manifest.stem: licence} if licence else {},
        )
    items: list[Item] = []
    found: set[str] = set()
    for spec in datasets:
        name, _, split = spec.partition(":")
        items += load_dataset(name, root=data, split=split or None)  # checks the name
        known = CATALOGUE.get(name)
        found.add(known.modality if known else "unknown")
    if modality is None and len(found) != 1:
        raise InputError(
            f"--dataset sets of several modalities ({', '.join(sorted(found))}); "
            "build one library per modality, or say which with --modality"
        )
    return items, modality or found.pop(), {}


def _query(library: Any, text: str | None, path: Path | None, cropped: bool) -> Any:
    from affectgraph.datasets import Item
    from affectgraph.features import vectoriser
    from affectgraph.labels import Emotion

    modality = library.manifest.modality
    if (text is None) == (path is None):
        raise InputError("give either --text or --path")
    if modality == "text" and text is None:
        raise InputError(f"{library.name!r} is a text library: query it with --text")
    if modality != "text" and path is None:
        raise InputError(f"{library.name!r} is a {modality} library: query it with --path FILE")
    if path is not None and not path.is_file():
        raise InputError(f"{path}: no such file")
    vec = vectoriser(modality, None, **({"cropped": True} if cropped else {}))
    library.check_vectoriser(vec)
    # the label of a query item is never read: vectorisers only look at its media or text
    item = Item(id="query", label=Emotion.NEUTRAL, dataset="query", path=path, text=text)
    (vector,) = vec.vectorise([item])
    if isinstance(vector, str):
        raise InputError(f"{path or 'the text'}: nothing to search with ({vector})")
    return vector[None]


def _print_retrieval(found: Any) -> None:
    from rich.table import Table

    out = Console(soft_wrap=True)
    table = Table("#", "similarity", "label", "speaker")
    table.add_column("exemplar", overflow="fold")
    for n, nb in enumerate(found.neighbours, start=1):
        table.add_row(
            str(n),
            f"{nb.similarity:.3f}",
            nb.label,
            nb.speaker or "",
            nb.citation + (f"\n{nb.text}" if nb.text else ""),
        )
    out.print(table)
    if found.distribution:
        shares = sorted(found.distribution.items(), key=lambda kv: -kv[1])
        out.print("vote: " + ", ".join(f"{k} {v:.2f}" for k, v in shares if v >= 0.005))
    else:
        out.print(f"no neighbours: {found.reason}")


def _bar(label: str) -> Any:
    """A rich progress bar as a context manager yielding a features.Progress callback; Ctrl-C
    inside it ends the command with a note that rerunning it resumes (exit status 130)."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    @contextlib.contextmanager
    def bar() -> Any:
        columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        try:
            with Progress("{task.description}", *columns, console=err, transient=True) as bars:
                task = bars.add_task(label, total=None)
                yield lambda done, total: bars.update(task, completed=done, total=total)
        except KeyboardInterrupt:
            print(
                "interrupted: the vectors computed so far are cached; rerun the same command "
                "to resume",
                file=sys.stderr,
            )
            raise typer.Exit(130) from None

    return bar()


def _threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
