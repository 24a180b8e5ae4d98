"""Whole-body and red-marrow absorbed dose of 131I-mIBG from serial whole-body retention and blood samples."""
