"""The DICOMweb endpoint ``/dicomweb/`` (DICOM PS3.18): QIDO-RS, WADO-RS and STOW-RS.

Same authentication (JWT bearer or session) and tenant scoping as the REST API; clinicians only
(docs/permissions.md, section DICOMweb). Another hospital's study is a 404. Errors use the portal's
``{"error": {"code", "message"}}`` envelope with the status PS3.18 gives them: a bad query 400, not
signed in 401, not a clinician 403, unknown 404, a STOW-RS body that is not ``multipart/related`` of
``application/dicom`` 415, a malformed one 400. Reads and stores are audit-logged (ids and counts).
Not part of the OpenAPI schema of the REST API: PS3.18 describes it.

Beside the originals, each study lists the portal's own results for it (a signed report's DICOM SEG,
TID 1500 SR and Encapsulated PDF, :mod:`annotation.dicomweb.results`) as further series, after its
original series. A request inside a study (``studies/{study}/…``) builds and stores the results not stored
yet; a search across studies lists those already stored (sent to a PACS or read inside their study once).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import pydicom
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from portal.api_errors import ServiceError, message_translate
from portal.models import AuditLog
from portal.permissions import IsClinician
from portal.services import audit_record

from ..imaging.windowing import apply_window
from ..models import Series, SourceFile, Study
from . import selectors, services
from .multipart import MultipartError, content_type_parse, multipart_decode, multipart_encode_stream, new_boundary
from .qido import QidoError, QidoQuery, qido_query_parse
from .results import ResultInstance, ResultSeries, dicomweb_result_instances, result_series_group

DICOM_JSON = "application/dicom+json"
CHUNK_BYTES = 1024 * 1024


class DicomwebNegotiation(BaseContentNegotiation):
    """Answer errors as JSON whatever ``Accept`` asks for; the views pick their media types themselves."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DicomwebApi(APIView):
    """Base of the DICOMweb views: clinicians only, JSON error envelope, no DRF parsing of bodies."""

    permission_classes = [IsClinician]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = DicomwebNegotiation

    def permission_denied(self, request, message=None, code=None):
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated()
        raise exceptions.PermissionDenied(message_translate(_("DICOMweb is for doctors and hospital administrators.")))

    def query(self, request, *, level: str, within: bool) -> QidoQuery:
        try:
            return qido_query_parse(_pairs(request), level=level, within=within)
        except QidoError as exc:
            raise ServiceError(_("Bad QIDO-RS query: %(reason)s."), params={"reason": str(exc)},
                               code="invalid_query", status_code=400) from None

    def base_url(self, request) -> str:
        return request.build_absolute_uri(reverse("dicomweb:studies")).rsplit("/studies", 1)[0]


def _pairs(request) -> list[tuple[str, str]]:
    return [(name, value) for name, values in request.query_params.lists() for value in values]


def _json_response(data, *, status: int = 200, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(json.dumps(data), status=status, content_type=DICOM_JSON, headers=headers)


Item = SourceFile | ResultInstance  # an instance served: a stored original or one of the portal's results


def _header_read(instance: Item) -> pydicom.Dataset:
    """Read an instance's stored original (or stored result) without its pixel data."""
    if isinstance(instance, ResultInstance):
        return instance.header()
    with instance.file.open("rb") as fh:
        return pydicom.dcmread(fh, stop_before_pixels=True)


def _full_read(instance: Item) -> pydicom.Dataset:
    if isinstance(instance, ResultInstance):
        return instance.dataset()
    with instance.file.open("rb") as fh:
        return pydicom.dcmread(io.BytesIO(fh.read()))


def _stream(instance: Item) -> Iterator[bytes]:
    if isinstance(instance, ResultInstance):
        yield from instance.stream()
        return
    with instance.file.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk


def _audit(request, *, target_type: str, target_id, hospital, detail: dict) -> None:
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type=f"dicomweb:{target_type}",
                 target_id=target_id, hospital=hospital, detail=detail)


