%% Helpers for the pg interop tests, run inside eval_peer: group members that answer calls
%% and report what they receive, and event-driven waits on a group's membership.
-module(pg_peer).
-export([start/0, member/1, member/2, next/1, wait_count/4, wait_member/4, pid_parts/1]).

%% Starts scope `pg` (unless running) and the collector that members report to.
start() ->
    case pg:start(pg) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok
    end,
    case whereis(pg_collector) of
        undefined ->
            Pid = spawn(fun() -> collector([], []) end),
            register(pg_collector, Pid),
            ok;
        _ ->
            ok
    end.

%% A process in Group of scope pg: it answers gen_server calls with {reply, node(), Request}
%% and reports any other message as {got, Self, Msg} to the collector.
member(Group) -> member(pg, Group).

member(Scope, Group) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        ok = pg:join(Scope, Group, self()),
                        Parent ! {joined, self()},
                        member_loop()
                end),
    receive {joined, Pid} -> Pid after 5000 -> error(join_timeout) end.

member_loop() ->
    receive
        {'$gen_call', From, Request} ->
            gen:reply(From, {reply, node(), Request}),
            member_loop();
        stop ->
            ok;
        Msg ->
            pg_collector ! {got, self(), Msg},
            member_loop()
    end.

collector(Msgs, Waiters) ->
    receive
        {got, _, _} = M ->
            case Waiters of
                [W | Ws] -> W ! {collected, M}, collector(Msgs, Ws);
                [] -> collector(Msgs ++ [M], Waiters)
            end;
        {next, W} ->
            case Msgs of
                [M | Ms] -> W ! {collected, M}, collector(Ms, Waiters);
                [] -> collector(Msgs, Waiters ++ [W])
            end
    end.

%% The next message a member reported, or timeout.
next(Timeout) ->
    pg_collector ! {next, self()},
    receive {collected, M} -> M after Timeout -> timeout end.

%% Waits (on pg:monitor events, not polling) until Group in Scope has N members; returns
%% {ok, Millis} or {timeout, Members}.
wait_count(Scope, Group, N, Timeout) ->
    wait_until(Scope, Group, fun(Pids) -> length(Pids) =:= N end, Timeout).

%% Waits until Pid is (In = true) or is not (In = false) a member of Group.
wait_member(Group, Pid, In, Timeout) ->
    wait_until(pg, Group, fun(Pids) -> lists:member(Pid, Pids) =:= In end, Timeout).

wait_until(Scope, Group, Done, Timeout) ->
    Start = erlang:monotonic_time(millisecond),
    {Ref, Pids} = pg:monitor(Scope, Group),
    Result = wait_loop(Ref, Pids, Done, Start + Timeout, Start),
    pg:demonitor(Scope, Ref),
    Result.

wait_loop(Ref, Pids, Done, Deadline, Start) ->
    case Done(Pids) of
        true ->
            {ok, erlang:monotonic_time(millisecond) - Start};
        false ->
            Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
            receive
                {Ref, join, _, New} -> wait_loop(Ref, New ++ Pids, Done, Deadline, Start);
                {Ref, leave, _, Gone} -> wait_loop(Ref, Pids -- Gone, Done, Deadline, Start)
            after Left ->
                {timeout, Pids}
            end
    end.

%% {Node, Id, Serial} of a pid, from its external form (Id and Serial as the node that made
%% it numbers them).
pid_parts(Pid) ->
    <<131, Tag, Rest/binary>> = term_to_binary(Pid),
    {Node, <<Id:32, Serial:32, _/binary>>} = split_node(Tag, Rest),
    {Node, Id, Serial}.

split_node(_, <<119, Len, Name:Len/binary, Rest/binary>>) ->
    {binary_to_atom(Name, utf8), Rest};
split_node(_, <<118, Len:16, Name:Len/binary, Rest/binary>>) ->
    {binary_to_atom(Name, utf8), Rest};
split_node(_, <<100, Len:16, Name:Len/binary, Rest/binary>>) ->
    {binary_to_atom(Name, latin1), Rest}.
