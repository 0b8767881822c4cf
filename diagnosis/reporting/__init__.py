"""Plain-Python report building blocks (key images). Imports no Django.

Arrays follow :mod:`annotation.imaging`: indexed ``[k, j, i]``, spacing in mm in that order, LPS mm.
"""

from .keyimages import PLANES, render_key_images, window_to_uint8

__all__ = ["PLANES", "render_key_images", "window_to_uint8"]
