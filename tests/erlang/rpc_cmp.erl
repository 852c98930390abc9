%% The Erlang side of the rpc interop tests (tests/rpc_interop.rs).
%%
%% Not a peer of its own: the tests run `eval_peer` (one Erlang expression per stdin line) with
%% this module on the code path and call the functions below from those expressions.
%%
%% The first group is the Erlang twin of what the Rust node registers under the same names
%% (`rpc_cmp:add/2` and friends), so a test can make the same call against both nodes and
%% compare what comes back:
%%
%%   add(A, B)        -> A + B                     (badarith for non-numbers)
%%   exit_with(R)     -> exit(R)
%%   throw_it(V)      -> throw(V)
%%   slow()           -> slow(1000)
%%   slow(Ms)         -> sleeps Ms milliseconds, then done
%%
%% The second group makes calls and reports their outcome as a plain term, so a test can read
%% it from one line:
%%
%%   erpc(N, M, F, A[, T])  -> {value, V} | {Class, Reason}    what erpc:call did
%%   timed(Fun)             -> {Result, Milliseconds}
%%   shape(Outcome)         -> Outcome with the stack of an rpc/erpc error replaced by the
%%                             atom stack, when it is a list of stack frames
%%   features(Node)         -> what {rex, Node} answers to {self(), features_request}, or
%%                             timeout after 5 s
%%   stray()                -> the messages waiting in this process's mailbox (taken out)
-module(rpc_cmp).
-export([add/2, exit_with/1, throw_it/1, slow/0, slow/1]).
-export([erpc/4, erpc/5, timed/1, shape/1, features/1, stray/0]).

add(A, B) -> A + B.

exit_with(Reason) -> exit(Reason).

throw_it(Value) -> throw(Value).

slow() -> slow(1000).

slow(Ms) ->
    timer:sleep(Ms),
    done.

erpc(N, M, F, A) ->
    outcome(fun() -> erpc:call(N, M, F, A) end).

erpc(N, M, F, A, T) ->
    outcome(fun() -> erpc:call(N, M, F, A, T) end).

outcome(Fun) ->
    try Fun() of
        V -> {value, V}
    catch
        Class:Reason -> {Class, Reason}
    end.

timed(Fun) ->
    T0 = erlang:monotonic_time(millisecond),
    R = Fun(),
    {R, erlang:monotonic_time(millisecond) - T0}.

shape({badrpc, {'EXIT', {Reason, Stack}}} = T) ->
    case is_stack(Stack) of
        true -> {badrpc, {'EXIT', {Reason, stack}}};
        false -> T
    end;
shape({error, {exception, Reason, Stack}} = T) ->
    case is_stack(Stack) of
        true -> {error, {exception, Reason, stack}};
        false -> T
    end;
shape(T) ->
    T.

is_stack([_ | _] = Frames) ->
    lists:all(fun is_frame/1, Frames);
is_stack(_) ->
    false.

is_frame({M, F, A, Location}) when is_atom(M), is_atom(F), is_list(Location) ->
    is_list(A) orelse is_integer(A);
is_frame(_) ->
    false.

features(Node) ->
    {rex, Node} ! {self(), features_request},
    receive
        {features_reply, _, _} = Reply -> Reply
    after 5000 -> timeout
    end.

stray() ->
    receive
        M -> [M | stray()]
    after 0 -> []
    end.
