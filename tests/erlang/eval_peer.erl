%% A line-driven Erlang peer for interop tests: each stdin line is an Erlang expression
%% (trailing "." optional); the answer is one stdout line, `ok ~0p-of-result` or `error ...`.
%% Bindings do not persist between lines; use the process dictionary for state.
-module(eval_peer).
-export([main/0, connected/2]).

%% True once Node is among nodes(connected), false after Ms: a connect the other node
%% finished may not be marked up here yet. Waits for net_kernel's nodeup, not by polling.
connected(Node, Ms) ->
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    Up = await_connected(Node, Deadline),
    ok = net_kernel:monitor_nodes(false, [{node_type, all}]),
    flush_node_events(),
    Up.

flush_node_events() ->
    receive
        {nodeup, _, _} -> flush_node_events();
        {nodedown, _, _} -> flush_node_events()
    after 0 -> ok
    end.

await_connected(Node, Deadline) ->
    case lists:member(Node, nodes(connected)) of
        true ->
            true;
        false ->
            Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
            receive
                {nodeup, Node, _} -> await_connected(Node, Deadline)
            after Left -> false
            end
    end.

main() ->
    io:setopts([binary]),
    loop().

loop() ->
    case io:get_line("") of
        eof -> halt(0);
        {error, _} -> halt(0);
        Line ->
            Text = string:trim(unicode:characters_to_list(Line)),
            Reply = try eval(Text) of
                        Value -> ["ok ", io_lib:format("~0p", [Value])]
                    catch
                        Class:Reason -> ["error ", io_lib:format("~0p", [{Class, Reason}])]
                    end,
            io:put_chars([unicode:characters_to_binary(Reply), $\n]),
            loop()
    end.

eval(Text0) ->
    Text = case lists:reverse(Text0) of
               [$. | _] -> Text0;
               _ -> Text0 ++ "."
           end,
    {ok, Tokens, _} = erl_scan:string(Text),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
    Value.
