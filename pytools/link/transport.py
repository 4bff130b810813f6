"""Byte transports for the link: pyserial for real ports, a raw TCP socket for the emulator.

pyserial's socket:// handler reports at most one byte waiting and so gets read one byte
per call; this socket transport returns whatever has arrived in one read, turns off
Nagle's algorithm (small frames would otherwise wait for delayed ACKs, ~40 ms each), and
reports a closed connection only after handing over every byte that came before it.
"""

from __future__ import annotations

import select
import socket
from typing import Any

from pytools.errors import ToolError


class Disconnected(ToolError):
    """The other end went away (the emulator exited, the cable was pulled)."""


class SocketPort:
    def __init__(self, host: str, port: int, timeout: float = 0.02) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self._closed = False

    @classmethod
    def from_url(cls, url: str, timeout: float = 0.02) -> SocketPort:
        host, _, port = url.removeprefix("socket://").partition(":")
        return cls(host, int(port), timeout)

    @property
    def in_waiting(self) -> int:
        return 0  # read() already returns everything that has arrived

    def write(self, data: bytes) -> int:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(data)
        except OSError as e:
            raise Disconnected(f"the connection closed while writing: {e}") from e
        finally:
            self.sock.setblocking(False)
        return len(data)

    def read(self, size: int = 65536) -> bytes:
        """Up to size bytes of what has arrived, waiting at most `timeout` for the first."""
        if self._closed:
            raise Disconnected("the connection is closed (did the emulator exit?)")
        ready, _, _ = select.select([self.sock], [], [], self.timeout)
        if not ready:
            return b""
        try:
            data = self.sock.recv(max(size, 65536))
        except BlockingIOError:
            return b""
        except OSError as e:
            raise Disconnected(f"the connection failed: {e}") from e
        if not data:
            self._closed = True
            raise Disconnected("the board's end closed the connection (did the emulator exit?)")
        return data

    def close(self) -> None:
        self.sock.close()


def open_port(url: str, baudrate: int, timeout: float = 0.02) -> Any:
    """A port for any pyserial URL (/dev/ttyACM0, COM3, socket://HOST:PORT, ...)."""
    if url.startswith("socket://"):
        try:
            return SocketPort.from_url(url, timeout)
        except OSError as e:
            raise ToolError(f"cannot connect to {url}: {e}") from e
    import serial

    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as e:
        raise ToolError(f"cannot open {url}: {e}") from e
