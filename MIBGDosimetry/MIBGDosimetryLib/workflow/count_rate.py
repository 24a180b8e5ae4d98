"""The observed count rate of a patient scan for its dead-time factor (EANM eq. 7), counted as the
calibration record says the dead time was measured (:func:`MIBGCalibrationLib.deadtime.count_rate_definition`).

- Energy window: the photopeak window, or all windows. Projection data attached to the time point
  give the rate of each window and are used when present (a reconstruction's CountsAccumulated may
  count the photopeak or every window, depending on the camera); without them the SPECT's
  CountsAccumulated is taken as the photopeak rate. A rate given as an override is used as it is:
  it is taken as already counted as the calibration counted.
- Detectors: a dead time measured on one detector applies to each detector of a multi-detector scan
  at its own rate: the total rate is divided by the number of detectors (NumberOfDetectors of the
  projection data, else of the SPECT). When that number is unknown no correction is made.
"""

from MIBGDosimetryLib.study.projections import window_count_rates_cps


def _projection_rates(timepoint):
    for summary in getattr(timepoint, "projections", None) or []:
        rates = window_count_rates_cps(summary)
        if rates is not None:
            return rates, summary
    return None, None


def dead_time_count_rate_cps(timepoint, definition):
    """(count rate in cps or None, notes) of ``timepoint`` under the calibration's ``definition``."""
    rate = timepoint.observed_count_rate_cps
    if rate is None:
        return None, []
    metadata = getattr(timepoint, "metadata", None) or {}
    if metadata.get("count_rate_source") == "override":
        return rate, []
    notes = []
    label = timepoint.label
    rates, summary = _projection_rates(timepoint)
    counted = None if rates is None else rates[definition["energy_window"]]
    if counted is not None:
        if abs(counted - rate) > 0.01 * rate:
            notes.append(f"time point '{label}': dead-time count rate {counted:.6g} cps from the "
                         f"{definition['energy_window']} window(s) of the projection data '{summary['file']}', "
                         f"as the dead time was calibrated, not the time point's {rate:.6g} cps")
        rate = counted
    elif definition["energy_window"] == "all":
        notes.append(f"time point '{label}': the dead time was calibrated on the counts of all energy windows, "
                     "but without projection data only the SPECT's count rate is known; it is used as it is "
                     "(the dead-time factor is then underestimated)")
    if definition["per_detector"]:
        detectors = (summary or {}).get("number_of_detectors") or metadata.get("number_of_detectors")
        if detectors is None:
            notes.append(f"time point '{label}': the dead time was calibrated on one detector, but the number of "
                         "detectors of this scan (NumberOfDetectors) is unknown: dead-time losses not corrected; "
                         "give the count rate per detector as an override")
            return None, notes
        if detectors > 1:
            notes.append(f"time point '{label}': count rate {rate:.6g} cps of {detectors} detectors divided among "
                         "them, as the dead time was calibrated on one detector")
            rate = rate / detectors
    return rate, notes
