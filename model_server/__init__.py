"""The model server: FastAPI over LightGBM, ONNX Runtime and River models (see DOCUMENTATION.md)."""
