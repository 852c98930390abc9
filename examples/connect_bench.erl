%% Erlang side of examples/connect_bench.rs, compiled at run time with erlc and called through
%% tests/erlang/eval_peer.erl, one line per iteration.
-module(connect_bench).
-export([once/1, await_gone/2]).

%% One connection setup to Node as net_kernel does it for any first message (EPMD lookup, TCP
%% connect, handshake, nodeup), timed with timer:tc; then a disconnect. Returns the setup time
%% in microseconds once this node has seen the nodedown (the teardown is not timed).
once(Node) ->
    case timer:tc(net_kernel, connect_node, [Node]) of
        {Micros, true} ->
            true = monitor_node(Node, true),
            erlang:disconnect_node(Node),
            receive
                {nodedown, Node} -> Micros
            after 10000 ->
                error({no_nodedown, Node})
            end;
        {_, Other} ->
            error({connect_failed, Node, Other})
    end.

%% Waits (polling every millisecond, at most TimeoutMs) until this node has no connection to
%% Node: the other side of a disconnect has seen it too.
await_gone(Node, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    await_gone_until(Node, Deadline).

await_gone_until(Node, Deadline) ->
    case lists:member(Node, nodes(connected)) of
        false ->
            ok;
        true ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error({still_connected, Node});
                false -> timer:sleep(1), await_gone_until(Node, Deadline)
            end
    end.
