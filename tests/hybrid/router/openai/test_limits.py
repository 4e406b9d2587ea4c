"""What one client may cost the front: bodies and heads bounded in size and in the time to send them."""

from __future__ import annotations

import asyncio
import http.client
import json

from tests.hybrid.router.openai.conftest import call, chat_body, chunks

MIB = 1 << 20


async def _connect(front) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = front.address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


def _head(length: int, path: str = "/v1/chat/completions") -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n".encode()


async def test_a_body_over_one_mib_is_413(front, dataplane):
    prompt = "x" * MIB
    answer = await call(front, "/v1/completions", {"prompt": prompt})
    assert answer.status == 413 and answer.error["code"] == "request_too_large"
    assert str(MIB) in answer.error["message"] and answer.headers["connection"] == "close"
    assert not dataplane.calls


async def test_a_chunked_body_over_one_mib_is_413(front, dataplane):
    def send_chunked() -> int:
        host, port = front.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            pieces = (b"x" * 65536 for _ in range(20))
            connection.request("POST", "/v1/completions", body=pieces, encode_chunked=True)
            return connection.getresponse().status
        finally:
            connection.close()

    assert await asyncio.to_thread(send_chunked) == 413
    assert not dataplane.calls


async def test_a_client_announcing_a_huge_body_is_refused_without_it(front, dataplane, limits):
    reader, writer = await _connect(front)
    writer.write(_head(100 * MIB) + b"{")
    reply = await asyncio.wait_for(reader.read(), limits.body_timeout_s + 2)
    assert reply.startswith(b"HTTP/1.1 413") and str(MIB).encode() in reply
    writer.close()
    assert not dataplane.calls


async def test_a_body_just_under_the_limit_is_read(front, dataplane):
    body = json.dumps(chat_body(user="u")).encode()
    padded = body[:-1] + b" " * (MIB - len(body)) + b"}"
    answer = await call(front, "/v1/chat/completions", padded)
    assert answer.status == 200 and len(dataplane.calls) == 1


async def test_a_body_shorter_than_its_content_length_is_408_and_closed(front, dataplane, limits):
    reader, writer = await _connect(front)
    writer.write(_head(100) + b'{"prompt": "')
    started = asyncio.get_running_loop().time()
    reply = await asyncio.wait_for(reader.read(), limits.body_timeout_s + 2)  # read() returns at EOF: it closed
    assert reply.startswith(b"HTTP/1.1 408") and b"Content-Length" in reply
    assert asyncio.get_running_loop().time() - started < limits.body_timeout_s + 1
    writer.close()
    assert not dataplane.calls


async def test_a_client_that_never_finishes_its_head_is_disconnected(front, limits):
    reader, writer = await _connect(front)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
    assert await asyncio.wait_for(reader.read(), limits.head_timeout_s + 2) == b""
    writer.close()


async def test_an_idle_connection_after_an_answer_is_disconnected(front, limits):
    reader, writer = await _connect(front)
    body = json.dumps(chat_body()).encode()
    writer.write(_head(len(body)) + body)
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    # Half a head of a second request, then nothing.
    writer.write(b"GET /v1/models HTTP/1.1\r\n")
    assert await asyncio.wait_for(reader.read(), limits.head_timeout_s + 2) == b""
    writer.close()


async def test_a_head_growing_past_its_limit_is_refused_at_once(front, limits):
    reader, writer = await _connect(front)
    writer.write(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (limits.max_head_bytes + 1024))
    try:
        reply = await asyncio.wait_for(reader.readline(), limits.head_timeout_s / 2)
    except ConnectionResetError:
        reply = b"(reset)"  # refused and closed before all of it was read
    writer.close()
    assert reply in (b"HTTP/1.1 400 Bad Request\r\n", b"(reset)")


async def test_a_kept_alive_connection_serves_request_after_request(front, dataplane):
    reader, writer = await _connect(front)
    body = json.dumps(chat_body()).encode()
    for _ in range(2):
        writer.write(_head(len(body)) + body)
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        assert b"Hello, world" in await reader.readexactly(length)
    writer.close()
    assert len(dataplane.calls) == 2


async def test_the_head_timer_leaves_a_slow_answer_and_a_body_sent_in_pieces_alone(front, dataplane, limits):
    dataplane.script = [*chunks("a", "b")[:1], limits.head_timeout_s * 2, *chunks("a", "b")[1:]]
    reader, writer = await _connect(front)
    body = json.dumps(chat_body(stream=True)).encode()
    writer.write(_head(len(body)) + body[:10])
    await asyncio.sleep(limits.body_timeout_s / 3)
    writer.write(body[10:])
    reply = await asyncio.wait_for(reader.readuntil(b"data: [DONE]"), limits.head_timeout_s * 2 + 2)
    assert reply.startswith(b"HTTP/1.1 200") and b'"content":"b"' in reply
    writer.close()
