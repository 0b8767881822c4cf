"""The branch's user-visible strings read in Simplified Chinese first (the default UI language)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import translation

from annotation.models import SegmentationModel
from diagnosis import services
from diagnosis.models import Finding
from tests.helpers import api_client


def test_finding_kinds_statuses_compositions_sources_and_the_model_kind_are_translated():
    with translation.override("zh-hans"):
        assert str(Finding.Kind.LUNG_NODULE.label) == "肺结节" and str(Finding.Kind.NON_NODULE.label) == "非结节"
        assert [str(c.label) for c in Finding.Composition] == ["实性", "部分实性", "磨玻璃"]
        assert [str(s.label) for s in Finding.Status] == ["待确认", "已接受", "已排除", "已修改"]
        assert str(Finding.Source.CONSENSUS.label) == "读片共识" and str(Finding.Source.READER.label) == "读片医师"
        assert str(SegmentationModel.Kind.DETECTION.label) == "检测"


@pytest.mark.django_db
def test_the_lung_rads_rule_reads_in_chinese_by_default(doctor, small_ct_study):
    series = small_ct_study.series.get()
    finding = services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL,
                                      centroid_voxel=[10, 40, 40], long_axis_mm=16.0, short_axis_mm=14.0,
                                      composition="solid")
    services.finding_accept(user=doctor, finding=finding)
    body = api_client(doctor).get(reverse("study-lung-rads", args=[small_ct_study.pk])).json()
    assert body["category"] == "4B" and body["rule"] == "基线实性结节 ≥ 15 mm。"
