%% Helpers for the global interop tests, run inside eval_peer.
-module(global_peer).
-export([server/0, sync_ms/0, wait_where/3, wait_true/2]).

%% A process that answers gen_server calls with {echo, Request}.
server() ->
    spawn(fun Loop() ->
                  receive
                      {'$gen_call', From, Request} ->
                          gen:reply(From, {echo, Request}),
                          Loop();
                      stop ->
                          ok
                  end
          end).

%% global:sync() and how long it took, in milliseconds.
sync_ms() ->
    {Micros, ok} = timer:tc(fun global:sync/0),
    {ok, Micros div 1000}.

%% Waits until global:whereis_name(Name) satisfies Pred (polling every 10 ms: global has no
%% event to wait on); {ok, Pid} or {timeout, LastValue}.
wait_where(Name, Pred, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_where_loop(Name, Pred, Deadline).

wait_where_loop(Name, Pred, Deadline) ->
    Where = global:whereis_name(Name),
    case Pred(Where) of
        true -> {ok, Where};
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> {timeout, Where};
                false -> timer:sleep(10), wait_where_loop(Name, Pred, Deadline)
            end
    end.

%% Waits until Fun() is true, polling every 10 ms; {ok, Millis} or timeout.
wait_true(Fun, Timeout) ->
    Start = erlang:monotonic_time(millisecond),
    wait_true(Fun, Start, Start + Timeout).

wait_true(Fun, Start, Deadline) ->
    case Fun() of
        true -> {ok, erlang:monotonic_time(millisecond) - Start};
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> timeout;
                false -> timer:sleep(10), wait_true(Fun, Start, Deadline)
            end
    end.
