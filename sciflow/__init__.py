"""sciflow: neural PDE surrogates trained with Lightning and rolled out with uncertainty."""

__version__ = "0.1.0"
