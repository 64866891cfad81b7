"""Hugging Face transformers engine (the optional `hf` extra): the only part of lokal that imports torch."""

from lokal.engine.transformers.engine import TransformersEngine

__all__ = ["TransformersEngine"]
