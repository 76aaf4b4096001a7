"""The coordinator: heartbeat, ensemble, risk manager and order layer (see DOCUMENTATION.md, Architecture)."""
