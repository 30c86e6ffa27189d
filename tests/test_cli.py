"""The command line as a user runs it: real processes, real files, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "affectgraph", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_analyze_prints_a_summary_and_writes_json(ravdess_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "evidence.json"
    result = run("analyze", str(ravdess_clip), "--json", str(out), "--asr-model", "whisper-tiny.en")
    assert result.returncode == 0, result.stderr
    for heading in ("Face", "Voice", "Words"):
        assert heading in result.stdout
    assert "kids are talking by" in result.stdout.lower()
    data = json.loads(out.read_text())
    assert list(tmp_path.iterdir()) == [out]  # the partial file was renamed, not left beside it
    assert data["media"]["kind"] == "video"
    assert {e["modality"] for e in data["evidence"]} == {"face", "voice", "text"}


def test_json_to_stdout_with_switches(speech_wav: Path) -> None:
    result = run("analyze", str(speech_wav), "--json", "-", "--no-transcript", "--no-face")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {e["modality"] for e in data["evidence"]} == {"voice"}
    assert data["skipped"]["transcript"] == "switched off"


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "nope.mp4"], "nope.mp4: no such file"),
        (["analyze", "{clip}", "--fps", "-1"], "fps"),
        (["analyze", "{clip}", "--asr-model", "whisper-bse"], "did you mean 'whisper-base'"),
        (["analyze", "{clip}", "--channels", "both"], "channels"),
        (["analyze", "{clip}", "--transcript", "missing.vtt"], "missing.vtt"),
        (["models", "pull", "whisper-bse"], "did you mean 'whisper-base'"),
        (["analyze", "{clip}", "--colour"], "No such option"),
        (["analyze", "{clip}", "--exclude-group", "ravdess_speech/actr05"],
         "did you mean 'ravdess_speech/actor05'"),
        (["analyze", "{clip}", "--abstain-below", "1.5"], "abstain_below"),
        (["analyze", "{clip}", "--llm", "gpt-4o"], "openai:MODEL"),
        (["analyze", "{clip}", "--llm", "openai:m", "--llm-base-url", "http://127.0.0.1:9/v1"],
         "http://127.0.0.1:9/v1"),
        (["chat", "{clip}", "--llm", "lokal:x"], "local:PATH"),
        (["chat", "{clip}", "--aggregator", "mlm"],
         "unknown aggregator 'mlm'; valid: fusion, mllm, mllm:FOLDER, mllm:zero-shot"),
        (["chat", "{clip}", "--aggregator", "mllm:no-such-run"],
         "no-such-run: no fine-tuned model there (no manifest.json)"),
        (["eval", "ravdess_av", "--aggregator", "mllm:no-such-run"],
         "no-such-run: no fine-tuned model there"),
        (["eval", "tess", "--aggregator", "mllm"],
         "writes the whole graph's verdict: it applies to the av modality (or --ablation), "
         "not to --modality voice"),
        (["eval", "ravdess_av", "--predictor", "dummy", "--aggregator", "mllm:zero-shot"],
         "not to --predictor dummy"),
        (["eval", "meld", "--refit-head"],
         "--refit-head refits the voice head; this run scores text"),
        (["analyze", "{clip}", "--voice-encoder", "whisper-large"],
         "the voice heads are trained for whisper-base only"),
        (["train", "voice", "--encoder", "wav2vec"],
         "the voice heads are trained for whisper-base only"),
    ],
)
def test_user_errors_are_one_clear_line(args: list[str], message: str, speech_wav: Path) -> None:
    result = run(*[a.replace("{clip}", str(speech_wav)) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_renamed_text_file(tmp_path: Path) -> None:
    fake = tmp_path / "meeting.mp4"
    fake.write_text("minutes of the meeting\n" * 30)
    result = run("analyze", str(fake))
    assert result.returncode == 2
    assert "meeting.mp4: not a readable media file (it looks like a text file)" in result.stderr


def test_models_list_shows_licences() -> None:
    result = run("models", "list")
    assert result.returncode == 0
    assert "whisper-base" in result.stdout and "Apache-2.0" in result.stdout


def test_stream_and_report(speech_wav: Path, tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.html"  # a folder that does not exist yet is made
    result = run("analyze", str(speech_wav), "--stream", "--report", str(report),
                 "--asr-model", "whisper-tiny.en", "--exclude-group", "ravdess_speech/actor01")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = {key: next(n for n, line in enumerate(lines) if line.startswith(key))
             for key in ("voice:0", "text:0", "exemplars", "verdict", "step")}
    assert first["voice:0"] < first["exemplars"] < first["verdict"] < first["step"]
    assert "actor01" not in result.stdout.split("exemplars", 1)[1].split("verdict")[0]
    html = report.read_text()
    assert "<svg" in html and "voice:0" in html


def test_an_output_that_cannot_be_written_fails_before_the_analysis(speech_wav: Path,
                                                                     tmp_path: Path) -> None:
    result = run("analyze", str(speech_wav), "--json", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--json {tmp_path} is a folder; give a file name" in result.stderr
    (tmp_path / "taken").write_text("a file, not a folder")
    result = run("analyze", str(speech_wav), "--report", str(tmp_path / "taken" / "r.html"))
    assert result.returncode == 2 and "cannot make its folder" in result.stderr
    assert "analys" not in result.stdout.lower()


def test_llm_verdict_falls_back_to_fusion_and_says_why(speech_wav: Path) -> None:
    from tests.openai_server import Reply, ScriptedOpenAIServer

    invented = json.dumps({"label": "angry", "abstention": None, "confidence": 0.9,
                           "steps": [{"claim": "The voice is furious [voice:42]",
                                      "cites": ["voice:42"]}]})
    with ScriptedOpenAIServer(tuple(Reply(content=invented) for _ in range(3))) as server:
        result = run("analyze", str(speech_wav), "--no-face", "--no-transcript", "--json", "-",
                     "--llm", "openai:scripted", "--llm-base-url", server.url)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)["verdict"]
    assert verdict["aggregator"].startswith("fusion")
    assert "voice:42" in verdict["note"] and "fusion verdict" in verdict["note"]
    assert verdict["grounding"] == 1.0
