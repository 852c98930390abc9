%% Phoenix.PubSub (the real phoenix_pubsub 2.2.0, compiled by the test) on an Elixir node, for
%% tests/phoenix_interop.rs, driven line by line through eval_peer.
-module(pubsub_peer).
-export([start/2, collector/3, take/3, msgs/1, broadcast_many/3, broadcast_from_every_group/3,
         wait_joined/4, wait_left/3, direct_broadcast/4]).

%% Starts Elixir and the PubSub `Name` with `PoolSize` workers, under a supervisor that no
%% eval line is linked to. The `pg` scope Phoenix.PubSub is started once per node.
start(Name, PoolSize) ->
    {ok, _} = application:ensure_all_started(crypto),
    {ok, _} = application:ensure_all_started(elixir),
    case whereis('Elixir.Phoenix.PubSub') of
        undefined -> {ok, _} = pg:start('Elixir.Phoenix.PubSub');
        _ -> ok
    end,
    Parent = self(),
    Owner = spawn(fun() ->
        Children = [{'Elixir.Phoenix.PubSub', [{name, Name}, {pool_size, PoolSize}]}],
        {ok, Sup} = 'Elixir.Supervisor':start_link(Children, [{strategy, one_for_one}]),
        Parent ! {started, self(), Sup},
        receive stop -> ok end
    end),
    receive {started, Owner, _Sup} -> ok after 10000 -> timeout end.

%% A process registered as `Reg`, subscribed to `Topic` of `Name`, that keeps every message.
collector(Name, Topic, Reg) ->
    Parent = self(),
    Pid = spawn(fun() ->
        ok = 'Elixir.Phoenix.PubSub':subscribe(Name, Topic),
        Parent ! {subscribed, self()},
        loop([], 0)
    end),
    receive {subscribed, Pid} -> true = register(Reg, Pid), ok after 5000 -> timeout end.

loop(Acc, Len) ->
    receive
        {'$take', From, N, Timeout} ->
            take_loop(Acc, Len, From, N, erlang:monotonic_time(millisecond) + Timeout);
        Msg -> loop([Msg | Acc], Len + 1)
    end.

take_loop(Acc, Len, From, N, _Deadline) when Len >= N ->
    {Taken, Rest} = lists:split(N, lists:reverse(Acc)),
    From ! {'$taken', self(), Taken},
    loop(lists:reverse(Rest), Len - N);
take_loop(Acc, Len, From, N, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        Msg -> take_loop([Msg | Acc], Len + 1, From, N, Deadline)
    after Left ->
        From ! {'$taken', self(), {timeout, lists:reverse(Acc)}},
        loop(Acc, Len)
    end.

%% The first `N` messages the collector `Reg` got (waiting up to `Timeout` ms for them), or
%% `{timeout, SoFar}`.
take(Reg, N, Timeout) ->
    Pid = whereis(Reg),
    Pid ! {'$take', self(), N, Timeout},
    receive {'$taken', Pid, Result} -> Result after Timeout + 5000 -> no_answer end.

%% `N` Elixir-style terms: maps with atom and binary keys, binaries, lists, floats, tuples.
msgs(N) ->
    [#{seq => I,
       <<"body">> => <<I:32, "payload \x{e9}"/utf8>>,
       tags => [a, <<"b">>, {I, -I}],
       nested => #{k => [1.5, I * 1000000000000]}}
     || I <- lists:seq(1, N)].

%% Broadcasts `msgs(N)` on `Topic` from this process, in order.
broadcast_many(Name, Topic, N) ->
    lists:foreach(fun(M) -> ok = 'Elixir.Phoenix.PubSub':broadcast(Name, Topic, M) end, msgs(N)),
    ok.

%% Broadcasts `{from_group, I}` on `Topic` once from a process for each of the `PoolSize`
%% groups the adapter picks among (`phash2(Pid, PoolSize)`), so every pool group is used.
broadcast_from_every_group(Name, Topic, PoolSize) ->
    Parent = self(),
    Cover = fun Cover(Seen, Tries) when map_size(Seen) < PoolSize, Tries < 10000 ->
                    Pid = spawn(fun() -> receive {go, I} ->
                        ok = 'Elixir.Phoenix.PubSub':broadcast(Name, Topic, {from_group, I}),
                        Parent ! {done, self()}
                    end end),
                    I = erlang:phash2(Pid, PoolSize),
                    case maps:is_key(I, Seen) of
                        true -> exit(Pid, kill), Cover(Seen, Tries + 1);
                        false -> Pid ! {go, I}, receive {done, Pid} -> ok end,
                                 Cover(Seen#{I => true}, Tries + 1)
                    end;
             Cover(Seen, _) -> lists:sort(maps:keys(Seen))
            end,
    Cover(#{}, 0).

%% Waits up to `Timeout` ms until a process of `Node` is in each of the `PoolSize` adapter
%% groups of `Name`: `ok` or `{timeout, GroupsWithout}`.
wait_joined(Name, PoolSize, Node, Timeout) ->
    Adapter = atom_to_list(Name) ++ ".Adapter",
    Groups = [list_to_atom(Adapter)
              | [list_to_atom(Adapter ++ "_" ++ integer_to_list(I)) || I <- lists:seq(2, PoolSize)]],
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_joined(Groups, Node, Deadline).

wait_joined(Groups, Node, Deadline) ->
    Without = [G || G <- Groups,
                    not lists:any(fun(P) -> node(P) =:= Node end,
                                  pg:get_members('Elixir.Phoenix.PubSub', G))],
    case Without of
        [] -> ok;
        _ ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> {timeout, Without};
                false -> timer:sleep(20), wait_joined(Groups, Node, Deadline)
            end
    end.

%% Waits up to `Timeout` ms until no process of `Node` is in the first adapter group of `Name`.
wait_left(Name, Node, Timeout) ->
    Group = list_to_atom(atom_to_list(Name) ++ ".Adapter"),
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_left(Group, Node, Deadline, poll).

wait_left(Group, Node, Deadline, poll) ->
    case lists:any(fun(P) -> node(P) =:= Node end, pg:get_members('Elixir.Phoenix.PubSub', Group)) of
        false -> ok;
        true ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> timeout;
                false -> timer:sleep(20), wait_left(Group, Node, Deadline, poll)
            end
    end.

direct_broadcast(Node, Name, Topic, Msg) ->
    'Elixir.Phoenix.PubSub':direct_broadcast(Node, Name, Topic, Msg).
