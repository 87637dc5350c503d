"""A TCP proxy a test controls, to cut one client off a server while others still reach it.

    with TcpProxy(("127.0.0.1", cluster.port)) as link:     # host B's way to PostgreSQL
        dsn = cluster.app_dsn(db, port=link.port)
        ...
        link.blackhole()   # a partition: nothing passes, either way; connections stay open
        link.heal()        # the cable is back: held bytes flow, held connections go through
        link.reset()       # every open connection reset (RST both ways), new ones reset too
        link.heal()

Why a proxy: "PostgreSQL unreachable for one host while the other still reaches it"
needs a network fault on one client's path only. A proxy per host (each host's DSN
names its own proxy's port) gives exactly that without root, iptables or network
namespaces, and both kinds of fault a real network has: a **blackhole** (packets
dropped: the client learns nothing until its own timeouts, keepalives or
``statement_timeout`` fire, the server's backend stays in its transaction, holding its
row locks) and a **reset** (the connection is refused or torn down: errors at once).

`blackhole` and `reset` take effect before they return: no byte crosses the link
after that, in either direction. One thread moves the bytes of every connection
(non-blocking sockets and a selector), so a slow reader on one side never blocks
the other direction or another connection; at most `BUFFER_LIMIT` bytes wait per
direction.
"""

from __future__ import annotations

import enum
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["LinkState", "TcpProxy"]

#: Bytes read from one side and not yet written to the other, per direction, before reading pauses.
BUFFER_LIMIT = 1 << 20
#: Seconds a control call (blackhole, reset, heal, close) waits for the proxy's thread.
CONTROL_TIMEOUT = 10.0
_CHUNK = 64 * 1024


class LinkState(enum.Enum):
    """What the link does with bytes and connections."""

    FORWARDING = "forwarding"
    BLACKHOLE = "blackhole"  # nothing passes; connections stay open, new ones are held
    REFUSING = "refusing"  # after a reset: new connections are reset at once


@dataclass(eq=False)
class _Direction:
    """Bytes read from `source` waiting to be written to `sink`."""

    source: socket.socket
    sink: socket.socket | None
    pending: bytearray = field(default_factory=bytearray)
    ended: bool = False  # the source sent EOF
    shut: bool = False  # EOF passed on to the sink


@dataclass(eq=False)
class _Connection:
    client: socket.socket
    upstream: socket.socket | None = None
    up: _Direction | None = None  # client -> server
    down: _Direction | None = None  # server -> client

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]


