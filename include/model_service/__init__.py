"""Reference implementation of the painting defect-detection model service (local stand-in)."""
