"""Engines behind one protocol (`base.Engine`): llama.cpp and Hugging Face transformers, the manager that loads
and keeps them, and what both share (sampling options, chat messages, tools, thinking, streaming)."""
