"""The affect MLLM (issue 7) end to end on a tiny random Llama built here.

Real data: the reference analysis of a RAVDESS audio-visual clip (17 face embeddings, one voice
turn) and real RAVDESS speech clips (their eGeMAPS functionals, read by the shipped voice head).
The base model is a 2-layer Llama with 32-d hidden states and a character tokenizer, so the
whole path (build data, train both stages, save, reload, infer, verify, resume) runs in
seconds; what it can *learn* in a few steps is not the point here.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from affectgraph.agents.mllm.aggregator import (
    ZERO_SHOT,
    Aggregator,
    parse_aggregator,
    shipped_folder,
)
from affectgraph.agents.mllm.connectors import ConnectorSpec, MLPProjector, QFormer
from affectgraph.agents.mllm.infer import mllm_verdict, read_answer
from affectgraph.agents.mllm.instructions import (
    build_examples,
    check_label_counts,
    clip_from_analysis,
    split_by_group,
)
from affectgraph.agents.mllm.model import (
    AffectMLLM,
    LoraSpec,
    Manifest,
    ModelSpec,
    load_base,
    read_manifest,
)
from affectgraph.agents.mllm.sources import speech_clip
from affectgraph.agents.mllm.train import (
    CheckpointSpec,
    DataSpec,
    EvalSpec,
    FinetuneConfig,
    StageSpec,
    finetune,
    load_config,
)
from affectgraph.agents.mllm.zero_shot import ZeroShotLM
from affectgraph.errors import ConfigError, InputError
from affectgraph.evals.answers import RecordingModel, answer_scores, judge_answer
from affectgraph.evals.predictors import Prediction
from affectgraph.evidence import Distribution
from affectgraph.labels import LABELS
from affectgraph.verdict import Verdict

REFERENCE = Path(__file__).parent / "reference" / "verifier_ravdess_clip.json"
ACTORS = ("01", "02", "03", "04")
EMOTIONS = ("01", "03", "04", "05")  # neutral, happy, sad, angry


def _tiny_base(folder: Path) -> Path:
    """A random 2-layer Llama and a character-level tokenizer, saved as a model folder."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c"))
    vocab = {c: i for i, c in enumerate(["<pad>", "<eos>", "<unk>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                        eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=0, eos_token_id=1,
                         bos_token_id=1)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_base(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def av_clip():
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return clip_from_analysis(data, label="happy", group="ravdess_av/actor05",
                              clip_id="01-01-03-01-01-02-05")


@pytest.fixture(scope="module")
def speech_clips(data_dir: Path, exemplar_voice_vec, av_clip):
    """16 real RAVDESS speech clips (4 actors x 4 emotions), voice read by the voice head."""
    from affectgraph.datasets import load_dataset
    from affectgraph.features import extract
    from affectgraph.heads.voice import load_voice_head

    wanted = {f"ravdess_speech/03-01-{e}-{'01' if e == '01' else '02'}-01-01-{a}"
              for a in ACTORS for e in EMOTIONS}  # neutral has only normal intensity
    items = [i for i in load_dataset("ravdess_speech", root=data_dir) if i.id in wanted]
    features = extract(items, exemplar_voice_vec)
    names = list(av_clip.evidence[17].features)  # eGeMAPSv02 order, as the analysis wrote it
    head = load_voice_head(feature_names=names)
    dists: list[Distribution] = head.predict(features.vectors)
    return [speech_clip(item, voice=features.vectors[n], voice_distribution=dists[n],
                        text="Kids are talking by the door", feature_names=names)
            for n, item in enumerate(items) if features.ok[n]]


def test_speech_clips_are_the_real_ones(speech_clips) -> None:
    assert len(speech_clips) == len(ACTORS) * len(EMOTIONS)


def _config(out: Path, base: Path, **changes) -> FinetuneConfig:
    spec = ModelSpec(base=str(base), lora=LoraSpec(r=4, alpha=8),
                     connectors={"face": ConnectorSpec(kind="qformer", tokens=2, width=32),
                                 "voice": ConnectorSpec(kind="mlp", tokens=2, width=32),
                                 "text": ConnectorSpec(kind="mlp", tokens=1, width=32)})
    settings = dict(output=str(out), seed=3, model=spec,
                    data=DataSpec(min_per_label=2, eval_share=0.25, variants=1),
                    stage1=StageSpec(steps=2, lr=1e-2, batch=4),
                    stage2=StageSpec(steps=3, lr=1e-2, batch=4),
                    checkpoint=CheckpointSpec(every_steps=100, every_minutes=60),
                    eval=EvalSpec(max_examples=2, max_new_tokens=24), progress=False)
    return FinetuneConfig(**{**settings, **changes})


# -- connectors and instructions --------------------------------------------------------------

@pytest.mark.parametrize("connector", [MLPProjector(128, 48, tokens=3, width=16),
                                       QFormer(128, 48, tokens=3, width=16, heads=2)])
def test_connectors_map_sequences_to_soft_tokens(connector) -> None:
    x = torch.randn(2, 5, 128)
    mask = torch.tensor([[True] * 5, [False] * 5])  # the second clip has no face
    out = connector(x, mask)
    assert out.shape == (2, 3, 48)
    assert torch.equal(out[1], connector.empty)  # no vectors: the learned "empty" tokens
    shorter = connector(x[:1, :3], mask[:1, :3])  # padding must not change the answer
    padded = connector(x[:1], torch.tensor([[True] * 3 + [False] * 2]))
    assert torch.allclose(shorter, padded, atol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None for n, p in connector.named_parameters() if n != "empty")


def test_instructions_are_grounded_varied_and_split_by_speaker(av_clip, speech_clips) -> None:
    clips = [av_clip, *speech_clips]
    built = build_examples(clips, seed=0, variants=3)
    assert len(built.examples) == 3 * len(clips) and not built.dropped_clips
    for example in built.examples:
        reading = read_answer(example.target, example.clip)  # the target, as if answered
        assert reading.verdict is not None and reading.verdict.grounding == 1.0, reading.reason
        assert json.loads(example.target)["label"] == example.label
    face = [e for e in built.examples if e.clip is av_clip]
    assert "[face:0-16] face 0.00-3.24 s: happy in 11 of 17 frames <<face>>" in face[0].prompt
    assert len({e.prompt.splitlines()[0] for e in built.examples}) > 1
    assert len({e.target for e in face}) > 1
    train, held = split_by_group(built.examples, 0.25, seed=1)
    assert train and held
    assert not {e.clip.group for e in train} & {e.clip.group for e in held}


def test_too_few_examples_per_label_is_a_clear_error(speech_clips) -> None:
    examples = build_examples(speech_clips[:5]).examples
    with pytest.raises(InputError, match=r"too few training examples per label.*need 3"):
        check_label_counts(examples, 3)


# -- the whole path -------------------------------------------------------------------------

def test_train_save_reload_infer_verify(tmp_path, tiny_base, av_clip, speech_clips) -> None:
    config = _config(tmp_path / "run", tiny_base)
    result = finetune(config, clips=[av_clip, *speech_clips])
    assert len(result.losses) == 5 and all(np.isfinite(result.losses))
    assert (result.folder / "adapter" / "adapter_config.json").is_file()
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["spec"]["base"] == str(tiny_base)
    assert 1 <= manifest["metrics"]["eval_examples"] <= 2  # at most eval.max_examples
    speakers = manifest["data"]
    assert speakers["eval_speakers"]
    assert not set(speakers["train_speakers"]) & set(speakers["eval_speakers"])

    model, _ = AffectMLLM.load(result.folder)  # base, adapter and connectors from disk
    lora_b = [p for n, p in model.lm.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # stage 2 moved the adapters off zero
    _, base = load_base(str(tiny_base))
    weight = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(dict(base.named_parameters())[weight],  # the base never changes
                       dict(model.lm.get_base_model().named_parameters())[weight])

    example = build_examples([av_clip]).examples[0]
    again, _ = AffectMLLM.load(result.folder)
    assert model.generate([example], max_new_tokens=12) == again.generate([example],
                                                                          max_new_tokens=12)
    fusion = Verdict(label="happy", distribution={c: 1 / len(LABELS) for c in LABELS},
                     confidence=0.2, valence=0, arousal=0)
    verdict = mllm_verdict(model, av_clip.evidence, av_clip.exemplars, fusion)
    if verdict.aggregator == "mllm":  # an answer is only used when the verifier grounds it
        assert verdict.grounding is not None and verdict.grounding >= 0.75
    else:
        assert verdict.label == "happy" and "no usable answer" in (verdict.note or "")


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path, tiny_base, av_clip,
                                                  speech_clips) -> None:
    clips = [av_clip, *speech_clips]
    no_eval = EvalSpec(max_examples=0)
    whole = finetune(_config(tmp_path / "whole", tiny_base, eval=no_eval), clips=clips)
    config = _config(tmp_path / "killed", tiny_base, eval=no_eval,
                     checkpoint=CheckpointSpec(every_steps=1, every_minutes=60))
    first = finetune(config, clips=clips, stop_after=3)  # killed after step 3 (in stage 2)
    assert len(first.losses) == 3 and not (tmp_path / "killed" / "model").exists()
    resumed = finetune(config, clips=clips)
    assert resumed.resumed_at == 3 and len(resumed.losses) == 2
    assert np.allclose(first.losses + resumed.losses, whole.losses, atol=1e-5)
    a = torch.load(whole.folder / "connectors.pt", weights_only=True)["connectors"]
    b = torch.load(resumed.folder / "connectors.pt", weights_only=True)["connectors"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


class _Scripted:
    """A stand-in MLLM that answers with a fixed text (what a tuned model might say)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, examples, **_) -> list[str]:
        return [self.text for _ in examples]


def test_mllm_answers_are_used_only_when_verified(av_clip) -> None:
    fusion = Verdict(label="sad", distribution={c: 1 / len(LABELS) for c in LABELS},
                     confidence=0.2, valence=0, arousal=0, note="fusion note")
    good = build_examples([av_clip]).examples[0].target
    used = mllm_verdict(_Scripted(good), av_clip.evidence, av_clip.exemplars, fusion)
    assert used.aggregator == "mllm" and used.label == "happy" and used.grounding == 1.0
    assert [s.cites for s in used.rationale] == [s["cites"] for s in json.loads(good)["steps"]]
    invented = good.replace("voice:0", "voice:7")
    fallback = mllm_verdict(_Scripted(invented), av_clip.evidence, av_clip.exemplars, fusion)
    assert fallback.label == "sad" and "cites unknown ids voice:7" in (fallback.note or "")
    answer = json.loads(good)
    answer["steps"][0]["claim"] = "The face shows anger in 11 of 17 frames [face:0-16]"
    wrong = json.dumps(answer)
    fallback = mllm_verdict(_Scripted(wrong), av_clip.evidence, av_clip.exemplars, fusion)
    assert fallback.aggregator != "mllm" and "grounding 0.67" in (fallback.note or "")
    unsupported = build_examples([av_clip]).examples[0]
    other = unsupported.target.replace('"label":"happy"', '"label":"fearful"')
    assert read_answer(other, av_clip).verdict is not None  # the label is the model's reading
    assert "no grounded step shows fearful" in read_answer(other, av_clip, named_label=True).reason
    prose = mllm_verdict(_Scripted("The person is happy."), av_clip.evidence, (), fusion)
    assert "not the answer JSON" in (prose.note or "")


# -- bad input ----------------------------------------------------------------------------------

def test_config_with_unknown_keys_is_rejected(tmp_path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("output: out\nstage1: {steps: 2, lr: 0.01, batchsize: 4}\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"stage1\.batchsize: unknown key.*epochs: unknown key"):
        load_config(file)
    file.write_text("output: out\nmodel: {connectors: {audio: {kind: mlp}}}\n")
    with pytest.raises(ConfigError, match=r"no connector for.*audio"):
        load_config(file)


@pytest.mark.parametrize("name", ["configs/mllm-cpu.yaml", "configs/mllm-gpu.yaml"])
def test_shipped_configs_are_valid(name) -> None:
    config = load_config(Path(__file__).parents[1] / name)
    assert config.stage1.steps > 0 and config.stage2.steps > 0


def test_running_out_of_memory_says_what_to_lower(tmp_path, tiny_base, av_clip, speech_clips,
                                                  monkeypatch) -> None:
    def no_memory(self, examples):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 9663676416 bytes")

    monkeypatch.setattr(AffectMLLM, "loss", no_memory)
    with pytest.raises(InputError, match=r"out of memory at step 1 \(batch of 4.*lower stage1"):
        finetune(_config(tmp_path / "oom", tiny_base), clips=[av_clip, *speech_clips])


def test_a_base_that_is_not_a_causal_lm_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "not-a-model"}')
    with pytest.raises(ConfigError, match="is not a transformers causal LM"):
        load_base(str(tmp_path))
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load_base(str(tmp_path / ".."))


@pytest.mark.slow  # SmolLM2-135M from the GGUF: load ~16 s, ~3-6 s per step at batch 2-4 here
def test_a_few_real_steps_on_smollm2(tmp_path, av_clip, speech_clips) -> None:
    config = FinetuneConfig(
        output=str(tmp_path / "smol"), seed=0, model=ModelSpec(threads=1),
        data=DataSpec(min_per_label=2, eval_share=0.25),
        stage1=StageSpec(steps=1, lr=1e-3, batch=2), stage2=StageSpec(steps=2, lr=3e-4, batch=2),
        eval=EvalSpec(max_examples=1, max_new_tokens=24), progress=False)
    result = finetune(config, clips=[av_clip, *speech_clips])
    assert len(result.losses) == 3 and all(0 < loss < 20 for loss in result.losses)
    assert result.manifest.hidden_size == 576
    assert result.manifest.spec.base == "smollm2-135m-instruct"
    adapter = result.folder / "adapter" / "adapter_model.safetensors"
    assert adapter.is_file() and adapter.stat().st_size < 5_000_000  # small enough to ship


# -- choosing the aggregator: the shipped model, a folder, the zero-shot baseline ---------------

@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """An untrained MLLM on the tiny base, saved as `affectgraph finetune` saves one."""
    spec = ModelSpec(base=str(tiny_base), lora=LoraSpec(r=2, alpha=4),
                     connectors={"voice": ConnectorSpec(kind="mlp", tokens=1, width=16)})
    model = AffectMLLM.create(spec)
    folder = tmp_path_factory.mktemp("tiny-mllm")
    return model.save(folder, Manifest(spec=spec, hidden_size=model.hidden,
                                       data={"text_embeddings": False}))


def test_aggregator_spellings(tiny_saved: Path) -> None:
    assert parse_aggregator("fusion") == Aggregator("fusion")
    shipped = parse_aggregator("mllm")
    assert shipped == Aggregator("mllm", str(shipped_folder())) and shipped.spelling == "mllm"
    assert parse_aggregator("mllm:zero-shot") == Aggregator("zero-shot", ZERO_SHOT)
    assert parse_aggregator(f"mllm:{tiny_saved}") == Aggregator("mllm", str(tiny_saved))
    assert parse_aggregator(f"mllm:{tiny_saved}").spelling == f"mllm:{tiny_saved}"


@pytest.mark.parametrize("spelling, message", [
    ("mlm", "unknown aggregator 'mlm'; valid: fusion, mllm, mllm:FOLDER, mllm:zero-shot"),
    ("mllm:", "unknown aggregator 'mllm:'"),
    ("llm:local", "unknown aggregator 'llm:local'"),
    ("mllm:/no/such/run", "/no/such/run: no fine-tuned model there (no manifest.json); train one "
                          "with 'affectgraph finetune configs/mllm-cpu.yaml'"),
])
def test_a_bad_aggregator_is_a_clear_error(spelling: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_aggregator(spelling)


def test_without_the_shipped_model_mllm_says_what_to_give(tmp_path, monkeypatch) -> None:
    from affectgraph.agents.mllm import aggregator

    monkeypatch.setattr(aggregator, "shipped_folder", lambda: tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"no tuned MLLM is shipped in .*give mllm:FOLDER"):
        parse_aggregator("mllm")


def test_the_shipped_model_is_small_described_and_held_out_by_the_tasks() -> None:
    from affectgraph.evals.task import get_task

    folder = shipped_folder()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 8_000_000  # adapter 1.9 MB + connectors 5.7 MB
    manifest = read_manifest(folder)
    assert manifest.spec.base == "smollm2-135m-instruct" and manifest.hidden_size == 576
    assert "RAVDESS" in manifest.licence and "non-commercial" in manifest.licence
    adapter = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == manifest.spec.base  # no machine's path
    train, held = manifest.data["train_speakers"], manifest.data["eval_speakers"]
    assert held and not set(train) & set(held)
    for task, dataset in (("ravdess_speech_mllm_heldout", "ravdess_speech"),
                          ("tess_mllm_heldout", "tess")):  # the tasks score unseen speakers only
        split = get_task(task).task.split
        assert sorted(split.test) == sorted(g for g in held if g.startswith(dataset + "/"))


def test_zero_shot_reads_the_evidence_as_text_and_falls_back_when_unusable(tiny_base, av_clip
                                                                          ) -> None:
    model = ZeroShotLM.load(str(tiny_base))
    example = build_examples([av_clip]).examples[0]
    text = model.render(example.prompt)
    assert "<<" not in text and '"steps": [{"claim"' in text
    assert "[face:0-16] face 0.00-3.24 s: happy in 11 of 17 frames\n" in text
    assert model.manifest.spec.connectors == {} and not model.manifest.data["text_embeddings"]
    fusion = Verdict(label="sad", distribution={c: 1 / len(LABELS) for c in LABELS},
                     confidence=0.2, valence=0, arousal=0)
    recorder = RecordingModel(model)
    verdict = mllm_verdict(recorder, av_clip.evidence, av_clip.exemplars, fusion,
                           name="mllm zero-shot")
    [raw] = recorder.take()  # a random model's text: not the answer JSON
    assert recorder.take() == [] and isinstance(raw, str)
    assert verdict.label == "sad" and "the mllm zero-shot gave no usable answer" in verdict.note


@pytest.mark.parametrize("text, closed", [
    ('{"label": "sad", "steps": [{"claim": "a } inside", "cites": ["voice:0"]}]}', True),
    ('{"label": "sad", "steps": [{"claim": "escaped \\" } quote"', False),
    ('{"label": "sad", "steps": [{"claim": "x"}]', False),
    ('The person shows anger.', False),
])
def test_the_zero_shot_answer_stops_after_one_object(text: str, closed: bool) -> None:
    from affectgraph.agents.mllm.zero_shot import _closes_object

    assert _closes_object(text) is closed


# -- the evaluation harness: the model's own answers -------------------------------------------

def test_answers_are_judged_and_scored_before_the_fallback(av_clip) -> None:
    good = build_examples([av_clip]).examples[0].target
    ok = judge_answer(good, av_clip.evidence, av_clip.exemplars, used=True, seconds=2.0)
    assert ok.valid_json and ok.label == "happy" and ok.steps and all(
        s.grounded for s in ok.steps)
    invented = judge_answer(good.replace("voice:0", "voice:7").replace('"happy"', '"sad"'),
                            av_clip.evidence, av_clip.exemplars)
    assert invented.valid_json and invented.label == "sad"
    assert [s.grounded for s in invented.steps].count(False) == 1
    prose = judge_answer("The person is happy.", av_clip.evidence)
    assert not prose.valid_json and prose.label is None and "not the answer JSON" in prose.reason
    predictions = [Prediction(id=str(n), label="happy", answer=a)
                   for n, a in enumerate((ok, invented, prose))]
    predictions.append(Prediction(id="3", label="sad"))  # fusion alone: no answer to score
    scores = answer_scores(["happy", "sad", "happy", "sad"], predictions, LABELS)
    steps = [*ok.steps, *invented.steps]
    assert scores is not None and scores["n"] == 3
    assert scores["json_valid"] == pytest.approx(2 / 3, abs=1e-6)
    assert scores["used"] == pytest.approx(1 / 3, abs=1e-6)
    assert scores["war"] == pytest.approx(2 / 3, abs=1e-6)  # the prose counts as wrong
    assert scores["steps"] == len(steps)
    assert scores["grounding"] == pytest.approx(sum(s.grounded for s in steps) / len(steps),
                                                abs=1e-6)
    assert scores["seconds_per_answer"] == pytest.approx(2 / 3, abs=1e-6)
    assert answer_scores(["sad"], predictions[3:], LABELS) is None


def test_eval_of_the_graph_with_an_mllm_scores_its_own_answers(tmp_path, tiny_saved,
                                                               data_dir) -> None:
    from affectgraph.api import Analyzer
    from affectgraph.evals.predictors import PredictorOptions, PredictorSpec
    from affectgraph.evals.runner import RunOptions, run_eval
    from affectgraph.evals.specialists import AvPredictor, av_revision
    from affectgraph.evals.task import manifest_task
    from affectgraph.graphs.context import AnalyzeOptions

    wavs = data_dir / "ravdess_speech" / "wav"
    rows = ["label,path,speaker",
            f"angry,{wavs / 'Actor_01' / '03-01-05-02-01-01-01.wav'},actor01",
            f"sad,{wavs / 'Actor_02' / '03-01-04-02-01-01-02.wav'},actor02"]
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    spelling = f"mllm:{tiny_saved}"
    options = PredictorOptions(aggregator=spelling)
    spec = PredictorSpec(name="av", modality="av", labels=tuple(LABELS), options=options)
    analyzer = Analyzer(AnalyzeOptions(specialists=("voice",), mllm=str(tiny_saved)))
    predictor = AvPredictor(spec, analyzer=analyzer)
    assert "+mllm-" in av_revision(spec) and "mllm" not in av_revision(
        spec.model_copy(update={"options": PredictorOptions()}))
    result = run_eval(manifest_task(tmp_path / "clips.csv", "av"), tmp_path / "out",
                      options=RunOptions(cache=tmp_path / "cache", progress=False),
                      predictor_options=options, predictor=predictor)
    answers = result.metrics["answers"]
    assert answers["n"] == 2 and 0 <= answers["json_valid"] <= 1
    for prediction in result.predictions:
        assert prediction.answer is not None and prediction.answer.seconds > 0
        if not prediction.answer.used:  # the graph's verdict is then fusion's, saying why
            assert "gave no usable answer" in prediction.answer.reason
    assert "## The aggregator model's own answers" in (tmp_path / "out" / "report.md").read_text()


def test_cached_voice_vectors_read_the_unperturbed_cache_only(data_dir: Path,
                                                               tmp_path: Path) -> None:
    from importlib.metadata import version

    from affectgraph.agents.mllm.sources import cached_voice_vectors
    from affectgraph.datasets import load_dataset
    from affectgraph.features import extract

    class Fixed:  # a voice vectoriser writing one constant vector per item into the cache
        modality, dim, revision = "voice", 88, version("opensmile")

        def __init__(self, name: str, value: float) -> None:
            self.name, self.value = name, value

        def vectorise(self, items):
            return [np.full(self.dim, self.value, np.float32) for _ in items]

        def from_evidence(self, record):
            return None

    items = load_dataset("ravdess_speech", root=data_dir)[:3]
    with pytest.raises(InputError, match="no cached eGeMAPS features of opensmile"):
        cached_voice_vectors(items, cache=tmp_path)
    extract(items[:2], Fixed("egemaps-v02", 1.0), cache=tmp_path)
    extract(items, Fixed("egemaps-v02-speed1.1", 2.0), cache=tmp_path)  # newer, perturbed
    first, second, missing = cached_voice_vectors(items, cache=tmp_path)
    assert first is not None and second is not None and missing is None
    assert float(first[0]) == float(second[0]) == 1.0
