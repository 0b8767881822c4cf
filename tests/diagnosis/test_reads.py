"""Radiologists' reads: the LIDC-IDRI-0001 XML imported onto its real series (a label map per reader,
findings with the nine characteristics, grouped nodules with a consensus mask), the LUNA16 CSV import,
and every refusal storing nothing."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from annotation import services as annotation_services
from annotation.interop.lidc import CHARACTERISTICS
from annotation.models import Segmentation
from annotation.storage import segmentation_labelmap_load, series_geometry
from diagnosis import services
from diagnosis.models import Finding
from portal.api_errors import ServiceError
from portal.models import AuditLog
from tests.conftest import shared_data
from tests.helpers import api_client, stored_keys

pytestmark = pytest.mark.django_db

LIDC_XML = ("lidc_idri_0001_ct_nodules", "annotations", "069.xml")
LIDC_SERIES_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
# Centroid of the nodule all four readers outlined (mean of their contour points, LPS mm).
LIDC_NODULE_LPS_MM = np.array([56.2, 86.2, -115.9])


@pytest.fixture
def lidc_series(doctor, hospital):
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    return annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001",
                                            paths=[folder]).series[0]


@pytest.fixture
def small_series(small_ct_study):
    return small_ct_study.series.get()


def _xml_text() -> str:
    return shared_data(*LIDC_XML).read_text()


def _upload(client, series, text: str, name: str = "reads.xml", kind: str = "series-lidc-reads"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse(kind, args=[series.pk]),
                       {"file": SimpleUploadedFile(name, text.encode())}, format="multipart")


def _nothing_stored(before_keys, series) -> bool:
    return (stored_keys() == before_keys and not Finding.objects.exists()
            and not Segmentation.objects.filter(series=series).exists())


def test_lidc_reads_become_a_label_map_per_reader_findings_and_a_consensus_nodule(lidc_series):
    out = StringIO()
    call_command("import_lidc_reads", str(lidc_series.pk), str(shared_data(*LIDC_XML)), "--json", stdout=out)
    payload = json.loads(out.getvalue())

    segmentations = {s["name"]: s["id"] for s in payload["segmentations"]}
    assert sorted(segmentations) == ["LIDC consensus (≥ 50 % of readers)"] + [f"LIDC reader {n}" for n in (1, 2, 3, 4)]
    assert set(Segmentation.objects.filter(series=lidc_series).values_list("source", flat=True)) == {"import"}

    # One nodule >= 3 mm, outlined by all four readers.
    [nodule] = payload["nodules"]
    assert nodule["agreement"] == 4 and nodule["readers"] == [1, 2, 3, 4]
    consensus = Finding.objects.get(pk=nodule["finding_id"])
    assert consensus.source == Finding.Source.CONSENSUS and consensus.confidence == 1.0
    assert np.linalg.norm(np.asarray(consensus.centroid_lps_mm) - LIDC_NODULE_LPS_MM) < 1.0
    assert 25.0 < consensus.long_axis_mm < 40.0 and consensus.composition == "solid"

    readers = Finding.objects.filter(source=Finding.Source.READER, kind=Finding.Kind.LUNG_NODULE,
                                     segmentation__isnull=False)
    assert readers.count() == 4
    for finding in readers:
        assert set(finding.characteristics) == set(CHARACTERISTICS)
        assert finding.details["lidc"]["consensus_finding"] == consensus.pk
        assert np.linalg.norm(np.asarray(finding.centroid_lps_mm) - LIDC_NODULE_LPS_MM) < 3.0
    # The first reader rated it highly suspicious (the XML's first nodule: malignancy 5, spiculation 4).
    first = readers.get(source_name="LIDC reader 1")
    assert first.characteristics["malignancy"] == 5 and first.characteristics["spiculation"] == 4
    # Nodules < 3 mm (9) and non-nodules (13) are point findings without a segmentation.
    points = Finding.objects.filter(source=Finding.Source.READER, segmentation__isnull=True)
    assert points.filter(kind=Finding.Kind.LUNG_NODULE).count() == 9
    assert points.filter(kind=Finding.Kind.NON_NODULE).count() == 13

    # Reader 1's first contour is on image z = -125 mm: slice k = (-125 - -340) / 2.5 = 86, around
    # column 312, row 355 of that image.
    reader_map = segmentation_labelmap_load(Segmentation.objects.get(pk=segmentations["LIDC reader 1"]))
    assert reader_map[86, 340:380, 290:330].any()
    assert set(np.unique(np.nonzero(reader_map)[0])) <= set(range(80, 100))
    # The consensus holds exactly the voxels at least two of the four readers marked.
    votes = sum((segmentation_labelmap_load(Segmentation.objects.get(pk=segmentations[f"LIDC reader {n}"])) > 0)
                .astype(int) for n in (1, 2, 3, 4))
    consensus_map = segmentation_labelmap_load(Segmentation.objects.get(pk=segmentations[
        "LIDC consensus (≥ 50 % of readers)"]))
    assert np.array_equal(consensus_map > 0, votes >= 2)
    assert (votes >= 1).sum() > (consensus_map > 0).sum() > (votes == 4).sum() > 0
    assert AuditLog.objects.filter(target_type="lidc_reads", target_id=str(lidc_series.pk)).exists()


def test_the_same_reads_are_not_imported_twice(lidc_series):
    services.lidc_reads_import(user=None, series=lidc_series, xml_path=shared_data(*LIDC_XML))
    findings, keys = Finding.objects.count(), stored_keys()
    with pytest.raises(ServiceError) as refused:
        services.lidc_reads_import(user=None, series=lidc_series, xml_path=shared_data(*LIDC_XML))
    assert refused.value.code == "already_imported" and refused.value.status_code == 409
    assert Finding.objects.count() == findings and stored_keys() == keys


def test_a_doctor_uploads_reads_and_other_hospitals_annotators_and_patients_cannot(
        doctor, other_doctor, annotator, patient_user, small_series):
    text = _xml_text().replace(LIDC_SERIES_UID, small_series.series_instance_uid)
    before = stored_keys()
    assert _upload(api_client(other_doctor), small_series, text).status_code == 404
    assert _upload(api_client(annotator), small_series, text).status_code == 403
    assert _upload(api_client(patient_user), small_series, text).status_code == 403
    assert _nothing_stored(before, small_series)


@pytest.mark.parametrize("edit, code, message", [
    (lambda t: t.replace("<SeriesInstanceUid>", "<SeriesInstanceUid>9."), "series_mismatch", "reads series 9.1.3.6"),
    (lambda t: t.replace("<xCoord>312</xCoord>", "<xCoord>600</xCoord>", 1), "lidc_mismatch",
     "reader 1, nodule 'Nodule 001': point (x 600, y 355) lies outside the 512 × 512 image"),
    (lambda t: t.replace("<imageZposition>-125.000000 </imageZposition>\n        <imageSOP_UID>"
                         "1.3.6.1.4.1.14519.5.2.1.6279.6001.110383487652933113465768208719",
                         "<imageZposition>40.0</imageZposition><imageSOP_UID>1.2.3", 1),
     "lidc_mismatch", "image 1.2.3 (z = 40 mm) is not a slice of this series"),
    (lambda t: t.replace("</LidcReadMessage>", ""), "bad_lidc_xml", "not well-formed XML"),
])
def test_malformed_or_mismatched_reads_are_refused_naming_the_problem_and_store_nothing(
        doctor, lidc_series, edit, code, message):
    before = stored_keys()
    client = api_client(doctor)
    client.credentials(HTTP_ACCEPT_LANGUAGE="en")  # the messages below are the English ones
    response = _upload(client, lidc_series, edit(_xml_text()))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"]
    assert _nothing_stored(before, lidc_series)
    assert not AuditLog.objects.filter(target_type__in=["lidc_reads", "finding", "segmentation"]).exists()


def test_reads_placed_by_z_position_when_the_image_uids_are_unknown(doctor, lidc_series):
    import re

    # Another copy of the same images (re-identified UIDs): the z positions still place the contours.
    text = re.sub(r"<imageSOP_UID>[0-9.]+</imageSOP_UID>", "<imageSOP_UID>2.25.1</imageSOP_UID>", _xml_text())
    response = _upload(api_client(doctor), lidc_series, text)
    assert response.status_code == 201, response.content
    [nodule] = response.json()["nodules"]
    consensus = Finding.objects.get(pk=nodule["finding_id"])
    assert nodule["agreement"] == 4
    assert np.linalg.norm(np.asarray(consensus.centroid_lps_mm) - LIDC_NODULE_LPS_MM) < 1.0


def test_import_command_refuses_a_missing_file_and_a_missing_series(lidc_series, tmp_path):
    with pytest.raises(CommandError, match="no file"):
        call_command("import_lidc_reads", str(lidc_series.pk), str(tmp_path / "none.xml"), stdout=StringIO())
    with pytest.raises(CommandError, match="no series"):
        call_command("import_lidc_reads", "999999", str(shared_data(*LIDC_XML)), stdout=StringIO())
    assert not Finding.objects.exists()


# --- LUNA16 annotations.csv ---------------------------------------------------------------------

def _csv(tmp_path, rows, header="seriesuid,coordX,coordY,coordZ,diameter_mm"):
    path = tmp_path / "annotations.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_luna16_rows_of_the_series_become_point_findings_with_their_diameter(doctor, small_series, tmp_path):
    geometry = series_geometry(small_series)
    centre = geometry.index_to_lps(np.array([10.0, 20.0, 30.0]))
    uid = small_series.series_instance_uid
    path = _csv(tmp_path, [f"{uid},{centre[0]},{centre[1]},{centre[2]},7.5",
                           f"{LIDC_SERIES_UID},-128.7,-175.3,-298.4,5.65"])
    with open(path, "rb") as fh:
        response = api_client(doctor).post(reverse("series-luna16-annotations", args=[small_series.pk]),
                                           {"file": fh}, format="multipart")
    assert response.status_code == 201, response.content
    [finding] = response.json()["findings"]
    assert finding["centroid_voxel"] == [10, 20, 30] and finding["long_axis_mm"] == 7.5
    assert finding["source"] == "import" and finding["details"]["reference_diameter_mm"] == 7.5


def test_luna16_csv_of_the_lidc_series_by_its_series_uid(lidc_series, tmp_path):
    # The LUNA16 row of the nodule all readers outlined, written from the series' real UID.
    x, y, z = LIDC_NODULE_LPS_MM
    path = _csv(tmp_path, [f"{lidc_series.series_instance_uid},{x},{y},{z},32.3"])
    [finding] = services.luna16_annotations_import(user=None, series=lidc_series, csv_path=path)
    # k = (-115.9 - -340) / 2.5 = 89.6 -> 90; the image's row j and column i from its origin and 0.703125 mm pixels.
    k, j, i = finding.centroid_voxel
    assert k == 90 and abs(j - (86.2 + 171.7) / 0.703125) <= 1 and abs(i - (56.2 + 166.0) / 0.703125) <= 1
    assert finding.details["luna16"]["diameter_mm"] == 32.3


@pytest.mark.parametrize("rows, header, code, message", [
    (["{uid},1,2,3,5"], "seriesuid,coordX,coordY,diameter_mm", "bad_luna16_csv", "lacks the column(s) coordZ"),
    (["{uid},1,two,3,5"], None, "bad_luna16_csv", "Line 2"),
    (["{uid},{x},{y},{z},0"], None, "bad_luna16_csv", "positive diameter"),
    (["1.2.3,{x},{y},{z},5"], None, "series_mismatch", "no row for this series"),
    (["{uid},{x},{y},{z},5", "{uid},9000,9000,9000,5"], None, "outside_grid", "Line 3"),
])
def test_bad_luna16_csv_is_refused_naming_the_problem_and_stores_nothing(small_series, tmp_path, rows, header,
                                                                        code, message):
    x, y, z = series_geometry(small_series).index_to_lps(np.array([5.0, 5.0, 5.0]))
    rows = [r.format(uid=small_series.series_instance_uid, x=x, y=y, z=z) for r in rows]
    path = _csv(tmp_path, rows, **({"header": header} if header else {}))
    with pytest.raises(ServiceError) as refused:
        services.luna16_annotations_import(user=None, series=small_series, csv_path=path)
    assert refused.value.code == code and message in str(refused.value)  # str(): English, for logs
    assert not Finding.objects.exists()
