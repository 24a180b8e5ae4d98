"""Organ S-value tables of 131I: import from CSV and adjustment to the patient's organ masses.

A table has one row per (target, source) pair, as exported by common dosimetry software: columns
naming the target and source regions and the S value, with the unit either in a unit column or in the
S-value column's header (e.g. ``S value (mGy/MBq-s)``). Values are converted to mGy/(MBq s).

Mass adjustment of a self-dose S value from the phantom organ mass m_ref to the patient's m: the
electron (non-penetrating) part scales with m_ref/m, because it is absorbed in the organ whatever its
size; the photon (penetrating) part scales with (m_ref/m)^(2/3), because the photon absorbed fraction
grows with the organ's linear size, about m^(1/3) (MIRD Pamphlet 11, Snyder et al. 1975; Stabin,
J. Nucl. Med. 46 (2005) 1023, OLINDA/EXM). The electron part of the reference value is computed with
the sphere model of :mod:`.spheres` for the reference mass; the rest of the reference value is the
photon part. Cross-organ S values are not adjusted.
"""

import csv
import pathlib
import re

from MIBGDosimetryLib.physics.i131 import MGY_PER_MBQ_S_PER_MEV_PER_G
from MIBGDosimetryLib.physics.radial import radial_kernel
from MIBGDosimetryLib.physics.spheres import sphere_s_value

#: Factors to mGy/(MBq s) from units written in S-value tables (Sv taken as Gy: radiation weighting
#: factor 1 for electrons and photons, ICRP Publication 103). 1 rad = 0.01 Gy, 1 uCi = 0.037 MBq.
UNIT_TO_MGY_PER_MBQ_S = {
    "mgy/mbqs": 1.0,
    "msv/mbqs": 1.0,
    "gy/bqs": 1.0e9,
    "sv/bqs": 1.0e9,
    "mgy/mbqh": 1.0 / 3600.0,
    "msv/mbqh": 1.0 / 3600.0,
    "gy/mbqh": 1000.0 / 3600.0,
    "rad/ucih": 10.0 / 0.037 / 3600.0,
}
_TARGET = ("target", "targetorgan", "targetregion", "target_region")
_SOURCE = ("source", "sourceorgan", "sourceregion", "source_region")
_VALUE = ("s", "svalue", "s_value", "value", "s-value")
_UNIT = ("unit", "units")


def _normalise(text):
    return re.sub(r"[\s_()\[\]·.*-]", "", text.strip().lower().replace("µ", "u").replace("μ", "u"))


def _column(header, names):
    for index, title in enumerate(header):
        bare = _normalise(re.sub(r"[(\[].*[)\]]", "", title))
        if bare in {_normalise(n) for n in names}:
            return index
    return None


def _unit_factor(unit_text, where):
    factor = UNIT_TO_MGY_PER_MBQ_S.get(_normalise(unit_text))
    if factor is None:
        raise ValueError(f"Unknown S-value unit '{unit_text}' in {where}. Use one of mGy/(MBq s), mSv/MBq-s, "
                         "Gy/(Bq s), mGy/(MBq h), rad/(uCi h).")
    return factor


def read_organ_s_values(path):
    """Read an organ S-value table (CSV). Returns {(target, source): S in mGy/(MBq s)}."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"S-value table {path} not found.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            raise ValueError(f"{path.name} is not a table with comma, semicolon or tab separated columns.")
        rows = [row for row in csv.reader(handle, dialect) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise ValueError(f"{path.name} has no S-value rows.")
    header = rows[0]
    target, source, value = _column(header, _TARGET), _column(header, _SOURCE), _column(header, _VALUE)
    if None in (target, source, value):
        raise ValueError(f"{path.name} needs columns for target, source and S value; found {header}.")
    unit_column = _column(header, _UNIT)
    header_unit = re.search(r"[(\[](.*)[)\]]", header[value])
    if unit_column is None and header_unit is None:
        raise ValueError(f"{path.name} gives no unit: add a unit column or write it in the S-value header, "
                         "e.g. 'S value (mGy/MBq-s)'.")
    table = {}
    for number, row in enumerate(rows[1:], start=2):
        unit = row[unit_column] if unit_column is not None else header_unit.group(1)
        try:
            s_value = float(row[value])
        except (ValueError, IndexError):
            raise ValueError(f"{path.name} line {number}: '{row[value] if value < len(row) else ''}' is not a number.")
        if s_value < 0:
            raise ValueError(f"{path.name} line {number}: S values cannot be negative.")
        table[(row[target].strip(), row[source].strip())] = s_value * _unit_factor(unit, f"{path.name} line {number}")
    return table


def mass_adjusted_self_s_value(s_reference_mGy_per_MBq_s, reference_mass_g, patient_mass_g):
    """Self-dose S value (mGy/(MBq s)) of an organ of ``patient_mass_g``, from the value of the reference
    organ of ``reference_mass_g``: electron part x m_ref/m, photon part x (m_ref/m)^(2/3)."""
    if not (reference_mass_g > 0 and patient_mass_g > 0):
        raise ValueError("Organ masses must be positive numbers of grams.")
    electron_fraction = sphere_s_value(reference_mass_g)["electron_absorbed_fraction"]
    electron_part = radial_kernel().electron_MeV * electron_fraction / reference_mass_g * MGY_PER_MBQ_S_PER_MEV_PER_G
    if electron_part > s_reference_mGy_per_MBq_s:
        raise ValueError(f"The reference S value {s_reference_mGy_per_MBq_s:g} mGy/(MBq s) is below the electron "
                         f"self-dose of a {reference_mass_g:g} g organ ({electron_part:g}); "
                         "check the mass and the units.")
    ratio = reference_mass_g / patient_mass_g
    return electron_part * ratio + (s_reference_mGy_per_MBq_s - electron_part) * ratio ** (2.0 / 3.0)
