//! Starting a node ([`NodeConfig::start`]): the listener, EPMD registration (with an embedded
//! EPMD when none answers), the core, the node server, and the services built on them.

use std::sync::Arc;

use ractor::Actor;
use tokio::net::TcpListener;

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
    /// Starts the node: binds the listener, registers with EPMD (starting an embedded EPMD
    /// when none answers), and spawns the [`NodeServer`].
    pub async fn start(self) -> Result<Node, NodeError> {
        let full = self.full_name()?;
        let cookie = self.resolve_cookie()?;
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(NodeError::Listen)?;
        let port = listener.local_addr().map_err(NodeError::Listen)?.port();
        let mut flags = DistFlags::OFFERED;
        if !self.hidden {
            flags = flags | DistFlags::PUBLISHED;
        }
        let (registration, embedded) = if self.register_with_epmd {
            let (reg, emb) = register(&self, &full, port).await?;
            (Some(reg), emb)
        } else {
            (None, None)
        };
        let creation = registration
            .as_ref()
            .map(|r| r.creation())
            .unwrap_or_else(|| {
                // No EPMD: any non-zero creation that changes between runs.
                (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as u32)
                    .unwrap_or(1))
                .max(1)
            });
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
        let (actor, _) = Actor::spawn(
            None,
            NodeServer,
            NodeServerArgs {
                shared: shared.clone(),
                listener,
                registration,
                embedded_epmd: embedded,
            },
        )
        .await
        .map_err(|e| NodeError::Actor(e.to_string()))?;
        crate::global::start(&shared, actor.get_cell())
            .await
            .map_err(|e| NodeError::Actor(e.to_string()))?;
        for scope in &shared.id.config.pg_scopes {
            crate::pg::start_scope(&shared, scope, actor.get_cell())
                .await
                .map_err(|e| NodeError::Actor(e.to_string()))?;
        }
        tracing::info!(node = %shared.id.name, port, creation, "node started");
        let node = Node {
            actor,
            shared,
            port,
        };
        crate::builtins::install(&node);
        crate::groups::register_functions(&node);
        crate::global::register_functions(&node);
        Ok(node)
    }
}

/// Registers with EPMD, starting an embedded one when none answers on the configured port.
async fn register(
    config: &NodeConfig,
    full: &str,
    port: u16,
) -> Result<(epmd::Registration, Option<epmd::ServerHandle>), NodeError> {
    let name = full.split('@').next().unwrap_or(full);
    let mut info = epmd::NodeInfo::new(name, port);
    if config.hidden {
        info.node_type = epmd::NodeType::Hidden;
    }
    info.extra =
        epmd::roles::encode_roles(&config.roles).map_err(|e| NodeError::Roles(e.to_string()))?;
    let client =
        epmd::Client::new(config.epmd_host.clone(), config.epmd_port).timeout(config.setup_time);
    match client.register(info.clone()).await {
        Ok(reg) => Ok((reg, None)),
        Err(epmd::ClientError::Unreachable { .. }) => {
            let server = match epmd::ServerConfig::new()
                .port(config.epmd_port)
                .start()
                .await
            {
                Ok(s) => {
                    tracing::info!(
                        port = config.epmd_port,
                        "no epmd answered: started an embedded epmd in this process"
                    );
                    Some(s)
                }
                // Someone else started one meanwhile: use it.
                Err(e) => {
                    tracing::debug!(error = %e, "could not start an embedded epmd");
                    None
                }
            };
            let reg = client.register(info).await?;
            Ok((reg, server))
        }
        Err(e) => Err(e.into()),
    }
}
