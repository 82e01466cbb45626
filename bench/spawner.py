"""Starts the benchmark's child processes from a small process and reports their rusage.

Why a separate process: on Linux a child's ``ru_maxrss`` starts at the peak RSS
of the process that spawned it (exec records the old address space's
high-water mark), so children spawned by the bench itself, which holds the
server's 40 MB bodies, would all report the bench's peak. Run with ``-I -S``
and only builtin modules, this spawner is about 8 MB, which is then the floor
of every peak RSS figure.

Protocol on stdin/stdout, each message a 4-byte little-endian length and a
``marshal`` payload. Request: ``(argv, env, stdin_path, stdout_path,
stderr_path)``; ``stdout_path`` is a FIFO the bench is reading. Replies:
``(pid, start_ns)`` once spawned (``(-1, error text)`` if it could not be), then
``(wait_status, end_ns, ru_utime, ru_stime, ru_maxrss_kib)``; times from
``time.monotonic_ns``.
"""

import marshal
import os
import time


def _read(size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = os.read(0, size - len(data))
        if not more:
            return b""
        data += more
    return data


def _send(value: tuple) -> None:
    payload = marshal.dumps(value)
    os.write(1, len(payload).to_bytes(4, "little") + payload)


def main() -> None:
    while header := _read(4):
        argv, env, stdin, stdout, stderr = marshal.loads(_read(int.from_bytes(header, "little")))
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, stdout, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        start = time.monotonic_ns()
        try:
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        except OSError as exc:
            _send((-1, f"cannot run {argv[0]}: {exc}"))
            continue
        _send((pid, start))
        _, status, usage = os.wait4(pid, 0)
        _send((status, time.monotonic_ns(), usage.ru_utime, usage.ru_stime, usage.ru_maxrss))


if __name__ == "__main__":
    main()
