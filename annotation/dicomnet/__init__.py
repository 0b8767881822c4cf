"""The DICOM network (DIMSE) service and research de-identification, in plain Python (no Django).

- :mod:`.validation`: which instances the C-STORE SCP accepts, and the DIMSE status of each refusal;
- :mod:`.spool`: received instances written to one folder per series, and the series that are
  complete (no new instance for a quiet period);
- :mod:`.scp`: the pynetdicom Application Entity (C-ECHO and C-STORE SCP), refusing unknown
  calling AE titles at association;
- :mod:`.deidentify`: the PS3.15 Basic Application Level Confidentiality Profile with the
  Retain Longitudinal Temporal Information with Modified Dates option (dicognito).

The Django side (peers, routing rules, the import of a complete series, pseudonyms) lives in
``annotation.services.dicom_network`` and ``annotation.services.research_export``.

PHI: patient names and IDs are never logged; log lines name AE titles, counts and UIDs only.
"""
