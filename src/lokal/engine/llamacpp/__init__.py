"""llama.cpp engine, through llama-cpp-python's low-level ctypes API."""

from lokal.engine.llamacpp.engine import LlamaCppEngine

__all__ = ["LlamaCppEngine"]
