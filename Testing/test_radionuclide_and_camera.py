"""Studies of another radionuclide are refused unless accepted knowingly; the camera set-up of a
study is compared with the calibration record's (collimator class mismatches refused)."""

import pytest

import study_fixtures as fx
from MIBGCalibrationLib.record import CalibrationRecord
from MIBGDosimetryLib.study import StudyDataError, load_study
from MIBGDosimetryLib.workflow.calibration_match import collimator_class, compare_with_record

TC99M = {"radionuclide_code": ("C-163A8", "SRT", "^99m^Technetium"), "windows": (("TC", 129.0, 150.0),),
         "replace_radiopharmaceutical": {"RadionuclideHalfLife": "21624.12"}}


def test_tc99m_study_is_refused_with_its_reasons_and_accepted_when_asked(tmp_path):
    fx.write_study(str(tmp_path), hours=(4.0, 24.0, 72.0), spect_kwargs={i: TC99M for i in range(3)})
    with pytest.raises(StudyDataError) as caught:
        load_study(str(tmp_path))
    message = str(caught.value)
    assert "No reconstructed SPECT of 131I" in message
    assert "SRT C-163A8 ('^99m^Technetium')" in message
    assert "129-150 keV" in message and "364.49 keV" in message
    assert "RadionuclideHalfLife is 21624.1 s" in message
    study = load_study(str(tmp_path), accept_radionuclide=True)
    assert len(study.timepoints) == 3
    assert any("--accept-radionuclide" in w for w in study.warnings)


def test_lu177_half_life_alone_refuses_and_a_tc_series_beside_131i_is_left_out(tmp_path):
    fx.write_study(str(tmp_path / "lu"), hours=(4.0,),
                   spect_kwargs={0: {"replace_radiopharmaceutical": {"RadionuclideHalfLife": "574300"}}})
    with pytest.raises(StudyDataError, match="RadionuclideHalfLife is 574300 s"):
        load_study(str(tmp_path / "lu"))
    fx.write_study(str(tmp_path / "mixed"), hours=(4.0, 24.0, 72.0))
    fx.write_study(str(tmp_path / "mixed" / "bone"), hours=(30.0,), spect_kwargs={0: TC99M})
    study = load_study(str(tmp_path / "mixed"))
    assert len(study.timepoints) == 3
    assert any("not a 131I acquisition" in u["reason"] for u in study.unused_series)


def test_131i_codes_old_and_new_are_accepted(tmp_path):
    fx.write_study(str(tmp_path), hours=(4.0, 24.0), spect_kwargs={
        0: {"radionuclide_code": ("C-B1017", "SRT", "^131^Iodine")},
        1: {"radionuclide_code": ("1368003", "SCT", "Iodine-131")}})
    assert len(load_study(str(tmp_path)).timepoints) == 2


def test_projection_series_says_why_it_is_not_a_time_point(tmp_path):
    fx.write_study(str(tmp_path), hours=(4.0,), spect_kwargs={0: {"replace": {
        "ImageType": ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]}}})
    with pytest.raises(StudyDataError, match=r"NM Image 'SPECT' .*ImageType ORIGINAL\\PRIMARY\\TOMO\\EMISSION is not a "
                                             r"reconstruction"):
        load_study(str(tmp_path))


@pytest.mark.parametrize("name, energy", [("HEGP", "high"), ("HE", "high"), ("MELP", "medium"), ("LEHR", "low"),
                                          ("LEAP", "low"), ("High Energy", "high"), ("custom", None)])
def test_collimator_classes(name, energy):
    assert collimator_class(name) == energy


def _record(**changes):
    values = dict(calibration_factor_cps_per_MBq=20.0, calibration_factor_cps_per_MBq_uncertainty=0.2,
                  camera={"manufacturer": "Test Manufacturer", "model": "Test Camera"}, collimator="HEGP",
                  energy_windows=[{"name": "LOWER", "lower_keV": 305.76, "upper_keV": 327.6},
                                  {"name": "PEAK", "lower_keV": 327.6, "upper_keV": 400.4},
                                  {"name": "UPPER", "lower_keV": 400.4, "upper_keV": 422.24}],
                  image_grid={"matrix_ij": [7, 6], "voxel_size_mm": [4.42, 4.8, 3.9]})
    values.update(changes)
    return CalibrationRecord(**values)


