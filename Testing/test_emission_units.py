"""SPECT already in activity units is not calibrated again.

The same acquisitions are written as counts and as Bq/ml in the ways cameras and archives store them
(Units BQML with a float rescale, decay corrected to the administration or to the acquisition start
with a DecayFactor, a RealWorldValueMappingSequence, SPECT stored as PET objects). The Bq/ml values
are made here from the counts with EANM eq. 9 written out by hand (C / (Q t V)); every variant must
give the activity of the counts study.
"""

import datetime

import numpy as np
import pytest

import study_fixtures as fx
from MIBGCalibrationLib.record import CalibrationRecord
from MIBGDosimetryLib.study import StudyDataError, load_study
from MIBGDosimetryLib.workflow import activity

Q_CPS_PER_MBQ = 23.5
DEAD_TIME_S = 2.0e-6
HOURS = (4.0, 24.0, 72.0)
VOXEL_ML = 4.42 * 4.8 * 3.9 / 1000.0  # the SPECT voxel of study_fixtures.write_study
DURATION_S = 60 * 20.0  # 60 frames of 20 s


def _record():
    return CalibrationRecord(calibration_factor_cps_per_MBq=Q_CPS_PER_MBQ,
                             calibration_factor_cps_per_MBq_uncertainty=0.2, dead_time_s=DEAD_TIME_S,
                             dead_time_s_uncertainty=1e-7, collimator="HEGP")


def _bq_per_ml_per_count():
    """EANM eq. 9 without dead time for one voxel: A = C / (Q t); concentration = A / V, in Bq/ml."""
    return 1e6 / (Q_CPS_PER_MBQ * DURATION_S * VOXEL_ML)


def _activities(root):
    study = load_study(str(root))
    record = _record()
    result = []
    for tp in study.timepoints:
        factors = activity.scan_factors(tp, record)
        result.append((activity.activity_map_MBq(tp.spect.array, factors).sum(), factors))
    return result


VARIANTS = {
    "BQML, float rescale": lambda i: {"rescale_slope": _bq_per_ml_per_count(), "replace": {"Units": "BQML"}},
    "BQML decay corrected to the administration": lambda i: {
        "rescale_slope": _bq_per_ml_per_count() / fx.decay_factor(HOURS[i] + DURATION_S / 7200.0),
        "replace": {"Units": "BQML", "DecayCorrection": "ADMIN", "CorrectedImage": ["DECY", "ATTN"]}},
    "BQML decay corrected to the start with DecayFactor": lambda i: {
        "rescale_slope": _bq_per_ml_per_count() * 1.0234,
        "replace": {"Units": "BQML", "DecayCorrection": "START", "DecayFactor": "1.0234"}},
    "real-world value mapping": lambda i: {"replace": {"RealWorldValueMappingSequence":
                                                          fx.real_world_value_mapping(_bq_per_ml_per_count())}},
}


@pytest.fixture(scope="module")
def counts_activities(tmp_path_factory):
    root = tmp_path_factory.mktemp("counts")
    fx.write_study(str(root), hours=HOURS, seed=3)
    return _activities(root)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bq_per_ml_spect_gives_the_activity_of_the_same_counts(tmp_path, counts_activities, variant):
    fx.write_study(str(tmp_path), hours=HOURS, seed=3, spect_kwargs={i: VARIANTS[variant](i) for i in range(3)})
    for (expected, counts_factors), (found, factors) in zip(counts_activities, _activities(tmp_path)):
        assert counts_factors.dead_time_factor > 1.0
        assert found == pytest.approx(expected, rel=1e-6)
        assert factors.units_path["units"] == "Bq/ml"
        assert factors.units_path["calibration_applied"] is False
        assert counts_factors.units_path["calibration_applied"] is True
        # The Poisson uncertainty comes from the counts behind the activity, estimated through Q.
        assert factors.counts_per_value == pytest.approx(
            factors.mbq_per_value * Q_CPS_PER_MBQ * DURATION_S / factors.dead_time_factor)


def test_dead_time_corrected_image_is_not_corrected_again(tmp_path):
    fx.write_study(str(tmp_path), hours=HOURS, seed=3, spect_kwargs={i: {"replace": {"CorrectedImage": ["DTIM"]}}
                                                                    for i in range(3)})
    for _, factors in _activities(tmp_path):
        assert factors.dead_time_factor == 1.0
        assert any("already dead-time corrected" in n for n in factors.notes)


def test_spect_stored_as_pet_objects_in_bq_per_ml(tmp_path):
    visit = fx.Visit(datetime.datetime(2026, 3, 2, 14, 30))
    administration = datetime.datetime(2026, 3, 2, 10, 30)
    stored = np.random.default_rng(1).integers(0, 3000, size=(4, 5, 6)).astype(np.uint16)
    positions = [np.array([0.0, 0.0, 4.0 * k]) for k in range(4)]
    bq_per_ml_per_count = 1e6 / (Q_CPS_PER_MBQ * 1800.0 * (4.0 * 4.0 * 4.0 / 1000.0))
    fx.write_pet_slices(str(tmp_path / "counts"), visit, stored, [1.0] * 4, (4.0, 4.0), positions, administration,
                        1800000)
    fx.write_pet_slices(str(tmp_path / "bqml"), visit, stored, [bq_per_ml_per_count] * 4, (4.0, 4.0), positions,
                        administration, 1800000, units="BQML")
    (counts_activity, _), = _activities(tmp_path / "counts")
    (bq_activity, factors), = _activities(tmp_path / "bqml")
    assert bq_activity == pytest.approx(counts_activity, rel=1e-6)
    assert factors.units_path["source"] == "Units BQML"


def test_units_that_cannot_become_activity_are_refused_with_the_field(tmp_path):
    fx.write_study(str(tmp_path), hours=(4.0,), spect_kwargs={0: {"replace": {"Units": "GML"}}})
    with pytest.raises(StudyDataError, match="field Units is 'GML', which cannot be turned into activity"):
        load_study(str(tmp_path))
