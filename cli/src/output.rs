//! Printing: one JSON object per line (`--json`, camelCase names as the reference's objects)
//! or a human-readable line. Write errors (a closed pipe) are ignored rather than panicking.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

use hdht_tokio::{NodeId, Peer, RpcEvent};
use serde::Serialize;

/// Where records go, and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
    stderr: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output {
            json,
            stderr: false,
        }
    }

    /// The same form, printed on stderr: for the commands whose stdout is a data pipe
    /// (`listen`, `connect`).
    pub fn on_stderr(self) -> Self {
        Output {
            stderr: true,
            ..self
        }
    }

    /// Prints `record` as one JSON line, or the text `human` builds.
    pub fn emit<T: Serialize>(&self, record: &T, human: impl FnOnce() -> String) {
        let line = if self.json {
            match serde_json::to_string(record) {
                Ok(line) => line,
                Err(e) => format!("{{\"error\":\"cannot encode output: {e}\"}}"),
            }
        } else {
            human()
        };
        if self.stderr {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
            let _ = err.flush();
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Prints a line of text in the human form only (a remark with no JSON record).
    pub fn note(&self, text: impl FnOnce() -> String) {
        if !self.json {
            self.emit(&(), text);
        }
    }

    /// Prints a node event (see [`Event`]).
    pub fn event(&self, event: &Event) {
        self.emit(event, || event.to_string());
    }

    /// Prints the command's failure on stderr: `hdht: error: message`, or with `--json`
    /// `{"error":code,"message":message}`.
    pub fn error(&self, code: &str, message: &str) {
        #[derive(Serialize)]
        struct ErrorLine<'a> {
            error: &'a str,
            message: &'a str,
        }
        Output {
            stderr: true,
            ..*self
        }
        .emit(
            &ErrorLine {
                error: code,
                message,
            },
            || format!("hdht: error: {message}"),
        );
    }

    /// Prints a warning on stderr whatever the command prints elsewhere: `hdht: warning: …`,
    /// or with `--json` one JSON object (see [`Warning`]).
    pub fn warn(&self, warning: &Warning) {
        Output {
            stderr: true,
            ..*self
        }
        .emit(warning, || format!("hdht: warning: {warning}"));
    }
}

/// Something the user should know although the command goes on; `{"warning": kind, …,
/// "message": text}` with `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "warning",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Warning {
    /// Bootstrapping ended and none of the bootstrap nodes (`tried`) answered: the node runs
    /// alone and keeps asking them.
    NoBootstrapReply { tried: Vec<Addr>, message: String },
    /// A mutable put with the largest seq there is: once stored, the record under this key
    /// can never be replaced.
    FinalSeq { seq: u64, message: String },
}

impl Warning {
    pub fn no_bootstrap_reply(tried: &[SocketAddrV4]) -> Self {
        let list: Vec<String> = tried.iter().map(ToString::to_string).collect();
        Warning::NoBootstrapReply {
            tried: tried.iter().copied().map(Addr::from).collect(),
            message: format!(
                "no bootstrap node answered (tried {}); this node runs alone until one does \
                 and asks them again every 40 s (check --bootstrap and the network)",
                list.join(", ")
            ),
        }
    }

