"""Labelled exemplar libraries and FAISS retrieval: the nearest exemplars of an evidence record
and their label vote, each exemplar citable as ``exemplar:<id>``.

Modules, in the order data flows through them:

- :mod:`~affectgraph.retrieval.manifest`: the library folder format and its checksums;
- :mod:`~affectgraph.retrieval.index`: FAISS index kinds (flat, IVF, IVF-PQ) chosen by size;
- :mod:`~affectgraph.retrieval.library`: a library in memory: load, search, add, save;
- :mod:`~affectgraph.retrieval.build`: building from labelled items, resumable;
- :mod:`~affectgraph.retrieval.search`: retrieval results and the similarity-weighted vote;
- :mod:`~affectgraph.retrieval.defaults`: the libraries shipped in the package;
- :mod:`~affectgraph.retrieval.evaluate`: the vote measured with speakers held out.
"""

from affectgraph.retrieval.build import BuildOptions, Part, Vectorisers, build_library
from affectgraph.retrieval.defaults import default_library
from affectgraph.retrieval.evaluate import knn_scores, knn_vote
from affectgraph.retrieval.index import IndexOptions, VectorIndex
from affectgraph.retrieval.library import ExemplarLibrary
from affectgraph.retrieval.manifest import Exemplar, LibraryManifest
from affectgraph.retrieval.search import Neighbour, Retrieval, retrieve, search, vote

__all__ = [
    "BuildOptions",
    "Exemplar",
    "ExemplarLibrary",
    "IndexOptions",
    "LibraryManifest",
    "Neighbour",
    "Part",
    "Retrieval",
    "VectorIndex",
    "Vectorisers",
    "build_library",
    "default_library",
    "knn_scores",
    "knn_vote",
    "retrieve",
    "search",
    "vote",
]
