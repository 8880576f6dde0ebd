"""crystalflow_core: CIF → molecules → 17-molecule clusters → PaiNN flows → packing metrics."""

__version__ = "0.1.0"
