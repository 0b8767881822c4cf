"""Unit tests of the plain-Python result builders (no Django): the TID 1500 SR and the Encapsulated PDF
from four real slices of LIDC-IDRI-0001 and a SEG of a box on them; the C-STORE client's refusals."""

from __future__ import annotations

import io
import socket
from datetime import datetime

import highdicom as hd
import numpy as np
import pydicom
import pytest

from annotation.imaging.dicom.read import read_dicom_series
from annotation.interop.dicom_seg import labelmap_to_dicom_seg
from diagnosis.pacs import codes
from diagnosis.pacs.pdf import ENCAPSULATED_PDF_SOP_CLASS_UID, encapsulated_pdf
from diagnosis.pacs.scu import PacsDestination, StoreError, store_instances
from diagnosis.pacs.sr import Observers, ResultObjectError, SegmentFigures, measurement_report_sr
from tests.conftest import shared_data

OBSERVERS = Observers(person_name="Wang^Li", person_login="wangli", organization="示范医院",
                      device_uid=hd.UID(), device_name="ct-lung", device_model="ct-lung 1")


@pytest.fixture(scope="module")
def slices_and_seg():
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    files = sorted(folder.glob("*.dcm"),
                   key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))[:4]
    [series] = read_dicom_series(files)
    geometry = series.volume.geometry
    label_map = np.zeros(geometry.shape, dtype=np.uint8)
    label_map[1:3, 200:220, 200:230] = 2  # label 2 → segment 1 of the SEG
    seg = labelmap_to_dicom_seg([label_map], geometry, [pydicom.dcmread(p) for p in files],
                                [{"index": 2, "name": "nodule", "color": "#ffd600", "snomed_code": "27925004",
                                  "snomed_meaning": "Nodule"}])
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    return headers, pydicom.dcmread(io.BytesIO(_bytes(seg)))


def _bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_sr_holds_the_figures_with_ucum_units_and_references_the_segment(slices_and_seg):
    headers, seg = slices_and_seg
    figures = SegmentFigures(label=2, name="nodule", volume_ml=0.412, long_axis_mm=21.5, short_axis_mm=13.25,
                             mean_hu=-45.5)

    sr = measurement_report_sr(source_datasets=headers, seg_dataset=seg, segments=[figures], observers=OBSERVERS,
                               series_instance_uid=hd.UID(), sop_instance_uid=hd.UID(),
                               content_datetime=datetime(2026, 12, 6, 9, 30))

    read = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(_bytes(sr))))
    [group] = read.content.get_volumetric_roi_measurement_groups()
    values = {(m.name.value, m.unit.value): m.value for m in group.get_measurements()}
    assert values == {("118565006", "ml"): 0.412, ("103339001", "mm"): 21.5, ("103340004", "mm"): 13.25,
                      ("112031", "[hnsf'U]"): -45.5}
    assert group.finding_type == codes.Code("27925004", "SCT", "Nodule")
    assert group.referenced_segment.referenced_segment_numbers == [1]
    assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert read.PatientID == headers[0].PatientID and read.ContentDate == "20261206"
    assert read.VerifyingObserverSequence[0].VerifyingOrganization == "示范医院"


def test_sr_leaves_out_mean_hu_off_ct(slices_and_seg):
    headers, seg = slices_and_seg
    sr = measurement_report_sr(source_datasets=headers, seg_dataset=seg, observers=OBSERVERS,
                               segments=[SegmentFigures(label=2, name="n", volume_ml=1.0, long_axis_mm=2.0,
                                                        short_axis_mm=1.0)],
                               series_instance_uid=hd.UID(), sop_instance_uid=hd.UID())
    [group] = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_volumetric_roi_measurement_groups()
    assert [m.name.value for m in group.get_measurements()] == ["118565006", "103339001", "103340004"]


@pytest.mark.parametrize(("segments", "code"), [
    ([], "no_measurements"),
    ([SegmentFigures(label=7, name="x", volume_ml=1.0, long_axis_mm=1.0, short_axis_mm=1.0)], "segment_not_in_seg"),
])
def test_sr_refuses_what_it_cannot_reference(slices_and_seg, segments, code):
    headers, seg = slices_and_seg
    with pytest.raises(ResultObjectError) as caught:
        measurement_report_sr(source_datasets=headers, seg_dataset=seg, segments=segments, observers=OBSERVERS,
                              series_instance_uid=hd.UID(), sop_instance_uid=hd.UID())
    assert caught.value.code == code


def test_encapsulated_pdf_keeps_the_pdf_and_the_patient_and_study(slices_and_seg):
    headers, _seg = slices_and_seg
    pdf = b"%PDF-1.7\n" + b"x" * 100 + b"\n%%EOF"  # odd length: padded, the length tag keeps the truth
    assert len(pdf) % 2 == 1

    ds = encapsulated_pdf(pdf, source_dataset=headers[0], series_instance_uid=hd.UID(), sop_instance_uid=hd.UID(),
                          document_title="报告 v1", content_datetime=datetime(2026, 12, 6, 9, 30),
                          institution_name="示范医院")
    read = pydicom.dcmread(io.BytesIO(_bytes(ds)))

    assert read.SOPClassUID == ENCAPSULATED_PDF_SOP_CLASS_UID and read.Modality == "DOC"
    assert bytes(read.EncapsulatedDocument)[:read.EncapsulatedDocumentLength] == pdf
    assert read.PatientID == headers[0].PatientID and read.StudyInstanceUID == headers[0].StudyInstanceUID
    assert read.DocumentTitle == "报告 v1" and read.InstitutionName == "示范医院"
    assert read.ConceptNameCodeSequence[0].CodeValue == "18748-4"


def test_encapsulated_pdf_refuses_what_is_not_a_pdf(slices_and_seg):
    headers, _seg = slices_and_seg
    with pytest.raises(ValueError):
        encapsulated_pdf(b"<html>", source_dataset=headers[0], series_instance_uid=hd.UID(),
                         sop_instance_uid=hd.UID(), document_title="r", content_datetime=datetime(2026, 1, 1))


def test_store_to_a_port_where_nothing_listens_is_peer_unreachable(slices_and_seg):
    _headers, seg = slices_and_seg
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as caught:
        store_instances([seg], PacsDestination(host="127.0.0.1", port=port, called_ae="PACS", timeout_s=5))
    assert caught.value.code == "peer_unreachable" and caught.value.status is None