# --- QIDO-RS -------------------------------------------------------------------------------------

def _with_extra(ds: pydicom.Dataset, query: QidoQuery, instance: Item | None) -> pydicom.Dataset:
    """Add the ``includefield`` attributes, read from the stored header of ``instance`` (PS3.18 8.3.4.3)."""
    if not (query.include or query.all_fields) or instance is None:
        return ds
    header = _header_read(instance)
    for element in header:
        if element.tag.group in (0x0002,) or element.tag.is_private:
            continue
        if query.all_fields or element.keyword in query.include:
            if element.tag not in ds:
                ds.add(element)
    return ds


def _study_dataset(study: Study, base: str, results: list[ResultSeries] = ()) -> pydicom.Dataset:
    series = list(study.series.all())
    ds = pydicom.Dataset()
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date.strftime("%Y%m%d") if study.study_date else ""
    ds.StudyDescription = study.description
    ds.AccessionNumber = study.accession_number
    ds.PatientID = study.patient.mrn
    ds.PatientName = study.patient.name
    ds.ModalitiesInStudy = sorted({s.modality for s in [*series, *results] if s.modality})
    ds.NumberOfStudyRelatedSeries = len(series) + len(results)
    ds.NumberOfStudyRelatedInstances = sum(s.instance_count for s in series) + sum(len(r.instances) for r in results)
    ds.RetrieveURL = f"{base}/studies/{study.study_instance_uid}"
    return ds


def _series_dataset(series: Series, base: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.StudyInstanceUID = series.study.study_instance_uid
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.Modality = series.modality
    ds.SeriesDescription = series.description
    if series.series_number is not None:
        ds.SeriesNumber = series.series_number
    ds.BodyPartExamined = series.body_part
    ds.NumberOfSeriesRelatedInstances = series.instances
    ds.RetrieveURL = f"{base}/studies/{series.study.study_instance_uid}/series/{series.series_instance_uid}"
    return ds


def _result_series_dataset(series: ResultSeries, base: str) -> pydicom.Dataset:
    study_uid = series.instances[0].study_instance_uid
    ds = pydicom.Dataset()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.Modality = series.modality
    ds.SeriesDescription = series.series_description
    if series.series_number is not None:
        ds.SeriesNumber = series.series_number
    ds.NumberOfSeriesRelatedInstances = len(series.instances)
    ds.RetrieveURL = f"{base}/studies/{study_uid}/series/{series.series_instance_uid}"
    return ds


def _result_series_matches(series: ResultSeries, query: QidoQuery) -> bool:
    """Match a result series against the series keys of ``query`` (the study keys chose its study)."""
    match = query.match
    return (("SeriesInstanceUID" not in match or series.series_instance_uid in match["SeriesInstanceUID"])
            and ("Modality" not in match or series.modality == match["Modality"])
            and ("SeriesNumber" not in match or series.series_number == match["SeriesNumber"]))


def _result_instance_matches(instance: ResultInstance, query: QidoQuery) -> bool:
    match = query.match
    return (("SOPInstanceUID" not in match or instance.sop_instance_uid in match["SOPInstanceUID"])
            and ("InstanceNumber" not in match or instance.instance_number == match["InstanceNumber"]))


def _results_of(request, query: QidoQuery, study: Study | None) -> list[ResultInstance]:
    """The results of ``study`` (built when missing), or the stored ones of every study a search across
    studies may see."""
    if study is not None:
        return dicomweb_result_instances(studies=[study], build=True)
    return dicomweb_result_instances(studies=selectors.dicomweb_result_studies(user=request.user, query=query),
                                     build=False)


_INSTANCE_KEYS = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated",
                  "NumberOfFrames")


