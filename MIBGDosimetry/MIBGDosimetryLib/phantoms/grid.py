"""The two grids of a simulation: a fine grid on which activity, CT and dose truth live, and the
SPECT grid, whose voxels are blocks of ``fine_factor``^3 fine voxels.

Both grids cover the same box centred on the RAS origin and use the axis directions of a DICOM
axial series (i towards the patient's left, j posterior, k superior).
"""

import dataclasses

import numpy as np

from MIBGDosimetryLib.volume import ImageVolume

#: i towards patient left (-x in RAS), j posterior (-y), k superior (+z): a DICOM axial series.
AXIAL_DIRECTIONS_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class PhantomGrid:
    """``matrix`` x ``matrix`` x ``slices`` SPECT voxels of ``spect_voxel_mm``, each made of
    ``fine_factor``^3 fine voxels."""

    matrix: int = 64
    slices: int = 88
    spect_voxel_mm: float = 4.4
    fine_factor: int = 2

    def __post_init__(self):
        if self.matrix < 8 or self.slices < 8:
            raise ValueError(f"The SPECT grid must have at least 8 voxels along each axis, got "
                             f"{self.matrix} x {self.matrix} x {self.slices}.")
        if self.spect_voxel_mm <= 0 or self.fine_factor < 1:
            raise ValueError("The SPECT voxel size must be positive and the fine factor at least 1.")

    @property
    def fine_voxel_mm(self):
        return self.spect_voxel_mm / self.fine_factor

    @property
    def spect_shape(self):
        return (self.slices, self.matrix, self.matrix)

    @property
    def fine_shape(self):
        return tuple(n * self.fine_factor for n in self.spect_shape)

    @property
    def half_extent_mm(self):
        """Half the size of the covered box along x, y, z (mm)."""
        return np.array([self.matrix, self.matrix, self.slices], dtype=float) * self.spect_voxel_mm / 2.0

    def _origin_ras(self, voxel_mm):
        # Voxel (0, 0, 0) sits in the corner towards +x, +y, -z (directions point to -x, -y, +z).
        corner = self.half_extent_mm * np.array([1.0, 1.0, -1.0])
        return tuple(corner - np.array([1.0, 1.0, -1.0]) * voxel_mm / 2.0)

    def fine_volume(self, array, units=""):
        """An ImageVolume on the fine grid holding ``array``."""
        v = self.fine_voxel_mm
        return ImageVolume(array, (v, v, v), self._origin_ras(v), AXIAL_DIRECTIONS_RAS.copy(), units)

    def spect_volume(self, array, units="counts"):
        """An ImageVolume on the SPECT grid holding ``array``."""
        v = self.spect_voxel_mm
        return ImageVolume(array, (v, v, v), self._origin_ras(v), AXIAL_DIRECTIONS_RAS.copy(), units)

    def fine_points_ras(self):
        """RAS coordinates (mm) of every fine voxel centre, shape fine_shape + (3,)."""
        reference = self.fine_volume(np.zeros((1, 1, 1)))
        k, j, i = (np.arange(n, dtype=float) for n in self.fine_shape)
        m = reference.ijk_to_ras()
        x = m[0, 3] + m[0, 0] * i
        y = m[1, 3] + m[1, 1] * j
        z = m[2, 3] + m[2, 2] * k
        points = np.empty(self.fine_shape + (3,))
        points[..., 0] = x[np.newaxis, np.newaxis, :]
        points[..., 1] = y[np.newaxis, :, np.newaxis]
        points[..., 2] = z[:, np.newaxis, np.newaxis]
        return points

    def bin_to_spect(self, fine_array):
        """Sum blocks of fine voxels into SPECT voxels (conserves the total)."""
        f = self.fine_factor
        s = self.spect_shape
        return np.asarray(fine_array).reshape(s[0], f, s[1], f, s[2], f).sum(axis=(1, 3, 5))
