//! One connection's life: open the mTLS stream, send heartbeats and the
//! spool's contents (a window of batches in flight), apply acknowledgements,
//! dispatch commands; on any error, back off and reconnect.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use vigie_proto::pb::{self, agent_message::Msg as Up, manager_message::Msg as Down};
use vigie_proto::prost::Message;

use crate::spool::{Kind, Spool};
use crate::{CommandHandler, CommandOutcome, Identity, Options, tls};

pub(crate) struct Shared {
    pub identity: Identity,
    pub spool: Arc<Spool>,
    pub notify: Arc<Notify>,
    pub facts: Arc<Mutex<pb::HostFacts>>,
    pub options: Options,
    pub results: mpsc::Sender<crate::ToSpool>,
    pub connected: watch::Sender<bool>,
}

/// Counters of one session (for tests and the load tool).
#[derive(Debug, Default, Clone)]
pub struct SessionStats {
    pub batches_acked: u64,
    pub records_acked: u64,
}

/// Open the agent's stream: returns the sender for messages up and the
/// stream of messages down. Used by [`crate::Uplink`] and by tools that
/// drive the protocol directly (the load generator).
pub async fn connect_session(
    identity: &Identity,
) -> Result<(
    mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::ManagerMessage>,
)> {
    connect_session_marked(identity, None).await
}

/// [`connect_session`] over sockets marked `mark` (see [`tls::connect_tcp`]).
pub async fn connect_session_marked(
    identity: &Identity,
    mark: Option<u32>,
) -> Result<(
    mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::ManagerMessage>,
)> {
    let config = tls::mtls_config(&identity.ca_der, &identity.cert_der, &identity.key_der)?;
    let channel = tls::channel_marked(&identity.manager_url, config, mark).await?;
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel)
        .max_decoding_message_size(vigie_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(vigie_proto::MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(64);
    let down = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow!("the manager refused the session: {}", s.message()))?
        .into_inner();
    Ok((tx, down))
}
use vigie_proto::tonic;

pub(crate) async fn run<H: CommandHandler>(
    shared: Shared,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    // Commands already carried out in this process: a re-sent command is
    // acknowledged again without running twice.
    let done: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let result = tokio::select! {
            r = session(&shared, handler.clone(), done.clone()) => r,
            _ = stop.changed() => return,
        };
        let _ = shared.connected.send(false);
        if let Err(e) = result {
            tracing::warn!("manager link down: {e:#}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(250);
        }
        // Jitter spreads the reconnections of many agents after an outage.
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let wait = backoff.mul_f64(jitter);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(shared.options.backoff_max);
    }
}

fn heartbeat(shared: &Shared, pending: u64) -> pb::AgentMessage {
    let facts = shared.facts.lock().map(|f| f.clone()).unwrap_or_default();
    pb::AgentMessage {
        msg: Some(Up::Heartbeat(pb::Heartbeat {
            facts: Some(facts),
            spool_dropped: shared.spool.dropped(),
            spool_pending: pending,
        })),
    }
}

async fn session<H: CommandHandler>(
    shared: &Shared,
    handler: Arc<H>,
    done: Arc<Mutex<HashSet<String>>>,
) -> Result<()> {
    let (up, mut down) =
        connect_session_marked(&shared.identity, shared.options.socket_mark).await?;
    let pending = shared.spool.pending().await.unwrap_or(0);
    up.send(heartbeat(shared, pending)).await?;
    let _ = shared.connected.send(true);
    tracing::info!(manager = %shared.identity.manager_url, "connected to the manager");
    // Everything unacknowledged is sent again on each new session: the
    // manager de-duplicates (at-least-once delivery).
    let mut next_after: i64 = 0;
    let mut inflight: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    let mut hb = tokio::time::interval(shared.options.heartbeat);
    hb.tick().await;
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    loop {
        // Fill the window from the spool.
        while inflight.len() < shared.options.window {
            let recs = shared
                .spool
                .read_after(next_after, shared.options.batch_max as i64)
                .await?;
            if recs.is_empty() {
                break;
            }
            let mut queue: VecDeque<_> = recs.into_iter().collect();
            while let Some(r) = queue.pop_front() {
                if r.kind == Kind::Result {
                    let mut result = pb::CommandResult::decode(r.body.as_slice())
                        .context("corrupt command result in the spool")?;
                    result.seq = r.seq as u64;
                    inflight.insert(r.seq as u64, (r.seq, r.seq));
                    next_after = r.seq;
                    up.send(pb::AgentMessage {
                        msg: Some(Up::Result(result)),
                    })
                    .await?;
                    continue;
                }
                let first = r.seq;
                let mut last = r.seq;
                let (mut events, mut alerts) = (Vec::new(), Vec::new());
                let mut push = |r: crate::spool::Record| match r.kind {
                    Kind::Alert => alerts.push(r.body),
                    _ => events.push(r.body),
                };
                push(r);
                while queue.front().is_some_and(|r| r.kind != Kind::Result) {
                    let r = queue.pop_front().expect("front exists");
                    last = r.seq;
                    push(r);
                }
                inflight.insert(last as u64, (first, last));
                next_after = last;
                let batch = vigie_proto::encode_batch(last as u64, events, alerts);
                up.send(pb::AgentMessage {
                    msg: Some(Up::Batch(batch)),
                })
                .await?;
            }
        }
        tokio::select! {
            msg = down.message() => {
                let msg = msg.map_err(|s| anyhow!("stream closed by the manager: {}", s.message()))?
                    .ok_or_else(|| anyhow!("stream closed by the manager"))?;
                match msg.msg {
                    Some(Down::Ack(ack)) => {
                        if !ack.error.is_empty() {
                            // Refused as malformed: resending cannot help.
                            tracing::error!(seq = ack.seq, "the manager refused a batch: {}", ack.error);
                        }
                        if let Some((first, last)) = inflight.remove(&ack.seq) {
                            shared.spool.ack(first, last).await?;
                        }
                    }
                    Some(Down::Command(cmd)) => {
                        dispatch(shared, handler.clone(), done.clone(), cmd);
                    }
                    None => {}
                }
            }
            _ = shared.notify.notified() => {}
            _ = poll.tick() => {}
            _ = hb.tick() => {
                let pending = shared.spool.pending().await.unwrap_or(0);
                up.send(heartbeat(shared, pending)).await?;
            }
        }
    }
}

fn dispatch<H: CommandHandler>(
    shared: &Shared,
    handler: Arc<H>,
    done: Arc<Mutex<HashSet<String>>>,
    cmd: pb::Command,
) {
    let results = shared.results.clone();
    tokio::spawn(async move {
        let id = cmd.id.clone();
        let first_time = done
            .lock()
            .map(|mut d| d.insert(id.clone()))
            .unwrap_or(true);
        if !first_time {
            // Its result is already in the spool and will reach the manager.
            return;
        }
        let outcome = match crate::parse_command(&cmd) {
            Err(e) => CommandOutcome::failed(e),
            Ok(command) => handler.handle(command).await,
        };
        let result = pb::CommandResult {
            seq: 0,
            command_id: id,
            success: outcome.success,
            outcome: outcome.outcome,
            error: outcome.error.unwrap_or_default(),
        };
        // Results go through the spool like everything else: never lost.
        let _ = results
            .send(crate::ToSpool::Record(Kind::Result, result.encode_to_vec()))
            .await;
    });
}
