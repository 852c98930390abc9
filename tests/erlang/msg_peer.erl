%% The Erlang side of the messaging interop tests (tests/messaging_interop.rs).
%%
%% Not a peer of its own: the tests run `eval_peer` (one Erlang expression per stdin line) with
%% this module and `etf_peer` (for its term corpus) on the code path, and call the functions
%% below from those expressions. Every wait here is bounded; a function that gives up says so
%% in its result rather than hanging the line protocol.
%%
%%   echo_corpus(RustNode)          -> {Count, Bad}
%%       For each term T of etf_peer:corpus(), `{echo, RustNode} ! {self(), T}` and wait for
%%       the reply, which must be exactly T (=:=, and float bits equal: OTP 25 has
%%       0.0 =:= -0.0). Bad lists {Index, mismatch, Sent, Got} / {Index, timeout, Sent}
%%       (terms quoted and truncated); it stops at the first timeout.
%%   kv_check(RustNode)             -> {Pairs, Bad}
%%       put / get / overwrite / delete / get-missing through gen_server:call({kv, RustNode}, _)
%%       with keys and values of many kinds; Bad lists {Step, Key, Expected, Got}.
%%   start_counter()                -> ok
%%       A gen_server registered as `counter`: call {add, N} -> NewTotal, call notes -> the
%%       notes so far (oldest first), `{note, X}` as a plain message or a cast is noted.
%%   start_collector(Name, N)       -> ok
%%       A process registered as Name that takes {seq, I} messages and checks that they come
%%       as 1, 2, ..., N.
%%   await_collector(Name, Ms)      -> {Count, none | {expected, E, got, G}} | {timeout, ...}
%%       Waits (at most Ms) until the collector has N messages and reports.
%%   send_seq(Dest, N)              -> ok          Dest ! {seq, I} for I in 1..N.
%%   big_echo(RustNode, Size)       -> {ok, Size} | {mismatch, ...} | timeout | {unexpected, _}
%%       A random binary of Size bytes goes to the Rust echo as {self(), {big, Bin}}; the reply
%%       must be {big, Bin}.
%%   start_md5(Name)                -> ok
%%       A process registered as Name answering {From, Bin} with
%%       From ! {md5, erlang:md5(Bin), byte_size(Bin)}.
%%   first_contact(RustNode, Rounds, Ms) -> {Rounds, Lost}
%%       Rounds times: drop the connection to RustNode (erlang:disconnect_node), then send
%%       {self(), {round, I}} to its echo, which opens a new connection, and wait (at most Ms)
%%       for {round, I}. Lost lists the rounds without a reply; it stops after 3 of them.
%%   start_inbox(Name)              -> Pid
%%       A process registered as Name that keeps every message it gets.
%%   inbox_wait(Name, N, Ms)        -> Messages | {timeout, Messages}
%%       The inbox's messages (oldest first) once it has at least N, waiting at most Ms.
%%   monitoring_nodes(Name, Nodes, Ms) -> Nodes | {timeout, Seen}
%%       The nodes of the processes that monitor the process registered as Name, once they
%%       are Nodes (a sorted list), checked every 5 ms for at most Ms (no event tells when a
%%       monitor goes).
-module(msg_peer).

-behaviour(gen_server).

