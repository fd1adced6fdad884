//! The only MySQL packet the proxy ever writes itself: an ERR packet. Sent
//! as the first packet of a connection, in place of the server greeting,
//! clients (libmariadb, JDBC, Go's driver) read it as a connection error
//! and show its message, which is how a user learns why the proxy could
//! not give them a database. Sent into an idle session before closing it,
//! it is the answer to the client's next statement (see
//! [`ER_CLIENT_INTERACTION_TIMEOUT`]).

/// "Too many connections": what a server says when it is full, so
/// applications that already handle it keep doing so.
pub const ER_CON_COUNT_ERROR: u16 = 1040;
/// No backend can take the connection. The 2000–2999 range would read
/// best ("can't connect") but is the client library's own: libmariadb
/// rejects a server packet carrying such a code as malformed (tried:
/// `ERROR 2027 Received malformed packet`). 9001 is what ProxySQL sends
/// in the same situation, so operators and tooling already know it.
pub const ER_NO_BACKEND: u16 = 9001;
/// The session was idle too long: MySQL's code for `wait_timeout`
/// (MariaDB closes without a word, and uses 4031 for an unrelated
/// trigger error; what users see is our message). Sent with sequence id 1:
/// the client reads it after writing its next statement (sequence id 0),
/// where libmariadb checks the id, and shows it as that statement's error
/// instead of "server has gone away".
pub const ER_CLIENT_INTERACTION_TIMEOUT: u16 = 4031;

/// The longest message we send; clients print it on one line.
const MAX_MESSAGE: usize = 1000;

/// An ERR packet with sequence id 0 and SQLSTATE `HY000`.
pub fn err_packet(code: u16, message: &str) -> Vec<u8> {
    err_packet_seq(code, 0, message)
}

/// An ERR packet with sequence id `seq` and SQLSTATE `HY000`.
pub fn err_packet_seq(code: u16, seq: u8, message: &str) -> Vec<u8> {
    let mut msg = message.as_bytes();
    if msg.len() > MAX_MESSAGE {
        msg = &msg[..MAX_MESSAGE];
    }
    let payload_len = 1 + 2 + 1 + 5 + msg.len();
    let mut p = Vec::with_capacity(4 + payload_len);
    // 3-byte little-endian payload length, then the sequence id.
    p.extend_from_slice(&(payload_len as u32).to_le_bytes()[..3]);
    p.push(seq);
    p.push(0xFF);
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(b"HY000");
    p.extend_from_slice(msg);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_packet_layout() {
        let p = err_packet(ER_CON_COUNT_ERROR, "Too many connections");
        let len = u32::from_le_bytes([p[0], p[1], p[2], 0]) as usize;
        assert_eq!(len, p.len() - 4);
        assert_eq!(p[3], 0, "sequence id");
        assert_eq!(p[4], 0xFF);
        assert_eq!(u16::from_le_bytes([p[5], p[6]]), 1040);
        assert_eq!(&p[7..13], b"#HY000");
        assert_eq!(&p[13..], b"Too many connections");
    }

    #[test]
    fn long_messages_are_cut() {
        let p = err_packet(ER_NO_BACKEND, &"x".repeat(5000));
        assert_eq!(p.len(), 4 + 9 + MAX_MESSAGE);
    }
}