def test_camera_set_up_compared_with_the_record(tmp_path):
    """A photopeak-only reconstruction matches a record that also lists its TEW scatter windows."""
    fx.write_study(str(tmp_path / "ok"), hours=(4.0,),
                   spect_kwargs={0: {"replace": {"ConvolutionKernel": "Butterworth"}}})
    study = load_study(str(tmp_path / "ok"))
    warnings, refusal = compare_with_record(study.timepoints, _record())
    assert (warnings, refusal) == ([], None)
    warnings, refusal = compare_with_record(study.timepoints, _record(
        camera={"manufacturer": "Other", "model": "Test Camera"}, collimator="HEAP",
        energy_windows=[{"lower_keV": 330.0, "upper_keV": 400.0}], image_grid={"voxel_size_mm": [2.2, 2.4, 3.9]},
        post_filter="Gaussian 8 mm"))
    assert refusal is None
    assert any("camera manufacturer 'Test Manufacturer' differs" in w for w in warnings)
    assert any("collimator 'HEGP' differs from the calibration record's 'HEAP' (same energy class)" in w
               for w in warnings)
    assert any("energy windows (327.6-400.4 keV) differ" in w for w in warnings)
    assert any("voxel size" in w for w in warnings)
    assert any("post-filter 'Butterworth' (ConvolutionKernel) differs" in w for w in warnings)
    old = CalibrationRecord.from_dict({k: v for k, v in _record(camera={}, collimator="", energy_windows=[])
                                       .to_dict().items() if k not in ("image_grid", "post_filter")})
    warnings, refusal = compare_with_record(study.timepoints, old)
    assert refusal is None
    for missing in ("camera manufacturer", "camera model", "collimator", "energy windows",
                    "reconstruction matrix and voxel size"):
        assert any(f"calibration record does not state the {missing}" in w for w in warnings), missing


@pytest.mark.parametrize("label, record_updates, expected", [
    ("OSEM 4i8s ACSC", 32, None), ("OSEM 2i8s ACSC", 32, "reconstruction with 16 OSEM updates"),
    ("OSEM 4it 10sub", 32, "with 40 OSEM updates (iterations x subsets) differs from the calibration record's 32"),
    ("OSEM 4i8s", None, "calibration record does not state its OSEM updates; the study's 32 updates"),
    ("Butterworth", 32, None)])
def test_osem_updates_compared_with_the_record(tmp_path, label, record_updates, expected):
    fx.write_study(str(tmp_path), hours=(4.0,), spect_kwargs={0: {"replace": {"ConvolutionKernel": label}}})
    study = load_study(str(tmp_path))
    reconstruction = {} if record_updates is None else {"description": "OSEM", "updates": record_updates}
    warnings, refusal = compare_with_record(study.timepoints, _record(reconstruction=reconstruction,
                                                                      post_filter=label))
    assert refusal is None
    about_updates = [w for w in warnings if "OSEM updates" in w]
    assert about_updates == ([] if expected is None else [next(w for w in warnings if expected in w)])


def test_low_or_other_energy_collimator_refused(tmp_path):
    fx.write_study(str(tmp_path / "le"), hours=(4.0,), spect_kwargs={0: {"replace_detector": {"CollimatorGridName":
                                                                                                "LEHR"}}})
    study = load_study(str(tmp_path / "le"))
    _, refusal = compare_with_record(study.timepoints, _record())
    assert "low-energy collimator ('LEHR')" in refusal
    fx.write_study(str(tmp_path / "me"), hours=(4.0,), spect_kwargs={0: {"replace_detector": {"CollimatorGridName":
                                                                                                "MEGP"}}})
    _, refusal = compare_with_record(load_study(str(tmp_path / "me")).timepoints, _record())
    assert "medium-energy collimator ('MEGP') but the calibration with a high-energy one ('HEGP')" in refusal


def test_series_of_other_sop_classes_are_named_not_given_as_uids(tmp_path):
    visit = fx.Visit(fx.datetime.datetime(2026, 3, 2, 14, 0))
    fx.write_header_only(str(tmp_path / "sc.dcm"), "1.2.840.10008.5.1.4.1.1.7", visit, "OT")
    with pytest.raises(StudyDataError, match=r"found: Secondary Capture Image Storage 'OT' .*not used for dosimetry"):
        load_study(str(tmp_path))


def test_dose_calculation_refuses_a_low_energy_collimator_before_computing(tmp_path):
    from MIBGDosimetryLib.workflow.calibration_match import CalibrationMismatchError
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, calculate

    fx.write_study(str(tmp_path), hours=(4.0, 24.0, 72.0),
                   spect_kwargs={i: {"replace_detector": {"CollimatorGridName": "LEHR"}} for i in range(3)})
    study = load_study(str(tmp_path))
    with pytest.raises(CalibrationMismatchError, match="low-energy collimator"):
        calculate(study, _record(), DoseOptions(), log=lambda *_: None)


def test_command_line_accepts_another_radionuclide_knowingly(tmp_path, capsys):
    import json

    from MIBGDosimetryLib.cli import main as cli_main

    fx.write_study(str(tmp_path), hours=(4.0, 24.0), spect_kwargs={i: TC99M for i in range(2)})
    assert cli_main(["study", str(tmp_path)]) != 0
    assert "not a 131I acquisition" in capsys.readouterr().err
    assert cli_main(["study", str(tmp_path), "--accept-radionuclide"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["timepoints"]) == 2
    assert summary["timepoints"][0]["units_path"]["units"] == "counts"