def _instance_dataset(instance: Item, query: QidoQuery, base: str) -> pydicom.Dataset:
    header = _header_read(instance)
    if isinstance(instance, ResultInstance):
        study_uid, series_uid = instance.study_instance_uid, instance.series_instance_uid
    else:
        study_uid, series_uid = instance.series.study.study_instance_uid, instance.series.series_instance_uid
    ds = pydicom.Dataset()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    for keyword in _INSTANCE_KEYS:
        if keyword in header:
            ds[keyword] = header[keyword]
    for element in header:
        if element.tag.group != 0x0002 and not element.tag.is_private and element.tag not in ds and (
                query.all_fields or element.keyword in query.include):
            ds.add(element)
    ds.RetrieveURL = f"{base}/studies/{study_uid}/series/{series_uid}/instances/{instance.sop_instance_uid}"
    return ds


def _page(queryset, query: QidoQuery, extra: list = ()) -> tuple[list, dict]:
    """Return one page of results and the headers (PS3.18 8.3.4.4: a Warning when more remain).

    The rows are those of ``queryset`` followed by ``extra`` (the portal's results), paged together.
    """
    start, stop = query.offset, query.offset + query.limit + 1
    if extra:
        count = queryset.count()
        rows = list(queryset[start:stop]) if start < count else []
        first_extra = max(0, start - count)
        rows += list(extra[first_extra:first_extra + (stop - start - len(rows))])
    else:
        rows = list(queryset[start:stop])
    headers = {}
    if len(rows) > query.limit:
        rows = rows[:query.limit]
        headers["Warning"] = '299 yixin "There are additional results that can be requested"'
    return rows, headers


def _first_instance(series: Series) -> SourceFile | None:
    return series.source_files.exclude(sop_instance_uid="").order_by("instance_number", "pk").first()


def _search_response(request, datasets: list[pydicom.Dataset], headers: dict) -> HttpResponse:
    if not datasets:
        return HttpResponse(status=204, headers=headers)  # PS3.18 8.3.4.4: no match
    return _json_response([ds.to_json_dict(bulk_data_threshold=2**62) for ds in datasets], headers=headers)


class StudiesApi(DicomwebApi):
    """``GET studies``: QIDO-RS search for studies; ``POST studies``: STOW-RS."""

    @extend_schema(exclude=True)
    def get(self, request):
        query = self.query(request, level="studies", within=False)
        studies, headers = _page(selectors.dicomweb_studies(user=request.user, query=query), query)
        base = self.base_url(request)
        results: dict[int, list[ResultSeries]] = {}
        if studies:
            for item in result_series_group(dicomweb_result_instances(studies=studies, build=False)):
                results.setdefault(item.instances[0].study_id, []).append(item)
        datasets = []
        for study in studies:
            first = None
            if query.include or query.all_fields:
                first_series = next(iter(study.series.all()), None)
                first = _first_instance(first_series) if first_series else None
            datasets.append(_with_extra(_study_dataset(study, base, results.get(study.pk, [])), query, first))
        _audit(request, target_type="qido", target_id="", hospital=request.user.hospital,
               detail={"level": "studies", "count": len(datasets)})
        return _search_response(request, datasets, headers)

    @extend_schema(exclude=True)
    def post(self, request):
        return _stow(self, request, None)


class SeriesSearchApi(DicomwebApi):
    """``GET [studies/{study}/]series``: QIDO-RS search for series."""

    @extend_schema(exclude=True)
    def get(self, request, study_uid: str | None = None):
        study = selectors.dicomweb_study_get(user=request.user, study_uid=study_uid) if study_uid else None
        query = self.query(request, level="series", within=study is not None)
        results = [s for s in result_series_group(_results_of(request, query, study))
                   if _result_series_matches(s, query)]
        rows, headers = _page(selectors.dicomweb_series(user=request.user, query=query, study=study), query, results)
        base = self.base_url(request)
        datasets = []
        for s in rows:
            if isinstance(s, ResultSeries):
                datasets.append(_with_extra(_result_series_dataset(s, base), query, s.instances[0]))
            else:
                datasets.append(_with_extra(_series_dataset(s, base), query,
                                            _first_instance(s) if (query.include or query.all_fields) else None))
        _audit(request, target_type="qido", target_id=study.pk if study else "", hospital=request.user.hospital,
               detail={"level": "series", "count": len(datasets)})
        return _search_response(request, datasets, headers)


