"""LIDC-IDRI XML reads: the real LIDC-IDRI-0001 file, malformed files, and grouping marks into nodules."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.interop.lidc import LidcError, group_marks, parse_lidc_xml
from tests.conftest import shared_data


def test_parses_the_four_readers_of_lidc_idri_0001():
    reads = parse_lidc_xml(shared_data("lidc_idri_0001_ct_nodules", "annotations", "069.xml"))
    assert reads.series_instance_uid == "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
    assert reads.reader_count == 4
    kinds = [m.kind for m in reads.marks]
    assert kinds.count("nodule") == 4 and kinds.count("small_nodule") == 9 and kinds.count("non_nodule") == 13
    nodules = [m for m in reads.marks if m.kind == "nodule"]
    assert sorted(m.reader for m in nodules) == [0, 1, 2, 3]  # every reader outlined the large nodule
    first = nodules[0]
    assert first.characteristics["malignancy"] == 5 and len(first.characteristics) == 9
    assert len(first.rois) == 8 and first.rois[0].points[0] == (312, 355) and first.rois[0].z_mm == -125.0


@pytest.mark.parametrize("text, message", [
    ("<LidcReadMessage", "not well-formed XML"),
    ("<other xmlns='http://www.nih.gov'/>", "not an LIDC read message"),
    ("<LidcReadMessage xmlns='http://www.nih.gov'><ResponseHeader/></LidcReadMessage>", "missing <SeriesInstanceUid>"),
    ("<LidcReadMessage xmlns='http://www.nih.gov'><ResponseHeader><SeriesInstanceUid>1.2</SeriesInstanceUid>"
     "</ResponseHeader></LidcReadMessage>", "no <readingSession>"),
    ("<LidcReadMessage xmlns='http://www.nih.gov'><ResponseHeader><SeriesInstanceUid>1.2</SeriesInstanceUid>"
     "</ResponseHeader><readingSession><unblindedReadNodule><noduleID>N1</noduleID><roi>"
     "<imageZposition>-1</imageZposition><imageSOP_UID>1.3</imageSOP_UID><edgeMap><xCoord>a</xCoord>"
     "<yCoord>2</yCoord></edgeMap></roi></unblindedReadNodule></readingSession></LidcReadMessage>",
     "reader 1, nodule 'N1': <xCoord> is not a number"),
])
def test_malformed_reads_are_refused_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "read.xml"
    path.write_text(text)
    with pytest.raises(LidcError, match=message.replace("(", r"\(").replace("'", "'")):
        parse_lidc_xml(path)


def test_marks_of_one_nodule_by_different_readers_are_grouped():
    centroids = np.array([[0, 0, 0], [1, 1, 0], [50, 0, 0], [0.5, 0, 1], [0.2, 0, 0]])
    readers = [0, 1, 1, 2, 2]
    groups = group_marks(centroids, readers, max_distance_mm=10.0)
    # Reader 2's second mark near the first nodule cannot join a group that already has reader 2.
    assert groups == [[0, 1, 3], [2], [4]]
