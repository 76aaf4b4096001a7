"""Xylen paper_exchange package (built by a later issue)."""
