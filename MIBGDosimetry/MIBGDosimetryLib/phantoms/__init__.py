"""Digital phantoms with known truth, written as DICOM: a sequential 131I-mIBG SPECT/CT study of a
child with neuroblastoma (:mod:`.patient`) and the camera calibration acquisitions
(:mod:`.calibration`). Every accuracy claim of the extension is tested on them. The same studies can
be generated with a projection camera and OSEM reconstruction instead of the image-domain model
(:mod:`.realistic`), to test the analysis against physics it does not assume.
"""
