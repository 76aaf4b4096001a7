"""The paper exchange: Binance USDⓈ-M REST and user stream over replayed candles (see DOCUMENTATION.md)."""
