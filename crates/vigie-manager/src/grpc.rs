//! The agents' gRPC service: enrolment (no client certificate) and the
//! per-agent session (client certificate checked against the CA by rustls,
//! then against the hosts table for revocation on every connection).

use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use vigie_proto::pb::{self, agent_message::Msg as Up, manager_message::Msg as Down};
use vigie_proto::tonic::{self, Request, Response, Status, Streaming};

use crate::Core;
use crate::store::{AlertRow, AuditEntry, EventRow, IngestBatch};

/// Largest single ECS record accepted.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

pub struct AgentService {
    pub core: Arc<Core>,
}

type DownStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ManagerMessage, Status>> + Send>>;

fn internal(e: anyhow::Error) -> Status {
    tracing::error!("agent service: {e:#}");
    Status::internal("internal error in the manager (see its log)")
}

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentService {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        if req.token.is_empty() || req.token.len() > 200 {
            return Err(Status::invalid_argument("malformed enrolment token"));
        }
        let facts = req.facts.unwrap_or_default();
        let hostname: String = facts
            .hostname
            .chars()
            .filter(|c| !c.is_control())
            .take(253)
            .collect();
        if hostname.is_empty() {
            return Err(Status::invalid_argument(
                "the enrolment request has no hostname",
            ));
        }
        if !req.release_secret.is_empty() && !(16..=64).contains(&req.release_secret.len()) {
            return Err(Status::invalid_argument(
                "the release secret must be 16 to 64 bytes",
            ));
        }
        let store = &self.core.store;
        let host_id = uuid::Uuid::now_v7().to_string();
        // Check the CSR before spending the token. The organisation is not
        // known yet; sign again below with it.
        if let Err(e) = self.core.pki.sign_agent(&req.csr_der, &host_id, "-") {
            return Err(Status::invalid_argument(format!("{e:#}")));
        }
        let org = match store
            .consume_enroll_token(&req.token, &host_id)
            .await
            .map_err(internal)?
        {
            Ok(org) => org,
            Err(e) => {
                tracing::warn!(?peer, "enrolment refused: {e}");
                return Err(Status::permission_denied(e.to_string()));
            }
        };
        let (cert_der, not_after) = self
            .core
            .pki
            .sign_agent(&req.csr_der, &host_id, &org)
            .map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
        let fp = crate::pki::fingerprint(&cert_der);
        let facts_json =
            json!({"os": facts.os, "kernel": facts.kernel, "agent_version": facts.agent_version});
        store
            .add_host(&host_id, &org, &hostname, &facts_json, &fp, not_after)
            .await
            .map_err(internal)?;
        if !req.release_secret.is_empty() {
            store
                .set_release_secret(&host_id, &req.release_secret)
                .await
                .map_err(internal)?;
        }
        store
            .append_audit(&AuditEntry {
                org: org.clone(),
                actor: format!("agent:{hostname}"),
                action: "enroll".into(),
                target: host_id.clone(),
                reason: "one-time enrolment token".into(),
                outcome: "enrolled".into(),
                details: json!({"hostname": hostname, "certificate_sha256": fp, "peer": peer.map(|p| p.to_string())}),
            })
            .await
            .map_err(internal)?;
        tracing::info!(%host_id, %org, %hostname, "agent enrolled");
        Ok(Response::new(pb::EnrollResponse {
            host_id,
            org,
            cert_der,
            ca_der: self.core.pki.ca_der.clone(),
        }))
    }

    type SessionStream = DownStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<DownStream>, Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate is required: enrol the agent first")
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let fp = crate::pki::fingerprint(leaf.as_ref());
        let auth = self
            .core
            .store
            .agent_by_fingerprint(&fp)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::unauthenticated("this certificate belongs to no enrolled agent")
            })?;
        if auth.revoked {
            tracing::warn!(host_id = %auth.host_id, "revoked agent refused");
            return Err(Status::permission_denied("this agent has been revoked"));
        }
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<pb::ManagerMessage, Status>>(256);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let conn = self
            .core
            .register(&auth.host_id, &auth.org, tx.clone(), cancel_tx);
        let core = self.core.clone();
        tokio::spawn(async move {
            let host = auth.host_id.clone();
            if let Err(e) = run_session(core.clone(), auth, inbound, tx, cancel_rx).await {
                tracing::debug!(host_id = %host, "session ended: {e}");
            }
            core.unregister(&host, conn);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn run_session(
    core: Arc<Core>,
    auth: crate::store::AgentAuth,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: mpsc::Sender<Result<pb::ManagerMessage, Status>>,
    mut cancel: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _ = core.store.touch(&auth.host_id).await;
    // Commands that waited for this agent.
    for cmd in core.store.open_commands(&auth.host_id).await? {
        core.push_command(&cmd).await?;
    }
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = cancel.changed() => {
                if core.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = tx.send(Err(Status::unavailable("the manager is shutting down"))).await;
                    anyhow::bail!("manager shutting down");
                }
                let _ = tx.send(Err(Status::permission_denied("this agent has been revoked"))).await;
                anyhow::bail!("revoked while connected");
            }
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(status) => {
                // Oversized or undecodable messages end here: nothing stored.
                tracing::warn!(host_id = %auth.host_id, "bad message from agent: {}", status.message());
                anyhow::bail!("{}", status.message());
            }
        };
        match msg.msg {
            Some(Up::Heartbeat(hb)) => core.store.heartbeat(&auth.host_id, &hb).await?,
            Some(Up::Batch(batch)) => {
                let seq = batch.seq;
                match parse_batch(&auth, &batch) {
                    Err(error) => {
                        tracing::warn!(host_id = %auth.host_id, seq, "batch refused: {error}");
                        core.counters
                            .refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tx.send(Ok(ack(seq, error))).await?;
                    }
                    Ok(parsed) => {
                        let (done, wait) = oneshot::channel();
                        core.ingest.send((parsed, done)).await?;
                        let tx = tx.clone();
                        // Acknowledge once committed; meanwhile keep reading.
                        tokio::spawn(async move {
                            match wait.await {
                                Ok(Ok(())) => {
                                    let _ = tx.send(Ok(ack(seq, String::new()))).await;
                                }
                                _ => {
                                    // Not stored: end the stream so the agent resends.
                                    let _ = tx
                                        .send(Err(Status::unavailable(
                                            "the manager could not store the batch; retry",
                                        )))
                                        .await;
                                }
                            }
                        });
                    }
                }
            }
            Some(Up::Result(r)) => {
                core.command_result(&auth, &r).await?;
                tx.send(Ok(ack(r.seq, String::new()))).await?;
            }
            None => {}
        }
    }
}

