"""The DICOM Application Entity: Verification (C-ECHO) and Storage (C-STORE) SCP with pynetdicom.

Associations from a calling AE title that is not a configured peer are rejected at association
(A-ASSOCIATE-RJ, rejected-permanent, service-user, "calling AE title not recognised": PS3.8
9.3.4). The peer list is read again at every association request, so a peer added in the admin is
accepted without a restart. Every storage SOP class is accepted at negotiation, so that an instance
the import cannot read gets a proper C-STORE failure status (0x0122) rather than a failed
negotiation; image instances are checked (:mod:`.validation`) and written to the spool.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pydicom.uid import AllTransferSyntaxes

from .spool import SeriesSpool
from .validation import STATUS_CANNOT_UNDERSTAND, STATUS_OUT_OF_RESOURCES, STATUS_SUCCESS, instance_check

logger = logging.getLogger(__name__)


def instance_receive(spool, ds, *, calling_ae_title: str, transfer_syntax: str, data, affected_sop_instance_uid: str = "",
                     operation: str = "C-STORE") -> int:
    """Check one received instance and spool it; return the C-STORE status to answer (PS3.4 Table B.2-1).

    The C-STORE SCP and the C-GET retrieve (whose instances arrive as C-STORE sub-operations on the portal's
    own association) both receive through this.

    Parameters
    ----------
    spool : SeriesSpool
        Where the instance is written, under ``calling_ae_title`` and its series.
    ds : pydicom.Dataset
        The decoded instance.
    data : callable
        Returns the instance encoded as a Part 10 file (called only when the instance is accepted).
    affected_sop_instance_uid : str
        The request's Affected SOP Instance UID (0000,1000), checked against the dataset's.
    operation : str
        Names the operation in log lines (no PHI is logged).

    Returns
    -------
    int
        0x0000 when spooled, the refusal's status from :func:`instance_check`, or 0xA700 (out of
        resources) when the spool cannot be written.
    """
    refusal = instance_check(ds, transfer_syntax=transfer_syntax, affected_sop_instance_uid=affected_sop_instance_uid)
    if refusal is not None:
        logger.warning("%s from %s refused (0x%04X): %s", operation, calling_ae_title, refusal.status, refusal.reason)
        return refusal.status
    try:
        spool.instance_write(calling_ae_title=calling_ae_title, series_instance_uid=str(ds.SeriesInstanceUID),
                             sop_instance_uid=str(ds.SOPInstanceUID), data=data())
    except OSError as exc:
        logger.error("%s from %s refused (0x%04X): spool unwritable (%s)", operation, calling_ae_title,
                     STATUS_OUT_OF_RESOURCES, type(exc).__name__)
        return STATUS_OUT_OF_RESOURCES
    return STATUS_SUCCESS


#: Never a valid AE title (PS3.5 Table 6.2-1 forbids the backslash): keeps the calling-AE check on
#: when no peer is configured, where pynetdicom would otherwise accept everybody.
_NO_PEER = "\\"


@dataclass(frozen=True)
class ListenerConfig:
    """Where the service listens: its own AE title, the bind address and port, the maximum PDU."""

    ae_title: str = "YIXIN"
    host: str = "127.0.0.1"
    port: int = 11112
    max_pdu_bytes: int = 0  # 0: unlimited, pynetdicom's convention


class _PeerCheckedAE(AE):
    """An AE whose required calling AE titles are read from a callable at each association."""

    def __init__(self, ae_title: str, peer_titles: Callable[[], Iterable[str]]):
        super().__init__(ae_title=ae_title)
        self._peer_titles = peer_titles

    @property  # type: ignore[override]
    def require_calling_aet(self) -> list[str]:
        try:
            titles = [t.strip() for t in self._peer_titles() if t and t.strip()]
        except Exception:  # noqa: BLE001 - the peer list is unreadable: refuse rather than accept all
            logger.exception("reading the DICOM peers failed; refusing the association")
            titles = []
        return titles or [_NO_PEER]

    @require_calling_aet.setter
    def require_calling_aet(self, value) -> None:  # AE.__init__ assigns it
        pass


class DicomListener:
    """A running C-ECHO / C-STORE SCP.

    Parameters
    ----------
    config : ListenerConfig
    spool : SeriesSpool
        Where accepted instances are written.
    peer_titles : callable returning an iterable of str
        The calling AE titles that may associate (called at every association request).
    """

    def __init__(self, config: ListenerConfig, *, spool: SeriesSpool, peer_titles: Callable[[], Iterable[str]]):
        self.config = config
        self.spool = spool
        self.ae = _PeerCheckedAE(config.ae_title, peer_titles)
        self.ae.maximum_pdu_size = config.max_pdu_bytes
        self.ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, AllTransferSyntaxes)
        self._server = None

    # --- event handlers ----------------------------------------------------------------------------

    def _on_store(self, event) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        transfer_syntax = event.context.transfer_syntax
        sop_uid = str(event.request.AffectedSOPInstanceUID or "")
        try:
            ds = event.dataset
        except Exception as exc:  # noqa: BLE001 - undecodable bytes from the peer
            logger.warning("C-STORE from %s refused (0x%04X): undecodable dataset (%s)", calling, STATUS_CANNOT_UNDERSTAND, type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        return instance_receive(self.spool, ds, calling_ae_title=calling, transfer_syntax=transfer_syntax,
                                data=lambda: event.encoded_dataset(include_meta=True), affected_sop_instance_uid=sop_uid)

    @staticmethod
    def _on_rejected(event) -> None:
        assoc = event.assoc
        logger.warning("association from %s (%s) rejected: calling AE title not a configured peer",
                       assoc.requestor.ae_title.strip(), assoc.requestor.address)

    @staticmethod
    def _on_accepted(event) -> None:
        logger.info("association from %s accepted", event.assoc.requestor.ae_title.strip())

    # --- running -----------------------------------------------------------------------------------

    def _handlers(self) -> list:
        return [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected), (evt.EVT_ACCEPTED, self._on_accepted)]

    def start(self) -> "DicomListener":
        """Start serving in background threads; returns at once."""
        self._server = self.ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=self._handlers()
        )
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.ae.start_server((self.config.host, self.config.port), block=True, evt_handlers=self._handlers())

    def stop(self) -> None:
        """Stop serving and abort open associations."""
        self.ae.shutdown()
