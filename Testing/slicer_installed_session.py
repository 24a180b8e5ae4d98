"""A Slicer session on the installed extension, replayed as far as this machine allows.

    python slicer_installed_session.py SOURCE_ROOT WORK_DIR SLICER_VERSION (load|selftest) REPORT_JSON

1. installs the extension from its CMake lists into WORK_DIR/install and puts the qt-scripted-modules folder on
   ``sys.path`` (as Slicer does for an installed extension);
2. loads each scripted module file the way Slicer's scripted module factory does, then emits
   ``startupCompleted()`` (the Segment Editor effect is registered then);
3. imports every module of the installed ``*Lib`` packages;
4. with ``selftest``: runs each module's self-test (``<Module>Test().runTest()``) as Slicer's SelfTests module does.

The report (JSON) says what loaded, what failed and with which error. Runs in its own process, so that the
extension's modules are imported from the installed copy only.
"""

import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def _error(exc):
    return f"{type(exc).__name__}: {exc}"


def main(source_root, work_dir, slicer_version, mode, report_path):
    sys.path.insert(0, HERE)
    import slicer_application_standin as standin
    import slicer_installation

    report = {"slicer_version": slicer_version, "modules": {}, "startup_errors": [], "effects": [],
              "import_errors": {}, "imported_from": {}, "effect_modules": {},
              "self_tests": {}}
    scripted = slicer_installation.install_extension(source_root, os.path.join(work_dir, "install"), slicer_version)
    report["installed_files"] = sorted(os.path.relpath(os.path.join(d, f), scripted)
                                       for d, _dirs, files in os.walk(scripted) for f in files)
    sys.path.insert(0, scripted)
    app = standin.install(slicer_version)
    import slicer

    classes = {}
    for path in slicer_installation.scripted_module_files(scripted):
        name = os.path.basename(path)[:-3]
        try:
            _name, module, module_class = slicer_installation.scripted_module_class(path, slicer_version)
            instance = module_class(standin.ModuleParent(name))
            setattr(slicer.modules, name + "Instance", instance)
            classes[name] = module
            report["modules"][name] = {"loaded": True, "dependencies": list(instance.parent.dependencies),
                                       "contributors": list(instance.parent.contributors)}
        except Exception as exc:  # noqa: BLE001 - reported
            report["modules"][name] = {"loaded": False, "error": _error(exc), "traceback": traceback.format_exc()}
    report["startup_errors"] = [_error(e) for e in app.emit("startupCompleted()")]
    report["effects"] = [effect.name for effect in slicer.qSlicerSegmentEditorEffectFactory.instance().registeredEffects()]

    import importlib

    for package in sorted(p for p in os.listdir(scripted) if p.endswith("Lib") and
                          os.path.isfile(os.path.join(scripted, p, "__init__.py"))):
        loaded = sys.modules.get(package)
        if loaded is not None and not hasattr(loaded, "__path__"):
            # A Segment Editor effect folder: Slicer put the effect module under the folder's name.
            report["effect_modules"][package] = os.path.relpath(loaded.__file__, scripted)
            continue
        for folder, _dirs, files in os.walk(os.path.join(scripted, package)):
            for file in sorted(f for f in files if f.endswith(".py")):
                relative = os.path.relpath(os.path.join(folder, file), scripted)[:-3]
                name = relative.replace(os.sep, ".").removesuffix(".__init__")
                if name in report["imported_from"] or name in report["import_errors"]:
                    continue
                try:
                    module = importlib.import_module(name)
                    report["imported_from"][name] = os.path.relpath(getattr(module, "__file__", "") or "", scripted)
                except Exception as exc:  # noqa: BLE001 - reported
                    report["import_errors"][name] = _error(exc)

    if mode == "selftest":
        for name, module in classes.items():
            test_class = getattr(module, name + "Test", None)
            if test_class is None:
                report["self_tests"][name] = {"passed": False, "error": "no self-test class"}
                continue
            try:
                test = test_class()
                test.runTest()
                report["self_tests"][name] = {"passed": True, "figures": getattr(test, "figures", {})}
            except Exception as exc:  # noqa: BLE001 - reported
                report["self_tests"][name] = {"passed": False, "error": _error(exc),
                                              "traceback": traceback.format_exc()}
    if mode == "packages":
        report["package_installs"] = _package_installs(scripted, standin)
    report["recorded_calls"] = [call[0] for call in standin.RECORDER.calls]
    with open(report_path, "w") as stream:
        json.dump(report, stream, indent=2, default=str)


def _package_installs(scripted, standin):
    """Call MIBGDosimetry.ensurePythonPackages with everything installed, then with one package absent: as
    Slicer 5.10 (confirmation, progress, slicer.util.pip_install), declined, and as Slicer 5.12+ (pip_ensure)."""
    import slicer

    from MIBGDosimetryLib import dependencies

    ensure = sys.modules["MIBGDosimetry"].ensurePythonPackages
    recorder = standin.RECORDER
    outcome = {"bundled_versions": dependencies.installed_versions()}

    def attempt(key):
        recorder.calls.clear()
        entry = {}
        try:
            ensure()
        except ValueError as exc:
            entry["error"] = str(exc)
        entry["calls"] = [call[0] for call in recorder.calls]
        for name, args, kwargs in recorder.calls:
            if name in ("pip_install", "pip_ensure"):
                entry[name] = [args[0], kwargs["constraints"]]
        outcome[key] = entry

    attempt("satisfied")
    with open(os.path.join(scripted, "Resources", "requirements.txt"), "a") as stream:
        stream.write("\nmibg-dosimetry-absent-package>=1.0\n")
    attempt("5.10")
    recorder.confirm_answer = False
    attempt("declined")
    recorder.confirm_answer = True
    sys.modules["slicer.packaging"] = slicer.packaging = standin.packaging_namespace()
    attempt("5.12")
    return outcome


if __name__ == "__main__":
    main(*sys.argv[1:6])
