%% The Erlang side of the spawn tests (tests/spawn_interop.rs), called from `eval_peer`
%% expressions. Every wait is bounded (?T ms) and says so in its result.
%%
%%   forms(Node)            -> [{Form, Result}]   every spawn form against kind `counter`
%%   failure(Node, Kind, Args) -> {down, Reason, exit, Reason2}
%%       spawn_monitor and spawn_link (trapping) of Kind:start(Args): the reasons seen
%%   refused(Node)          -> the spawn_reply of erlang:spawn_request/5
%%   many(Node, Module, Count) -> {Ms, Values}
%%       Count spawns in a row of Module:start([0]) on Node, each linked to a helper process
%%       and called once (gen_server:call(P, get), the round trip to the new pid); then the
%%       helper exits and takes them all down. Values: how many answered 0.
%%   start(N)               -> an Erlang counter answering gen_server calls `get` with N, for
%%                             many/3 against an Erlang node (spawn_peer:start/1).
-module(spawn_peer).
-export([forms/1, failure/3, refused/1, many/3, start/1, counter/1]).

-define(T, 5000).

recv(What) ->
    receive What -> What after ?T -> {timeout, What} end.

forms(N) ->
    Self = self(),
    %% spawn/4: messages and a call.
    P1 = spawn(N, counter, start, [5]),
    P1 ! {add, 3},
    P1 ! {get, Self},
    Count = receive {count, C} -> C after ?T -> timeout end,
    Call = gen_server:call(P1, get),
    %% spawn_link/4: a linked Erlang process that dies takes the Rust actor with it.
    Parent = spawn(fun() ->
                           P = spawn_link(N, counter, start, [0]),
                           Self ! {child, P},
                           receive die -> exit(boom) end
                   end),
    P2 = receive {child, P} -> P after ?T -> timeout end,
    R2 = erlang:monitor(process, P2),
    Parent ! die,
    Linked = receive {'DOWN', R2, process, P2, W2} -> W2 after ?T -> timeout end,
    %% spawn_monitor/4: crash gives `crashed`.
    {P3, R3} = spawn_monitor(N, counter, start, [1]),
    P3 ! crash,
    Monitored = receive {'DOWN', R3, process, P3, W3} -> W3 after ?T -> timeout end,
    %% spawn_opt/5 with link and monitor, trapping exits.
    process_flag(trap_exit, true),
    {P4, R4} = spawn_opt(N, counter, start, [1], [link, monitor]),
    4 = gen_server:call(P4, get) + 3,
    P4 ! crash,
    Opt = {receive {'DOWN', R4, process, P4, W4} -> W4 after ?T -> timeout end,
           receive {'EXIT', P4, X4} -> X4 after ?T -> timeout end},
    process_flag(trap_exit, false),
    %% erlang:spawn_request/5 with a monitor.
    Ref = erlang:spawn_request(N, counter, start, [7], [monitor]),
    Request = receive
                  {spawn_reply, Ref, ok, P5} ->
                      V5 = gen_server:call(P5, get),
                      P5 ! crash,
                      {V5, receive {'DOWN', Ref, process, P5, W5} -> W5 after ?T -> timeout end};
                  {spawn_reply, Ref, error, E} -> {error, E}
              after ?T -> timeout
              end,
    %% A versioned name.
    P6 = spawn(N, 'counter/1', start, [9]),
    Versioned = gen_server:call(P6, get),
    exit(P6, kill),
    exit(P1, kill),
    [{spawn, {Count, Call}}, {spawn_link, Linked}, {spawn_monitor, Monitored},
     {spawn_opt, Opt}, {spawn_request, Request}, {versioned, Versioned}].

failure(N, Kind, Args) ->
    {P, R} = spawn_monitor(N, Kind, start, Args),
    Down = receive {'DOWN', R, process, P, W} -> W after ?T -> timeout end,
    process_flag(trap_exit, true),
    P2 = spawn_link(N, Kind, start, Args),
    Exit = receive {'EXIT', P2, X} -> X after ?T -> timeout end,
    process_flag(trap_exit, false),
    {down, Down, exit, Exit}.

refused(N) ->
    Ref = erlang:spawn_request(N, counter, start, [1], [monitor]),
    receive {spawn_reply, Ref, _, _} = Reply -> Reply after ?T -> timeout end.

many(N, Module, Count) ->
    Self = self(),
    Helper = spawn(fun() ->
                           T0 = erlang:monotonic_time(microsecond),
                           Values = [gen_server:call(spawn_link(N, Module, start, [0]), get)
                                     || _ <- lists:seq(1, Count)],
                           T1 = erlang:monotonic_time(microsecond),
                           Self ! {done, (T1 - T0) / 1000, length([V || V <- Values, V =:= 0])},
                           receive stop -> exit(done) end
                   end),
    receive
        {done, Ms, Zeros} ->
            Helper ! stop,
            {Ms, Zeros}
    after 120000 -> timeout
    end.

%% An Erlang counter for many/3 against an Erlang node.
start(N) -> counter(N).

counter(N) ->
    receive
        {'$gen_call', From, get} -> gen_server:reply(From, N), counter(N);
        _ -> counter(N)
    end.
