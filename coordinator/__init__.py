"""Xylen coordinator package (built by a later issue)."""
