%% The Erlang side of `cargo run --release --example echo_flood`.
%%
%% serve(): registers `echo`, a process that on `{From, Msg}` sends `Msg` to `From` (the same
%%   logic as the `echo` actor of examples/echo_node.rs); prints `ready NODE`.
%% flood(RustNode, ErlNode, N, Rounds, Only): the flooder. Per round and per target (`both`,
%%   or `Only` = `rust` | `erlang` alone, for profiling one side; the order alternates between
%%   rounds), sends N `{self(), {hello, 42, <<"payload-0123456789">>}}` to
%%   `{echo, Node}` as fast as it can, then counts replies until it has all N (or none came for
%%   10 s), and prints one line:
%%   `result ROUND TARGET replies=R of=N elapsed_s=E replies_per_s=X send_s=S`.
%%
%% Both halt when their stdin closes, so they never outlive the Rust program.
-module(echo_flood).
-export([main/1, serve/0, flood/5]).

-define(MSG, {hello, 42, <<"payload-0123456789">>}).

serve() ->
    register(echo, spawn(fun echo/0)).

echo() ->
    receive
        {From, Msg} when is_pid(From) -> From ! Msg;
        _ -> ok
    end,
    echo().

flood(RustNode, ErlNode, N, Rounds, Only) ->
    Targets = [{L, Node} || {L, Node} <- [{rust, RustNode}, {erlang, ErlNode}],
                            Only =:= both orelse Only =:= L],
    [pong = net_adm:ping(Node) || {_, Node} <- Targets],
    %% Warm up both connections (atom caches, buffers) outside the measurement.
    [run(0, Label, Node, 1000, quiet) || {Label, Node} <- Targets],
    io:format("warm~n"),
    lists:foreach(
        fun(Round) ->
            Order = case Round rem 2 of
                1 -> Targets;
                0 -> lists:reverse(Targets)
            end,
            [run(Round, Label, Node, N, print) || {Label, Node} <- Order]
        end,
        lists:seq(1, Rounds)).

run(Round, Label, Node, N, Mode) ->
    Target = {echo, Node},
    Msg = {self(), ?MSG},
    T0 = erlang:monotonic_time(microsecond),
    send(Target, Msg, N),
    T1 = erlang:monotonic_time(microsecond),
    Got = recv(N, 0),
    T2 = erlang:monotonic_time(microsecond),
    %% Elapsed up to the last reply (without the final idle timeout, if any).
    Elapsed = case Got of
        {done, K} -> {K, T2 - T0};
        {timeout, K, TLast} -> {K, TLast - T0}
    end,
    {Replies, Us} = Elapsed,
    case Mode of
        quiet -> ok;
        print ->
            io:format("result ~b ~s replies=~b of=~b elapsed_s=~.3f replies_per_s=~b send_s=~.3f~n",
                      [Round, Label, Replies, N, Us / 1.0e6,
                       Replies * 1000000 div max(1, Us), (T1 - T0) / 1.0e6])
    end.

send(_, _, 0) -> ok;
send(T, Msg, K) -> T ! Msg, send(T, Msg, K - 1).

recv(N, N) -> {done, N};
recv(N, K) ->
    receive
        ?MSG -> recv(N, K + 1)
    after 10000 ->
        {timeout, K, erlang:monotonic_time(microsecond) - 10000000}
    end.

%% erl -run echo_flood main serve
%% erl -run echo_flood main flood RUST_NODE ERL_NODE N ROUNDS both|rust|erlang
main(Args) ->
    spawn(fun() -> _ = io:get_line(""), halt() end),
    case Args of
        ["serve"] ->
            serve(),
            io:format("ready ~s~n", [node()]);
        ["flood", RustNode, ErlNode, N, Rounds, Only] ->
            flood(list_to_atom(RustNode), list_to_atom(ErlNode),
                  list_to_integer(N), list_to_integer(Rounds), list_to_atom(Only)),
            io:format("done~n"),
            halt()
    end.
