//! Fallback sensor (degraded mode): not yet written.
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use anyhow::Result;
use vigie_event::{Event, Host};

use crate::SensorConfig;

pub(crate) fn start(
    _cfg: SensorConfig,
    _host: Host,
    _tx: SyncSender<Event>,
    _stop: Arc<AtomicBool>,
    why: String,
) -> Result<JoinHandle<Result<()>>> {
    anyhow::bail!("eBPF sensor unavailable ({why}) and the fallback sensor is not built yet")
}
