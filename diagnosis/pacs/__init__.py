"""Results back to the hospital's PACS, in plain Python (no Django): the measurements as a DICOM SR
(TID 1500 Measurement Report, :mod:`.sr`), the signed report as an Encapsulated PDF (:mod:`.pdf`),
and a C-STORE client that sends them (:mod:`.scu`). Inputs are pydicom datasets and frozen
dataclasses; ``diagnosis.services.pacs`` builds them from the stored rows.
"""
