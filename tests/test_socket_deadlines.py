"""socket_deadlines: a call that overruns its deadline has its socket shut down; one that ends in
time is never touched, even when its deadline passes later (real sockets, no database)."""

from __future__ import annotations

import socket

from syncd.socket_deadlines import SocketDeadlines


class Conn:
    """What the deadlines see of a connection: its descriptor and whether it is closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()


def test_a_call_waiting_past_its_deadline_is_cut_off() -> None:
    deadlines = SocketDeadlines()
    client, server = socket.socketpair()
    with client, server:
        with deadlines.bound(Conn(client), 0.2):
            assert client.recv(1) == b""  # no answer ever comes: the shutdown ends the wait (EOF)
        # The socket stays shut both ways: the driver sees a broken connection and the pool drops it.
        assert client.recv(1) == b""


def test_a_call_that_ended_in_time_is_never_cut_later() -> None:
    deadlines = SocketDeadlines()
    client, server = socket.socketpair()
    with client, server:
        with deadlines.bound(Conn(client), 0.05):
            server.sendall(b"a")
            assert client.recv(1) == b"a"
        # A later, longer call on the same connection outlives the first deadline untouched.
        with deadlines.bound(Conn(client), 30.0):
            with deadlines.bound(Conn(client), 0.3):  # a watchdog round that must pass the first one
                server.sendall(b"b")
                assert client.recv(1) == b"b"
            server.sendall(b"c")
            assert client.recv(1) == b"c"
