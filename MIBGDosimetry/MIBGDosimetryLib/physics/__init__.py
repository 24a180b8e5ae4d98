"""Physics of 131I for absorbed-dose calculation.

- :mod:`.i131`: decay and emission data (half-life, electron and photon emissions).
- :mod:`.materials`: tissue compositions and photon interaction coefficients.
- :mod:`.electron_transport`, :mod:`.photon_transport`: radial energy-deposition kernels around a point
  source, computed by our own transport calculations.
- :mod:`.radial`: the cached radial kernels of 131I in a tissue.
- :mod:`.kernels`: voxel S-value kernels for any voxel size.
- :mod:`.spheres`: S values of uniformly filled spheres (lesions, organs of patient-specific mass).
- :mod:`.organ_tables`: import of organ S-value tables with mass adjustment.
- :mod:`.local`: local energy deposition dose.
"""
