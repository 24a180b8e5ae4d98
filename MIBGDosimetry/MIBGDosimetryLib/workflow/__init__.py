"""The dose workflow: study and calibration record in, absorbed doses and their outputs out."""
