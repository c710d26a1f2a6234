"""Export trained models to other runtimes: ``export_onnx(session_or_model, path)`` (docs/inference.md)."""

from .onnx import OnnxExportError, export_onnx

__all__ = ["export_onnx", "OnnxExportError"]
