"""Shared pytest fixtures: real MRML scenes on Slicer's MRML library (slicer-core)."""

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
#: Published tables the tests compare against (test data only; see its README).
REFERENCE = REPO / "Testing" / "data"


@pytest.fixture
def mrml_context():
    """A new MRML scene with the application logic and the volumes, segmentations, transforms,
    sequences, subject hierarchy and tables logics attached."""
    from MIBGDosimetryLib import mrml

    context = mrml.new_scene()
    yield context
    context.scene.Clear(1)


@pytest.fixture
def repo_root():
    return REPO


@pytest.fixture
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.fail(f"The test data folder {REFERENCE} is missing from the checkout.")
    return REFERENCE
