"""Send DICOM instances to a PACS with C-STORE (DICOM PS3.4 B, PS3.7 9.1.1), with pynetdicom.

One association per call; every instance is offered in Explicit and Implicit VR Little Endian.
A failure says what went wrong in a stable ``code`` and, where the peer answered, the DIMSE
status (PS3.4 B.2.3: 0x0000 success, 0xB000/0xB006/0xB007 warnings, anything else a failure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Warning statuses the standard counts as stored (PS3.4 Table B.2-1).
_WARNINGS = {0xB000, 0xB006, 0xB007}


class StoreError(Exception):
    """A C-STORE to the peer failed.

    ``code`` is one of ``peer_unreachable`` (no association: connection refused, timeout, or the peer
    dropped it unanswered), ``association_rejected`` (the peer rejected the association as transient,
    e.g. too many associations: a later attempt may succeed), ``association_rejected_permanent`` (the
    A-ASSOCIATE-RJ result was "rejected-permanent", PS3.8 §7.1.1.7 and Table 9-21, e.g. a wrong called
    AE title: only a configuration change cures it), ``sop_class_not_accepted`` (no presentation context accepted for an instance's SOP
    class), ``store_failed`` (the peer answered with a failure status, in ``status``).
    ``sent`` lists the SOP Instance UIDs stored before the failure.
    """

    def __init__(self, message: str, *, code: str, status: int | None = None, sent: Sequence[str] = ()):
        self.message = message
        self.code = code
        self.status = status
        self.sent = list(sent)
        super().__init__(message)


@dataclass(frozen=True)
class PacsDestination:
    """Where results go: the peer's host, port and AE title, and the portal's calling AE title."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = "YIXIN"
    timeout_s: float = 30.0


def store_instances(datasets: Sequence, destination: PacsDestination) -> list[tuple[str, int]]:
    """C-STORE every dataset to ``destination`` over one association.

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        Each with SOPClassUID, SOPInstanceUID and a file meta Transfer Syntax UID (uncompressed).

    Returns
    -------
    list of (SOP Instance UID, DIMSE status)
        One per dataset, in order; statuses are success (0x0000) or a warning.

    Raises
    ------
    StoreError
        When the association cannot be made or an instance is not stored (see its ``code``).
    """
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # noqa: F401 - registers the standard SOP classes
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ae = AE(ae_title=destination.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = destination.timeout_s
    ae.connection_timeout = destination.timeout_s
    for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.called_ae)
    if not assoc.is_established:
        if assoc.is_rejected:
            primitive = getattr(assoc.acceptor, "primitive", None)
            reason = ", ".join(str(getattr(primitive, name, "")) for name in ("result_str", "source_str", "reason_str")
                               if getattr(primitive, name, None))
            permanent = getattr(primitive, "result", None) == 0x01  # 0x01 rejected-permanent, 0x02 rejected-transient
            raise StoreError(f"{destination.called_ae}@{destination.host}:{destination.port} rejected the association"
                             + (f" ({reason})" if reason else ""),
                             code="association_rejected_permanent" if permanent else "association_rejected")
        primitive = getattr(assoc.acceptor, "primitive", None)
        if primitive is not None and getattr(primitive, "result", None) == 0x00:
            # Accepted, but with none of the requested presentation contexts: pynetdicom aborts.
            classes = ", ".join(dict.fromkeys(str(ds.SOPClassUID) for ds in datasets))
            raise StoreError(f"the peer accepts none of the SOP classes {classes}", code="sop_class_not_accepted")
        raise StoreError(f"no association with {destination.called_ae}@{destination.host}:{destination.port}",
                         code="peer_unreachable")
    results: list[tuple[str, int]] = []
    try:
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        for ds in datasets:
            uid = str(ds.SOPInstanceUID)
            if str(ds.SOPClassUID) not in accepted:
                raise StoreError(f"the peer does not accept SOP class {ds.SOPClassUID}",
                                 code="sop_class_not_accepted", sent=[u for u, _ in results])
            status = assoc.send_c_store(ds)
            if "Status" not in status:  # no response: timeout or abort
                raise StoreError("no C-STORE response (timeout or aborted association)",
                                 code="peer_unreachable", sent=[u for u, _ in results])
            code = int(status.Status)
            if code != 0x0000 and code not in _WARNINGS:
                raise StoreError(f"C-STORE of {uid} failed with status 0x{code:04X}", code="store_failed",
                                 status=code, sent=[u for u, _ in results])
            results.append((uid, code))
    finally:
        if assoc.is_established:
            assoc.release()
    return results
