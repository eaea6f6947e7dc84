"""Simulator, oracle and the OpenAI-compatible test model server (test and demo tool)."""
