"""A label colour is ``#rrggbb`` and nothing else, wherever it is accepted: the one validator of
``portal.validators`` behind the ``Label.color`` field, the label tables of segmentations and models,
the label-set API, the segmentation API and label-table imports. A refused colour stores nothing."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation import services
from annotation.models import Label, LabelSet, Segmentation, SegmentationModel
from portal.api_errors import ServiceError
from portal.validators import validate_color, validate_label_table_colors
from tests.helpers import api_client, stored_keys

HOSTILE = [
    "red;background:url(http://127.0.0.1:9/x)",
    "#ff0000;background-image:url(file:///etc/passwd)",
    "#ff0000\n",
    "url(http://127.0.0.1:9/x)",
    "#fff",
    "red",
    "",
]


@pytest.mark.parametrize("value", ["#ff0000", "#00AAff", "#123456"])
def test_validator_accepts_six_digit_hex(value):
    validate_color(value)
    validate_label_table_colors([{"index": 1, "name": "x", "color": value}])


@pytest.mark.parametrize("value", [*HOSTILE, None, 16711680, ["#ff0000"]])
def test_validator_refuses_everything_else(value):
    with pytest.raises(ValidationError) as refused:
        validate_color(value)
    assert refused.value.code == "invalid_color"
    with pytest.raises(ValidationError, match=r"标签 3：.*#rrggbb"):  # Chinese first, naming the label
        validate_label_table_colors([{"index": 3, "name": "x", "color": value}])


@pytest.mark.django_db
@pytest.mark.parametrize("colour", HOSTILE[:3])
def test_label_set_api_refuses_a_hostile_colour(annotator, colour):
    client = api_client(annotator)
    created = client.post(reverse("label-set-list"),
                          {"name": "abdomen", "labels": [{"index": 1, "name": "liver", "color": colour}]}, format="json")
    assert created.status_code == 400 and "#rrggbb" in created.json()["error"]["message"]
    assert not LabelSet.objects.exists()

    set_id = client.post(reverse("label-set-list"), {"name": "abdomen", "labels": [{"index": 1, "name": "liver"}]},
                         format="json").json()["id"]
    recolour = client.post(reverse("label-upsert", args=[set_id]), {"index": 1, "color": colour}, format="json")
    assert recolour.status_code == 400 and "#rrggbb" in recolour.json()["error"]["message"]
    assert Label.objects.get(label_set_id=set_id, index=1).color == "#ff0000"


@pytest.mark.django_db
def test_label_field_refuses_a_hostile_colour(annotator):
    label_set = services.label_set_create(user=annotator, hospital=annotator.hospital, name="chest")
    label = Label(label_set=label_set, index=1, name="nodule", color=HOSTILE[0])
    with pytest.raises(ValidationError) as refused:
        label.full_clean()
    assert "color" in refused.value.message_dict


@pytest.mark.django_db
def test_segmentation_api_and_import_refuse_a_hostile_label_table(annotator, small_ct_study, tmp_path):
    series = small_ct_study.series.get()
    table = [{"index": 1, "name": "lesion", "color": HOSTILE[0]}]
    before = stored_keys()

    blank = api_client(annotator).post(reverse("series-segmentation-create", args=[series.pk]),
                                       {"name": "manual", "label_table": table}, format="json")
    assert blank.status_code == 400 and blank.json()["error"]["code"] == "bad_label_table"

    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[5:10, 20:30, 20:30] = 1
    from annotation.storage import series_geometry

    path = tmp_path / "lesion.nii.gz"
    path.write_bytes(services.labelmap_nifti_bytes(label_map, series_geometry(series)))
    with pytest.raises(ServiceError) as refused:
        services.segmentation_import(user=annotator, series=series, path=path, label_table=table)
    assert refused.value.status_code == 400 and refused.value.code == "bad_label_table"

    # The write path every other producer (inference, editing) goes through checks the field too.
    with pytest.raises(ValidationError):
        services.segmentation_create(series=series, label_map=label_map, label_table=table, name="run",
                                     source=Segmentation.Source.MANUAL)
    assert not Segmentation.objects.exists()
    assert stored_keys() == before


@pytest.mark.django_db
def test_model_registry_refuses_a_hostile_label_table(doctor):
    before = SegmentationModel.objects.count()
    with pytest.raises(ValidationError) as refused:
        services.segmentation_model_register(
            name="hostile", body_part="chest", modality="CT", architecture="unet", user=doctor,
            label_table=[{"index": 1, "name": "nodule", "color": HOSTILE[1]}])
    assert "label_table" in refused.value.message_dict
    assert SegmentationModel.objects.count() == before
