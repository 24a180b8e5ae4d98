"""How 3D Slicer installs and loads this extension, replayed without the application.

- :func:`install_extension` builds the installed tree from the CMake lists only: ``slicerMacroBuildScriptedModule``
  (CMake/SlicerMacroBuildScriptedModule.cmake, through ctkMacroCompilePythonScript) copies every listed script and
  resource of a module to ``lib/Slicer-X.Y/qt-scripted-modules/`` keeping its path relative to the module folder.
  A file that no list names is not installed.
- :func:`load_source_as_module` is ``qSlicerScriptedUtils::loadSourceAsModule`` (Base/QTCore/qSlicerScriptedUtils.cxx)
  of Slicer 5.8 (``imp.load_source``) and of Slicer 5.10 and later (``importlib`` with ``sys.modules[name]`` set
  before the file runs).
- :func:`scripted_module_class` and :func:`scripted_effect_class` are the parts of
  ``qSlicerScriptedLoadableModule::setPythonSource`` (Base/QTGUI/qSlicerScriptedLoadableModule.cxx) and
  ``qSlicerSegmentEditorScriptedEffect::setPythonSource``
  (Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorScriptedEffect.cxx) that choose the module
  name, load the file and find the class: a module is named after its file, an effect after its parent folder.
"""

import importlib.util
import os
import re
import shutil
import sys
import warnings

#: The loader behaviours replayed: Slicer 5.8 and Slicer 5.10 or later.
SLICER_VERSIONS = ("5.8", "5.10")


def cmake_list(cmake_text, variable, module_name):
    """Items of ``set(<variable> ...)`` in a CMakeLists.txt, with ``${MODULE_NAME}`` substituted."""
    match = re.search(r"set\(\s*" + re.escape(variable) + r"\s+(.*?)\)", cmake_text, re.S)
    if match is None:
        return []
    return [item.replace("${MODULE_NAME}", module_name) for item in match.group(1).split()]


def module_folders(source_root):
    """Module folders named by ``add_subdirectory`` in the extension's top-level CMakeLists.txt."""
    with open(os.path.join(source_root, "CMakeLists.txt")) as stream:
        text = stream.read()
    return re.findall(r"^\s*add_subdirectory\(\s*([^\s)]+)\s*\)", text, re.M)


def install_extension(source_root, install_root, slicer_version="5.10"):
    """Copy what the CMake lists install into ``install_root``; return the qt-scripted-modules folder."""
    destination = os.path.join(install_root, "lib", f"Slicer-{slicer_version}", "qt-scripted-modules")
    os.makedirs(destination, exist_ok=True)
    for folder in module_folders(source_root):
        module_dir = os.path.join(source_root, folder)
        with open(os.path.join(module_dir, "CMakeLists.txt")) as stream:
            text = stream.read()
        name = re.search(r"set\(\s*MODULE_NAME\s+(\S+)\s*\)", text).group(1)
        listed = cmake_list(text, "MODULE_PYTHON_SCRIPTS", name) + cmake_list(text, "MODULE_PYTHON_RESOURCES", name)
        for relative in listed:
            source = os.path.join(module_dir, relative)
            if not os.path.isfile(source):
                raise FileNotFoundError(f"{folder}/CMakeLists.txt lists '{relative}', which does not exist.")
            target = os.path.join(destination, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)
    return destination


def load_source_as_module(module_name, file_path, slicer_version):
    """``qSlicerScriptedUtils::loadSourceAsModule(moduleName, filePath, ...)`` of the given Slicer version."""
    if slicer_version == "5.8":
        # 5.8: "import imp;imp.load_source(name, path)". imp left Python in 3.12; its load_source is rebuilt
        # with the same steps (re-execute into an existing sys.modules entry, else load a new module).
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import imp
            return imp.load_source(module_name, file_path)
        except ImportError:
            from importlib import _bootstrap

            spec = importlib.util.spec_from_file_location(module_name, file_path)
            if module_name in sys.modules:
                return _bootstrap._exec(spec, sys.modules[module_name])
            return _bootstrap._load(spec)
    spec = importlib.util.spec_from_file_location(module_name, file_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _class_from_source(module_name, class_name, file_path, slicer_version):
    module = sys.modules.get(module_name)
    if module is None or not hasattr(module, class_name):
        load_source_as_module(module_name, file_path, slicer_version)
        module = sys.modules.get(module_name)
    found = getattr(module, class_name, None)
    if found is None:
        raise RuntimeError(f"class {class_name} was not found in {file_path}")
    return module, found


def scripted_module_class(file_path, slicer_version):
    """``(module name, module, class)`` as qSlicerScriptedLoadableModule::setPythonSource finds them."""
    module_name = os.path.basename(file_path).split(".")[0]
    module, found = _class_from_source(module_name, module_name, file_path, slicer_version)
    return module_name, module, found


def scripted_effect_class(file_path, slicer_version):
    """``(module name, class)`` as qSlicerSegmentEditorScriptedEffect::setPythonSource finds them: the module is
    named after the file's parent folder, the class after the file (with "Effect" appended if missing)."""
    module_name = os.path.basename(os.path.dirname(file_path))
    class_name = os.path.basename(file_path).split(".")[0]
    if not class_name.endswith("Effect"):
        class_name += "Effect"
    _module, found = _class_from_source(module_name, class_name, file_path, slicer_version)
    return module_name, found


def scripted_module_files(scripted_modules_dir):
    """The files the scripted module factory turns into modules: the ``.py`` files directly in the folder."""
    return sorted(os.path.join(scripted_modules_dir, name) for name in os.listdir(scripted_modules_dir)
                  if name.endswith(".py") and os.path.isfile(os.path.join(scripted_modules_dir, name)))
