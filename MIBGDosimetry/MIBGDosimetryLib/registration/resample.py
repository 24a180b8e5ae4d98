"""Resampling of time-point images and masks onto another grid with a registration transform.

``transform`` arguments are either a RAS 4x4 matrix or a SimpleITK transform, both mapping points of
the target grid's frame to the source image's frame (see :mod:`.transforms`).
"""

import numpy as np
import SimpleITK as sitk

from MIBGDosimetryLib.registration.transforms import as_sitk_transform, matrix_from_sitk
from MIBGDosimetryLib.volume import ImageVolume

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


def _grid_image(grid):
    """An empty SimpleITK image carrying the geometry of ``grid`` (an ImageVolume)."""
    return ImageVolume(np.zeros(grid.array.shape, dtype=np.uint8), grid.spacing_mm, grid.origin_ras_mm,
                       grid.directions).to_sitk()


def resample_image(volume, target_grid, transform, interpolation="linear", default_value=0.0):
    """Values of ``volume`` at the points of ``target_grid`` (values are sampled, not conserved).

    Points that fall outside ``volume`` get ``default_value``.
    """
    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"Unknown interpolation '{interpolation}'; choose one of {sorted(_INTERPOLATORS)}.")
    source = ImageVolume(np.asarray(volume.array, dtype=np.float64), volume.spacing_mm, volume.origin_ras_mm,
                         volume.directions).to_sitk()
    result = sitk.Resample(source, _grid_image(target_grid), as_sitk_transform(transform),
                           _INTERPOLATORS[interpolation], float(default_value), sitk.sitkFloat64)
    return ImageVolume.from_sitk(result, units=volume.units, metadata=volume.metadata)


def jacobian_determinant(target_grid, transform):
    """Local volume change of ``transform`` at the points of ``target_grid`` (1 for a rigid transform).

    For a deformable transform the displacement field is differentiated by central differences along
    the grid axes and turned into physical derivatives with the grid's spacing and directions
    (SimpleITK's own Jacobian filter ignores the image directions).
    """
    sitk_transform = as_sitk_transform(transform)
    if sitk_transform.IsLinear():
        determinant = abs(np.linalg.det(matrix_from_sitk(sitk_transform)[:3, :3]))
        return np.full(target_grid.array.shape, determinant)
    field = sitk.TransformToDisplacementField(sitk_transform, sitk.sitkVectorFloat64, *_grid_args(target_grid))
    displacement = sitk.GetArrayFromImage(field)  # [k, j, i, LPS component]
    # along_index[..., c, a]: derivative of LPS component c along grid axis a (i, j, k), per voxel step.
    along_index = np.stack([np.gradient(displacement, axis=axis) for axis in (2, 1, 0)], axis=-1)
    grid_image = _grid_image(target_grid)
    index_to_physical = np.asarray(grid_image.GetDirection()).reshape(3, 3) * np.asarray(grid_image.GetSpacing())
    jacobian = np.eye(3) + along_index @ np.linalg.inv(index_to_physical)
    return np.abs(np.linalg.det(jacobian))


def _grid_args(grid):
    image = _grid_image(grid)
    return image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection()


def resample_counts(volume, reference_grid, matrix_ras):
    """Counts image ``volume`` moved onto ``reference_grid``, total counts conserved.

    The counts are turned into a concentration (counts per mL), the concentration is interpolated at
    the reference-grid points mapped by ``matrix_ras`` (RAS 4x4 reference -> moving frame, or a
    SimpleITK transform), and multiplied by the reference voxel volume and by the local volume change
    of the transform (its Jacobian determinant; 1 for rigid motion). The integral of the image over
    the part of the field of view that both grids see is therefore preserved, up to interpolation.
    """
    concentration = volume.with_array(np.asarray(volume.array, dtype=np.float64) / volume.voxel_volume_ml)
    resampled = resample_image(concentration, reference_grid, matrix_ras, "linear", 0.0)
    counts = resampled.array * reference_grid.voxel_volume_ml * jacobian_determinant(reference_grid, matrix_ras)
    return ImageVolume(counts, reference_grid.spacing_mm, reference_grid.origin_ras_mm, reference_grid.directions,
                       volume.units, dict(volume.metadata))


