"""Plain-Python report building blocks (key images). Imports no Django.

Arrays follow :mod:`annotation.imaging`: indexed ``[k, j, i]``, spacing in mm in that order, LPS mm.
"""

from .keyimages import PLANES, FindingKeyImage, label_colors_rgb, render_finding_key_image, render_key_images

__all__ = ["PLANES", "FindingKeyImage", "label_colors_rgb", "render_finding_key_image", "render_key_images"]
