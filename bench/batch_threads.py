"""A minimal batch loop: a thread pool sharing one httpx.Client (the baseline for CPU).

    python batch_threads.py INPUT OUTPUT CONCURRENCY BASE_URL

Reads request lines, POSTs each body with ``stream: true`` and usage, parses the
SSE ``data:`` lines with orjson, writes one OpenAI Batch output line per request.
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson


def one(client: httpx.Client, url: str, line: bytes) -> bytes:
    request = orjson.loads(line)
    body = {**request["body"], "stream": True, "stream_options": {"include_usage": True}}
    text, usage, finish = [], None, None
    with client.stream("POST", url, content=orjson.dumps(body),
                       headers={"Content-Type": "application/json"}) as response:
        for raw in response.iter_lines():
            if not raw.startswith("data: ") or raw == "data: [DONE]":
                continue
            chunk = orjson.loads(raw[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk["choices"]:
                text.append(choice["delta"].get("content") or "")
                finish = choice.get("finish_reason") or finish
        status = response.status_code
    completion = {"object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "".join(text)}, "finish_reason": finish}],
        "usage": usage}
    return orjson.dumps({"custom_id": request["custom_id"],
                         "response": {"status_code": status, "body": completion}, "error": None}) + b"\n"


def main() -> None:
    source, target, concurrency, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    url = base + "/chat/completions"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits, timeout=60, headers={"Authorization": "Bearer x"}) as client, \
            ThreadPoolExecutor(concurrency) as pool, open(source, "rb") as lines, open(target, "wb") as out:
        for data in pool.map(lambda line: one(client, url, line), lines):
            out.write(data)
            out.flush()


if __name__ == "__main__":
    main()
