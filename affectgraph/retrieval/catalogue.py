"""What the bundled research data sets are, for the manifests of libraries built from them:
licence (as each set's ``SOURCE.txt`` in the data folder states it), label scheme of
:data:`affectgraph.labels.SCHEMES`, and a note on their use."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class DataSetInfo:
    modality: str
    licence: str
    scheme: str
    note: str = ""
    cropped: bool = False  # images are face crops: vectorised whole, without detection


CATALOGUE = MappingProxyType({
    "ravdess_speech": DataSetInfo(
        "voice", "CC BY-NC-SA 4.0 (RAVDESS, Livingstone & Russo 2018)", "ravdess",
        "non-commercial, share-alike; calm -> neutral"),
    "ravdess_av": DataSetInfo(
        "voice", "CC BY-NC-SA 4.0 (RAVDESS, Livingstone & Russo 2018)", "ravdess"),
    "tess": DataSetInfo(
        "voice", "CC BY-NC-ND 4.0 (TESS, Dupuis & Pichora-Fuller 2010)", "tess",
        "non-commercial, no derivatives; pleasant surprise -> surprised"),
    "faces_fer2013": DataSetInfo(
        "face", "FER2013 (Kaggle challenge 2013): no explicit licence, research use", "fer",
        "48x48 face crops, vectorised whole (no detection)", cropped=True),
    "faces_web": DataSetInfo(
        "face", "third-party web/LFW photos (muxspace/facial_expressions): research use only",
        "faces_web", "face found by the detector; contempt dropped"),
    "goemotions": DataSetInfo(
        "text", "Apache-2.0 (GoEmotions, Google Research)", "ekman",
        "single-label comments only, Ekman mapping"),
    "meld": DataSetInfo(
        "text", "GPL-3.0 (MELD repository); utterances of the Friends TV series, research use",
        "meld"),
    "emorynlp": DataSetInfo(
        "text", "GPL-3.0 (MELD repository's copy); utterances of the Friends TV series, "
        "research use", "emorynlp", "powerful dropped, peaceful -> neutral"),
    "isear": DataSetInfo(
        "text", "ISEAR (Scherer & Wallbott 1994): free for research, no formal licence",
        "isear", "self-reported situations; shame and guilt dropped"),
})
