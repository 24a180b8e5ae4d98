"""THE ONE PLACE with stand-ins for the parts of 3D Slicer that cannot exist outside the application.

Stood in: the Qt Python module (``qt``, imported by the effect; no widget is created), ``slicer.app``, ``slicer.modules``,
``slicer.ScriptedLoadableModule``, ``slicer.i18n``, ``slicer.parameterNodeWrapper``, the Segment Editor's effect
classes and factory, and the dialogs of ``slicer.util`` (error, confirmation, progress, slice-view layers, pip).
They hold values and record calls; none of them computes anything. Everything else is real: MRML, the scene,
the application logic and the module logics come from ``slicer-core``, and the extension's own code runs as
installed. The stand-ins are grafted onto the real ``slicer`` package by :func:`install` and removed by
:func:`uninstall`.
"""

import logging
import sys
import types
import unittest

import slicer
import slicer.util

import slicer_installation


class Recorder:
    """Calls made to stood-in dialogs and helpers, for the test to inspect."""

    def __init__(self):
        self.calls = []
        self.confirm_answer = True

    def record(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))

    def named(self, name):
        return [call for call in self.calls if call[0] == name]


RECORDER = Recorder()


class Application:
    """``slicer.app``: signals connected by modules, the application logic, testing mode."""

    def __init__(self, app_logic):
        self._app_logic = app_logic
        self._slots = {}

    def connect(self, signal, slot):
        self._slots.setdefault(signal, []).append(slot)

    def emit(self, signal):
        """Call the slots of ``signal`` as Qt does; an exception in one slot does not stop the others (Slicer
        prints it). Returns the exceptions raised."""
        errors = []
        for slot in self._slots.get(signal, []):
            try:
                slot()
            except Exception as error:  # noqa: BLE001 - Slicer reports and continues
                errors.append(error)
        return errors

    def applicationLogic(self):
        return self._app_logic

    def testingEnabled(self):
        return True

    def processEvents(self):
        pass

    def setOverrideCursor(self, cursor):
        pass

    def restoreOverrideCursor(self):
        pass


class _LogicHolder:
    """``slicer.modules.<name>``: gives the application's logic of that module."""

    def __init__(self, logic):
        self._logic = logic

    def logic(self):
        return self._logic


class ModuleParent:
    """The ``parent`` (qSlicerScriptedLoadableModule) a scripted module fills in."""

    def __init__(self, name):
        self.name = name
        self.title = ""
        self.categories = []
        self.dependencies = []
        self.contributors = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.hidden = False
        self.isEntered = False


def _scripted_loadable_module_namespace():
    namespace = types.ModuleType("slicer.ScriptedLoadableModule", "Stand-in of slicer.ScriptedLoadableModule.")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = type(self).__name__

        def getDefaultModuleDocumentationLink(self, docPage=None):
            return ""

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        """Parameter node as Slicer's base class makes it: a singleton scripted-module node named after the module."""

        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[:-len("Logic")] if type(self).__name__.endswith("Logic") \
                else type(self).__name__

        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetSingletonTag(self.moduleName)
                node.SetName(self.moduleName)
                node.SetModuleName(self.moduleName)
                node = slicer.mrmlScene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            logging.info(message)

        def takeScreenshot(self, name, description, type=-1):
            pass

    namespace.ScriptedLoadableModule = ScriptedLoadableModule
    namespace.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    namespace.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    namespace.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    return namespace


def _i18n_namespace():
    namespace = types.ModuleType("slicer.i18n", "Stand-in of slicer.i18n: text is returned untranslated.")
    namespace.tr = lambda text: text
    namespace.translate = lambda context, text: text
    return namespace


def _parameter_node_wrapper_namespace():
    namespace = types.ModuleType("slicer.parameterNodeWrapper",
                                 "Stand-in of slicer.parameterNodeWrapper: wraps the node, binds no GUI.")

    class Choice:
        def __init__(self, choices):
            self.choices = list(choices)

    def parameterNodeWrapper(cls):
        class Wrapped:
            def __init__(self, parameterNode):
                self.parameterNode = parameterNode

        Wrapped.__name__ = cls.__name__
        Wrapped.__doc__ = cls.__doc__
        return Wrapped

    namespace.Choice = Choice
    namespace.parameterNodeWrapper = parameterNodeWrapper
    return namespace


