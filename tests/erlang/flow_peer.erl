%% The Erlang side of the flow control tests (tests/flow_interop.rs), called from `eval_peer`
%% expressions. Every wait is bounded and says so in its result.
%%
%%   collector()                      -> Pid
%%       A process that takes {flood, Seq, Bin} messages and notes how many came, the last
%%       Seq, whether each Seq was greater than the one before (in order, gaps allowed), and
%%       whether there was no gap (every Seq one more than the last).
%%   report(Pid)                      -> {Count, LastSeq, InOrder, NoGap, Bytes}
%%   wait_count(Pid, N, Ms)           -> {ok, Report} | {timeout, Report}
%%       Waits until the collector has at least N messages.
%%   wait_total(Pid, RustNode, N, Ms) -> {ok, Report, Dropped} | {timeout, Report, Dropped}
%%       Waits until the collector's count plus the drops the Rust node counted on its
%%       connection with this node (echo_node:connection_stats/1) reach N, and the count no
%%       longer moves.
-module(flow_peer).
-export([collector/0, report/1, wait_count/3, wait_total/4]).

collector() ->
    spawn(fun() -> loop(0, 0, true, true, 0) end).

loop(Count, Last, InOrder, NoGap, Bytes) ->
    receive
        {flood, Seq, Bin} ->
            loop(Count + 1, Seq, InOrder andalso Seq > Last,
                 NoGap andalso Seq =:= Last + 1, Bytes + byte_size(Bin));
        {report, From} ->
            From ! {report, self(), {Count, Last, InOrder, NoGap, Bytes}},
            loop(Count, Last, InOrder, NoGap, Bytes)
    end.

report(Pid) ->
    Pid ! {report, self()},
    receive {report, Pid, R} -> R after 10000 -> timeout end.

wait_count(Pid, N, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    wait_count_until(Pid, N, Deadline).

wait_count_until(Pid, N, Deadline) ->
    R = report(Pid),
    case R of
        {Count, _, _, _, _} when Count >= N -> {ok, R};
        _ ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> {timeout, R};
                false -> timer:sleep(20), wait_count_until(Pid, N, Deadline)
            end
    end.

wait_total(Pid, RustNode, N, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    wait_total_until(Pid, RustNode, N, Deadline, -1).

wait_total_until(Pid, RustNode, N, Deadline, Before) ->
    R = {Count, _, _, _, _} = report(Pid),
    Dropped = case rpc:call(RustNode, echo_node, connection_stats, [node()]) of
                  #{dropped := D} -> D;
                  _ -> 0
              end,
    case Count + Dropped >= N andalso Count =:= Before of
        true -> {ok, R, Dropped};
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> {timeout, R, Dropped};
                false -> timer:sleep(50), wait_total_until(Pid, RustNode, N, Deadline, Count)
            end
    end.
