"""assisters: stream chat completions from an OpenAI-compatible API to the terminal."""

__version__ = "0.1.0"