class EffectFactory:
    """``slicer.qSlicerSegmentEditorEffectFactory``: the list of registered effects."""

    _instance = None

    def __init__(self):
        self._effects = []

    @classmethod
    def instance(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def registerEffect(self, effect):
        self._effects.append(effect)

    def registeredEffects(self):
        return list(self._effects)


def _segment_editor_namespaces(slicer_version):
    effects = types.ModuleType("SegmentEditorEffects", "Stand-in of Slicer's SegmentEditorEffects package.")

    class AbstractScriptedSegmentEditorEffect:
        def __init__(self, scriptedEffect):
            self.scriptedEffect = scriptedEffect

        def register(self):
            EffectFactory.instance().registerEffect(self.scriptedEffect)

    effects.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect

    python_qt = types.ModuleType("qSlicerSegmentationsEditorEffectsPythonQt",
                                 "Stand-in of the Segment Editor's C++ effect classes.")

    class qSlicerSegmentEditorScriptedEffect:
        """Holds the Python effect object; loading follows qSlicerSegmentEditorScriptedEffect::setPythonSource."""

        def __init__(self, parent):
            self.name = ""
            self.perSegment = False
            self.requireSegments = False
            self._self = None

        def setPythonSource(self, path):
            module_name, effect_class = slicer_installation.scripted_effect_class(path, slicer_version)
            self._self = effect_class(self)
            setattr(slicer, module_name, self._self)
            return True

        def self(self):
            return self._self

    python_qt.qSlicerSegmentEditorScriptedEffect = qSlicerSegmentEditorScriptedEffect
    return effects, python_qt


def _constraints_text(requirements):
    """The content of the constraints file passed with ``-c`` (read when pip would read it)."""
    if isinstance(requirements, (list, tuple)) and "-c" in requirements:
        with open(requirements[list(requirements).index("-c") + 1]) as stream:
            return stream.read()
    return None


def packaging_namespace():
    """Stand-in of ``slicer.packaging`` (Slicer 5.12 and later): records ``pip_ensure`` calls."""
    namespace = types.ModuleType("slicer.packaging", "Stand-in of slicer.packaging: records pip_ensure.")

    def pip_ensure(requirements, constraints=None, **kwargs):
        with open(constraints) as stream:
            RECORDER.record("pip_ensure", list(requirements), constraints=stream.read(), **kwargs)

    namespace.pip_ensure = pip_ensure
    return namespace


class _ProgressDialog:
    def close(self):
        RECORDER.record("progress.close")


_UTIL_STANDINS = {
    "errorDisplay": lambda text, *args, **kwargs: RECORDER.record("errorDisplay", text),
    "confirmOkCancelDisplay": lambda text, *args, **kwargs: (RECORDER.record("confirmOkCancelDisplay", text),
                                                              RECORDER.confirm_answer)[1],
    "createProgressDialog": lambda *args, **kwargs: (RECORDER.record("createProgressDialog", **kwargs),
                                                     _ProgressDialog())[1],
    "setSliceViewerLayers": lambda **kwargs: RECORDER.record("setSliceViewerLayers", **kwargs),
    "pip_install": lambda requirements, **kwargs: RECORDER.record("pip_install", requirements,
                                                                  constraints=_constraints_text(requirements)),
    "delayDisplay": lambda message, *args, **kwargs: logging.info(message),
}

_SLICER_ATTRIBUTES = ("app", "modules", "mrmlScene", "ScriptedLoadableModule", "i18n", "parameterNodeWrapper",
                      "qSlicerSegmentEditorEffectFactory")
_SYS_MODULES = ("qt", "SegmentEditorEffects", "qSlicerSegmentationsEditorEffectsPythonQt",
                "slicer.ScriptedLoadableModule", "slicer.i18n", "slicer.parameterNodeWrapper")
_saved = {}


def install(slicer_version="5.10"):
    """Graft the stand-ins onto the real ``slicer`` package around a new real scene and the application's real
    logics. Returns the :class:`Application`."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkMRMLApplicationLogic()
    app_logic.SetMRMLScene(scene)
    logics = {"volumes": slicer.vtkSlicerVolumesLogic(), "segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
              "transforms": slicer.vtkSlicerTransformLogic(), "sequences": slicer.vtkSlicerSequencesLogic(),
              "subjecthierarchy": slicer.vtkSlicerSubjectHierarchyModuleLogic(), "tables": slicer.vtkSlicerTablesLogic()}
    for logic in logics.values():
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
    app = Application(app_logic)
    effects, python_qt = _segment_editor_namespaces(slicer_version)
    namespaces = {
        "qt": types.ModuleType("qt", "Stand-in of Qt's Python module (no widget is created in these tests)."),
        "SegmentEditorEffects": effects,
        "qSlicerSegmentationsEditorEffectsPythonQt": python_qt,
        "slicer.ScriptedLoadableModule": _scripted_loadable_module_namespace(),
        "slicer.i18n": _i18n_namespace(),
        "slicer.parameterNodeWrapper": _parameter_node_wrapper_namespace(),
    }
    _saved["sys"] = {name: sys.modules.get(name) for name in _SYS_MODULES}
    _saved["slicer"] = {name: getattr(slicer, name, None) for name in _SLICER_ATTRIBUTES}
    _saved["util"] = {name: getattr(slicer.util, name, None) for name in _UTIL_STANDINS}
    sys.modules.update(namespaces)
    slicer.app = app
    slicer.modules = types.SimpleNamespace(**{name: _LogicHolder(logic) for name, logic in logics.items()})
    slicer.mrmlScene = scene
    slicer.ScriptedLoadableModule = namespaces["slicer.ScriptedLoadableModule"]
    slicer.i18n = namespaces["slicer.i18n"]
    slicer.parameterNodeWrapper = namespaces["slicer.parameterNodeWrapper"]
    slicer.qSlicerSegmentEditorEffectFactory = EffectFactory
    for name, function in _UTIL_STANDINS.items():
        setattr(slicer.util, name, function)
    return app


def uninstall():
    """Remove the stand-ins and restore what ``slicer`` and ``sys.modules`` held before :func:`install`."""
    for name, previous in _saved.pop("sys", {}).items():
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
    for name, previous in _saved.pop("slicer", {}).items():
        if previous is None:
            if hasattr(slicer, name):
                delattr(slicer, name)
        else:
            setattr(slicer, name, previous)
    for name, previous in _saved.pop("util", {}).items():
        setattr(slicer.util, name, previous)
