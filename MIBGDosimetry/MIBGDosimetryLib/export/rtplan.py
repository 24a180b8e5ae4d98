"""The RT Plan that accompanies an RT Dose of a molecular radiotherapy administration.

An RT Dose of Dose Summation Type PLAN must reference the RT Plan it belongs to (PS3.3 C.8.8.3,
Referenced RT Plan Sequence, Type 1C). A 131I-mIBG administration has no beams, no sources and no
planned geometry, so the plan written here holds only what the RT Plan IOD (PS3.3 A.20) asks of
every plan: the patient, study and frame of reference of the dose, an RT series, the equipment,
and the RT General Plan module that names the administration. Its geometry is TREATMENT_DEVICE, so
no RT Structure Set has to be referenced. :func:`write_rt_dose_with_plan` writes the dose and its
plan together, the dose referencing the plan.
"""

import datetime
import os

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from MIBGDosimetryLib import __version__
from MIBGDosimetryLib.export.dicomgeometry import ds_string
from MIBGDosimetryLib.export.rtdose import (PATIENT_KEYWORDS, RT_PLAN_STORAGE, STUDY_KEYWORDS, build_rt_dose,
                                            save_datasets)

#: Defined Terms of Plan Intent (300A,000A), RT General Plan Module (PS3.3 C.8.8.9).
PLAN_INTENTS = ("CURATIVE", "PALLIATIVE", "PROPHYLACTIC", "VERIFICATION", "MACHINE_QA", "RESEARCH", "SERVICE")


def build_rt_plan(dose_dataset, sop_instance_uid=None, label="131I-mIBG", name="131I-mIBG therapy",
                  description=None, plan_intent=None, administered_activity_MBq=None, content_datetime=None):
    """Build the RT Plan dataset (pydicom) of the administration whose dose is ``dose_dataset``.

    dose_dataset: the RT Dose dataset; its patient, study, frame of reference and character set
        are copied, so the plan sits in the dose's study.
    sop_instance_uid: the plan's SOPInstanceUID (the one the dose references); a new one if None.
    label: RTPlanLabel (at most 16 characters). name: RTPlanName (at most 64 characters).
    description: RTPlanDescription; when None and ``administered_activity_MBq`` is given, the
        description states the administered activity.
    plan_intent: one of :data:`PLAN_INTENTS`, written when given (the department knows it, the
        dose calculation does not).
    """
    if not label or len(label) > 16:
        raise ValueError(f"The RT Plan label '{label}' must have 1 to 16 characters.")
    if name and len(name) > 64:
        raise ValueError(f"The RT Plan name '{name}' is longer than 64 characters.")
    if plan_intent is not None and plan_intent not in PLAN_INTENTS:
        raise ValueError(f"The plan intent '{plan_intent}' is not one of {', '.join(PLAN_INTENTS)}.")
    if administered_activity_MBq is not None and not administered_activity_MBq > 0:
        raise ValueError(f"The administered activity is {administered_activity_MBq} MBq; give a positive "
                         "activity or none.")
    now = content_datetime or datetime.datetime.now()

    ds = Dataset()
    ds.SpecificCharacterSet = dose_dataset.get("SpecificCharacterSet", "ISO_IR 192")
    ds.SOPClassUID = RT_PLAN_STORAGE
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    for keyword in PATIENT_KEYWORDS + STUDY_KEYWORDS + ("FrameOfReferenceUID", "PositionReferenceIndicator"):
        if keyword in dose_dataset:
            ds[keyword] = dose_dataset[keyword]
    ds.Modality = "RTPLAN"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 902
    ds.SeriesDescription = "131I-mIBG administration"
    ds.OperatorsName = ""
    ds.Manufacturer = "SlicerMIBGDosimetry"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1

    ds.RTPlanLabel = label
    if name:
        ds.RTPlanName = name
    if description is None and administered_activity_MBq is not None:
        description = (f"Administration of {ds_string(administered_activity_MBq)} MBq 131I-mIBG (iobenguane); "
                       "no beams or sources: the absorbed dose is in the referencing RT Dose.")
    if description:
        ds.RTPlanDescription = description[:1024]
    ds.RTPlanDate = now.strftime("%Y%m%d")
    ds.RTPlanTime = now.strftime("%H%M%S")
    if plan_intent:
        ds.PlanIntent = plan_intent
    ds.RTPlanGeometry = "TREATMENT_DEVICE"

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_rt_dose_with_plan(dose, folder, reference_ct=None, patient=None, administered_activity_MBq=None,
                            plan_intent=None, plan_label="131I-mIBG", plan_name="131I-mIBG therapy",
                            dose_filename="rtdose.dcm", plan_filename="rtplan.dcm", **dose_options):
    """Write a dose :class:`ImageVolume` (Gy) as an RT Dose and its RT Plan into ``folder``.

    Both files are written or neither. The dose references the plan (Referenced RT Plan Sequence);
    the plan shares the dose's patient, study and frame of reference. ``reference_ct``, ``patient``
    and ``dose_options`` (bits, series_description, dose_comment, content_datetime) are those of
    :func:`MIBGDosimetryLib.export.rtdose.build_rt_dose`; ``administered_activity_MBq`` (MBq) and
    ``plan_intent`` describe the administration in the plan (see :func:`build_rt_plan`).
    Returns ``{"rtdose": path, "rtplan": path}`` (absolute paths).
    """
    if "referenced_plan_uid" in dose_options:
        raise ValueError("The dose written with its plan references that plan; to reference another plan, "
                         "use write_rt_dose with referenced_plan_uid.")
    plan_uid = generate_uid()
    dose_dataset = build_rt_dose(dose, reference_ct=reference_ct, patient=patient, referenced_plan_uid=plan_uid,
                                 **dose_options)
    plan_dataset = build_rt_plan(dose_dataset, plan_uid, label=plan_label, name=plan_name, plan_intent=plan_intent,
                                 administered_activity_MBq=administered_activity_MBq,
                                 content_datetime=dose_options.get("content_datetime"))
    dose_path, plan_path = save_datasets([(dose_dataset, os.path.join(folder, dose_filename)),
                                          (plan_dataset, os.path.join(folder, plan_filename))])
    return {"rtdose": dose_path, "rtplan": plan_path}
