//! Where a client's MySQL handshake ends, read from the bytes the proxy
//! relays. The proxy does not take part in the handshake (authentication
//! and TLS stay end to end), yet it must know when a client has finished
//! it: a client that connects and never does holds a backend connection,
//! and so a slot of the node's `max_connections`, for as long as it is
//! let (`--pre-auth-timeout-ms`). It also tells whether the proxy can
//! write an error packet of its own into the session later (plain text,
//! no compression).
//!
//! Plain text: done at the server's OK packet after the client's
//! handshake response (auth switches and extra auth rounds in between
//! are followed). TLS (the client's first packet is an SSLRequest): the
//! MySQL packets are encrypted, so the proxy follows TLS records instead
//! and counts the handshake done at the client's first complete
//! application-data record that comes after an application-data record
//! from the server which itself came after one from the client. In TLS
//! 1.2 that is the client's first command after the server's OK; in TLS
//! 1.3 it can be the client's handshake response (the server's session
//! tickets are application data too), one step early: by then the
//! client has completed TLS and sent the server a full encrypted record,
//! which the server answers or closes on.

/// Capability flags of the client's first packet.
const CLIENT_COMPRESS: u32 = 0x20;
const CLIENT_SSL: u32 = 0x800;
/// TLS record type of application data (and, in TLS 1.3, of everything
/// encrypted).
const TLS_APPLICATION_DATA: u8 = 23;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// 3-byte length, sequence id, payload.
    Mysql,
    /// Type, 2-byte version, 2-byte big-endian length, body.
    Tls,
}

impl Framing {
    fn header_len(self) -> usize {
        match self {
            Framing::Mysql => 4,
            Framing::Tls => 5,
        }
    }
}

/// A complete packet or record: its sequence id or record type, and its
/// first payload bytes.
#[derive(Debug, Clone, Copy)]
struct Unit {
    tag: u8,
    first: [u8; 4],
    first_len: usize,
}

/// Cuts one direction's bytes into packets or records, whatever the reads
/// split them into.
#[derive(Debug)]
struct Framer {
    framing: Framing,
    head: [u8; 5],
    head_len: usize,
    in_body: bool,
    body_left: usize,
    first: [u8; 4],
    first_len: usize,
}

impl Framer {
    fn new() -> Self {
        Self { framing: Framing::Mysql, head: [0; 5], head_len: 0, in_body: false, body_left: 0, first: [0; 4], first_len: 0 }
    }

    /// Between two units: the framing can change here.
    fn at_boundary(&self) -> bool {
        !self.in_body && self.head_len == 0
    }