fn ack(seq: u64, error: String) -> pb::ManagerMessage {
    pb::ManagerMessage {
        msg: Some(Down::Ack(pb::Ack { seq, error })),
    }
}

fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// Decode and validate a batch. Each record must parse as a Vigie ECS event
/// or alert; the host id is forced to the certificate's (an agent cannot
/// write for another host). One bad record refuses the whole batch.
pub fn parse_batch(
    auth: &crate::store::AgentAuth,
    batch: &pb::Batch,
) -> Result<IngestBatch, String> {
    let records = vigie_proto::decode_batch(batch).map_err(|e| e.to_string())?;
    let mut out = IngestBatch {
        org: auth.org.clone(),
        host_id: auth.host_id.clone(),
        ..Default::default()
    };
    for (i, raw) in records.events.iter().enumerate() {
        if raw.len() > MAX_RECORD_BYTES {
            return Err(format!("event {i} is larger than {MAX_RECORD_BYTES} bytes"));
        }
        let text = std::str::from_utf8(raw).map_err(|_| format!("event {i} is not UTF-8"))?;
        let mut event =
            vigie_event::ecs::parse_event(text).map_err(|e| format!("event {i}: {e}"))?;
        event.host.id = Some(auth.host_id.clone());
        if let vigie_event::Payload::Response(r) = &event.payload {
            out.actions.push(AuditEntry {
                org: auth.org.clone(),
                actor: format!("agent:{}/{}", auth.host_id, r.response.actor),
                action: r.response.action.clone(),
                target: r.response.target.clone(),
                reason: "automatic action by the agent".into(),
                outcome: format!("{:?}", r.outcome).to_lowercase(),
                details: serde_json::to_value(&event).unwrap_or_default(),
            });
        }
        out.events
            .push(event_row(&event).map_err(|e| e.to_string())?);
    }
    for (i, raw) in records.alerts.iter().enumerate() {
        if raw.len() > MAX_RECORD_BYTES {
            return Err(format!("alert {i} is larger than {MAX_RECORD_BYTES} bytes"));
        }
        let text = std::str::from_utf8(raw).map_err(|_| format!("alert {i} is not UTF-8"))?;
        let mut alert =
            vigie_event::ecs::parse_alert(text).map_err(|e| format!("alert {i}: {e}"))?;
        alert.host.id = Some(auth.host_id.clone());
        for e in &mut alert.events {
            e.host.id = Some(auth.host_id.clone());
        }
        out.alerts
            .push(alert_row(&alert).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// An event as the `events` table stores it (the host id already set).
pub(crate) fn event_row(event: &vigie_event::Event) -> serde_json::Result<EventRow> {
    let process = event.process();
    let user = match &event.payload {
        // A login's account, so that searching by user finds VPN logins.
        vigie_event::Payload::Authentication(a) => a.user.name.clone(),
        _ => process
            .and_then(|p| p.user.as_ref())
            .and_then(|u| u.name.clone()),
    }
    .filter(|n| !n.is_empty());
    Ok(EventRow {
        id: event.id.to_string(),
        time: millis(event.time),
        dataset: vigie_event_dataset(event),
        action: event_action(event).to_string(),
        process_name: process.map(|p| p.name.clone()),
        process_pid: process.map(|p| p.pid as i64),
        user_name: user,
        doc: serde_json::to_string(event)?,
    })
}

/// An alert as the `alerts` table stores it (the host id already set).
pub(crate) fn alert_row(alert: &vigie_event::Alert) -> serde_json::Result<AlertRow> {
    let level = alert.level();
    Ok(AlertRow {
        id: alert.id.to_string(),
        time: millis(alert.time),
        rule_id: alert.rule.id.clone(),
        rule_name: alert.rule.name.clone(),
        level: level.as_str().to_string(),
        severity: level.severity() as i64,
        doc: serde_json::to_string(alert)?,
    })
}

fn vigie_event_dataset(event: &vigie_event::Event) -> String {
    use vigie_event::Payload as P;
    match &event.payload {
        P::Process(_) => "vigie.process",
        P::File(_) => "vigie.file",
        P::Network(_) => "vigie.network",
        P::Dns(_) => "vigie.dns",
        P::Authentication(_) => "vigie.authentication",
        P::Kernel(_) => "vigie.kernel",
        P::Health(_) => "vigie.health",
        P::Response(_) => "vigie.response",
        P::Log(_) => "vigie.log",
    }
    .to_string()
}

/// ECS `event.action`, as vigie_event writes it.
fn event_action(event: &vigie_event::Event) -> &'static str {
    use vigie_event::Payload as P;
    match &event.payload {
        P::Process(e) => e.action.as_str(),
        P::File(e) => e.action.as_str(),
        P::Network(e) => e.action.as_str(),
        P::Dns(_) => "dns_query",
        P::Authentication(_) => "authentication",
        P::Kernel(e) => e.action.as_str(),
        P::Health(e) => e.action.as_str(),
        P::Response(_) => "response",
        P::Log(_) => "log",
    }
}