class InstanceSearchApi(DicomwebApi):
    """``GET [studies/{study}/[series/{series}/]]instances``: QIDO-RS search for instances."""

    @extend_schema(exclude=True)
    def get(self, request, study_uid: str | None = None, series_uid: str | None = None):
        study = selectors.dicomweb_study_get(user=request.user, study_uid=study_uid) if study_uid else None
        query = self.query(request, level="instances", within=study is not None)
        results = [r for r in _results_of(request, query, study) if _result_instance_matches(r, query)]
        series = None
        if series_uid:
            result_series = [r for r in results if r.series_instance_uid == series_uid]
            if result_series:
                rows, headers = _page(SourceFile.objects.none(), query, result_series)
                datasets = [_instance_dataset(instance, query, self.base_url(request)) for instance in rows]
                _audit(request, target_type="qido", target_id=study.pk, hospital=request.user.hospital,
                       detail={"level": "instances", "count": len(datasets)})
                return _search_response(request, datasets, headers)
            series = selectors.dicomweb_series_get(study=study, series_uid=series_uid)
            results = []
        results = [r for r in results if _result_series_matches(_single_series(r), query)]
        rows, headers = _page(selectors.dicomweb_instances(user=request.user, query=query, study=study,
                                                           series=series), query, results)
        base = self.base_url(request)
        datasets = [_instance_dataset(instance, query, base) for instance in rows]
        _audit(request, target_type="qido", target_id=study.pk if study else "", hospital=request.user.hospital,
               detail={"level": "instances", "count": len(datasets)})
        return _search_response(request, datasets, headers)


def _single_series(instance: ResultInstance) -> ResultSeries:
    return ResultSeries(series_instance_uid=instance.series_instance_uid, modality=instance.modality,
                        series_number=instance.series_number, series_description=instance.series_description,
                        instances=(instance,))


# --- WADO-RS -------------------------------------------------------------------------------------

