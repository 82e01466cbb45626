"""Conversations: the interactive ``chat`` at a terminal, ``-c`` from scripts,
and the store that keeps every turn the moment it exists.

Each turn is an ordinary chat request through the core (streaming, retries,
timeouts, resume, the sinks), so a conversation behaves as ``chat`` does.
"""
