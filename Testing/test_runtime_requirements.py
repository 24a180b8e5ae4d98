"""The packages the code needs at run time reach a Slicer user: each runtime dependency that the Slicer
application does not bundle is listed in the requirements file the modules install on first use."""

import os
import re

from MIBGDosimetryLib.dependencies import BUNDLED_PACKAGES, read_requirements, requirement_name

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Provided by the application itself (its MRML library is what slicer-core packages for headless use).
PROVIDED_BY_SLICER = {"slicer-core", *BUNDLED_PACKAGES}


def _normalised(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_dependencies():
    text = open(os.path.join(SOURCE_ROOT, "pyproject.toml"), encoding="utf-8").read()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    return [line.split('"')[1] for line in block.splitlines() if line.strip().startswith('"')]


def test_every_runtime_dependency_slicer_lacks_is_in_the_requirements_file():
    dependencies = {_normalised(requirement_name(r)) for r in _runtime_dependencies()}
    assert {"numpy", "pydicom", "pylibjpeg"} <= dependencies
    listed = {_normalised(requirement_name(r))
              for r in read_requirements(os.path.join(SOURCE_ROOT, "MIBGDosimetry", "Resources", "requirements.txt"))}
    missing = dependencies - {_normalised(name) for name in PROVIDED_BY_SLICER} - listed
    assert not missing, f"runtime dependencies a Slicer user would not get: {sorted(missing)}"


def test_the_requirements_file_lists_no_package_the_application_bundles():
    listed = {_normalised(requirement_name(r))
              for r in read_requirements(os.path.join(SOURCE_ROOT, "MIBGDosimetry", "Resources", "requirements.txt"))}
    assert not listed & {_normalised(name) for name in PROVIDED_BY_SLICER}
