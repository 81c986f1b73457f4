#!/usr/bin/env python3
"""A mock OpenAI-compatible upstream for the Envoy tests and `make run`.

Stdlib only. Every response tells what reached the upstream in `mock_echo`
(a top-level JSON field, or the `x-mock-echo` header for SSE), so tests can see
which headers the filter forwarded, stripped or added, and which model it sent.

Request headers that steer the mock:
  x-mock-status: N               answer status N with an OpenAI-style error body (an
                                 Anthropic-style one on /v1/messages): e.g. 429, 503 or
                                 529, the provider's own "busy" answers
  x-mock-retry-after: S          send `retry-after: S` with that error
  x-mock-empty: 1                send that error with an empty body (content-length: 0)
  x-mock-completion-tokens: N    completion_tokens reported in `usage` (default 7)
  x-mock-chunk-delay-ms: N       pause between SSE events (default 20)
  x-mock-delay-ms: N             wait N ms before answering (a slow model)
  x-mock-id: ID                  remember the request: GET /__mock/seen/ID answers
                                 {"seen": n, "models": [...]} (what reached the upstream)
  x-mock-count-body: 1           read the body piece by piece without keeping it and
                                 answer {"object": "mock.count", "mock_echo": {...,
                                 "body_len": n, "body_crc32": c}} (for bodies of any size)
"""

import argparse
import json
import signal
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_COMPLETION_TOKENS = 7
DEFAULT_CHUNK_DELAY_MS = 20
# The streamed reply, one SSE event per piece.
REPLY_PIECES = ["This ", "is ", "a ", "mock ", "reply."]
CREATED = 1700000000  # fixed so responses are deterministic


def count_prompt_words(body):
    """Whitespace-separated words in all message contents (string or text parts)."""
    words = 0
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return words


# Routes answered as OpenAI chat completions (with `usage`): the API's own and
# the demo matrix's premium chat (envoy/demo-config.json), metered in money.
CHAT_ROUTES = {"/v1/chat/completions", "/v1/premium/chat/completions"}

# Routes answered as Anthropic Messages (with `usage`).
MESSAGES_ROUTES = {"/v1/messages"}

# Bytes read at a time when counting a body.
COUNT_PIECE = 256 * 1024

