"""DICOMweb (DICOM PS3.18): QIDO-RS search, WADO-RS retrieve and STOW-RS store over the stored originals.

``multipart`` and ``qido`` are plain Python (no Django); ``selectors``, ``services`` and ``api`` hold the
scoped reads, the store and the views. The endpoints are mounted at ``/dicomweb/`` (docs/dicomweb.md).
"""
