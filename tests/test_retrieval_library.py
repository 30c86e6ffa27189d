"""Exemplar libraries on real data: build, load, search with exclusion, add, tamper, resume."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from affectgraph.datasets import Item, load_dataset
from affectgraph.errors import ConfigError, InputError, ModelUnavailable
from affectgraph.retrieval.build import BuildOptions, Part, build_library, sample_per_label
from affectgraph.retrieval.index import IndexOptions
from affectgraph.retrieval.library import ExemplarLibrary, partial_of
from affectgraph.retrieval.manifest import Exemplar


@pytest.fixture(scope="module")
def ravdess40(data_dir: Path) -> list[Item]:
    """40 real RAVDESS speech clips: actors 01-05, 8 emotions each."""
    items = [i for i in load_dataset("ravdess_speech", root=data_dir)
             if i.speaker in {f"actor{n:02d}" for n in range(1, 6)}]
    assert len(items) == 40
    return items


@pytest.fixture(scope="module")
def meld200(data_dir: Path) -> list[Item]:
    return load_dataset("meld", root=data_dir, split="train")[:200]


@pytest.fixture(scope="module")
def voice_lib(ravdess40: list[Item], exemplar_voice_vec, tmp_path_factory) -> ExemplarLibrary:
    folder = tmp_path_factory.mktemp("voice") / "ravdess40"
    return build_library([Part(ravdess40, exemplar_voice_vec)], folder, BuildOptions(name="r40"))


@pytest.fixture(scope="module")
def text_lib(meld200: list[Item], exemplar_text_vec, tmp_path_factory) -> ExemplarLibrary:
    folder = tmp_path_factory.mktemp("text") / "meld200"
    return build_library([Part(meld200, exemplar_text_vec)], folder,
                         BuildOptions(name="meld200", dtype="float16"))


def test_voice_library_folder_and_manifest(voice_lib: ExemplarLibrary) -> None:
    folder = voice_lib.folder
    assert folder is not None and not partial_of(folder).exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "items.jsonl", "manifest.json", "transform.npy", "vectors.npy"]
    m = json.loads((folder / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["modality"] == "voice" and m["size"] == 40
    assert m["counts"] == {"neutral": 10, "happy": 5, "sad": 5, "angry": 5, "fearful": 5,
                           "disgusted": 5, "surprised": 5}  # calm -> neutral
    source, = m["sources"]
    assert source["dataset"] == "ravdess_speech" and source["licence"].startswith("CC BY-NC-SA")
    assert source["label_map"]["calm"] == "neutral" and source["count"] == 40
    assert m["vectoriser"] == {"name": "egemaps-v02", "revision": voice_lib.manifest.vectoriser
                               .revision, "dim": 88, "standardised": True}
    assert m["index"]["kind"] == "flat" and set(m["files"]) == {
        "items.jsonl", "transform.npy", "vectors.npy"}
    first = json.loads((folder / "items.jsonl").read_text().splitlines()[0])
    assert first == {"id": "ravdess_speech/03-01-01-01-01-01-01", "label": "neutral",
                     "dataset": "ravdess_speech", "speaker": "actor01",
                     "media": "ravdess_speech/wav/Actor_01/03-01-01-01-01-01-01.wav"}
    vectors = np.load(folder / "vectors.npy")
    assert vectors.dtype == np.float32 and vectors.shape == (40, 88)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_load_gives_the_same_search(voice_lib: ExemplarLibrary, ravdess40: list[Item],
                                    exemplar_voice_vec) -> None:
    raw = np.stack(exemplar_voice_vec.vectorise(ravdess40[:3]))
    loaded = ExemplarLibrary.load(voice_lib.folder)
    a, b = voice_lib.nearest(raw, 5), loaded.nearest(raw, 5)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0], atol=1e-6)
    assert (a[1][:, 0] == [0, 1, 2]).all() and np.allclose(a[0][:, 0], 1.0, atol=1e-4)


def test_excluding_the_speaker_excludes_all_their_clips(voice_lib: ExemplarLibrary,
                                                        ravdess40: list[Item],
                                                        exemplar_voice_vec) -> None:
    query = ravdess40[9]  # actor02
    raw = exemplar_voice_vec.vectorise([query])[0][None]
    _, rows = voice_lib.nearest(raw, 40, exclude_groups=["ravdess_speech/actor02"])
    found = [voice_lib.exemplars[r] for r in rows[0] if r >= 0]
    assert len(found) == 32 and all(e.speaker != "actor02" for e in found)
    _, rows = voice_lib.nearest(raw, 40, exclude_groups=["ravdess_speech"])  # a whole data set
    assert (rows == -1).all()


def test_text_library_in_float16_with_forced_ivf(meld200: list[Item], exemplar_text_vec,
                                                 tmp_path: Path) -> None:
    options = BuildOptions(name="meld-ivf", dtype="float16", index=IndexOptions(kind="ivf"))
    built = build_library([Part(meld200, exemplar_text_vec)], tmp_path / "ivf", options)
    assert (tmp_path / "ivf" / "index.faiss").is_file()
    loaded = ExemplarLibrary.load(tmp_path / "ivf")
    assert loaded.index.kind == "ivf" and loaded.manifest.index.nlist == 200 // 39
    assert loaded.vectors.dtype == np.float16 and len(loaded) == 200
    raw = exemplar_text_vec.embed([meld200[7].text, meld200[50].text])
    _, rows = loaded.nearest(raw, 3)
    assert rows[:, 0].tolist() == [7, 50] or meld200[rows[0, 0]].text == meld200[7].text
    assert np.array_equal(built.nearest(raw, 3)[1], rows)


def test_tampered_or_unfinished_libraries_never_load(text_lib: ExemplarLibrary,
                                                     tmp_path: Path) -> None:
    import shutil

    def edit(p: Path) -> None:
        p.write_text(p.read_text().replace("a", "b", 1))

    def truncate(p: Path) -> None:
        p.write_bytes(p.read_bytes()[:-64])

    for name, damage in [("items.jsonl", edit), ("vectors.npy", truncate),
                         ("vectors.npy", Path.unlink)]:
        copy = tmp_path / f"copy-{name}-{damage.__name__}"
        shutil.copytree(text_lib.folder, copy)
        damage(copy / name)
        with pytest.raises(ModelUnavailable, match=rf"{copy}.*{name}.*rebuild"):
            ExemplarLibrary.load(copy)
    unfinished = partial_of(tmp_path / "lib")
    shutil.copytree(text_lib.folder, unfinished)
    with pytest.raises(ModelUnavailable, match="unfinished build"):
        ExemplarLibrary.load(unfinished)
    with pytest.raises(ModelUnavailable, match="not an exemplar library"):
        ExemplarLibrary.load(tmp_path)


class Counting:
    """A vectoriser that counts the items it really vectorises (not served from the cache)
    and can be told to fail after some, like a build killed half-way."""

    def __init__(self, inner, fail_after: int | None = None) -> None:
        self.inner, self.fail_after, self.count = inner, fail_after, 0
        self.modality, self.name, self.dim = inner.modality, inner.name, inner.dim
        self.revision = inner.revision

    def vectorise(self, items: Sequence[Item]) -> list:
        if self.fail_after is not None and self.count >= self.fail_after:
            raise KeyboardInterrupt
        self.count += len(items)
        return self.inner.vectorise(items)


def test_interrupted_build_resumes_or_restarts(meld200: list[Item], exemplar_text_vec,
                                               tmp_path: Path) -> None:
    folder, cache = tmp_path / "lib", tmp_path / "cache"
    items = list({i.text: i for i in meld200}.values())[:180]  # distinct texts: no cache hits
    options = BuildOptions(name="resumable", batch=50)
    first = Counting(exemplar_text_vec, fail_after=100)
    with pytest.raises(KeyboardInterrupt):
        build_library([Part(items, first)], folder, options, cache=cache)
    assert first.count == 100 and not folder.exists()
    with pytest.raises(ModelUnavailable):
        ExemplarLibrary.load(partial_of(folder))

    seen: list[tuple[int, int]] = []
    resumed = Counting(exemplar_text_vec)
    library = build_library([Part(items, resumed)], folder, options, cache=cache,
                            progress=lambda done, total: seen.append((done, total)))
    assert resumed.count == 80 and seen[0] == (150, 180) and seen[-1] == (180, 180)
    assert len(library) == 180 and not partial_of(folder).exists()

    restarted = Counting(exemplar_text_vec)
    build_library([Part(items, restarted)], folder, options, cache=cache, resume=False,
                  overwrite=True)
    assert restarted.count == 180  # every vector computed again
    assert len(ExemplarLibrary.load(folder)) == 180 and not partial_of(folder).exists()


def test_an_interrupted_restart_resumes_from_its_own_cache(meld200: list[Item],
                                                           exemplar_text_vec,
                                                           tmp_path: Path) -> None:
    folder, shared = tmp_path / "lib", tmp_path / "shared-cache"
    items = list({i.text: i for i in meld200}.values())[:120]
    options = BuildOptions(name="restarted", batch=40)
    build_library([Part(items, exemplar_text_vec)], tmp_path / "first", options, cache=shared)
    killed = Counting(exemplar_text_vec, fail_after=40)
    with pytest.raises(KeyboardInterrupt):  # --restart ignores the shared cache...
        build_library([Part(items, killed)], folder, options, cache=shared, resume=False)
    assert killed.count == 40 and (partial_of(folder) / "features").is_dir()
    resumed = Counting(exemplar_text_vec)  # ...and a resume continues the restart
    build_library([Part(items, resumed)], folder, options, cache=shared)
    assert resumed.count == 80 and not partial_of(folder).exists()
    assert len(ExemplarLibrary.load(folder)) == 120


def test_add_checks_rows_and_survives_save(text_lib: ExemplarLibrary, meld200: list[Item],
                                           exemplar_text_vec, tmp_path: Path) -> None:
    library = ExemplarLibrary.load(text_lib.folder)
    bad = [Exemplar(id=f"new/{n}", label=label, dataset="mine") for n, label in
           enumerate(["angry", "happy", "bored", "sad"])] + [
        Exemplar(id=meld200[0].id, label="neutral", dataset="meld")]
    vectors = [np.ones(384), np.ones(128), np.ones(384), np.full(384, np.nan), np.ones(384)]
    with pytest.raises(InputError) as caught:
        library.add(bad, vectors)
    message = str(caught.value)
    assert "4 bad exemplar row(s)" in message
    assert "row 1 (new/1): 128 values, expected 384" in message
    assert "row 2 (new/2): unknown label 'bored'" in message
    assert "row 3 (new/3): non-finite values" in message
    assert f"row 4: id '{meld200[0].id}' is already in the library" in message
    assert len(library) == 200  # nothing added

    texts = ["I can't believe you did that, I'm furious!", "What a lovely surprise party!"]
    library.add([Exemplar(id="mine/0", label="angry", dataset="mine", text=texts[0]),
                 Exemplar(id="mine/1", label="surprised", dataset="mine", text=texts[1])],
                exemplar_text_vec.embed(texts), licences={"mine": "CC0"})
    assert len(library) == 202 and library.manifest.counts["surprised"] >= 1
    library.save(tmp_path / "grown")
    grown = ExemplarLibrary.load(tmp_path / "grown")
    _, rows = grown.nearest(exemplar_text_vec.embed(texts), 1)
    assert rows[:, 0].tolist() == [200, 201]
    assert grown.manifest.licences["mine"] == "CC0" and grown.manifest.size == 202


def test_vectoriser_mismatch_and_existing_folder(text_lib: ExemplarLibrary, meld200: list[Item],
                                                 exemplar_voice_vec, exemplar_text_vec) -> None:
    with pytest.raises(ConfigError, match=r"holds minilm-l6-v2 .* egemaps-v02"):
        text_lib.check_vectoriser(exemplar_voice_vec)
    text_lib.check_vectoriser(exemplar_text_vec)
    with pytest.raises(InputError, match="already exists"):
        build_library([Part(meld200, exemplar_text_vec)], text_lib.folder,
                      BuildOptions(name="again"))


def test_sample_per_label_is_seeded_and_capped(meld200: list[Item]) -> None:
    a, = sample_per_label([meld200], 10, seed=1)
    b, = sample_per_label([meld200], 10, seed=1)
    assert a == b and max(sum(i.label == x.label for i in a) for x in a) == 10
    assert a == sorted(a, key=meld200.index)  # order kept
