"""Batches of chat requests: ``assisters batch run`` on this machine, and the
provider's Batch API (``batch submit``, ``status``, ``results``, ...).

Both read the same input (OpenAI Batch request lines, bare chat bodies, or
prompts) and write the same output (OpenAI Batch output lines), so a script
does not care which road a batch took. Built on the core: the SSE decoder and
:class:`~assisters.answer.Answer` for each reply, the retry rules of
:mod:`assisters.retry`, and the statuses of :mod:`assisters.errors`.
"""
