"""Which warnings of a dose calculation matter most: those that mean a result is missing, biased or
unchecked come first, marked "high"; the rest (notes on assumptions and method choices) follow."""

#: Phrases of warnings that mean a result is missing, not corrected, not converged or not checked.
HIGH_PHRASES = ("has no result", "is left out", "left out", "not corrected", "did not converge", "is unknown",
                "ill-conditioned", "no CT", "excluded", "covers no voxel", "fully overlapped", "extrapolated part",
                "not used", "could not")


def severity(message):
    """"high" or "normal" for one warning."""
    text = str(message)
    return "high" if any(phrase in text for phrase in HIGH_PHRASES) else "normal"


def prioritised(messages):
    """``[{"severity", "message"}]`` with the high-severity warnings first, order otherwise kept."""
    entries = [{"severity": severity(m), "message": str(m)} for m in messages]
    return [e for e in entries if e["severity"] == "high"] + [e for e in entries if e["severity"] != "high"]
