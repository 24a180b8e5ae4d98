"""Static checks of what only the Slicer application could run: .ui files, widget names,
CMake file lists, imports at file scope and package names."""

import ast
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MODULES = ["MIBGDosimetry", "MIBGCalibration"]
# What the Slicer application's Python bundles; anything else must be imported inside functions.
BUNDLED = {"slicer", "vtk", "qt", "ctk", "numpy", "scipy", "SimpleITK", "sitkUtils", "pydicom",
           "DICOMLib", "SegmentEditorEffects", "SegmentStatistics", "__future__"}
OWN = {"MIBGDosimetry", "MIBGCalibration", "MIBGDosimetryLib", "MIBGCalibrationLib"}


def module_python_files(module):
    folder = REPO / module
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def ui_widget_names(ui_path):
    return {w.get("name") for w in ET.parse(ui_path).getroot().iter("widget")}


@pytest.mark.parametrize("module", MODULES)
def test_ui_parses_and_has_a_root_widget(module):
    ui = REPO / module / "Resources" / "UI" / f"{module}.ui"
    root = ET.parse(ui).getroot()
    assert root.tag == "ui"
    assert root.find("widget") is not None


@pytest.mark.parametrize("module", MODULES)
def test_every_widget_name_used_in_code_exists_in_ui(module):
    names = ui_widget_names(REPO / module / "Resources" / "UI" / f"{module}.ui")
    for path in [REPO / module / f"{module}.py"] + sorted((REPO / module).glob("*Lib/*Widget*.py")):
        used = set(re.findall(r"self\.ui\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
        missing = used - names
        assert not missing, f"{path.name} uses widgets missing from {module}.ui: {sorted(missing)}"


@pytest.mark.parametrize("module", MODULES)
def test_ui_parameter_names_exist_in_parameter_node(module):
    ui = REPO / module / "Resources" / "UI" / f"{module}.ui"
    declared = set()
    for widget in ET.parse(ui).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                declared.add(prop.find("string").text)
    source = (REPO / module / f"{module}.py").read_text()
    tree = ast.parse(source)
    fields = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == f"{module}ParameterNode":
            fields = {a.target.id for a in node.body if isinstance(a, ast.AnnAssign)}
    assert declared <= fields, f"parameters in {module}.ui but not in the parameter node: {declared - fields}"


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_every_python_ui_and_png_file(module):
    cmake = (REPO / module / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", module)
    listed = set(re.findall(r"^\s+([\w/.-]+\.(?:py|ui|png))\s*$", cmake, re.M))
    present = {str(p.relative_to(REPO / module)) for p in module_python_files(module)}
    present |= {str(p.relative_to(REPO / module)) for p in (REPO / module).rglob("*")
                if p.suffix in (".ui", ".png")}
    assert present - listed == set(), f"files not listed in {module}/CMakeLists.txt: {sorted(present - listed)}"
    assert listed - present == set(), f"{module}/CMakeLists.txt lists missing files: {sorted(listed - present)}"


@pytest.mark.parametrize("module", MODULES)
def test_no_optional_package_imported_at_file_scope(module):
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for path in module_python_files(module):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name not in BUNDLED | stdlib | OWN:
                    problems.append(f"{path.relative_to(REPO)}:{node.lineno} imports '{name}' at file scope")
    assert not problems, "\n".join(problems)


def test_package_names_are_unique_to_this_extension():
    generic = {"Logic", "logic", "utils", "util", "lib", "Lib", "Testing", "tests", "common", "core", "io"}
    for module in MODULES:
        top_level = [p.name for p in (REPO / module).iterdir()
                     if p.is_dir() and (p / "__init__.py").exists()]
        for name in top_level:
            assert name not in generic and name.startswith("MIBG"), \
                f"{module}/{name} is a top-level package with a name not unique to this extension"


def test_extension_index_metadata():
    cmake = (REPO / "CMakeLists.txt").read_text()
    for key in ["EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"]:
        assert re.search(rf"set\({key}\s", cmake), key
    assert 'set(EXTENSION_CATEGORY "Nuclear Medicine")' in cmake
    import json
    entry = json.loads((REPO / "MIBGDosimetry.json").read_text())
    assert entry["category"] == "Nuclear Medicine"
    assert entry["scm_url"].startswith("https://")
    assert entry["build_dependencies"] == []


def test_requirements_use_lower_bounds_only():
    for line in (REPO / "MIBGDosimetry" / "Resources" / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert ">=" in line and "==" not in line, line


def test_readme_walkthrough_names_only_labels_of_the_panel():
    """Every bold label of the README's "In 3D Slicer: step by step" section is a section title or button
    text of the MIBG Dosimetry or MIBG Calibration panel (.ui) or a name the module source shows (the Cancel
    text, the effect)."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## In 3D Slicer: step by step\n(.*?)^## ", readme, re.M | re.S)
    assert match, "README has no 'In 3D Slicer: step by step' section"
    labels = set(re.findall(r"\*\*([^*]+)\*\*", match.group(1)))
    ui = ET.parse(REPO / "MIBGDosimetry" / "Resources" / "UI" / "MIBGDosimetry.ui").getroot()
    shown = set()
    for module in ("MIBGDosimetry", "MIBGCalibration"):
        panel = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui").getroot()
        source = (REPO / module / f"{module}.py").read_text()
        shown |= {s.text.rstrip(":") for s in panel.iter("string") if s.text} | \
            set(re.findall(r'_\("([^"]+)"\)', source)) | set(re.findall(r'"(MIBG [A-Za-z ]+)"', source))
    assert len(labels) >= 15
    missing = sorted(label for label in labels if label not in shown)
    assert not missing, f"README names labels the panel does not have: {missing}"
    sections = {s.find("property/string").text for s in ui.iter("widget") if s.get("class") == "ctkCollapsibleButton"}
    assert sections <= labels, f"panel sections the walkthrough does not describe: {sorted(sections - labels)}"