def interpolation_variance_mm2(volume, reference_grid, matrix_ras):
    """Blur that :func:`resample_counts` adds to ``volume`` moved onto ``reference_grid``: at every
    reference voxel (k, j, i) the variance (mm^2) of the linear interpolation kernel along each of the
    moving grid's axes, ``(3, k, j, i)`` in (k, j, i) axis order.

    Linear interpolation at a fractional index offset ``f`` is the two-point kernel (1 - f, f), of
    variance ``f (1 - f)`` voxels^2 along that axis (0 on the grid points, 1/4 halfway between): the
    moved image is the original blurred further by it, wherever the transform does not land on the
    moving grid's points. It is measured with the same interpolator: linear interpolation of the index
    ``x`` returns ``x`` exactly and of ``x^2`` returns ``x^2 + f (1 - f)``. The axes are the moving
    grid's, which a registration of a few degrees hardly turns from the reference grid's.
    """
    shape = np.asarray(volume.array).shape
    spacing_kji = np.asarray(volume.spacing_mm, dtype=float)[::-1]
    variance = np.zeros((3,) + tuple(reference_grid.array.shape), dtype=np.float32)
    for axis in range(3):
        index = np.indices(shape, dtype=np.float64)[axis]
        value = resample_image(volume.with_array(index), reference_grid, matrix_ras, "linear", 0.0).array
        square = resample_image(volume.with_array(index ** 2), reference_grid, matrix_ras, "linear", 0.0).array
        variance[axis] = np.clip(square - value ** 2, 0.0, 0.25) * spacing_kji[axis] ** 2
    return variance


def resample_mask(mask, mask_grid, target_grid, transform):
    """A boolean mask on ``mask_grid`` carried onto ``target_grid``.

    ``transform`` maps target-grid points to the mask grid's frame (RAS 4x4 or SimpleITK transform).
    On a grid as fine as the mask's, each target voxel takes its nearest mask voxel. When the target
    voxels are n times coarser, a single nearest sample would shift the mask by up to half a fine
    voxel, so each target voxel is sampled at n points per axis, evenly spread over its extent (the
    centres of the fine voxels it covers when n is an integer ratio), and belongs to the mask when
    more than half of them do (those covered exactly half are
    split by a checkerboard).
    """
    mask = np.asarray(mask)
    if mask.shape != mask_grid.array.shape:
        raise ValueError(f"The mask has shape {mask.shape} but its grid has shape {mask_grid.array.shape}.")
    source = mask_grid.with_array(mask.astype(np.uint8)).to_sitk()
    sitk_transform = as_sitk_transform(transform)
    samples = [max(1, int(round(t / m))) for t, m in zip(target_grid.spacing_mm, mask_grid.spacing_mm)]
    votes = np.zeros(target_grid.array.shape, dtype=np.int32)
    for offsets in np.ndindex(*samples):
        shift_ijk = (np.array(offsets) + 0.5) / np.array(samples) - 0.5
        shifted = ImageVolume(target_grid.array, target_grid.spacing_mm, tuple(target_grid.ras_of_ijk(shift_ijk)),
                              target_grid.directions)
        sampled = sitk.Resample(source, _grid_image(shifted), sitk_transform, sitk.sitkNearestNeighbor, 0.0,
                                sitk.sitkUInt8)
        votes += sitk.GetArrayViewFromImage(sampled)
    count = int(np.prod(samples))
    # Voxels covered exactly half are split by a checkerboard, so that the volume is not biased.
    k, j, i = np.indices(votes.shape, sparse=True)
    return (2 * votes > count) | ((2 * votes == count) & ((i + j + k) % 2 == 0))
