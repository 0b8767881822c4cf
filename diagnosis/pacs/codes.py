"""The coded concepts of the portal's Measurement Report, with their sources.

Every concept comes from a DICOM PS3.16 context group (CID) or from the DCM coding scheme
(PS3.16 Annex D); units are UCUM (CID 7181 / 82 "Units of Measurement"). The same codes are used
by dcmqi and the TCIA QIN reports, so a PACS or viewer that understands TID 1500 shows them.

=====================  ==========================  ============  ======================================
What                   Code                        Scheme        Source
=====================  ==========================  ============  ======================================
volume                 118565006 "Volume"          SCT           CID 7469 Generic Intensity and Size
long axis              103339001 "Long Axis"       SCT           CID 7470 Linear Measurements
short axis             103340004 "Short Axis"      SCT           CID 7470 Linear Measurements
mean attenuation       112031 "Attenuation         DCM           CID 7180 Abstract Multi-dimensional
                       Coefficient"                              Image Model Component Semantics
  derivation           373098007 "Mean"            SCT           CID 7464 General Region of Interest
                                                                 Measurement Modifiers
unit mL                ml "milliliter"             UCUM          CID 7181 Abstract Multi-dimensional
unit mm                mm "millimeter"             UCUM          Image Model Component Units
unit HU                [hnsf'U] "Hounsfield unit"  UCUM
procedure (CT)         77477000 "Computed          SCT           CID 10005 (CT acquisition), used for
                       tomography"                               TID 1500 Procedure Reported
procedure (other)      363679005 "Imaging          SCT           CID 100 Quantitative Diagnostic
                       procedure"                                Imaging Procedures
person observer        121006 "Person"             DCM           CID 270 Observer Type
device observer        121007 "Device"             DCM           CID 270 Observer Type
document title         18748-4 "Diagnostic         LN            CID 7020 Document Titles (LOINC), the
                       imaging report"                           Encapsulated PDF's Concept Name
=====================  ==========================  ============  ======================================

The finding type of each group is the segment's Segmented Property Type (as written in the SEG,
CID 7151 / label's own SNOMED code, default SCT 85756007 "Tissue"), so SEG and SR agree.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

VOLUME = Code("118565006", "SCT", "Volume")
LONG_AXIS = Code("103339001", "SCT", "Long Axis")
SHORT_AXIS = Code("103340004", "SCT", "Short Axis")
ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient")
MEAN = Code("373098007", "SCT", "Mean")

UNIT_ML = Code("ml", "UCUM", "milliliter")
UNIT_MM = Code("mm", "UCUM", "millimeter")
UNIT_HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")

PROCEDURE_CT = Code("77477000", "SCT", "Computed tomography")
PROCEDURE_IMAGING = Code("363679005", "SCT", "Imaging procedure")

PERSON = Code("121006", "DCM", "Person")
DEVICE = Code("121007", "DCM", "Device")

DIAGNOSTIC_IMAGING_REPORT = Code("18748-4", "LN", "Diagnostic imaging report")


def procedure_for_modality(modality: str) -> Code:
    """Return the Procedure Reported code of a series modality (CT, else generic imaging)."""
    return PROCEDURE_CT if (modality or "").upper() == "CT" else PROCEDURE_IMAGING
