"""Plain-Python measurements of segments: volumes, diameters, surface area, components. Imports no Django.

Arrays follow :mod:`annotation.imaging`: indexed ``[k, j, i]``, spacing in mm in that order, LPS mm.
"""

from .shape import ComponentMeasurement, SegmentMeasurement, crofton_surface_area, largest_finding, measure_segments

__all__ = ["ComponentMeasurement", "SegmentMeasurement", "crofton_surface_area", "largest_finding", "measure_segments"]