# x-mock-id -> the models of the requests that reached the mock (handler threads share it).
SEEN = {}
SEEN_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so Envoy can reuse upstream connections; every response below
    # therefore carries Content-Length or uses chunked encoding.
    protocol_version = "HTTP/1.1"
    server_version = "mock-upstream/1"
    verbose = False

    def log_message(self, format, *args):
        if self.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def handle_any(self):
        if self.headers.get("x-mock-count-body"):
            self.count_body()
            return
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # deeply nested input raises the latter
            body = None
        echo = {
            "method": self.command,
            "path": self.path,
            "headers": self.echo_headers(),
            "body_len": len(raw),
            "model": body.get("model") if isinstance(body, dict) else None,
        }

        if self.path.startswith("/__mock/seen/"):
            with SEEN_LOCK:
                models = list(SEEN.get(self.path[len("/__mock/seen/"):], []))
            self.send_json(200, {"seen": len(models), "models": models})
            return
        mock_id = self.headers.get("x-mock-id")
        if mock_id:
            with SEEN_LOCK:
                SEEN.setdefault(mock_id, []).append(echo["model"])
        delay_ms = int(self.headers.get("x-mock-delay-ms") or 0)
        if delay_ms:
            time.sleep(delay_ms / 1000)

        route = self.path.split("?", 1)[0]
        status = self.headers.get("x-mock-status")
        if status:
            retry_after = self.headers.get("x-mock-retry-after")
            extra = {"retry-after": retry_after} if retry_after else {}
            if route in MESSAGES_ROUTES:
                error = {"type": "error", "error": {"type": "overloaded_error",
                                                    "message": f"mock upstream error {status}"}}
            else:
                error = {"error": {"message": f"mock upstream error {status}", "type": "server_error",
                                   "param": None, "code": "mock_error"}}
            if self.headers.get("x-mock-empty"):
                self.send_response(int(status))
                self.send_header("content-length", "0")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            self.send_json(int(status), dict(error, mock_echo=echo), extra)
            return

        if self.command == "POST" and route in CHAT_ROUTES and isinstance(body, dict):
            self.chat_completion(body, echo)
            return
        if self.command == "POST" and route in MESSAGES_ROUTES and isinstance(body, dict):
            self.message(body, echo)
            return

        if body is None:
            received = raw.decode("utf-8", "replace")
        else:
            received = body
        self.send_json(200, {"object": "mock.echo", "received": received, "mock_echo": echo})

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # Skip trailers up to the blank line that ends the body.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def count_body(self):
        """Reads the body without keeping it: its length and CRC-32, for
        bodies too large to echo (a test checks every byte arrived)."""
        length, crc = 0, 0
        for piece in self.body_pieces():
            length += len(piece)
            crc = zlib.crc32(piece, crc)
        echo = {"method": self.command, "path": self.path, "headers": self.echo_headers(),
                "body_len": length, "body_crc32": crc}
        self.send_json(200, {"object": "mock.count", "mock_echo": echo})

    def body_pieces(self):
        """The request body in pieces of at most COUNT_PIECE bytes."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while size > 0:
                    piece = self.rfile.read(min(size, COUNT_PIECE))
                    if not piece:
                        return
                    size -= len(piece)
                    yield piece
                self.rfile.readline()
        left = int(self.headers.get("content-length") or 0)
        while left > 0:
            piece = self.rfile.read(min(left, COUNT_PIECE))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def echo_headers(self):
        """Request headers, names lowercased; repeated headers joined with ','."""
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        return headers

    def usage(self, body):
        prompt = count_prompt_words(body)
        completion = int(self.headers.get("x-mock-completion-tokens") or DEFAULT_COMPLETION_TOKENS)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def chat_completion(self, body, echo):
        model = body.get("model")
        usage = self.usage(body)
        if body.get("stream") is True:
            include_usage = isinstance(body.get("stream_options"), dict) and \
                body["stream_options"].get("include_usage") is True
            self.stream_chat(model, usage if include_usage else None, echo)
            return
        self.send_json(200, {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "".join(REPLY_PIECES)},
                "finish_reason": "stop",
            }],
            "usage": usage,
            "mock_echo": echo,
        })

    def message(self, body, echo):
        """An Anthropic Messages API answer (not streamed)."""
        usage = self.usage(body)
        self.send_json(200, {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": "".join(REPLY_PIECES)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]},
            "mock_echo": echo,
        })

    def stream_chat(self, model, usage, echo):
        def chunk(delta, finish_reason=None):
            return {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in REPLY_PIECES]
        events.append(chunk({}, "stop"))
        if usage is not None:
            # OpenAI's include_usage chunk: empty choices, usage set.
            events.append(dict(chunk({}), choices=[], usage=usage))
        payloads = [json.dumps(e, separators=(",", ":")) for e in events] + ["[DONE]"]

        delay = int(self.headers.get("x-mock-chunk-delay-ms") or DEFAULT_CHUNK_DELAY_MS) / 1000
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-mock-echo", json.dumps(echo, separators=(",", ":")))
        self.end_headers()
        if self.command == "HEAD":
            return
        for i, payload in enumerate(payloads):
            if i:
                time.sleep(delay)
            self.write_chunk(f"data: {payload}\n\n".encode())
        self.write_chunk(b"")  # terminating zero-length chunk

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()

    Handler.verbose = args.verbose
    # The default listen backlog (5) refuses connections under the load tests'
    # 64 parallel clients; Envoy would turn that into 503s.
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    # SIGTERM (what the harness sends) exits as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
