"""A local OpenAI-compatible server for demos, tests and benchmarks (``assisters serve``).

Why it exists: the CLI must be exercised over a real socket without a network, an API
key or a bill, and its failure handling (error statuses, ``Retry-After``, cut streams,
stalls, broken JSON, slow first tokens) can only be trusted if those failures can be
produced on demand. It answers what a chat client needs (``GET /v1/models`` and
``POST /v1/chat/completions``, streaming or not) with two scripted models, ``echo``
and ``lorem``, and what a batch client needs (the Files and Batches API, whose
batches run in the background through the same models).

The modules, as a request meets them:

* :mod:`~assisters.server.app`: :class:`~assisters.server.app.ChatServer`, start and stop;
* :mod:`~assisters.server.state`: what the handlers share (options, counters, stop signal, files, batches);
* :mod:`~assisters.server.handler`: HTTP: reading the body, sending JSON and errors;
* :mod:`~assisters.server.routes`: which endpoint answers, and the ``/models`` endpoints;
* :mod:`~assisters.server.chat`: ``/chat/completions``, streamed or whole;
* :mod:`~assisters.server.files`: ``/files``, with :mod:`~assisters.server.multipart` for uploads;
* :mod:`~assisters.server.batches`: ``/batches``, run by :mod:`~assisters.server.batch_runner`;
* :mod:`~assisters.server.chat_request`: the request body, validated as OpenAI does;
* :mod:`~assisters.server.models`: the scripted models' tokens;
* :mod:`~assisters.server.event_stream`: one SSE response, chunk by chunk;
* :mod:`~assisters.server.faults`: the failures it produces on demand;
* :mod:`~assisters.server.replay`: ``--replay``, a recording served again;
* :mod:`~assisters.server.options`: :class:`~assisters.server.options.ServeOptions`, checked;
* :mod:`~assisters.server.api_errors`: OpenAI-style error bodies.

Standard library only (plus orjson, a project dependency) and nothing from click, so
tests and ``assisters serve`` share it.
"""
