"""Register a follow-up volume to its baseline with SimpleITK: rigid (Euler3D), then affine. Imports no Django.

Both stages maximise Mattes mutual information (Mattes et al., IEEE Trans. Med. Imaging 22:120–128,
2003) over a three-level image pyramid (shrink 4, 2, 1 with Gaussian smoothing 2, 1, 0 mm) on a
working grid of ``working_spacing_mm`` (isotropic, 3 mm by default: registration of chest CT at 2–4 mm
is the usual coarse level, e.g. Klein et al., elastix, IEEE TMI 29:196–205, 2010). For chest CT the
metric is sampled only inside the lung mask (dilated by ``mask_margin_mm``) of the fixed image, from
:func:`annotation.ml.lung.segment_lungs`, so that the table, arms and soft tissue outside the thorax do
not drive the transform.

Conventions: SimpleITK (ITK) works in LPS mm, the frame of :mod:`annotation.imaging`. The transform
returned maps a point of the *fixed* (baseline, prior) frame to the corresponding point of the
*moving* (follow-up) frame — ITK's resampling direction — so a prior finding's centroid ``p`` lies at
``transform(p)`` in the follow-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from annotation.imaging.volume import Volume, array_to_sitk

__all__ = [
    "METHOD",
    "Registration",
    "RegistrationError",
    "chest_ct_mask",
    "register_volumes",
    "resample_prior_onto",
    "resample_volume",
    "transform_points",
]

METHOD = "sitk-euler3d+affine-mattes-mi"
"""Name stored with every registration made by :func:`register_volumes`."""

_SHRINK = (4, 2, 1)
_SMOOTH_MM = (2.0, 1.0, 0.0)
_BINS = 50


class RegistrationError(ValueError):
    """The volumes cannot be registered (a bad input, or the optimiser found no overlap)."""


@dataclass(frozen=True)
class Registration:
    """The outcome of :func:`register_volumes`.

    Attributes
    ----------
    matrix : tuple of 16 float
        Row-major 4×4 homogeneous matrix in LPS mm mapping a fixed-frame (baseline) point ``p`` to the
        moving-frame (follow-up) point ``M @ [p, 1]``.
    sitk_parameters, sitk_fixed_parameters : tuple of float
        The composed transform as an ITK ``AffineTransform``: 12 parameters (3×3 matrix row-major,
        then translation) and 3 fixed parameters (the centre of rotation), enough to rebuild it with
        ``sitk.AffineTransform(3)``.
    metric_value : float
        Final Mattes mutual information of the affine stage (negative; lower is better; comparable
        only between registrations of the same pair of images).
    mask_dice : float or None
        Dice overlap of the fixed mask and the moving mask mapped into the fixed frame after
        registration (1.0 = perfect), when both masks were given.
    landmark_errors_mm : tuple of float
        Per landmark, the distance (mm) between the transformed fixed landmark and its given position
        in the moving frame (the target registration error, TRE), when landmarks were given.
    method : str
    iterations : dict
        Optimiser iterations of each stage (``rigid``, ``affine``).
    """

    matrix: tuple[float, ...]
    sitk_parameters: tuple[float, ...]
    sitk_fixed_parameters: tuple[float, ...]
    metric_value: float
    mask_dice: float | None = None
    landmark_errors_mm: tuple[float, ...] = ()
    method: str = METHOD
    iterations: dict = field(default_factory=dict)

    @property
    def matrix_4x4(self) -> np.ndarray:
        """Return the (4, 4) fixed → moving matrix (LPS mm)."""
        return np.asarray(self.matrix, dtype=float).reshape(4, 4)

    @property
    def landmark_error_mean_mm(self) -> float | None:
        """Return the mean target registration error (mm), or None without landmarks."""
        return float(np.mean(self.landmark_errors_mm)) if self.landmark_errors_mm else None

    def quality(self) -> dict:
        """Return the quality figures as JSON: ``metric`` (Mattes MI), ``mask_dice``, ``landmark_error_mean_mm``
        and ``landmark_error_max_mm`` (None when not measured)."""
        errors = self.landmark_errors_mm
        return {
            "metric": "mattes_mutual_information",
            "metric_value": round(float(self.metric_value), 6),
            "mask_dice": None if self.mask_dice is None else round(float(self.mask_dice), 4),
            "landmark_error_mean_mm": None if not errors else round(float(np.mean(errors)), 3),
            "landmark_error_max_mm": None if not errors else round(float(np.max(errors)), 3),
        }

    def to_dict(self) -> dict:
        """Return the transform and quality as JSON (what the portal stores)."""
        return {
            "method": self.method,
            "transform": {
                "matrix_lps_mm": [[round(float(v), 6) for v in row] for row in self.matrix_4x4],
                "direction": "fixed_to_moving",
                "sitk_type": "AffineTransform",
                "sitk_parameters": [float(v) for v in self.sitk_parameters],
                "sitk_fixed_parameters": [float(v) for v in self.sitk_fixed_parameters],
            },
            "quality": self.quality(),
            "iterations": dict(self.iterations),
        }


def transform_points(matrix: np.ndarray | Sequence[float], points_lps_mm: np.ndarray) -> np.ndarray:
    """Apply a 4×4 homogeneous matrix to points.

    Parameters
    ----------
    matrix : array_like, shape (4, 4) or (16,)
        Row-major homogeneous matrix (LPS mm), e.g. :attr:`Registration.matrix`.
    points_lps_mm : array_like, shape (n, 3) or (3,)

    Returns
    -------
    ndarray, same shape as ``points_lps_mm``
    """
    m = np.asarray(matrix, dtype=float).reshape(4, 4)
    points = np.asarray(points_lps_mm, dtype=float)
    flat = points.reshape(-1, 3)
    out = flat @ m[:3, :3].T + m[:3, 3]
    return out.reshape(points.shape)


def resample_prior_onto(prior: Volume, current: Volume, matrix: np.ndarray | Sequence[float], *,
                        fill_value: float | None = None) -> Volume:
    """Return the prior volume resampled onto the current volume's grid through a registration.

    The comparison view shows the two side by side with one crosshair: once the prior lies on the
    current grid, the same voxel of both is the same anatomical point (as far as the registration is
    right), so scrolling and windowing can simply be linked.

    Parameters
    ----------
    prior : Volume
        The prior (baseline, fixed) volume, array (k, j, i) with its geometry.
    current : Volume
        The current (follow-up, moving) volume; only its geometry (shape, spacing, origin, direction)
        is used.
    matrix : array_like, shape (4, 4) or (16,)
        Row-major fixed → moving matrix (LPS mm), :attr:`Registration.matrix` as stored: a prior point
        ``p`` lies at ``M @ [p, 1]`` in the current frame, so each current voxel centre ``q`` is sampled
        from the prior at ``M⁻¹ @ [q, 1]`` (ITK's resampling maps output points to input points).
    fill_value : float, optional
        Value outside the prior's field of view (default: the prior's minimum, e.g. air in CT).

    Returns
    -------
    Volume
        float32 array with ``current``'s shape and geometry, the prior's modality; trilinear.

    Raises
    ------
    RegistrationError
        A matrix that is not an invertible affine transform.
    """
    import SimpleITK as sitk

    from annotation.imaging.volume import volume_from_sitk

    m = np.asarray(matrix, dtype=float).reshape(4, 4)
    if not np.allclose(m[3], [0, 0, 0, 1]) or abs(np.linalg.det(m[:3, :3])) < 1e-9:
        raise RegistrationError("the registration matrix is not an invertible affine transform")
    inverse = np.linalg.inv(m)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in inverse[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in inverse[:3, 3]])
    fill = float(np.min(prior.array)) if fill_value is None else float(fill_value)
    moving = array_to_sitk(prior.array.astype(np.float32, copy=False), prior.geometry)
    reference = array_to_sitk(np.zeros(current.array.shape, dtype=np.uint8), current.geometry)
    image = sitk.Resample(moving, reference, transform, sitk.sitkLinear, fill, sitk.sitkFloat32)
    return volume_from_sitk(image, modality=prior.modality)


def chest_ct_mask(volume: Volume, *, margin_mm: float = 10.0) -> np.ndarray | None:
    """Return the lung mask of a chest CT, dilated by ``margin_mm``, or None when no lung is found.

    Uses :func:`annotation.ml.lung.segment_lungs` (Hu et al., IEEE TMI 20:490–498, 2001). The margin
    keeps the lung boundary (pleura, chest wall edge) in the metric: it carries most of the structure
    a rigid and affine registration can align.

    Parameters
    ----------
    volume : Volume
        CT in HU, array (k, j, i).

    Returns
    -------
    ndarray of bool, shape ``volume.array.shape``, or None
    """
    from scipy import ndimage

    from annotation.ml.lung import segment_lungs

    lungs = segment_lungs(volume) > 0
    if not lungs.any():
        return None
    radius = np.maximum(1, np.rint(margin_mm / np.asarray(volume.geometry.spacing_mm))).astype(int)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, radius)) <= 1.0
    return ndimage.binary_dilation(lungs, structure=ball)


def _resample_isotropic(image, spacing_mm: float, *, mask: bool = False):
    import SimpleITK as sitk

    old_spacing = np.asarray(image.GetSpacing(), dtype=float)
    if np.all(old_spacing >= spacing_mm * 0.999):
        return image
    new_spacing = np.maximum(old_spacing, spacing_mm)
    size = np.asarray(image.GetSize())
    new_size = [max(1, int(round(n * s / t))) for n, s, t in zip(size, old_spacing, new_spacing)]
    # Shift the origin so that the new grid covers the same extent (voxel centres, half a voxel in).
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) + direction @ ((new_spacing - old_spacing) / 2.0)
    if mask:
        source, interpolator, pixel = image, sitk.sitkNearestNeighbor, sitk.sitkUInt8
    else:
        # Anti-aliasing before decimation: sigma of half the new spacing.
        sigma = [float(max(0.0, (t - s) / 2.0)) for s, t in zip(old_spacing, new_spacing)]
        source = sitk.SmoothingRecursiveGaussian(image, sigma) if any(sigma) else image
        interpolator, pixel = sitk.sitkLinear, sitk.sitkFloat32
    return sitk.Resample(source, [int(n) for n in new_size], sitk.Transform(), interpolator,
                         tuple(origin), tuple(float(s) for s in new_spacing), image.GetDirection(), 0, pixel)


def resample_volume(volume: Volume, spacing_mm: float) -> Volume:
    """Return ``volume`` on a grid no finer than ``spacing_mm`` along any axis (anti-aliased, linear).

    Axes already at least that coarse keep their spacing; the new grid covers the same extent with the
    same direction. Used to register (and to find the lungs of) large series on the working grid, where
    the result is the same and the cost a fraction.

    Parameters
    ----------
    volume : Volume
        Array (k, j, i) with its geometry.
    spacing_mm : float
        Target spacing (mm), positive.

    Returns
    -------
    Volume
        float32 array, same modality; ``volume`` itself when no axis is finer than ``spacing_mm``.

    Raises
    ------
    ValueError
        A spacing that is not positive.
    """
    from annotation.imaging.volume import volume_from_sitk

    if not spacing_mm > 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    if min(volume.geometry.spacing_mm) >= spacing_mm * 0.999:
        return volume
    image = _resample_isotropic(array_to_sitk(volume.array.astype(np.float32, copy=False), volume.geometry),
                                spacing_mm)
    return volume_from_sitk(image, modality=volume.modality)


def _method(fixed_mask, *, sampling: float, iterations: int, learning_rate: float, seed: int):
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=_BINS)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, seed)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=learning_rate, minStep=1e-4,
                                                 numberOfIterations=iterations, relaxationFactor=0.5,
                                                 gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(_SHRINK))
    reg.SetSmoothingSigmasPerLevel(list(_SMOOTH_MM))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _affine_of(transform) -> "object":
    """Compose any ITK matrix-offset transform (or a composite of them) into one AffineTransform."""
    import SimpleITK as sitk

    matrix = np.eye(4)
    if isinstance(transform, sitk.CompositeTransform):
        parts = [transform.GetNthTransform(n) for n in range(transform.GetNumberOfTransforms())]
    else:
        parts = [transform]
    # A composite applies its last-added transform first.
    for part in parts:
        part = part.Downcast() if hasattr(part, "Downcast") else part
        m = np.eye(4)
        m[:3, :3] = np.asarray(part.GetMatrix(), dtype=float).reshape(3, 3)
        centre = np.asarray(part.GetCenter(), dtype=float)
        m[:3, 3] = np.asarray(part.GetTranslation(), dtype=float) + centre - m[:3, :3] @ centre
        matrix = matrix @ m
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple(matrix[:3, :3].ravel()))
    affine.SetTranslation(tuple(matrix[:3, 3]))
    return affine, matrix


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def register_volumes(
    fixed: Volume,
    moving: Volume,
    *,
    fixed_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None,
    landmarks_fixed_lps_mm: np.ndarray | None = None,
    landmarks_moving_lps_mm: np.ndarray | None = None,
    working_spacing_mm: float = 3.0,
    affine: bool = True,
    sampling: float = 0.2,
    seed: int = 20091,
) -> Registration:
    """Register ``moving`` (follow-up) to ``fixed`` (baseline): rigid Euler3D, then affine.

    Parameters
    ----------
    fixed, moving : Volume
        Arrays (k, j, i) with their LPS geometry; intensities in the same unit (HU for CT).
    fixed_mask : ndarray of bool, shape ``fixed.array.shape``, optional
        Where the metric is sampled (for chest CT the dilated lung mask, :func:`chest_ct_mask`).
    moving_mask : ndarray of bool, shape ``moving.array.shape``, optional
        With ``fixed_mask``, gives the quality figure :attr:`Registration.mask_dice`.
    landmarks_fixed_lps_mm, landmarks_moving_lps_mm : ndarray, shape (n, 3), optional
        Corresponding points (LPS mm) in each frame; give :attr:`Registration.landmark_errors_mm`
        (they are not used to drive the registration).
    working_spacing_mm : float
        Isotropic spacing (mm) both images are resampled to (with anti-aliasing) before registering;
        finer input grids are only slower, not more accurate at this stage.
    affine : bool
        Run the affine stage after the rigid one (True) or stop at rigid.
    sampling : float
        Share of the (masked) fixed voxels sampled at random by the metric, in (0, 1].
    seed : int
        Seed of the metric's random sampling, so that a registration can be repeated exactly.

    Returns
    -------
    Registration

    Raises
    ------
    RegistrationError
        Shapes of a mask and its volume differ, an empty mask, landmarks of different counts, or the
        optimiser fails (for example when the images do not overlap).
    """
    import SimpleITK as sitk

    if fixed_mask is not None and tuple(fixed_mask.shape) != fixed.geometry.shape:
        raise RegistrationError(f"fixed mask shape {fixed_mask.shape} differs from the volume's {fixed.geometry.shape}")
    if moving_mask is not None and tuple(moving_mask.shape) != moving.geometry.shape:
        raise RegistrationError(
            f"moving mask shape {moving_mask.shape} differs from the volume's {moving.geometry.shape}")
    if fixed_mask is not None and not np.any(fixed_mask):
        raise RegistrationError("the fixed mask is empty")
    if (landmarks_fixed_lps_mm is None) != (landmarks_moving_lps_mm is None):
        raise RegistrationError("landmarks must be given in both frames")
    if landmarks_fixed_lps_mm is not None:
        lf = np.asarray(landmarks_fixed_lps_mm, float).reshape(-1, 3)
        lm = np.asarray(landmarks_moving_lps_mm, float).reshape(-1, 3)
        if lf.shape != lm.shape:
            raise RegistrationError(f"{len(lf)} fixed landmarks but {len(lm)} moving ones")
    if not 0.0 < sampling <= 1.0:
        raise RegistrationError(f"sampling must lie in (0, 1], got {sampling}")

    fixed_image = _resample_isotropic(array_to_sitk(fixed.array.astype(np.float32, copy=False), fixed.geometry),
                                      working_spacing_mm)
    moving_image = _resample_isotropic(array_to_sitk(moving.array.astype(np.float32, copy=False), moving.geometry),
                                       working_spacing_mm)
    mask_image = None
    if fixed_mask is not None:
        mask_image = _resample_isotropic(array_to_sitk(fixed_mask.astype(np.uint8), fixed.geometry),
                                         working_spacing_mm, mask=True)
        if not sitk.GetArrayViewFromImage(mask_image).any():
            raise RegistrationError("the fixed mask vanishes on the working grid")

    initial = sitk.CenteredTransformInitializer(
        fixed_image, moving_image, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY)
    iterations = {}
    try:
        rigid_method = _method(mask_image, sampling=sampling, iterations=200, learning_rate=2.0, seed=seed)
        rigid_method.SetInitialTransform(initial, inPlace=True)
        rigid_method.Execute(fixed_image, moving_image)
        iterations["rigid"] = int(rigid_method.GetOptimizerIteration())
        metric = float(rigid_method.GetMetricValue())
        result = initial
        if affine:
            affine_initial = sitk.AffineTransform(3)
            affine_initial.SetCenter(initial.GetCenter())
            affine_initial.SetMatrix(initial.GetMatrix())
            affine_initial.SetTranslation(initial.GetTranslation())
            affine_method = _method(mask_image, sampling=sampling, iterations=100, learning_rate=1.0, seed=seed)
            affine_method.SetInitialTransform(affine_initial, inPlace=True)
            affine_method.Execute(fixed_image, moving_image)
            iterations["affine"] = int(affine_method.GetOptimizerIteration())
            metric = float(affine_method.GetMetricValue())
            result = affine_initial
    except RuntimeError as exc:
        raise RegistrationError(f"registration failed: {exc}") from exc
    composed, matrix = _affine_of(result)
    if not np.all(np.isfinite(matrix)):
        raise RegistrationError("registration produced a non-finite transform")

    dice = None
    if fixed_mask is not None and moving_mask is not None:
        warped = sitk.Resample(array_to_sitk(moving_mask.astype(np.uint8), moving.geometry),
                               array_to_sitk(fixed_mask.astype(np.uint8), fixed.geometry), composed,
                               sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        dice = _dice(fixed_mask.astype(bool), sitk.GetArrayViewFromImage(warped).astype(bool))
    errors: tuple[float, ...] = ()
    if landmarks_fixed_lps_mm is not None:
        mapped = transform_points(matrix, lf)
        errors = tuple(float(e) for e in np.linalg.norm(mapped - lm, axis=1))
    return Registration(
        matrix=tuple(float(v) for v in matrix.ravel()),
        sitk_parameters=tuple(float(v) for v in composed.GetParameters()),
        sitk_fixed_parameters=tuple(float(v) for v in composed.GetFixedParameters()),
        metric_value=metric,
        mask_dice=dice,
        landmark_errors_mm=errors,
        iterations=iterations,
    )
