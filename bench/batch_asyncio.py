"""A minimal batch loop: asyncio, one httpx.AsyncClient, a semaphore (the other CPU baseline).

    python batch_asyncio.py INPUT OUTPUT CONCURRENCY BASE_URL

The same work as batch_threads.py: stream, parse with orjson, one output line each.
"""

import asyncio
import sys

import httpx
import orjson


async def one(client: httpx.AsyncClient, url: str, line: bytes, gate: asyncio.Semaphore, out) -> None:
    async with gate:
        request = orjson.loads(line)
        body = {**request["body"], "stream": True, "stream_options": {"include_usage": True}}
        text, usage, finish = [], None, None
        async with client.stream("POST", url, content=orjson.dumps(body),
                                 headers={"Content-Type": "application/json"}) as response:
            async for raw in response.aiter_lines():
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
    out.write(orjson.dumps({"custom_id": request["custom_id"],
                            "response": {"status_code": status, "body": completion}, "error": None}) + b"\n")
    out.flush()


async def main() -> None:
    source, target, concurrency, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    url = base + "/chat/completions"
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers={"Authorization": "Bearer x"}) as client:
        with open(source, "rb") as lines, open(target, "wb") as out:
            pending: set[asyncio.Task] = set()
            for line in lines:  # streamed: at most 2 x CONCURRENCY tasks exist at once
                if len(pending) >= 2 * concurrency:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending.add(asyncio.create_task(one(client, url, line, gate, out)))
            if pending:
                await asyncio.wait(pending)


if __name__ == "__main__":
    asyncio.run(main())
