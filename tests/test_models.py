from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from affectgraph.errors import ConfigError, ModelUnavailable
from affectgraph.models import DEFAULT_PULL, Member, ModelFile, ModelRegistry, ModelSpec, sha256_of

FER = "fer-mini-xception"


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(dict(ModelRegistry.default().specs), home=tmp_path)


def test_every_entry_has_source_licence_and_checksum() -> None:
    registry = ModelRegistry.default()
    assert set(DEFAULT_PULL) <= {s.name for s in registry}
    for spec in registry:
        assert spec.licence and spec.role and spec.files
        for f in spec.files:
            assert len(f.sha256) == 64 and f.parts
            assert all(m.package and m.version and m.path for m in f.parts)


def test_unknown_model_suggests_the_right_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'whisper-base'"):
        ModelRegistry.default().get("whisper-bse")


def test_missing_model_names_the_pull_command(registry: ModelRegistry, monkeypatch) -> None:
    monkeypatch.delenv(registry.get(FER).env_var, raising=False)
    with pytest.raises(ModelUnavailable, match=f"affectgraph models pull {FER}"):
        registry.resolve(FER)


def test_pull_downloads_extracts_and_verifies(registry: ModelRegistry) -> None:
    folder = registry.pull(FER)
    spec = registry.get(FER)
    assert folder == registry.cache_dir(FER)
    assert sha256_of(folder / spec.files[0].name) == spec.files[0].sha256
    assert registry.resolve(FER) == folder
    assert registry.pull(FER) == folder  # verified already: nothing fetched again
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_checksum_mismatch_leaves_nothing_that_resolves(registry: ModelRegistry) -> None:
    good = registry.get(FER)
    bad = dataclasses.replace(
        good, name="fer-tampered",
        files=(dataclasses.replace(good.files[0], sha256="0" * 64),),
    )
    registry.register(bad)
    with pytest.raises(ModelUnavailable, match="checksum mismatch"):
        registry.pull("fer-tampered")
    assert not registry.cache_dir("fer-tampered").exists()
    assert not registry.available("fer-tampered")


def test_explicit_path_and_environment_variable_win(registry: ModelRegistry, tmp_path: Path,
                                                    monkeypatch) -> None:
    spec = registry.get(FER)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / spec.files[0].name).write_bytes(b"user model")
    assert registry.resolve(FER, mine) == mine
    monkeypatch.setenv(spec.env_var, str(mine))
    assert registry.resolve(FER) == mine
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match=r"lacks emotion_model_quantized\.tflite"):
        registry.resolve(FER, empty)


def test_installed_package_is_an_offline_pack(registry: ModelRegistry) -> None:
    """A model whose file sits whole inside an installed package resolves there."""
    import silero_vad

    onnx = Path(silero_vad.__file__).parent / "data" / "silero_vad.onnx"
    registry.register(ModelSpec(
        name="silero-vad-onnx", role="voice activity", description="Silero VAD", licence="MIT",
        files=(ModelFile("silero_vad.onnx", sha256_of(onnx),
                         (Member("silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx"),)),),
    ))
    assert registry.resolve("silero-vad-onnx") == onnx.parent


def test_split_model_is_concatenated() -> None:
    spec = ModelRegistry.default().get("whisper-base")
    model_bin = next(f for f in spec.files if f.name == "model.bin")
    assert len(model_bin.parts) == 2
    folder = ModelRegistry.default().resolve("whisper-base")
    assert (folder / "model.bin").stat().st_size == 145_217_532
