//! `hdht node [--port P] [--ephemeral | --persistent]`: a DHT node until a signal.

use hdht_tokio::{Dht, DhtOptions, Persistence};

use super::common::{serve, Error, Result};
use crate::args::{GlobalOpts, NodeArgs};
use crate::output::{hex_opt_id, Event, Output};
use crate::signal::Shutdown;

pub async fn run(args: NodeArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let shutdown = Shutdown::install();
    let persistence = if args.ephemeral {
        Persistence::Ephemeral
    } else if args.persistent {
        Persistence::Persistent
    } else {
        Persistence::Adaptive
    };
    let opts = DhtOptions {
        bootstrap: global.bootstrap_list(),
        port: args.port,
        host: global.bind_host(),
        persistence,
        ..DhtOptions::isolated()
    };
    let dht = Dht::new(opts)
        .await
        .map_err(|e| Error::from_err("cannot start the node", &e))?;
    serve(dht, out, shutdown, |dht| {
        let addr = dht.address();
        Event::Ready {
            host: addr.ip().to_string(),
            port: addr.port(),
            firewalled: dht.is_firewalled(),
            ephemeral: dht.is_ephemeral(),
            node_id: hex_opt_id(dht.id()),
        }
    })
    .await
}
