"""`xylen backtest`: the coordinator's own decision and order path replayed on history.

A composition root like ``xylen/cli/``: it may import the coordinator, the paper exchange's
matching engine and the model server's predictors; nothing but the command line imports it.
"""
