%% A distributed Erlang node driven over a line protocol on stdin/stdout, for the Rust
%% distribution interop tests (tests/dist_interop.rs).
%%
%% Started as `erl -sname NAME -setcookie COOKIE -noshell -pa DIR -run dist_peer main`.
%% Each request is one line of space-separated words; each reply is one line. Node names and
%% cookies are plain atoms-as-text (no spaces).
%%
%%   node                        -> ok NODE                 node()
%%   ping NODE                   -> pong | pang             net_adm:ping(NODE)
%%   nodes                       -> ok NODE...              nodes()         (visible)
%%   nodes_hidden                -> ok NODE...              nodes(hidden)
%%   nodes_connected             -> ok NODE...              nodes(connected)
%%   wait_listed WHICH NODE MS   -> ok NODE...              the WHICH list (nodes, nodes_hidden,
%%                                  nodes_connected) once it holds NODE, or as it is after MS
%%                                  (waits for net_kernel's nodeup, not by polling)
%%   ticktime                    -> ok SECONDS              net_kernel:get_net_ticktime()
%%   set_cookie NODE COOKIE      -> ok                      erlang:set_cookie(NODE, COOKIE)
%%   monitor_node NODE           -> ok | error REASON       monitor_node(NODE, true)
%%   wait_nodedown NODE MS       -> nodedown | timeout      a {nodedown, NODE} message within MS
%%   flush_nodedowns             -> ok N                    drops queued {nodedown, _} messages
%%   call_missing NODE NAME      -> exit REASON MS | ok REPLY MS | other TERM MS
%%                                  catch gen_server:call({NAME, NODE}, x, 5000), timed
%%   monitor_missing NODE NAME MS -> down REASON MS | timeout
%%                                  erlang:monitor(process, {NAME, NODE}), the 'DOWN' within MS
%%   disconnect NODE             -> true | false | ignored  erlang:disconnect_node(NODE)
%%   halt                        -> bye, then the node halts (it halts on end of input too).
%%
%% Bad input never crashes the peer: it answers `error REASON`. Logger output goes to stderr
%% (the test harness configures that), so stdout carries nothing but replies.
-module(dist_peer).

-export([main/0, main/1]).

main() ->
    main([]).

main(_Args) ->
    ok = io:setopts(standard_io, [binary]),
    loop().

loop() ->
    case io:get_line(standard_io, "") of
        eof ->
            erlang:halt(0);
        {error, Reason} ->
            io:format(standard_error, "dist_peer: reading stdin failed: ~p~n", [Reason]),
            erlang:halt(1);
        Line ->
            Request = string:trim(Line, trailing, "\r\n"),
            Words = binary:split(Request, <<" ">>, [global, trim_all]),
            Reply =
                try
                    handle(Words)
                catch
                    Class:Error:Stack ->
                        io:format(standard_error, "dist_peer: ~p:~p~n~p~n", [Class, Error, Stack]),
                        io_lib:format("error crash ~w:~w", [Class, Error])
                end,
            case Reply of
                stop ->
                    reply(<<"bye">>),
                    erlang:halt(0);
                _ ->
                    reply(Reply),
                    loop()
            end
    end.

reply(Reply) ->
    Bin = iolist_to_binary(Reply),
    Flat = binary:replace(Bin, [<<"\n">>, <<"\r">>], <<" ">>, [global]),
    ok = io:put_chars(standard_io, [Flat, $\n]).

atom(Bin) ->
    binary_to_atom(Bin, utf8).

int(Bin) ->
    binary_to_integer(Bin).

node_list(Nodes) ->
    [<<"ok">> | [[$\s, atom_to_binary(N, utf8)] || N <- lists:sort(Nodes)]].

fmt(Term) ->
    io_lib:format("~0p", [Term]).

handle([<<"node">>]) ->
    [<<"ok ">>, atom_to_binary(node(), utf8)];
handle([<<"ping">>, Node]) ->
    atom_to_binary(net_adm:ping(atom(Node)), utf8);
handle([<<"nodes">>]) ->
    node_list(nodes());
handle([<<"nodes_hidden">>]) ->
    node_list(nodes(hidden));
handle([<<"nodes_connected">>]) ->
    node_list(nodes(connected));
handle([<<"wait_listed">>, Which, Node, Ms]) ->
    N = atom(Node),
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    Deadline = erlang:monotonic_time(millisecond) + int(Ms),
    Listed = wait_listed(Which, N, Deadline),
    ok = net_kernel:monitor_nodes(false, [{node_type, all}]),
    flush_nodeups(),
    node_list(Listed);
handle([<<"ticktime">>]) ->
    [<<"ok ">>, fmt(net_kernel:get_net_ticktime())];
handle([<<"set_cookie">>, Node, Cookie]) ->
    true = erlang:set_cookie(atom(Node), atom(Cookie)),
    <<"ok">>;
handle([<<"monitor_node">>, Node]) ->
    try monitor_node(atom(Node), true) of
        true -> <<"ok">>
    catch
        C:E -> [<<"error ">>, fmt({C, E})]
    end;
handle([<<"wait_nodedown">>, Node, Ms]) ->
    N = atom(Node),
    receive
        {nodedown, N} -> <<"nodedown">>
    after int(Ms) -> <<"timeout">>
    end;
handle([<<"flush_nodedowns">>]) ->
    [<<"ok ">>, integer_to_binary(flush_nodedowns(0))];
handle([<<"call_missing">>, Node, Name]) ->
    T0 = erlang:monotonic_time(millisecond),
    Result = (catch gen_server:call({atom(Name), atom(Node)}, x, 5000)),
    Ms = integer_to_binary(erlang:monotonic_time(millisecond) - T0),
    case Result of
        {'EXIT', {Reason, _Where}} -> [<<"exit ">>, fmt(Reason), $\s, Ms];
        {'EXIT', Reason} -> [<<"exit ">>, fmt(Reason), $\s, Ms];
        Other -> [<<"ok ">>, fmt(Other), $\s, Ms]
    end;
handle([<<"monitor_missing">>, Node, Name, Timeout]) ->
    T0 = erlang:monotonic_time(millisecond),
    Ref = erlang:monitor(process, {atom(Name), atom(Node)}),
    receive
        {'DOWN', Ref, process, _Object, Reason} ->
            Ms = erlang:monotonic_time(millisecond) - T0,
            [<<"down ">>, fmt(Reason), $\s, integer_to_binary(Ms)]
    after int(Timeout) ->
        erlang:demonitor(Ref, [flush]),
        <<"timeout">>
    end;
handle([<<"disconnect">>, Node]) ->
    atom_to_binary(erlang:disconnect_node(atom(Node)), utf8);
handle([<<"halt">>]) ->
    stop;
handle([]) ->
    <<"error empty_request">>;
handle([Cmd | _]) ->
    [<<"error unknown_command ">>, Cmd].

flush_nodedowns(N) ->
    receive
        {nodedown, _} -> flush_nodedowns(N + 1)
    after 0 -> N
    end.

listed(<<"nodes">>) -> nodes();
listed(<<"nodes_hidden">>) -> nodes(hidden);
listed(<<"nodes_connected">>) -> nodes(connected).

%% The list once it holds Node: checked again after each nodeup until Deadline.
wait_listed(Which, Node, Deadline) ->
    Listed = listed(Which),
    case lists:member(Node, Listed) of
        true ->
            Listed;
        false ->
            Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
            receive
                {nodeup, _, _} -> wait_listed(Which, Node, Deadline)
            after Left -> Listed
            end
    end.

flush_nodeups() ->
    receive
        {nodeup, _, _} -> flush_nodeups();
        {nodedown, _, _} -> flush_nodeups()
    after 0 -> ok
    end.
