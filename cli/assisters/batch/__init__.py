"""Batches of chat requests: ``assisters batch run`` on this machine, and the
provider's Batch API (``batch submit``, ``status``, ``results``, ...).

Both read the same input (OpenAI Batch request lines, bare chat bodies, or
prompts) and write the same output (OpenAI Batch output lines), so a script
does not care which road a batch took. Built on the core: the SSE decoder and
:class:`~assisters.answer.Answer` for each reply, the retry rules of
:mod:`assisters.retry`, and the statuses of :mod:`assisters.errors`.

``batch run``, on this machine:

* :mod:`~assisters.batch.input`: the input's line forms, the chat options as
  defaults, the whole input checked first (shared by every batch command);
* :mod:`~assisters.batch.lines`: the OpenAI Batch output line;
* :mod:`~assisters.batch.output`: OUTPUT written a whole line at a time, what an
  earlier run left in it, ``--retry-failed``'s atomic rewrite, ``--ordered``;
* :mod:`~assisters.batch.pacing`: when the next request may go (rate limits);
* :mod:`~assisters.batch.engine`: the requests in flight, their timeouts, signals;
* :mod:`~assisters.batch.summary` and :mod:`~assisters.batch.progress`: what a
  person sees;
* :mod:`~assisters.batch.run`: ``batch run`` from start to exit status.

The provider's Batch API (``batch submit``, ``status``, ``results``, ``cancel``,
``list``, ``prepare``):

* :mod:`~assisters.batch.provider`: :class:`~assisters.batch.provider.BatchClient`
  (files and batches, with the retry rules) and where the API lives
  (:class:`~assisters.batch.provider.ProviderAPI`, from the config profile);
* :mod:`~assisters.batch.prepare`: the input as Batch request lines, in files within
  the provider's limits;
* :mod:`~assisters.batch.waiting`: polling until a batch ends, backing off;
* :mod:`~assisters.batch.states`: every state, what it means, what ``status`` exits with;
* :mod:`~assisters.batch.results`: the output and error files as one file;
* :mod:`~assisters.batch.atomic`: files that appear whole or not at all, scrubbed
  (``batch run --retry-failed``'s rewrite too);
* :mod:`~assisters.batch.remote`: each command from settings to exit status.
"""
