"""Fine-tuning the affect MLLM: two stages, checkpoints, resume after a kill.

``affectgraph finetune CONFIG`` runs :func:`finetune` on a YAML :class:`FinetuneConfig`
(unknown keys are rejected):

1. **Stage 1** trains the connectors only, the LLM frozen: the soft tokens learn to say
   something the LLM can read.
2. **Stage 2** trains connectors and LoRA adapters together.

Every ``checkpoint.every_steps`` steps or ``checkpoint.every_minutes`` minutes, and at the end
of each stage, the trainable weights, the optimiser state, the stage and the step are written
atomically to ``OUTPUT/checkpoint.pt``; run the same config again after a kill and it resumes
there (batches are a function of the seed and the step, so the resumed run sees the batches the
killed one would have). At the end the model is evaluated on the held-out speakers (JSON
validity, label accuracy, grounding, unknown ids) and saved with its manifest in
``OUTPUT/model``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from affectgraph.agents.mllm.infer import read_answer
from affectgraph.agents.mllm.instructions import (
    Clip,
    Example,
    build_examples,
    check_label_counts,
    split_by_group,
)
from affectgraph.agents.mllm.model import AffectMLLM, Manifest, ModelSpec
from affectgraph.errors import ConfigError, InputError

__all__ = ["CheckpointSpec", "DataSpec", "FinetuneConfig", "FinetuneResult", "StageSpec",
           "finetune", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSpec(_Strict):
    """Training clips: the fusion ``table`` for ``datasets`` and/or an ``analyses`` manifest;
    ``text_embeddings``: feed MiniLM embeddings of the words to the text connector;
    ``variants``: phrasings per clip; ``eval_share``: share of speakers held out;
    ``min_per_label``: fewest training examples a label needs; ``limit``: at most this many
    clips from the table."""

    table: str | None = None
    datasets: list[str] = Field(default_factory=lambda: ["ravdess_speech"])
    analyses: str | None = None
    root: str | None = None
    text_embeddings: bool = True
    variants: int = Field(default=1, ge=1)
    eval_share: float = Field(default=0.2, ge=0, lt=1)
    min_per_label: int = Field(default=5, ge=1)
    limit: int | None = Field(default=None, ge=1)


class StageSpec(_Strict):
    """One stage: optimiser ``steps``, learning rate, batch size (examples per step)."""

    steps: int = Field(ge=0)
    lr: float = Field(gt=0)
    batch: int = Field(default=8, ge=1)


class CheckpointSpec(_Strict):
    every_steps: int = Field(default=20, ge=1)
    every_minutes: float = Field(default=3.0, gt=0)


class EvalSpec(_Strict):
    """Held-out evaluation after training: at most ``max_examples`` generated answers."""

    max_examples: int = Field(default=50, ge=0)
    max_new_tokens: int = Field(default=160, ge=8)
    min_grounding: float = Field(default=0.75, ge=0, le=1)


class FinetuneConfig(_Strict):
    """The whole run (a YAML file of these keys; see ``configs/mllm-cpu.yaml``)."""

    output: str
    seed: int = 0
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    stage1: StageSpec = StageSpec(steps=40, lr=1e-3)
    stage2: StageSpec = StageSpec(steps=80, lr=2e-4)
    checkpoint: CheckpointSpec = CheckpointSpec()
    eval: EvalSpec = EvalSpec()
    licence: str = ""
    progress: bool = True


def load_config(path: str | Path) -> FinetuneConfig:
    """The config in a YAML file; :class:`ConfigError` naming unknown or invalid keys."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: no such config file (see configs/mllm-cpu.yaml)")
    raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    try:
        return FinetuneConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors())
        raise ConfigError(f"{file}: {problems}. Valid top-level keys: "
                          f"{', '.join(FinetuneConfig.model_fields)}") from None


@dataclass
class FinetuneResult:
    """Where the model was saved, its manifest, and the loss of every step run here."""

    folder: Path
    manifest: Manifest
    losses: list[float] = field(default_factory=list)
    resumed_at: int = 0


# -- the run -------------------------------------------------------------------------------------

