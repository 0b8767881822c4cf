"""Read DICOM image series into volumes (pydicom; compressed transfer syntaxes via pylibjpeg).

The pipeline is: read every header (``stop_before_pixels``), drop the objects that are not images
(SEG, RTSTRUCT, SR, presentation states, DICOMDIR …) into a ``skipped`` list, group the rest by
Series Instance UID (0020,000E), sort each group along the slice normal, check that it forms one
regular grid, then decode the pixels and apply the modality LUT.

Geometry (DICOM PS3.3 C.7.6.2.1.1, Image Plane module):

- Image Orientation (Patient) (0020,0037) holds the row cosine ``r`` (the LPS direction of
  increasing column index, array axis i) and the column cosine ``c`` (increasing row index, axis j);
  the slice normal is ``n = r × c`` (array axis k, slices sorted by ascending ``IPP · n``);
- Image Position (Patient) (0020,0032) is the LPS centre of the first transmitted voxel of a slice;
  the volume origin is that of the first sorted slice;
- Pixel Spacing (0028,0030) is (row spacing, column spacing) = (spacing j, spacing i); spacing k is
  the median distance between consecutive slice positions (Slice Thickness (0018,0050) may differ
  from it: overlapping or gapped reconstructions).

Enhanced multi-frame CT/MR/PET (PS3.3 C.7.6.16, Multi-frame Functional Groups) are read from the
Plane Position / Plane Orientation / Pixel Measures / Pixel Value Transformation functional groups.

PHI: patient name and ID are returned to the caller but never logged or put in messages.
pydicom's value warnings quote element values ("Invalid value for VR DA: '19560101'"): they are
silenced while headers are parsed, and the quoted values are redacted from the ``pydicom`` logger.

The steps live in one module per section: :mod:`.read` (the public API), :mod:`.headers`,
:mod:`.geometry` (series geometry and validation) and :mod:`.pixels`; :mod:`.records` holds the
dataclasses they pass along. Callers import from ``annotation.imaging.dicom``.
"""

from .read import read_dicom_files, read_dicom_series
from .records import DicomReadResult, DicomSeries

__all__ = ["DicomReadResult", "DicomSeries", "read_dicom_files", "read_dicom_series"]
