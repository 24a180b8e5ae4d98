"""Every case of the vendor header corpus is computed with the right activity or refused with its reason."""

import numpy as np
import pytest

import vendor_corpus as corpus
from MIBGCalibrationLib.record import CalibrationRecord
from MIBGDosimetryLib.study import StudyDataError, load_study
from MIBGDosimetryLib.workflow import activity


def _record():
    return CalibrationRecord(calibration_factor_cps_per_MBq=corpus.Q_CPS_PER_MBQ,
                             calibration_factor_cps_per_MBq_uncertainty=0.2, collimator="HEGP")


@pytest.fixture(scope="module")
def truth_MBq(tmp_path_factory):
    """Activity per time point of the plain counts study: counts / (Q t) (EANM eq. 9, no dead time)."""
    written = corpus.CASES["NM multi-frame, counts"][0](str(tmp_path_factory.mktemp("truth")))
    return [w.spect_stored.astype(np.float64).sum() / (corpus.Q_CPS_PER_MBQ * corpus.DURATION_S) for w in written]


@pytest.mark.parametrize("case", sorted(corpus.CASES))
def test_case_outcome(tmp_path, truth_MBq, case):
    write, (outcome, detail) = corpus.CASES[case]
    write(str(tmp_path))
    if outcome == "refused":
        with pytest.raises(StudyDataError, match=detail):
            load_study(str(tmp_path))
        return
    study = load_study(str(tmp_path))
    assert len(study.timepoints) == len(corpus.HOURS)
    record = _record()
    for tp, expected in zip(study.timepoints, truth_MBq):
        assert tp.duration_s == pytest.approx(corpus.DURATION_S)
        factors = activity.scan_factors(tp, record)
        assert factors.units_path["units"] == detail
        assert activity.activity_map_MBq(tp.spect.array, factors).sum() == pytest.approx(expected, rel=1e-6)
