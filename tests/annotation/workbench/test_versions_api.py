"""Versions over the REST API: saving diffs, branching, refinements, comparison and roll back,
with every refusal (bad diff, wrong grid, locked label, other hospital, patient)."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
from django.urls import reverse

from annotation import services
from annotation.editing import diff_compute, diff_encode
from annotation.models import Segmentation
from portal.models import AuditLog, Role
from tests.factories import UserFactory
from tests.helpers import api_client, stored_keys

pytestmark = pytest.mark.django_db


def _save(client, parent_id, payload):
    return client.post(reverse("segmentation-versions", args=[parent_id]), payload, format="json")


def _edited(series, base):
    # A 9 mm ball of label 2 around voxel (15, 50, 60), as a brush dab in the browser would paint.
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(np.indices(base.shape), (15, 50, 60), series.spacing_mm))
    after = base.copy()
    after[distance2 <= 9.0 ** 2] = 2
    after[7, 25, 20:25] = 0
    return after


def test_saved_diff_matches_the_browser_result_voxel_for_voxel(doctor, series, first_version):
    base = services.segmentation_labelmap_load(first_version)
    after = _edited(series, base)
    wire = diff_encode(diff_compute(base, after))

    response = _save(api_client(doctor), first_version.pk, {"diff": wire, "comment": "added a ball", "tool": "brush"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["version"], body["parent"], body["root"], body["is_current"]) == (2, first_version.pk, first_version.pk, True)
    assert body["tool"] == "brush" and body["parameters"]["changed_voxels"] == int((after != base).sum())
    saved = Segmentation.objects.get(pk=body["id"])
    np.testing.assert_array_equal(services.segmentation_labelmap_load(saved), after)
    first_version.refresh_from_db()
    assert not first_version.is_current
    np.testing.assert_array_equal(services.segmentation_labelmap_load(first_version), base)  # copy-on-write
    assert AuditLog.objects.filter(target_type="segmentation", target_id=str(saved.pk), action=AuditLog.Action.CREATE).exists()


def test_branching_from_an_old_version_keeps_both_branches(doctor, series, first_version):
    client = api_client(doctor)
    base = services.segmentation_labelmap_load(first_version)
    v2 = _save(client, first_version.pk, {"diff": diff_encode(diff_compute(base, _edited(series, base)))}).json()
    branch_map = base.copy()
    branch_map[20, 50:55, 50:55] = 1
    v3 = _save(client, first_version.pk, {"diff": diff_encode(diff_compute(base, branch_map)), "name": "branch"}).json()

    assert v3["version"] == 3 and v3["parent"] == first_version.pk
    tree = client.get(reverse("segmentation-versions", args=[v2["id"]])).json()["results"]
    assert [(v["version"], v["parent"], v["is_current"]) for v in tree] == [
        (1, None, False), (2, first_version.pk, False), (3, first_version.pk, True)]
    assert tree[0]["author"] == str(doctor)


def test_roll_back_makes_an_older_version_current(doctor, series, first_version):
    client = api_client(doctor)
    base = services.segmentation_labelmap_load(first_version)
    v2 = _save(client, first_version.pk, {"diff": diff_encode(diff_compute(base, _edited(series, base)))}).json()

    response = client.post(reverse("segmentation-make-current", args=[first_version.pk]))

    assert response.status_code == 200 and response.json()["is_current"] is True
    assert list(Segmentation.objects.filter(root_id=first_version.pk, is_current=True).values_list("pk", flat=True)) == [first_version.pk]
    assert Segmentation.objects.filter(pk=v2["id"]).exists()


def test_refine_largest_component_records_operation_and_parameters(doctor, series, first_version):
    client = api_client(doctor)
    base = services.segmentation_labelmap_load(first_version)
    speck = base.copy()
    speck[25, 80:82, 80:82] = 1
    v2 = _save(client, first_version.pk, {"diff": diff_encode(diff_compute(base, speck))}).json()

    response = client.post(reverse("segmentation-refine", args=[v2["id"]]),
                           {"operation": "largest_component", "params": {"labels": [1]}}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tool"] == "refine:largest_component" and body["parameters"] == {"labels": [1]}
    refined = services.segmentation_labelmap_load(Segmentation.objects.get(pk=body["id"]))
    np.testing.assert_array_equal(refined, base)


def test_refine_restrict_to_mask_and_remove_small_components(doctor, series, first_version):
    client = api_client(doctor)
    mask_map = np.zeros(tuple(series.shape), np.uint8)
    mask_map[:, :25, :] = 1
    mask = services.segmentation_create(series=series, label_map=mask_map, label_table=[{"index": 1, "name": "m", "color": "#0000ff"}],
                                        name="mask", source=Segmentation.Source.MANUAL)
    restricted = client.post(reverse("segmentation-refine", args=[first_version.pk]),
                             {"operation": "restrict_to_mask", "mask_segmentation": mask.pk}, format="json").json()
    out = services.segmentation_labelmap_load(Segmentation.objects.get(pk=restricted["id"]))
    assert (out == 1).sum() == 5 * 5 * 10
    # the box is 5×10×10 voxels of 27 mm³ = 13.5 mL
    kept = client.post(reverse("segmentation-refine", args=[first_version.pk]),
                       {"operation": "remove_small_components", "params": {"min_volume_ml": 13.0}}, format="json").json()
    removed = client.post(reverse("segmentation-refine", args=[first_version.pk]),
                          {"operation": "remove_small_components", "params": {"min_volume_ml": 14.0}}, format="json").json()
    assert (services.segmentation_labelmap_load(Segmentation.objects.get(pk=kept["id"])) == 1).sum() == 500
    assert (services.segmentation_labelmap_load(Segmentation.objects.get(pk=removed["id"])) == 1).sum() == 0


def test_compare_two_versions_reports_added_removed_and_dice(doctor, series, first_version):
    client = api_client(doctor)
    base = services.segmentation_labelmap_load(first_version)
    grown = base.copy()
    grown[10:15, 20:30, 20:30] = 1  # 500 voxels added to label 1
    grown[5, 20:30, 20:30] = 0      # 100 removed
    v2 = _save(client, first_version.pk, {"diff": diff_encode(diff_compute(base, grown))}).json()

    response = client.get(reverse("segmentation-compare", args=[first_version.pk, v2["id"]]))

    assert response.status_code == 200
    box = next(e for e in response.json()["labels"] if e["label"] == 1)
    assert (box["added"], box["removed"], box["voxels_a"], box["voxels_b"]) == (500, 100, 500, 900)
    assert box["dice"] == pytest.approx(2 * 400 / 1400)
    assert box["added_ml"] == pytest.approx(500 * 27 / 1000)
    changes = client.get(response.json()["changes_url"])
    assert changes.status_code == 200 and changes["Content-Type"] == "application/gzip"


# --- failure paths -----------------------------------------------------------------------------

def _raw_wire(runs, shape):
    raw = np.asarray(runs, "<u4").tobytes()
    return {"format": "runs-v1", "shape": list(shape), "runs": base64.b64encode(zlib.compress(raw)).decode()}


@pytest.mark.parametrize(
    "make_diff, code",
    [
        (lambda s: {"format": "runs-v1", "shape": list(s), "runs": "%%%"}, "bad_diff"),
        (lambda s: _raw_wire([[0, 1, 1]], (s[0], s[1], s[2] + 1)), "wrong_grid"),
        (lambda s: _raw_wire([[int(np.prod(s)) - 1, 5, 1]], s), "bad_diff"),
        (lambda s: _raw_wire([[0, 1, 9]], s), "unknown_label"),
        (lambda s: _raw_wire(np.zeros((0, 3)), s), "empty_diff"),
    ],
)
def test_bad_diffs_are_refused_and_store_nothing(doctor, series, first_version, make_diff, code):
    before_keys = stored_keys()
    response = _save(api_client(doctor), first_version.pk, {"diff": make_diff(tuple(series.shape))})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Segmentation.objects.filter(root_id=first_version.pk).count() == 1
    assert stored_keys() == before_keys


def test_diff_touching_a_locked_label_is_refused(doctor, series, first_version):
    base = services.segmentation_labelmap_load(first_version)
    erased = base.copy()
    erased[5, 20, 20:25] = 0
    response = _save(api_client(doctor), first_version.pk, {"diff": diff_encode(diff_compute(base, erased)), "locked_labels": [1]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "locked_label"
    assert Segmentation.objects.filter(root_id=first_version.pk).count() == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"operation": "explode"},
        {"operation": "opening", "params": {}},
        {"operation": "opening", "params": {"radius_mm": -2}},
        {"operation": "fill_holes", "params": {"mode": "4d"}},
        {"operation": "restrict_to_mask"},
    ],
)
def test_bad_refinements_are_refused(doctor, first_version, payload):
    response = api_client(doctor).post(reverse("segmentation-refine", args=[first_version.pk]), payload, format="json")
    assert response.status_code == 400
    assert Segmentation.objects.filter(root_id=first_version.pk).count() == 1


def test_compare_across_series_is_refused(doctor, hospital, first_version):
    from tests.conftest import shared_data

    mr = services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-2",
                               paths=[shared_data("totalsegmentator_example", "example_mr_sm.nii.gz")], modality="MR")
    mr_series = mr.series[0]
    other = services.segmentation_create(series=mr_series, label_map=np.zeros(tuple(mr_series.shape), np.uint8),
                                         label_table=first_version.label_table, name="mr", source=Segmentation.Source.MANUAL)
    client = api_client(doctor)
    response = client.get(reverse("segmentation-compare", args=[first_version.pk, other.pk]))
    assert response.status_code == 400 and response.json()["error"]["code"] == "wrong_grid"
    response = client.post(reverse("segmentation-refine", args=[first_version.pk]),
                           {"operation": "restrict_to_mask", "mask_segmentation": other.pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "wrong_grid"


def test_other_hospital_gets_404_and_patient_403(other_doctor, patient_user, series, first_version):
    base = services.segmentation_labelmap_load(first_version)
    wire = diff_encode(diff_compute(base, _edited(series, base)))
    stranger = api_client(other_doctor)
    annotator_elsewhere = api_client(UserFactory(role=Role.ANNOTATOR, hospital=other_doctor.hospital))
    patient = api_client(patient_user)
    calls = [
        ("post", reverse("segmentation-versions", args=[first_version.pk]), {"diff": wire}),
        ("get", reverse("segmentation-versions", args=[first_version.pk]), None),
        ("post", reverse("segmentation-refine", args=[first_version.pk]), {"operation": "largest_component"}),
        ("post", reverse("segmentation-make-current", args=[first_version.pk]), None),
        ("get", reverse("segmentation-compare", args=[first_version.pk, first_version.pk]), None),
        ("post", reverse("series-segmentation-create", args=[series.pk]), {"name": "x", "label_table": [{"index": 1, "name": "a", "color": "#000000"}]}),
    ]
    for method, url, data in calls:
        for client in (stranger, annotator_elsewhere):
            assert getattr(client, method)(url, data, format="json").status_code == 404, url
        assert getattr(patient, method)(url, data, format="json").status_code == 403, url
    assert Segmentation.objects.filter(series=series).count() == 1


def test_blank_segmentation_validates_its_label_table(annotator, series):
    client = api_client(annotator)
    url = reverse("series-segmentation-create", args=[series.pk])
    ok = client.post(url, {"name": "liver", "label_table": [{"index": 1, "name": "liver", "color": "#aa3300"}]}, format="json")
    assert ok.status_code == 201 and ok.json()["version"] == 1
    assert services.segmentation_labelmap_load(Segmentation.objects.get(pk=ok.json()["id"])).max() == 0
    for table in ([], [{"index": 0, "name": "x"}], [{"index": 1, "name": "a"}, {"index": 1, "name": "b"}],
                  [{"index": 1, "name": "a", "color": "red"}]):
        response = client.post(url, {"name": "x", "label_table": table}, format="json")
        assert response.status_code == 400, table
