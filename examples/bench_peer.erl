%% The Erlang side of `cargo run --release --example bench`: the same shapes as the Rust
%% bench node, so a Rust node can be measured against an Erlang one, and Erlang against Erlang.
%%
%% serve(): registers `counter`, a process that counts `{hello, _, _}` messages and answers
%%   gen_server calls `count` (-> the count) and `ping` (-> pong).
%% run(Node, N, M): floods N `{hello, 42, <<"payload-0123456789">>}` to {counter, Node},
%%   waits until it has counted them, then makes M sequential `ping` calls; prints
%%   `oneway_msgs_per_s: X` and `rtt_us: Y`.
%% big(Node, K): floods K `{hello, 42, Bin}` with a 1 MiB binary and waits until they are
%%   counted; prints `oneway_1mib_mib_per_s: X`.
-module(bench_peer).
-export([serve/0, run/3, big/2, main/1]).

serve() ->
    Pid = spawn(fun() -> loop(0) end),
    register(counter, Pid),
    Pid.

loop(N) ->
    receive
        {hello, _, _} -> loop(N + 1);
        {'$gen_call', From, count} -> gen_server:reply(From, N), loop(N);
        {'$gen_call', From, reset} -> gen_server:reply(From, ok), loop(0);
        {'$gen_call', From, ping} -> gen_server:reply(From, pong), loop(N);
        _ -> loop(N)
    end.

run(Node, N, M) ->
    Target = {counter, Node},
    ok = gen_server:call(Target, reset),
    Msg = {hello, 42, <<"payload-0123456789">>},
    T0 = erlang:monotonic_time(microsecond),
    flood(Target, Msg, N),
    wait_count(Target, N),
    T1 = erlang:monotonic_time(microsecond),
    R0 = erlang:monotonic_time(microsecond),
    pings(Target, M),
    R1 = erlang:monotonic_time(microsecond),
    io:format("oneway_msgs_per_s: ~b~nrtt_us: ~.1f~n", [N * 1000000 div max(1, T1 - T0), (R1 - R0) / M]).

big(Node, K) ->
    Target = {counter, Node},
    ok = gen_server:call(Target, reset),
    Msg = {hello, 42, binary:copy(<<7>>, 1 bsl 20)},
    T0 = erlang:monotonic_time(microsecond),
    flood(Target, Msg, K),
    wait_count(Target, K),
    T1 = erlang:monotonic_time(microsecond),
    io:format("oneway_1mib_mib_per_s: ~b~n", [K * 1000000 div max(1, T1 - T0)]).

flood(_, _, 0) -> ok;
flood(T, Msg, K) -> T ! Msg, flood(T, Msg, K - 1).

wait_count(T, N) ->
    case gen_server:call(T, count, 60000) of
        C when C >= N -> ok;
        _ -> timer:sleep(1), wait_count(T, N)
    end.

pings(_, 0) -> ok;
pings(T, K) -> pong = gen_server:call(T, ping), pings(T, K - 1).

%% erl -run bench_peer main serve | run NODE N M [K]
main(["serve"]) -> serve(), io:format("ready ~s~n", [node()]);
main(["run", Node, N, M]) -> main(["run", Node, N, M, "0"]);
main(["run", Node, N, M, K]) ->
    run(list_to_atom(Node), list_to_integer(N), list_to_integer(M)),
    case list_to_integer(K) of
        0 -> ok;
        Big -> big(list_to_atom(Node), Big)
    end,
    halt().
