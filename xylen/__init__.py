"""Xylen: the shared core (wire contract, config, candle store, feature engine, command line)."""

__version__ = "0.1.0"
