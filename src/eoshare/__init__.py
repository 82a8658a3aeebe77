"""eoshare: an open, federated platform for sharing satellite Earth-observation data."""

__version__ = "0.1.0"
STAC_VERSION = "1.1.0"
