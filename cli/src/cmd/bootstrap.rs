//! `hdht bootstrap --host H [--port P]`: `DHT.bootstrapper(port, host)` until a signal.

use std::net::Ipv4Addr;

use hdht_tokio::{Dht, DhtOptions};

use super::common::{serve, Error, Result};
use crate::args::{BootstrapArgs, GlobalOpts};
use crate::output::{hex_opt_id, Event, Output};
use crate::signal::Shutdown;

pub async fn run(args: BootstrapArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let shutdown = Shutdown::install();
    let host = global.host.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut opts = DhtOptions::bootstrapper(args.port, host);
    // A bootstrapper starts a network: it joins others only when told to.
    opts.bootstrap = global.bootstrap.clone().unwrap_or_default();
    let dht = Dht::new(opts).await.map_err(|e| {
        Error::from_err(
            &format!("cannot start a bootstrapper on {host}:{}", args.port),
            &e,
        )
    })?;
    serve(dht, out, shutdown, |dht| Event::Listening {
        host: host.to_string(),
        port: dht.server_address().port(),
        node_id: hex_opt_id(dht.id()),
    })
    .await
}
