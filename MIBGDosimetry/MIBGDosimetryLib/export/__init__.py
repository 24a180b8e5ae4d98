"""Results that travel: DICOM RT Dose and SEG export, and de-identified export for central review."""
