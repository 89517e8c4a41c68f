"""Real database outages for tests: a TCP proxy in front of PostgreSQL that can be cut,
and a writer that holds SQLite's write lock."""
from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
from collections.abc import Iterator

import sqlalchemy as sa


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server. cut() drops every connection and refuses new ones
    (as a database host that went away); restore() lets them through again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for end in self.sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


class Outage:
    """The database of `url` made unavailable on demand: PostgreSQL through a proxy that is cut,
    SQLite by another connection that holds the write lock. `url` is what the app should use."""

    def __init__(self, database_url: str) -> None:
        self.real = sa.make_url(database_url)
        self.proxy: TcpProxy | None = None
        self.holder: sqlite3.Connection | None = None
        if self.real.get_backend_name() == "postgresql":
            self.proxy = TcpProxy((self.real.host or "127.0.0.1", self.real.port or 5432))
            self.url = self.real.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
        else:
            self.url = database_url

    @property
    def sqlite(self) -> bool:
        return self.proxy is None

    def begin(self) -> None:
        if self.proxy:
            self.proxy.cut()
        else:
            self.holder = sqlite3.connect(self.real.database, isolation_level=None, timeout=30)
            self.holder.execute("BEGIN IMMEDIATE")

    def end(self) -> None:
        if self.proxy:
            self.proxy.restore()
        elif self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()

    def close(self) -> None:
        self.end()
        if self.proxy:
            self.proxy.close()
