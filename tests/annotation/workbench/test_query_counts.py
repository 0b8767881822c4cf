"""List endpoints of the workbench do not issue one query per row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation import services
from annotation.models import SegmentationModel, UncertaintyScore
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, params or {}).status_code == 200
    return len(ctx.captured_queries)


def test_versions_list_query_count_does_not_grow_with_versions(doctor, first_version):
    client = api_client(doctor)
    url = reverse("segmentation-versions", args=[first_version.pk])
    services.segmentation_refine(user=doctor, parent=first_version, operation="largest_component", params={})
    few = _queries(client, url)
    parent = first_version
    for _ in range(3):
        parent = services.segmentation_refine(user=doctor, parent=parent, operation="largest_component", params={})
    assert _queries(client, url) == few


def test_label_set_list_query_count_does_not_grow_with_sets(annotator):
    client = api_client(annotator)
    labels = [{"index": 1, "name": "a", "color": "#ff0000"}, {"index": 2, "name": "b", "color": "#00ff00"}]
    services.label_set_create(user=annotator, hospital=annotator.hospital, name="s0", labels=labels)
    few = _queries(client, reverse("label-set-list"))
    for n in range(1, 4):
        services.label_set_create(user=annotator, hospital=annotator.hospital, name=f"s{n}", labels=labels)
    assert _queries(client, reverse("label-set-list")) == few


def test_active_learning_ranking_query_count_does_not_grow_with_series(doctor, hospital, series):
    from tests.conftest import shared_data

    model = SegmentationModel.objects.create(name="unet-q", body_part="chest", modality="CT", architecture="unet",
                                             label_table=[{"index": 1, "name": "x", "color": "#ff0000"}])
    UncertaintyScore.objects.create(series=series, model=model, method="entropy", score=0.5)
    client = api_client(doctor)
    few = _queries(client, reverse("active-learning"), {"model": model.pk})
    other = services.study_import(user=doctor, hospital=hospital, patient_mrn="Q-2",
                                  paths=[shared_data("totalsegmentator_example", "example_mr_sm.nii.gz")], modality="CT")
    UncertaintyScore.objects.create(series=other.series[0], model=model, method="entropy", score=0.7)
    assert _queries(client, reverse("active-learning"), {"model": model.pk}) == few
