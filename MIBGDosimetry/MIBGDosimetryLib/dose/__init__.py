"""Absorbed dose from time-integrated activity: kernel convolution, VOI statistics and DVH,
radiobiology (BED, EUD) and uncertainty propagation."""