-export([echo_corpus/1, kv_check/1, start_counter/0, start_collector/2, await_collector/2,
         send_seq/2, big_echo/2, start_md5/1, first_contact/3, start_inbox/1, inbox_wait/3,
         monitoring_nodes/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

%% How long one echo or call may take.
-define(WAIT, 10000).
%% Longest piece of a term quoted in a result.
-define(QUOTE_MAX, 200).

%%% Echo of the corpus

echo_corpus(Node) ->
    flush(),
    Corpus = etf_peer:corpus(),
    {length(Corpus), echo_all(Node, Corpus, 0, [])}.

echo_all(_Node, [], _I, Bad) ->
    lists:reverse(Bad);
echo_all(Node, [T | Rest], I, Bad) ->
    {echo, Node} ! {self(), T},
    receive
        Got ->
            case etf_peer:same(T, Got) of
                true -> echo_all(Node, Rest, I + 1, Bad);
                false -> echo_all(Node, Rest, I + 1, [{I, mismatch, quote(T), quote(Got)} | Bad])
            end
    after ?WAIT ->
        lists:reverse([{I, timeout, quote(T)} | Bad])
    end.

%%% gen_server:call to the Rust kv

kv_check(Node) ->
    Kv = {kv, Node},
    Call = fun(Req) -> catch gen_server:call(Kv, Req, ?WAIT) end,
    Pairs = kv_pairs(),
    Check = fun(Step, Key, Expected, Got) ->
                    case etf_peer:same(Expected, Got) of
                        true -> [];
                        false -> [{Step, quote(Key), quote(Expected), quote(Got)}]
                    end
            end,
    Put = lists:append([Check(put, K, ok, Call({put, K, V})) || {K, V} <- Pairs]),
    Get = lists:append([Check(get, K, {ok, V}, Call({get, K})) || {K, V} <- Pairs]),
    [{K0, _} | _] = Pairs,
    New = #{overwritten => [K0]},
    Over = Check(overwrite, K0, ok, Call({put, K0, New}))
        ++ Check(get_overwritten, K0, {ok, New}, Call({get, K0})),
    {Deleted, Kept} = split_alternate(Pairs),
    Del = lists:append([Check(delete, K, ok, Call({delete, K})) || {K, _} <- Deleted]),
    Gone = lists:append([Check(get_deleted, K, not_found, Call({get, K})) || {K, _} <- Deleted]),
    Still = lists:append([Check(get_kept, K, {ok, V}, Call({get, K})) || {K, V} <- Kept, K =/= K0]),
    Missing = Check(get_missing, {never, put}, not_found, Call({get, {never, put}}))
        ++ Check(delete_missing, {never, put}, ok, Call({delete, {never, put}})),
    {length(Pairs), Put ++ Get ++ Over ++ Del ++ Gone ++ Still ++ Missing}.

kv_pairs() ->
    Ref = make_ref(),
    [{{user, 42}, <<"alice">>},
     {<<"binary key">>, #{name => <<"bob">>, tags => [a, b, c], nested => #{1 => {x, y}}}},
     {#{map => key, n => 1}, {tuple, value, [1, 2, 3]}},
     {[1, 2 | improper], 3.141592653589793},
     {'привет', <<"юникод 日本"/utf8>>},
     {123456789012345678901234567890, -(1 bsl 200)},
     {"a string key", ""},
     {self(), Ref},
     {Ref, self()},
     {[], {}},
     {{nested, {deep, [#{k => v}]}}, << <<B>> || B <- lists:seq(0, 255) >>},
     {1, int_one},
     {1.0, float_one},
     {<<1:3>>, bits},
     {fun lists:map/2, external_fun},
     {big, binary:copy(<<"0123456789abcdef">>, 65536)}].

split_alternate(L) ->
    split_alternate(L, 0, [], []).

split_alternate([], _, A, B) ->
    {lists:reverse(A), lists:reverse(B)};
split_alternate([X | Rest], I, A, B) when I rem 2 =:= 1 ->
    split_alternate(Rest, I + 1, [X | A], B);
split_alternate([X | Rest], I, A, B) ->
    split_alternate(Rest, I + 1, A, [X | B]).

%%% The counter gen_server

start_counter() ->
    {ok, _} = gen_server:start({local, counter}, ?MODULE, counter, []),
    ok.

init(counter) ->
    {ok, {0, []}}.

handle_call({add, N}, _From, {Total, Notes}) when is_integer(N) ->
    New = Total + N,
    {reply, New, {New, Notes}};
handle_call(notes, _From, {_, Notes} = State) ->
    {reply, lists:reverse(Notes), State};
handle_call(Other, _From, State) ->
    {reply, {unknown_call, Other}, State}.

handle_cast({note, X}, {Total, Notes}) ->
    {noreply, {Total, [X | Notes]}};
handle_cast(_, State) ->
    {noreply, State}.

handle_info({note, X}, {Total, Notes}) ->
    {noreply, {Total, [X | Notes]}};
handle_info(_, State) ->
    {noreply, State}.

%%% Ordered bursts

start_collector(Name, N) ->
    Pid = spawn(fun() -> collect(N, 1, 0, none, []) end),
    true = register(Name, Pid),
    ok.

%% Next: the sequence number expected next; Disorder: the first surprise, if any; Waiters:
%% processes to tell once N messages are in.
collect(N, Next, Count, Disorder, Waiters) when Count >= N, Waiters =/= [] ->
    [W ! {collected, self(), Count, Disorder} || W <- Waiters],
    collect(N, Next, Count, Disorder, []);
collect(N, Next, Count, Disorder, Waiters) ->
    receive
        {seq, I} ->
            D = case Disorder of
                    none when I =:= Next -> none;
                    none -> {expected, Next, got, I};
                    _ -> Disorder
                end,
            collect(N, Next + 1, Count + 1, D, Waiters);
        {report, From} ->
            collect(N, Next, Count, Disorder, [From | Waiters]);
        {report_now, From} ->
            From ! {collected, self(), Count, Disorder},
            collect(N, Next, Count, Disorder, Waiters)
    end.

await_collector(Name, Ms) ->
    Pid = whereis(Name),
    Pid ! {report, self()},
    receive
        {collected, Pid, Count, Disorder} -> {Count, Disorder}
    after Ms ->
        Pid ! {report_now, self()},
        receive
            {collected, Pid, Count, Disorder} -> {timeout, Count, Disorder}
        after 1000 -> {timeout, no_answer}
        end
    end.

send_seq(Dest, N) ->
    lists:foreach(fun(I) -> Dest ! {seq, I} end, lists:seq(1, N)).

%%% Large messages

big_echo(Node, Size) ->
    flush(),
    Bin = rand:bytes(Size),
    {echo, Node} ! {self(), {big, Bin}},
    receive
        {big, Got} when Got =:= Bin -> {ok, byte_size(Got)};
        {big, Got} when is_binary(Got) -> {mismatch, byte_size(Got), first_diff(Bin, Got, 0)};
        Other -> {unexpected, quote(Other)}
    after ?WAIT * 3 ->
        timeout
    end.

first_diff(<<X, A/binary>>, <<X, B/binary>>, I) -> first_diff(A, B, I + 1);
first_diff(_, _, I) -> I.

start_md5(Name) ->
    Pid = spawn(fun md5_loop/0),
    true = register(Name, Pid),
    ok.

md5_loop() ->
    receive
        {From, Bin} when is_pid(From), is_binary(Bin) ->
            From ! {md5, erlang:md5(Bin), byte_size(Bin)};
        {From, Other} when is_pid(From) ->
            From ! {not_a_binary, quote(Other)};
        _ ->
            ok
    end,
    md5_loop().

%%% The first message on a new connection

first_contact(Node, Rounds, Ms) ->
    flush(),
    {Rounds, first_contact(Node, 1, Rounds, Ms, [])}.

first_contact(_Node, I, Rounds, _Ms, Lost) when I > Rounds; length(Lost) >= 3 ->
    lists:reverse(Lost);
first_contact(Node, I, Rounds, Ms, Lost) ->
    erlang:disconnect_node(Node),
    {echo, Node} ! {self(), {round, I}},
    receive
        {round, I} -> first_contact(Node, I + 1, Rounds, Ms, Lost)
    after Ms ->
        first_contact(Node, I + 1, Rounds, Ms, [I | Lost])
    end.

%%% An inbox for proxies to send to

start_inbox(Name) ->
    Pid = spawn(fun() -> inbox([], []) end),
    true = register(Name, Pid),
    Pid.

inbox(Msgs, Waiters) ->
    {Ready, Waiting} = lists:partition(fun({_, N}) -> length(Msgs) >= N end, Waiters),
    [W ! {'$inbox', self(), lists:reverse(Msgs)} || {W, _} <- Ready],
    receive
        {'$inbox_wait', From, N} -> inbox(Msgs, [{From, N} | Waiting]);
        {'$inbox_now', From} -> From ! {'$inbox', self(), lists:reverse(Msgs)}, inbox(Msgs, Waiting);
        Msg -> inbox([Msg | Msgs], Waiting)
    end.

inbox_wait(Name, N, Ms) ->
    Pid = whereis(Name),
    Pid ! {'$inbox_wait', self(), N},
    receive
        {'$inbox', Pid, Msgs} -> Msgs
    after Ms ->
        Pid ! {'$inbox_now', self()},
        receive
            {'$inbox', Pid, Msgs} -> {timeout, Msgs}
        after 1000 -> {timeout, no_answer}
        end
    end.

%%% Helpers

flush() ->
    receive _ -> flush() after 0 -> ok end.

quote(T) ->
    Flat = lists:flatten(io_lib:format("~w", [T])),
    case length(Flat) > ?QUOTE_MAX of
        true -> lists:sublist(Flat, ?QUOTE_MAX) ++ "...";
        false -> Flat
    end.

monitoring_nodes(Name, Nodes, Ms) when Ms =< 0 ->
    {timeout, monitoring_nodes(Name)};
monitoring_nodes(Name, Nodes, Ms) ->
    case monitoring_nodes(Name) of
        Nodes -> Nodes;
        _ -> receive after 5 -> monitoring_nodes(Name, Nodes, Ms - 5) end
    end.

monitoring_nodes(Name) ->
    {monitored_by, By} = erlang:process_info(whereis(Name), monitored_by),
    lists:sort([node(P) || P <- By, is_pid(P)]).
