use node_server::ErlangMessage;
use ractor::RpcReplyPort;

#[derive(ErlangMessage)]
enum Msg {
    Ping,
    #[rpc]
    Get(String),
    #[rpc]
    Swap(RpcReplyPort<u8>, u8),
}

fn main() {}
