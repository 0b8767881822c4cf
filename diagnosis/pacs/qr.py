"""Query/Retrieve SCU against the hospital's PACS (DICOM PS3.4 Annex C, Study Root), with pynetdicom.

:func:`find_studies` is a C-FIND at STUDY level (PS3.4 C.4.1, C.6.2 Study Root Query/Retrieve Information
Model - FIND): the matching key Patient ID (0010,0020), optionally Study Instance UID (0020,000D), and the
return keys Study Date (0008,0020), Modalities in Study (0008,0061), Study Description (0008,1030) and
Number of Study Related Instances (0020,1208).

:func:`move_study` is a C-MOVE at STUDY level (PS3.4 C.4.2, Study Root - MOVE) to a Move Destination
AE title: the PACS opens its own association to that AE (the portal's C-STORE SCP) and stores the
study's instances there as sub-operations. The final response counts the completed, failed and warning
sub-operations (PS3.4 C.4.2.1.6); the instances are filed by whoever runs that SCP.

One association per call. A failure says what went wrong in a stable ``code`` and, where the PACS
answered, its DIMSE status. PHI: the Patient ID goes to the PACS only; errors and results name UIDs,
counts and statuses.
"""

from __future__ import annotations

from dataclasses import dataclass

#: C-FIND / C-MOVE pending statuses (PS3.4 Table C.4-1, C.4-2).
_PENDING = {0xFF00, 0xFF01}
#: C-MOVE: Warning, sub-operations complete, one or more failures or warnings (PS3.4 Table C.4-2).
STATUS_SUBOPS_WARNING = 0xB000
#: C-MOVE: Refused, Move Destination unknown (PS3.4 Table C.4-2).
STATUS_MOVE_DESTINATION_UNKNOWN = 0xA801