class RetrieveApi(DicomwebApi):
    """``GET studies/{study}[/series/{series}[/instances/{instance}]]``: the stored originals, multipart.

    ``multipart/related; type="application/dicom"``, each part one Part 10 file exactly as stored
    (its own transfer syntax; PS3.18 8.7.3.5.2 lets the origin server keep it when the client
    accepts ``transfer-syntax=*``, which this server assumes). ``POST studies/{study}`` is STOW-RS.
    """

    @extend_schema(exclude=True)
    def get(self, request, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
        study, instances = _instances_of(request, study_uid, series_uid, sop_uid)
        boundary = new_boundary()
        response = StreamingHttpResponse(
            multipart_encode_stream((_stream(i) for i in instances), content_type="application/dicom",
                                    boundary=boundary),
            content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        )
        audit_record(actor=request.user, action=AuditLog.Action.DOWNLOAD, target_type="dicomweb:wado",
                     target_id=study.pk, hospital=study.hospital, detail={"instances": len(instances)})
        return response

    @extend_schema(exclude=True)
    def post(self, request, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
        if series_uid or sop_uid:
            raise exceptions.MethodNotAllowed("POST")
        return _stow(self, request, study_uid)


def _instances_of(request, study_uid: str, series_uid: str | None,
                  sop_uid: str | None) -> tuple[Study, list[Item]]:
    """Return the visible study and its instances addressed by the path: originals and the portal's
    results (built when missing), in series order. Raises Http404 / a 404 ServiceError when none."""
    study = selectors.dicomweb_study_get(user=request.user, study_uid=study_uid)
    results = dicomweb_result_instances(studies=[study], build=True)
    if series_uid and any(r.series_instance_uid == series_uid for r in results):
        instances: list[Item] = [r for r in results if r.series_instance_uid == series_uid
                                 and (not sop_uid or r.sop_instance_uid == sop_uid)]
        if not instances:
            raise ServiceError(_("Not found."), code="not_found", status_code=404)
        return study, instances
    series = selectors.dicomweb_series_get(study=study, series_uid=series_uid) if series_uid else None
    if sop_uid:
        return study, [selectors.dicomweb_instance_get(series=series, sop_uid=sop_uid)]
    instances = list(selectors.dicomweb_instances(user=request.user, query=QidoQuery(), study=study, series=series))
    if series is None:
        instances += results
    if not instances:
        raise ServiceError(_("Not found."), code="not_found", status_code=404)
    return study, instances


class MetadataApi(DicomwebApi):
    """``GET …/metadata``: the instances' attributes as DICOM JSON (PS3.18 F.2), without bulk data.

    Pixel Data is left out (fetch it with ``frames``); other binary values are inline.
    """

    @extend_schema(exclude=True)
    def get(self, request, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
        study, instances = _instances_of(request, study_uid, series_uid, sop_uid)
        data = []
        for instance in instances:
            header = _header_read(instance)
            data.append(header.to_json_dict(bulk_data_threshold=2**62))
        _audit(request, target_type="metadata", target_id=study.pk, hospital=study.hospital,
               detail={"instances": len(instances)})
        return _json_response(data)


def _instance_get(request, study_uid: str, series_uid: str, sop_uid: str) -> tuple[Study, Item]:
    study, instances = _instances_of(request, study_uid, series_uid, sop_uid)
    return study, instances[0]


def _audit_id(instance: Item):
    return instance.sop_instance_uid if isinstance(instance, ResultInstance) else instance.pk


def _no_pixel_data() -> ServiceError:
    return ServiceError(_("This instance has no frames: it is not an image."), code="no_pixel_data",
                        status_code=400)


def _frame_numbers(text: str, count: int) -> list[int]:
    numbers = []
    for item in text.split(","):
        if not item.strip().isdigit():
            raise ServiceError(_("Frame numbers are positive integers separated by commas."), code="invalid_frames",
                               status_code=400)
        numbers.append(int(item))
    if any(n < 1 or n > count for n in numbers):
        raise ServiceError(_("This instance has %(count)s frames."), params={"count": count}, code="frame_not_found",
                           status_code=404)
    return numbers


class FramesApi(DicomwebApi):
    """``GET …/instances/{instance}/frames/{n[,m…]}``: uncompressed frames (PS3.18 8.7.3.5.3).

    ``multipart/related; type="application/octet-stream"``, one part per frame, 1-based: the frame's
    pixel values as stored for native transfer syntaxes, decoded (native byte layout, little endian) for
    compressed ones.
    """

    @extend_schema(exclude=True)
    def get(self, request, study_uid: str, series_uid: str, sop_uid: str, frames: str):
        study, instance = _instance_get(request, study_uid, series_uid, sop_uid)
        ds = _full_read(instance)
        if "PixelData" not in ds:
            raise _no_pixel_data()
        count = int(ds.get("NumberOfFrames", 1) or 1)
        numbers = _frame_numbers(frames, count)
        pixel_count = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
        if int(ds.BitsAllocated) == 1 and (ds.file_meta.TransferSyntaxUID.is_compressed or pixel_count % 8):
            # A SEG's BINARY frames are bit-packed across frame boundaries (PS3.5 8.1.1): each frame is
            # packed again on its own, least significant bit first.
            pixels = ds.pixel_array.reshape((count, -1))
            raw = [np.packbits(pixels[n - 1].astype(bool), bitorder="little").tobytes() for n in numbers]
        elif ds.file_meta.TransferSyntaxUID.is_compressed:
            pixels = ds.pixel_array.reshape((count, -1))
            raw = [pixels[n - 1].astype(pixels.dtype.newbyteorder("<")).tobytes() for n in numbers]
        else:
            size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated) // 8
            raw = [bytes(ds.PixelData[(n - 1) * size:n * size]) for n in numbers]
        boundary = new_boundary()
        body = b"".join(multipart_encode_stream(raw, content_type="application/octet-stream", boundary=boundary))
        _audit(request, target_type="frames", target_id=_audit_id(instance), hospital=study.hospital,
               detail={"frames": numbers})
        return HttpResponse(body, content_type=(
            f'multipart/related; type="application/octet-stream"; boundary={boundary}'))


def _window_param(text: str) -> tuple[float, float]:
    """Parse ``window=center,width,function`` (PS3.18 8.3.5.1.3; only the linear function)."""
    items = text.split(",")
    try:
        if len(items) != 3 or items[2].strip().lower() != "linear":
            raise ValueError
        center, width = float(items[0]), float(items[1])
        if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
            raise ValueError
    except ValueError:
        raise ServiceError(_("window is center,width,linear with a width of at least 1."), code="invalid_window",
                           status_code=400) from None
    return center, width


class RenderedApi(DicomwebApi):
    """``GET …/instances/{instance}[/frames/{n}]/rendered``: one frame as PNG (default) or JPEG.

    Modality LUT, then the linear VOI window of ``?window=center,width,linear``, else the instance's
    Window Center/Width (0028,1050/1051), else the series' stored window, else the frame's range
    (PS3.18 8.3.5.1.3, PS3.3 C.11.2.1.2.1).
    """

    @extend_schema(exclude=True)
    def get(self, request, study_uid: str, series_uid: str, sop_uid: str, frames: str = "1"):
        from PIL import Image
        from pydicom.pixels import apply_modality_lut

        pairs = _pairs(request)
        unknown = sorted({name for name, _value in pairs} - {"window", "quality"})
        if unknown:
            raise ServiceError(_("Unknown parameter of a rendered resource: %(name)s."),
                               params={"name": unknown[0][:64]},
                               code="invalid_query", status_code=400)
        study, instance = _instance_get(request, study_uid, series_uid, sop_uid)
        ds = _full_read(instance)
        if "EncapsulatedDocument" in ds and str(ds.get("MIMETypeOfEncapsulatedDocument", "")) == "application/pdf":
            # An Encapsulated PDF renders as the PDF itself (PS3.18 8.3.5.1.2, Table 8.3.5-1).
            if frames != "1":
                raise ServiceError(_("A PDF document has no frames."), code="invalid_frames", status_code=400)
            document = bytes(ds.EncapsulatedDocument)
            length = ds.get("EncapsulatedDocumentLength")
            _audit(request, target_type="rendered", target_id=_audit_id(instance), hospital=study.hospital,
                   detail={"document": "pdf"})
            return HttpResponse(document[:int(length)] if length else document, content_type="application/pdf")
        if "PixelData" not in ds:
            raise ServiceError(_("This instance cannot be rendered: it is neither an image nor a PDF."),
                               code="not_renderable", status_code=400)
        count = int(ds.get("NumberOfFrames", 1) or 1)
        numbers = _frame_numbers(frames, count)
        if len(numbers) != 1:
            raise ServiceError(_("A rendered frame is one frame."), code="invalid_frames", status_code=400)
        pixels = ds.pixel_array
        frame = pixels[numbers[0] - 1] if count > 1 else pixels
        values = apply_modality_lut(frame, ds).astype(np.float64)
        if "window" in request.query_params:
            center, width = _window_param(request.query_params["window"])
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            center = float(ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter)
            width = float(ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth)
        elif str(ds.get("Modality", "")) == "SEG":
            # A segment's frame: 0 black, the largest value (1, or Maximum Fractional Value) white.
            high = float(ds.get("MaximumFractionalValue", 1) or 1)
            center, width = high / 2, high
        elif (isinstance(instance, SourceFile) and instance.series.window_center is not None
              and instance.series.window_width is not None):
            center, width = instance.series.window_center, instance.series.window_width
        else:
            low, high = float(values.min()), float(values.max())
            center, width = (low + high) / 2, max(high - low, 1.0)
        grey = apply_window(values, center, max(width, 1.0))
        accept = request.headers.get("Accept", "")
        jpeg = "image/jpeg" in accept and "image/png" not in accept
        out = io.BytesIO()
        Image.fromarray(grey).save(out, format="JPEG" if jpeg else "PNG")
        _audit(request, target_type="rendered", target_id=_audit_id(instance), hospital=study.hospital,
               detail={"frame": numbers[0]})
        return HttpResponse(out.getvalue(), content_type="image/jpeg" if jpeg else "image/png")


# --- STOW-RS -------------------------------------------------------------------------------------

def _stow(view: DicomwebApi, request, study_uid: str | None) -> HttpResponse:
    """Store a ``multipart/related; type="application/dicom"`` body (PS3.18 10.5).

    200 when every instance was stored, 202 when some failed, 409 when none could be stored; the
    body lists them (ReferencedSOPSequence, FailedSOPSequence with FailureReason).
    """
    if request.user.hospital is None:
        raise ServiceError(_("Storing DICOM instances needs an account of a hospital."), code="no_hospital",
                           status_code=403)
    media, params = content_type_parse(request.META.get("CONTENT_TYPE", ""))
    if media != "multipart/related" or params.get("type", "application/dicom").lower() != "application/dicom":
        raise ServiceError(_("STOW-RS takes multipart/related; type=\"application/dicom\"."),
                           code="unsupported_media_type", status_code=415)
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.IMPORT_MAX_ARCHIVE_BYTES:
        raise ServiceError(_("The request body is too large."), code="too_large", status_code=413)
    body = request._request.read()
    if not body and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # A WSGI server hands Django no chunked body (it reads CONTENT_LENGTH bytes); daphne, which the
        # portal runs, assembles it. Say so rather than report an empty body.
        raise ServiceError(_("This server needs the request's Content-Length; chunked transfer encoding is not "
                             "supported here."), code="length_required", status_code=411)
    try:
        parts = multipart_decode(body, params.get("boundary", ""))
    except MultipartError as exc:
        raise ServiceError(_("The multipart body cannot be read: %(reason)s."), params={"reason": str(exc)},
                           code="invalid_multipart", status_code=400) from None
    result = services.dicomweb_instances_store(user=request.user, parts=parts, study_uid=study_uid)
    base = view.base_url(request)
    ds = pydicom.Dataset()
    studies = {series.study.study_instance_uid for _c, _i, series in result.stored}
    if len(studies) == 1:
        ds.RetrieveURL = f"{base}/studies/{next(iter(studies))}"
    if result.stored:
        ds.ReferencedSOPSequence = []
        for sop_class, sop_uid, series in result.stored:
            item = pydicom.Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_uid
            item.RetrieveURL = (f"{base}/studies/{series.study.study_instance_uid}/series/"
                                f"{series.series_instance_uid}/instances/{sop_uid}")
            ds.ReferencedSOPSequence.append(item)
    if result.failed:
        ds.FailedSOPSequence = []
        for failure in result.failed:
            item = pydicom.Dataset()
            item.ReferencedSOPClassUID = failure.sop_class_uid
            item.ReferencedSOPInstanceUID = failure.sop_instance_uid
            item.FailureReason = failure.reason
            ds.FailedSOPSequence.append(item)
    status = 200 if not result.failed else 202 if result.stored else 409
    return _json_response(ds.to_json_dict(), status=status)
