"""``Side``: the side of an order, and the direction of the position an entry opens.

One enum for the whole coordinator: the order layer sends ``BUY``/``SELL`` as Binance names them, and
the risk manager reads the same value as a direction (a BUY entry opens a long, a SELL a short).
"""

from __future__ import annotations

from enum import Enum
from typing import Literal


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a BUY (long), -1 for a SELL (short): the sign of the position it adds."""
        return 1 if self is Side.BUY else -1

    @property
    def direction(self) -> Literal["LONG", "SHORT"]:
        """The position an entry on this side opens, as the journal and the dashboard name it."""
        return "LONG" if self is Side.BUY else "SHORT"

    @property
    def opposite(self) -> Side:
        """The side that reduces a position opened on this side."""
        return Side.SELL if self is Side.BUY else Side.BUY
