"""Plain-Python report building blocks (key images; `fetcher`, the PDF renderer's URL fetcher, imported
by name so that weasyprint is loaded only where a PDF is made). Imports no Django.

Arrays follow :mod:`annotation.imaging`: indexed ``[k, j, i]``, spacing in mm in that order, LPS mm.
"""

from .keyimages import PLANES, FindingKeyImage, label_colors_rgb, render_finding_key_image, render_key_images

__all__ = ["PLANES", "FindingKeyImage", "label_colors_rgb", "render_finding_key_image", "render_key_images"]
