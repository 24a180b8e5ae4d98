"""The dose calculation inside the Slicer scene: inputs and results as MRML nodes referenced from a
parameter node, so that segments edited in the Segment Editor and transforms corrected in the
Transforms module are what the next calculation uses."""