class TcpProxy:
    """Forwards connections on ``127.0.0.1:port`` to `target`, until told otherwise.

    Counters: ``accepted`` (connections taken), ``bytes_forwarded`` (both ways).
    """

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self._listener.setblocking(False)
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self.bytes_forwarded = 0
        self._state = LinkState.FORWARDING
        self._connections: list[_Connection] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], threading.Event, list[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"tcp-proxy-{self.port}", daemon=True)
        self._running = False
        self._closed = False

    # ------------------------------------------------------------- control

    def start(self) -> Self:
        """Start forwarding (in a thread of its own). Returns self."""
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        self._thread.start()
        return self

    @property
    def state(self) -> LinkState:
        """What the link does now."""
        return self._state

    @property
    def open_connections(self) -> int:
        """Connections open through the link (held ones included)."""
        return self._control(lambda: len(self._connections))

    def blackhole(self) -> None:
        """From now on nothing passes, either way; open connections stay open and new ones
        are accepted and held, as when the network between client and server drops packets."""
        self._control(lambda: self._set_state(LinkState.BLACKHOLE))

    def reset(self) -> None:
        """Reset every open connection (the client and the server each see a reset), and
        reset new ones at once until `heal`."""
        self._control(self._reset_all)

    def heal(self) -> None:
        """Forward again: held bytes flow, held connections are connected to the target."""
        self._control(lambda: self._set_state(LinkState.FORWARDING))

    def close(self) -> None:
        """Reset every connection, stop listening and stop the thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._running:
            self._control(self._shutdown)
            self._thread.join(CONTROL_TIMEOUT)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TcpProxy({self.host}:{self.port} -> {self.target[0]}:{self.target[1]}, {self._state.value})"

    def _control(self, command: Callable[[], Any]) -> Any:
        if not self._running:
            raise RuntimeError("the proxy is not running (start() it)")
        done = threading.Event()
        result: list[Any] = []
        self._commands.put((command, done, result))
        self._wake_w.send(b"x")
        if not done.wait(CONTROL_TIMEOUT):
            raise TimeoutError(f"{self!r}: its thread did not answer in {CONTROL_TIMEOUT:g}s")
        if result and isinstance(result[0], BaseException):
            raise result[0]
        return result[0] if result else None

    # ------------------------------------------------------ the thread's side

    def _loop(self) -> None:
        while self._running:
            for key, events in self._selector.select():
                if key.data == "wake":
                    self._run_commands()
                elif key.data == "accept":
                    self._accept()
                else:
                    connection, sock = key.data
                    self._pump(connection, sock, events)

    def _run_commands(self) -> None:
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        while True:
            try:
                command, done, result = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result.append(command())
            except BaseException as exc:  # handed to the caller's thread
                result.append(exc)
            done.set()

    def _set_state(self, state: LinkState) -> None:
        self._state = state
        if state is LinkState.FORWARDING:
            for connection in list(self._connections):
                if connection.upstream is None:
                    self._connect_upstream(connection)
        for connection in list(self._connections):
            self._watch(connection)

    def _reset_all(self) -> None:
        self._state = LinkState.REFUSING
        for connection in list(self._connections):
            self._drop(connection)

    def _shutdown(self) -> None:
        self._reset_all()
        self._running = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            if self._state is LinkState.REFUSING:
                _reset(client)
                continue
            client.setblocking(False)
            connection = _Connection(client)
            self._connections.append(connection)
            if self._state is LinkState.FORWARDING:
                self._connect_upstream(connection)
            # BLACKHOLE: held, not connected, until heal (like a SYN retried through an outage)

    def _connect_upstream(self, connection: _Connection) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5.0)
        except OSError:
            self._drop(connection)
            return
        upstream.setblocking(False)
        connection.upstream = upstream
        connection.up = _Direction(connection.client, upstream)
        connection.down = _Direction(upstream, connection.client)
        self._watch(connection)

    def _watch(self, connection: _Connection) -> None:
        """(Re)register the connection's sockets for what they can do in the current state."""
        for sock in connection.sockets():
            mask = 0
            if self._state is LinkState.FORWARDING and connection.up is not None and connection.down is not None:
                outgoing = connection.up if sock is connection.client else connection.down
                incoming = connection.down if sock is connection.client else connection.up
                if not outgoing.ended and len(outgoing.pending) < BUFFER_LIMIT:
                    mask |= selectors.EVENT_READ
                if incoming.pending:
                    mask |= selectors.EVENT_WRITE
            try:
                key = self._selector.get_key(sock)
            except KeyError:
                key = None
            if mask and key is None:
                self._selector.register(sock, mask, (connection, sock))
            elif mask and key is not None and key.events != mask:
                self._selector.modify(sock, mask, (connection, sock))
            elif not mask and key is not None:
                self._selector.unregister(sock)

    def _pump(self, connection: _Connection, sock: socket.socket, events: int) -> None:
        assert connection.up is not None and connection.down is not None
        outgoing = connection.up if sock is connection.client else connection.down
        incoming = connection.down if sock is connection.client else connection.up
        try:
            if events & selectors.EVENT_READ:
                data = sock.recv(_CHUNK)
                if data:
                    outgoing.pending += data
                else:
                    outgoing.ended = True
            if events & selectors.EVENT_WRITE and incoming.pending:
                sent = sock.send(incoming.pending)
                del incoming.pending[:sent]
                self.bytes_forwarded += sent
            for direction in (outgoing, incoming):
                if direction.ended and not direction.pending and not direction.shut and direction.sink is not None:
                    direction.sink.shutdown(socket.SHUT_WR)
                    direction.shut = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(connection)
            return
        if connection.up.shut and connection.down.shut:
            self._close(connection)
            return
        self._watch(connection)

    def _drop(self, connection: _Connection) -> None:
        """Reset both sides of a connection."""
        self._forget(connection)
        for sock in connection.sockets():
            _reset(sock)

    def _close(self, connection: _Connection) -> None:
        """Both sides ended cleanly: close without reset."""
        self._forget(connection)
        for sock in connection.sockets():
            sock.close()

    def _forget(self, connection: _Connection) -> None:
        for sock in connection.sockets():
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
        if connection in self._connections:
            self._connections.remove(connection)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0) rather than an orderly FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
