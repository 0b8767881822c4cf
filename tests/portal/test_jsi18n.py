"""The front end's strings come from Django's JavaScript catalogue at /jsi18n/ (issue 16)."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from portal.jsi18n import catalogue_mtime, catalogue_url

pytestmark = pytest.mark.django_db


def _catalogue(response) -> dict:
    """The msgid -> translation object the served script defines ({} when it defines none)."""
    text = response.content.decode()
    assert "django.gettext = function" in text, "the response is not Django's JavaScript catalogue"
    start = text.find("const newcatalog = ")
    if start < 0:
        return {}
    return json.JSONDecoder().raw_decode(text, start + len("const newcatalog = "))[0]


def _get(language: str, **extra):
    return Client().get(reverse("javascript-catalog"), {"l": language, "v": "test"},
                        HTTP_ACCEPT_LANGUAGE=language, **extra)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_the_catalogue_serves_the_chinese_of_a_front_end_string_under_zh_hans():
    response = _get("zh-hans")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    catalogue = _catalogue(response)
    assert catalogue["Could not load the image: %(message)s"] == "无法加载影像：%(message)s"
    assert catalogue["Detection finished: %(count)s finding"] == ["检测完成：%(count)s 个发现"]
    assert catalogue["finding status\x04Rejected"] == "已排除"
    assert "django.gettext = function" in response.content.decode()


def test_the_catalogue_is_empty_under_english_so_the_msgids_show():
    response = _get("en")

    assert response.status_code == 200
    assert _catalogue(response) == {}
    assert "django.gettext = function" in response.content.decode()


def test_each_language_is_cached_under_its_own_key():
    first_chinese = _get("zh-hans")
    english = _get("en")
    second_chinese = _get("zh-hans")

    assert _catalogue(english) == {}
    assert _catalogue(first_chinese) == _catalogue(second_chinese) != {}
    assert "max-age=86400" in second_chinese["Cache-Control"]


def test_the_language_the_url_names_wins_over_the_cookie():
    client = Client()
    client.cookies["django_language"] = "zh-hans"

    english = client.get(reverse("javascript-catalog"), {"l": "en", "v": "test"})
    unknown = client.get(reverse("javascript-catalog"), {"l": "xx", "v": "test"})

    assert _catalogue(english) == {}
    assert _catalogue(unknown)["Saved"] == "已保存"  # an unknown language: the request's


def test_an_unchanged_catalogue_answers_not_modified():
    first = _get("zh-hans")

    again = _get("zh-hans", HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])

    assert first["Last-Modified"]
    assert again.status_code == 304


def test_every_page_loads_the_catalogue_of_its_language_before_the_bundles(client):
    chinese = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    english = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    version = int(catalogue_mtime())
    assert f'<script src="/jsi18n/?l=zh-hans&amp;v={version}" defer></script>' in chinese
    assert f'<script src="/jsi18n/?l=en&amp;v={version}" defer></script>' in english
    assert chinese.index("/jsi18n/") < chinese.index("js/portal.js")


def test_the_catalogue_url_names_the_language_and_the_compiled_catalogues():
    from django.utils import translation

    with translation.override("en"):
        url = catalogue_url()

    assert catalogue_mtime() > 0, "djangojs.mo is not compiled: run manage.py compilemessages"
    assert url == f"/jsi18n/?l=en&v={int(catalogue_mtime())}"
