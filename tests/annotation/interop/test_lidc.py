"""LIDC-IDRI XML reads: the real LIDC-IDRI-0001 file, malformed files, and grouping marks into nodules."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.imaging.volume import Geometry
from annotation.interop.lidc import (
    LidcError,
    LidcMark,
    LidcReads,
    LidcRoi,
    consensus_mask_voxels,
    group_marks,
    group_nodules,
    parse_lidc_xml,
    place_marks,
)
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


# --- placing marks on a grid ----------------------------------------------------------------------

# Four axial slices of 20 × 20 pixels of 1 mm, 2.5 mm apart, the first at z = -10 mm.
GRID = Geometry(shape=(4, 20, 20), spacing_mm=(2.5, 1.0, 1.0), origin_mm=(0.0, 0.0, -10.0),
                direction=(0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0))
UIDS = ("u0", "u1", "u2", "u3")


def _square(x0, y0, side, uid="u1", z=-7.5, inclusion=True):
    corners = [(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)]
    return LidcRoi(sop_instance_uid=uid, z_mm=z, inclusion=inclusion, points=tuple(corners))


def _reads(*marks):
    return LidcReads(series_instance_uid="1.2", study_instance_uid="", reader_count=3, marks=tuple(marks))


def _nodule(reader, *rois):
    return LidcMark(reader=reader, reader_id=str(reader), mark_id=f"N{reader}", kind="nodule", rois=rois)


def test_a_contour_fills_its_inside_without_the_outline_on_the_slice_of_its_uid():
    [placed] = place_marks(_reads(_nodule(0, _square(5, 5, 4))), GRID, sop_instance_uids=UIDS)
    # Outline at x, y in 5..9: the inside is x, y in 6..8 (3 × 3 pixels) on slice k = 1.
    assert sorted(map(tuple, placed.mask_kji)) == [(1, y, x) for y in range(6, 9) for x in range(6, 9)]
    assert placed.diameter_mm == pytest.approx(4 * np.sqrt(2))  # the square's diagonal
    assert placed.centre_kji.tolist() == [1.0, 7.0, 7.0]


def test_an_exclusion_contour_cuts_a_hole():
    [placed] = place_marks(_reads(_nodule(0, _square(2, 2, 10), _square(5, 5, 4, inclusion=False))), GRID,
                           sop_instance_uids=UIDS)
    voxels = set(map(tuple, placed.mask_kji))
    # Inside of the outer outline: 9 × 9; the hole is the exclusion's inside (3 × 3): its outline is drawn in
    # the nodule, around the hole, so it stays nodule.
    assert (1, 5, 5) in voxels and (1, 7, 7) not in voxels and len(voxels) == 9 * 9 - 3 * 3


def test_unknown_image_uids_fall_back_to_the_z_position():
    mark = _nodule(0, _square(5, 5, 4, uid="other", z=-5.0))
    [placed] = place_marks(_reads(mark), GRID, sop_instance_uids=("", "", "", ""))
    assert set(placed.mask_kji[:, 0]) == {2}  # z = -10 + 2 × 2.5


@pytest.mark.parametrize("roi, message", [
    (_square(5, 5, 4, uid="other", z=30.0), "image other (z = 30 mm) is not a slice of this series"),
    (_square(15, 5, 6), "point (x 21, y 5) lies outside the 20 × 20 image"),
])
def test_marks_that_do_not_fit_the_grid_are_refused(roi, message):
    with pytest.raises(LidcError, match=message.replace("(", r"\(").replace(")", r"\)")):
        place_marks(_reads(_nodule(0, roi)), GRID, sop_instance_uids=UIDS)


def test_consensus_keeps_the_voxels_half_the_readers_marked():
    reads = _reads(_nodule(0, _square(5, 5, 4)), _nodule(1, _square(6, 6, 4)), _nodule(2, _square(6, 5, 4)))
    placed = place_marks(reads, GRID, sop_instance_uids=UIDS)
    [nodule] = group_nodules(placed, GRID)
    assert nodule.agreement == 3 and nodule.members == (0, 1, 2)
    # Insides: A x, y 6..8; B x, y 7..9; C x 7..9, y 6..8. Two of three readers: 2 of 3 is >= 50 %.
    votes = {}
    for p in placed:
        for v in map(tuple, p.mask_kji):
            votes[v] = votes.get(v, 0) + 1
    expected = sorted(v for v, n in votes.items() if n >= 2)
    assert sorted(map(tuple, consensus_mask_voxels(placed))) == expected
    # Hand-counted: row 6 columns 7-8 (A, C), rows 7-8 columns 7-8 (all three) and column 9 (B, C).
    assert expected == [(1, 6, 7), (1, 6, 8), (1, 7, 7), (1, 7, 8), (1, 7, 9), (1, 8, 7), (1, 8, 8), (1, 8, 9)]
