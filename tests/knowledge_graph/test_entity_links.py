"""Report terms linked to the knowledge graph: mentions found in report text, the side panel's data
and its API (signed-in users only), over the shipped starter graph the QA assistant uses."""

from __future__ import annotations

import pytest
from django.utils import translation
from rest_framework.test import APIClient

from knowledge_graph import selectors, services
from portal.models import Role
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

# The impression of a chest CT report as radiologists write it (LIDC-IDRI-0001's nodule).
IMPRESSION = (
    "左肺上叶实性肺结节，大小约 22 × 18 mm（Lung-RADS 4B），恶性可能不除外，肺癌待排；"
    "建议胸外科会诊，必要时病理活检或3个月后复查低剂量螺旋CT。右肺下叶少许炎症，考虑肺炎。"
)


def test_mentions_in_a_report_impression_are_the_longest_graph_names_in_text_order(starter_graph):
    mentions = services.entity_mentions(IMPRESSION)

    found = [(m["text"], m["label"], m["name"]) for m in mentions]
    assert ("肺结节", "Disease", "肺结节") in found and ("肺癌", "Disease", "肺癌") in found
    assert ("低剂量螺旋CT", "Check", "低剂量螺旋CT") in found and ("病理活检", "Check", "病理活检") in found
    assert ("胸外科", "Department", "胸外科") in found and ("肺炎", "Disease", "肺炎") in found
    for m in mentions:
        assert IMPRESSION[m["start"]:m["end"]] == m["text"]
    starts = [m["start"] for m in mentions]
    assert starts == sorted(starts)
    # Longest match: the CT inside 低剂量螺旋CT is not linked on its own.
    assert all(not (m["start"] > 0 and m["text"] == "CT") for m in mentions)


def test_a_synonym_links_to_its_entity_and_plain_text_links_nothing(starter_graph):
    [mention] = services.entity_mentions("考虑支气管肺癌")
    assert mention["text"] == "支气管肺癌" and mention["name"] == "肺癌"
    assert services.entity_mentions("双肺纹理清晰，未见异常密度影。") == []
    assert services.entity_mentions("") == []
    with pytest.raises(ValueError, match="longer than"):
        services.entity_mentions("肺" * (services.MAX_MENTION_TEXT_CHARS + 1))


def test_link_segments_cover_the_text_exactly(starter_graph):
    segments = services.text_link_segments(IMPRESSION)
    assert "".join(s["text"] for s in segments) == IMPRESSION
    assert [s["name"] for s in segments if "name" in s][:2] == ["肺结节", "肺癌"]


def test_panel_of_lung_cancer_has_description_checks_department_and_related_diseases(starter_graph):
    with translation.override("zh-hans"):
        panel = selectors.entity_panel(label="Disease", name="肺癌")
    assert panel["description"].startswith("肺癌是起源于支气管黏膜")
    assert {"胸部CT", "支气管镜检查", "病理活检"} <= set(panel["checks"])
    assert {"胸外科", "呼吸内科"} <= set(panel["departments"])
    assert "胸腔积液" in panel["related_diseases"]
    assert panel["label_text"] == "疾病" and panel["sections_text"]["related_diseases"] == "相关疾病"
    assert "lay_text" not in panel


def test_panel_of_lung_nodule_and_its_lay_wording(starter_graph):
    panel = selectors.entity_panel(label="Disease", name="肺结节", lay=True)
    assert "低剂量螺旋CT" in panel["checks"] and "胸外科" in panel["departments"]
    assert panel["lay_source"] == "stored" and "大多数是良性的" in panel["lay_text"]
    # An entity without stored wording takes the first sentence of its description.
    flu = selectors.entity_panel(label="Disease", name="慢性支气管炎", lay=True)
    assert flu["lay_source"] == "description" and flu["lay_text"].endswith("。")
    assert flu["description"].startswith(flu["lay_text"][:-1])


def test_panel_api_returns_the_panel_to_any_signed_in_user(starter_graph):
    for role in (Role.DOCTOR, Role.PATIENT):
        response = api_client(UserFactory(role=role)).get("/api/kg/panel/Disease/肺癌/", {"lay": "1"})
        assert response.status_code == 200
        body = response.json()
        assert body["name"] == "肺癌" and body["checks"] and body["departments"] and body["related_diseases"]
        assert body["lay_source"] == "stored"


def test_panel_and_mentions_need_a_login(starter_graph):
    anonymous = APIClient()
    assert anonymous.get("/api/kg/panel/Disease/肺癌/").status_code in (401, 403)
    assert anonymous.post("/api/kg/mentions/", {"texts": [IMPRESSION]}, format="json").status_code in (401, 403)


@pytest.mark.parametrize("path", ["/api/kg/panel/Disease/不存在的病/", "/api/kg/panel/Term/肺癌/",
                                  "/api/kg/panel/Nope/肺癌/"])
def test_panel_of_an_unknown_entity_or_type_is_not_found(starter_graph, path):
    response = api_client(UserFactory(role=Role.DOCTOR)).get(path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_mentions_api_answers_one_list_per_text(starter_graph):
    response = api_client(UserFactory(role=Role.DOCTOR)).post(
        "/api/kg/mentions/", {"texts": [IMPRESSION, "肺结节", ""]}, format="json")
    assert response.status_code == 200
    first, second, third = response.json()["results"]
    assert {"start", "end", "text", "label", "name"} <= set(first[0])
    assert second == [{"start": 0, "end": 3, "text": "肺结节", "label": "Disease", "name": "肺结节"}]
    assert third == []


@pytest.mark.parametrize("payload", [{}, {"texts": []}, {"texts": "肺癌"}, {"texts": ["肺" * 5001]},
                                     {"texts": ["肺癌"] * 51}])
def test_mentions_api_rejects_invalid_input(starter_graph, payload):
    response = api_client(UserFactory(role=Role.DOCTOR)).post("/api/kg/mentions/", payload, format="json")
    assert response.status_code == 400
