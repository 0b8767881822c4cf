"""The plain-Python interop package on its own: SEG placement, grid checks, dataset layouts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from annotation.imaging.dicom import read_dicom_series
from annotation.imaging.volume import Geometry
from annotation.interop.dicom_seg import SegInteropError, _cielab_to_hex, dicom_seg_to_layers, labelmap_to_dicom_seg
from annotation.interop.labelmaps import geometry_mismatch, labelmap_values_check
from annotation.interop.msd import DatasetLayoutError, dataset_read
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def dcmqi():
    files = sorted(shared_data("dcmqi_ct_dicom_seg", "ct").glob("*.dcm"))
    return read_dicom_series(files)[0].volume.geometry, [pydicom.dcmread(f) for f in files]


def test_seg_roundtrip_keeps_labels_colours_and_snomed_codes(dcmqi):
    geometry, sources = dcmqi
    label_map = np.zeros(geometry.shape, np.uint8)
    label_map[0, 100:200, 150:260] = 3
    label_map[2, 300:310, 300:310] = 7
    table = [{"index": 3, "name": "liver", "color": "#dd8265", "snomed_code": "10200004", "snomed_meaning": "Liver"},
             {"index": 7, "name": "lesion", "color": "#00ff00"}]
    seg = labelmap_to_dicom_seg([label_map], geometry, sources, table)
    buffer = io.BytesIO()
    seg.save_as(buffer)
    back = dicom_seg_to_layers(pydicom.dcmread(io.BytesIO(buffer.getvalue())), geometry)
    assert not back.overlapping and len(back.layers) == 1
    # segments are numbered 1..N in the SEG; the original label values come back
    assert [int(n) for n in seg.segment_numbers] == [1, 2]
    np.testing.assert_array_equal(back.layers[0], label_map)
    assert back.label_table[0]["snomed_code"] == "10200004" and back.label_table[0]["name"] == "liver"
    assert back.label_table[1]["color"] == "#00ff00"


def test_seg_export_refuses_empty_maps_and_missing_sources(dcmqi):
    geometry, sources = dcmqi
    with pytest.raises(SegInteropError) as err:
        labelmap_to_dicom_seg([np.zeros(geometry.shape, np.uint8)], geometry, sources, [])
    assert err.value.code == "empty_segmentation"
    with pytest.raises(SegInteropError) as err:
        labelmap_to_dicom_seg([np.ones(geometry.shape, np.uint8)], geometry, sources[:2], [])
    assert err.value.code == "seg_needs_dicom"


def test_seg_on_a_shifted_grid_is_refused(dcmqi):
    geometry, _ = dcmqi
    shifted = Geometry(shape=geometry.shape, spacing_mm=geometry.spacing_mm,
                       origin_mm=(geometry.origin_mm[0] + 0.4, *geometry.origin_mm[1:]), direction=geometry.direction)
    with pytest.raises(SegInteropError) as err:
        dicom_seg_to_layers(pydicom.dcmread(shared_data("dcmqi_ct_dicom_seg", "seg", "liver.dcm")), shifted)
    assert err.value.code == "wrong_grid"
    ct_slice = pydicom.dcmread(min(shared_data("dcmqi_ct_dicom_seg", "ct").glob("*.dcm")))
    with pytest.raises(SegInteropError) as err:
        dicom_seg_to_layers(ct_slice, geometry)
    assert err.value.code == "bad_dicom_seg"


def test_cielab_conversion_round_trips_srgb():
    import highdicom as hd

    for color in ("#ff0000", "#3cb44b", "#123456"):
        value = hd.color.CIELabColor.from_rgb(*(int(color[n:n + 2], 16) for n in (1, 3, 5))).value
        back = _cielab_to_hex(list(value))
        assert all(abs(int(back[n:n + 2], 16) - int(color[n:n + 2], 16)) <= 2 for n in (1, 3, 5))


def test_geometry_mismatch_names_what_differs():
    g = Geometry(shape=(2, 3, 4), spacing_mm=(1, 1, 1))
    assert geometry_mismatch(g, g) is None
    assert "shape" in geometry_mismatch(Geometry(shape=(2, 3, 5), spacing_mm=(1, 1, 1)), g)
    assert "spacing" in geometry_mismatch(Geometry(shape=(2, 3, 4), spacing_mm=(2, 1, 1)), g)
    assert "origin" in geometry_mismatch(Geometry(shape=(2, 3, 4), spacing_mm=(1, 1, 1), origin_mm=(5, 0, 0)), g)
    flipped = Geometry(shape=(2, 3, 4), spacing_mm=(1, 1, 1), direction=(0, 0, -1, 0, 1, 0, 1, 0, 0))
    assert "orientation" in geometry_mismatch(flipped, g)


def test_labelmap_values_check():
    assert labelmap_values_check(np.array([[[0.0, 2.0]]])).dtype == np.uint8
    assert labelmap_values_check(np.array([[[0, 300]]])).dtype == np.uint16
    for bad in (np.array([[[0.5]]]), np.array([[[-1]]]), np.array([[[70000]]])):
        with pytest.raises(SegInteropError):
            labelmap_values_check(bad)


def test_reads_msd_and_nnunet_layouts(tmp_path):
    root = shared_data("msd_task04_hippocampus")
    msd = dataset_read(root)
    assert msd.label_names == {1: "Anterior", 2: "Posterior"} and len(msd.cases) == 220 and msd.modality == "MR"
    nn = tmp_path / "Dataset004_Hippocampus"
    (nn / "imagesTr").mkdir(parents=True)
    (nn / "labelsTr").mkdir()
    for case in ("hippocampus_001", "hippocampus_003"):
        (nn / "imagesTr" / f"{case}_0000.nii.gz").symlink_to(root / "imagesTr" / f"{case}.nii.gz")
        (nn / "labelsTr" / f"{case}.nii.gz").symlink_to(root / "labelsTr" / f"{case}.nii.gz")
    (nn / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
                                                 "numTraining": 2, "file_ending": ".nii.gz"}))
    v2 = dataset_read(nn)
    assert v2.label_names == {1: "Anterior", 2: "Posterior"} and [c.case_id for c in v2.cases] == ["hippocampus_001", "hippocampus_003"]


@pytest.mark.parametrize("meta", [None, "{not json", {"labels": {}}, {"labels": {"1": "a"}, "training": [{"image": "../../etc/x", "label": "y"}]},
                                  {"labels": {"1": "a"}, "training": []}])
def test_bad_datasets_are_refused(tmp_path, meta):
    if meta is not None:
        (tmp_path / "dataset.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    with pytest.raises(DatasetLayoutError):
        dataset_read(Path(tmp_path))
