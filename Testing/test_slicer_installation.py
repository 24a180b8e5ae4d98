"""The extension installed and loaded the way 3D Slicer does it, then run from that installed copy.

What Slicer does is replayed by Testing/slicer_installation.py (CMake install layout, scripted module and
Segment Editor effect loading of Slicer 5.8 and 5.10+); what cannot exist here (Qt, CTK, slicer.app) is stood in
by Testing/slicer_application_standin.py only. Each session runs in its own Python process so that the
extension is imported from the installed copy and nothing else.
"""

import json
import os
import subprocess
import sys

import pytest

import slicer_installation

HERE = os.path.dirname(os.path.abspath(__file__))
#: The extension source to install; the default is this checkout.
SOURCE_ROOT = os.environ.get("MIBG_EXTENSION_SOURCE", os.path.dirname(HERE))
MODULES = ("MIBGCalibration", "MIBGDosimetry")
EFFECT_NAME = "MIBG adaptive threshold"
EFFECT_FOLDER = "MIBGAdaptiveThresholdEffectLib"


def run_session(tmp_path, slicer_version, mode, timeout_s=1800):
    report = tmp_path / f"report-{slicer_version}-{mode}.json"
    process = subprocess.run([sys.executable, os.path.join(HERE, "slicer_installed_session.py"), SOURCE_ROOT,
                              str(tmp_path), slicer_version, mode, str(report)],
                             capture_output=True, text=True, timeout=timeout_s, cwd=str(tmp_path))
    assert process.returncode == 0, process.stderr[-4000:]
    return json.loads(report.read_text())


def test_every_file_of_the_module_folders_is_installed(tmp_path):
    """A file in a module folder that no CMake list names is missing from the installed extension."""
    installed = slicer_installation.install_extension(SOURCE_ROOT, str(tmp_path))
    missing = []
    for module in MODULES:
        module_dir = os.path.join(SOURCE_ROOT, module)
        for folder, dirs, files in os.walk(module_dir):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "Testing")]
            for file in files:
                relative = os.path.relpath(os.path.join(folder, file), module_dir)
                if file == "CMakeLists.txt" or file.endswith(".pyc"):
                    continue
                if not os.path.isfile(os.path.join(installed, relative)):
                    missing.append(f"{module}/{relative}")
    assert not missing, f"not in any CMake list: {missing}"
    for resource in ("MIBGDosimetryLib/dose/tissue_parameters.json", "Resources/requirements.txt"):
        assert os.path.isfile(os.path.join(installed, resource)), resource


@pytest.mark.parametrize("slicer_version", slicer_installation.SLICER_VERSIONS)
def test_modules_and_effect_load_and_every_module_imports_as_in_slicer(tmp_path, slicer_version):
    report = run_session(tmp_path, slicer_version, "load")
    for module in MODULES:
        assert report["modules"][module]["loaded"], report["modules"][module]
    assert report["startup_errors"] == []
    assert report["effects"] == [EFFECT_NAME]
    assert report["effect_modules"] == {EFFECT_FOLDER: f"{EFFECT_FOLDER}/SegmentEditorMIBGAdaptiveThresholdEffect.py"}
    assert report["import_errors"] == {}
    assert len(report["imported_from"]) > 100
    outside = {name: path for name, path in report["imported_from"].items() if path.startswith("..")}
    assert not outside, f"imported from outside the installed copy: {outside}"
    assert report["modules"]["MIBGDosimetry"]["dependencies"][0] == "MIBGCalibration"
    for module in MODULES:
        assert all("(" in contributor for contributor in report["modules"][module]["contributors"])


def test_optional_packages_are_installed_after_confirmation_without_replacing_bundled_ones(tmp_path):
    report = run_session(tmp_path, "5.10", "packages")
    installs = report["package_installs"]
    missing = "mibg-dosimetry-absent-package>=1.0"
    # Slicer 5.10: confirmation, progress dialog, slicer.util.pip_install with a constraints file.
    assert installs["5.10"]["calls"] == ["confirmOkCancelDisplay", "createProgressDialog", "pip_install",
                                         "progress.close"]
    requirements, constraints = installs["5.10"]["pip_install"]
    assert requirements[:1] == ["-c"] and requirements[2:] == [missing]
    pinned = dict(line.split("==") for line in constraints.split())
    assert set(pinned) == {"numpy", "pydicom", "vtk", "scipy", "SimpleITK"}
    assert pinned == installs["bundled_versions"]
    # Declined: nothing installed, a clear error.
    assert installs["declined"]["calls"] == ["confirmOkCancelDisplay"]
    assert "were not installed" in installs["declined"]["error"]
    # Slicer 5.12+: slicer.packaging.pip_ensure with the same constraints.
    assert installs["5.12"]["calls"] == ["pip_ensure"]
    assert installs["5.12"]["pip_ensure"][0] == [missing]
    assert dict(line.split("==") for line in installs["5.12"]["pip_ensure"][1].split()) == pinned
    # Everything the requirements file lists is installed here: nothing to do.
    assert installs["satisfied"]["calls"] == []


def test_self_tests_run_calibration_and_dose_workflow_from_the_installed_copy(tmp_path):
    report = run_session(tmp_path, "5.10", "selftest")
    assert report["startup_errors"] == [] and report["import_errors"] == {}
    for module in MODULES:
        result = report["self_tests"][module]
        assert result["passed"], result.get("traceback", result)
    errors = report["self_tests"]["MIBGDosimetry"]["figures"]["mean_dose_relative_errors"]
    assert len(errors) >= 8 and max(abs(e) for e in errors.values()) <= 0.10
    assert report["self_tests"]["MIBGDosimetry"]["figures"]["result_nodes_per_run"] > 10
    assert "setSliceViewerLayers" in report["recorded_calls"]


def test_extension_metadata_names_contributors_by_role_and_says_what_the_screenshot_is():
    import re

    cmake = open(os.path.join(SOURCE_ROOT, "CMakeLists.txt")).read()
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]*)"\)', cmake).group(1)
    assert all(re.search(r"\(.+\)", person) for person in contributors.split(", "))
    url = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]*)"\)', cmake).group(1)
    path = url.split("/main/", 1)[1]
    assert os.path.isfile(os.path.join(SOURCE_ROOT, path)), path
    assert "report-figure" in os.path.basename(path)  # a report figure, not a capture of Slicer's views
