"""An image volume with its geometry: the in-memory exchange format of the library.

``array`` is indexed ``[k, j, i]`` like Slicer's volume arrays. ``spacing_mm`` gives the voxel size
along i, j and k; ``origin_ras_mm`` is the centre of voxel (0, 0, 0) in RAS; the columns of
``directions`` are the RAS unit vectors of the i, j and k axes. DICOM (LPS) and SimpleITK (LPS)
geometry is converted at the edges by the functions here.
"""

import dataclasses

import numpy as np

from MIBGDosimetryLib import mrml

#: RAS <-> LPS: flip the first two axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def padded_box(mask, margin_voxels):
    """Slices [k, j, i] of ``mask``'s bounding box widened by ``margin_voxels`` (a number or one per axis),
    clipped to the array; None for an empty mask."""
    found = np.argwhere(mask)
    if not len(found):
        return None
    low = np.maximum(found.min(axis=0) - margin_voxels, 0)
    high = np.minimum(found.max(axis=0) + np.asarray(margin_voxels) + 1, np.shape(mask))
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


@dataclasses.dataclass
class ImageVolume:
    """A 3-D image with geometry, units and free-form metadata."""

    array: np.ndarray
    spacing_mm: tuple = (1.0, 1.0, 1.0)
    origin_ras_mm: tuple = (0.0, 0.0, 0.0)
    directions: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    units: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(f"An image volume must be 3-D, got an array of shape {self.array.shape}.")
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)
        self.origin_ras_mm = tuple(float(o) for o in self.origin_ras_mm)
        self.directions = np.asarray(self.directions, dtype=float)
        if any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"Voxel spacing must be positive, got {self.spacing_mm} mm.")

    @property
    def voxel_volume_ml(self):
        return float(np.prod(self.spacing_mm)) / 1000.0

    def ijk_to_ras(self):
        """4x4 matrix from voxel indices (i, j, k) to RAS millimetres."""
        return mrml.ijk_to_ras_matrix(self.spacing_mm, self.origin_ras_mm, self.directions)

    def ras_of_ijk(self, ijk):
        """RAS coordinates (mm) of voxel indices ``ijk`` (shape (..., 3), order i, j, k)."""
        ijk = np.asarray(ijk, dtype=float)
        m = self.ijk_to_ras()
        return ijk @ m[:3, :3].T + m[:3, 3]

    def ijk_of_ras(self, ras):
        """Continuous voxel indices (i, j, k) of RAS points (shape (..., 3))."""
        ras = np.asarray(ras, dtype=float)
        m = np.linalg.inv(self.ijk_to_ras())
        return ras @ m[:3, :3].T + m[:3, 3]

    def with_array(self, array, units=None):
        """A volume on the same grid holding another array."""
        return dataclasses.replace(self, array=np.asarray(array), units=self.units if units is None else units,
                                   metadata=dict(self.metadata))

    def same_grid(self, other, tolerance_mm=1e-3):
        return (self.array.shape == other.array.shape
                and np.allclose(self.ijk_to_ras(), other.ijk_to_ras(), atol=tolerance_mm))

    # MRML
    def to_node(self, scene, name, class_name="vtkMRMLScalarVolumeNode", attributes=None):
        return mrml.add_volume(scene, self.array, name, self.spacing_mm, self.origin_ras_mm, self.directions,
                               class_name=class_name, attributes=attributes)

    @classmethod
    def from_node(cls, scene, node, units=""):
        spacing, origin, directions = mrml.volume_geometry(node)
        return cls(mrml.array_from_volume(scene, node), tuple(spacing), tuple(origin), directions, units)

    # SimpleITK (LPS physical space)
    def to_sitk(self):
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(tuple(LPS_TO_RAS @ np.asarray(self.origin_ras_mm)))
        image.SetDirection(tuple((LPS_TO_RAS @ self.directions).ravel()))
        return image

    @classmethod
    def from_sitk(cls, image, units="", metadata=None):
        import SimpleITK as sitk

        directions = LPS_TO_RAS @ np.asarray(image.GetDirection()).reshape(3, 3)
        origin = LPS_TO_RAS @ np.asarray(image.GetOrigin())
        return cls(sitk.GetArrayFromImage(image), image.GetSpacing(), tuple(origin), directions, units,
                   dict(metadata or {}))
