"""The patient's records as the follow-up pages show them: key images of a study and stored files."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from portal.models import AuditLog, User
from portal.services import audit_record


def study_key_images(*, user: User, study) -> dict[str, str]:
    """Return object-storage keys of the study's axial/coronal/sagittal key images (PNG), rendering
    and caching them on first use: through the largest segmented finding of the latest segmentation,
    or through the centre of the first series when there is none. Audited as a view."""
    from annotation.models import Segmentation, Series
    from annotation.storage import segmentation_labelmap_load, series_geometry, series_volume_load
    from annotation.imaging.windowing import window_for_series
    from diagnosis.reporting.keyimages import PLANES, label_colors_rgb, render_key_images

    audit_record(actor=user, action=AuditLog.Action.VIEW, target_type="study_key_images", target_id=study.pk,
                 hospital=study.hospital)
    segmentation = Segmentation.objects.filter(series__study=study).select_related("series", "model").order_by(
        "-created_at").first()
    series = segmentation.series if segmentation else Series.objects.filter(study=study).order_by("pk").first()
    if series is None:
        return {}
    tag = f"s{series.pk}-g{segmentation.pk if segmentation else 0}"
    keys = {plane: f"followup/keyimages/{study.pk}/{tag}-{plane}.png" for plane in PLANES}
    if all(default_storage.exists(k) for k in keys.values()):
        return keys
    import numpy as np

    volume = series_volume_load(series)
    geometry = series_geometry(series)
    label_map = segmentation_labelmap_load(segmentation) if segmentation else None
    center = tuple(n // 2 for n in geometry.shape)
    colors = {}
    if segmentation is not None:
        colors = label_colors_rgb(segmentation.label_table)
        if label_map is not None and label_map.any():
            # Through the centre of the labelled voxels (the finding), not the volume's centre.
            idx = np.argwhere(label_map > 0)
            center = tuple(int(v) for v in np.round(idx.mean(axis=0)))
    window = window_for_series(volume.array, modality=series.modality,
                               hints=(series.description, segmentation.name if segmentation else ""))
    images = render_key_images(volume.array, label_map, geometry, center_index=center, window=window, colors=colors)
    for plane, png in images.items():
        if not default_storage.exists(keys[plane]):
            default_storage.save(keys[plane], ContentFile(png))
    return keys


def stored_bytes(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read()
