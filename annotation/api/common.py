"""Shared pieces of the annotation API: the segmentation and version payloads that several views (and
the server-rendered pages) return, the error and version schema components, storing a multipart upload
in a scratch folder, and answering with bytes built in memory. Section modules import these; they hold
no view of their own."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from portal.api_errors import ErrorSerializer, ServiceError  # noqa: F401  (the error schema, re-exported)

from ..models import Segmentation


def segmentation_payload(segmentation: Segmentation) -> dict:
    return {
        "id": segmentation.pk,
        "name": segmentation.name,
        # The name in the request's language (a one-click output named after its model: that model's
        # name in this language).
        "shown_name": segmentation.shown_name,
        "version": segmentation.version,
        "source": segmentation.source,
        "model": segmentation.model_id,
        "label_table": segmentation.label_table,
        "labelmap_url": reverse("segmentation-labelmap", args=[segmentation.pk]),
        "measurements_url": reverse("segmentation-measurements", args=[segmentation.pk]),
        "created_at": segmentation.created_at.isoformat(),
        "is_current": segmentation.is_current,
        # A network's one-click output: mean confidence per label ({"1": 0.93}), the review flag and
        # its voxel-wise uncertainty map (None for classical, imported and edited versions).
        "label_confidence": segmentation.label_confidence,
        "needs_review": segmentation.needs_review,
        "uncertainty_url": reverse("segmentation-uncertainty", args=[segmentation.pk])
        if segmentation.uncertainty_file else None,
    }



def _store_uploads(files, directory: Path) -> list[Path]:
    """Write uploaded files under their own base names; a repeated name goes to another folder,
    so an .mhd keeps its .raw beside it."""
    paths: list[Path] = []
    total = 0
    for upload in files:
        name = Path(upload.name).name
        if not name or name in {".", ".."}:
            raise ServiceError(_("An uploaded file has no usable name."), code="bad_filename")
        total += upload.size
        if total > settings.IMPORT_MAX_UPLOAD_BYTES:
            raise ServiceError(_("The upload is larger than this portal accepts."),
                               code="upload_too_large", status_code=413)
        slot = 0
        while (directory / f"u{slot}" / name).exists():
            slot += 1
        target = directory / f"u{slot}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            for chunk in upload.chunks():
                fh.write(chunk)
        paths.append(target)
    return paths


def version_payload(segmentation: Segmentation) -> dict:
    """One version of a segmentation tree as the API returns it (no PHI: the author's display name only)."""
    author = segmentation.created_by
    return {
        **segmentation_payload(segmentation),
        "parent": segmentation.parent_id,
        "root": segmentation.root_id or segmentation.pk,
        "is_current": segmentation.is_current,
        "comment": segmentation.comment,
        "tool": segmentation.tool,
        "parameters": segmentation.parameters,
        "author": (author.display_name or author.username) if author else None,
        "series": segmentation.series_id,
        "review_status": segmentation.review_status,
        "label_set": segmentation.label_set_id,
        "layer_group": str(segmentation.layer_group) if segmentation.layer_group else None,
        "layer_index": segmentation.layer_index,
        "versions_url": reverse("segmentation-versions", args=[segmentation.pk]),
    }


VersionSerializer = inline_serializer("SegmentationVersion", {
    "id": serializers.IntegerField(), "version": serializers.IntegerField(),
    "parent": serializers.IntegerField(allow_null=True), "root": serializers.IntegerField(),
    "is_current": serializers.BooleanField(), "name": serializers.CharField(), "comment": serializers.CharField(),
    "tool": serializers.CharField(), "parameters": serializers.DictField(), "author": serializers.CharField(allow_null=True),
    "created_at": serializers.DateTimeField(), "label_table": serializers.ListField(child=serializers.DictField()),
})


def _bytes_response(data: bytes, filename: str, content_type: str, *, attachment: bool = False):
    from django.http import HttpResponse

    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'{"attachment" if attachment else "inline"}; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
