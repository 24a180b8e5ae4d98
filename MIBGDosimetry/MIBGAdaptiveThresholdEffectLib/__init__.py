"""Segment Editor effect "MIBG adaptive threshold".

Slicer loads a scripted effect file as a module named after the folder that holds it, so the effect
has this folder to itself; it imports ``MIBGDosimetryLib`` and ``MIBGCalibrationLib`` like any client.
"""