class QueryRetrieveError(Exception):
    """A query or retrieve against the PACS failed.

    ``code`` is one of ``pacs_unreachable`` (no association: connection refused, timeout, or the PACS
    dropped it unanswered), ``association_rejected`` (rejected-transient, e.g. too many associations),
    ``association_rejected_permanent`` (rejected-permanent, PS3.8 Table 9-21: a wrong called AE title, or
    the PACS does not know the portal's calling AE title), ``model_not_accepted`` (the PACS accepts no
    Study Root FIND/MOVE presentation context), ``find_failed`` / ``move_failed`` (a failure status, in
    ``status``) and ``move_destination_unknown`` (0xA801: the PACS does not know the portal's AE title
    as a destination).
    """

    def __init__(self, message: str, *, code: str, status: int | None = None):
        self.message = message
        self.code = code
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class QueryRetrieveSource:
    """The PACS's C-FIND/C-MOVE SCP (host, port, called AE title) and the portal's own AE title, which
    calls and is the Move Destination."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = "YIXIN"
    timeout_s: float = 30.0


@dataclass(frozen=True)
class StudyMatch:
    """One study the PACS holds: Study Instance UID, Study Date (``YYYYMMDD`` or ``""``), Modalities in
    Study, Study Description and Number of Study Related Instances (None when the PACS left it empty)."""

    study_instance_uid: str
    study_date: str
    modalities: tuple[str, ...]
    description: str
    instances: int | None


@dataclass(frozen=True)
class MoveResult:
    """The final C-MOVE response: DIMSE ``status`` and the sub-operation counts (PS3.4 C.4.2.1.6), with the
    Failed SOP Instance UID List (0008,0058) when the PACS sent one."""

    status: int
    completed: int
    failed: int
    warning: int
    failed_sop_instance_uids: tuple[str, ...] = ()


def _associate(source: QueryRetrieveSource, contexts: list[str]):
    from pynetdicom import AE

    ae = AE(ae_title=source.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = source.timeout_s
    ae.connection_timeout = source.timeout_s
    for context in contexts:
        ae.add_requested_context(context)
    where = f"{source.called_ae}@{source.host}:{source.port}"
    try:
        assoc = ae.associate(source.host, source.port, ae_title=source.called_ae)
    except OSError as exc:  # unresolvable host name
        raise QueryRetrieveError(f"no association with {where} ({type(exc).__name__})", code="pacs_unreachable") from None
    if assoc.is_established:
        return assoc
    primitive = getattr(assoc.acceptor, "primitive", None)
    if assoc.is_rejected:
        reason = ", ".join(str(getattr(primitive, name, "")) for name in ("result_str", "source_str", "reason_str")
                           if getattr(primitive, name, None))
        permanent = getattr(primitive, "result", None) == 0x01  # 0x01 rejected-permanent, 0x02 rejected-transient
        raise QueryRetrieveError(f"{where} rejected the association" + (f" ({reason})" if reason else ""),
                                 code="association_rejected_permanent" if permanent else "association_rejected")
    if primitive is not None and getattr(primitive, "result", None) == 0x00:
        raise QueryRetrieveError(f"{where} accepts none of the Study Root query/retrieve models", code="model_not_accepted")
    raise QueryRetrieveError(f"no association with {where}", code="pacs_unreachable")


def _text(identifier, keyword: str) -> str:
    value = identifier.get(keyword, "") if identifier is not None else ""
    return str(value or "").strip()


def find_studies(source: QueryRetrieveSource, *, patient_id: str, study_instance_uid: str = "") -> list[StudyMatch]:
    """C-FIND the PACS's studies of one patient (Study Root, STUDY level).

    Parameters
    ----------
    patient_id : str
        Patient ID (0010,0020) as the PACS stores it (single value matching: no wildcard is added).
    study_instance_uid : str, optional
        Restrict to one study (Study Instance UID (0020,000D), single value matching).

    Returns
    -------
    list of StudyMatch
        In the PACS's order; a study it returned twice is listed once.

    Raises
    ------
    QueryRetrieveError
        When no association is made, or the PACS answers with a failure status (``find_failed``).
    """
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    if not patient_id or any(c in patient_id for c in "*?\\"):
        # A wildcard or a multi-value would match other patients (PS3.4 C.2.2.2.4).
        raise QueryRetrieveError("Patient ID empty or holding a wildcard", code="find_failed")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = patient_id
    query.StudyInstanceUID = study_instance_uid or ""
    query.StudyDate = ""
    query.ModalitiesInStudy = ""
    query.StudyDescription = ""
    query.NumberOfStudyRelatedInstances = ""
    assoc = _associate(source, [StudyRootQueryRetrieveInformationModelFind])
    found: dict[str, StudyMatch] = {}
    try:
        if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelFind for cx in assoc.accepted_contexts):
            raise QueryRetrieveError("the PACS does not accept Study Root C-FIND", code="model_not_accepted")
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if status is None or "Status" not in status:
                raise QueryRetrieveError("no C-FIND response (timeout or aborted association)", code="pacs_unreachable")
            code = int(status.Status)
            if code in _PENDING:
                uid = _text(identifier, "StudyInstanceUID")
                # Only exact matches: a PACS that ignores the Patient ID key must not leak other patients.
                if not uid or (_text(identifier, "PatientID") not in ("", patient_id)):
                    continue
                modalities = identifier.get("ModalitiesInStudy", "") or ""
                if isinstance(modalities, str):
                    modalities = [m for m in modalities.split("\\") if m]
                count = _text(identifier, "NumberOfStudyRelatedInstances")
                found.setdefault(uid, StudyMatch(
                    study_instance_uid=uid, study_date=_text(identifier, "StudyDate"),
                    modalities=tuple(str(m).strip() for m in modalities if str(m).strip()),
                    description=_text(identifier, "StudyDescription"),
                    instances=int(count) if count.isdigit() else None,
                ))
            elif code != 0x0000:
                raise QueryRetrieveError(f"C-FIND failed with status 0x{code:04X}", code="find_failed", status=code)
    finally:
        if assoc.is_established:
            assoc.release()
    return list(found.values())


def move_study(source: QueryRetrieveSource, *, study_instance_uid: str, move_destination: str | None = None) -> MoveResult:
    """C-MOVE one study (Study Root, STUDY level) to ``move_destination`` (the portal's AE title by default).

    Returns
    -------
    MoveResult
        The final response: status 0x0000 (all sub-operations completed) or 0xB000 (some failed or
        warned); the counts come from the final response, else from the last pending one.

    Raises
    ------
    QueryRetrieveError
        When no association is made, the PACS does not know the destination (``move_destination_unknown``),
        or answers with another failure status (``move_failed``, e.g. 0xA701 out of resources, 0xA900
        identifier does not match SOP class, 0xC000-0xCFFF unable to process).
    """
    from pydicom.dataset import Dataset
    from pydicom.multival import MultiValue
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_instance_uid  # the unique key only (PS3.4 C.4.2.2.1)
    destination = move_destination or source.calling_ae
    assoc = _associate(source, [StudyRootQueryRetrieveInformationModelMove])
    counts = {"completed": 0, "failed": 0, "warning": 0}
    final: int | None = None
    failed_uids: tuple[str, ...] = ()
    try:
        if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelMove for cx in assoc.accepted_contexts):
            raise QueryRetrieveError("the PACS does not accept Study Root C-MOVE", code="model_not_accepted")
        for status, response_identifier in assoc.send_c_move(identifier, destination,
                                                             StudyRootQueryRetrieveInformationModelMove):
            if status is None or "Status" not in status:
                raise QueryRetrieveError("no C-MOVE response (timeout or aborted association)", code="pacs_unreachable")
            code = int(status.Status)
            for name, keyword in (("completed", "NumberOfCompletedSuboperations"),
                                  ("failed", "NumberOfFailedSuboperations"),
                                  ("warning", "NumberOfWarningSuboperations")):
                if status.get(keyword) is not None:
                    counts[name] = int(status.get(keyword))
            if code in _PENDING:
                continue
            final = code
            if response_identifier is not None and "FailedSOPInstanceUIDList" in response_identifier:
                value = response_identifier.FailedSOPInstanceUIDList
                values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
                failed_uids = tuple(str(v) for v in values if v)
    finally:
        if assoc.is_established:
            assoc.release()
    if final is None:
        raise QueryRetrieveError("no final C-MOVE response", code="pacs_unreachable")
    if final == STATUS_MOVE_DESTINATION_UNKNOWN:
        raise QueryRetrieveError(f"the PACS does not know the move destination {destination}",
                                 code="move_destination_unknown", status=final)
    if final not in (0x0000, STATUS_SUBOPS_WARNING):
        raise QueryRetrieveError(f"C-MOVE failed with status 0x{final:04X} ({counts['completed']} completed, "
                                 f"{counts['failed']} failed sub-operations)", code="move_failed", status=final)
    return MoveResult(status=final, failed_sop_instance_uids=failed_uids, **counts)
