"""Checks to run before trading for real: ``xylen preflight``.

Each check is a :class:`~xylen.preflight.report.Check` (PASS, WARN or FAIL with a one-line detail).
The checks here read only local things (config, secrets file, home folder, journal) or take what
was read from the venue as plain data (:class:`~xylen.preflight.venue.VenueState`), so this package
needs no service code; the command line (``xylen/cli/preflight.py``) reads the venue through the
coordinator's exchange client and composes the report.
"""

from xylen.preflight.report import Check, Report, Status

__all__ = ["Check", "Report", "Status"]
