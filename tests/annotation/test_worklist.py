"""The study list is a worklist: patient name, modality, body part, date, segmentation and report
status, search, filters and paging, scoped to the user's hospital; one date format per language."""

from __future__ import annotations

import datetime as dt
import re
import shutil

import numpy as np
import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Patient, Segmentation, Study
from diagnosis import services as diagnosis_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def worklist(small_ct_study, doctor, hospital, small_ct_path, tmp_path):
    """Three real CT studies of three patients with distinct dates, body parts and states."""
    studies = [small_ct_study]
    for n, name in ((2, "李四"), (3, "王五")):
        copy = tmp_path / f"copy{n}.nii.gz"
        shutil.copy(small_ct_path, copy)
        result = services.study_import(user=doctor, hospital=hospital, patient_mrn=f"MRN-{n}", paths=[copy],
                                       patient_name=name, modality="CT")
        studies.append(result.studies[0])
    Patient.objects.filter(mrn="MRN-1").update(name="张三")
    dates = [dt.date(2026, 3, 1), dt.date(2026, 5, 20), dt.date(2025, 11, 2)]
    parts = ["CHEST", "ABDOMEN", "CHEST"]
    for study, date, part in zip(studies, dates, parts):
        Study.objects.filter(pk=study.pk).update(study_date=date, description=f"CT {part.lower()}")
        study.series.update(body_part=part)
    # The first study is segmented and has a signed report; the second has a draft.
    series = studies[0].series.get()
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[5:10, 20:30, 20:30] = 1
    segmentation = services.segmentation_create(
        series=series, label_map=label_map, label_table=[{"index": 1, "name": "box", "color": "#ff0000"}],
        name="box", source=Segmentation.Source.MANUAL,
    )
    report = diagnosis_services.report_create_draft(user=doctor, study=studies[0], segmentation=segmentation)
    diagnosis_services.report_update(user=doctor, report=report, impression="未见异常")
    diagnosis_services.report_finalize(user=doctor, report=report)
    diagnosis_services.report_create_draft(user=doctor, study=studies[1])
    return [Study.objects.get(pk=s.pk) for s in studies]


def _rows(response) -> list[int]:
    return [int(x) for x in re.findall(r'data-study-id="(\d+)"', response.content.decode())]


def test_worklist_shows_names_states_and_newest_study_date_first(client, doctor, worklist):
    client.force_login(doctor)
    response = client.get(reverse("annotation:study-list"))
    assert response.status_code == 200
    assert _rows(response) == [worklist[1].pk, worklist[0].pk, worklist[2].pk]
    page = response.content.decode()
    for name in ("张三", "李四", "王五"):
        assert name in page
    assert "2026-05-20" in page  # Chinese: ISO-style dates
    row0 = page.split(f'data-study-id="{worklist[0].pk}"')[1].split("</tr>")[0]
    assert "badge-done" in row0 and "badge-final" in row0
    row1 = page.split(f'data-study-id="{worklist[1].pk}"')[1].split("</tr>")[0]
    assert "badge-none" in row1 and "badge-draft" in row1


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "李"}, [1]),
        ({"q": "mrn-3"}, [2]),
        ({"body_part": "chest"}, [0, 2]),
        ({"modality": "CT", "date_from": "2026-01-01"}, [1, 0]),
        ({"date_to": "2026-03-01"}, [0, 2]),
        ({"segmentation": "done"}, [0]),
        ({"segmentation": "none"}, [1, 2]),
        ({"report": "final"}, [0]),
        ({"report": "none"}, [2]),
        ({"q": "nobody"}, []),
    ],
)
def test_worklist_search_and_filters(client, doctor, worklist, params, expected):
    client.force_login(doctor)
    response = client.get(reverse("annotation:study-list"), params)
    assert response.status_code == 200
    assert _rows(response) == [worklist[i].pk for i in expected]


def test_worklist_pages_keep_the_filters(client, doctor, worklist, monkeypatch):
    monkeypatch.setattr("annotation.views.WORKLIST_PAGE_SIZE", 1)
    client.force_login(doctor)
    first = client.get(reverse("annotation:study-list"), {"body_part": "CHEST"})
    assert _rows(first) == [worklist[0].pk]
    assert "body_part=CHEST&amp;page=2" in first.content.decode()
    second = client.get(reverse("annotation:study-list"), {"body_part": "CHEST", "page": 2})
    assert _rows(second) == [worklist[2].pk]


def test_worklist_refuses_bad_filters_with_a_400_and_lists_nothing(client, doctor, worklist):
    client.force_login(doctor)
    for params in ({"date_from": "2026-13-45"}, {"date_from": "2026-05-01", "date_to": "2026-01-01"},
                   {"segmentation": "exploded"}):
        response = client.get(reverse("annotation:study-list"), params)
        assert response.status_code == 400, params
        assert _rows(response) == []
        assert 'id="worklist-errors"' in response.content.decode()


def test_worklist_never_lists_another_hospitals_studies(client, other_doctor, worklist):
    client.force_login(other_doctor)
    response = client.get(reverse("annotation:study-list"), {"q": "张"})
    assert response.status_code == 200 and _rows(response) == []


def test_english_worklist_uses_the_english_date_format(client, doctor, worklist):
    client.force_login(doctor)
    response = client.get(reverse("annotation:study-list"), HTTP_ACCEPT_LANGUAGE="en")
    page = response.content.decode()
    assert "20 May 2026" in page and "2026-05-20" not in page
    assert "Worklist" in page and "工作列表" not in page


def test_worklist_query_count_does_not_grow_with_studies(client, doctor, worklist, django_assert_max_num_queries):
    client.force_login(doctor)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("annotation:study-list"))
    assert len(_rows(response)) == 3
