"""A minimal MySQL/MariaDB client (stdlib only) for the proxy benchmark:
handshake with mysql_native_password (including an auth switch), COM_QUERY
with OK / ERR / a small text result set, COM_QUIT. Enough to hold many idle
authenticated connections and to run a write loop with exact timestamps;
not a general driver."""

import hashlib
import socket
import struct

CLIENT_LONG_PASSWORD = 0x1
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PLUGIN_AUTH = 0x80000


class MySQLError(Exception):
    """An ERR packet from the server (or from a proxy speaking for it)."""

    def __init__(self, code, message):
        super().__init__(f"ERROR {code}: {message}")
        self.code = code


def native_password(password, salt):
    if not password:
        return b""
    p1 = hashlib.sha1(password.encode()).digest()
    p2 = hashlib.sha1(p1).digest()
    p3 = hashlib.sha1(salt + p2).digest()
    return bytes(a ^ b for a, b in zip(p1, p3))


def _lenenc_int(buf, pos):
    b = buf[pos]
    if b < 0xFB:
        return b, pos + 1
    if b == 0xFC:
        return struct.unpack_from("<H", buf, pos + 1)[0], pos + 3
    if b == 0xFD:
        return int.from_bytes(buf[pos + 1 : pos + 4], "little"), pos + 4
    if b == 0xFE:
        return struct.unpack_from("<Q", buf, pos + 1)[0], pos + 9
    return None, pos + 1  # 0xFB: NULL


def _err(payload):
    code = struct.unpack_from("<H", payload, 1)[0]
    msg = payload[3:]
    if msg[:1] == b"#":
        msg = msg[6:]
    return MySQLError(code, msg.decode(errors="replace"))


class Conn:
    def __init__(self, host, port, user, password, db=None, timeout=2.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 0
        try:
            self._handshake(user, password, db)
        except BaseException:
            self.sock.close()
            raise

    # -- packets
    def _recv_exact(self, n):
        chunks = []
        while n:
            c = self.sock.recv(n)
            if not c:
                raise ConnectionError("connection closed by the peer")
            chunks.append(c)
            n -= len(c)
        return b"".join(chunks)

    def _read(self):
        head = self._recv_exact(4)
        length = head[0] | head[1] << 8 | head[2] << 16
        self.seq = (head[3] + 1) & 0xFF
        return self._recv_exact(length)

    def _write(self, payload):
        self.sock.sendall(struct.pack("<I", len(payload))[:3] + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) & 0xFF

    # -- handshake
    def _handshake(self, user, password, db):
        g = self._read()
        if g[:1] == b"\xff":
            raise _err(g)
        if g[0] != 10:
            raise ConnectionError(f"unexpected greeting (protocol {g[0]})")
        pos = g.index(b"\0", 1) + 1  # server version
        pos += 4  # connection id
        salt = g[pos : pos + 8]
        pos += 9
        caps = struct.unpack_from("<H", g, pos)[0]
        pos += 2 + 1 + 2  # caps low, charset, status
        caps |= struct.unpack_from("<H", g, pos)[0] << 16
        pos += 2
        salt_len = g[pos]
        pos += 1 + 10
        if caps & CLIENT_SECURE_CONNECTION:
            n = max(13, salt_len - 8)
            salt += g[pos : pos + n - 1]  # drop the trailing NUL
            pos += n
        plugin = b"mysql_native_password"
        if caps & CLIENT_PLUGIN_AUTH:
            end = g.find(b"\0", pos)
            plugin = g[pos : end if end >= 0 else len(g)]
        flags = (
            CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH
        )
        if db:
            flags |= CLIENT_CONNECT_WITH_DB
        auth = native_password(password, salt) if plugin == b"mysql_native_password" else b""
        resp = struct.pack("<IIB", flags, 1 << 24, 33) + b"\0" * 23
        resp += user.encode() + b"\0" + bytes([len(auth)]) + auth
        if db:
            resp += db.encode() + b"\0"
        resp += b"mysql_native_password\0"
        self._write(resp)
        while True:
            r = self._read()
            if r[:1] == b"\x00":
                return
            if r[:1] == b"\xff":
                raise _err(r)
            if r[:1] == b"\xfe":  # auth switch request
                end = r.index(b"\0", 1)
                name, data = r[1:end], r[end + 1 :]
                if name != b"mysql_native_password":
                    raise ConnectionError(f"unsupported auth plugin {name!r}")
                self._write(native_password(password, data.rstrip(b"\0")[:20]))
                continue
            raise ConnectionError(f"unexpected packet during authentication: {r[:1]!r}")

    # -- commands
    def query(self, sql):
        """Runs one statement; returns the rows (lists of str/None) of a
        result set, or the affected-row count of an OK."""
        self.seq = 0
        self._write(b"\x03" + sql.encode())
        r = self._read()
        if r[:1] == b"\x00":
            return _lenenc_int(r, 1)[0]
        if r[:1] == b"\xff":
            raise _err(r)
        ncols, _ = _lenenc_int(r, 0)
        for _ in range(ncols):
            self._read()
        r = self._read()  # EOF after the column definitions
        rows = []
        while True:
            r = self._read()
            if r[:1] == b"\xff":
                raise _err(r)
            if r[:1] == b"\xfe" and len(r) < 9:
                return rows
            row, pos = [], 0
            for _ in range(ncols):
                n, pos = _lenenc_int(r, pos)
                if n is None:
                    row.append(None)
                else:
                    row.append(r[pos : pos + n].decode(errors="replace"))
                    pos += n
            rows.append(row)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        try:
            self.seq = 0
            self._write(b"\x01")
        except OSError:
            pass
        self.sock.close()
