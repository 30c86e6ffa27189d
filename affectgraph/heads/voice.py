"""The voice emotion heads: calibrated classifiers over a speech turn's 88 eGeMAPS functionals.

Two heads ship, each in the one head format (:mod:`.artefact`), trained by
:mod:`affectgraph.heads.voice_training` on RAVDESS + TESS:

- ``voice``: the **single-clip** head. It reads one turn's functionals (what
  :attr:`VoiceEvidence.features <affectgraph.evidence.VoiceEvidence.features>` holds) and
  nothing else; plug :meth:`VoiceHead.classifier` into
  :attr:`VoiceModel.classifier <affectgraph.tools.voice.VoiceModel.classifier>`.
- ``voice-speaker-norm``: the **speaker-adaptive** head. Its input is the turn's functionals
  standardised with the mean and standard deviation of the *same speaker's other turns* (never
  the turn itself; :func:`leave_one_out_z`), which removes much of what makes voices differ
  (pitch, timbre, loudness habits), followed by the raw functionals: [z (88), raw (88)]. It
  needs enough speech from the speaker (:class:`SpeakerNorm`); turns without enough fall back
  to the single-clip head, and say so.

Held out by actor on RAVDESS (18 folds, 7 classes) the single-clip head reaches UAR 0.58 and the
speaker-adaptive head 0.69 (manifests' ``metrics``). There each actor's other clips span all
emotions; a real speaker's other turns may be mostly one mood, which leaves less to gain.

With an ``encoder`` (``load_voice_head(encoder="whisper-base")``: folders ``voice-whisper-base``
and ``voice-whisper-base-speaker-norm``) the heads read the turn's eGeMAPS functionals followed
by the mean Whisper-encoder state over the turn (:mod:`affectgraph.speech_encoding`; 88 + 512
values, in ``features`` under :func:`~affectgraph.speech_encoding.feature_names`), and the
speaker-adaptive one the speaker-z and raw values of all of them. Held out as above they reach
UAR 0.81 single-clip and 0.85 speaker-normalised, at one Whisper encoder pass per turn.

>>> head = load_voice_head()  # doctest: +SKIP
>>> readings = head.classify(voice_records, speaker_normalise=True)  # doctest: +SKIP
>>> [(r.distribution, r.speaker_normalised, r.note) for r in readings if r]  # doctest: +SKIP

Licences: the heads are derived from RAVDESS (CC BY-NC-SA 4.0) and TESS (CC BY-NC-ND 4.0),
recorded in each manifest's ``trained_on``: non-commercial use only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from affectgraph.errors import InputError, ModelUnavailable
from affectgraph.evidence import Distribution, ModelRef, VoiceEvidence
from affectgraph.heads.artefact import Head
from affectgraph.speech_encoding import encoder_names
from affectgraph.speech_encoding import feature_names as encoder_feature_names

SINGLE = "voice"
SPEAKER = "voice-speaker-norm"
"""Folder names of the two eGeMAPS heads inside a heads folder (the package's ``assets/heads``);
:func:`head_folders` names those of the encoder heads."""
Z_CLIP = 5.0
"""Speaker-standardised values are clipped to +-Z_CLIP: with a handful of other turns a
feature's spread can be near zero, and one stray turn must not dominate the logits."""
_TINY_VARIANCE = 1e-12


def head_folders(encoder: str | None = None) -> tuple[str, str]:
    """Folder names of the single-clip and speaker-adaptive heads: :data:`SINGLE` and
    :data:`SPEAKER` without an ``encoder``, else ``voice-<encoder>`` and
    ``voice-<encoder>-speaker-norm``."""
    if encoder is None:
        return SINGLE, SPEAKER
    return f"{SINGLE}-{encoder}", f"{SINGLE}-{encoder}{SPEAKER.removeprefix(SINGLE)}"


def heads_dir() -> Path:
    """The heads folder shipped inside the package (``affectgraph/assets/heads``)."""
    return Path(str(resources.files("affectgraph") / "assets" / "heads"))


class SpeakerNorm(BaseModel):
    """When a turn may be speaker-normalised: its speaker (in the same recording) must have at
    least ``min_turns`` *other* turns with features, lasting ``min_seconds`` together."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_turns: int = Field(default=3, ge=2)
    min_seconds: float = Field(default=10.0, ge=0)


def leave_one_out_z(features: np.ndarray) -> np.ndarray:
    """Each row of (n, d) ``features`` standardised by the mean and standard deviation
    (ddof=1) of the *other* n - 1 rows, clipped to +-:data:`Z_CLIP`; (n, d) float64.

    Needs n >= 3 (a spread needs two other rows). A row never enters its own statistics.
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n < 3:
        raise InputError(f"speaker normalisation needs at least 3 turns of a speaker, got {n}")
    centred = x - x.mean(axis=0)  # centring first keeps the sums well conditioned
    total, squares = centred.sum(axis=0), (centred**2).sum(axis=0)
    mean = (total - centred) / (n - 1)
    variance = (squares - centred**2 - (n - 1) * mean**2) / (n - 2)
    z = (centred - mean) / np.sqrt(np.maximum(variance, _TINY_VARIANCE))
    return np.clip(z, -Z_CLIP, Z_CLIP)


@dataclass(frozen=True)
class VoiceReading:
    """A turn's emotion distribution; ``speaker_normalised`` says which head gave it and
    ``note`` why the single-clip head was used when speaker normalisation was asked for."""

    distribution: Distribution
    speaker_normalised: bool
    note: str | None = None


@dataclass(frozen=True)
class VoiceHead:
    """The loaded voice heads and the feature order they read (the 88 eGeMAPSv02 names, then,
    for encoder heads, the encoder embedding's)."""

    single: Head
    speaker: Head | None
    feature_names: tuple[str, ...]

    @property
    def ref(self) -> ModelRef:
        """``voice-head`` and the first 12 hex digits of the single-clip weights' sha256."""
        name = "voice-head" if self.encoder is None else f"voice-head+{self.encoder}"
        return ModelRef(name=name, revision=self.single.manifest.weights_sha256[:12])

    @property
    def encoder(self) -> str | None:
        """The speech encoder whose embedding the heads read beside eGeMAPS
        (``whisper-base``), or ``None`` for the eGeMAPS heads."""
        found = encoder_names(self.single.manifest.features)
        return found[0] if found else None

    def predict(self, features: np.ndarray) -> list[Distribution]:
        """Single-clip canonical distributions of (n, d) features in ``feature_names`` order."""
        return self.single.distributions(np.atleast_2d(features))

    def classifier(self, vector: np.ndarray) -> Mapping[str, float]:
        """A :attr:`VoiceModel.classifier <affectgraph.tools.voice.VoiceModel.classifier>`:
        the single-clip distribution of one (d,) vector (eGeMAPS heads: the 88 functionals)."""
        return self.predict(np.asarray(vector)[None])[0]

    def vectors(self, records: Sequence[VoiceEvidence]) -> np.ndarray:
        """(n, d) features of records that all have features, in ``feature_names`` order."""
        missing = {n for r in records for n in self.feature_names if n not in r.features}
        if missing and self.encoder is not None and any(n.startswith(self.encoder)
                                                        for n in missing):
            raise InputError(f"this voice head also reads the {self.encoder} encoder embedding, "
                             "which these voice records lack; add it to their features "
                             "(affectgraph.speech_encoding.SpeechEncoding.features) or load the "
                             "eGeMAPS head (load_voice_head() without encoder)")
        if missing:
            raise InputError(f"voice features lack {len(missing)} eGeMAPSv02 functionals "
                             f"(e.g. {sorted(missing)[0]!r}); were they made by another "
                             "feature set?")
        return np.array([[r.features[n] for n in self.feature_names] for r in records])

    def classify(
        self,
        records: Sequence[VoiceEvidence],
        *,
        speaker_normalise: bool = False,
        speakers: Sequence[Hashable] | None = None,
        norm: SpeakerNorm | None = None,
    ) -> list[VoiceReading | None]:
        """A reading per record (``None`` for records without features), in order.

        With ``speaker_normalise``, ``records`` are one recording's turns and ``speakers`` says
        who speaks in each (one key per record; default: its ``channel``, so every turn of a
        mono mix counts as one speaker's -- pass a diarisation or the transcript's speakers when
        several people share a channel). A turn whose speaker has enough *other* turns
        (``norm``; ``None``: the :class:`SpeakerNorm` defaults) is classified by the
        speaker-adaptive head from its functionals standardised with those other turns'
        statistics; the rest by the single-clip head, with a note saying why.

        Raises :class:`~affectgraph.errors.ModelUnavailable` when speaker normalisation is asked
        for but no speaker-adaptive head is loaded, and :class:`~affectgraph.errors.InputError`
        when ``speakers`` has the wrong length.
        """
        norm = norm or SpeakerNorm()
        if speaker_normalise and self.speaker is None:
            raise ModelUnavailable("no speaker-normalised voice head is loaded; train one with "
                                   f"`affectgraph train voice` (it writes {SPEAKER}/)")
        if speakers is not None and len(speakers) != len(records):
            raise InputError(f"{len(speakers)} speakers given for {len(records)} voice records")
        keys = list(speakers) if speakers is not None else [r.channel for r in records]
        usable = [i for i, r in enumerate(records) if r.features]
        out: list[VoiceReading | None] = [None] * len(records)
        if not usable:
            return out
        x = self.vectors([records[i] for i in usable])
        single = self.predict(x)
        adapted: dict[int, VoiceReading] = {}
        if speaker_normalise:
            seconds = np.array([records[i].span.duration for i in usable])
            for key in dict.fromkeys(keys[i] for i in usable):
                rows = np.array([k for k, i in enumerate(usable) if keys[i] == key])
                adapted |= self._adapted(x[rows], seconds[rows], rows, key, norm)
        for k, i in enumerate(usable):
            out[i] = adapted.get(k) or VoiceReading(single[k], speaker_normalised=False)
        return out

    def _adapted(self, x: np.ndarray, seconds: np.ndarray, rows: np.ndarray, speaker: Hashable,
                 norm: SpeakerNorm) -> dict[int, VoiceReading]:
        """Readings of one speaker's turns (``x`` (m, d), durations in s), keyed by ``rows``:
        the speaker-adaptive head's where a turn has enough other turns, else the single-clip
        head's with a note."""
        assert self.speaker is not None
        others, other_seconds = len(x) - 1, seconds.sum() - seconds
        enough = (others >= norm.min_turns) & (other_seconds >= norm.min_seconds)
        adapted = (self.speaker.distributions(np.hstack([leave_one_out_z(x), x]))
                   if enough.any() else [])
        single = self.predict(x)
        who = "the mono mix" if speaker is None else f"speaker {speaker!r}"
        out = {}
        for k, row in enumerate(rows):
            if enough[k]:
                out[int(row)] = VoiceReading(adapted[k], speaker_normalised=True)
            else:
                out[int(row)] = VoiceReading(single[k], speaker_normalised=False, note=(
                    f"single-clip head: speaker normalisation needs >= {norm.min_turns} other "
                    f"turns with >= {norm.min_seconds:g} s of {who}; found {others} with "
                    f"{other_seconds[k]:.1f} s"))
        return out


def load_voice_head(path: str | Path | None = None, *,
                    feature_names: Sequence[str] | None = None,
                    encoder: str | None = None) -> VoiceHead:
    """Load the voice heads from a heads folder (default: the package's, :func:`heads_dir`):
    ``voice/`` (required) and ``voice-speaker-norm/`` (loaded when present), or with an
    ``encoder`` (``whisper-base``) the heads that also read its embedding (:func:`head_folders`).

    ``feature_names`` is the features' order (default: openSMILE's eGeMAPSv02 order, the one
    the heads were trained in, then the encoder embedding's names). Raises
    :class:`~affectgraph.errors.ModelUnavailable` when the single-clip head is missing or
    corrupt.
    """
    folder = Path(path) if path is not None else heads_dir()
    single_name, speaker_name = head_folders(encoder)
    if encoder is not None and not (folder / single_name / "manifest.json").is_file():
        raise ModelUnavailable(f"no {encoder} voice head in {folder}; train one with "
                               f"train_voice_head(encoder={encoder!r}) (it writes {single_name}/)")
    single = Head.load(folder / single_name)
    has_speaker = (folder / speaker_name / "manifest.json").is_file()
    speaker = Head.load(folder / speaker_name) if has_speaker else None
    if feature_names is None:
        from affectgraph.tools.voice import VoiceModel

        feature_names = VoiceModel.load().feature_names
        if (found := encoder_names(single.manifest.features)) is not None:
            feature_names = [*feature_names, *encoder_feature_names(*found)]
    names = tuple(feature_names)
    if len(names) != single.manifest.dim:
        raise InputError(f"{len(names)} feature names given, but the voice head reads "
                         f"{single.manifest.dim} features")
    return VoiceHead(single=single, speaker=speaker, feature_names=names)


def speaker_normalised(records: Sequence[VoiceEvidence], head: VoiceHead,
                       norm: SpeakerNorm | None = None) -> list[VoiceEvidence]:
    """``records`` re-classified with the speaker-normalised head, one speaker per channel or
    role; a record whose speaker has too few other turns keeps its single-clip distribution."""
    speakers = [(r.channel, None) for r in records]
    readings = head.classify(records, speaker_normalise=True, speakers=speakers, norm=norm)
    out = []
    for record, reading in zip(records, readings, strict=True):
        if reading is None or not reading.speaker_normalised:
            out.append(record)
            continue
        out.append(record.model_copy(update={
            "distribution": reading.distribution,
            "confidence": max(reading.distribution.values()),
            "model": ModelRef(name=f"{record.model.name}+speaker-norm",
                              revision=record.model.revision),
        }))
    return out
