//! Email notifications: plain SMTP to the relay the platform is configured
//! with (`smtp_server`, `smtp_from`), through `lettre`.

use std::time::Duration;

use atoll_alert::Notification;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::ServerConfig;

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    from: Mailbox,
}

impl Smtp {
    /// The relay of `config`, or `None` when it names none; an error names
    /// the setting that does not read.
    pub fn from_config(config: &ServerConfig) -> anyhow::Result<Option<Smtp>> {
        let Some(server) = &config.smtp_server else { return Ok(None) };
        let (host, port) = server
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("smtp_server {server:?} must be HOST:PORT, e.g. mail.example.com:25"))?;
        let from_text = config.smtp_from.as_deref().unwrap_or("atoll@localhost");
        let from: Mailbox = from_text.parse().map_err(|e| anyhow::anyhow!("smtp_from {from_text:?} is not an email address: {e}"))?;
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).timeout(Some(Duration::from_secs(10))).build();
        Ok(Some(Smtp { transport, server: server.clone(), from }))
    }

    pub async fn send(&self, to: &[String], n: &Notification) -> Result<(), String> {
        let mut b = Message::builder().from(self.from.clone()).subject(&n.title).header(ContentType::TEXT_PLAIN);
        for a in to {
            b = b.to(a.parse().map_err(|e| format!("{a:?} is not an email address: {e}"))?);
        }
        let message = b.body(body(n)).map_err(|e| format!("cannot build the mail: {e}"))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| format!("SMTP {}: {e}", self.server))
    }
}

/// The mail's text: one paragraph per alarm.
fn body(n: &Notification) -> String {
    let mut out = format!("{}\n\n", n.title);
    for a in &n.alarms {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{}: {}\n  value {}  since {} UTC{}\n  {}\n\n",
            a.state.as_str().to_uppercase(),
            a.summary,
            atoll_alert::rule::format_value(a.value),
            atoll_core::time::utc(a.started_ms),
            a.ended_ms.map(|t| format!("  ended {} UTC", atoll_core::time::utc(t))).unwrap_or_default(),
            labels.join(" "),
        ));
    }
    out.push_str(&format!("rule {} ({}); `atoll alert list` shows what is active.\n", n.rule, n.severity.as_str()));
    out
}
