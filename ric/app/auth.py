"""Logins for a public app: credentials from `--auth user:pass` (or RIC_AUTH), failed logins
throttled per client address, and gradio's embedded API schema kept from anonymous visitors."""

from __future__ import annotations

import json
import math
import re
import time


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """Parse "user:pass" into ("user", "pass"); the password may contain ':'."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise SystemExit("authentication must look like user:password (--auth or RIC_AUTH)")
    return user, password


class LoginThrottle:
    """Failed logins per client address: the first `free` are free, then each further attempt
    waits `base_s` seconds, doubling per failure up to `max_s`; a success clears the count.
    Behind a reverse proxy every client shares the proxy's address, and so its count."""

    def __init__(self, free: int = 3, base_s: float = 1.0, max_s: float = 300.0, clock=None):
        self.free, self.base_s, self.max_s = free, base_s, max_s
        self.clock = clock or time.monotonic
        self.failures: dict[str, tuple[int, float]] = {}  # address -> (count, last failure)

    def wait_s(self, client: str) -> float:
        """Seconds before `client` may try again (0: now)."""
        count, last = self.failures.get(client, (0, 0.0))
        if count < self.free:
            return 0.0
        delay = min(self.base_s * 2 ** (count - self.free), self.max_s)
        return max(0.0, last + delay - self.clock())

    def record(self, client: str, ok: bool) -> None:
        if ok:
            self.failures.pop(client, None)
            return
        if len(self.failures) > 10_000:  # forget addresses whose wait is long over
            now = self.clock()
            self.failures = {c: f for c, f in self.failures.items() if now - f[1] < 2 * self.max_s}
        count, _ = self.failures.get(client, (0, 0.0))
        self.failures[client] = (count + 1, self.clock())


class LoginGuard:
    """ASGI middleware for an app with a login (gradio's `auth`).

    - POST /login: refused (429) while the client's LoginThrottle wait runs; gradio itself
      takes any number of guesses at full speed.
    - HTML pages: the API schema that gradio embeds (window.gradio_api_info: every endpoint,
      parameter and docstring) is replaced by null, also on the login page, which anyone can
      load. The browser then fetches it from /gradio_api/info, which needs the login.
    """

    def __init__(self, app, throttle: LoginThrottle | None = None):
        self.app, self.throttle = app, throttle or LoginThrottle()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/login"):
            return await self.login(scope, receive, send)
        if scope["method"] == "GET":
            return await self.app(scope, receive, _without_api_info(send))
        return await self.app(scope, receive, send)

    async def login(self, scope, receive, send):
        client = (scope.get("client") or ("unknown",))[0]
        if wait := self.throttle.wait_s(client):
            body = json.dumps(
                {"detail": f"Too many failed logins: try again in {math.ceil(wait)} s."}
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"retry-after", str(math.ceil(wait)).encode()),
            ]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            return await send({"type": "http.response.body", "body": body})

        # Counted as a failure before it is checked, so that guesses sent all at once cannot
        # all pass the wait before the first one is counted; a success clears the count.
        self.throttle.record(client, ok=False)

        async def record(message):
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.throttle.record(client, ok=True)
            await send(message)

        await self.app(scope, receive, record)


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)


def _without_api_info(send):
    """`send` for an HTML page, with the embedded API schema replaced by null. gradio's JSON
    escapes every "<", so the first ";</script>" ends it."""
    start: dict = {}
    chunks: list[bytes] = []

    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if not headers.get(b"content-type", b"").startswith(b"text/html"):
                start["pass"] = True
                return await send(message)
            start.update(message)
            return None
        if start.get("pass") or message["type"] != "http.response.body":
            return await send(message)
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return None
        body = _API_INFO.sub(b"window.gradio_api_info = null;</script>", b"".join(chunks))
        headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def launch_options(auth: tuple[str, str] | None, throttle: LoginThrottle | None = None) -> dict:
    """demo.launch() keyword arguments for `auth` (None: no login): the credentials and a
    LoginGuard around the app."""
    if auth is None:
        return {}
    from starlette.middleware import Middleware

    guard = Middleware(LoginGuard, throttle=throttle or LoginThrottle())
    return {"auth": auth, "app_kwargs": {"middleware": [guard]}}
