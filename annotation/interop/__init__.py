"""Plain-Python import and export of label maps and models (DICOM SEG, NIfTI/NRRD, MSD/nnU-Net
layout, MONAI bundles). Imports no Django; arrays are ``[k, j, i]`` as in ``annotation.imaging``."""
