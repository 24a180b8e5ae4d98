"""Digital phantoms with known truth, written as DICOM: a sequential 131I-mIBG SPECT/CT study of a
child with neuroblastoma (:mod:`.patient`) and the camera calibration acquisitions
(:mod:`.calibration`). Every accuracy claim of the extension is tested on them.
"""
