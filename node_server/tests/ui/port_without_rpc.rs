use node_server::ErlangMessage;
use ractor::RpcReplyPort;

#[derive(ErlangMessage)]
enum Msg {
    Ping,
    Get(String, RpcReplyPort<Option<i64>>),
}

fn main() {}
