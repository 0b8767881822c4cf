"""Project URLs: pages, the REST API with its OpenAPI schema, admin, i18n."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from diagnosis import views as diagnosis_views

from . import api, views
from .jsi18n import javascript_catalog

api_patterns = [
    path("auth/token/", api.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", api.TokenRefreshApi.as_view(), name="token-refresh"),
    path("me/", api.MeApi.as_view(), name="me"),
    path("", include("annotation.api_urls")),
    path("", include("diagnosis.api_urls")),
    path("kg/", include("knowledge_graph.api_urls")),
    path("federation/", include("federation.api_urls")),
    path("followup/", include("followup.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", javascript_catalog, name="javascript-catalog"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("studies/", include("annotation.urls")),
    path("reports/", include("diagnosis.urls")),
    path("patients/<int:patient_id>/", diagnosis_views.patient_timeline, name="patient-timeline"),
    path("patients/<int:patient_id>/pacs/retrieve/", diagnosis_views.patient_pacs_retrieve,
         name="patient-pacs-retrieve"),
    path("kg/", include("knowledge_graph.urls")),
    path("federation/", include("federation.urls")),
    path("followup/", include("followup.urls")),
    path("fhir/", include("diagnosis.fhir.urls")),
    path("dicomweb/", include("annotation.dicomweb.urls")),
]
