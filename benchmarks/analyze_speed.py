"""Speed and memory of `affectgraph analyze` on this machine.

Prints:
1. warm latency per clip on the 7 RAVDESS audio-visual clips (models loaded once, first clip
   run once before timing);
2. real-time factor (processing seconds / media seconds) and peak RSS of whole analyses of long
   inputs built here: the RAVDESS speech wavs concatenated to N minutes (audio only), and the
   RAVDESS audio-visual clips remuxed end to end to N minutes (H.264 720p30 + AAC, with video).
   Each long run happens in a fresh process so its peak RSS is its own. With several lengths,
   the last lines give each input's peak RSS at the longest length against the shortest (memory
   is meant to be bounded: at most +10 %).

    python benchmarks/analyze_speed.py                  # 3 and 30 minutes
    python benchmarks/analyze_speed.py --minutes 3      # quicker
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def warm_latency() -> None:
    from affectgraph import Analyzer

    clips = sorted((DATA / "ravdess_av" / "mp4").glob("*.mp4"))
    analyzer = Analyzer()
    analyzer.analyze(clips[0])  # load every model once
    times = []
    for clip in clips:
        started = time.perf_counter()
        result = analyzer.analyze(clip)
        times.append(time.perf_counter() - started)
        assert not result.failures, result.failures
        print(f"  {clip.name}: {result.media.duration:.2f} s clip in {times[-1]:.2f} s")
    print(f"warm latency per clip (7 RAVDESS AV clips, ~3.2 s each): mean {np.mean(times):.2f} s, "
          f"max {np.max(times):.2f} s")


def build_speech_wav(minutes: float, out: Path) -> Path:
    """Concatenate the RAVDESS speech wavs (16 kHz mono, 0.5 s pauses) to ``minutes``."""
    from affectgraph.media import read_audio

    wavs = sorted((DATA / "ravdess_speech" / "wav").rglob("*.wav"))
    pause = np.zeros(8000, dtype=np.float32)
    target = int(minutes * 60 * 16_000)
    written = 0
    with wave.open(str(out), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(16_000)
        while written < target:
            for wav in wavs:
                audio = np.concatenate([read_audio(wav, mono=True)[0], pause])[: target - written]
                fh.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
                written += len(audio)
                if written >= target:
                    break
    return out


def build_av_mp4(minutes: float, out: Path) -> Path:
    """Remux the RAVDESS audio-visual clips end to end (no re-encoding) to ``minutes``."""
    import av

    clips = sorted((DATA / "ravdess_av" / "mp4").glob("*.mp4"))
    target = minutes * 60
    with av.open(str(out), "w") as sink:
        with av.open(str(clips[0])) as first:
            streams = {s.type: sink.add_stream_from_template(s) for s in (
                first.streams.video[0], first.streams.audio[0])}
        offset = 0.0
        while offset < target:
            for clip in clips:
                with av.open(str(clip)) as source:
                    length = 0.0
                    for packet in source.demux(source.streams.video[0], source.streams.audio[0]):
                        if packet.dts is None:
                            continue
                        shift = round(offset / packet.time_base)
                        packet.pts += shift
                        packet.dts += shift
                        length = max(length, float((packet.pts - shift + packet.duration)
                                                   * packet.time_base))
                        packet.stream = streams[packet.stream.type]
                        sink.mux(packet)
                offset += length
                if offset >= target:
                    break
    return out


def run_long(path: Path, label: str) -> dict:
    """Analyse ``path`` in a fresh process; return its duration, seconds and peak RSS."""
    code = (
        "import json, resource, sys, time\n"
        "from affectgraph import Analyzer\n"
        "a = Analyzer()\n"
        "t = time.perf_counter()\n"
        f"r = a.analyze({str(path)!r})\n"
        "s = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'duration': r.media.duration, 'seconds': s, 'rss_mb': rss,"
        " 'failures': r.failures, 'evidence': len(r.evidence),"
        " 'stages': r.seconds}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rtf = result["seconds"] / result["duration"]
    print(f"{label}: {result['duration'] / 60:.1f} min in {result['seconds']:.0f} s -> real-time "
          f"factor {rtf:.3f}; peak RSS {result['rss_mb']:.0f} MB; {result['evidence']} evidence "
          f"records; failures {result['failures'] or 'none'}")
    stages = sorted(result["stages"].items(), key=lambda kv: -kv[1])
    print("  seconds per graph node (the specialists overlap): "
          + ", ".join(f"{k} {v:.1f}" for k, v in stages))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[3.0, 30.0])
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    peaks: dict[str, dict[float, float]] = {"audio only": {}, "with video": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            wav = build_speech_wav(minutes, Path(tmp) / f"speech-{minutes:g}min.wav")
            peaks["audio only"][minutes] = run_long(wav, f"audio only, {minutes:g} min")["rss_mb"]
            wav.unlink()
            mp4 = build_av_mp4(minutes, Path(tmp) / f"av-{minutes:g}min.mp4")
            peaks["with video"][minutes] = run_long(
                mp4, f"with video (720p30), {minutes:g} min")["rss_mb"]
            mp4.unlink()
    for kind, by_length in peaks.items():
        short, long = min(by_length), max(by_length)
        if long > short:
            growth = by_length[long] / by_length[short] - 1
            print(f"{kind}: peak RSS {by_length[long]:.0f} MB at {long:g} min against "
                  f"{by_length[short]:.0f} MB at {short:g} min: {growth:+.1%}")
    # Last: a child forked from a process holding the loaded models starts with their pages
    # in its RSS, and ru_maxrss survives exec, so the long runs above must come first.
    if not args.skip_latency:
        warm_latency()


if __name__ == "__main__":
    main()
