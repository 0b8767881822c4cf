"""URLs of DICOMweb, mounted at ``/dicomweb/`` (PS3.18 resource paths, no trailing slashes)."""

from django.urls import path

from . import api

app_name = "dicomweb"
_S = "studies/<str:study_uid>"
_SE = _S + "/series/<str:series_uid>"
_I = _SE + "/instances/<str:sop_uid>"
urlpatterns = [
    path("studies", api.StudiesApi.as_view(), name="studies"),
    path("series", api.SeriesSearchApi.as_view(), name="series-search"),
    path("instances", api.InstanceSearchApi.as_view(), name="instance-search"),
    path(_S, api.RetrieveApi.as_view(), name="study"),
    path(_S + "/metadata", api.MetadataApi.as_view(), name="study-metadata"),
    path(_S + "/series", api.SeriesSearchApi.as_view(), name="study-series"),
    path(_S + "/instances", api.InstanceSearchApi.as_view(), name="study-instances"),
    path(_SE, api.RetrieveApi.as_view(), name="series"),
    path(_SE + "/metadata", api.MetadataApi.as_view(), name="series-metadata"),
    path(_SE + "/instances", api.InstanceSearchApi.as_view(), name="series-instances"),
    path(_I, api.RetrieveApi.as_view(), name="instance"),
    path(_I + "/metadata", api.MetadataApi.as_view(), name="instance-metadata"),
    path(_I + "/rendered", api.RenderedApi.as_view(), name="instance-rendered"),
    path(_I + "/frames/<str:frames>", api.FramesApi.as_view(), name="frames"),
    path(_I + "/frames/<str:frames>/rendered", api.RenderedApi.as_view(), name="frame-rendered"),
]