    pub fn final_seq(seq: u64) -> Self {
        Warning::FinalSeq {
            seq,
            message: format!(
                "seq {seq} is the largest a mutable record can have (2^53 - 1): once stored, \
                 no later value can replace it under this key (a higher seq cannot be encoded, \
                 the same seq with another value is refused as SEQ_REUSED); it lasts as long \
                 as nodes keep it"
            ),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::NoBootstrapReply { message, .. } | Warning::FinalSeq { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

/// `{host, port}`, as the reference prints addresses.
#[derive(Debug, Clone, Serialize)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl From<SocketAddrV4> for Addr {
    fn from(a: SocketAddrV4) -> Self {
        Addr {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

/// `{host, port, nodeId}`: a DHT node, with the id `H(host:port)` it has when persistent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
    pub node_id: String,
}

impl From<SocketAddrV4> for NodeAddr {
    fn from(a: SocketAddrV4) -> Self {
        NodeAddr {
            host: a.ip().to_string(),
            port: a.port(),
            node_id: hex_id(NodeId::from_addr(&a)),
        }
    }
}

/// `{publicKey, relayAddresses}`: one peer announced under a topic.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerOut {
    pub public_key: String,
    pub relay_addresses: Vec<Addr>,
}

impl From<&Peer> for PeerOut {
    fn from(p: &Peer) -> Self {
        PeerOut {
            public_key: hex::encode(p.public_key),
            relay_addresses: p.relay_addresses.iter().copied().map(Addr::from).collect(),
        }
    }
}

/// A record value as text: `Some` only when it is valid UTF-8 (never a lossy conversion;
/// `valueHex` always carries the exact bytes).
pub fn text_value(value: &[u8]) -> Option<String> {
    std::str::from_utf8(value).ok().map(str::to_string)
}

/// A value for human output: the text in quotes, or `0x…` hex when it is not UTF-8.
pub fn show_value(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("0x{}", hex::encode(value)),
    }
}

/// Short form of 32 bytes of hex for human output.
pub fn short_hex(bytes: &[u8]) -> String {
    short(&Some(hex::encode(bytes)))
}

pub fn hex_id(id: NodeId) -> String {
    hex::encode(id.0)
}

pub fn hex_opt_id(id: Option<NodeId>) -> Option<String> {
    id.map(hex_id)
}

/// Short form of an id for human output.
pub fn short(id: &Option<String>) -> String {
    match id {
        Some(id) => format!("{}…", &id[..id.len().min(16)]),
        None => "-".into(),
    }
}

/// The lines `bootstrap` and `node` print: lifecycle plus the node's own events.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// The bootstrapper is bound and serving.
    Listening {
        host: String,
        port: u16,
        node_id: Option<String>,
    },
    /// The node finished bootstrapping.
    Ready {
        host: String,
        port: u16,
        firewalled: bool,
        ephemeral: bool,
        node_id: Option<String>,
    },
    /// The node became routable.
    Persistent { node_id: Option<String> },
    /// The node went back to ephemeral after a wake-up.
    Ephemeral,
    /// A wake-up (long pause) was detected.
    Wakeup,
    /// Our public address estimate changed.
    NatUpdate { host: Option<String>, port: u16 },
    /// Online/degraded state changed.
    NetworkUpdate { online: bool, degraded: bool },
    /// A node entered the routing table.
    AddNode {
        host: String,
        port: u16,
        node_id: String,
    },
    /// A node left the routing table.
    RemoveNode {
        host: String,
        port: u16,
        node_id: String,
    },
    /// Shutting down after a signal; the node is destroyed.
    Close { signal: String },
}

impl Event {
    /// The printable form of a core event; `None` for events a command consumes itself.
    pub fn from_rpc(ev: &RpcEvent, id: impl FnOnce() -> Option<NodeId>) -> Option<Event> {
        Some(match ev {
            RpcEvent::Persistent => Event::Persistent {
                node_id: hex_opt_id(id()),
            },
            RpcEvent::Ephemeral => Event::Ephemeral,
            RpcEvent::Wakeup => Event::Wakeup,
            RpcEvent::NatUpdate { host, port } => Event::NatUpdate {
                host: host.map(|h: Ipv4Addr| h.to_string()),
                port: *port,
            },
            RpcEvent::NetworkUpdate { online, degraded } => Event::NetworkUpdate {
                online: *online,
                degraded: *degraded,
            },
            RpcEvent::AddNode(a) => {
                let n = NodeAddr::from(*a);
                Event::AddNode {
                    host: n.host,
                    port: n.port,
                    node_id: n.node_id,
                }
            }
            RpcEvent::RemoveNode(a) => {
                let n = NodeAddr::from(*a);
                Event::RemoveNode {
                    host: n.host,
                    port: n.port,
                    node_id: n.node_id,
                }
            }
            _ => return None,
        })
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Listening {
                host,
                port,
                node_id,
            } => {
                write!(
                    f,
                    "bootstrapper listening on {host}:{port}, node id {}",
                    short(node_id)
                )
            }
            Event::Ready {
                host,
                port,
                firewalled,
                ephemeral,
                node_id,
            } => write!(
                f,
                "ready on {host}:{port} ({}, {}), node id {}",
                if *firewalled {
                    "firewalled"
                } else {
                    "reachable"
                },
                if *ephemeral {
                    "ephemeral"
                } else {
                    "persistent"
                },
                short(node_id)
            ),
            Event::Persistent { node_id } => write!(f, "persistent, node id {}", short(node_id)),
            Event::Ephemeral => f.write_str("ephemeral again"),
            Event::Wakeup => f.write_str("wake-up detected"),
            Event::NatUpdate { host, port } => {
                write!(
                    f,
                    "public address {}:{port}",
                    host.as_deref().unwrap_or("?")
                )
            }
            Event::NetworkUpdate { online, degraded } => write!(
                f,
                "network {}{}",
                if *online { "online" } else { "offline" },
                if *degraded { ", degraded" } else { "" }
            ),
            Event::AddNode { host, port, .. } => write!(f, "+ node {host}:{port}"),
            Event::RemoveNode { host, port, .. } => write!(f, "- node {host}:{port}"),
            Event::Close { signal } => write!(f, "{signal}: shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let ev = Event::Ready {
            host: "127.0.0.1".into(),
            port: 1,
            firewalled: false,
            ephemeral: true,
            node_id: None,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"ready","host":"127.0.0.1","port":1,"firewalled":false,"ephemeral":true,"nodeId":null}"#
        );
        let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2);
        let ev = Event::from_rpc(&RpcEvent::AddNode(a), || None).unwrap();
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["event"], "addNode");
        assert_eq!(v["nodeId"], hex_id(NodeId::from_addr(&a)));
        let ev = Event::from_rpc(
            &RpcEvent::NatUpdate {
                host: None,
                port: 0,
            },
            || None,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"natUpdate","host":null,"port":0}"#
        );
        let peer = Peer {
            public_key: [1; 32],
            relay_addresses: vec![a],
        };
        assert_eq!(
            serde_json::to_string(&PeerOut::from(&peer)).unwrap(),
            format!(
                r#"{{"publicKey":"{}","relayAddresses":[{{"host":"127.0.0.1","port":2}}]}}"#,
                "01".repeat(32)
            )
        );
    }

    #[test]
    fn values_are_text_only_when_utf8() {
        assert_eq!(text_value("héllo".as_bytes()).as_deref(), Some("héllo"));
        assert_eq!(text_value(&[0xff, 0xfe]), None);
        assert_eq!(show_value(b"hi"), "\"hi\"");
        assert_eq!(show_value(&[0xff]), "0xff");
    }
}
