"""The version of vaejax (`vaejax.__version__`)."""

__version__ = "0.1.0"
