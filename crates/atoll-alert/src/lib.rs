//! Alerting, as pure logic: rules over MonitorDB queries, the alarm state
//! machine (pending, firing, resolved), silences, and which notifications
//! are due and how they are grouped. The server's `alerting` module runs
//! it: it queries MonitorDB, stores alarms in MetaDB and delivers.

pub mod alarm;
pub mod notify;
pub mod rule;
pub mod silence;

pub use alarm::{Alarm, AlarmState, Outcome, Seen, evaluate};
pub use notify::{Channel, ChannelKind, ChannelStatus, Notification, NotifiedAlarm};
pub use rule::{Condition, Rule, RuleError, Severity};
pub use silence::{Silence, SilenceError};