    /// Consumes `data` up to the end of the next complete unit.
    fn next(&mut self, data: &mut &[u8]) -> Option<Unit> {
        if !self.in_body {
            let need = self.framing.header_len();
            let take = (need - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
            self.head_len += take;
            *data = &data[take..];
            if self.head_len < need {
                return None;
            }
            let h = &self.head;
            self.body_left = match self.framing {
                Framing::Mysql => usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16,
                Framing::Tls => usize::from(h[3]) << 8 | usize::from(h[4]),
            };
            self.in_body = true;
            self.first_len = 0;
        }
        let take = self.body_left.min(data.len());
        let keep = take.min(self.first.len() - self.first_len);
        self.first[self.first_len..self.first_len + keep].copy_from_slice(&data[..keep]);
        self.first_len += keep;
        self.body_left -= take;
        *data = &data[take..];
        if self.body_left > 0 {
            return None;
        }
        let tag = match self.framing {
            Framing::Mysql => self.head[3],
            Framing::Tls => self.head[0],
        };
        self.in_body = false;
        self.head_len = 0;
        Some(Unit { tag, first: self.first, first_len: self.first_len })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's first packet.
    ClientFirst,
    /// Plain text: waiting for the server's OK.
    Plain,
    /// TLS: `client_data` once the client sent an application-data
    /// record, `server_after` once the server sent one after that.
    Tls {
        client_data: bool,
        server_after: bool,
    },
    Done,
}

/// The handshake of one client connection, fed with what each side sends.
#[derive(Debug)]
pub struct Handshake {
    client: Framer,
    server: Framer,
    phase: Phase,
    tls: bool,
    compress: bool,
}

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

impl Handshake {
    pub fn new() -> Self {
        Self { client: Framer::new(), server: Framer::new(), phase: Phase::ClientFirst, tls: false, compress: false }
    }

    /// `Some(error_packets)` once the handshake is over; `error_packets`
    /// tells whether the session is plain MySQL packets (no TLS, no
    /// compression), so that the proxy may write an ERR packet into it.
    pub fn done(&self) -> Option<bool> {
        (self.phase == Phase::Done).then_some(!self.tls && !self.compress)
    }

    /// Bytes the client sent.
    pub fn client(&mut self, mut data: &[u8]) {
        while self.phase != Phase::Done && !data.is_empty() {
            let Some(unit) = self.client.next(&mut data) else { return };
            match self.phase {
                Phase::ClientFirst => {
                    // Handshake response or SSLRequest: both open with the
                    // client's capability flags.
                    let caps = if unit.first_len == 4 { u32::from_le_bytes(unit.first) } else { 0 };
                    self.compress = caps & CLIENT_COMPRESS != 0;
                    if caps & CLIENT_SSL != 0 {
                        self.tls = true;
                        self.phase = Phase::Tls { client_data: false, server_after: false };
                        self.client.framing = Framing::Tls;
                        if !self.server.at_boundary() {
                            // The server spoke out of turn: nothing left to follow.
                            self.phase = Phase::Done;
                        }
                        self.server.framing = Framing::Tls;
                    } else {
                        self.phase = Phase::Plain;
                    }
                }
                Phase::Tls { client_data, server_after } if unit.tag == TLS_APPLICATION_DATA => {
                    self.phase =
                        if client_data && server_after { Phase::Done } else { Phase::Tls { client_data: true, server_after: false } };
                }
                _ => {}
            }
        }
    }

    /// Bytes the server sent (its greeting first).
    pub fn server(&mut self, mut data: &[u8]) {
        while self.phase != Phase::Done && !data.is_empty() {
            let Some(unit) = self.server.next(&mut data) else { return };
            match self.phase {
                Phase::Plain if unit.first_len > 0 && unit.first[0] == 0x00 => self.phase = Phase::Done,
                Phase::Tls { client_data: true, .. } if unit.tag == TLS_APPLICATION_DATA => {
                    self.phase = Phase::Tls { client_data: true, server_after: true };
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3, (len >> 8) as u8, len as u8];
        r.extend(std::iter::repeat_n(0xAB, len));
        r
    }

    fn greeting() -> Vec<u8> {
        let mut g = vec![10];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&[0; 60]);
        packet(0, &g)
    }

    fn response(caps: u32, len: usize) -> Vec<u8> {
        let mut r = caps.to_le_bytes().to_vec();
        r.resize(len, 0x11);
        r
    }

    /// Feeds `bytes` a few at a time, as reads may split them.
    fn dribble(h: &mut Handshake, from_client: bool, bytes: &[u8]) {
        for chunk in bytes.chunks(3) {
            if from_client { h.client(chunk) } else { h.server(chunk) }
        }
    }

    #[test]
    fn plain_text_ends_at_the_servers_ok() {
        let mut h = Handshake::new();
        h.server(&greeting());
        assert_eq!(h.done(), None, "a silent client has not finished");
        dribble(&mut h, true, &packet(1, &response(0x000a_a205, 80)));
        assert_eq!(h.done(), None);
        // Auth switch, the client's answer, then OK.
        dribble(&mut h, false, &packet(2, b"\xfemysql_native_password\0scramble"));
        dribble(&mut h, true, &packet(3, &[7; 20]));
        assert_eq!(h.done(), None);
        dribble(&mut h, false, &packet(4, &[0, 0, 0, 2, 0, 0, 0]));
        assert_eq!(h.done(), Some(true));
    }

    #[test]
    fn a_refused_login_is_not_done() {
        let mut h = Handshake::new();
        h.server(&greeting());
        h.client(&packet(1, &response(0x000a_a205, 80)));
        h.server(&packet(2, b"\xff\x15\x04#28000Access denied"));
        assert_eq!(h.done(), None);
    }

    #[test]
    fn the_whole_handshake_in_one_read_each() {
        let mut h = Handshake::new();
        let mut server = greeting();
        h.client(&[]);
        server.extend(packet(2, &[0, 0, 0]));
        let mut client = packet(1, &response(0x0000_a205, 40));
        client.extend(packet(0, b"\x03SELECT 1"));
        h.client(&client);
        h.server(&server);
        assert_eq!(h.done(), Some(true));
    }

    #[test]
    fn compression_forbids_error_packets() {
        let mut h = Handshake::new();
        h.server(&greeting());
        h.client(&packet(1, &response(0x0000_a205 | CLIENT_COMPRESS, 80)));
        h.server(&packet(2, &[0, 0, 0]));
        assert_eq!(h.done(), Some(false));
    }

    #[test]
    fn tls_1_2_ends_at_the_first_command() {
        let mut h = Handshake::new();
        h.server(&greeting());
        // SSLRequest and ClientHello in one write.
        let mut c = packet(1, &response(0x0000_a205 | CLIENT_SSL, 32));
        c.extend(record(22, 300));
        dribble(&mut h, true, &c);
        dribble(&mut h, false, &record(22, 2000));
        dribble(&mut h, true, &[record(22, 70), record(20, 1), record(22, 40)].concat());
        dribble(&mut h, false, &[record(20, 1), record(22, 40)].concat());
        assert_eq!(h.done(), None, "TLS done, MySQL authentication not yet");
        dribble(&mut h, true, &record(23, 120));
        dribble(&mut h, false, &record(23, 30));
        assert_eq!(h.done(), None);
        // A partial record is not enough.
        let cmd = record(23, 40);
        h.client(&cmd[..20]);
        assert_eq!(h.done(), None);
        h.client(&cmd[20..]);
        assert_eq!(h.done(), Some(false), "no error packets inside TLS");
    }

    #[test]
    fn tls_1_3_ends_after_a_round_of_application_data() {
        let mut h = Handshake::new();
        h.server(&greeting());
        h.client(&[packet(1, &response(0x0000_a205 | CLIENT_SSL, 32)), record(22, 250)].concat());
        // ServerHello, then everything else encrypted.
        h.server(&[record(22, 90), record(20, 1), record(23, 2500)].concat());
        assert_eq!(h.done(), None);
        // Finished: TLS is up, nothing MySQL yet.
        h.client(&[record(20, 1), record(23, 53)].concat());
        assert_eq!(h.done(), None, "a client that stops after TLS has not finished");
        h.server(&record(23, 200));
        h.client(&record(23, 120));
        assert_eq!(h.done(), Some(false));
    }

    #[test]
    fn a_silent_tls_client_is_not_done() {
        let mut h = Handshake::new();
        h.server(&greeting());
        h.client(&packet(1, &response(CLIENT_SSL, 32)));
        h.server(&record(22, 90));
        h.server(&record(23, 900));
        assert_eq!(h.done(), None);
    }
}
