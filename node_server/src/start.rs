//! Starting a node ([`NodeConfig::start`]): the listener its network gives (TCP with EPMD by
//! default, see [`crate::network`]), the metrics listener when asked for ([`crate::metrics`]), the
//! core, the node server, and the services built on them.

use std::sync::Arc;

use ractor::Actor;

use crate::config::NodeConfig;
use crate::core::Core;
use crate::dist::DistFlags;
use crate::error::NodeError;
use crate::etf::Atom;
use crate::identity::{Identity, WellKnown};
use crate::node::Node;
use crate::registry::{Registry, NET_KERNEL_ID, REX_ID, ROUTER_ID};
use crate::server::{NodeServer, NodeServerArgs};

impl NodeConfig {
    /// Starts the node: listens on its network (by default binds the TCP listener and registers
    /// with EPMD, starting an embedded EPMD when none answers), and spawns the [`NodeServer`].
    pub async fn start(self) -> Result<Node, NodeError> {
        let full = self.full_name()?;
        let cookie = self.resolve_cookie()?;
        // Bound first: a taken address fails the start before the node registers anywhere.
        let metrics_listener = match self.metrics {
            Some(addr) => Some(crate::metrics::bind(addr).await?),
            None => None,
        };
        let listening = self.net.network().listen(&full, self.net_context()).await?;
        let (port, creation) = (listening.port, listening.creation);
        let mut flags = DistFlags::OFFERED;
        if !self.hidden {
            flags = flags | DistFlags::PUBLISHED;
        }
        let name = Atom::new(&full);
        let registry = Registry::new(name.clone(), creation);
        let pids = WellKnown {
            net_kernel: registry.pid(NET_KERNEL_ID),
            router: registry.pid(ROUTER_ID),
            rex: registry.pid(REX_ID),
        };
        let busy_wait = self.busy_wait;
        let id = Identity::new(name, self, cookie, flags, creation, pids);
        let shared = Arc::new(Core::new(id, registry, busy_wait));
        let metrics = metrics_listener.map(|bound| crate::metrics::serve(bound, &shared));
        let metrics_addr = metrics.as_ref().map(|m| m.addr());
        let (actor, _) = Actor::spawn(
            None,
            NodeServer,
            NodeServerArgs {
                shared: shared.clone(),
                listener: listening.listener,
                // The node server keeps the metrics listener too: it stops when the node does.
                keep: Box::new((listening.keep, metrics)),
            },
        )
        .await
        .map_err(|e| NodeError::Actor(e.to_string()))?;
        crate::global::start(&shared, actor.get_cell())
            .await
            .map_err(|e| NodeError::Actor(e.to_string()))?;
        for scope in &shared.id.config.pg.scopes {
            crate::pg::start_scope(&shared, scope, actor.get_cell())
                .await
                .map_err(|e| NodeError::Actor(e.to_string()))?;
        }
        tracing::info!(node = %shared.id.name, port, creation, "node started");
        let node = Node {
            actor,
            shared,
            port,
            metrics_addr,
        };
        node.shared
            .services
            .get_or_insert(|| crate::node::NodeParts {
                actor: node.actor.clone(),
                port,
                metrics_addr,
            });
        crate::builtins::install(&node);
        crate::eval::install(&node);
        crate::remote_shell::install(&node);
        crate::groups::register_functions(&node);
        crate::placement::register_functions(&node);
        crate::processes::register_functions(&node);
        crate::observer::register_functions(&node);
        #[cfg(feature = "wasm")]
        crate::wasm::install(&node);
        crate::global::register_functions(&node);
        Ok(node)
    }
}
