"""Writing an analysis as JSON record by record (:meth:`Analysis.write_json`)."""

from __future__ import annotations

import io

import pytest

from affectgraph.analysis import Analysis


class _Pieces(io.StringIO):
    """A text file that remembers its longest single write."""

    longest = 0

    def write(self, text: str) -> int:
        self.longest = max(self.longest, len(text))
        return super().write(text)


@pytest.mark.parametrize("indent", [1, 2, 4])
def test_write_json_is_model_dump_json_written_in_pieces(reference_analysis: Analysis,
                                                          indent: int) -> None:
    out = _Pieces()
    reference_analysis.write_json(out, indent=indent)
    whole = reference_analysis.model_dump_json(indent=indent)
    assert out.getvalue() == whole
    longest_record = max(len(r.model_dump_json(indent=indent)) for r in
                         [*reference_analysis.evidence, *reference_analysis.exemplars])
    assert out.longest < len(whole) / 2 and out.longest < 2 * longest_record + 2000


def test_write_json_without_evidence(reference_analysis: Analysis) -> None:
    empty = reference_analysis.model_copy(update={"evidence": [], "exemplars": []})
    out = io.StringIO()
    empty.write_json(out)
    assert out.getvalue() == empty.model_dump_json(indent=2)
    assert Analysis.model_validate_json(out.getvalue()) == empty


def test_write_json_needs_an_indent(reference_analysis: Analysis) -> None:
    with pytest.raises(ValueError, match="indent must be at least 1"):
        reference_analysis.write_json(io.StringIO(), indent=0)
