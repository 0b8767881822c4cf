"""Plain-Python label-map editing: diffs, refinements and comparison. Imports no Django.

The drawing tools (brush, eraser, threshold brush, flood fill, polygon) run in the browser
(``frontend/src/lib/wb-tools.js``); an edit reaches the server as a diff (:mod:`.diff`).

Every label map is indexed ``[k, j, i]`` with spacing in mm in the same order
(``annotation.imaging.volume``); every function returns a new array.
"""

from .compare import LabelChange, change_map, compare_label_maps, inter_annotator_dice
from .diff import DiffError, LabelDiff, diff_apply, diff_compute, diff_decode, diff_encode, diff_validate
from .errors import EditError
from .refine import OPERATIONS, refine

__all__ = [
    "OPERATIONS", "DiffError", "EditError", "LabelChange", "LabelDiff", "change_map", "compare_label_maps",
    "diff_apply", "diff_compute", "diff_decode", "diff_encode", "diff_validate", "inter_annotator_dice", "refine",
]
