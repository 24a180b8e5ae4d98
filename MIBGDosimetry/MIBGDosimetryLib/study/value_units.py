"""What the voxel values of an emission series measure, read from its headers.

Cameras and archives store reconstructed SPECT as counts (Units CNTS), as counts per second (CPS), or
already in activity concentration (Units BQML, or a RealWorldValueMappingSequence whose measurement
unit is Bq/ml, as quantitative vendor reconstructions do), sometimes decay corrected to the
acquisition start or to the administration (DecayCorrection START / ADMIN, DecayFactor, CorrectedImage
DECY). Only counts are divided by the camera calibration factor; activity values are used as they
are, after undoing any decay correction so that every time point holds the activity present during
its acquisition.

The result is a plain dict (the "units path"), kept with the time point and in results.json:

- ``units``: "counts", "counts/s" or "Bq/ml";
- ``source``: the field that said so;
- ``decay_correction``: "NONE", "START" or "ADMIN"; ``decay_factor``: DecayFactor when given;
- ``dead_time_corrected``: CorrectedImage holds DTIM (the vendor corrected dead-time losses);
- ``real_world_value_mapping``: slope and intercept (from stored values to Bq/ml) when used;
- ``problem``: why the values cannot be turned into activity (None when they can);
- ``notes``: assumptions made.
"""

from MIBGDosimetryLib.study import dicomfields
from MIBGDosimetryLib.study.errors import FieldError

#: Units (0054,1001) meaning counts, counts per second and Bq/ml (DICOM PS3.3 C.8.9.1.1.3).
COUNT_UNITS = {"CNTS", "COUNTS"}
RATE_UNITS = {"CPS"}
ACTIVITY_UNITS = {"BQML"}
#: UCUM codes of a RealWorldValueMapping measurement unit, with the factor to Bq/ml.
ACTIVITY_CONCENTRATION_UCUM = {"bq/ml": 1.0, "kbq/ml": 1e3, "mbq/ml": 1e6, "bq/cm3": 1.0}
DECAY_CORRECTIONS = {"NONE", "START", "ADMIN"}


def read_value_units(header):
    """The units path (see the module docstring) of an emission series from its first header."""
    path = {"units": "counts", "source": "default (field Units missing)", "decay_correction": "NONE",
            "decay_factor": None, "dead_time_corrected": False, "real_world_value_mapping": None, "problem": None,
            "notes": []}
    try:
        _read(header, path)
    except FieldError as error:
        path["problem"] = f"{error}, so the units of the voxel values are unknown"
    return path


def _read(header, path):
    corrected = dicomfields.texts(header, "CorrectedImage")
    path["dead_time_corrected"] = "DTIM" in corrected
    mapping = _activity_mapping(header)
    units = dicomfields.text(header, "Units")
    if mapping is not None:
        path.update(units="Bq/ml", source="RealWorldValueMappingSequence", real_world_value_mapping=mapping)
    elif units is None:
        path["notes"].append("field Units is missing; the voxel values are taken to be counts")
    elif units.upper() in COUNT_UNITS:
        path.update(units="counts", source=f"Units {units}")
    elif units.upper() in RATE_UNITS:
        path.update(units="counts/s", source=f"Units {units}")
    elif units.upper() in ACTIVITY_UNITS:
        path.update(units="Bq/ml", source=f"Units {units}")
    elif units.upper() == "PROPCNTS":
        path.update(units="counts", source=f"Units {units}")
        path["notes"].append("field Units is PROPCNTS (proportional to counts): the values are calibrated as counts, "
                             "which is right only if the calibration phantom was reconstructed the same way")
    else:
        path["problem"] = (f"field Units is '{units}', which cannot be turned into activity (usable: CNTS, CPS, BQML, "
                           f"or a RealWorldValueMappingSequence in Bq/ml); export the reconstruction in counts or "
                           f"Bq/ml")
        return
    correction = (dicomfields.text(header, "DecayCorrection") or "").upper()
    if not correction:
        correction = "START" if "DECY" in corrected else "NONE"
        if "DECY" in corrected:
            path["notes"].append("CorrectedImage says DECY but DecayCorrection is missing; the values are taken as "
                                 "decay corrected to the acquisition start")
    if correction not in DECAY_CORRECTIONS:
        path["problem"] = (f"field DecayCorrection is '{correction}' (expected NONE, START or ADMIN), so the time the "
                           f"values refer to is unknown")
        return
    path["decay_correction"] = correction
    if correction != "NONE":
        factor = dicomfields.number(header, "DecayFactor")
        if factor is not None and factor <= 0:
            path["problem"] = f"field DecayFactor is {factor:g}; a decay factor must be positive"
            return
        path["decay_factor"] = factor


def _activity_mapping(header):
    """Slope and intercept to Bq/ml of the first RealWorldValueMapping item measured in activity
    concentration, or None."""
    for item in dicomfields.items(header, "RealWorldValueMappingSequence"):
        unit = dicomfields.first_item(item, "MeasurementUnitsCodeSequence")
        code = (dicomfields.text(unit, "CodeValue") or "").lower() if unit is not None else ""
        if code not in ACTIVITY_CONCENTRATION_UCUM:
            continue
        slope = dicomfields.number(item, "RealWorldValueSlope")
        if slope is None:
            raise FieldError("RealWorldValueMappingSequence/RealWorldValueSlope",
                             "is missing (a lookup-table mapping is not supported)")
        intercept = dicomfields.number(item, "RealWorldValueIntercept") or 0.0
        scale = ACTIVITY_CONCENTRATION_UCUM[code]
        return {"slope": slope * scale, "intercept": intercept * scale, "unit": unit.get("CodeValue")}
    return None


def mapped_values(stored_values, mapping):
    """Bq/ml from stored pixel values by a RealWorldValueMapping (slope, intercept)."""
    return stored_values * mapping["slope"] + mapping["intercept"]
