"""Model names carry both languages and show the one asked for (issue 16): the built-in models had one
name with both languages in it ("CT lung (classical) 肺分割"); each language now has its own, and the
study page's one-click menu, the model pages and the API show them."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from annotation.models import SegmentationModel
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

HAN = re.compile(r"[\u4e00-\u9fff]")


def test_the_builtin_models_carry_a_name_in_each_language(ct_lung_model):
    nodules = SegmentationModel.objects.get(name="ct-lung-nodule", version=1)

    assert (ct_lung_model.display_name, ct_lung_model.display_name_zh) == ("CT lung (classical)", "肺分割（经典方法）")
    assert (nodules.display_name, nodules.display_name_zh) == ("CT lung nodules (classical)", "肺结节检测（经典方法）")
    assert ct_lung_model.display_name_in("en") == "CT lung (classical)"
    assert ct_lung_model.display_name_in("zh-hans") == "肺分割（经典方法）"


def test_a_model_without_a_chinese_name_falls_back_to_its_display_name_then_its_slug():
    named = SegmentationModel(name="liver-unet", display_name="Liver UNet")
    bare = SegmentationModel(name="liver-unet")

    assert named.display_name_in("zh-hans") == "Liver UNet" and named.display_name_in("en") == "Liver UNet"
    assert bare.display_name_in("zh-hans") == "liver-unet" and bare.display_name_in(None) == "liver-unet"


@pytest.mark.parametrize("language, shown", [("zh-hans", "肺分割（经典方法）"), ("en", "CT lung (classical)")])
def test_the_study_pages_one_click_menu_names_the_model_in_the_pages_language(client, doctor, small_ct_study,
                                                                             ct_lung_model, language, shown):
    small_ct_study.series.update(body_part="CHEST")
    client.force_login(doctor)
    client.cookies["django_language"] = language

    response = client.get(reverse("annotation:study-detail", args=[small_ct_study.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    config = json.loads(re.search(r'<script id="viewer-config" type="application/json">(.*?)</script>', html,
                                  flags=re.S).group(1))
    names = [m["display_name"] for m in config["models"] if m["name"] == "ct-lung"]
    assert names == [shown]
    assert bool(HAN.search(names[0])) == (language == "zh-hans")


@pytest.mark.parametrize("language, shown, other", [("zh-hans", "肺分割（经典方法）", "CT lung (classical)"),
                                                    ("en", "CT lung (classical)", "肺分割")])
def test_the_model_list_and_card_name_the_model_in_the_pages_language(client, doctor, ct_lung_model, language, shown,
                                                                      other):
    client.force_login(doctor)
    client.cookies["django_language"] = language

    listing = client.get(reverse("annotation:model-list")).content.decode()
    card = client.get(reverse("annotation:model-card", args=[ct_lung_model.pk])).content.decode()

    assert shown in listing and other not in listing
    assert shown in card and other not in card


def test_the_model_api_gives_both_names(doctor, ct_lung_model):
    response = api_client(doctor).get("/api/segmentation-models/")

    assert response.status_code == 200
    lung = next(m for m in response.json()["results"] if m["id"] == ct_lung_model.pk)
    assert (lung["display_name"], lung["display_name_zh"]) == ("CT lung (classical)", "肺分割（经典方法）")


@pytest.mark.parametrize("language, shown", [("zh-hans", "肺分割（经典方法） v1"), ("en", "CT lung (classical) v1")])
def test_a_one_click_segmentation_is_named_after_its_model_in_the_requests_language(doctor, small_ct_study,
                                                                                    ct_lung_model, language, shown):
    import numpy as np

    from annotation import services
    from annotation.models import Segmentation

    series = small_ct_study.series.first()
    stored_name = f"{ct_lung_model.display_name} v{ct_lung_model.version}"  # what the one-click run stores
    segmentation = services.segmentation_create(
        series=series, label_map=np.zeros(tuple(series.shape), dtype=np.uint8),
        label_table=[{"index": 1, "name": "lung", "color": "#ff0000"}], name=stored_name,
        source=Segmentation.Source.MODEL, user=doctor, model=ct_lung_model)

    response = api_client(doctor).get(reverse("segmentation-versions", args=[segmentation.pk]),
                                      HTTP_ACCEPT_LANGUAGE=language)

    assert response.status_code == 200, response.content
    body = response.json()
    [payload] = [v for v in body["results"] if v["id"] == segmentation.pk]
    assert payload["name"] == stored_name and payload["shown_name"] == shown
    segmentation.name = "my own lungs"  # a name the user gave is shown as given
    assert segmentation.shown_name == "my own lungs"
