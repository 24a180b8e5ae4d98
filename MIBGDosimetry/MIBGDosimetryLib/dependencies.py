"""Python packages that the Slicer application does not bundle, and the constraints that keep the packages it
does bundle (numpy, pydicom, vtk, scipy, SimpleITK) at the versions it ships when the others are installed.

GUI-free: the modules ask the user, show progress and call Slicer's pip helpers with these lists.
"""

import importlib.metadata
import re

#: Packages the Slicer application ships; an extension must never replace them.
BUNDLED_PACKAGES = ("numpy", "pydicom", "vtk", "scipy", "SimpleITK")


def read_requirements(path):
    """Requirement lines of a requirements file (comments and blank lines left out)."""
    with open(path, encoding="utf-8") as stream:
        lines = [line.split("#", 1)[0].strip() for line in stream]
    requirements = [line for line in lines if line]
    if not requirements:
        raise ValueError(f"The requirements file '{path}' lists no package.")
    return requirements


def installed_versions(names=BUNDLED_PACKAGES):
    """``{name: version}`` of those of ``names`` that are installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def bundled_constraints(versions):
    """pip constraint lines that pin each bundled package of ``versions`` ({name: version}) to that version."""
    return [f"{name}=={versions[name]}" for name in BUNDLED_PACKAGES if name in versions]


def requirement_name(requirement):
    """The distribution name of a requirement line such as ``"icrp107-database>=0.0.3"``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"'{requirement}' is not a package requirement.")
    return match.group(1)


def missing_requirements(requirements):
    """The requirements whose distribution is not installed or whose installed version does not satisfy them."""
    missing = []
    for requirement in requirements:
        try:
            version = importlib.metadata.version(requirement_name(requirement))
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        if not _satisfies(requirement, version):
            missing.append(requirement)
    return missing


def _satisfies(requirement, version):
    try:
        from packaging.requirements import Requirement
    except ImportError:  # without 'packaging' an installed distribution counts as satisfying
        return True
    return Requirement(requirement).specifier.contains(version, prereleases=True)