def finetune(config: FinetuneConfig, *, clips: Sequence[Clip] | None = None,
             tokenizer: Any = None, base_model: Any = None,
             stop_after: int | None = None) -> FinetuneResult:
    """Train (or resume) the run ``config`` describes and save the model.

    ``clips``, ``tokenizer`` and ``base_model`` replace the configured data and base model
    (tests); ``stop_after``: return after this many global steps, as a kill would, leaving
    only the checkpoint (tests of resuming)."""
    _seed(config.seed)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    clips = list(clips) if clips is not None else _load_clips(config.data)
    train, held = _examples(clips, config)
    model = AffectMLLM.create(config.model, tokenizer=tokenizer, base_model=base_model,
                              seed=config.seed)
    model.fit_voice_scale([e.clip for e in train])
    state = _Checkpoint(out / "checkpoint.pt", _fingerprint(config, train))
    done, losses_before = state.restore(model)
    losses: list[float] = []
    total = config.stage1.steps + config.stage2.steps
    for stage, spec, first in ((1, config.stage1, 0), (2, config.stage2, config.stage1.steps)):
        if done >= first + spec.steps or spec.steps == 0:
            continue
        model.set_stage(stage)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=spec.lr)
        state.restore_optimizer(optimizer, stage)
        done = _run_stage(model, optimizer, train, config, stage, spec, first, done, total,
                          state, losses, stop_after)
        if stop_after is not None and done >= stop_after and done < total:
            return FinetuneResult(out, _manifest(config, model, clips, train, held, {}), losses,
                                  len(losses_before))
    metrics = evaluate(model, held, config.eval)
    metrics["train_loss_last"] = (losses_before + losses)[-1] if losses_before + losses else None
    manifest = _manifest(config, model, clips, train, held, metrics)
    folder = model.save(out / "model", manifest)
    return FinetuneResult(folder, manifest, losses, len(losses_before))


def _run_stage(model: AffectMLLM, optimizer: torch.optim.Optimizer, train: list[Example],
               config: FinetuneConfig, stage: int, spec: StageSpec, first: int, done: int,
               total: int, state: _Checkpoint, losses: list[float],
               stop_after: int | None) -> int:
    """Steps ``done`` .. the stage's end; returns the global step reached."""
    bar = _bar(config.progress, total, done, f"stage {stage}")
    last_save = time.monotonic()
    model.train()
    end = first + spec.steps
    while done < end:
        batch = _batch(train, spec.batch, config.seed + 1000 * stage, done - first)
        loss = _step(model, optimizer, batch, done)
        losses.append(loss)
        done += 1
        state.history.append(loss)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
        minutes = (time.monotonic() - last_save) / 60
        stopping = stop_after is not None and done >= stop_after
        if (done % config.checkpoint.every_steps == 0 or minutes >= config.checkpoint.every_minutes
                or done == end or stopping):
            state.save(model, optimizer, stage, done)
            last_save = time.monotonic()
        if stopping:
            break
    if bar is not None:
        bar.close()
    return done


def _step(model: AffectMLLM, optimizer: torch.optim.Optimizer, batch: list[Example],
          step: int) -> float:
    try:
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise _out_of_memory(batch, step, exc) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower() or "can't allocate" in str(exc).lower():
            raise _out_of_memory(batch, step, exc) from None
        raise
    return float(loss.detach())


def _out_of_memory(batch: list[Example], step: int, exc: BaseException) -> InputError:
    return InputError(f"out of memory at step {step + 1} (batch of {len(batch)}; "
                      f"{str(exc).splitlines()[0][:120]}): lower stage1.batch / stage2.batch, "
                      "use fewer LoRA targets or connector tokens, or a smaller base model; "
                      "run again to resume from the last checkpoint")


