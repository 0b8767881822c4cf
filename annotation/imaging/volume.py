"""The Volume and Geometry types and their conversion to and from SimpleITK images.

Conventions (declared here once, converted only at the I/O boundary):

- arrays are indexed ``[k, j, i]`` (slice, row, column);
- ``spacing_mm`` and ``shape`` are in that same array order;
- ``origin_mm`` is the LPS position (mm) of the centre of voxel ``[0, 0, 0]``;
- ``direction`` is a 3×3 matrix whose column *a* is the LPS unit vector along array axis *a*.

So the LPS position of the voxel at array index ``n = (k, j, i)`` is
``origin_mm + direction @ (n * spacing_mm)`` (DICOM PS3.3 C.7.6.2.1.1, with ITK's image geometry).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a volume in patient space.

    Attributes
    ----------
    shape : tuple of 3 int
        Voxel counts along (k, j, i).
    spacing_mm : tuple of 3 float
        Voxel spacing in mm along (k, j, i).
    origin_mm : tuple of 3 float
        LPS coordinates (mm) of the centre of voxel (0, 0, 0).
    direction : tuple of 9 float
        Row-major 3×3 matrix; column *a* is the LPS unit vector of array axis *a*.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise ValueError(f"shape must be three positive integers, got {self.shape}")
        if len(self.spacing_mm) != 3 or any(not np.isfinite(s) or s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing_mm must be three positive numbers, got {self.spacing_mm}")
        if len(self.direction) != 9:
            raise ValueError("direction must have 9 elements (row-major 3×3)")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))
        object.__setattr__(self, "origin_mm", tuple(float(o) for o in self.origin_mm))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))

    @property
    def direction_matrix(self) -> np.ndarray:
        """Return the (3, 3) direction matrix; column *a* is array axis *a* in LPS."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume_mm3(self) -> float:
        """Return the volume of one voxel in mm³."""
        return float(np.prod(self.spacing_mm))

    def index_to_lps(self, index: np.ndarray) -> np.ndarray:
        """Map array indices to LPS coordinates.

        Parameters
        ----------
        index : array_like, shape (..., 3)
            Continuous or integer indices in (k, j, i) order.

        Returns
        -------
        ndarray, shape (..., 3)
            LPS coordinates in mm.
        """
        idx = np.asarray(index, dtype=float)
        scaled = idx * np.asarray(self.spacing_mm)
        return np.asarray(self.origin_mm) + scaled @ self.direction_matrix.T

    def lps_to_index(self, point_mm: np.ndarray) -> np.ndarray:
        """Map LPS coordinates (mm), shape (..., 3), to continuous (k, j, i) indices."""
        p = np.asarray(point_mm, dtype=float) - np.asarray(self.origin_mm)
        return (p @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing_mm)

    def axial_axis(self) -> int:
        """Return the array axis most aligned with the patient's superior (z) axis."""
        return int(np.argmax(np.abs(self.direction_matrix[2, :])))

    def matches(self, other: "Geometry", *, tolerance_mm: float = 1e-3) -> bool:
        """Return True when both grids have the same shape and positions within ``tolerance_mm``."""
        if self.shape != other.shape:
            return False
        corners = np.array([[0, 0, 0], [n - 1 for n in self.shape]], dtype=float)
        return bool(np.allclose(self.index_to_lps(corners), other.index_to_lps(corners), atol=tolerance_mm))

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "origin_mm": list(self.origin_mm),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(
            shape=tuple(data["shape"]),
            spacing_mm=tuple(data["spacing_mm"]),
            origin_mm=tuple(data["origin_mm"]),
            direction=tuple(data["direction"]),
        )


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image with its geometry.

    Attributes
    ----------
    array : ndarray, shape (k, j, i)
        Voxel values; Hounsfield units (HU) for CT after the DICOM modality LUT
        (Rescale Slope (0028,1053) and Intercept (0028,1052)).
    geometry : Geometry
        The grid; ``geometry.shape == array.shape``.
    modality : str
        DICOM Modality (0008,0060) such as "CT" or "MR"; empty when unknown.
    """

    array: np.ndarray
    geometry: Geometry
    modality: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a volume array must be 3-D, got shape {self.array.shape}")
        if tuple(self.array.shape) != self.geometry.shape:
            raise ValueError(f"array shape {self.array.shape} does not match geometry {self.geometry.shape}")


def geometry_from_sitk(image) -> Geometry:
    """Build a Geometry from a 3-D ``SimpleITK.Image`` (ITK index order (i, j, k) reversed)."""
    size = image.GetSize()
    spacing = image.GetSpacing()
    direction_itk = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return Geometry(
        shape=(size[2], size[1], size[0]),
        spacing_mm=(spacing[2], spacing[1], spacing[0]),
        origin_mm=tuple(image.GetOrigin()),
        direction=tuple(direction_itk[:, ::-1].ravel()),
    )


def volume_from_sitk(image, *, modality: str = "") -> Volume:
    """Convert a 3-D ``SimpleITK.Image`` to a Volume (the array is a copy in (k, j, i) order)."""
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3-D image, got {image.GetDimension()}-D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("multi-component (vector or RGB) images are not supported")
    return Volume(array=sitk.GetArrayFromImage(image), geometry=geometry_from_sitk(image), modality=modality)


def array_to_sitk(array: np.ndarray, geometry: Geometry):
    """Wrap a (k, j, i) array with ``geometry`` as a ``SimpleITK.Image``."""
    import SimpleITK as sitk

    if tuple(array.shape) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(reversed(geometry.spacing_mm)))
    image.SetOrigin(geometry.origin_mm)
    image.SetDirection(tuple(geometry.direction_matrix[:, ::-1].ravel()))
    return image


def volume_to_sitk(volume: Volume):
    """Convert a Volume to a ``SimpleITK.Image`` with the same geometry."""
    return array_to_sitk(volume.array, volume.geometry)
