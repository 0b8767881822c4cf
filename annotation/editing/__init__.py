"""Plain-Python label-map editing: diffs, tools, refinements and comparison. Imports no Django.

Every label map is indexed ``[k, j, i]`` with spacing in mm in the same order
(``annotation.imaging.volume``); every function returns a new array.
"""

from .compare import LabelChange, change_map, compare_label_maps, dice, inter_annotator_dice
from .diff import DiffError, LabelDiff, diff_apply, diff_compute, diff_decode, diff_encode, diff_validate
from .refine import OPERATIONS, refine
from .tools import EditError, brush_mask, erase, flood_fill_mask, paint, polygon_mask

__all__ = [
    "OPERATIONS", "DiffError", "EditError", "LabelChange", "LabelDiff", "brush_mask", "change_map",
    "compare_label_maps", "dice", "diff_apply", "diff_compute", "diff_decode", "diff_encode", "diff_validate",
    "erase", "flood_fill_mask", "inter_annotator_dice", "paint", "polygon_mask", "refine",
]