def _batch(train: list[Example], size: int, seed: int, step: int) -> list[Example]:
    """The examples of ``step``: epochs of a seeded shuffle, so a resumed run gets the same."""
    per_epoch = max(1, len(train) // size)
    epoch, index = divmod(step, per_epoch)
    order = list(range(len(train)))
    random.Random(seed * 7919 + epoch).shuffle(order)
    picked = order[index * size:(index + 1) * size]
    return [train[i] for i in picked]


def _bar(enabled: bool, total: int, done: int, stage: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=stage, unit="step")


# -- data ------------------------------------------------------------------------------------

def _load_clips(data: DataSpec) -> list[Clip]:
    from affectgraph.agents.mllm.sources import clips_from_analyses, clips_from_table

    embed = _text_embed() if data.text_embeddings else None
    clips: list[Clip] = []
    if data.table:
        clips += clips_from_table(data.table, datasets=data.datasets, data_root=data.root,
                                  text_embed=embed, limit=data.limit)
    if data.analyses:
        clips += clips_from_analyses(data.analyses, text_embed=embed)
    if not clips:
        raise ConfigError("data: give data.table (the fusion table) and/or data.analyses "
                          "(a CSV of analysis JSON files with labels)")
    return clips


def _text_embed() -> Any:
    from affectgraph.features import TextVectoriser

    return TextVectoriser().embed


def _examples(clips: Sequence[Clip], config: FinetuneConfig
              ) -> tuple[list[Example], list[Example]]:
    built = build_examples(clips, seed=config.seed, variants=config.data.variants)
    train, held = split_by_group(built.examples, config.data.eval_share, seed=config.seed)
    check_label_counts(train, config.data.min_per_label)
    return train, held


# -- evaluation and manifest -------------------------------------------------------------------

def evaluate(model: AffectMLLM, held: Sequence[Example], spec: EvalSpec) -> dict[str, Any]:
    """Answers to held-out examples (one phrasing per clip): JSON validity, label accuracy,
    share of answers used (verified), mean grounding, share citing unknown ids."""
    picked: list[Example] = []
    for example in held:  # one phrasing per clip
        if all(p.clip.id != example.clip.id for p in picked):
            picked.append(example)
    picked = picked[:spec.max_examples]
    if not picked:
        return {"eval_examples": 0}
    readings, right = [], 0
    started = time.perf_counter()
    for example in picked:
        raw = model.generate([example], max_new_tokens=spec.max_new_tokens)[0]
        reading = read_answer(raw, example.clip, min_grounding=spec.min_grounding)
        readings.append(reading)
        label = _label(raw)
        right += label == example.label
    n = len(picked)
    grounded = [r.verdict.grounding for r in readings
                if r.verdict is not None and r.verdict.grounding is not None]
    return {"eval_examples": n, "eval_speakers": len({e.clip.group for e in picked}),
            "json_valid": sum(r.valid_json for r in readings) / n,
            "label_accuracy": right / n, "used": len(grounded) / n,
            "grounding_mean_used": float(np.mean(grounded)) if grounded else None,
            "unknown_id_rate": sum(bool(r.unknown_ids) for r in readings) / n,
            "seconds_per_answer": (time.perf_counter() - started) / n}


def _label(raw: str) -> str | None:
    from affectgraph.agents.llm_prompt import Answer, parse_json

    try:
        return Answer.model_validate(parse_json(raw)).label
    except (ValueError, ValidationError):
        return None


def _manifest(config: FinetuneConfig, model: AffectMLLM, clips: Sequence[Clip],
              train: Sequence[Example], held: Sequence[Example],
              metrics: dict[str, Any]) -> Manifest:
    data = {"table": config.data.table, "datasets": config.data.datasets,
            "analyses": config.data.analyses, "clips": len(clips),
            "text_embeddings": config.data.text_embeddings,
            "train_examples": len(train), "eval_examples": len(held),
            "train_speakers": sorted({e.clip.group for e in train}),
            "eval_speakers": sorted({e.clip.group for e in held})}
    return Manifest(spec=config.model, hidden_size=model.hidden, data=data,
                    licence=config.licence, metrics=metrics,
                    steps={"stage1": config.stage1.steps, "stage2": config.stage2.steps})


# -- checkpoints -------------------------------------------------------------------------------

class _Checkpoint:
    """The run's resumable state in one file, written atomically (a kill mid-write leaves the
    previous checkpoint)."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path, self.fingerprint = path, fingerprint
        self.history: list[float] = []
        self._optimizer: dict[str, Any] | None = None
        self._stage = 0

    def save(self, model: AffectMLLM, optimizer: torch.optim.Optimizer, stage: int,
             step: int) -> None:
        state = {"fingerprint": self.fingerprint, "stage": stage, "step": step,
                 "weights": _trainable_state(model), "optimizer": optimizer.state_dict(),
                 "history": self.history, "rng": torch.get_rng_state()}
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def restore(self, model: AffectMLLM) -> tuple[int, list[float]]:
        """The global step to resume from (0 when starting afresh) and the earlier losses."""
        if not self.path.is_file():
            return 0, []
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            raise ConfigError(f"{self.path} is a checkpoint of another run (its config or data "
                              "differ); delete it or choose another output folder")
        model.load_state_dict(state["weights"], strict=False)
        torch.set_rng_state(state["rng"])
        self.history = list(state["history"])
        self._optimizer, self._stage = state["optimizer"], state["stage"]
        return int(state["step"]), list(self.history)

    def restore_optimizer(self, optimizer: torch.optim.Optimizer, stage: int) -> None:
        if self._optimizer is not None and self._stage == stage:
            optimizer.load_state_dict(self._optimizer)
        self._optimizer = None


def _trainable_state(model: AffectMLLM) -> dict[str, torch.Tensor]:
    """Connector, LoRA and standardiser tensors: all that training changes."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.startswith(("connectors.", "voice_")) or "lora_" in k}


def _fingerprint(config: FinetuneConfig, train: Sequence[Example]) -> str:
    """What must match for a checkpoint to belong to this run (not ``progress``, ``eval``)."""
    keep = config.model_dump(mode="json", exclude={"progress", "eval", "checkpoint"})
    keep["train"] = [e.clip.id + e.target for e in train]
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
