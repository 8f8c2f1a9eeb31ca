"""orthograd: make a trained model forget part of its training data."""

__version__ = "0.1.0"
