//! Every step kind the executor can run, and the handler behind it: the
//! one place to look when a task names a kind.

use std::sync::{Arc, OnceLock};

use atoll_tasks::{Executor, StepHandler};

use crate::clusters::{operate, proxies, servers, standby, steps, writer};
use crate::state::AppState;
use crate::step_kit::StateRef;
use crate::{ca_rotation, host_steps, packages};

/// Registers every step kind with the executor. `slot` is filled with the
/// state once it exists (the executor is part of it).
pub fn register(executor: &mut Executor, slot: Arc<OnceLock<AppState>>) {
    let s = StateRef(slot);
    let kinds: Vec<(&str, Arc<dyn StepHandler>)> = vec![
        // Hosts and packages.
        (host_steps::DIRS, Arc::new(host_steps::Dirs(s.clone()))),
        (host_steps::CHECK, Arc::new(host_steps::Check(s.clone()))),
        (host_steps::FORGET, Arc::new(host_steps::Forget(s.clone()))),
        (packages::INSTALL, Arc::new(packages::Install(s.clone()))),
        // A cluster's servers.
        (steps::RESERVE, Arc::new(steps::Reserve(s.clone()))),
        (steps::DEFINE, Arc::new(steps::Define(s.clone()))),
        (steps::INIT, Arc::new(steps::Init(s.clone()))),
        (steps::START, Arc::new(steps::Start(s.clone()))),
        (steps::WAIT, Arc::new(steps::WaitSynced(s.clone()))),
        (steps::ACCOUNTS, Arc::new(steps::Accounts(s.clone()))),
        (steps::READY, Arc::new(steps::Ready(s.clone()))),
        (steps::REMOVE, Arc::new(steps::Remove(s.clone()))),
        (standby::ACCOUNT, Arc::new(standby::Account(s.clone()))),
        (standby::SEED, Arc::new(standby::Seed(s.clone()))),
        (standby::CHANNEL, Arc::new(standby::Channel(s.clone()))),
        // Whole-cluster operations and recovery.
        (operate::STOP, Arc::new(operate::Stop(s.clone()))),
        (operate::POSITION, Arc::new(operate::Position(s.clone()))),
        (operate::CHOOSE, Arc::new(operate::Choose(s.clone()))),
        (operate::BRING_UP, Arc::new(operate::BringUp(s.clone()))),
        (operate::MARK, Arc::new(operate::Mark(s.clone()))),
        (operate::PARAMS, Arc::new(operate::Params(s.clone()))),
        (operate::SET_GLOBAL, Arc::new(operate::SetGlobal(s.clone()))),
        (operate::FORGET, Arc::new(operate::Forget(s.clone()))),
        // Writer moves, membership, proxies.
        (writer::MOVE, Arc::new(writer::Move(s.clone()))),
        (servers::ADMIT, Arc::new(servers::Member(s.clone(), servers::Op::Admit))),
        (servers::RECORD, Arc::new(servers::Member(s.clone(), servers::Op::Record))),
        (servers::FORGET_SERVER, Arc::new(servers::Member(s.clone(), servers::Op::Forget))),
        (proxies::UP, Arc::new(proxies::Up(s.clone()))),
        (proxies::DOWN, Arc::new(proxies::Down(s.clone()))),
        // The platform's CA.
        (ca_rotation::STAGE, Arc::new(ca_rotation::Step(s.clone(), ca_rotation::STAGE))),
        (ca_rotation::TRUST, Arc::new(ca_rotation::Step(s.clone(), ca_rotation::TRUST))),
        (ca_rotation::SWITCH, Arc::new(ca_rotation::Step(s.clone(), ca_rotation::SWITCH))),
        (ca_rotation::RETIRE, Arc::new(ca_rotation::Step(s, ca_rotation::RETIRE))),
    ];
    for (kind, handler) in kinds {
        executor.register(kind, handler);
    }
}
