//! What the operation journal may keep of a request: the request with its
//! secrets taken out (account passwords in SQL, the admin credentials and
//! password options of a server definition, a proxy's token). The journal
//! is on disk for weeks and served back to the platform; the secrets it
//! needs to act again live only where they are used (the server registry,
//! the proxy's token file), both 0600.

use atoll_api::agent::HostOp;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Words after which a statement's string literals may be secrets.
const SECRET_WORDS: [&str; 3] = ["IDENTIFIED", "PASSWORD", "SST_AUTH"];

/// `op` without its secrets.
pub fn redact(op: &HostOp) -> HostOp {
    let mut op = op.clone();
    match &mut op {
        HostOp::DbSql { statements, .. } => {
            for s in statements.iter_mut() {
                *s = statement(s);
            }
        }
        HostOp::DbDefine { server } => {
            server.admin.password = REDACTED.into();
            server.config = config(&server.config);
            if let Some(tls) = &mut server.tls {
                tls.key_pem = REDACTED.into();
            }
        }
        HostOp::ProxyStart { proxy } => proxy.token = REDACTED.into(),
        HostOp::DbSeed { source, .. } => source.token = REDACTED.into(),
        HostOp::MakeDirs { .. }
        | HostOp::RemoveDirs { .. }
        | HostOp::DbInit { .. }
        | HostOp::DbStart { .. }
        | HostOp::DbStop { .. }
        | HostOp::DbRecover { .. }
        | HostOp::DbRemove { .. }
        | HostOp::ProxyRemove { .. }
        | HostOp::PackageInstall { .. } => {}
    }
    op
}

/// A statement with every string literal after the first secret word
/// (`IDENTIFIED BY '…'`, `PASSWORD('…')`, `wsrep_sst_auth='…'`) replaced;
/// others are kept as they are. Literals may hold escaped and doubled
/// quotes.
pub fn statement(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    let Some(from) = SECRET_WORDS.iter().filter_map(|w| upper.find(w)).min() else { return sql.to_string() };
    let mut out = String::with_capacity(sql.len());
    out.push_str(&sql[..from]);
    let mut chars = sql[from..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' && c != '"' {
            out.push(c);
            continue;
        }
        // Skip the literal to its closing quote.
        loop {
            match chars.next() {
                None => break,
                Some('\\') => {
                    chars.next();
                }
                Some(q) if q == c => {
                    if chars.peek() == Some(&c) {
                        chars.next();
                    } else {
                        break;
                    }
                }
                Some(_) => {}
            }
        }
        out.push(c);
        out.push_str(REDACTED);
        out.push(c);
    }
    out
}

/// An option file with the values of password-like options replaced.
pub fn config(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim().to_ascii_lowercase().replace('-', "_"));
        let secret = key.as_deref().is_some_and(|k| ["password", "passwd", "sst_auth", "secret"].iter().any(|w| k.contains(w)));
        match (secret, line.split_once('=')) {
            (true, Some((k, _))) => {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use atoll_api::db::{DbCredentials, DbServerDef};

    use super::*;

    #[test]
    fn passwords_leave_statements() {
        let s = statement("CREATE USER IF NOT EXISTS 'atoll'@'%' IDENTIFIED BY 'Pw-1'");
        assert_eq!(s, "CREATE USER IF NOT EXISTS 'atoll'@'%' IDENTIFIED BY '<redacted>'");
        for sql in [
            "alter user 'a'@'%' identified by 'it''s \\' secret'",
            "SET PASSWORD FOR 'a'@'%' = PASSWORD(\"secret\")",
            "CREATE USER a IDENTIFIED VIA ed25519 USING PASSWORD('secret')",
            "GRANT ALL ON *.* TO 'a'@'%' IDENTIFIED BY 'secret' WITH GRANT OPTION",
            "SET GLOBAL wsrep_sst_auth = 'sst:secret'",
        ] {
            let r = statement(sql);
            assert!(!r.contains("secret") && r.contains(REDACTED), "{sql} -> {r}");
        }
        assert!(statement("SET PASSWORD = PASSWORD('x'),").ends_with("PASSWORD('<redacted>'),"));
        let plain = "CREATE DATABASE IF NOT EXISTS `shop`; INSERT INTO t VALUES ('kept')";
        assert_eq!(statement(plain), plain);
    }

    #[test]
    fn definitions_and_tokens_lose_their_secrets() {
        let def = DbServerDef {
            id: atoll_core::DbId::new("c", "s1"),
            dir: "/d".into(),
            config: "[mysqld]\nport=3306\nwsrep_sst_auth=u:secret\n[client]\npassword = secret\n".into(),
            sql_addr: "127.0.0.1:3306".into(),
            peers: vec![],
            admin: DbCredentials { user: "atoll".into(), password: "secret".into() },
            basedir: None,
            tls: Some(atoll_api::db::DbTls { ca_pem: "ca".into(), cert_pem: "cert".into(), key_pem: "secret key".into() }),
        };
        let HostOp::DbDefine { server } = redact(&HostOp::DbDefine { server: def }) else { panic!() };
        assert_eq!(server.admin.user, "atoll");
        assert!(!serde_json::to_string(&server).unwrap().contains("secret"), "{server:?}");
        assert!(server.config.contains("port=3306\n"));
        let op = HostOp::MakeDirs { paths: vec!["/d".into()], owner: None, mode: 0o750 };
        assert_eq!(redact(&op), op);
    }
}
