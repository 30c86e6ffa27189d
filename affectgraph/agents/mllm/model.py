"""The affect MLLM: a causal LM reading connector soft tokens, tuned with LoRA.

:class:`AffectMLLM` holds a base causal LM wrapped by peft with LoRA adapters, one connector
per modality (:mod:`~affectgraph.agents.mllm.connectors`) and the voice standardiser. A prompt
(:mod:`~affectgraph.agents.mllm.instructions`) is rendered with the tokenizer's chat template,
cut at its placeholders (``<<face>>``); text pieces are embedded by the LLM's own embedding
table and each placeholder is replaced by its connector's ``k`` soft tokens; the sequence goes
in as ``inputs_embeds``. The loss is on the answer tokens only (prompt and soft tokens are
labelled -100).

Saved as a folder: ``adapter/`` (peft's LoRA adapter), ``connectors.pt`` (connector weights and
the voice standardiser) and ``manifest.json`` (:class:`Manifest`: base model, connector and LoRA
settings, data, licence, metrics); :meth:`AffectMLLM.load` rebuilds it on the same base.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from affectgraph.agents.mllm.connectors import DIMS, ConnectorSpec, build_connector
from affectgraph.agents.mllm.instructions import PLACEHOLDERS, Clip, Example
from affectgraph.errors import ConfigError, InputError, ModelUnavailable

__all__ = ["AffectMLLM", "LoraSpec", "Manifest", "ModelSpec", "load_base", "torch_threads"]

SYSTEM = "You read emotion evidence and answer with a JSON verdict citing evidence ids."
MANIFEST_KIND, MANIFEST_VERSION = "affectgraph-mllm", 1
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))
_MODALITY = {p: m for m, p in PLACEHOLDERS.items()}
IGNORE = -100


class LoraSpec(BaseModel):
    """LoRA settings (peft ``LoraConfig``): rank, scale, dropout and the modules it adapts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])


class ModelSpec(BaseModel):
    """What to build: the ``base`` causal LM (a registry name such as
    ``smollm2-135m-instruct``, a transformers model folder, or a ``.gguf`` file), the connector
    of each modality used, and LoRA."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: str = "smollm2-135m-instruct"
    connectors: dict[str, ConnectorSpec] = Field(
        default_factory=lambda: {"face": ConnectorSpec(kind="qformer", tokens=4),
                                 "voice": ConnectorSpec(kind="mlp", tokens=2),
                                 "text": ConnectorSpec(kind="mlp", tokens=2)})
    lora: LoraSpec = LoraSpec()
    threads: int = Field(default=0, ge=0, description="torch threads (0: leave as is)")
    device: str = Field(default="cpu", description="cpu, cuda, cuda:1, mps, or auto")

    def model_post_init(self, _: Any) -> None:
        unknown = set(self.connectors) - set(DIMS)
        if unknown:
            raise ValueError(f"no connector for {sorted(unknown)}; modalities: {', '.join(DIMS)}")


class Manifest(BaseModel):
    """What a saved model is: base model, settings, training data, licence and metrics."""

    model_config = ConfigDict(extra="forbid")

    kind: str = MANIFEST_KIND
    version: int = MANIFEST_VERSION
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    spec: ModelSpec
    hidden_size: int
    data: dict[str, Any] = Field(default_factory=dict)
    licence: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, int] = Field(default_factory=dict)


def load_base(base: str) -> tuple[Any, Any]:
    """(tokenizer, causal LM) of ``base`` in float32; :class:`ConfigError` when it is not a
    transformers causal LM, :class:`ModelUnavailable` when a GGUF reader is missing."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from affectgraph.agents.llm import LOCAL_INSTALL, _local_files

    folder, gguf = _local_files(base)
    if gguf and not all(importlib.util.find_spec(p) for p in ("gguf", "accelerate")):
        raise ModelUnavailable(f"loading the GGUF model {gguf} needs `{LOCAL_INSTALL}`")
    extra = {"gguf_file": gguf} if gguf else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **extra)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **extra)
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"base model {base!r} ({folder}) is not a transformers causal LM "
                          f"({str(exc).splitlines()[0][:200]}); give a causal LM folder "
                          "(config.json + weights + tokenizer), a .gguf file, or "
                          "smollm2-135m-instruct") from None
    return tokenizer, model


