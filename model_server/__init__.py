"""Xylen model_server package (built by a later issue)."""
