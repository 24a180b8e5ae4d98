"""A second, physically more realistic generator of reconstructed 131I SPECT: projections of a
rotating camera with attenuation, a depth-dependent high-energy collimator response, septal
penetration, object scatter and down-scatter in three energy windows, paralysable dead time and
Poisson noise, then OSEM with CT-based attenuation correction, TEW scatter estimate and a Gaussian
collimator model. None of it is the image model the analysis inverts, so the analysis can be tested
against physics it does not assume.

:mod:`.attenuation_map` linear attenuation coefficients at 364 keV (true materials and CT bilinear);
:mod:`.collimator` the collimator-detector response; :mod:`.spectrum` the energy windows' share of
each photon component; :mod:`.projector` the camera simulation and the reconstruction's system
model; :mod:`.osem` the reconstruction; :mod:`.lesions` lesions of several shapes;
:mod:`.patient_study` and :mod:`.calibration_set` write DICOM in the layouts of the image-domain
phantoms.
"""