class AffectMLLM(nn.Module):
    """Base LM with LoRA + connectors. Build with :meth:`create` (new) or :meth:`load`."""

    voice_mean: torch.Tensor
    voice_std: torch.Tensor

    def __init__(self, tokenizer: Any, lm: Any, connectors: nn.ModuleDict, spec: ModelSpec,
                 hidden: int) -> None:
        super().__init__()
        self.tokenizer, self.lm, self.connectors, self.spec = tokenizer, lm, connectors, spec
        self.hidden = hidden
        self.register_buffer("voice_mean", torch.zeros(DIMS["voice"]))
        self.register_buffer("voice_std", torch.ones(DIMS["voice"]))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def create(cls, spec: ModelSpec, *, tokenizer: Any = None, base_model: Any = None,
               seed: int = 0) -> AffectMLLM:
        """A new model on ``spec.base`` (or on the given ``tokenizer`` and ``base_model``),
        connectors freshly initialised from ``seed``, LoRA adapters at zero (so it starts as
        the base model)."""
        from peft import LoraConfig, get_peft_model

        if spec.threads:
            torch.set_num_threads(spec.threads)
        if base_model is None:
            tokenizer, base_model = load_base(spec.base)
        hidden = int(base_model.get_input_embeddings().embedding_dim)
        try:
            with _quiet_peft():
                lm = get_peft_model(base_model, LoraConfig(
                    r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                    target_modules=list(spec.lora.targets), task_type="CAUSAL_LM"))
        except ValueError as exc:
            raise ConfigError(f"lora.targets {spec.lora.targets} do not fit {spec.base} ({exc});"
                              " name its linear layers, e.g. q_proj, v_proj") from None
        torch.manual_seed(seed)
        connectors = nn.ModuleDict({m: build_connector(m, s, hidden)
                                    for m, s in spec.connectors.items()})
        model = cls(tokenizer, lm, connectors, spec, hidden).to(_device(spec.device))
        model.set_stage(1)
        return model

    def set_stage(self, stage: int) -> None:
        """Stage 1: only the connectors learn; stage 2: connectors and LoRA. The base LM's
        own weights never change."""
        for name, p in self.lm.named_parameters():
            p.requires_grad = stage == 2 and "lora_" in name
        for p in self.connectors.parameters():
            p.requires_grad = True

    def fit_voice_scale(self, clips: Sequence[Clip]) -> None:
        """Standardise voice functionals with the mean and spread of ``clips`` (training)."""
        rows = [c.vectors["voice"] for c in clips if "voice" in c.vectors]
        if rows:
            stacked = torch.from_numpy(np.concatenate(rows)).float()
            self.voice_mean.copy_(stacked.mean(0))
            self.voice_std.copy_(stacked.std(0, unbiased=False).clamp(min=1e-6))

    @property
    def device(self) -> torch.device:
        return self.voice_mean.device

    # -- inputs ------------------------------------------------------------------------------

    def render(self, prompt: str) -> str:
        """The prompt in the tokenizer's chat template (or a plain one), ready to answer."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                tokenize=False, add_generation_prompt=True)
        return f"{SYSTEM}\nUser: {prompt}\nAssistant: "

    def soft_tokens(self, clips: Sequence[Clip]) -> dict[str, torch.Tensor]:
        """(batch, k, hidden) soft tokens per modality with a connector."""
        out = {}
        for modality, connector in self.connectors.items():
            x, mask = self._padded(clips, modality)
            out[modality] = connector(x, mask)
        return out

    def _padded(self, clips: Sequence[Clip], modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [c.vectors.get(modality) for c in clips]
        n = max([len(s) for s in seqs if s is not None] + [1])
        x = torch.zeros(len(clips), n, DIMS[modality], device=self.device)
        mask = torch.zeros(len(clips), n, dtype=torch.bool, device=self.device)
        for i, s in enumerate(seqs):
            if s is None or not len(s):
                continue
            v = torch.from_numpy(np.asarray(s, np.float32)).to(self.device)
            if modality == "voice":
                v = (v - self.voice_mean) / self.voice_std
            x[i, : len(v)], mask[i, : len(v)] = v, True
        return x, mask

    def _sequence(self, prompt: str, soft: dict[str, torch.Tensor], i: int,
                  target: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(length, hidden) embeddings and (length,) labels of one example."""
        embed = self.lm.get_input_embeddings()
        pieces, labels = [], []
        rendered = self.render(prompt)
        cursor = 0
        for match in [*_PLACEHOLDER.finditer(rendered), None]:
            text = rendered[cursor: match.start() if match else len(rendered)]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
            if ids:
                pieces.append(embed(torch.tensor(ids, device=self.device)))
                labels.append(torch.full((len(ids),), IGNORE, device=self.device))
            if match is None:
                break
            modality = _MODALITY[match[0]]
            if modality in soft:
                pieces.append(soft[modality][i])
                labels.append(torch.full((soft[modality].shape[1],), IGNORE,
                                         device=self.device))
            cursor = match.end()
        if target is not None:
            ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            ids = [*ids, self.tokenizer.eos_token_id]
            pieces.append(embed(torch.tensor(ids, device=self.device)))
            labels.append(torch.tensor(ids, device=self.device))
        return torch.cat(pieces), torch.cat(labels)

    def batch(self, examples: Sequence[Example], *, with_target: bool = True
              ) -> dict[str, torch.Tensor]:
        """``inputs_embeds``, ``attention_mask`` and ``labels`` of a batch, right-padded
        (left-padded without targets, for generation)."""
        soft = self.soft_tokens([e.clip for e in examples])
        seqs = [self._sequence(e.prompt, soft, i, e.target if with_target else None)
                for i, e in enumerate(examples)]
        length = max(len(s) for s, _ in seqs)
        embeds = torch.zeros(len(seqs), length, self.hidden, device=self.device)
        labels = torch.full((len(seqs), length), IGNORE, device=self.device)
        mask = torch.zeros(len(seqs), length, dtype=torch.long, device=self.device)
        for i, (s, lab) in enumerate(seqs):
            where = slice(0, len(s)) if with_target else slice(length - len(s), length)
            embeds[i, where], labels[i, where], mask[i, where] = s, lab, 1
        return {"inputs_embeds": embeds, "attention_mask": mask, "labels": labels}

    def loss(self, examples: Sequence[Example]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens of ``examples``."""
        return self.lm(**self.batch(examples)).loss

    # -- inference ---------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, examples: Sequence[Example], *, max_new_tokens: int = 160) -> list[str]:
        """The greedy answer text to each example's prompt (its target is ignored)."""
        was_training = self.training
        self.eval()
        with torch_threads(self.spec.threads):
            batch = self.batch(examples, with_target=False)
            out = self.lm.generate(inputs_embeds=batch["inputs_embeds"],
                                   attention_mask=batch["attention_mask"], do_sample=False,
                                   max_new_tokens=max_new_tokens,
                                   pad_token_id=self.tokenizer.pad_token_id,
                                   eos_token_id=self.tokenizer.eos_token_id)
        self.train(was_training)
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in out]

    # -- saving ------------------------------------------------------------------------------

    def save(self, folder: str | Path, manifest: Manifest) -> Path:
        """Write ``adapter/``, ``connectors.pt`` and ``manifest.json`` into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(str(out / "adapter"))
        torch.save({"connectors": self.connectors.state_dict(),
                    "voice_mean": self.voice_mean, "voice_std": self.voice_std},
                   out / "connectors.pt")
        (out / "manifest.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder: str | Path, *, tokenizer: Any = None, base_model: Any = None
             ) -> tuple[AffectMLLM, Manifest]:
        """A saved model and its manifest; the base is loaded from the manifest's ``base``
        unless given."""
        from peft import PeftModel

        where = Path(folder)
        manifest = read_manifest(where)
        spec = manifest.spec
        if base_model is None:
            tokenizer, base_model = load_base(spec.base)
        with _quiet_peft():
            lm = PeftModel.from_pretrained(base_model, str(where / "adapter"))
        connectors = nn.ModuleDict({m: build_connector(m, s, manifest.hidden_size)
                                    for m, s in spec.connectors.items()})
        model = cls(tokenizer, lm, connectors, spec, manifest.hidden_size).to(
            _device(spec.device))
        state = torch.load(where / "connectors.pt", map_location="cpu", weights_only=True)
        model.connectors.load_state_dict(state["connectors"])
        model.voice_mean.copy_(state["voice_mean"])
        model.voice_std.copy_(state["voice_std"])
        model.eval()
        return model, manifest


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch on ``threads`` threads inside the block (0: as set), then restore the caller's
    setting. Measured here: answering on 1 thread took 16 s, on 2 threads 251 s, while other
    jobs kept both cores busy (OpenMP threads wait on each other)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device {name!r}: no CUDA GPU is visible to torch here; use "
                          "device: cpu (or auto)")
    return torch.device(name)


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a saved model; :class:`InputError` when the folder is not one."""
    file = folder / "manifest.json"
    if not file.is_file() or not (folder / "connectors.pt").is_file():
        raise InputError(f"{folder}: not a saved affect MLLM (needs manifest.json, "
                         "connectors.pt and adapter/); train one with `affectgraph finetune`")
    data = json.loads(file.read_text(encoding="utf-8"))
    if data.get("kind") != MANIFEST_KIND:
        raise InputError(f"{file}: kind {data.get('kind')!r} is not {MANIFEST_KIND!r}")
    return Manifest.model_validate(data)


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` when it wraps a model;
    the FutureWarning that prints is about peft, not about anything a user can change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        yield
