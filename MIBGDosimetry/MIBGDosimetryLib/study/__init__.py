"""Sequential SPECT/CT studies read from DICOM: time points with SPECT counts, CT, timing and camera facts.

``load_study(path, overrides=None) -> Study`` reads a folder of any layout; see
:mod:`MIBGDosimetryLib.study.loader` for the rules and :mod:`MIBGDosimetryLib.study.overrides` for
supplying missing values. ``MIBGDosimetryLib.study.mrml_loader.load_study_into_scene`` puts a study
into an MRML scene.
"""

from MIBGDosimetryLib.study.errors import StudyDataError
from MIBGDosimetryLib.study.loader import load_study
from MIBGDosimetryLib.study.model import Study, TimePoint

__all__ = ["StudyDataError", "Study", "TimePoint", "load_study"]
